"""A WebSocket session that never gives up: connect, read, watch for silence, reconnect.

Every state change is reported (``on_state``), reconnects back off exponentially with jitter up
to a cap and go on forever, and a connection that stays silent longer than ``silence_timeout``
is treated as dead (a half-open TCP connection sends nothing and raises nothing).
WebSocket pings are answered by the ``websockets`` library.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI
from websockets.frames import Frame, Opcode
from websockets.protocol import State

from tickflow.events import ConnectorState

log = logging.getLogger(__name__)


def now_us() -> int:
    return time.time_ns() // 1000


@dataclass(frozen=True)
class Backoff:
    initial: float = 0.5
    maximum: float = 30.0
    factor: float = 2.0
    jitter: float = 0.25

    def delay(self, attempt: int) -> float:
        """Seconds to wait before reconnect ``attempt`` (1-based)."""
        base = min(self.initial * self.factor ** (attempt - 1), self.maximum)
        return base * (1 + random.uniform(-self.jitter, self.jitter))


FrameHandler = Callable[[bytes, int], None]
StateHandler = Callable[[ConnectorState, str | None, int], None]
#: Runs beside the reader while a connection is open (subscriptions, watchdogs); returning a
#: reason closes the connection for a reconnect.
OpenHandler = Callable[[ClientConnection], Awaitable[str | None]]


class WebSocketSession:
    def __init__(
        self,
        url: str,
        on_frame: FrameHandler,
        on_state: StateHandler,
        *,
        on_open: OpenHandler | None = None,
        backoff: Backoff | None = None,
        silence_timeout: float = 30.0,
        open_timeout: float = 10.0,
    ) -> None:
        self.url = url
        self.on_frame = on_frame
        self.on_state = on_state
        self.on_open = on_open
        self.backoff = backoff or Backoff()
        self.silence_timeout = silence_timeout
        self.open_timeout = open_timeout
        self.connections = 0
        #: Frames whose handler raised (logged with the frame; the connection carries on).
        self.handler_errors = 0
        self._frames = 0
        self._last_frame = 0.0

    async def run(self, stop: asyncio.Event) -> None:
        """Connect and read until ``stop`` is set, reconnecting after every failure."""
        attempt = 0
        while not stop.is_set():
            self.on_state(ConnectorState.CONNECTING, None, attempt)
            reason = await self._connect_and_read(stop)
            if stop.is_set():
                break
            attempt = 0 if reason is None else attempt + 1
            self.on_state(ConnectorState.DISCONNECTED, reason, attempt)
            delay = self.backoff.delay(max(attempt, 1))
            self.on_state(ConnectorState.RECONNECTING, f"in {delay:.1f}s after: {reason}", attempt)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=delay)
        self.on_state(ConnectorState.STOPPED, None, 0)

    async def _connect_and_read(self, stop: asyncio.Event) -> str | None:
        """Returns why the connection ended (None: it ended cleanly from the venue's side)."""
        try:
            async with connect(
                self.url, open_timeout=self.open_timeout, max_size=2**24, compression=None,
                create_connection=functools.partial(_DirectConnection, session=self),
            ) as ws:  # fmt: skip
                self.connections += 1
                self.on_state(ConnectorState.CONNECTED, None, 0)
                # Frames are handled as they are parsed (``_DirectConnection``); the watchers
                # end the connection, and record why, when something else happens.
                ended: list[str | None] = []
                watchers = [asyncio.ensure_future(self._until_stopped(ws, stop, ended)),
                            asyncio.ensure_future(self._until_silent(ws, ended))]  # fmt: skip
                if self.on_open is not None:
                    watchers.append(asyncio.ensure_future(self._run_on_open(ws, ended)))
                try:
                    self._last_frame = time.monotonic()
                    await ws.wait_closed()
                finally:
                    for watcher in watchers:
                        watcher.cancel()
                    await asyncio.gather(*watchers, return_exceptions=True)
                if ended:
                    return ended[0]
                return f"connection closed ({ws.close_code or 'no close frame'})"
        except (OSError, TimeoutError, InvalidHandshake, InvalidURI, ConnectionClosed) as exc:
            return f"{type(exc).__name__}: {exc}"

    def _deliver(self, frame: bytes, receive_ts: int) -> None:
        """One complete message, straight from the parser (the hot path). ``receive_ts``: when
        the socket read that completed it returned (one clock read per read, not per message:
        every message completed by one read arrived at that moment)."""
        self._frames += 1
        try:
            self.on_frame(frame, receive_ts)
        except Exception:  # a bug in a handler must not take the connection down, nor pass unseen
            self.handler_errors += 1
            log.exception("frame handler failed on %r", frame[:200])

    async def _until_stopped(self, ws: ClientConnection, stop: asyncio.Event, ended: list[str | None]) -> None:
        await stop.wait()
        ended.append(None)
        await ws.close()

    async def _until_silent(self, ws: ClientConnection, ended: list[str | None]) -> None:
        """A half-open TCP connection sends nothing and raises nothing: time it out."""
        last_count = -1
        while True:
            await asyncio.sleep(min(1.0, self.silence_timeout / 4))
            if self._frames != last_count:
                last_count, self._last_frame = self._frames, time.monotonic()
            elif time.monotonic() - self._last_frame >= self.silence_timeout:
                ended.append(f"no data for {self.silence_timeout:.0f}s")
                ws.transport.abort()
                return

    async def _run_on_open(self, ws: ClientConnection, ended: list[str | None]) -> None:
        assert self.on_open is not None
        reason = await self.on_open(ws)
        if reason is not None:
            ended.append(reason)
            ws.transport.abort()


class _DirectConnection(ClientConnection):
    """A client connection that reads data frames itself and hands each message to its session
    as soon as its bytes are in, inside ``data_received``.

    The library parses frames with a generator per frame, then ``recv()`` queues every message
    and wakes a waiting task with a future: at tens of thousands of messages a second that
    costs more than all our parsing and encoding together. A server's frames are unmasked and
    (without compression, which we do not negotiate) simple to split, so once the handshake is
    done this splits them directly. Everything else - pings, pongs, close, fragmented messages,
    anything unusual - is handed to the library's own protocol, byte for byte, so the
    WebSocket rules (answering pings, the closing handshake, errors) stay the library's.
    """

    def __init__(self, *args: Any, session: WebSocketSession, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._session = session
        self._fragments: list[bytes] | None = None
        self._direct = False  # until the handshake is done and the library holds no bytes
        self._pending = b""

    def data_received(self, data: bytes) -> None:
        if not self._direct:
            super().data_received(data)
            protocol = self.protocol
            self._direct = protocol.state is State.OPEN and not protocol.reader.buffer
            return
        buffer = self._pending + data if self._pending else data
        deliver, size, at, receive_ts = self._session._deliver, len(buffer), 0, now_us()
        while size - at >= 2:
            first, second = buffer[at], buffer[at + 1]
            length, head = second & 0x7F, 2
            if length == 126:
                if size - at < 4:
                    break
                length, head = int.from_bytes(buffer[at + 2 : at + 4], "big"), 4
            elif length == 127:
                if size - at < 10:
                    break
                length, head = int.from_bytes(buffer[at + 2 : at + 10], "big"), 10
            end = at + head + length
            if end > size:
                break
            if first & 0x7F in (0x01, 0x02) and first & 0x80 and not second & 0x80:
                deliver(buffer[at + head : end], receive_ts)  # a whole text/binary message, unmasked, no RSV bits
            else:
                super().data_received(buffer[at:end])  # control, fragment, or anything odd: the library's
                if self.protocol.state is not State.OPEN:  # closing: the rest is the library's too
                    self._direct = False
                    if end < size:
                        super().data_received(buffer[end:])
                    self._pending = b""
                    return
            at = end
        self._pending = buffer[at:] if at < size else b""

    def process_event(self, event: Any) -> None:
        """Frames the library parsed (before direct reading starts, and fragments)."""
        if isinstance(event, Frame):
            opcode = event.opcode
            if opcode is Opcode.TEXT or opcode is Opcode.BINARY:
                if event.fin:
                    self._session._deliver(bytes(event.data), now_us())
                else:
                    self._fragments = [bytes(event.data)]
                return
            if opcode is Opcode.CONT:
                if self._fragments is not None:
                    self._fragments.append(bytes(event.data))
                    if event.fin:
                        message, self._fragments = b"".join(self._fragments), None
                        self._session._deliver(message, now_us())
                return
        super().process_event(event)
