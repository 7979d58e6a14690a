"""The user streams' WebSocket client (``producers/venues/ws1.py``) over real sockets on 127.0.0.1,
on the default loop and on uvloop: against the ``websockets`` library's server (a real RFC 6455
implementation) and against raw asyncio servers that write the frames a test wants, byte for
byte (split, batched, masked, silent); and, for what must happen inside one ``data_received``
call, the protocol fed bytes directly."""

from __future__ import annotations

import asyncio
import base64
import datetime
import hashlib
import ipaddress
import re
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from http import HTTPStatus

import pytest
import uvloop
from websockets.asyncio.server import ServerConnection, serve
from websockets.http11 import Request, Response

from producers.venues import ws1
from producers.venues.ws1 import ConnectFailed, ConnectionClosed, HandshakeFailed, OpenTimeout, WsConnection

pytestmark = pytest.mark.timeout(30)

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
REPORT = (b'{"e":"executionReport","E":1700000000000,"s":"BTCUSDT","c":"tf000000000000000000000000000000",'
          b'"S":"BUY","o":"LIMIT","f":"GTC","q":"0.00100000","p":"43000.10000000","x":"NEW","X":"NEW"}')  # fmt: skip

Run = Callable[[Callable[[], Awaitable[None]]], None]


@pytest.fixture(params=["asyncio", "uvloop"])
def run(request: pytest.FixtureRequest) -> Run:
    """Runs a test's ``main`` on the default event loop and on uvloop."""
    factory = uvloop.new_event_loop if request.param == "uvloop" else None

    def runner(main: Callable[[], Awaitable[None]]) -> None:
        async def bounded() -> None:
            await asyncio.wait_for(main(), 15)

        with asyncio.Runner(loop_factory=factory) as loop:
            loop.run(bounded())

    return runner


def accept(key: str) -> str:
    return base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()


def switch(key: str) -> bytes:
    return (f"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Accept: {accept(key)}\r\n\r\n").encode()  # fmt: skip


def frame(opcode: int, payload: bytes = b"", *, fin: bool = True, rsv: int = 0, mask: bytes | None = None) -> bytes:
    """A server frame, as a test wants it (unmasked unless ``mask``)."""
    first = (0x80 if fin else 0) | rsv | opcode
    size = len(payload)
    if size < 126:
        head = bytes((first, size))
    elif size < 65536:
        head = bytes((first, 126)) + size.to_bytes(2, "big")
    else:
        head = bytes((first, 127)) + size.to_bytes(8, "big")
    if mask is not None:
        head = bytes((head[0], head[1] | 0x80)) + head[2:] + mask
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return head + payload


def text(payload: bytes, **options: object) -> bytes:
    return frame(0x1, payload, **options)  # type: ignore[arg-type]


def close_frame(code: int, reason: str = "") -> bytes:
    return frame(0x8, code.to_bytes(2, "big") + reason.encode())


@dataclass
class Peer:
    """The server's end of one raw connection, after the handshake."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    request: str
    done: asyncio.Event = field(default_factory=asyncio.Event)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def read_frame(self) -> tuple[int, bytes]:
        """One client frame: (opcode, unmasked payload); asserts that it is final and masked."""
        first, second = await self.reader.readexactly(2)
        assert first & 0x80 and not first & 0x70, "a final frame, no reserved bits"
        assert second & 0x80, "a client's frames are masked"
        size = second & 0x7F
        if size == 126:
            size = int.from_bytes(await self.reader.readexactly(2), "big")
        elif size == 127:
            size = int.from_bytes(await self.reader.readexactly(8), "big")
        mask = await self.reader.readexactly(4)
        data = await self.reader.readexactly(size)
        return first & 0x0F, bytes(b ^ mask[i % 4] for i, b in enumerate(data))


async def close_both(ws: WsConnection, peer: Peer) -> None:
    """The client's closing handshake, the raw server answering it."""
    closing = asyncio.ensure_future(ws.close())
    while (await peer.read_frame())[0] != 0x8:
        pass
    await peer.send(close_frame(1000))
    await closing
    assert ws.close_code == 1000 and ws.failure is None


@asynccontextmanager
async def raw_server(answer: Callable[[str], bytes] = switch) -> AsyncIterator[tuple[str, asyncio.Queue[Peer]]]:
    """A TCP server that reads the opening handshake and writes ``answer(key)``; each connection
    then goes to the queue as a ``Peer`` for the test to drive."""
    peers: asyncio.Queue[Peer] = asyncio.Queue()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
        found = re.search(r"(?im)^sec-websocket-key: *(\S+)", head)
        assert found is not None
        writer.write(answer(found.group(1)))
        await writer.drain()
        peer = Peer(reader, writer, head)
        await peers.put(peer)
        try:
            await peer.done.wait()  # the test holds the connection open as long as it likes
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}/ws/secret-key", peers
    finally:
        server.close()


