"""Binance's private order API over the simulator's engine: spot (``/api/v3``) or USD-M (``/fapi/v1``).

SIGNED requests as documented: the ``X-MBX-APIKEY`` header names the key; ``timestamp`` is
mandatory and ``recvWindow`` optional (default 5000, at most 60000); a request is refused with
-1021 when it is older than ``recvWindow`` or more than 1000 ms ahead of the server's clock; the
``signature`` is over totalParams = the query string concatenated with the form body (without the
``signature`` pair itself), HMAC-SHA256 as hex (case-insensitive) or Ed25519 as base64.

Every answer carries ``X-MBX-USED-WEIGHT-1M`` (the IP's weight, shared with the market-data
port); successful creates carry the account's ``X-MBX-ORDER-COUNT-*`` headers, and a create over
an order-rate limit is answered 429 -1015 with ``Retry-After``. Engine rejections become
Binance's codes and messages (spot -1013 filter failures and -2010 ...; USD-M -4xxx, -2019,
-2022, -5021, -5022). Binance's docs say a 5xx means "execution status unknown": the injected
503 after acceptance says so; the one before acceptance is its "Service Unavailable." reply.
"""

from __future__ import annotations

import math
import re
import time
from collections import deque
from collections.abc import Callable, Mapping
from decimal import Decimal, InvalidOperation
from urllib.parse import parse_qsl

from aiohttp import web

from simulator.binance.markets import BinanceMarket
from simulator.faults import Faults, SimStats
from simulator.limits import WeightWindow
from simulator.trading.accounts import Account
from simulator.trading.engine import BUY, FOK, GTC, IOC, LIMIT, MARKET, POST_ONLY, SELL, Engine, Order, Rejection
from simulator.trading.http import TradingServer, json_reply

USED_WEIGHT = "X-MBX-USED-WEIGHT-1M"
CLIENT_ID = re.compile(r"^[\.A-Z\:/a-z0-9_-]{1,36}$")
DECIMAL_RANGE = r"^([0-9]{1,20})(\.[0-9]{1,20})?$"
SPOT_LIMITS = ((100, 10), (200_000, 86_400))
USDM_LIMITS = ((300, 10), (1200, 60))
FOK_REJECT = ("Due to the order could not be filled immediately, the FOK order has been rejected. "
              "The order will not be recorded in the order history")  # fmt: skip
GTX_REJECT = ("Due to the order could not be executed as maker, the Post Only order will be rejected. "
              "The order will not be recorded in the order history")  # fmt: skip


