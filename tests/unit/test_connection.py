"""The WebSocket session's direct frame reading, against a real server on loopback: every
message exactly once and in order, however the bytes are split, with pings, fragments and the
closing handshake still handled by the library."""

from __future__ import annotations

import asyncio
import random

from websockets.asyncio.server import ServerConnection, serve
from websockets.frames import Frame, Opcode

from producers.connection import Backoff, WebSocketSession
from simulator.wire import frame as text_frame
from tickflow.events import ConnectorState


def raw(opcode: Opcode, payload: bytes, fin: bool = True) -> bytes:
    """A server frame (unmasked), as bytes on the wire."""
    header = (0x80 if fin else 0) | opcode.value
    n = len(payload)
    if n < 126:
        return bytes((header, n)) + payload
    if n < 65536:
        return bytes((header, 126)) + n.to_bytes(2, "big") + payload
    return bytes((header, 127)) + n.to_bytes(8, "big") + payload


def run_session(wire: bytes, chunk: int | None, seed: int = 0) -> tuple[list[bytes], list[str]]:
    """Serve ``wire`` (after the handshake) in random-sized pieces; return what the session
    delivered and the states it reported."""
    rng = random.Random(seed)
    received: list[bytes] = []
    states: list[str] = []

    async def handler(connection: ServerConnection) -> None:
        await connection.recv()  # the client's hello: the handshake is done on both sides
        at = 0
        while at < len(wire):
            size = chunk or rng.randint(1, 700)
            connection.transport.write(wire[at : at + size])
            at += size
            await asyncio.sleep(0.001 if chunk is None else 0)
        await connection.close()

    async def scenario() -> None:
        async with serve(handler, "127.0.0.1", 0, compression=None) as server:
            port = server.sockets[0].getsockname()[1]
            stop = asyncio.Event()

            async def hello(ws: object) -> None:
                await ws.send("hello")  # type: ignore[attr-defined]
                await asyncio.sleep(3600)

            def on_state(state: ConnectorState, reason: str | None, attempt: int) -> None:
                states.append(state.value)
                if state is ConnectorState.DISCONNECTED:
                    stop.set()

            session = WebSocketSession(
                f"ws://127.0.0.1:{port}", lambda f, ts: received.append(bytes(f)), on_state,
                on_open=hello, backoff=Backoff(initial=0.05),
            )  # fmt: skip
            await asyncio.wait_for(session.run(stop), 20)

    asyncio.run(scenario())
    return received, states


MESSAGES = [b"x" * n for n in (0, 1, 125, 126, 127, 65535, 65536, 200_000)] + [
    f'{{"stream":"s{i}","data":{{"n":{i}}}}}'.encode() for i in range(300)
]


def test_every_message_once_in_order_whatever_the_tcp_splits() -> None:
    wire = b"".join(raw(Opcode.TEXT, m) for m in MESSAGES)
    for chunk in (None, 4096):
        received, _ = run_session(wire, chunk)
        assert received == MESSAGES, f"chunk {chunk}"
    small = MESSAGES[:4] + MESSAGES[-60:]  # byte by byte: every header split every way
    received, _ = run_session(b"".join(raw(Opcode.TEXT, m) for m in small), 1)
    assert received == small


def test_pings_fragments_and_binary_among_the_messages() -> None:
    wire = (
        raw(Opcode.TEXT, b"first")
        + raw(Opcode.PING, b"are you there")  # answered by the library, not delivered
        + raw(Opcode.TEXT, b"frag-", fin=False)
        + raw(Opcode.PING, b"mid-fragment")
        + raw(Opcode.CONT, b"ment", fin=False)
        + raw(Opcode.CONT, b"ed", fin=True)
        + raw(Opcode.BINARY, b"\x00\x01binary")
        + text_frame('{"last": true}')
    )
    received, states = run_session(wire, None, seed=3)
    assert received == [b"first", b"frag-mented", b"\x00\x01binary", b'{"last": true}']
    assert states[:2] == ["CONNECTING", "CONNECTED"] and "DISCONNECTED" in states


def test_frame_helper_matches_the_library() -> None:
    # The test's own frame writer agrees with the websockets library's serializer.
    frame = Frame(Opcode.TEXT, b"abc" * 100)
    assert raw(Opcode.TEXT, b"abc" * 100) == frame.serialize(mask=False, extensions=[])
