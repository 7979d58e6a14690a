"""Coinbase Advanced Trade's private order API (``/api/v3/brokerage``) over the simulator's engine.

Auth as documented for CDP keys: ``Authorization: Bearer <JWT>``, the JWT signed ES256 (ECDSA
P-256 / SHA-256, raw ``r || s``, base64url; EdDSA for Ed25519 keys) with header ``{alg, kid:
key name, nonce, typ}`` and claims ``{sub: key name, iss: "cdp", nbf, exp, uri: "<METHOD>
<host><path>"}``. The simulator checks the signature with the account's public key, ``kid`` /
``sub``, ``nbf`` / ``exp`` (``SKEW`` seconds of slack), and that ``uri`` is this request's method,
``Host`` header and path (no scheme, no query). Anything else: 401 ``Unauthorized``.

Endpoints: create (``POST /orders``), ``POST /orders/batch_cancel``, ``POST /orders/edit``,
``GET /orders/historical/{order_id}``, ``GET /orders/historical/batch``. A create with a
``client_order_id`` the account already used creates nothing and answers with the order that id
belongs to, as the API reference says ("If the ID provided is not unique, the order will not be
created and the order corresponding with that ID will be returned instead"). Order failures are
HTTP 200 with ``success: false`` and the venue's failure reasons.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from decimal import Decimal, InvalidOperation

from aiohttp import web

from simulator.coinbase.render import Clock
from simulator.faults import Faults, SimStats
from simulator.limits import RequestRate
from simulator.trading.accounts import Account, Accounts
from simulator.trading.engine import BUY, FOK, GTC, IOC, LIMIT, MARKET, POST_ONLY, SELL, Engine, Order, Rejection
from simulator.trading.http import TradingServer, json_reply

PREFIX = "/api/v3/brokerage"
#: Seconds of clock skew allowed on ``nbf`` / ``exp``.
SKEW = 5
STATUS = {"NEW": "OPEN", "PARTIALLY_FILLED": "OPEN", "FILLED": "FILLED", "CANCELED": "CANCELLED",
          "EXPIRED": "EXPIRED", "REJECTED": "FAILED"}  # fmt: skip
TIF = {GTC: "GOOD_UNTIL_CANCELLED", POST_ONLY: "GOOD_UNTIL_CANCELLED", IOC: "IMMEDIATE_OR_CANCEL",
       FOK: "FILL_OR_KILL"}  # fmt: skip
#: Engine rejection -> (error, message, preview_failure_reason).
FAILURES = {
    Rejection.INSUFFICIENT_BALANCE: ("INSUFFICIENT_FUND", "Insufficient balance in source account",
                                     "PREVIEW_INSUFFICIENT_FUND"),
    Rejection.PRICE_FILTER: ("INVALID_PRICE_PRECISION", "Too many decimals in order price",
                             "PREVIEW_INVALID_PRICE_PRECISION"),
    Rejection.LOT_SIZE: ("INVALID_SIZE_PRECISION", "Too many decimals in order amount",
                         "PREVIEW_INVALID_SIZE_PRECISION"),
    Rejection.NOTIONAL: ("UNKNOWN_FAILURE_REASON", "Order size is too small",
                         "PREVIEW_INVALID_QUOTE_SIZE_TOO_SMALL"),
    Rejection.WOULD_TAKE: ("INVALID_LIMIT_PRICE_POST_ONLY", "Post-only order would cross the book",
                           "PREVIEW_INVALID_LIMIT_PRICE_POST_ONLY"),
    Rejection.NO_LIQUIDITY: ("INVALID_NO_LIQUIDITY", "No liquidity to fill this order",
                             "UNKNOWN_PREVIEW_FAILURE_REASON"),
    Rejection.UNKNOWN_SYMBOL: ("INVALID_PRODUCT_ID", "ProductID is invalid", "UNKNOWN_PREVIEW_FAILURE_REASON"),
}  # fmt: skip


def _b64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def verify_jwt(accounts: Accounts, token: str, uri: str | None) -> Account | None:
    """The account whose CDP key signed ``token``, if it is valid now; None otherwise.

    REST tokens carry ``uri`` ("<METHOD> <host><path>"), which must be this request's; WebSocket
    tokens carry none (``uri=None``: not checked), as the docs build them."""
    try:
        head_text, claims_text, signature_text = token.split(".")
        head = json.loads(_b64url(head_text))
        claims = json.loads(_b64url(claims_text))
        signature = _b64url(signature_text)
    except (ValueError, binascii.Error, json.JSONDecodeError):
        return None
    if not isinstance(head, dict) or not isinstance(claims, dict):
        return None
    account = accounts.by_coinbase_key.get(str(head.get("kid")))
    if account is None or account.coinbase is None:
        return None
    key = account.coinbase
    if head.get("alg") != key.algorithm or claims.get("sub") != key.key_name or claims.get("iss") != "cdp":
        return None
    if not key.verify(f"{head_text}.{claims_text}".encode(), signature):
        return None
    now = time.time()
    nbf, exp = claims.get("nbf"), claims.get("exp")
    if not isinstance(nbf, int | float) or not isinstance(exp, int | float) or nbf > now + SKEW or exp < now - SKEW:
        return None
    if uri is not None and claims.get("uri") != uri:
        return None
    return account


def _plain(value: Decimal) -> str:
    return f"{value.normalize():f}" if value else "0"


class CoinbaseTrading(TradingServer):
    def __init__(self, engine: Engine, *, host: str = "127.0.0.1", port: int = 0, faults: Faults | None = None,
                 stats: SimStats | None = None, match_interval: float = 0.05,
                 private_rate: int = 30) -> None:  # fmt: skip
        super().__init__(engine, host=host, port=port, faults=faults, stats=stats, match_interval=match_interval)
        self.private_rate = private_rate
        self._rates: dict[str, RequestRate] = {}
        self._clock = Clock()
        from simulator.coinbase.user_stream import CoinbaseUserStreams  # it builds on this module

        #: The ``user`` channel the market-data WebSocket serves for this API's accounts.
        self.user_streams = CoinbaseUserStreams(self)

    def venue_order_id(self, order: Order) -> str:
        return order.uuid

    def routes(self, app: web.Application) -> None:
        app.router.add_post(f"{PREFIX}/orders", self._private(self._create, create=True))
        app.router.add_post(f"{PREFIX}/orders/batch_cancel", self._private(self._batch_cancel))
        app.router.add_post(f"{PREFIX}/orders/edit", self._private(self._edit))
        app.router.add_get(f"{PREFIX}/orders/historical/batch", self._private(self._list))
        app.router.add_get(f"{PREFIX}/orders/historical/{{order_id}}", self._private(self._get))

    # --- auth ---------------------------------------------------------------------------------

    def _authenticate(self, request: web.Request) -> Account | None:
        header = request.headers.get("Authorization", "")
        if not header.startswith("Bearer "):
            return None
        uri = f"{request.method} {request.headers.get('Host', '')}{request.path}"
        return verify_jwt(self.engine.accounts, header[len("Bearer ") :].strip(), uri)

    def _private(self, action, create: bool = False):  # type: ignore[no-untyped-def]
        async def handler(request: web.Request) -> web.Response:
            account = self._authenticate(request)
            if account is None:
                return web.Response(status=401, text="Unauthorized\n", content_type="text/plain")
            if not self._rates.setdefault(account.name, RequestRate(self.private_rate)).allow():
                self.stats.rate_limited += 1
                return self.throttled()
            body: dict = {}
            if request.method == "POST":
                try:
                    body = json.loads(await request.read() or b"{}")
                except (json.JSONDecodeError, UnicodeDecodeError):
                    return self._bad_request("invalid JSON body")
                if not isinstance(body, dict):
                    return self._bad_request("the body must be a JSON object")
            if not create:
                return action(account, request, body)
            client_id = str(body.get("client_order_id") or "")

            def execute() -> tuple[web.Response, Order | None]:
                before = len(self.engine.orders)
                response = action(account, request, body)
                created = self.engine.orders[before:]
                return response, created[-1] if created else None

            return await self.place(client_id, execute)

        return handler

    @staticmethod
    def _bad_request(message: str) -> web.Response:
        return json_reply(400, {"error": "INVALID_ARGUMENT", "error_details": message, "message": message})

    # --- order JSON ---------------------------------------------------------------------------

    def _configuration(self, order: Order) -> dict:
        size = _plain(order.size)
        if order.type == MARKET:
            if order.quote_size is not None:
                return {"market_market_ioc": {"quote_size": _plain(order.quote_size)}}
            return {"market_market_ioc": {"base_size": size}}
        price = _plain(order.price or Decimal(0))
        if order.tif == FOK:
            return {"limit_limit_fok": {"base_size": size, "limit_price": price}}
        if order.tif == IOC:
            return {"sor_limit_ioc": {"base_size": size, "limit_price": price}}
        return {"limit_limit_gtc": {"base_size": size, "limit_price": price, "post_only": order.tif == POST_ONLY}}

    def _order(self, order: Order) -> dict:
        fees = order.fees
        filled_value = order.cumulative_quote
        completion = (order.executed / order.size * 100) if order.size else Decimal(0)
        after_fees = filled_value + fees if order.side == BUY else filled_value - fees
        return {
            "order_id": order.uuid, "product_id": order.symbol, "user_id": order.account.name,
            "order_configuration": self._configuration(order), "side": order.side,
            "client_order_id": order.client_id, "status": STATUS[order.status], "time_in_force": TIF[order.tif],
            "created_time": self._clock(order.created_ms), "completion_percentage": _plain(completion.quantize(
                Decimal("0.01"))), "filled_size": _plain(order.executed),
            "average_filled_price": _plain(order.average_price), "fee": "", "number_of_fills": str(len(order.fills)),
            "filled_value": _plain(filled_value), "pending_cancel": False,
            "size_in_quote": order.quote_size is not None,
            "total_fees": _plain(fees), "size_inclusive_of_fees": False,
            "total_value_after_fees": _plain(after_fees), "trigger_status": "INVALID_ORDER_TYPE",
            "order_type": order.type, "reject_reason": "REJECT_REASON_UNSPECIFIED", "settled": not order.is_open,
            "product_type": "SPOT", "reject_message": "", "cancel_message": "",
            "order_placement_source": "RETAIL_ADVANCED", "outstanding_hold_amount": _plain(order.locked),
            "is_liquidation": False,
            "last_fill_time": self._clock(order.fills[-1].time_ms) if order.fills else None,
            "edit_history": [{"price": _plain(p or Decimal(0)), "size": _plain(s),
                              "replace_accept_timestamp": self._clock(t)} for p, s, t in order.edits],
            "leverage": "", "margin_type": "UNKNOWN_MARGIN_TYPE", "retail_portfolio_id": "",
        }  # fmt: skip

    # --- create -------------------------------------------------------------------------------

    @staticmethod
    def _failure(error: str, message: str, preview: str, configuration: object) -> web.Response:
        return json_reply(200, {
            "success": False, "failure_reason": "UNKNOWN_FAILURE_REASON", "order_id": "",
            "error_response": {"error": error, "message": message, "error_details": message,
                               "preview_failure_reason": preview, "new_order_failure_reason": error},
            "order_configuration": configuration})  # fmt: skip

    def _success(self, order: Order) -> web.Response:
        return json_reply(200, {
            "success": True, "failure_reason": "UNKNOWN_FAILURE_REASON", "order_id": order.uuid,
            "success_response": {"order_id": order.uuid, "product_id": order.symbol, "side": order.side,
                                 "client_order_id": order.client_id},
            "order_configuration": self._configuration(order)})  # fmt: skip

    def _create(self, account: Account, request: web.Request, body: dict) -> web.Response:
        configuration = body.get("order_configuration")
        client_id = body.get("client_order_id")
        if not client_id or not isinstance(client_id, str):
            return self._bad_request("client_order_id is required")
        existing = self.engine.by_client_id(account, client_id)
        if existing is not None:  # documented: not created again; the order with that id is returned
            return self._success(existing)
        product = body.get("product_id")
        if product not in self.engine.instruments:
            return self._failure(*FAILURES[Rejection.UNKNOWN_SYMBOL], configuration)
        side = body.get("side")
        if side not in (BUY, SELL):
            return self._failure("INVALID_SIDE", "Invalid side", "UNKNOWN_PREVIEW_FAILURE_REASON", configuration)
        kinds = {"market_market_ioc", "limit_limit_gtc", "limit_limit_fok", "sor_limit_ioc"}
        if not isinstance(configuration, dict) or len(configuration) != 1 or not set(configuration) <= kinds:
            return self._failure("UNSUPPORTED_ORDER_CONFIGURATION", "Unsupported order configuration",
                                 "UNKNOWN_PREVIEW_FAILURE_REASON", configuration)  # fmt: skip
        ((kind, spec),) = configuration.items()
        try:
            params = self._params(kind, spec)
        except (InvalidOperation, TypeError, KeyError, AttributeError):
            return self._failure("INVALID_SIZE_PRECISION" if kind.startswith("market") else "INVALID_LIMIT_PRICE",
                                 "Invalid order configuration", "UNKNOWN_PREVIEW_FAILURE_REASON",
                                 configuration)  # fmt: skip
        try:
            order = self.engine.place(account, product, side, client_id=client_id, **params)
        except Rejection as exc:
            error, message, preview = FAILURES.get(exc.reason, ("UNKNOWN_FAILURE_REASON", exc.reason,
                                                                "UNKNOWN_PREVIEW_FAILURE_REASON"))  # fmt: skip
            if exc.reason == Rejection.LOT_SIZE and "minimum" in exc.detail:
                preview = "PREVIEW_INVALID_BASE_SIZE_TOO_SMALL"
            return self._failure(error, message, preview, configuration)
        return self._success(order)

    @staticmethod
    def _params(kind: str, spec: dict) -> dict:
        def number(name: str) -> Decimal | None:
            value = spec.get(name)
            return None if value in (None, "") else Decimal(str(value))

        if kind == "market_market_ioc":
            base, quote = number("base_size"), number("quote_size")
            if (base is None) == (quote is None):
                raise KeyError("base_size or quote_size")
            return {"type": MARKET, "tif": IOC, "size": base, "quote_size": quote}
        size, price = number("base_size"), number("limit_price")
        if size is None or price is None:
            raise KeyError("base_size and limit_price")
        tif = {"limit_limit_gtc": POST_ONLY if spec.get("post_only") else GTC, "limit_limit_fok": FOK,
               "sor_limit_ioc": IOC}[kind]  # fmt: skip
        return {"type": LIMIT, "tif": tif, "size": size, "price": price}

    # --- cancel, edit, query ------------------------------------------------------------------

    def _mine(self, account: Account, order_id: object) -> Order | None:
        order = self.engine.get_uuid(str(order_id))
        return order if order is not None and order.account is account else None

    def _batch_cancel(self, account: Account, request: web.Request, body: dict) -> web.Response:
        ids = body.get("order_ids")
        if not isinstance(ids, list) or not ids:
            return self._bad_request("order_ids is required")
        results = []
        for order_id in ids:
            order = self._mine(account, order_id)
            if order is None:
                reason = "UNKNOWN_CANCEL_ORDER"
            elif order.status == "FILLED":
                reason = "ORDER_IS_FULLY_FILLED"
            elif not order.is_open:
                reason = "DUPLICATE_CANCEL_REQUEST"
            else:
                self.engine.cancel(order)
                reason = ""
            results.append({"success": not reason, "failure_reason": reason or "UNKNOWN_CANCEL_FAILURE_REASON",
                            "order_id": str(order_id)})  # fmt: skip
        return json_reply(200, {"results": results})

    def _edit(self, account: Account, request: web.Request, body: dict) -> web.Response:
        def failed(edit: str, preview: str = "UNKNOWN_PREVIEW_FAILURE_REASON") -> web.Response:
            return json_reply(200, {"success": False, "errors": [{"edit_failure_reason": edit,
                                                                  "preview_failure_reason": preview}]})  # fmt: skip

        order = self._mine(account, body.get("order_id"))
        if order is None:
            return failed("ORDER_NOT_FOUND")
        if not order.is_open:
            return failed("ONLY_OPEN_ORDERS_CAN_BE_EDITED")
        if order.type != LIMIT or order.tif not in (GTC, POST_ONLY):
            return failed("ONLY_LIMIT_ORDER_EDITS_SUPPORTED")
        try:
            price = Decimal(str(body.get("price")))
        except InvalidOperation:
            return failed("INVALID_EDITED_PRICE")
        try:
            size = Decimal(str(body.get("size")))  # both are required: an omitted size is not "unchanged"
        except InvalidOperation:
            return failed("INVALID_EDITED_SIZE")
        try:
            self.engine.amend(order, price=price, size=size, below_filled="reject")
        except Rejection as exc:
            edit = {Rejection.BELOW_FILLED: "CANNOT_EDIT_TO_BELOW_FILLED_SIZE",
                    Rejection.NO_CHANGE: "EDIT_REQUEST_EQUAL_TO_ORIGINAL_REQUEST",
                    Rejection.PRICE_FILTER: "INVALID_EDITED_PRICE", Rejection.LOT_SIZE: "INVALID_EDITED_SIZE",
                    Rejection.NOT_OPEN: "ONLY_OPEN_ORDERS_CAN_BE_EDITED"}.get(
                exc.reason, "COMMANDER_REJECTED_EDIT_ORDER")  # fmt: skip
            preview = FAILURES.get(exc.reason, ("", "", "UNKNOWN_PREVIEW_FAILURE_REASON"))[2]
            return failed(edit, preview)
        return json_reply(200, {"success": True, "errors": []})

    def _get(self, account: Account, request: web.Request, body: dict) -> web.Response:
        order = self._mine(account, request.match_info["order_id"])
        if order is None:
            message = "order with this orderID was not found"
            return json_reply(404, {"error": "NOT_FOUND", "error_details": message, "message": message})
        return json_reply(200, {"order": self._order(order)})

    def _list(self, account: Account, request: web.Request, body: dict) -> web.Response:
        query = request.query
        statuses = set(query.getall("order_status", []))
        products = set(query.getall("product_ids", []))
        ids = set(query.getall("order_ids", []))
        try:
            limit = max(1, min(int(query.get("limit", "100")), 1000))
            offset = int(query.get("cursor") or 0)
        except ValueError:
            return self._bad_request("invalid limit or cursor")
        mine = [o for o in reversed(self.engine.orders) if o.account is account
                and (not statuses or STATUS[o.status] in statuses) and (not products or o.symbol in products)
                and (not ids or o.uuid in ids)]  # fmt: skip
        page = mine[offset : offset + limit]
        has_next = offset + limit < len(mine)
        return json_reply(200, {"orders": [self._order(o) for o in page], "sequence": "0", "has_next": has_next,
                                "cursor": str(offset + limit) if has_next else ""})  # fmt: skip

    # --- injected faults ------------------------------------------------------------------------

    def throttled(self) -> web.Response:
        return json_reply(429, {"error": "RATE_LIMIT_EXCEEDED", "error_details": "Too many requests",
                                "message": "Too many requests"}, {"Retry-After": "1"})  # fmt: skip

    def unavailable(self, executed: bool) -> web.Response:
        if executed:
            return json_reply(
                500, {"error": "INTERNAL", "error_details": "internal error", "message": "internal error"}
            )
        return json_reply(503, {"error": "UNAVAILABLE", "error_details": "service unavailable",
                                "message": "service unavailable"})  # fmt: skip
