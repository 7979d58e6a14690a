"""Coinbase Advanced Trade trading over REST (``/api/v3/brokerage``), each request carrying its
own ES256 JWT.

Coinbase answers a create with the order id only; an order's state comes from
``orders/historical/{order_id}``. It has no lookup by client order id, so ``query`` remembers the
ids of the orders this client placed and otherwise searches the account's recent orders. Amends
are native (``orders/edit``: price and size, the order keeps its ids).
"""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING, Any

import msgspec

from producers.rate_limit import WeightedRateLimiter
from producers.venues.coinbase.signing import CoinbaseJwtSigner
from producers.venues.trading import Amend, OrderRequest, Prepared, TradingHttp, VenueOrder, VenueResponse, decimal_text
from tickflow.errors import (
    AuthFailed,
    DuplicateOrder,
    InsufficientFunds,
    InvalidOrder,
    UnknownOrder,
    UnknownOutcome,
    VenueError,
    VenueUnavailable,
)
from tickflow.events import OrderStatus, OrderType, TimeInForce

if TYPE_CHECKING:
    from producers.venues import TradingSetup

BASE = "/api/v3/brokerage"

_STATUS = {
    "PENDING": OrderStatus.ACCEPTED,
    "QUEUED": OrderStatus.ACCEPTED,
    "OPEN": OrderStatus.ACCEPTED,
    "EDIT_QUEUED": OrderStatus.ACCEPTED,
    "CANCEL_QUEUED": OrderStatus.ACCEPTED,
    "FILLED": OrderStatus.FILLED,
    "CANCELLED": OrderStatus.CANCELED,
    "EXPIRED": OrderStatus.EXPIRED,
    "FAILED": OrderStatus.REJECTED,
}
#: Pages of recent orders searched for a client order id this client did not place itself.
SEARCH_PAGES = 10