class BinanceError(Exception):
    """A request Binance refuses: HTTP status, code, message."""

    def __init__(self, status: int, code: int, msg: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(f"{code} {msg}")
        self.status, self.code, self.msg, self.headers = status, code, msg, headers or {}

    def body(self) -> dict:
        return {"code": self.code, "msg": self.msg}


def missing(name: str) -> BinanceError:
    return BinanceError(400, -1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed.")


def interval_label(seconds: int) -> tuple[str, str]:
    """(header suffix, message text) of an order-rate window: (``10S``, ``10 SECOND``)."""
    for size, letter, word in ((86_400, "D", "DAY"), (3600, "H", "HOUR"), (60, "M", "MINUTE"), (1, "S", "SECOND")):
        if seconds % size == 0:
            return f"{seconds // size}{letter}", f"{seconds // size} {word}"
    raise ValueError(seconds)


class OrderCounter:
    """One account's new orders per window (the ORDERS rate limiters), as sliding windows: one
    queue of order times per window, so a count costs the same at 10 or 10,000 orders a second."""

    def __init__(self, limits: tuple[tuple[int, int], ...]) -> None:
        self.limits = limits
        self.windows: list[deque[float]] = [deque() for _ in limits]

    def charge(self) -> tuple[dict[str, str], BinanceError | None]:
        now = time.monotonic()
        for (limit, seconds), times in zip(self.limits, self.windows, strict=True):
            while times and now - times[0] >= seconds:
                times.popleft()
            if len(times) >= limit:
                retry = max(1, math.ceil(seconds - (now - times[0])))
                _, text = interval_label(seconds)
                return {}, BinanceError(429, -1015, f"Too many new orders; current limit is {limit} orders per {text}.",
                                        {"Retry-After": str(retry)})  # fmt: skip
        for times in self.windows:
            times.append(now)
        return {f"X-MBX-ORDER-COUNT-{interval_label(s)[0]}": str(len(times))
                for (_, s), times in zip(self.limits, self.windows, strict=True)}, None  # fmt: skip


class BinanceTrading(TradingServer):
    def __init__(
        self,
        engine: Engine,
        market: BinanceMarket,
        *,
        weights: WeightWindow,
        exchange_info: Callable[[dict[str, str]], dict],
        host: str = "127.0.0.1",
        port: int = 0,
        faults: Faults | None = None,
        stats: SimStats | None = None,
        match_interval: float = 0.05,
        order_limits: tuple[tuple[int, int], ...] | None = None,
    ) -> None:
        super().__init__(engine, host=host, port=port, faults=faults, stats=stats, match_interval=match_interval)
        self.market = market
        self.usdm = market.usdm
        self.weights = weights
        self.exchange_info = exchange_info
        self.order_limits = order_limits or (USDM_LIMITS if market.usdm else SPOT_LIMITS)
        self._counters: dict[str, OrderCounter] = {}
        self._digits = None if market.usdm else 8
        from simulator.binance.user_stream import BinanceUserStreams  # it builds on this module

        #: User data streams: spot's over the WebSocket API, USD-M's listenKey endpoints here (both
        #: streams are served on the market-data port).
        self.user_streams = BinanceUserStreams(self)

    # --- routes -------------------------------------------------------------------------------

    def routes(self, app: web.Application) -> None:
        p = self.market.rest_prefix
        app.router.add_get(f"{p}/time", self._public(1, lambda q: {"serverTime": _now_ms()}))
        app.router.add_get(f"{p}/ping", self._public(1, lambda q: {}))
        weight = self.market.exchange_info_weight
        app.router.add_get(f"{p}/exchangeInfo", self._public(weight, self.exchange_info))
        app.router.add_route("POST", f"{p}/order", self._signed(1, self._new_order, create=True))
        app.router.add_route("DELETE", f"{p}/order", self._signed(1, self._cancel))
        app.router.add_route("GET", f"{p}/order", self._signed(1 if self.usdm else 4, self._query))
        app.router.add_route("GET", f"{p}/openOrders", self._signed(1 if self.usdm else 6, self._open_orders))
        if self.usdm:
            app.router.add_route("PUT", f"{p}/order", self._signed(1, self._modify))
        else:
            app.router.add_route("POST", f"{p}/order/cancelReplace", self._signed(1, self._cancel_replace,
                                                                                  create=True))  # fmt: skip
            app.router.add_route("PUT", f"{p}/order/amend/keepPriority", self._signed(4, self._amend))
        self.user_streams.routes(app)

    def _public(self, weight: int, body: Callable[[dict[str, str]], dict]):  # type: ignore[no-untyped-def]
        async def handler(request: web.Request) -> web.Response:
            try:
                used = self._charge(weight)
            except BinanceError as exc:
                return json_reply(exc.status, exc.body(), exc.headers)
            return json_reply(200, body(dict(request.query)), {USED_WEIGHT: str(used)})

        return handler

    def _charge(self, weight: int) -> int:
        verdict = self.weights.charge(weight)
        if verdict.status == 200:
            return verdict.used
        headers = {"Retry-After": str(verdict.retry_after), USED_WEIGHT: str(verdict.used)}
        if verdict.status == 418:
            self.stats.banned += 1
            until = int(time.time() * 1000) + verdict.retry_after * 1000
            raise BinanceError(418, -1003, f"Way too much request weight used; IP banned until {until}. "
                                           "Please use WebSocket Streams for live updates to avoid bans.",
                              headers)  # fmt: skip
        self.stats.rate_limited += 1
        per = "1 MINUTE" if self.weights.window == 60 else f"{self.weights.window:g} SECOND"
        raise BinanceError(429, -1003, f"Too much request weight used; current limit is {self.weights.limit} request "
                                       f"weight per {per}. Please use WebSocket Streams for live updates to avoid "
                                       "polling the API.", headers)  # fmt: skip

    def _signed(self, weight: int, action: Callable[[Account, dict[str, str]], dict | tuple[int, dict]],
                create: bool = False):  # type: ignore[no-untyped-def]  # fmt: skip
        async def handler(request: web.Request) -> web.Response:
            body = (await request.read()).decode("utf-8", "replace") if request.can_read_body else ""
            headers: dict[str, str] = {}
            try:
                headers[USED_WEIGHT] = str(self._charge(weight))
                account, params = self._authenticate(request, body)
            except BinanceError as exc:
                return json_reply(exc.status, exc.body(), {**headers, **exc.headers})
            if not create:
                return self._run(action, account, params, headers)
            client_id = params.get("newClientOrderId", "")

            def execute() -> tuple[web.Response, Order | None]:
                counts, over = self._counter(account).charge()
                if over is not None:
                    self.stats.order_rate_limited += 1
                    return json_reply(over.status, over.body(), {**headers, **over.headers}), None
                before = len(self.engine.orders)
                response = self._run(action, account, params, {**headers, **counts})
                created = self.engine.orders[before:]
                return response, created[-1] if created else None

            return await self.place(client_id, execute)

        return handler

    def _run(self, action: Callable[[Account, dict[str, str]], dict | tuple[int, dict]], account: Account,
             params: dict[str, str], headers: dict[str, str]) -> web.Response:  # fmt: skip
        try:
            result = action(account, params)
        except BinanceError as exc:
            return json_reply(exc.status, exc.body(), {**headers, **exc.headers})
        status, body = result if isinstance(result, tuple) else (200, result)
        return json_reply(status, body, headers)

    def _counter(self, account: Account) -> OrderCounter:
        return self._counters.setdefault(account.name, OrderCounter(self.order_limits))

    # --- authentication -----------------------------------------------------------------------

    def _authenticate(self, request: web.Request, body: str) -> tuple[Account, dict[str, str]]:
        api_key = request.headers.get("X-MBX-APIKEY")
        if not api_key:
            raise BinanceError(401, -2014, "API-key format invalid.")
        account = self.account_for(api_key)
        query = request.rel_url.raw_query_string  # as sent: the signature is over the encoded text
        params = dict(parse_qsl(body, keep_blank_values=True))
        params.update(parse_qsl(query, keep_blank_values=True))  # the query string wins (documented)
        self.check_timing(params)
        signature = params.pop("signature", None)
        payload = _without_signature(query) + _without_signature(body)
        self.check_signature(account, payload.encode(), signature)
        return account, params

    def account_for(self, api_key: str) -> Account:
        """The account an API key belongs to; -2015 when none does."""
        account = self.engine.accounts.by_binance_key.get(api_key)
        if account is None or account.binance is None:
            raise BinanceError(401, -2015, "Invalid API-key, IP, or permissions for action.")
        return account

    def check_timing(self, params: Mapping[str, str]) -> None:
        """Binance's timing security, for REST and the WebSocket API alike: ``timestamp`` mandatory,
        ``recvWindow`` (default 5000, at most 60000); -1021 when the request is older than the window
        or more than 1000 ms ahead of the server's clock."""
        if not params.get("timestamp"):
            raise missing("timestamp")
        try:
            stamp = int(params["timestamp"])
            window = Decimal(params.get("recvWindow", "5000"))
        except (ValueError, InvalidOperation):
            raise BinanceError(400, -1100, "Illegal characters found in parameter 'timestamp'; legal range is "
                                           "'^[0-9]{1,20}$'.") from None  # fmt: skip
        if window > 60000 or window <= 0:
            raise BinanceError(400, -1131, "recvWindow must be less than 60000")
        now_us = time.time() * 1_000_000
        stamp_us = stamp if stamp >= 10**14 and not self.usdm else stamp * 1000  # spot also takes microseconds
        if stamp_us >= now_us + 1_000_000:
            raise BinanceError(400, -1021, "Timestamp for this request was 1000ms ahead of the server's time.")
        if now_us - stamp_us > window * 1000:
            raise BinanceError(400, -1021, "Timestamp for this request is outside of the recvWindow.")

    @staticmethod
    def check_signature(account: Account, payload: bytes, signature: str | None) -> None:
        """-1102 without a signature, -1022 when it does not sign ``payload`` with the account's key."""
        if not signature:
            raise missing("signature")
        assert account.binance is not None  # account_for found it by its Binance key
        if not account.binance.verify(payload, signature):
            raise BinanceError(400, -1022, "Signature for this request is not valid.")

    # --- parameters ---------------------------------------------------------------------------

    def _symbol(self, params: dict[str, str]) -> str:
        symbol = params.get("symbol", "")
        if not symbol:
            raise missing("symbol")
        if symbol not in self.engine.instruments:
            raise BinanceError(400, -1121, "Invalid symbol.")
        return symbol

    @staticmethod
    def _decimal(params: dict[str, str], name: str) -> Decimal | None:
        text = params.get(name)
        if text is None or text == "":
            return None
        if not re.match(DECIMAL_RANGE, text):
            raise BinanceError(400, -1100, f"Illegal characters found in parameter '{name}'; legal range is "
                                           f"'{DECIMAL_RANGE}'.")  # fmt: skip
        return Decimal(text)

    def _find(self, account: Account, symbol: str, params: dict[str, str], id_name: str = "orderId",
              client_name: str = "origClientOrderId") -> Order | None:  # fmt: skip
        order_id, client_id = params.get(id_name), params.get(client_name)
        if not order_id and not client_id:
            raise BinanceError(
                400, -1102, f"Param '{client_name}' or '{id_name}' must be sent, but both were empty/null!"
            )
        if order_id:
            try:
                order = self.engine.get(int(order_id))
            except ValueError:
                raise BinanceError(400, -1100, f"Illegal characters found in parameter '{id_name}'; legal range is "
                                               "'^[0-9]{1,20}$'.") from None  # fmt: skip
            if order is not None and client_id and order.client_id != client_id:
                order = None
        else:
            order = self.engine.by_client_id(account, client_id or "")
        if order is None or order.account is not account or order.symbol != symbol:
            return None
        return order

    # --- order JSON ---------------------------------------------------------------------------

    def _price(self, order: Order, value: Decimal | None) -> str:
        grid = order.instrument.price
        if value is None or value == 0:
            return grid.fixed(0, self._digits) if self._digits else "0"
        return self._fmt(value, grid.decimals)

    def _qty(self, order: Order, value: Decimal) -> str:
        return self._fmt(value, order.instrument.size.decimals)

    def _fmt(self, value: Decimal, decimals: int) -> str:
        """Spot pads every decimal to 8 places; USD-M uses the symbol's precision."""
        places = self._digits if self._digits is not None else decimals
        return f"{value:.{places}f}"

    def _quote(self, order: Order, value: Decimal) -> str:
        places = 8 if self._digits else order.instrument.price.decimals + order.instrument.size.decimals
        return f"{value.quantize(Decimal(1).scaleb(-places)):.{places}f}"

    def _type(self, order: Order) -> str:
        if order.type == MARKET:
            return "MARKET"
        return "LIMIT_MAKER" if order.tif == POST_ONLY and not self.usdm else "LIMIT"

    def _tif(self, order: Order) -> str:
        if order.tif == POST_ONLY:
            return "GTX" if self.usdm else "GTC"
        return order.tif

    def _spot_order(self, order: Order, shape: str, orig_client_id: str | None = None) -> dict:
        """Spot JSON: ``ack`` / ``result`` / ``full`` (new order), ``query``, ``cancel``."""
        body: dict = {"symbol": order.symbol}
        if orig_client_id is not None:
            body["origClientOrderId"] = orig_client_id
        body |= {"orderId": order.id, "orderListId": -1, "clientOrderId": order.client_id}
        if shape in ("ack", "result", "full", "cancel"):
            body["transactTime"] = order.updated_ms
        if shape == "ack":
            return body
        body |= {
            "price": self._price(order, order.price), "origQty": self._qty(order, order.size),
            "executedQty": self._qty(order, order.executed),
            "cummulativeQuoteQty": self._quote(order, order.cumulative_quote), "status": order.status,
            "timeInForce": self._tif(order), "type": self._type(order), "side": order.side,
        }  # fmt: skip
        if shape == "query":
            body |= {"stopPrice": self._price(order, None), "icebergQty": self._qty(order, Decimal(0)),
                     "time": order.created_ms, "updateTime": order.updated_ms, "isWorking": order.is_open,
                     "workingTime": order.created_ms}  # fmt: skip
        elif shape != "cancel":
            body["workingTime"] = order.created_ms
        body["origQuoteOrderQty"] = f"{order.quote_size or 0:.8f}"
        body["selfTradePreventionMode"] = "NONE"
        if order.expiry_reason and order.status == "EXPIRED":
            body["expiryReason"] = order.expiry_reason
        if shape == "full":
            body["fills"] = [{"price": self._price(order, f.price), "qty": self._qty(order, f.size),
                              "commission": f"{f.fee:.8f}", "commissionAsset": f.fee_asset, "tradeId": f.trade_id}
                             for f in order.fills]  # fmt: skip
        return body

    def _usdm_order(self, order: Order, query: bool = False) -> dict:
        body = {
            "orderId": order.id, "symbol": order.symbol, "status": order.status, "clientOrderId": order.client_id,
            "price": self._price(order, order.price),
            "avgPrice": f"{order.average_price:.{order.instrument.price.decimals + 2}f}",
            "origQty": self._qty(order, order.size), "executedQty": self._qty(order, order.executed),
            "cumQty": self._qty(order, order.executed), "cumQuote": self._quote(order, order.cumulative_quote),
            "timeInForce": self._tif(order), "type": order.type, "reduceOnly": order.reduce_only,
            "closePosition": False, "side": order.side, "positionSide": "BOTH", "stopPrice": "0",
            "workingType": "CONTRACT_PRICE", "priceProtect": False, "origType": order.type, "priceMatch": "NONE",
            "selfTradePreventionMode": "EXPIRE_MAKER", "goodTillDate": 0, "updateTime": order.updated_ms,
        }  # fmt: skip
        if query:
            del body["cumQty"]
            body["time"] = order.created_ms
        return body

    def _order_json(self, order: Order, shape: str = "result") -> dict:
        return self._usdm_order(order, query=shape == "query") if self.usdm else self._spot_order(order, shape)

    # --- actions ------------------------------------------------------------------------------

    def _order_request(self, params: dict[str, str], prefix: str = "") -> dict:
        """A new order's parameters, checked the way Binance checks them (before the engine)."""
        side = params.get("side")
        if not side:
            raise missing("side")
        if side not in (BUY, SELL):
            raise BinanceError(400, -1117, "Invalid side.")
        kind = params.get("type")
        if not kind:
            raise missing("type")
        types = ("LIMIT", "MARKET") if self.usdm else ("LIMIT", "MARKET", "LIMIT_MAKER")
        if kind not in types:
            raise BinanceError(400, -1116, "Invalid orderType.")
        quantity = self._decimal(params, "quantity")
        price = self._decimal(params, "price")
        quote = None if self.usdm else self._decimal(params, "quoteOrderQty")
        tif_text = params.get("timeInForce")
        client_id = params.get("newClientOrderId") or None
        if client_id is not None and not CLIENT_ID.match(client_id):
            raise BinanceError(400, -1100, "Illegal characters found in parameter 'newClientOrderId'; legal range is "
                                           "'^[\\.A-Z\\:/a-z0-9_-]{1,36}$'.")  # fmt: skip
        reduce_only = params.get("reduceOnly", "false").lower() == "true"
        if reduce_only and not self.usdm:
            raise BinanceError(400, -1104, "Not all sent parameters were read; read '8' parameter(s) but was sent '9'.")
        if kind == "MARKET":
            if price is not None:
                raise BinanceError(400, -1106, "Parameter 'price' sent when not required.")
            if quantity is None and quote is None:
                raise BinanceError(400, -1102, "Param 'quantity' or 'quoteOrderQty' must be sent, but both were "
                                               "empty/null!")  # fmt: skip
            tif = IOC
        else:
            if kind == "LIMIT" and not tif_text:
                raise missing("timeInForce")
            if quantity is None:
                raise missing("quantity")
            if price is None:
                raise missing("price")
            if kind == "LIMIT_MAKER":
                if tif_text:
                    raise BinanceError(400, -1106, "Parameter 'timeInForce' sent when not required.")
                tif = POST_ONLY
            else:
                allowed = {"GTC": GTC, "IOC": IOC, "FOK": FOK} | ({"GTX": POST_ONLY} if self.usdm else {})
                if tif_text not in allowed:
                    raise BinanceError(400, -1115, "Invalid timeInForce.")
                tif = allowed[tif_text]
        if self.usdm and quantity is not None and quantity <= 0:
            raise BinanceError(400, -4003, "Quantity less than or equal to zero.")
        return {"side": side, "type": LIMIT if kind != "MARKET" else MARKET, "size": quantity, "price": price,
                "tif": tif, "client_id": client_id, "quote_size": quote if quantity is None else None,
                "reduce_only": reduce_only}  # fmt: skip

    def _rejected(self, exc: Rejection, market: bool = False) -> BinanceError:
        reason = exc.reason
        if self.usdm:
            minimum = self.engine.instruments and next(iter(self.engine.instruments.values())).min_notional
            codes = {
                Rejection.PRICE_FILTER: (-4014, "Price not increased by tick size."),
                Rejection.LOT_SIZE: (-4023, "Qty not increased by step size."),
                Rejection.NOTIONAL: (-4164, f"Order's notional must be no smaller than {minimum} (unless you choose "
                                            "reduce only)."),
                Rejection.INSUFFICIENT_MARGIN: (-2019, "Margin is insufficient."),
                Rejection.INSUFFICIENT_BALANCE: (-2019, "Margin is insufficient."),
                Rejection.DUPLICATE_CLIENT_ID: (-4116, "clientOrderId is duplicated."),
                Rejection.WOULD_TAKE: (-5022, GTX_REJECT),
                Rejection.FOK_UNFILLED: (-5021, FOK_REJECT),
                Rejection.REDUCE_ONLY: (-2022, "ReduceOnly Order is rejected."),
                Rejection.NO_LIQUIDITY: (-2020, "Unable to fill."),
                Rejection.UNKNOWN_SYMBOL: (-1121, "Invalid symbol."),
            }  # fmt: skip
            code, msg = codes.get(reason, (-1000, "An unknown error occured while processing the request."))
            return BinanceError(400, code, msg)
        filters = {Rejection.PRICE_FILTER: "PRICE_FILTER", Rejection.NOTIONAL: "NOTIONAL",
                   Rejection.LOT_SIZE: "MARKET_LOT_SIZE" if market else "LOT_SIZE"}  # fmt: skip
        if reason in filters:
            return BinanceError(400, -1013, f"Filter failure: {filters[reason]}")
        messages = {
            Rejection.INSUFFICIENT_BALANCE: "Account has insufficient balance for requested action.",
            Rejection.DUPLICATE_CLIENT_ID: "Duplicate order sent.",
            Rejection.WOULD_TAKE: "Order would immediately match and take.",
            Rejection.NO_LIQUIDITY: "Order book liquidity is less than symbol minimum quantity.",
        }
        if reason == Rejection.UNKNOWN_SYMBOL:
            return BinanceError(400, -1121, "Invalid symbol.")
        return BinanceError(400, -2010, messages.get(reason, "NEW_ORDER_REJECTED"))

    def _place(self, account: Account, symbol: str, request: dict) -> Order:
        try:
            return self.engine.place(account, symbol, **request)
        except Rejection as exc:
            raise self._rejected(exc, market=request["type"] == MARKET) from None

    def _response_type(self, params: dict[str, str], kind: str) -> str:
        default = "ACK" if self.usdm or kind == "LIMIT_MAKER" else "FULL"
        shape = params.get("newOrderRespType", default)
        if shape not in ("ACK", "RESULT", "FULL"):
            raise BinanceError(400, -1136 if self.usdm else -1100, "Invalid newOrderRespType.")
        return shape.lower()

    def _new_order(self, account: Account, params: dict[str, str]) -> dict:
        symbol = self._symbol(params)
        request = self._order_request(params)
        shape = self._response_type(params, params.get("type", ""))
        order = self._place(account, symbol, request)
        if self.usdm:
            return self._usdm_order(order)
        return self._spot_order(order, shape)

    def _cancel(self, account: Account, params: dict[str, str]) -> dict:
        symbol = self._symbol(params)
        order = self._find(account, symbol, params)
        if order is None or not order.is_open:
            raise BinanceError(400, -2011, "Unknown order sent.")
        self.engine.cancel(order)
        if self.usdm:
            return self._usdm_order(order)
        body = self._spot_order(order, "cancel", orig_client_id=order.client_id)
        body["clientOrderId"] = params.get("newClientOrderId") or self.engine._client_id()
        return body

    def _query(self, account: Account, params: dict[str, str]) -> dict:
        symbol = self._symbol(params)
        order = self._find(account, symbol, params)
        if order is None:
            raise BinanceError(400, -2013, "Order does not exist.")
        return self._order_json(order, "query")

    def _open_orders(self, account: Account, params: dict[str, str]) -> list:  # type: ignore[override]
        symbol = params.get("symbol")
        if symbol is not None:
            symbol = self._symbol(params)
        return [self._order_json(o, "query") for o in self.engine.open_orders(account, symbol)]

    def _modify(self, account: Account, params: dict[str, str]) -> dict:
        """USD-M ``PUT /fapi/v1/order``: price and quantity both mandatory. As documented, a new
        quantity at or below the executed one, or a GTX price that would cross, cancels the order."""
        symbol = self._symbol(params)
        for name in ("side", "quantity", "price"):
            if not params.get(name):
                raise missing(name)
        quantity, price = self._decimal(params, "quantity"), self._decimal(params, "price")
        order = self._find(account, symbol, params)
        if order is None:
            raise BinanceError(400, -2013, "Order does not exist.")
        if not order.is_open:
            raise BinanceError(400, -4000, "Invalid order status.")
        if order.type != LIMIT:
            raise BinanceError(400, -5025, "Only limit order is supported.")
        try:
            self.engine.amend(order, price=price, size=quantity, below_filled="cancel", post_only_cross="cancel")
        except Rejection as exc:
            if exc.reason == Rejection.NO_CHANGE:
                raise BinanceError(400, -5027, "No need to modify the order.") from None
            if exc.reason == Rejection.NOTIONAL:
                raise BinanceError(400, -5029, f"Order's notional must be no smaller than "
                                               f"{order.instrument.min_notional}") from None  # fmt: skip
            raise self._rejected(exc) from None
        return self._usdm_order(order)

    def _amend(self, account: Account, params: dict[str, str]) -> dict:
        """Spot ``PUT /api/v3/order/amend/keepPriority``: a smaller quantity, same priority, and a new
        client order id (random unless ``newClientOrderId`` is sent)."""
        symbol = self._symbol(params)
        new_qty = self._decimal(params, "newQty")
        if new_qty is None:
            raise missing("newQty")
        order = self._find(account, symbol, params)
        if order is None or not order.is_open:
            raise BinanceError(400, -2038, "Unknown order sent.")
        new_client = params.get("newClientOrderId") or self.engine._client_id()
        if new_client != order.client_id and self.engine.by_client_id(account, new_client) is not None and \
                self.engine.by_client_id(account, new_client).is_open:  # type: ignore[union-attr]  # fmt: skip
            raise BinanceError(400, -2038, "Duplicate order sent.")
        orig_client = order.client_id
        try:
            self.engine.amend(order, size=new_qty, keep_priority=True, below_filled="fill")
        except Rejection as exc:
            messages = {Rejection.SIZE_NOT_DECREASED: "Order amend (quantity increase) is not supported.",
                        Rejection.NO_CHANGE: "The requested action would change no state; rejecting"}  # fmt: skip
            if exc.reason in messages:
                raise BinanceError(400, -2038, messages[exc.reason]) from None
            raise self._rejected(exc) from None
        self.engine.rename(order, new_client)
        return {
            "transactTime": order.updated_ms, "executionId": len(order.fills) + len(order.edits),
            "amendedOrder": {
                "symbol": order.symbol, "orderId": order.id, "orderListId": -1, "origClientOrderId": orig_client,
                "clientOrderId": order.client_id, "price": self._price(order, order.price),
                "qty": self._qty(order, order.size), "executedQty": self._qty(order, order.executed),
                "preventedQty": self._qty(order, Decimal(0)), "quoteOrderQty": self._quote(order, Decimal(0)),
                "cumulativeQuoteQty": self._quote(order, order.cumulative_quote), "status": order.status,
                "timeInForce": self._tif(order), "type": self._type(order), "side": order.side,
                "workingTime": order.created_ms, "selfTradePreventionMode": "NONE",
            },
        }  # fmt: skip

    def _cancel_replace(self, account: Account, params: dict[str, str]) -> tuple[int, dict] | dict:
        """``POST /api/v3/order/cancelReplace`` with its documented success, -2021 (409) and -2022 (400) shapes."""
        symbol = self._symbol(params)
        mode = params.get("cancelReplaceMode")
        if not mode:
            raise missing("cancelReplaceMode")
        if mode not in ("STOP_ON_FAILURE", "ALLOW_FAILURE"):
            raise BinanceError(400, -1100, "Illegal characters found in parameter 'cancelReplaceMode'; legal range is "
                                           "'STOP_ON_FAILURE, ALLOW_FAILURE'.")  # fmt: skip
        request = self._order_request(params)
        shape = self._response_type(params, params.get("type", ""))
        # Filters are evaluated before anything happens (documented): a filter failure is a plain error.
        instrument = self.engine.instruments[symbol]
        try:
            if request["price"] is not None:
                self.engine.ticks(instrument, request["price"])
            if request["size"] is not None:
                self.engine.lots(instrument, request["size"])
            if request["price"] is not None and request["size"] is not None and \
                    request["price"] * request["size"] < instrument.min_notional:  # fmt: skip
                raise Rejection(Rejection.NOTIONAL)
        except Rejection as exc:
            raise self._rejected(exc, market=request["type"] == MARKET) from None
        target = self._find(account, symbol, params, "cancelOrderId", "cancelOrigClientOrderId")
        cancel: dict
        if target is None or not target.is_open:
            cancel, cancelled = {"code": -2011, "msg": "Unknown order sent."}, False
        else:
            self.engine.cancel(target)
            cancel = self._spot_order(target, "cancel", orig_client_id=target.client_id)
            cancel["clientOrderId"] = params.get("cancelNewClientOrderId") or self.engine._client_id()
            cancelled = True
        if not cancelled and mode == "STOP_ON_FAILURE":
            return 400, {"code": -2022, "msg": "Order cancel-replace failed.", "data": {
                "cancelResult": "FAILURE", "newOrderResult": "NOT_ATTEMPTED", "cancelResponse": cancel,
                "newOrderResponse": None}}  # fmt: skip
        try:
            order = self._place(account, symbol, request)
            new: dict = self._spot_order(order, shape)
            placed = True
        except BinanceError as exc:
            new, placed = exc.body(), False
        data = {"cancelResult": "SUCCESS" if cancelled else "FAILURE",
                "newOrderResult": "SUCCESS" if placed else "FAILURE", "cancelResponse": cancel,
                "newOrderResponse": new}  # fmt: skip
        if cancelled and placed:
            return 200, data
        if cancelled or placed:
            return 409, {"code": -2021, "msg": "Order cancel-replace partially failed.", "data": data}
        return 400, {"code": -2022, "msg": "Order cancel-replace failed.", "data": data}

    # --- injected faults ------------------------------------------------------------------------

    def throttled(self) -> web.Response:
        limit, seconds = self.order_limits[0]
        _, text = interval_label(seconds)
        # Injected: Retry-After is the faults' (a test need not wait out a real 10 s window).
        headers = {"Retry-After": str(self.faults.rest_retry_after), USED_WEIGHT: str(self.weights.used)}
        return json_reply(429, {"code": -1015, "msg": f"Too many new orders; current limit is {limit} orders per "
                                                      f"{text}."}, headers)  # fmt: skip

    def unavailable(self, executed: bool) -> web.Response:
        headers = {USED_WEIGHT: str(self.weights.used)}
        if executed:  # the documented "execution status unknown" replies
            body = ({"code": -1000, "msg": "Unknown error, please check your request or try again later."}
                    if self.usdm else {"code": -1007, "msg": "Timeout waiting for response from backend server. "
                                                             "Send status unknown; execution status unknown."}
                    )  # fmt: skip
            return json_reply(503, body, headers)
        return json_reply(503, {"code": -1001, "msg": "Service Unavailable."} if self.usdm else
                          {"code": -1001, "msg": "Internal error; unable to process your request. Please try again."},
                          headers)  # fmt: skip

    def internal_error(self) -> web.Response:
        return json_reply(500, {"code": -1000, "msg": "An unknown error occurred while processing the request."})


def _without_signature(text: str) -> str:
    """``text`` with its ``signature=...`` pair removed (the signature signs everything else)."""
    parts = [p for p in text.split("&") if p and not p.startswith("signature=")]
    return "&".join(parts)


def _now_ms() -> int:
    return int(time.time() * 1000)
