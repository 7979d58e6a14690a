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

Why our own HTTP/1.1 client (``http1.py``) and not aiohttp's or httpx's here (the feeds' REST
snapshots use httpx): the order path is hot, and the client was about half of the router's CPU a
command. Against one local server (``bench/http_client_bench.py``, client-process CPU a request,
syscalls included; this sandbox's are slow): httpx about 1.2 ms at 1 in flight and 3.1 ms at 16
(its pool checks every connection on every request), aiohttp about 0.33 and 0.30 ms, ``http1``
about 0.15 and 0.10 ms. It does only what an order request needs: one origin, keep-alive connections,
one write a request, the whole answer parsed in the protocol callback, one timer for the read
timeout, and failures told apart by whether the request left.
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

import msgspec

from producers.rate_limit import WeightedRateLimiter
from producers.venues.http1 import ConnectFailed, ConnectionBroken, Http1Pool, HttpError, ReadTimeout
from tickflow.errors import RateLimited, UnknownOutcome, VenueUnavailable
from tickflow.events import OrderStatus, OrderType, Side, TimeInForce

#: Called just before each request is handed to the HTTP client, in the caller's context, with
#: the seconds it waited for the venue (its rate budgets, a free connection): the router sets it
#: per command to measure its own overhead from the command to the request, that wait apart.
ON_REQUEST: ContextVar[Callable[[float], None] | None] = ContextVar("on_request", default=None)

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


class OrderRequest(msgspec.Struct, frozen=True, gc=False):
    """A new order, in the venue's symbol, with the client order id already derived."""

    symbol: str
    client_order_id: str
    side: Side
    order_type: OrderType
    size: Decimal
    price: Decimal | None = None
    time_in_force: TimeInForce = TimeInForce.GTC
    reduce_only: bool = False


class VenueOrder(msgspec.Struct, frozen=True, gc=False):
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


class Amend(msgspec.Struct, frozen=True, gc=False):
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


class Prepared(msgspec.Struct, frozen=True, gc=False):
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


class VenueResponse(msgspec.Struct, frozen=True, gc=False):
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
        self.counters = TradingCounters()
        parts = urlsplit(self.base_url)
        #: ``host[:port]`` as the request's Host header carries it (Coinbase signs it).
        self.host = parts.netloc
        #: A path the base URL carries goes before every request's.
        self._prefix = parts.path.rstrip("/")
        # The pool binds to no event loop until its first request, so it can be made here.
        # Host is sent as the URL spells it, whatever the pool would derive: Coinbase signs it.
        self._pool = Http1Pool.from_url(
            self.base_url, max_connections=max_connections, connect_timeout=timeouts.connect,
            read_timeout=timeouts.read, keepalive_timeout=30.0, host_header=self.host,
        )  # fmt: skip

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
        arrived = time.perf_counter()
        if self.limiter is not None and weight:
            await self.limiter.acquire(weight)
        if order and self.order_limiter is not None:
            await self.order_limiter.acquire(1)
        async with self._slots:
            waited = time.perf_counter() - arrived
            prepared = prepare()
            self.counters.requests += 1
            target = self._prefix + path
            if prepared.params:
                target = f"{target}?{prepared.params}"
            if (hook := ON_REQUEST.get()) is not None:
                hook(waited)
            try:
                # A read is repeated once on another connection when a kept-alive one turns out
                # closed by the venue before answering; a state-changing request never is.
                reply = await self._pool.request(method, target, prepared.headers, prepared.content,
                                                 retry_stale=not mutating)  # fmt: skip
            except ConnectFailed as exc:
                self._failed(f"{method} {path}: {type(exc).__name__}")
                what = type(exc.__cause__ or exc).__name__
                raise VenueUnavailable(f"{self.venue}: {method} {path} could not connect ({what})") from None
            except ReadTimeout as exc:
                self.counters.timeouts += 1
                self._failed(f"{method} {path}: {type(exc).__name__}")
                error = UnknownOutcome if mutating else VenueUnavailable
                raise error(f"{self.venue}: {method} {path} timed out ({type(exc).__name__})") from None
            except ConnectionBroken as exc:
                self._failed(f"{method} {path}: {type(exc).__name__}")
                if not exc.sent:  # lost before the request left: the venue never saw it
                    raise VenueUnavailable(f"{self.venue}: {method} {path} could not send ({exc})") from None
                # Sent, maybe processed, then the connection broke.
                error = UnknownOutcome if mutating else VenueUnavailable
                raise error(f"{self.venue}: {method} {path} failed mid-request ({type(exc).__name__})") from None
            except HttpError as exc:  # the pool closed (aclose): nothing was sent
                self._failed(f"{method} {path}: {type(exc).__name__}")
                raise VenueUnavailable(f"{self.venue}: {method} {path} not sent ({exc})") from None
            response = VenueResponse(reply.status, reply.headers, reply.body)
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
        await self._pool.close()


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
