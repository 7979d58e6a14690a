"""Binance spot and USD-M trading over REST: SIGNED order endpoints, Binance's error codes mapped
onto tickflow's venue-error hierarchy.

Spot amends a limit order with ``order/cancelReplace`` (STOP_ON_FAILURE: the new order is only
placed once the old one is canceled); USD-M amends natively (``PUT /fapi/v1/order``, the order
keeps its ids). Binance documents a 5xx and codes -1006/-1007 as "execution status unknown":
those, and timeouts, become ``UnknownOutcome``, never a retry.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import msgspec

from producers.rate_limit import WeightedRateLimiter
from producers.venues.binance.signing import BinanceSigner, signed_params, signer_for
from producers.venues.binance.venue import USED_WEIGHT_HEADER
from producers.venues.trading import (
    Amend,
    OrderRequest,
    Prepared,
    TradingHttp,
    VenueOrder,
    VenueResponse,
    decimal_text,
    now_ms,
)
from tickflow.errors import (
    AuthFailed,
    DuplicateOrder,
    InsufficientFunds,
    InvalidOrder,
    ReplaceFailed,
    UnknownOrder,
    UnknownOutcome,
    VenueError,
    VenueUnavailable,
)
from tickflow.events import OrderStatus, OrderType, TimeInForce

if TYPE_CHECKING:
    from producers.venues import TradingSetup


@dataclass(frozen=True)
class BinanceTradingPaths:
    venue: str
    #: REQUEST_WEIGHT per minute of one IP (shared with the market-data REST calls).
    weight_per_minute: int
    #: The account's order-rate limit (orders, seconds) and the header with the venue's count.
    order_limit: tuple[int, float]
    order_count_header: str
    order: str
    open_orders: str
    time: str
    cancel_replace: str | None  # spot only
    native_amend: bool  # USD-M: PUT order
    spot: bool
    #: Documented request weights.
    query_weight: int
    open_orders_weight: int
    open_orders_all_weight: int


SPOT_TRADING = BinanceTradingPaths(
    "binance-spot", 6000, (100, 10.0), "X-MBX-ORDER-COUNT-10S", "/api/v3/order", "/api/v3/openOrders",
    "/api/v3/time", "/api/v3/order/cancelReplace", native_amend=False, spot=True, query_weight=4,
    open_orders_weight=6, open_orders_all_weight=80,
)  # fmt: skip
USDM_TRADING = BinanceTradingPaths(
    "binance-usdm", 2400, (300, 10.0), "X-MBX-ORDER-COUNT-10S", "/fapi/v1/order", "/fapi/v1/openOrders",
    "/fapi/v1/time", None, native_amend=True, spot=False, query_weight=1, open_orders_weight=1,
    open_orders_all_weight=40,
)  # fmt: skip

_STATUS = {
    "NEW": OrderStatus.ACCEPTED,
    "PARTIALLY_FILLED": OrderStatus.PARTIALLY_FILLED,
    "FILLED": OrderStatus.FILLED,
    "CANCELED": OrderStatus.CANCELED,
    "PENDING_CANCEL": OrderStatus.CANCELED,
    "REJECTED": OrderStatus.REJECTED,
    "EXPIRED": OrderStatus.EXPIRED,
    "EXPIRED_IN_MATCH": OrderStatus.EXPIRED,
}

#: Codes after which Binance itself does not know whether the request was executed.
_UNKNOWN_STATUS_CODES = frozenset({-1006, -1007})
_AUTH_CODES = frozenset({-1002, -1022, -2014, -2015})
_UNKNOWN_ORDER_CODES = frozenset({-2011, -2013})


class _Order(msgspec.Struct):
    """The fields of an order reply both markets share (spot RESULT/FULL and query; USD-M)."""

    orderId: int
    clientOrderId: str
    status: str
    origQty: str
    executedQty: str
    price: str | None = None
    cummulativeQuoteQty: str | None = None  # spot
    cumQuote: str | None = None  # USD-M
    avgPrice: str | None = None  # USD-M
    transactTime: int | None = None
    updateTime: int | None = None


_order = msgspec.json.Decoder(_Order)
_orders = msgspec.json.Decoder(list[_Order])


class BinanceTradingClient:
    """One API key's trading on one Binance market."""

    def __init__(
        self,
        venue: str,
        paths: BinanceTradingPaths,
        http: TradingHttp,
        api_key: str,
        signer: BinanceSigner,
        *,
        recv_window_ms: int = 5000,
    ) -> None:
        self.venue = venue
        self.paths = paths
        self.http = http
        self.signer = signer
        self.recv_window_ms = recv_window_ms
        self._headers = {"X-MBX-APIKEY": api_key, "Content-Type": "application/x-www-form-urlencoded"}
        #: Our clock's offset from Binance's, corrected when Binance refuses a timestamp (-1021).
        self.clock_offset_ms = 0

    # --- the interface -----------------------------------------------------------------------

    async def create(self, request: OrderRequest) -> VenueOrder:
        params = {"symbol": request.symbol, "side": request.side.value, "newClientOrderId": request.client_order_id}
        params |= self._order_shape(request.order_type, request.time_in_force, request.price)
        params["quantity"] = decimal_text(request.size)
        if request.reduce_only and not self.paths.spot:
            params["reduceOnly"] = "true"
        params["newOrderRespType"] = "RESULT"
        return self._parse(await self._signed("POST", self.paths.order, params, mutating=True))

    async def cancel(self, symbol: str, client_order_id: str, venue_order_id: str | None = None) -> VenueOrder:
        params = {"symbol": symbol, "origClientOrderId": client_order_id}
        return self._parse(await self._signed("DELETE", self.paths.order, params, mutating=True))

    async def amend(self, amend: Amend) -> VenueOrder:
        if self.paths.native_amend:  # USD-M: price and quantity both required; the order keeps its ids
            params = {"symbol": amend.symbol, "origClientOrderId": amend.client_order_id, "side": amend.side.value}
            params |= {"quantity": decimal_text(amend.size), "price": decimal_text(amend.price or Decimal(0))}
            return self._parse(await self._signed("PUT", self.paths.order, params, mutating=True))
        assert self.paths.cancel_replace is not None and amend.price is not None
        params = {"symbol": amend.symbol, "side": amend.side.value, "cancelReplaceMode": "STOP_ON_FAILURE"}
        params |= {"cancelOrigClientOrderId": amend.client_order_id, "newClientOrderId": amend.new_client_order_id}
        params |= self._order_shape(OrderType.LIMIT, amend.time_in_force, amend.price)
        # The replacement carries what is left: the new total size less what the old order filled.
        params["quantity"] = decimal_text(amend.size - amend.filled_size)
        params["newOrderRespType"] = "RESULT"
        body = await self._signed("POST", self.paths.cancel_replace, params, mutating=True)
        return self._parse(msgspec.json.encode(msgspec.json.decode(body)["newOrderResponse"]))

    async def query(self, symbol: str, client_order_id: str) -> VenueOrder | None:
        params = {"symbol": symbol, "origClientOrderId": client_order_id}
        try:
            body = await self._signed("GET", self.paths.order, params, mutating=False, weight=self.paths.query_weight)
        except UnknownOrder:
            return None
        return self._parse(body)

    async def open_orders(self, symbol: str | None = None) -> list[VenueOrder]:
        params = {"symbol": symbol} if symbol else {}
        weight = self.paths.open_orders_weight if symbol else self.paths.open_orders_all_weight
        body = await self._signed("GET", self.paths.open_orders, params, mutating=False, weight=weight)
        try:
            return [self._order(o) for o in _orders.decode(body)]
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise VenueUnavailable(f"{self.venue}: open orders reply not understood: {exc}") from None

    async def aclose(self) -> None:
        await self.http.aclose()

    # --- Binance -----------------------------------------------------------------------------

    def _order_shape(self, order_type: OrderType, tif: TimeInForce, price: Decimal | None) -> dict[str, str]:
        if order_type is OrderType.MARKET:
            return {"type": "MARKET"}
        shape = {"price": decimal_text(price or Decimal(0))}
        if tif is TimeInForce.POST_ONLY:  # spot: the LIMIT_MAKER type; USD-M: GTX (good till crossing)
            return shape | ({"type": "LIMIT_MAKER"} if self.paths.spot else {"type": "LIMIT", "timeInForce": "GTX"})
        return shape | {"type": "LIMIT", "timeInForce": tif.value}

    async def _signed(
        self, method: str, path: str, params: dict[str, str], *, mutating: bool, weight: int = 1
    ) -> bytes:
        def prepare() -> Prepared:  # the timestamp and signature of the moment it leaves
            query = signed_params(params, self.signer, now_ms() + self.clock_offset_ms, self.recv_window_ms)
            # Reads carry their parameters in the query string, writes in the form body.
            if method in ("GET", "DELETE"):
                return Prepared(params=query, headers=self._headers)
            return Prepared(content=query, headers=self._headers)

        order = method == "POST"  # creates and cancel-replaces count against the order rate
        response = await self.http.send(method, path, prepare, mutating=mutating, weight=weight, order=order)
        if response.status_code == 200:
            return response.content
        raise self._error(response, f"{method} {path}", mutating)

    def _error(self, response: VenueResponse, what: str, mutating: bool) -> VenueError:
        status = response.status_code
        code, msg = _code_and_message(response)
        venue_message = f"{code} {msg}" if code is not None else f"HTTP {status} {response.text[:200]}"
        if status in (418, 429):
            return self.http.rate_limited(response, venue_message)
        if status >= 500 or code in _UNKNOWN_STATUS_CODES:
            error = UnknownOutcome if mutating else VenueUnavailable
            return error(f"{self.venue}: {what}: execution status unknown", venue_message)
        if code == -1021:  # our clock is off: nothing executed; resynchronise, then it may be sent again
            return VenueUnavailable(f"{self.venue}: {what}: timestamp outside recvWindow", venue_message)
        if code in _AUTH_CODES or status in (401, 403):
            return AuthFailed(f"{self.venue}: {what}: authentication refused", venue_message)
        if code in _UNKNOWN_ORDER_CODES:
            return UnknownOrder(f"{self.venue}: {what}: unknown order", venue_message)
        if code in (-2021, -2022) and isinstance(data := _json(response).get("data"), dict):  # cancel-replace
            return _replace_failure(self.venue, data, venue_message)
        text = (msg or "").lower()
        if code == -4116 or "duplicate" in text:
            return DuplicateOrder(f"{self.venue}: {what}: client order id in use", venue_message)
        if code == -2019 or "insufficient" in text:
            return InsufficientFunds(f"{self.venue}: {what}: insufficient balance", venue_message)
        return InvalidOrder(f"{self.venue}: {what}: refused", venue_message)

    def _parse(self, body: bytes) -> VenueOrder:
        try:
            return self._order(_order.decode(body))
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            # The venue acted (200) but we cannot read what it did: the caller must query.
            raise UnknownOutcome(f"{self.venue}: order reply not understood: {exc}") from None

    @staticmethod
    def _order(o: _Order) -> VenueOrder:
        size, filled = Decimal(o.origQty), Decimal(o.executedQty)
        status = _STATUS.get(o.status, OrderStatus.ACCEPTED)
        if status is OrderStatus.ACCEPTED and filled > 0:
            status = OrderStatus.PARTIALLY_FILLED
        avg = None
        if filled > 0:
            if o.avgPrice is not None and Decimal(o.avgPrice) > 0:
                avg = Decimal(o.avgPrice)
            elif (quote := o.cummulativeQuoteQty or o.cumQuote) is not None:
                avg = Decimal(quote) / filled
        price = Decimal(o.price) if o.price is not None and Decimal(o.price) > 0 else None
        ts = o.updateTime or o.transactTime
        return VenueOrder(client_order_id=o.clientOrderId, venue_order_id=str(o.orderId), status=status, size=size,
                          filled_size=filled, price=price, avg_fill_price=avg,
                          exchange_ts=ts * 1000 if ts else None)  # fmt: skip


