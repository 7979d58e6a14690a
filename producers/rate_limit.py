"""A weighted REST rate limiter that follows what the venue says.

Venues budget REST calls by weight per window (Binance: ``REQUEST_WEIGHT`` per minute). The
limiter keeps our own count, but the venue's count wins: every response's used-weight header
(``observe``) replaces our estimate, and a 429 or 418 with ``Retry-After`` (``back_off``) stops
every request until then. Requests wait their turn (``acquire``) instead of failing, so a mass
reconnect of hundreds of symbols queues its snapshots rather than earning a ban.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable


class WeightedRateLimiter:
    def __init__(
        self,
        capacity: int,
        window_seconds: float = 60.0,
        *,
        headroom: float = 0.9,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        #: Weight we allow ourselves per window: a margin below the venue's limit, since other
        #: processes on the same IP share it and the venue's window edges are not ours.
        self.budget = int(capacity * headroom)
        self.window = window_seconds
        self._clock = clock
        self._sleep = sleep
        # Windows aligned to the wall clock, as the venue's are (Binance counts per clock minute).
        now = clock()
        self._window_start = now - now % window_seconds
        self._used = 0
        self._blocked_until = 0.0
        self._lock = asyncio.Lock()
        self.waits = 0
        self.back_offs = 0

    def _roll(self) -> None:
        now = self._clock()
        if now - self._window_start >= self.window:
            # Fixed windows aligned like the venue's (Binance resets each minute).
            self._window_start = now - (now - self._window_start) % self.window
            self._used = 0

    async def acquire(self, weight: int) -> None:
        """Wait until a request of ``weight`` fits, then count it."""
        if weight > self.budget:
            raise ValueError(f"a request of weight {weight} can never fit a budget of {self.budget}")
        async with self._lock:  # first come, first served
            while True:
                now = self._clock()
                if now < self._blocked_until:
                    self.waits += 1
                    await self._sleep(self._blocked_until - now)
                    continue
                self._roll()
                if self._used + weight <= self.budget:
                    self._used += weight
                    return
                self.waits += 1
                await self._sleep(self._window_start + self.window - self._clock())

    def observe(self, used_weight: int) -> None:
        """The venue's own count of the weight used in the current window."""
        self._roll()
        self._used = max(self._used, used_weight)

    def back_off(self, retry_after_seconds: float) -> None:
        """The venue said stop (429/418): no request goes out before ``retry_after_seconds``."""
        self.back_offs += 1
        self._blocked_until = max(self._blocked_until, self._clock() + retry_after_seconds)

    @property
    def used(self) -> int:
        self._roll()
        return self._used


class RequestPacer:
    """Spaces requests at least ``1 / per_second`` apart, in the order they ask.

    Venues cap the messages a client sends: Binance per connection (5 a second on spot; more
    and the connection is closed), Coinbase per IP. Concurrent callers queue (first come, first
    served), and the next slot counts from when the previous caller was really let go, not from
    when it was due: a caller woken late (a busy event loop) must not bring the next one closer
    than the interval.
    """

    def __init__(self, per_second: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = 1.0 / per_second
        self._clock = clock
        self._next = 0.0
        self._queue = asyncio.Lock()

    async def wait(self) -> None:
        async with self._queue:
            delay = self._next - self._clock()
            if delay > 0:
                await asyncio.sleep(delay)
            self._next = self._clock() + self.interval