@asynccontextmanager
async def library_server(handler: Callable[[ServerConnection], Awaitable[None]],
                         **options: object) -> AsyncIterator[str]:  # fmt: skip
    """The ``websockets`` library's server running ``handler`` per connection."""
    async with serve(handler, "127.0.0.1", 0, compression=None, **options) as server:  # type: ignore[arg-type]
        yield f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}/stream?x=1"


async def until(condition: Callable[[], bool], timeout: float = 3.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.005)


# --- the opening handshake -----------------------------------------------------------------


def test_handshake_text_and_binary_messages_send_and_close(run: Run) -> None:
    seen: dict[str, object] = {}

    async def handler(connection: ServerConnection) -> None:
        assert connection.request is not None
        seen["path"] = connection.request.path
        seen["headers"] = connection.request.headers
        await connection.send("hello")
        await connection.send("wörld")
        await connection.send(b"\x00\x01\x02")
        async for message in connection:  # echoes the client
            await connection.send(message)
        seen["close_code"] = connection.close_code

    async def main() -> None:
        got: list[bytes] = []
        async with library_server(handler) as url:
            ws = await ws1.connect(url, got.append, headers={"X-Test": "yes", "Host": "evil.example"})
            assert ws.open
            await until(lambda: len(got) == 3)
            await ws.send('{"type":"subscribe"}')
            await ws.send(b"raw bytes as text")
            await until(lambda: len(got) == 5)
            assert got == [b"hello", "wörld".encode(), b"\x00\x01\x02", b'{"type":"subscribe"}', b"raw bytes as text"]
            await ws.close()
            assert not ws.open and ws.close_code == 1000 and ws.failure is None
            assert await ws.closed() == "closed (1000)"
            with pytest.raises(ConnectionClosed):
                await ws.send("too late")
            await until(lambda: "close_code" in seen)
        headers = seen["headers"]
        assert seen["path"] == "/stream?x=1" and seen["close_code"] == 1000
        assert headers["X-Test"] == "yes" and headers["Host"] == url.split("/")[2]  # type: ignore[index]
        assert headers["User-Agent"] == "tickflow"  # type: ignore[index]

    run(main)


def test_a_wrong_accept_fails_the_handshake(run: Run) -> None:
    async def main() -> None:
        async with raw_server(lambda key: switch(key + "x")) as (url, _):
            with pytest.raises(HandshakeFailed, match="Sec-WebSocket-Accept") as failed:
                await ws1.connect(url)
        assert failed.value.status == 101 and isinstance(failed.value, OSError)
        assert "secret-key" not in str(failed.value)  # the path (a listenKey) is never in a message

    run(main)


def test_an_answer_other_than_101_fails_the_handshake(run: Run) -> None:
    def refuse(connection: ServerConnection, request: Request) -> Response:
        return connection.respond(HTTPStatus.FORBIDDEN, "listenKey does not exist\n")

    async def main() -> None:
        async with library_server(lambda c: c.wait_closed(), process_request=refuse) as url:
            with pytest.raises(HandshakeFailed, match="HTTP 403 Forbidden") as failed:
                await ws1.connect(url)
            assert failed.value.status == 403 and "listenKey does not exist" in str(failed.value)
        async with raw_server(lambda key: b"SSH-2.0-OpenSSH_9.2\r\n\r\n") as (url, _):
            with pytest.raises(HandshakeFailed, match="not an HTTP answer") as failed:
                await ws1.connect(url)
            assert failed.value.status is None
        no_upgrade = "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n"
        async with raw_server(lambda key: no_upgrade.format(accept(key)).encode()) as (url, _):
            with pytest.raises(HandshakeFailed, match="Upgrade: websocket"):
                await ws1.connect(url)
        deflate = b"Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n"
        async with raw_server(lambda key: switch(key)[:-2] + deflate) as (url, _):
            with pytest.raises(HandshakeFailed, match="unrequested extension"):
                await ws1.connect(url)

    run(main)


