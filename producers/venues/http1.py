"""A lean HTTP/1.1 client pool for one origin, for the order path's small JSON exchanges.

Why not aiohttp's or httpx's client: the order router's requests are small signed JSON round trips
to one venue origin, and the general clients spend most of their CPU on what such a request does
not need (URL objects, cookie jars, tracing hooks, multi-origin connection keys, stream readers,
payload writers, timer contexts). This client is an ``asyncio.Protocol`` per connection: the
request goes out as one ``transport.write`` of one bytes object, the answer is parsed in
``data_received`` straight into a future, and the read timeouts are one timer for the whole pool
(each request has a deadline; the timer sweeps them). ``bench/http_client_bench.py`` measures
it against both.

Scope, on purpose: one origin (``http`` or ``https``), at most ``max_connections`` keep-alive
connections reused last-in first-out (the warmest first; the coldest age out), one request in
flight per connection (no pipelining), bodies framed by ``Content-Length``, ``chunked``, or the
connection's end. No redirects, cookies, proxies, or streaming: the whole answer is read, then
returned.

Failures are told apart for the caller's sake, because an order sent twice is worse than one
not sent:

* ``ConnectFailed``: no connection could be opened (refused, unreachable, timed out, TLS failed).
  The request never left.
* ``ReadTimeout``: the request was written and no complete answer came within ``read_timeout``.
  The server may have acted on it.
* ``ConnectionBroken``: the connection ended before a complete answer. ``sent`` says whether the
  request had been handed to the transport; ``reused`` and ``received`` whether the connection
  had carried an earlier exchange and whether any byte of this answer came, which together tell
  a server's idle close racing our request (safe to retry for a read) from a mid-answer break.
"""

from __future__ import annotations

import asyncio
import re
import ssl
import zlib
from collections import deque
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

__all__ = [
    "ConnectFailed",
    "ConnectionBroken",
    "Headers",
    "Http1Pool",
    "HttpError",
    "ProtocolError",
    "ReadTimeout",
    "Response",
]

#: A response head longer than this is not a venue's answer: stop reading rather than buffer it.
MAX_HEAD = 64 * 1024
#: Methods whose request carries content by definition: an empty one still says so (RFC 9110 8.6).
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
#: Headers the pool writes itself; a caller's own are dropped so a request never has two.
_RESERVED = frozenset({"host", "content-length", "connection", "transfer-encoding"})
_CHUNK_SIZE_RE = re.compile(rb"[0-9A-Fa-f]{1,16}")

# Parser stages of one response.
_HEAD, _LENGTH, _CHUNK_SIZE, _CHUNK_DATA, _TRAILERS, _UNTIL_CLOSE, _DONE = range(7)


class HttpError(Exception):
    """Every failure of this module."""


class ConnectFailed(HttpError):
    """No connection to the origin could be opened: the request was never sent."""


class ReadTimeout(HttpError):
    """The request was written but no complete response arrived within the read timeout."""


class ConnectionBroken(HttpError):
    """The connection ended before a complete response.

    ``sent``: the request bytes had been handed to the transport (the server may have acted).
    ``reused``: the connection had already carried an exchange (a keep-alive connection).
    ``received``: some bytes of this request's response had arrived."""

    def __init__(self, message: str, *, sent: bool, reused: bool = False, received: bool = False) -> None:
        super().__init__(message)
        self.sent = sent
        self.reused = reused
        self.received = received


class ProtocolError(ConnectionBroken):
    """The server answered something that is not HTTP/1.x; the connection is dropped. The request
    was sent, so to the caller it is a broken exchange like any other."""

    def __init__(self, message: str) -> None:
        super().__init__(message, sent=True, received=True)


class Headers(dict[str, str]):
    """Response headers, looked up case-insensitively.

    A ``dict`` of lower-cased names (repeated fields joined with ``", "``), so building it is one C
    call; only the lookups lower-case the name asked for. Iteration yields the lower-cased names."""

    __slots__ = ()

    def __getitem__(self, name: str) -> str:
        return dict.__getitem__(self, name.lower())

    def get(self, name: str, default: Any = None) -> Any:  # type: ignore[override]
        return dict.get(self, name.lower(), default)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and dict.__contains__(self, name.lower())


