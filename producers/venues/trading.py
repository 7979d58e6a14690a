"""What every venue's trading client offers, and the parts they share.

One ``TradingClient`` per venue and account (``binance/trading.py``, ``coinbase/trading.py``):
create, cancel, amend, query by client order id, open orders; every method answers with the
venue's view of the order (``VenueOrder``) or raises a ``VenueError`` of the hierarchy in
``tickflow.errors``, which tells the terminal (``OrderRejected`` and its kinds) from the
retryable (``RateLimited``, ``VenueUnavailable``) and from the dangerous: ``UnknownOutcome``,
where the venue may have acted and the caller must ask before doing anything else.

``TradingHttp`` is the shared transport: one pooled HTTP client with timeouts, the weighted rate
limiter of the feeds fed by the venue's headers, and the mapping of transport failures onto that
hierarchy (a timeout or a connection lost after sending is an unknown outcome for a
state-changing request; a refused connection is not).

Why aiohttp's client and not httpx here (the feeds' REST snapshots use httpx): the order path is
hot, and httpx costs about 1.2 ms of CPU a request on this machine, more under concurrency (its
pool checks every connection on every request), against about 0.2 ms for aiohttp's
(``bench/router_bench.py``; a bare loop of both against one local server: 371 against 3,192
requests a second at 16 in flight). At httpx's cost one router could not pass 800 commands a
second.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Protocol
from urllib.parse import urlsplit

import aiohttp

from producers.rate_limit import WeightedRateLimiter
from tickflow.errors import RateLimited, UnknownOutcome, VenueUnavailable
from tickflow.events import OrderStatus, OrderType, Side, TimeInForce

#: Called just before each request is handed to the HTTP client, in the caller's context (the
#: router sets it per command to measure its overhead from the command to the request).
ON_REQUEST: ContextVar[Callable[[], None] | None] = ContextVar("on_request", default=None)

#: Prefix of every client order id tickflow derives: its orders are recognisable at the venue.
CLIENT_ID_PREFIX = "tf"


def client_order_id(command_id: str, *, salt: str = "") -> str:
    """The venue client order id of the order a create command places: 34 characters of
    ``[0-9a-z]``, which every venue accepts (Binance: at most 36 of ``[.A-Z:/a-z0-9_-]``).

    Derived, never random: the same command always maps to the same id, so a command seen
    again (a sender's retry, a restart before its offset was committed) is recognised by the
    venue as the order it already has. ``salt`` tells apart the orders a command chain mints
    (a cancel-replace's new order)."""
    digest = hashlib.sha256(f"{command_id}\x00{salt}".encode()).hexdigest()
    return CLIENT_ID_PREFIX + digest[:32]


@dataclass(frozen=True)
class OrderRequest:
    """A new order, in the venue's symbol, with the client order id already derived."""

    symbol: str
    client_order_id: str
    side: Side
    order_type: OrderType
    size: Decimal
    price: Decimal | None = None
    time_in_force: TimeInForce = TimeInForce.GTC
    reduce_only: bool = False


@dataclass(frozen=True)
class VenueOrder:
    """The venue's view of one order, in the contract's terms."""

    client_order_id: str
    venue_order_id: str
    #: ACCEPTED (open, nothing filled), PARTIALLY_FILLED (open), FILLED, CANCELED, EXPIRED, REJECTED.
    status: OrderStatus
    size: Decimal
    filled_size: Decimal
    price: Decimal | None = None
    avg_fill_price: Decimal | None = None
    #: Venue time of the order's last change, microseconds.
    exchange_ts: int | None = None

    @property
    def open(self) -> bool:
        return self.status in (OrderStatus.ACCEPTED, OrderStatus.PARTIALLY_FILLED)


@dataclass(frozen=True)
class Amend:
    """A change of an open order: the new limit price and/or the new total size (filled included)."""

    symbol: str
    client_order_id: str
    venue_order_id: str | None
    side: Side
    price: Decimal | None
    size: Decimal
    #: The order as it stands (its filled size, for venues that replace it with a new order).
    filled_size: Decimal
    #: The client order id a cancel-replace gives the new order (venues that amend natively keep theirs).
    new_client_order_id: str
    time_in_force: TimeInForce = TimeInForce.GTC


class TradingClient(Protocol):
    """One account's trading API at one venue."""

    venue: str

    async def create(self, request: OrderRequest) -> VenueOrder: ...

    async def cancel(self, symbol: str, client_order_id: str, venue_order_id: str | None = None) -> VenueOrder: ...

    async def amend(self, amend: Amend) -> VenueOrder:
        """Native amend where the venue has one, cancel-replace otherwise (the answer then is the
        new order, under ``amend.new_client_order_id``)."""
        ...

    async def query(self, symbol: str, client_order_id: str) -> VenueOrder | None:
        """The order by client order id; None when the venue has no such order."""
        ...

    async def open_orders(self, symbol: str | None = None) -> list[VenueOrder]: ...

    async def aclose(self) -> None: ...


@dataclass
class TradingCounters:
    requests: int = 0
    errors: int = 0
    timeouts: int = 0
    rate_limited: int = 0
    last_error: str | None = None
    by_status: dict[int, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Prepared:
    """A request as built and signed the moment it leaves."""

    params: str | None = None
    content: str | bytes | None = None
    headers: dict[str, str] | None = None


@dataclass(frozen=True)
class HttpTimeouts:
    connect: float = 2.0
    #: Longer than the venue's usual answer, shorter than its recvWindow: a create that times out
    #: is queried while the venue can still tell.
    read: float = 3.0


@dataclass(frozen=True)
class VenueResponse:
    """A venue's answer, read whole."""

    status_code: int
    headers: Mapping[str, str]
    content: bytes

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")

    def json(self) -> Any:
        return json.loads(self.content)


class TradingHttp:
    """The pooled HTTP transport of one venue's trading client.

    ``send`` returns the response whatever its status (the venue module reads its error body);
    what did not produce a response becomes ``VenueUnavailable`` (the request never left: a
    refused or timed-out connect) or, for a state-changing request, ``UnknownOutcome``."""

    def __init__(
        self,
        base_url: str,
        *,
        venue: str,
        limiter: WeightedRateLimiter | None = None,
        used_weight_header: str | None = None,
        order_limiter: WeightedRateLimiter | None = None,
        order_count_header: str | None = None,
        timeouts: HttpTimeouts = HttpTimeouts(),
        max_connections: int = 16,
    ) -> None:
        self.venue = venue
        self.base_url = base_url.rstrip("/")
        self.limiter = limiter
        self.used_weight_header = used_weight_header
        #: The account's order-rate budget (Binance: orders per 10 s), and the venue's count of it.
        self.order_limiter = order_limiter
        self.order_count_header = order_count_header
        self.timeouts = timeouts
        self.max_connections = max_connections
        self._slots = asyncio.Semaphore(max_connections)
        self._session: aiohttp.ClientSession | None = None
        self.counters = TradingCounters()
        #: ``host[:port]`` as the request's Host header carries it (Coinbase signs it).
        self.host = urlsplit(self.base_url).netloc

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:  # made on first use: it belongs to the running event loop
            self._session = aiohttp.ClientSession(
                self.base_url,
                connector=aiohttp.TCPConnector(limit=self.max_connections, keepalive_timeout=30),
                timeout=aiohttp.ClientTimeout(sock_connect=self.timeouts.connect, sock_read=self.timeouts.read,
                                              total=self.timeouts.connect + self.timeouts.read),
                auto_decompress=True, skip_auto_headers=("User-Agent",),
            )  # fmt: skip
        return self._session

    async def send(
        self,
        method: str,
        path: str,
        prepare: Callable[[], Prepared],
        *,
        mutating: bool,
        weight: int = 1,
        order: bool = False,
    ) -> VenueResponse:
        """Send one request once the venue's budgets allow it (``order``: it also counts against
        the order-rate limit) and a connection is free; ``prepare`` builds (signs) it only then,
        so a request is never stamped and then kept waiting past its validity."""
        if self.limiter is not None and weight:
            await self.limiter.acquire(weight)
        if order and self.order_limiter is not None:
            await self.order_limiter.acquire(1)
        session = self._client()
        async with self._slots:
            prepared = prepare()
            self.counters.requests += 1
            url = f"{path}?{prepared.params}" if prepared.params else path
            if (hook := ON_REQUEST.get()) is not None:
                hook()
            try:
                async with session.request(method, url, data=prepared.content, headers=prepared.headers) as reply:
                    response = VenueResponse(reply.status, reply.headers, await reply.read())
            except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
                self._failed(f"{method} {path}: {type(exc).__name__}")
                what = type(exc).__name__
                raise VenueUnavailable(f"{self.venue}: {method} {path} could not connect ({what})") from None
            except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
                self.counters.timeouts += 1
                self._failed(f"{method} {path}: {type(exc).__name__}")
                error = UnknownOutcome if mutating else VenueUnavailable
                raise error(f"{self.venue}: {method} {path} timed out ({type(exc).__name__})") from None
            except aiohttp.ClientError as exc:  # sent, maybe processed, then the connection broke
                self._failed(f"{method} {path}: {type(exc).__name__}")
                error = UnknownOutcome if mutating else VenueUnavailable
                raise error(f"{self.venue}: {method} {path} failed mid-request ({type(exc).__name__})") from None
        self._observe(response)
        return response

    def _failed(self, what: str) -> None:
        self.counters.errors += 1
        self.counters.last_error = what

    def _observe(self, response: VenueResponse) -> None:
        status = response.status_code
        self.counters.by_status[status] = self.counters.by_status.get(status, 0) + 1
        if self.limiter is not None and self.used_weight_header:
            used = response.headers.get(self.used_weight_header)
            if used and used.isdigit():
                self.limiter.observe(int(used))
        if self.order_limiter is not None and self.order_count_header:
            count = response.headers.get(self.order_count_header)
            if count and count.isdigit():
                self.order_limiter.observe(int(count))
        if status in (418, 429):
            self.counters.rate_limited += 1
            if self.limiter is not None:
                self.limiter.back_off(retry_after_seconds(response))

    def rate_limited(self, response: VenueResponse, venue_message: str) -> RateLimited:
        return RateLimited(
            f"{self.venue}: rate limited (HTTP {response.status_code})", venue_message, retry_after_seconds(response)
        )

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()


def retry_after_seconds(response: VenueResponse, default: float = 1.0) -> float:
    value = response.headers.get("Retry-After", "")
    try:
        return max(0.0, float(value))
    except ValueError:
        return default


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def decimal_text(value: Decimal) -> str:
    """A decimal as venues take it: plain notation, no exponent, no trailing zeros."""
    return format(value.normalize(), "f")
