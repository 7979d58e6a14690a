"""Writing many WebSocket frames at once, straight to the transport.

Why not ``connection.send()`` per message: at full speed it costs more than the rest of the
simulator together. A server-to-client text frame is just a 2-10 byte header and the UTF-8
payload (no masking, no compression: the servers do not negotiate permessage-deflate, as the
venues do not), so a batch of frames becomes one ``transport.write``. Every write is whole
frames, so the library's own control frames (pings, close) never interleave inside one.
"""

from __future__ import annotations

from websockets.asyncio.server import ServerConnection
from websockets.protocol import State


def frame(text: str | bytes) -> bytes:
    """A text frame of ``text`` (bytes: already UTF-8)."""
    payload = text.encode() if isinstance(text, str) else text
    n = len(payload)
    if n < 126:
        return bytes((0x81, n)) + payload
    if n < 65536:
        return b"\x81\x7e" + n.to_bytes(2, "big") + payload
    return b"\x81\x7f" + n.to_bytes(8, "big") + payload


def is_open(connection: ServerConnection) -> bool:
    return connection.protocol.state is State.OPEN


async def write_frames(connection: ServerConnection, texts: list[str]) -> bool:
    """Send ``texts`` as text frames; waits while the client is slow. False if the connection closed."""
    if not is_open(connection):
        return False
    connection.transport.write(b"".join([frame(t) for t in texts]))
    try:
        await connection.drain()
    except (ConnectionError, RuntimeError):
        return False
    return is_open(connection)