class CoinbaseTradingClient:
    """One CDP API key's trading at Coinbase Advanced Trade."""

    venue = "coinbase"

    def __init__(self, http: TradingHttp, signer: CoinbaseJwtSigner) -> None:
        self.http = http
        self.signer = signer
        #: client order id -> venue order id, for the orders placed (or found) through this client.
        self._venue_ids: dict[str, str] = {}
        # Coinbase's recvWindow equivalent: a JWT lives two minutes, then a lost request is void.
        self.recv_window_ms = 120_000

    # --- the interface -----------------------------------------------------------------------

    async def create(self, request: OrderRequest) -> VenueOrder:
        body = {"client_order_id": request.client_order_id, "product_id": request.symbol, "side": request.side.value,
                "order_configuration": _configuration(request)}  # fmt: skip
        reply = await self._call("POST", f"{BASE}/orders", body, mutating=True)
        if not reply.get("success"):
            raise _order_error(reply.get("error_response") or {}, "create")
        venue_id = str((reply.get("success_response") or {}).get("order_id") or reply.get("order_id") or "")
        if not venue_id:
            raise UnknownOutcome("coinbase: create answered without an order id")
        self._venue_ids[request.client_order_id] = venue_id
        order = await self._get(venue_id)
        if order is None:  # accepted a moment ago: the venue lists it soon
            return VenueOrder(request.client_order_id, venue_id, OrderStatus.ACCEPTED, request.size, Decimal(0),
                              request.price)  # fmt: skip
        return order

    async def cancel(self, symbol: str, client_order_id: str, venue_order_id: str | None = None) -> VenueOrder:
        venue_id = venue_order_id or await self._venue_id(symbol, client_order_id)
        reply = await self._call("POST", f"{BASE}/orders/batch_cancel", {"order_ids": [venue_id]}, mutating=True)
        results = reply.get("results") or [{}]
        result = results[0] if isinstance(results[0], dict) else {}
        if not result.get("success"):
            reason = str(result.get("failure_reason", "UNKNOWN_CANCEL_FAILURE_REASON"))
            if reason in ("UNKNOWN_CANCEL_ORDER", "COMMANDER_REJECTED_CANCEL_ORDER", "INVALID_CANCEL_REQUEST"):
                raise UnknownOrder(f"coinbase: cancel refused ({reason})", reason)
            raise InvalidOrder(f"coinbase: cancel refused ({reason})", reason)
        order = await self._get(venue_id)
        if order is None:
            raise UnknownOutcome("coinbase: a canceled order could not be read back")
        return order

    async def amend(self, amend: Amend) -> VenueOrder:
        venue_id = amend.venue_order_id or await self._venue_id(amend.symbol, amend.client_order_id)
        body = {"order_id": venue_id, "price": decimal_text(amend.price or Decimal(0)),
                "size": decimal_text(amend.size)}  # fmt: skip
        reply = await self._call("POST", f"{BASE}/orders/edit", body, mutating=True)
        if not reply.get("success"):
            errors = reply.get("errors") or [{}]
            first = errors[0] if isinstance(errors[0], dict) else {}
            reason = str(first.get("edit_failure_reason") or first.get("preview_failure_reason") or "EDIT_FAILED")
            raise InvalidOrder(f"coinbase: edit refused ({reason})", reason)
        order = await self._get(venue_id)
        if order is None:
            raise UnknownOutcome("coinbase: an edited order could not be read back")
        return order

    async def query(self, symbol: str, client_order_id: str) -> VenueOrder | None:
        venue_id = self._venue_ids.get(client_order_id)
        if venue_id is not None:
            return await self._get(venue_id)
        return await self._search(symbol, client_order_id)

    async def open_orders(self, symbol: str | None = None) -> list[VenueOrder]:
        params = "order_status=OPEN&limit=1000" + (f"&product_ids={symbol}" if symbol else "")
        reply = await self._call("GET", f"{BASE}/orders/historical/batch", None, mutating=False, params=params)
        return [self._order(o) for o in reply.get("orders") or []]

    async def aclose(self) -> None:
        await self.http.aclose()

    # --- Coinbase ----------------------------------------------------------------------------

    async def _venue_id(self, symbol: str, client_order_id: str) -> str:
        venue_id = self._venue_ids.get(client_order_id)
        if venue_id is None:
            found = await self._search(symbol, client_order_id)
            if found is None:
                raise UnknownOrder(f"coinbase: no order with client order id {client_order_id}")
            venue_id = found.venue_order_id
        return venue_id

    async def _get(self, venue_id: str) -> VenueOrder | None:
        try:
            reply = await self._call("GET", f"{BASE}/orders/historical/{venue_id}", None, mutating=False)
        except UnknownOrder:
            return None
        order = reply.get("order")
        return self._order(order) if isinstance(order, dict) else None

    async def _search(self, symbol: str, client_order_id: str) -> VenueOrder | None:
        cursor = ""
        for _ in range(SEARCH_PAGES):
            params = f"product_ids={symbol}&limit=250" + (f"&cursor={cursor}" if cursor else "")
            reply = await self._call("GET", f"{BASE}/orders/historical/batch", None, mutating=False, params=params)
            for raw in reply.get("orders") or []:
                if isinstance(raw, dict) and raw.get("client_order_id") == client_order_id:
                    return self._order(raw)
            cursor = str(reply.get("cursor") or "")
            if not reply.get("has_next") or not cursor:
                break
        return None

    async def _call(self, method: str, path: str, body: dict[str, Any] | None, *, mutating: bool,
                    params: str | None = None) -> dict[str, Any]:  # fmt: skip
        content = msgspec.json.encode(body) if body is not None else None

        def prepare() -> Prepared:  # the token is made the moment the request leaves
            token = self.signer.token(method, self.http.host, path)
            headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
            return Prepared(params=params, content=content, headers=headers)

        response = await self.http.send(method, path, prepare, mutating=mutating)
        if response.status_code == 200:
            try:
                reply = msgspec.json.decode(response.content)
            except msgspec.DecodeError:
                raise (UnknownOutcome if mutating else VenueUnavailable)(
                    f"coinbase: {method} {path}: a reply that is not JSON"
                ) from None
            return reply if isinstance(reply, dict) else {}
        raise self._error(response, f"{method} {path}", mutating)

    def _error(self, response: VenueResponse, what: str, mutating: bool) -> VenueError:
        status, text = response.status_code, response.text[:300]
        if status == 429:
            return self.http.rate_limited(response, text)
        if status >= 500:
            return (UnknownOutcome if mutating else VenueUnavailable)(f"coinbase: {what}: HTTP {status}", text)
        if status in (401, 403):
            return AuthFailed(f"coinbase: {what}: authentication refused (HTTP {status})", text)
        if status == 404:
            return UnknownOrder(f"coinbase: {what}: not found", text)
        return InvalidOrder(f"coinbase: {what}: refused (HTTP {status})", text)

    def _order(self, raw: dict[str, Any]) -> VenueOrder:
        configuration = raw.get("order_configuration") or {}
        shape = next(iter(configuration.values()), {}) if isinstance(configuration, dict) else {}
        size = Decimal(str(shape.get("base_size") or "0"))
        price = Decimal(str(shape["limit_price"])) if shape.get("limit_price") else None
        filled = Decimal(str(raw.get("filled_size") or "0"))
        status = _STATUS.get(str(raw.get("status")), OrderStatus.ACCEPTED)
        if status is OrderStatus.ACCEPTED and filled > 0:
            status = OrderStatus.PARTIALLY_FILLED
        avg = Decimal(str(raw["average_filled_price"])) if filled > 0 and raw.get("average_filled_price") else None
        client_id, venue_id = str(raw.get("client_order_id", "")), str(raw.get("order_id", ""))
        if client_id and venue_id:
            self._venue_ids[client_id] = venue_id
        return VenueOrder(client_order_id=client_id, venue_order_id=venue_id, status=status, size=size,
                          filled_size=filled, price=price, avg_fill_price=avg)  # fmt: skip


