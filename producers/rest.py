"""REST GETs to a venue (snapshots, instrument metadata) that respect its rate limits.

Every request first waits for its weight in the venue's ``WeightedRateLimiter``; the venue's
used-weight header corrects our count, and a 429 or 418 with ``Retry-After`` stops every
request to that venue until then. Transient failures (network errors, 5xx, a body that does not
parse) are retried with capped, jittered backoff: a snapshot is never given up on.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx

from producers.connection import Backoff, now_us
from producers.rate_limit import RequestPacer, WeightedRateLimiter
from tickflow.errors import MalformedFrame

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Seconds to stop for when a 429/418 comes without a usable ``Retry-After``.
DEFAULT_RETRY_AFTER = 60.0


@dataclass
class RestCounters:
    requests: int = 0
    failures: int = 0
    rate_limited: int = 0
    last_error: str | None = None


class RestClient:
    def __init__(
        self,
        http: httpx.AsyncClient,
        base_url: str,
        limiter: WeightedRateLimiter,
        *,
        used_weight_header: str | None = None,
        backoff: Backoff | None = None,
    ) -> None:
        self.http = http
        self.base_url = base_url.rstrip("/")
        self.limiter = limiter
        self.used_weight_header = used_weight_header
        self.backoff = backoff or Backoff()
        self.counters = RestCounters()

    async def get(self, path: str, params: dict[str, str | int], weight: int, parse: Callable[[bytes, int], T]) -> T:
        """GET ``path`` until it succeeds and ``parse(body, receive_ts)`` accepts the body."""
        attempt = 0
        while True:
            attempt += 1
            await self.limiter.acquire(weight)
            self.counters.requests += 1
            try:
                response = await self.http.get(f"{self.base_url}{path}", params=params)
                self._observe(response)
                response.raise_for_status()
                return parse(response.content, now_us())
            except (httpx.HTTPError, MalformedFrame) as exc:
                self.counters.failures += 1
                self.counters.last_error = f"GET {path} {params}: {exc}"
                log.warning("GET %s %s failed (attempt %d): %s", path, params, attempt, exc)
                limited = isinstance(exc, httpx.HTTPStatusError) and exc.response.status_code in (418, 429)
                if not limited:  # a rate limit is waited out in the limiter, until Retry-After
                    await asyncio.sleep(self.backoff.delay(attempt))

    def _observe(self, response: httpx.Response) -> None:
        if self.used_weight_header:
            used = response.headers.get(self.used_weight_header)
            if used and used.isdigit():
                self.limiter.observe(int(used))
        if response.status_code in (418, 429):  # rate limited (418: banned for a while)
            self.counters.rate_limited += 1
            retry_after = response.headers.get("Retry-After", "")
            self.limiter.back_off(float(retry_after) if retry_after.isdigit() else DEFAULT_RETRY_AFTER)


#: Per event loop (a test runs several), per venue: what every feed of a venue in the process shares.
_shared: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple[type, str], Any]] = weakref.WeakKeyDictionary()


def _shared_per_venue(kind: type[T], venue: str, make: Callable[[], T]) -> T:
    per_loop = _shared.setdefault(asyncio.get_running_loop(), {})
    item = per_loop.get((kind, venue))
    if item is None:
        item = per_loop[(kind, venue)] = make()
    return item


def shared_pacer(venue: str, per_second: float) -> RequestPacer:
    """One subscribe-request pacer per venue, for venues that count messages per IP."""
    return _shared_per_venue(RequestPacer, venue, lambda: RequestPacer(per_second))


def shared_limiter(venue: str, capacity: int, window_seconds: float = 60.0) -> WeightedRateLimiter:
    """One REST limiter per venue: every feed and connection of a venue shares the IP's budget,
    as the venue counts it."""
    return _shared_per_venue(WeightedRateLimiter, venue, lambda: WeightedRateLimiter(capacity, window_seconds))
