"""Venue limits: REST weight per window with 429 then 418, and message rates per connection."""

from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import dataclass


@dataclass
class Verdict:
    status: int  # 200, 429 or 418
    retry_after: int = 0
    used: int = 0


class WeightWindow:
    """Binance's REQUEST_WEIGHT accounting for one IP: ``limit`` per ``window`` seconds.

    Over the limit: 429 with ``Retry-After`` (seconds to the window's end). A client that keeps
    sending while told to wait - more than ``grace`` requests, to allow for ones already in
    flight - is banned: 418 with ``Retry-After`` for ``ban_seconds`` (Binance starts at 2 min).
    """

    def __init__(self, limit: int, window: float, *, ban_seconds: float = 120.0, grace: int = 3) -> None:
        self.limit = limit
        self.window = window
        self.ban_seconds = ban_seconds
        self.grace = grace
        self.start = time.monotonic()
        self.used = 0
        self.retry_until = 0.0
        self.banned_until = 0.0
        self._ignored = 0

    def charge(self, weight: int) -> Verdict:
        now = time.monotonic()
        if now < self.banned_until:
            return Verdict(418, math.ceil(self.banned_until - now), self.used)
        if now - self.start >= self.window:
            self.start, self.used = now, 0
        if now < self.retry_until:
            self._ignored += 1
            if self._ignored > self.grace:
                self.banned_until = now + self.ban_seconds
                return Verdict(418, math.ceil(self.ban_seconds), self.used)
            return Verdict(429, max(1, math.ceil(self.retry_until - now)), self.used)
        if self.used + weight > self.limit:
            self.retry_until = self.start + self.window
            self._ignored = 0
            return Verdict(429, max(1, math.ceil(self.retry_until - now)), self.used)
        self.used += weight
        return Verdict(200, 0, self.used)


class RequestRate:
    """At most ``limit`` events per ``window`` seconds (a sliding window)."""

    def __init__(self, limit: int, window: float = 1.0) -> None:
        self.limit = limit
        self.window = window
        self._times: deque[float] = deque()

    def allow(self) -> bool:
        now = time.monotonic()
        times = self._times
        while times and now - times[0] >= self.window:
            times.popleft()
        if len(times) >= self.limit:
            return False
        times.append(now)
        return True