class Response:
    """One complete response: the body is read whole."""

    __slots__ = ("body", "headers", "reason", "status", "version")

    def __init__(self, status: int, reason: str, headers: Headers, body: bytes, version: str) -> None:
        self.status = status
        self.reason = reason
        self.headers = headers
        self.body = body
        self.version = version

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.reason!r} {len(self.body)} bytes>"


def _decode_content(encoding: str, body: bytes) -> bytes:
    """Undo a ``Content-Encoding`` we never asked for (we send no ``Accept-Encoding``) but some
    servers apply anyway; aiohttp's client did the same for the code this replaced."""
    encoding = encoding.strip().lower()
    try:
        if encoding in ("gzip", "x-gzip"):
            return zlib.decompress(body, 16 + zlib.MAX_WBITS)
        if encoding == "deflate":
            try:
                return zlib.decompress(body)
            except zlib.error:  # "deflate" as raw deflate, which some servers send
                return zlib.decompress(body, -zlib.MAX_WBITS)
    except zlib.error as exc:
        raise ProtocolError(f"undecodable {encoding} body: {exc}") from None
    return body  # identity, or a coding we do not know: the caller gets the bytes as they came


def _unfold(text: str) -> str:
    """Join obsolete folded header lines (a line starting with whitespace continues the last)."""
    if text[0] in " \t":
        raise ProtocolError("folded header line first")
    return re.sub(r"\r\n[ \t]+", " ", text)


def parse_status_line(line: str) -> tuple[str, int, str] | None:
    """``(version, status, reason)`` of an HTTP/1.x status line; None when it is not one."""
    version, _, rest = line.partition(" ")
    code, _, reason = rest.partition(" ")
    if version[:7] != "HTTP/1." or len(code) != 3 or not code.isdigit():
        return None
    return version, int(code), reason


