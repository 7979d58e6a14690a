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
from collections.abc import Callable
from dataclasses import dataclass

from websockets.asyncio.client import connect
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


FrameHandler = Callable[[str | bytes, int], None]
StateHandler = Callable[[ConnectorState, str | None, int], None]


class WebSocketSession:
    def __init__(
        self,
        url: str,
        on_frame: FrameHandler,
        on_state: StateHandler,
        *,
        backoff: Backoff | None = None,
        silence_timeout: float = 30.0,
        open_timeout: float = 10.0,
    ) -> None:
        self.url = url
        self.on_frame = on_frame
        self.on_state = on_state
        self.backoff = backoff or Backoff()
        self.silence_timeout = silence_timeout
        self.open_timeout = open_timeout
        self.connections = 0

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
                stopper = asyncio.ensure_future(stop.wait())
                try:
                    while True:
                        receive = asyncio.ensure_future(ws.recv())
                        done, _ = await asyncio.wait(
                            {receive, stopper}, timeout=self.silence_timeout, return_when=asyncio.FIRST_COMPLETED
                        )
                        if stopper in done:
                            receive.cancel()
                            return None
                        if not done:
                            receive.cancel()
                            return f"no data for {self.silence_timeout:.0f}s"
                        self.on_frame(receive.result(), now_us())
                finally:
                    stopper.cancel()
        except ConnectionClosed as exc:
            return f"connection closed ({exc.rcvd.code if exc.rcvd else 'no close frame'})"
        except (OSError, TimeoutError, InvalidHandshake, InvalidURI) as exc:
            return f"{type(exc).__name__}: {exc}"
