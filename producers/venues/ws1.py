"""A lean WebSocket client (RFC 6455) for the private user streams, delivering each message to a
callback inside ``data_received``.

Why not the ``websockets`` library's client: a user stream receives a few small JSON text frames
per order, and the library spends about 45 µs of CPU on each (frames parsed by a generator per
frame, every message queued and handed to a waiting task through a future). This client is one
``asyncio.Protocol`` per connection (on uvloop or the default loop): every complete frame of a read
is parsed in one ``data_received`` call, and each data message goes synchronously to
``on_message(payload: bytes)``: no task, no queue, no await per message. The keepalive is two
timer handles. ``bench/ws_client_bench.py`` measures it against the library.

Scope, on purpose: a client of ``ws://`` and ``wss://`` URLs; no extensions (no compression),
no subprotocols, no redirects, no proxies. Messages are delivered as ``bytes``, text or binary
alike; a text message's UTF-8 is not checked here (the caller's JSON decoder checks it). A
message larger than ``max_size`` closes the connection with 1009; a frame that breaks the
protocol (masked, reserved bits or opcodes, a bad control frame or fragment) with 1002.

Our pings go out every ``ping_interval`` seconds; no pong within ``ping_timeout`` ends the
connection (a half-open connection sends nothing and raises nothing). The server's pings are
answered, its close echoed; ``close`` runs the closing handshake. ``closed()`` waits for the end
and says why it ended; ``close_code`` / ``close_reason`` are what the server's close frame said.

Failures to open are told apart, all ``OSError`` (so a reconnect loop's ``except OSError`` holds):

* ``ConnectFailed``: no connection could be opened (refused, unreachable, TLS failed).
* ``HandshakeFailed``: the server answered, but not with a valid switch to WebSocket
  (``status``: its HTTP status, e.g. 403 or 404; 101 with a wrong ``Sec-WebSocket-Accept``).
* ``OpenTimeout`` (also a ``TimeoutError``): not open within ``open_timeout``.
* ``ConnectionClosed``: ``send`` on a connection that is closing or closed.

Messages never carry the URL's path or query (a Binance stream's path is its listenKey).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import ssl
from collections.abc import Callable, Mapping
from urllib.parse import urlsplit

from producers.venues.http1 import parse_status_line

try:
    from websockets.speedups import apply_mask as _apply_mask
except ImportError:  # pragma: no cover - websockets is a project dependency, its C speedups usually built

    def _apply_mask(data: bytes, mask: bytes) -> bytes:
        """XOR with the 4-byte mask repeated, as two big integers (client frames here are tiny)."""
        size = len(data)
        if not size:
            return b""
        key = int.from_bytes((mask * (size // 4 + 1))[:size], "big")
        return (int.from_bytes(data, "big") ^ key).to_bytes(size, "big")


__all__ = [
    "ConnectFailed",
    "ConnectionClosed",
    "HandshakeFailed",
    "OnMessage",
    "OpenTimeout",
    "WsConnection",
    "WsError",
    "connect",
]

#: A handshake answer's head longer than this is not a WebSocket server's: stop reading.
MAX_HEAD = 64 * 1024
_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#: Headers the handshake writes itself; a caller's own are dropped so the request never has two.
_RESERVED = frozenset({
    "host", "upgrade", "connection", "sec-websocket-key", "sec-websocket-version", "sec-websocket-extensions",
    "sec-websocket-accept", "content-length", "transfer-encoding",
})  # fmt: skip
#: Close codes a peer may send (RFC 6455 7.4.1, and the IANA registry's 1012-1014).
_PEER_CODES = frozenset({1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014})

_CONT, _TEXT, _BINARY, _CLOSE, _PING, _PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
# Connection states.
_CONNECTING, _OPEN, _CLOSING, _CLOSED = range(4)

OnMessage = Callable[[bytes], object]


class WsError(OSError):
    """Every failure of this module (an ``OSError``, as the transport's own errors are)."""


class ConnectFailed(WsError):
    """No connection to the server could be opened (refused, unreachable, TLS failed)."""


class HandshakeFailed(WsError):
    """The server did not switch to WebSocket as RFC 6455 requires. ``status``: its HTTP status
    (None when the answer was not HTTP at all)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class OpenTimeout(WsError, TimeoutError):
    """The connection was not open (TCP, TLS and the handshake) within ``open_timeout``."""


class ConnectionClosed(WsError):
    """The connection is closing or closed: nothing can be sent on it."""


def _frame(opcode: int, payload: bytes) -> bytes:
    """One final client frame: masked, as RFC 6455 5.3 requires of a client."""
    size = len(payload)
    if size < 126:
        head = bytes((0x80 | opcode, 0x80 | size))
    elif size < 65536:
        head = bytes((0x80 | opcode, 0xFE)) + size.to_bytes(2, "big")
    else:
        head = bytes((0x80 | opcode, 0xFF)) + size.to_bytes(8, "big")
    mask = os.urandom(4)
    return head + mask + _apply_mask(payload, mask)


def _close_payload(code: int, reason: str) -> bytes:
    data = reason.encode()[:123]  # a control frame's payload is at most 125 bytes
    return code.to_bytes(2, "big") + data.decode("utf-8", "ignore").encode()


def _discard(_: bytes) -> None:
    """The callback of a connection closed before it was started: what still comes is dropped."""


class WsConnection(asyncio.Protocol):
    """One client connection; made by ``connect``.

    ``on_message`` (given to ``connect``, or later to ``start``) gets each complete data message
    as ``bytes``, synchronously, in the order received. Until it is given, reading is paused: what
    the server sends waits in the socket (the caller can subscribe, then start reading). It must
    not raise: if it does, the connection is closed with 1011 and ``closed()`` names the error.
    Make it and use it on one event loop."""

    def __init__(
        self,
        request: bytes,
        key: str,
        origin: str,
        on_message: OnMessage | None,
        *,
        max_size: int,
        ping_interval: float | None,
        ping_timeout: float | None,
        close_timeout: float,
    ) -> None:
        self.origin = origin
        self.max_size = max_size
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.close_timeout = close_timeout
        self.transport: asyncio.Transport | None = None
        #: The server's close frame: its code (1005 when it carried none) and reason; None without one.
        self.close_code: int | None = None
        self.close_reason = ""
        #: Why this side ended the connection, or how the connection was lost; None after a clean close.
        self.failure: str | None = None
        self._request = request
        self._accept = base64.b64encode(hashlib.sha1((key + _GUID).encode()).digest()).decode()
        self._on_message = on_message
        self._state = _CONNECTING
        #: Frames are parsed as they come: open (or closing) and a callback given.
        self._live = False
        self._buf = bytearray()
        #: Bytes the buffer must hold before the next frame can be complete.
        self._need = 0
        self._fragments: list[bytes] | None = None
        self._fragments_size = 0
        self._close_sent = False
        #: The server closed first: our close frame was the answer.
        self._echoed = False
        self._reading_paused = False
        self._loop = asyncio.get_running_loop()
        self._opened: asyncio.Future[None] = self._loop.create_future()
        self._ended: asyncio.Future[None] = self._loop.create_future()
        self._drain: asyncio.Future[None] | None = None
        self._write_paused = False
        self._ping_payload = b""
        self._ping_handle: asyncio.TimerHandle | None = None
        self._pong_handle: asyncio.TimerHandle | None = None
        self._abort_handle: asyncio.TimerHandle | None = None

    # --- the caller's side ---------------------------------------------------------------------

    @property
    def open(self) -> bool:
        """Open: messages can be sent."""
        return self._state == _OPEN

    def start(self, on_message: OnMessage) -> None:
        """Start reading: ``on_message`` gets every message from here on (and those that came
        with the handshake's answer), the first ones maybe before this returns."""
        if self._on_message is not None:
            raise RuntimeError("this connection already has its on_message")
        self._on_message = on_message
        if self._state in (_OPEN, _CLOSING):
            self._live = True
            if self._buf:
                data = bytes(self._buf)
                self._buf.clear()
                self._receive(data)
        self._resume_reading()

    async def send(self, message: str | bytes, *, binary: bool = False) -> None:
        """One message (a text frame unless ``binary``), written at once; waits only while the
        transport's write buffer is over its high-water mark."""
        if self._state != _OPEN:
            raise ConnectionClosed(f"WebSocket to {self.origin} is not open: {self._why()}")
        data = message.encode() if isinstance(message, str) else bytes(message)
        self._write(_frame(_BINARY if binary else _TEXT, data))
        if self._write_paused:
            if self._drain is None:
                self._drain = self._loop.create_future()
            await asyncio.shield(self._drain)

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """The closing handshake: send a close frame, wait up to ``close_timeout`` for the
        server's, then close the transport (abort it if it does not close)."""
        if self._state == _OPEN:
            self._state = _CLOSING
            self._close_sent = True
            self._write(_frame(_CLOSE, _close_payload(code, reason)))
            self._cancel_keepalive()
            transport = self.transport
            if transport is not None:
                self._abort_handle = self._loop.call_later(self.close_timeout, self._close_timed_out)
            if self._on_message is None:  # never started: read on, to see the server's close frame
                self.start(_discard)
        elif self._state == _CONNECTING:
            self.abort()
        await asyncio.shield(self._ended)

    def abort(self) -> None:
        """Drop the connection at once (no closing handshake)."""
        if self.failure is None and self.close_code is None:
            self.failure = "aborted"
        self._state = _CLOSED
        self._live = False
        if self.transport is not None:
            self.transport.abort()  # connection_lost follows
        else:  # never connected: nothing will call connection_lost
            self._cancel_keepalive()
            if not self._ended.done():
                self._ended.set_result(None)

    async def closed(self) -> str:
        """Wait for the connection's end; why it ended (the close code and reason, or the error)."""
        await asyncio.shield(self._ended)
        return self._why()

    async def __aenter__(self) -> WsConnection:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    def _why(self) -> str:
        if self.failure is not None:
            return self.failure
        if self.close_code is not None:
            by = "closed" if self._close_sent and not self._echoed else "closed by the server"
            return f"{by} ({self.close_code}{': ' + self.close_reason if self.close_reason else ''})"
        return "open" if self._state == _OPEN else "closing"

    # --- asyncio.Protocol ----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        transport.write(self._request)  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        if not self._live:  # the handshake's answer, bytes before ``start``, or after the end
            self._data_not_live(data)
            return
        buf = self._buf
        if buf:
            buf += data
            if len(buf) < self._need:  # the frame in the buffer is still incomplete
                return
            data = bytes(buf)
            buf.clear()
        self._receive(data)

    def eof_received(self) -> bool:
        return False  # let the transport close: connection_lost tells whether a close frame came

    def connection_lost(self, exc: Exception | None) -> None:
        self._state = _CLOSED
        self._live = False
        self._cancel_keepalive()
        if self._abort_handle is not None:
            self._abort_handle.cancel()
            self._abort_handle = None
        if self.failure is None and self.close_code is None:
            self.failure = f"connection lost: {exc!r}" if exc is not None else "connection closed without a close frame"
        if not self._opened.done():
            self._opened.set_exception(HandshakeFailed(f"{self.origin}: {self.failure} during the opening handshake"))
            self._opened.exception()  # retrieved: a caller that timed out will not log it as never read
        if self._drain is not None and not self._drain.done():
            self._drain.set_result(None)
        if not self._ended.done():
            self._ended.set_result(None)

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        if self._drain is not None:
            if not self._drain.done():
                self._drain.set_result(None)
            self._drain = None

    # --- reading -------------------------------------------------------------------------------

    def _data_not_live(self, data: bytes) -> None:
        if self._state == _CONNECTING:
            self._buf += data
            self._handshake()
        elif self._state != _CLOSED:  # open but not started: keep it for ``start``
            self._buf += data
            self._pause_reading()

    def _handshake(self) -> None:
        buf = self._buf
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            if len(buf) > MAX_HEAD:
                self._handshake_failed(HandshakeFailed(f"{self.origin}: handshake answer head over {MAX_HEAD} bytes"))
            return
        head = buf[:end].decode("latin-1")
        del buf[: end + 4]
        try:
            self._check_answer(head)
        except HandshakeFailed as exc:
            self._handshake_failed(exc)
            return
        if self._opened.done():  # the opening was given up (timed out) just as the answer came
            return
        self._state = _OPEN
        self._opened.set_result(None)
        if self.ping_interval is not None:
            self._ping_handle = self._loop.call_later(self.ping_interval, self._ping)
        if self._on_message is None:
            self._pause_reading()  # what came with the answer waits in the buffer for ``start``
        else:
            self._live = True
            if buf:
                data = bytes(buf)
                buf.clear()
                self._receive(data)

    def _check_answer(self, head: str) -> None:
        status_line, _, fields_text = head.partition("\r\n")
        if (parsed := parse_status_line(status_line)) is None:
            raise HandshakeFailed(f"{self.origin}: not an HTTP answer: {status_line[:60]!r}")
        _, status, reason = parsed
        if status != 101:
            body = bytes(self._buf[:200]).decode("utf-8", "replace").strip()
            raise HandshakeFailed(
                f"{self.origin}: HTTP {status} {reason.strip()} instead of 101 Switching Protocols"
                + (f": {body}" if body else ""), status)  # fmt: skip
        fields: dict[str, str] = {}
        for line in fields_text.split("\r\n") if fields_text else ():
            name, sep, value = line.partition(":")
            if not sep:
                raise HandshakeFailed(f"{self.origin}: bad header line {line[:60]!r}", status)
            name, value = name.strip().lower(), value.strip()
            fields[name] = f"{fields[name]}, {value}" if name in fields else value
        tokens = {t.strip().lower() for t in fields.get("connection", "").split(",")}
        if "upgrade" not in tokens:
            raise HandshakeFailed(f"{self.origin}: no 'Connection: Upgrade' in the answer", status)
        if "websocket" not in {t.strip().lower() for t in fields.get("upgrade", "").split(",")}:
            raise HandshakeFailed(f"{self.origin}: no 'Upgrade: websocket' in the answer", status)
        if fields.get("sec-websocket-accept") != self._accept:
            raise HandshakeFailed(f"{self.origin}: wrong Sec-WebSocket-Accept in the answer", status)
        if extensions := fields.get("sec-websocket-extensions"):  # we offered none
            raise HandshakeFailed(f"{self.origin}: unrequested extension {extensions!r}", status)
        asked = b"\r\nsec-websocket-protocol:" in self._request.lower()
        if (protocol := fields.get("sec-websocket-protocol")) and not asked:
            raise HandshakeFailed(f"{self.origin}: unrequested subprotocol {protocol!r}", status)

    def _handshake_failed(self, exc: HandshakeFailed) -> None:
        self.failure = str(exc)
        if not self._opened.done():
            self._opened.set_exception(exc)
        self._state = _CLOSED
        self.transport.abort()  # type: ignore[union-attr]

    def _receive(self, data: bytes) -> None:
        try:
            self._frames(data)
        except Exception as exc:  # on_message raised: what it missed is unknown, so the connection ends
            self._fail(1011, f"on_message raised {exc!r}")

    def _frames(self, data: bytes) -> None:
        """Every complete frame in ``data``, each data message to ``on_message`` as it completes;
        the incomplete rest waits in the buffer."""
        on_message = self._on_message
        max_size = self.max_size
        size = len(data)
        at = 0
        while True:
            left = size - at
            if left < 2:
                need = 2
                break
            first = data[at]
            second = data[at + 1]
            if second & 0x80 or first & 0x70:
                self._fail(1002, "protocol error: " + ("masked frame" if second & 0x80 else "reserved bits set"))
                return
            opcode = first & 0x0F
            length = second & 0x7F
            if length < 126:
                head = 2
            else:
                if length == 126:
                    if left < 4:
                        need = 4
                        break
                    length = (data[at + 2] << 8) | data[at + 3]
                    head = 4
                else:
                    if left < 10:
                        need = 10
                        break
                    length = int.from_bytes(data[at + 2 : at + 10], "big")
                    head = 10
                if opcode >= 8:
                    self._fail(1002, f"protocol error: control frame of {length} bytes")
                    return
            if length > max_size and opcode < 8:  # refused before it is buffered
                self._fail(1009, f"message of {length} bytes over max_size {max_size}")
                return
            end = at + head + length
            if end > size:
                need = head + length
                break
            if 0 < opcode < 3:  # text or binary
                if self._fragments is not None:
                    self._fail(1002, "protocol error: a new message inside a fragmented one")
                    return
                if first & 0x80:
                    on_message(data[at + head : end])  # type: ignore[misc]
                    if not self._live:  # the callback ended the connection
                        return
                else:
                    self._fragments = [data[at + head : end]]
                    self._fragments_size = length
            elif opcode == _CONT:
                fragments = self._fragments
                if fragments is None:
                    self._fail(1002, "protocol error: a continuation frame without a message")
                    return
                self._fragments_size += length
                if self._fragments_size > max_size:
                    self._fail(1009, f"message of over {max_size} bytes (max_size)")
                    return
                fragments.append(data[at + head : end])
                if first & 0x80:
                    self._fragments = None
                    on_message(b"".join(fragments))  # type: ignore[misc]
                    if not self._live:
                        return
            elif opcode >= 8:
                if not first & 0x80:
                    self._fail(1002, "protocol error: a fragmented control frame")
                    return
                if not self._control(opcode, data[at + head : end]):
                    return
            else:
                self._fail(1002, f"protocol error: reserved opcode {opcode:#x}")
                return
            at = end
        if at < size:
            self._buf += memoryview(data)[at:]
        self._need = need

    def _control(self, opcode: int, payload: bytes) -> bool:
        """A ping, pong or close frame; False when the connection ends with it."""
        if opcode == _PING:
            if self._state == _OPEN:
                self._write(_frame(_PONG, payload))
            return True
        if opcode == _PONG:
            if self._pong_handle is not None and payload == self._ping_payload:
                self._pong_handle.cancel()
                self._pong_handle = None
            return True
        if opcode != _CLOSE:
            self._fail(1002, f"protocol error: reserved opcode {opcode:#x}")
            return False
        if len(payload) == 1:
            self._fail(1002, "protocol error: a close frame of 1 byte")
            return False
        code = int.from_bytes(payload[:2], "big") if payload else 1005
        try:
            reason = payload[2:].decode()
        except UnicodeDecodeError:
            self._fail(1007, "protocol error: a close reason that is not UTF-8")
            return False
        if payload and code not in _PEER_CODES and not 3000 <= code <= 4999:
            self._fail(1002, f"protocol error: close code {code}")
            return False
        self.close_code, self.close_reason = code, reason
        if not self._close_sent:  # the server's close: answered with its code, then the end
            self._close_sent = self._echoed = True
            self._write(_frame(_CLOSE, payload[:2]))
        self._state = _CLOSED
        self._live = False
        self._shutdown()
        return False

    # --- writing, keepalive, the end -----------------------------------------------------------

    def _write(self, data: bytes) -> None:
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.write(data)

    def _pause_reading(self) -> None:
        if not self._reading_paused and self.transport is not None and not self.transport.is_closing():
            self._reading_paused = True
            self.transport.pause_reading()

    def _resume_reading(self) -> None:
        if self._reading_paused:
            self._reading_paused = False
            if self.transport is not None and not self.transport.is_closing():
                self.transport.resume_reading()

    def _ping(self) -> None:
        self._ping_handle = None
        if self._state != _OPEN:
            return
        if self._pong_handle is None:  # the last ping was answered (or there was none): the next one
            self._ping_payload = os.urandom(4)
            self._write(_frame(_PING, self._ping_payload))
            if self.ping_timeout is not None:
                self._pong_handle = self._loop.call_later(self.ping_timeout, self._pong_missed)
        self._ping_handle = self._loop.call_later(self.ping_interval, self._ping)  # type: ignore[arg-type]

    def _pong_missed(self) -> None:
        self._pong_handle = None
        self._fail(1011, f"no pong within {self.ping_timeout:g}s of a ping")

    def _cancel_keepalive(self) -> None:
        for handle in (self._ping_handle, self._pong_handle):
            if handle is not None:
                handle.cancel()
        self._ping_handle = self._pong_handle = None

    def _fail(self, code: int, why: str) -> None:
        """End the connection from this side: a close frame with ``code`` (unless one went out
        already), then the transport closes."""
        if self.failure is None:
            self.failure = f"{why} (closed with {code})"
        if not self._close_sent and self._state in (_OPEN, _CLOSING):
            self._close_sent = True
            self._write(_frame(_CLOSE, _close_payload(code, "")))
        self._state = _CLOSED
        self._live = False
        self._cancel_keepalive()
        self._shutdown()

    def _shutdown(self) -> None:
        """Close the transport (it flushes the close frame first); abort it if that takes longer
        than ``close_timeout`` (a peer that does not read)."""
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.close()
            if self._abort_handle is None:
                self._abort_handle = self._loop.call_later(self.close_timeout, transport.abort)

    def _close_timed_out(self) -> None:
        self._abort_handle = None
        if self.failure is None and self.close_code is None:
            self.failure = f"no close frame from the server within {self.close_timeout:g}s"
        self._state = _CLOSED
        self._live = False
        if self.transport is not None:
            self.transport.abort()


async def connect(
    url: str,
    on_message: OnMessage | None = None,
    *,
    headers: Mapping[str, str] | None = None,
    open_timeout: float = 10.0,
    ping_interval: float | None = 20.0,
    ping_timeout: float | None = 20.0,
    close_timeout: float = 2.0,
    max_size: int = 2**20,
    ssl_context: ssl.SSLContext | None = None,
) -> WsConnection:
    """Open a WebSocket to ``url`` (``ws://`` or ``wss://``): TCP, TLS for ``wss`` (the default
    context unless ``ssl_context``), the opening handshake, all within ``open_timeout``.

    ``on_message``: each message's bytes; without it, reading waits for ``WsConnection.start``.
    ``headers``: extra request headers (the handshake's own are not overridden). ``max_size``:
    the largest message accepted (1009 above). ``ping_interval`` / ``ping_timeout``: None for no
    pings / no deadline on their pongs."""
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss"):
        raise ValueError(f"not a WebSocket URL (ws:// or wss://): scheme {parts.scheme!r}")
    host = parts.hostname
    if not host:
        raise ValueError("no host in the WebSocket URL")
    secure = parts.scheme == "wss"
    default_port = 443 if secure else 80
    port = parts.port or default_port
    name = f"[{host}]" if ":" in host else host
    host_header = name if port == default_port else f"{name}:{port}"
    origin = f"{parts.scheme}://{host_header}"
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")

    key = base64.b64encode(os.urandom(16)).decode()
    lines = [f"GET {target} HTTP/1.1\r\nHost: {host_header}\r\n"]
    extra = {name.lower(): (name, value) for name, value in (headers or {}).items()}
    if "user-agent" not in extra:  # some fronting proxies turn away a request without one
        extra["user-agent"] = ("User-Agent", "tickflow")
    for lower, (field, value) in extra.items():
        if lower not in _RESERVED:
            lines.append(f"{field}: {value}\r\n")
    lines.append(f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n")
    lines.append("Sec-WebSocket-Version: 13\r\n\r\n")
    text = "".join(lines)
    # A CR or LF inside the target, a name or a value would split the head (header injection):
    # the first part holds two lines, each header one, the fixed ones three, then the blank line.
    if text.count("\n") != len(lines) + 4 or text.count("\r") != len(lines) + 4:
        raise ValueError("CR or LF in the WebSocket URL or a header")

    loop = asyncio.get_running_loop()
    context = (ssl_context if ssl_context is not None else ssl.create_default_context()) if secure else None
    conn = WsConnection(text.encode("latin-1"), key, origin, on_message, max_size=max_size, ping_interval=ping_interval,
                        ping_timeout=ping_timeout, close_timeout=close_timeout)  # fmt: skip
    try:
        async with asyncio.timeout(open_timeout):
            try:
                await loop.create_connection(
                    lambda: conn, host, port, ssl=context, server_hostname=host if context is not None else None
                )
            except OSError as exc:  # refused, unreachable, DNS, TLS (ssl.SSLError is an OSError)
                raise ConnectFailed(f"could not connect to {origin}: {exc!r}") from exc
            await conn._opened
    except TimeoutError:
        conn.abort()
        raise OpenTimeout(f"WebSocket to {origin} not open within {open_timeout:g}s") from None
    except BaseException:
        conn.abort()
        raise
    return conn