def _configuration(request: OrderRequest) -> dict[str, dict[str, Any]]:
    size = decimal_text(request.size)
    if request.order_type is OrderType.MARKET:
        return {"market_market_ioc": {"base_size": size}}
    price = decimal_text(request.price or Decimal(0))
    tif = request.time_in_force
    if tif is TimeInForce.IOC:
        return {"sor_limit_ioc": {"base_size": size, "limit_price": price}}
    if tif is TimeInForce.FOK:
        return {"limit_limit_fok": {"base_size": size, "limit_price": price}}
    return {"limit_limit_gtc": {"base_size": size, "limit_price": price, "post_only": tif is TimeInForce.POST_ONLY}}


def _order_error(error: dict[str, Any], what: str) -> VenueError:
    code = str(error.get("error") or error.get("preview_failure_reason") or "UNKNOWN_FAILURE_REASON")
    message = f"{code}: {error.get('message') or error.get('error_details') or ''}".strip()
    if "INSUFFICIENT_FUND" in code:
        return InsufficientFunds(f"coinbase: {what}: insufficient funds", message)
    if "DUPLICATE" in code:
        return DuplicateOrder(f"coinbase: {what}: client order id in use", message)
    return InvalidOrder(f"coinbase: {what}: refused ({code})", message)


def make_client(setup: TradingSetup) -> CoinbaseTradingClient:
    signer = CoinbaseJwtSigner(setup.api_key, setup.secret.encode())
    # Coinbase allows 30 private requests a second per key: our budget per one-second window.
    http = TradingHttp(setup.rest_url, venue="coinbase", limiter=WeightedRateLimiter(30, 1.0), timeouts=setup.timeouts)
    return CoinbaseTradingClient(http, signer)