def _replace_failure(venue: str, data: dict[str, Any], venue_message: str) -> VenueError:
    canceled = data.get("cancelResult") == "SUCCESS"
    failed = data.get("newOrderResponse") if canceled else data.get("cancelResponse")
    detail = f"{failed.get('code')} {failed.get('msg')}" if isinstance(failed, dict) else venue_message
    code = failed.get("code") if isinstance(failed, dict) else None
    reason = "INSUFFICIENT_FUNDS" if code == -2019 else "INVALID_ORDER"
    if code in _UNKNOWN_ORDER_CODES:
        reason = "UNKNOWN_ORDER"
    what = "the old order was canceled, the new one refused" if canceled else "the old order could not be canceled"
    return ReplaceFailed(f"{venue}: cancel-replace failed: {what}", detail, old_canceled=canceled, reason=reason)


def _json(response: VenueResponse) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _code_and_message(response: VenueResponse) -> tuple[int | None, str | None]:
    body = _json(response)
    code = body.get("code")
    return (code if isinstance(code, int) else None), (str(body["msg"]) if "msg" in body else None)


def make_client(paths: BinanceTradingPaths, setup: TradingSetup) -> BinanceTradingClient:
    signer = signer_for(setup.key_type, setup.secret)
    limiter = WeightedRateLimiter(setup.weight_per_minute or paths.weight_per_minute)
    orders, seconds = setup.order_limit or paths.order_limit
    http = TradingHttp(setup.rest_url, venue=paths.venue, limiter=limiter, used_weight_header=USED_WEIGHT_HEADER,
                       order_limiter=WeightedRateLimiter(orders, seconds), order_count_header=paths.order_count_header,
                       timeouts=setup.timeouts)  # fmt: skip
    return BinanceTradingClient(paths.venue, paths, http, setup.api_key, signer, recv_window_ms=setup.recv_window_ms)