def test_open_timeout_and_connect_failures(run: Run) -> None:
    async def main() -> None:
        async with raw_server(lambda key: b"HTTP/1.1 101 Switching") as (url, _):  # an answer that never ends
            started = asyncio.get_running_loop().time()
            with pytest.raises(OpenTimeout, match="not open within 0.3s") as failed:
                await ws1.connect(url, open_timeout=0.3)
            assert asyncio.get_running_loop().time() - started < 1.0
            assert isinstance(failed.value, TimeoutError) and isinstance(failed.value, OSError)
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        with pytest.raises(ConnectFailed, match="could not connect") as refused:
            await ws1.connect(f"ws://127.0.0.1:{port}/")
        assert isinstance(refused.value.__cause__, ConnectionRefusedError)
        with pytest.raises(ValueError, match="ws:// or wss://"):
            await ws1.connect("http://127.0.0.1/")
        with pytest.raises(ValueError, match="CR or LF"):
            await ws1.connect("ws://127.0.0.1/", headers={"X-Evil": "a\r\nInjected: 1"})

    run(main)


def test_wss_with_a_given_ssl_context(run: Run, tmp_path: object) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .sign(key, hashes.SHA256()))  # fmt: skip
    pem = cert.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())  # fmt: skip
    path = tmp_path / "server.pem"  # type: ignore[operator]
    path.write_bytes(pem + key_pem)
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(path)
    client_context = ssl.create_default_context(cadata=pem.decode())

    async def handler(connection: ServerConnection) -> None:
        await connection.send(REPORT)
        await connection.wait_closed()

    async def main() -> None:
        got: list[bytes] = []
        async with library_server(handler, ssl=server_context) as url:
            url = url.replace("ws://", "wss://")
            with pytest.raises(ConnectFailed):  # the default context does not trust a self-signed certificate
                await ws1.connect(url)
            ws = await ws1.connect(url, got.append, ssl_context=client_context)
            await until(lambda: got == [REPORT])
            await ws.close()
            assert ws.close_code == 1000

    run(main)


# --- frames ----------------------------------------------------------------------------------


def test_frames_arriving_together_or_split_are_delivered_whole_and_in_order(run: Run) -> None:
    sizes = [0, 1, 125, 126, 400, 65535, 65536, 70000, 3]  # 7-bit, 16-bit and 64-bit lengths

    def payload(i: int, size: int) -> bytes:
        return bytes((i + j) % 251 for j in range(size))

    async def main() -> None:
        got: list[bytes] = []
        async with raw_server() as (url, peers):
            ws = await ws1.connect(url, got.append, max_size=2**17)
            peer = await peers.get()
            burst = b"".join(text(payload(i, size)) for i, size in enumerate(sizes))
            await peer.send(burst)  # one write: many frames per read
            await until(lambda: len(got) == len(sizes))
            assert got == [payload(i, size) for i, size in enumerate(sizes)]
            got.clear()
            for i in range(0, len(burst), 7):  # then in 7-byte pieces: headers and payloads split anywhere
                await peer.send(burst[i : i + 7])
            await until(lambda: len(got) == len(sizes))
            assert got == [payload(i, size) for i, size in enumerate(sizes)]
            await close_both(ws, peer)

    run(main)


def test_fragmented_messages_are_reassembled(run: Run) -> None:
    async def handler(connection: ServerConnection) -> None:
        await connection.send(["frag", "men", "ted"])  # the library sends an iterable as fragments
        await connection.send([b"\x01", b"\x02"])
        await connection.wait_closed()

    async def main() -> None:
        got: list[bytes] = []
        async with library_server(handler) as url:
            ws = await ws1.connect(url, got.append)
            await until(lambda: len(got) == 2)
            assert got == [b"fragmented", b"\x01\x02"]
            await ws.close()
        async with raw_server() as (url, peers):  # a ping between the fragments is answered in between
            ws = await ws1.connect(url, got.append)
            peer = await peers.get()
            await peer.send(text(b"one ", fin=False) + frame(0x9, b"p1") + frame(0x0, b"two ", fin=False))
            assert await peer.read_frame() == (0xA, b"p1")
            await peer.send(frame(0x0, b"three") + text(b"after"))
            await until(lambda: len(got) == 4)
            assert got[2:] == [b"one two three", b"after"]
            await close_both(ws, peer)

    run(main)


def test_pings_are_answered_and_client_frames_are_masked(run: Run) -> None:
    answered: list[float] = []

    async def handler(connection: ServerConnection) -> None:
        answered.append(await asyncio.wait_for(await connection.ping(b"are you there"), 2))
        await connection.wait_closed()

    async def main() -> None:
        async with library_server(handler) as url:
            ws = await ws1.connect(url, lambda _: None)
            await until(lambda: bool(answered))
            await ws.close()
        async with raw_server() as (url, peers):
            ws = await ws1.connect(url, lambda _: None)
            peer = await peers.get()
            await peer.send(frame(0x9, b"raw ping"))
            assert await peer.read_frame() == (0xA, b"raw ping")
            await ws.send("x" * 300)  # a 16-bit length, masked
            assert await peer.read_frame() == (0x1, b"x" * 300)
            close = asyncio.ensure_future(ws.close(1000, "bye"))
            assert await peer.read_frame() == (0x8, (1000).to_bytes(2, "big") + b"bye")
            await peer.send(close_frame(1000))
            await close
            assert ws.close_code == 1000

    run(main)