class _Connection(asyncio.Protocol):
    """One keep-alive connection and the parser of the response in flight on it."""

    def __init__(self, pool: Http1Pool) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        #: The future of the request in flight; None while idle.
        self.waiter: asyncio.Future[Response] | None = None
        self.buf = bytearray()
        self.stage = _DONE
        self.no_body = False
        self.keep_alive = True
        self.closed = False
        #: Given back to the pool (its count already decremented): never counted twice.
        self.discarded = False
        self.reused = False
        self.received = False
        self.idle_since = 0.0
        #: When the request in flight times out (the loop's clock).
        self.deadline = 0.0
        self.remaining = 0
        self.chunks: list[bytes] = []
        self.status = 0
        self.reason = ""
        self.version = ""
        self.headers: Headers = Headers()

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        waiter = self.waiter
        if waiter is None or waiter.done():
            # Bytes nobody asked for (a late answer after a timeout, or a server that pipelines
            # on its own): what follows on this connection can no longer be matched to a request.
            self.keep_alive = False
            self.transport.abort()  # type: ignore[union-attr]
            return
        self.received = True
        try:
            if self.stage == _HEAD and not self.buf:
                # The usual case: the whole answer in one segment. Parse it from ``data`` itself,
                # without copying it through the buffer.
                end = data.find(b"\r\n\r\n")
                if end >= 0:
                    self._head(data[:end].decode("latin-1"))
                    stage = self.stage
                    if stage == _DONE:
                        if len(data) > end + 4:  # bytes past a bodiless answer: out of step
                            self.keep_alive = False
                        return
                    if stage == _LENGTH and len(data) - end - 4 == self.remaining:
                        self._finish(data[end + 4 :])
                        return
                    data = data[end + 4 :]
            self.buf += data
            self._parse()
        except ProtocolError as exc:
            self.keep_alive = False
            if not waiter.done():
                waiter.set_exception(exc)
            self.transport.abort()  # type: ignore[union-attr]

    def eof_received(self) -> bool:
        # Let the transport close; connection_lost decides whether that ended a response
        # (read-until-close framing) or broke one.
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.keep_alive = False
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            if self.stage == _UNTIL_CLOSE and exc is None:
                self._finish(bytes(self.buf))
            else:
                why = f": {exc!r}" if exc is not None else ""
                waiter.set_exception(ConnectionBroken(
                    f"connection to {self.pool.origin} closed before a complete response{why}",
                    sent=True, reused=self.reused, received=self.received,
                ))  # fmt: skip
        self.pool._lost(self)

    # The exchange

    def begin(self, waiter: asyncio.Future[Response], no_body: bool) -> None:
        self.waiter = waiter
        self.stage = _HEAD
        self.no_body = no_body
        self.received = False
        self.keep_alive = True

    def timed_out(self, waiter: asyncio.Future[Response]) -> None:
        if not waiter.done():
            waiter.set_exception(ReadTimeout(f"no complete response from {self.pool.origin} in time"))
            self.keep_alive = False
            # The late answer must never be read as the next request's: drop the connection.
            self.transport.abort()  # type: ignore[union-attr]

    def _finish(self, body: bytes) -> None:
        self.stage = _DONE
        if self.buf:  # bytes past the response: the connection is out of step, never reuse it
            self.keep_alive = False
            self.buf.clear()
        headers = self.headers
        if body and (coding := dict.get(headers, "content-encoding")) is not None:
            body = _decode_content(coding, body)
        self.waiter.set_result(Response(self.status, self.reason, headers, body, self.version))  # type: ignore[union-attr]

    def _parse(self) -> None:
        buf = self.buf
        while True:
            stage = self.stage
            if stage == _HEAD:
                end = buf.find(b"\r\n\r\n")
                if end < 0:
                    if len(buf) > MAX_HEAD:
                        raise ProtocolError(f"response head from {self.pool.origin} over {MAX_HEAD} bytes")
                    return
                head = buf[:end].decode("latin-1")
                del buf[: end + 4]
                self._head(head)
            elif stage == _LENGTH:
                remaining = self.remaining
                if len(buf) < remaining:
                    return
                body = bytes(buf[:remaining])
                del buf[:remaining]
                self._finish(body)
                return
            elif stage == _CHUNK_SIZE:
                end = buf.find(b"\r\n")
                if end < 0:
                    if len(buf) > 4096:
                        raise ProtocolError("chunk size line too long")
                    return
                size_text = bytes(buf[:end]).split(b";", 1)[0].strip()
                if _CHUNK_SIZE_RE.fullmatch(size_text) is None:
                    raise ProtocolError(f"bad chunk size {size_text[:20]!r}")
                del buf[: end + 2]
                size = int(size_text, 16)
                if size:
                    self.remaining = size
                    self.stage = _CHUNK_DATA
                else:
                    self.stage = _TRAILERS
            elif stage == _CHUNK_DATA:
                remaining = self.remaining
                if len(buf) < remaining + 2:
                    return
                if buf[remaining : remaining + 2] != b"\r\n":
                    raise ProtocolError("chunk data not followed by CRLF")
                self.chunks.append(bytes(buf[:remaining]))
                del buf[: remaining + 2]
                self.stage = _CHUNK_SIZE
            elif stage == _TRAILERS:
                if len(buf) < 2:
                    return
                if buf[:2] == b"\r\n":
                    del buf[:2]
                else:  # trailer fields (ignored), up to the empty line
                    end = buf.find(b"\r\n\r\n")
                    if end < 0:
                        if len(buf) > MAX_HEAD:
                            raise ProtocolError("trailers too long")
                        return
                    del buf[: end + 4]
                body = b"".join(self.chunks)
                self.chunks = []
                self._finish(body)
                return
            else:  # _UNTIL_CLOSE: the body is whatever comes until the end (connection_lost); _DONE
                return

    def _head(self, head: str) -> None:
        status_line, _, fields_text = head.partition("\r\n")
        if (parsed := parse_status_line(status_line)) is None:
            raise ProtocolError(f"not an HTTP/1.x status line: {status_line[:60]!r}")
        version, status, reason = parsed
        fields = Headers()
        if fields_text:
            if "\r\n " in fields_text or "\r\n\t" in fields_text or fields_text[0] in " \t":
                fields_text = _unfold(fields_text)
            setdefault = fields.setdefault  # dict's own: the names are already lower-cased
            count = 0
            for line in fields_text.split("\r\n"):
                name, sep, value = line.partition(":")
                if not sep or not name:
                    raise ProtocolError(f"bad header line {line[:60]!r}")
                value = value.strip()
                old = setdefault(name.lower(), value)
                count += 1
                if len(fields) != count:  # a repeated field: one value, comma-joined (RFC 9110 5.3)
                    count -= 1
                    dict.__setitem__(fields, name.lower(), f"{old}, {value}")
        if 100 <= status < 200:
            if status == 101:
                raise ProtocolError("unexpected 101 Switching Protocols")
            return  # an interim answer (100 Continue, 103 Early Hints): the final one follows
        self.status, self.reason, self.version, self.headers = status, reason, version, fields
        connection = dict.get(fields, "connection")
        if version == "HTTP/1.1":
            self.keep_alive = connection is None or "close" not in connection.lower()
        else:  # HTTP/1.0 keeps the connection only when it says so
            self.keep_alive = connection is not None and "keep-alive" in connection.lower()
        if self.no_body or status == 204 or status == 304:
            self._finish(b"")
            return
        coding = dict.get(fields, "transfer-encoding")
        if coding is not None:
            if coding.lower().rstrip().endswith("chunked"):
                self.chunks = []
                self.stage = _CHUNK_SIZE
            else:  # a coding we cannot frame: the body ends with the connection
                self.keep_alive = False
                self.stage = _UNTIL_CLOSE
            return
        length = dict.get(fields, "content-length")
        if length is not None:
            if not length.isdigit():
                values = {part.strip() for part in length.split(",")}
                if len(values) != 1 or not (length := values.pop()).isdigit():
                    raise ProtocolError(f"bad Content-Length {length[:40]!r}")
            self.remaining = int(length)
            if self.remaining:
                self.stage = _LENGTH
            else:
                self._finish(b"")
            return
        self.keep_alive = False  # no framing: HTTP/1.0 style, read until the server closes
        self.stage = _UNTIL_CLOSE


