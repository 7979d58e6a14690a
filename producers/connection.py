"""A WebSocket session that never gives up: connect, read, watch for silence, reconnect.

Every state change is reported (``on_state``), reconnects back off exponentially with jitter up
to a cap and go on forever, and a connection that stays silent longer than ``silence_timeout``
is treated as dead (a half-open TCP connection sends nothing and raises nothing).
WebSocket pings are answered by the ``websockets`` library.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

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
            async with connect(self.url, open_timeout=self.open_timeout, max_size=2**24) as ws:
                self.connections += 1
                self.on_state(ConnectorState.CONNECTED, None, 0)
                # The reader awaits frames and nothing else (the hot path); the watchers below
                # end the connection, and record why, when something else happens.
                ended: list[str | None] = []
                watchers = [asyncio.ensure_future(self._until_stopped(ws, stop, ended)),
                            asyncio.ensure_future(self._until_silent(ws, ended))]  # fmt: skip
                if self.on_open is not None:
                    watchers.append(asyncio.ensure_future(self._run_on_open(ws, ended)))
                try:
                    self._last_frame = time.monotonic()
                    on_frame, recv = self.on_frame, ws.recv
                    while True:
                        frame = await recv(decode=False)  # bytes: the parsers take them as they are
                        self._frames += 1
                        on_frame(frame, now_us())
                except ConnectionClosed as exc:
                    if ended:
                        return ended[0]
                    return f"connection closed ({exc.rcvd.code if exc.rcvd else 'no close frame'})"
                finally:
                    for watcher in watchers:
                        watcher.cancel()
                    await asyncio.gather(*watchers, return_exceptions=True)
        except (OSError, TimeoutError, InvalidHandshake, InvalidURI) as exc:
            return f"{type(exc).__name__}: {exc}"

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