def test_a_server_close_is_answered_and_its_reason_reported(run: Run) -> None:
    server_saw: list[int | None] = []

    async def handler(connection: ServerConnection) -> None:
        await connection.send("last words")
        await connection.close(1001, "going away")
        server_saw.append(connection.protocol.close_rcvd.code if connection.protocol.close_rcvd else None)

    async def main() -> None:
        got: list[bytes] = []
        async with library_server(handler) as url:
            ws = await ws1.connect(url, got.append)
            assert await asyncio.wait_for(ws.closed(), 3) == "closed by the server (1001: going away)"
            assert (ws.close_code, ws.close_reason, ws.failure) == (1001, "going away", None)
            assert got == [b"last words"]
            await until(lambda: bool(server_saw))
            assert server_saw == [1001]  # our close frame echoed its code
            await ws.close()  # already over: returns at once

    run(main)


def test_a_message_over_max_size_closes_with_1009(run: Run) -> None:
    server_saw: list[int | None] = []

    async def handler(connection: ServerConnection) -> None:
        await connection.send("a" * 900)
        await connection.send("b" * 2000)
        await connection.wait_closed()
        server_saw.append(connection.close_code)

    async def main() -> None:
        got: list[bytes] = []
        async with library_server(handler) as url:
            ws = await ws1.connect(url, got.append, max_size=1000)
            why = await asyncio.wait_for(ws.closed(), 3)
            assert "over max_size 1000" in why and "1009" in why
            assert got == [b"a" * 900]
            await until(lambda: bool(server_saw))
            assert server_saw == [1009]

    run(main)


@pytest.mark.parametrize(
    ("bad", "why"),
    [
        (text(b"masked", mask=b"\x01\x02\x03\x04"), "masked frame"),
        (text(b"compressed?", rsv=0x40), "reserved bits"),
        (frame(0x3, b"?"), "reserved opcode 0x3"),
        (frame(0x0, b"orphan"), "continuation frame without a message"),
        (frame(0x9, b"x", fin=False), "fragmented control frame"),
        (frame(0x9, b"x" * 126), "control frame of 126 bytes"),
    ],
)
def test_a_frame_breaking_the_protocol_closes_with_1002(run: Run, bad: bytes, why: str) -> None:
    async def main() -> None:
        got: list[bytes] = []
        async with raw_server() as (url, peers):
            ws = await ws1.connect(url, got.append)
            peer = await peers.get()
            await peer.send(text(b"before") + bad + text(b"after"))
            assert await peer.read_frame() == (0x8, (1002).to_bytes(2, "big"))
            reason = await asyncio.wait_for(ws.closed(), 3)
            assert why in reason and "protocol error" in reason and "1002" in reason
            assert got == [b"before"] and ws.close_code is None
            assert await peer.reader.read() == b""  # and the client closed the connection

    run(main)


def test_a_silent_server_is_noticed_within_ping_interval_plus_ping_timeout(run: Run) -> None:
    async def main() -> None:
        async with raw_server() as (url, peers):
            loop = asyncio.get_running_loop()
            started = loop.time()
            ws = await ws1.connect(url, lambda _: None, ping_interval=0.2, ping_timeout=0.3)
            peer = await peers.get()
            opcode, payload = await peer.read_frame()  # our ping, never answered
            assert opcode == 0x9 and len(payload) == 4
            reason = await asyncio.wait_for(ws.closed(), 2)
            took = loop.time() - started
            assert 0.45 <= took < 0.5 + 0.7, took
            assert "no pong within 0.3s" in reason and "1011" in reason
            assert await peer.read_frame() == (0x8, (1011).to_bytes(2, "big"))

        async with raw_server() as (url, peers):  # a server that answers keeps the connection
            ws = await ws1.connect(url, lambda _: None, ping_interval=0.1, ping_timeout=0.1)
            peer = await peers.get()
            for _ in range(4):
                opcode, payload = await peer.read_frame()
                assert opcode == 0x9
                await peer.send(frame(0xA, payload))
            assert ws.open
            await close_both(ws, peer)

    run(main)