class Http1Pool:
    """Keep-alive HTTP/1.1 connections to one origin, at most ``max_connections`` of them.

    ``request`` takes a free connection (the most recently used first), opening one while under
    the limit and waiting for one otherwise; a connection idle longer than ``keepalive_timeout``
    (servers drop idle ones: nginx after 75 s, many APIs sooner) or already closed by its server
    is discarded when picked, before anything is written on it. Make it and use it on one event
    loop."""

    def __init__(
        self,
        scheme: str,
        host: str,
        port: int | None = None,
        *,
        max_connections: int = 16,
        connect_timeout: float = 2.0,
        read_timeout: float = 3.0,
        keepalive_timeout: float = 30.0,
        ssl_context: ssl.SSLContext | None = None,
        host_header: str | None = None,
    ) -> None:
        """``host_header``: the Host header as the caller wants it spelt (one that signs it),
        instead of the host with the port when not the scheme's default."""
        if scheme not in ("http", "https"):
            raise ValueError(f"unsupported scheme {scheme!r}")
        if max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        self.scheme = scheme
        self.host = host
        default_port = 443 if scheme == "https" else 80
        self.port = port or default_port
        self.max_connections = max_connections
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.keepalive_timeout = keepalive_timeout
        self._ssl: ssl.SSLContext | None = None
        if scheme == "https":
            self._ssl = ssl_context if ssl_context is not None else ssl.create_default_context()
        name = f"[{host}]" if ":" in host else host
        #: As the Host header carries it: the port only when not the scheme's default.
        self.host_header = host_header or (name if self.port == default_port else f"{name}:{self.port}")
        self.origin = f"{scheme}://{self.host_header}"
        self._idle: list[_Connection] = []
        self._all: set[_Connection] = set()
        #: The read timeouts' one timer (``_sweep``), pending while requests are in flight.
        self._sweeper: asyncio.TimerHandle | None = None
        self._sweep_every = min(0.05, read_timeout / 4)
        self._waiters: deque[asyncio.Future[_Connection | None]] = deque()
        #: Connections open or being opened: what the limit counts.
        self._count = 0
        self._closed = False
        #: Connections opened over the pool's life (tests and the bench check the reuse).
        self.opened = 0

    @classmethod
    def from_url(cls, url: str, **options: Any) -> Http1Pool:
        """The pool of a URL's origin (its path, if any, is the caller's to prefix)."""
        parts = urlsplit(url)
        if not parts.hostname:
            raise ValueError(f"no host in {url!r}")
        return cls(parts.scheme, parts.hostname, parts.port, **options)

    @property
    def idle_connections(self) -> int:
        return len(self._idle)

    async def request(
        self,
        method: str,
        target: str,
        headers: Mapping[str, str] | None = None,
        body: bytes | str | None = None,
        *,
        retry_stale: bool = False,
    ) -> Response:
        """Send one request (``target``: the path and query, already encoded) and read its whole
        answer. ``retry_stale``: when a reused connection turns out closed by its server before
        any byte of the answer (its idle close raced the request), send once more on another;
        only for requests that are harmless to repeat, since the server may have read it."""
        # The request as one bytes object: one write, one send syscall (and no small second
        # segment for the body to wait on the peer's delayed ACK).
        lines = [f"{method} {target} HTTP/1.1\r\nHost: {self.host_header}\r\n"]
        if headers:
            for name, value in headers.items():
                if name.lower() not in _RESERVED:
                    lines.append(f"{name}: {value}\r\n")
        if body is not None:
            if isinstance(body, str):
                body = body.encode()
            lines.append(f"Content-Length: {len(body)}\r\n")
        elif method in _BODY_METHODS:
            lines.append("Content-Length: 0\r\n")
        lines.append("Connection: keep-alive\r\n\r\n")
        text = "".join(lines)
        # A CR or LF inside a name, value or target would split the head (header injection): each
        # line ends with exactly one CRLF (the first part holds two lines, the last one a line and
        # the blank one), so any other shows up in the counts.
        if text.count("\n") != len(lines) + 2 or text.count("\r") != len(lines) + 2:
            raise ValueError("CR or LF in the request target or a header")
        data = text.encode("latin-1")
        if body:
            data += body

        loop = asyncio.get_running_loop()
        no_body = method == "HEAD"
        retried = False
        while True:
            conn = await self._acquire(loop)
            if conn.closed or conn.transport.is_closing():  # type: ignore[union-attr]
                # A fresh connection lost between its opening and this write (a reused one that
                # closed was skipped by _acquire): nothing was sent.
                self._discard(conn)
                raise ConnectionBroken(f"connection to {self.origin} closed before sending", sent=False)
            waiter: asyncio.Future[Response] = loop.create_future()
            conn.begin(waiter, no_body)
            conn.transport.write(data)  # type: ignore[union-attr]
            conn.deadline = loop.time() + self.read_timeout
            if self._sweeper is None:
                self._sweeper = loop.call_at(loop.time() + self._sweep_every, self._sweep, loop)
            try:
                response = await waiter
            except ConnectionBroken as exc:
                self._discard(conn)
                if retry_stale and not retried and exc.reused and not exc.received:
                    retried = True
                    continue
                raise
            except BaseException:  # a timeout, or the caller cancelled: the connection is out of step
                self._discard(conn, abort=True)
                raise
            conn.waiter = None
            self._release(conn, loop)
            return response

    async def _acquire(self, loop: asyncio.AbstractEventLoop) -> _Connection:
        idle = self._idle
        if idle:
            now = loop.time()
            while idle:
                conn = idle.pop()
                if conn.closed or conn.transport.is_closing() or now - conn.idle_since > self.keepalive_timeout:  # type: ignore[union-attr]
                    self._discard(conn)
                    continue
                return conn
        while True:
            if self._closed:
                raise HttpError(f"pool of {self.origin} is closed")
            if self._count < self.max_connections:
                self._count += 1
                try:
                    return await self._connect(loop)
                except BaseException:
                    self._count -= 1
                    self._wake()
                    raise
            waiter: asyncio.Future[_Connection | None] = loop.create_future()
            self._waiters.append(waiter)
            try:
                conn = await waiter  # type: ignore[assignment]
            except BaseException:
                if waiter.done() and not waiter.cancelled():  # handed something just as we left
                    if (given := waiter.result()) is not None:
                        self._release(given, loop)
                    else:
                        self._wake()
                raise
            if conn is None:  # a slot freed up: loop round and open a connection
                continue
            if conn.closed or conn.transport.is_closing():  # type: ignore[union-attr]
                self._discard(conn)
                continue
            return conn

    async def _connect(self, loop: asyncio.AbstractEventLoop) -> _Connection:
        conn = _Connection(self)
        try:
            async with asyncio.timeout(self.connect_timeout):
                await loop.create_connection(
                    lambda: conn, self.host, self.port, ssl=self._ssl,
                    server_hostname=self.host if self._ssl is not None else None,
                )  # fmt: skip
        except (OSError, TimeoutError) as exc:  # ssl.SSLError is an OSError
            raise ConnectFailed(f"could not connect to {self.origin}: {exc!r}") from exc
        self.opened += 1
        if self._closed:
            conn.transport.close()  # type: ignore[union-attr]
            raise HttpError(f"pool of {self.origin} is closed")
        self._all.add(conn)
        return conn

    def _sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        """Time out the requests past their deadline. One timer for the pool, every
        ``_sweep_every`` while requests are in flight, rather than one made and cancelled per
        request (a request is timed out at most that much after its ``read_timeout``)."""
        self._sweeper = None
        now, in_flight = loop.time(), False
        for conn in list(self._all):
            waiter = conn.waiter
            if waiter is None or waiter.done():
                continue
            if now >= conn.deadline:
                conn.timed_out(waiter)
            else:
                in_flight = True
        if in_flight and not self._closed:
            self._sweeper = loop.call_at(now + self._sweep_every, self._sweep, loop)

    def _release(self, conn: _Connection, loop: asyncio.AbstractEventLoop) -> None:
        if not conn.keep_alive or conn.closed or self._closed:
            self._discard(conn)
            return
        conn.reused = True
        waiters = self._waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(conn)
                return
        conn.idle_since = loop.time()
        self._idle.append(conn)

    def _discard(self, conn: _Connection, *, abort: bool = False) -> None:
        if conn.discarded:
            return
        conn.discarded = True
        conn.waiter = None
        if not conn.closed and conn.transport is not None:
            if abort:
                conn.transport.abort()
            else:
                conn.transport.close()
        self._all.discard(conn)
        self._count -= 1
        self._wake()

    def _wake(self) -> None:
        """A slot freed: the first waiter still waiting opens a connection in it."""
        waiters = self._waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def _lost(self, conn: _Connection) -> None:
        """A connection ended: an idle one leaves the pool now (one in use is discarded by its
        request)."""
        if conn.waiter is None and not conn.discarded:
            try:
                self._idle.remove(conn)
            except ValueError:
                return  # handed to a waiter that has not run yet: it checks ``closed`` itself
            self._discard(conn)

    async def close(self) -> None:
        """Close every connection; requests in flight end with ``ConnectionBroken``, waiting ones
        with ``HttpError``."""
        self._closed = True
        idle, self._idle = self._idle, []
        for conn in idle:
            self._discard(conn)
        for conn in list(self._all):
            if conn.transport is not None:
                conn.transport.close()
        waiters, self._waiters = self._waiters, deque()
        for waiter in waiters:
            if not waiter.done():
                waiter.set_exception(HttpError(f"pool of {self.origin} is closed"))
        await asyncio.sleep(0)  # let the transports run their connection_lost