def test_reading_waits_for_start(run: Run) -> None:
    async def handler(connection: ServerConnection) -> None:
        for i in range(3):
            await connection.send(f"early {i}")
        await connection.wait_closed()

    async def main() -> None:
        async with library_server(handler) as url:
            ws = await ws1.connect(url)  # no callback yet: the caller subscribes first
            await ws.send("subscribe")
            await asyncio.sleep(0.1)
            got: list[bytes] = []
            ws.start(got.append)
            await until(lambda: len(got) == 3)
            assert got == [b"early 0", b"early 1", b"early 2"]
            with pytest.raises(RuntimeError):
                ws.start(got.append)
            await ws.close()
            assert ws.close_code == 1000

    run(main)


def test_a_callback_that_raises_ends_the_connection(run: Run) -> None:
    async def handler(connection: ServerConnection) -> None:
        await connection.send("boom")
        await connection.wait_closed()

    def explode(_: bytes) -> None:
        raise KeyError("the caller's bug")

    async def main() -> None:
        async with library_server(handler) as url:
            ws = await ws1.connect(url, explode)
            reason = await asyncio.wait_for(ws.closed(), 3)
            assert "on_message raised KeyError" in reason and "1011" in reason

    run(main)


# --- the protocol fed directly: what one data_received call does --------------------------------


class FakeTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.written: list[bytes] = []
        self.closing = False
        self.paused = False

    def write(self, data: bytes) -> None:  # type: ignore[override]
        self.written.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def abort(self) -> None:
        self.closing = True

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False


def opened(on_message: Callable[[bytes], object], max_size: int = 2**20) -> tuple[WsConnection, FakeTransport]:
    key = base64.b64encode(b"0123456789abcdef").decode()
    conn = WsConnection(b"GET / HTTP/1.1\r\n\r\n", key, "ws://test", on_message, max_size=max_size,
                        ping_interval=None, ping_timeout=None, close_timeout=1.0)  # fmt: skip
    transport = FakeTransport()
    conn.connection_made(transport)
    conn.data_received(switch(key) + text(b"with the answer"))
    assert conn.open
    return conn, transport


def test_every_frame_of_one_read_is_delivered_within_that_call() -> None:
    async def main() -> None:
        got: list[bytes] = []
        conn, transport = opened(got.append)
        assert got == [b"with the answer"]
        got.clear()
        reports = [REPORT + str(i).encode() for i in range(50)]
        conn.data_received(b"".join(text(r) for r in reports) + frame(0x9, b"hb") + text(b"x" * 70000)[:100])
        assert got == reports  # synchronously: nothing awaited in between
        assert transport.written and transport.written[-1][0] == 0x8A  # the pong went out in the same call
        conn.data_received(text(b"x" * 70000)[100:] + text(b"next"))
        assert got[-2:] == [b"x" * 70000, b"next"]

        got.clear()  # fragments beyond max_size, each one under it
        conn, transport = opened(got.append, max_size=1000)
        conn.data_received(text(b"a" * 600, fin=False) + frame(0x0, b"b" * 600))
        assert got == [b"with the answer"] and not conn.open and transport.closing
        assert transport.written[-1][:2] == b"\x88\x82"  # a masked close frame with a 2-byte payload
        assert "1009" in (conn.failure or "")
        conn.data_received(text(b"ignored"))  # what follows the end is dropped
        assert got == [b"with the answer"]

    asyncio.run(main())


def test_a_close_frame_with_a_bad_code_or_reason_is_a_protocol_error() -> None:
    async def main() -> None:
        for payload, code, why in [
            ((999).to_bytes(2, "big"), 1002, "close code 999"),
            ((1006).to_bytes(2, "big"), 1002, "close code 1006"),
            (b"\x03", 1002, "close frame of 1 byte"),
            ((1000).to_bytes(2, "big") + b"\xff\xfe", 1007, "not UTF-8"),
        ]:
            conn, _ = opened(lambda _: None)
            conn.data_received(frame(0x8, payload))
            assert why in (conn.failure or "") and str(code) in (conn.failure or "")
        conn, transport = opened(lambda _: None)
        conn.data_received(frame(0x8, b""))  # a close without a code: 1005, answered with an empty close
        assert conn.close_code == 1005 and conn.failure is None and transport.closing
        assert transport.written[-1][:2] == b"\x88\x80"
        conn, _ = opened(lambda _: None)
        conn.data_received(close_frame(4000, "app-defined"))
        assert (conn.close_code, conn.close_reason) == (4000, "app-defined")

    asyncio.run(main())
