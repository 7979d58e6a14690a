"""Binance's user data streams: spot over the WebSocket API, USD-M over its listenKey stream.

Spot: Binance retired the listenKey stream (``/api/v3/userDataStream`` and ``/ws/<listenKey>``) on
2026-02-20; a spot account's events now come only over the WebSocket API
(``userDataStream.subscribe.signature``), served by ``simulator.binance.ws_api`` on the
market-data port (``/ws-api/v3``). The retired endpoint is not served: a 404 like any unknown path.

USD-M keeps its listenKey stream (``/fapi/v1/listenKey``), as documented: ``POST`` with the
``X-MBX-APIKEY`` header (no signature) answers ``{"listenKey": ..}``; an account has one active
key, so a second ``POST`` returns the same key and extends it by 60 minutes; ``PUT`` (by the API
key) extends it, ``DELETE`` closes it and its streams; a key that does not exist is ``-1125 This
listenKey does not exist.``. The stream is ``/ws/<listenKey>`` on the market-data port (Binance
serves it on its stream host).

Events, only the subscribed account's:

- spot: ``executionReport`` on every order change, then ``outboundAccountPosition`` with the
  order's two assets (every change locks, moves or releases a balance), each wrapped as
  ``{"subscriptionId": N, "event": ..}``;
- USD-M: ``ORDER_TRADE_UPDATE`` on every order change, ``ACCOUNT_UPDATE`` (``m: ORDER``) after
  each fill (the docs: unfilled or canceled orders push no ``ACCOUNT_UPDATE``);
  ``listenKeyExpired`` when a key lapses (``expire()`` makes one lapse now); nothing after it.

Kept simple: every order is a one-way (``BOTH``) cross-margin order; spot amend keepPriority
reports ``REPLACED`` under the order's client id before the amend renames it.
"""

from __future__ import annotations

import random
import string
import time
from decimal import Decimal

import msgspec
from aiohttp import web
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from simulator.binance.trading import USED_WEIGHT, BinanceError, BinanceTrading
from simulator.binance.ws_api import BinanceWsApi
from simulator.trading.engine import CANCELED, EXPIRED, FOK, IOC, LIMIT, Fill, Order
from simulator.trading.http import json_reply
from simulator.trading.user_streams import UserConnection, UserStreamHub

#: A listenKey lives this many seconds after its creation or last keepalive.
LISTEN_KEY_TTL = 3600.0
NO_SUCH_KEY = (-1125, "This listenKey does not exist.")


class ListenKeys:
    """Active listen keys: one per account, each with its expiry (monotonic seconds)."""

    def __init__(self, ttl: float = LISTEN_KEY_TTL, seed: int = 0) -> None:
        self.ttl = ttl
        self._rng = random.Random(seed ^ 0x11573)
        self._keys: dict[str, tuple[str, float]] = {}  # key -> (account, expires at)

    def create(self, account: str) -> str:
        """The account's active key (extended), or a new one."""
        for key, (owner, _) in list(self._keys.items()):
            if owner == account and self.account(key) is not None:
                self._keys[key] = (account, time.monotonic() + self.ttl)
                return key
        alphabet = string.ascii_letters + string.digits
        key = "".join(self._rng.choice(alphabet) for _ in range(64))
        self._keys[key] = (account, time.monotonic() + self.ttl)
        return key

    def account(self, key: str) -> str | None:
        """The account of ``key`` while it is valid."""
        entry = self._keys.get(key)
        if entry is None or entry[1] <= time.monotonic():
            return None
        return entry[0]

    def active(self, account: str) -> str | None:
        return next((k for k, (owner, _) in self._keys.items() if owner == account and self.account(k)), None)

    def extend(self, key: str) -> bool:
        account = self.account(key)
        if account is None:
            return False
        self._keys[key] = (account, time.monotonic() + self.ttl)
        return True

    def close(self, key: str) -> bool:
        return self._keys.pop(key, None) is not None

    def lapse(self, key: str) -> None:
        if key in self._keys:
            self._keys[key] = (self._keys[key][0], 0.0)


class BinanceUserStreams:
    """Spot: the WebSocket API (``ws_api``). USD-M: the listenKey endpoints (on the trading port) and
    the streams they open (on the market port)."""

    def __init__(self, trading: BinanceTrading, ttl: float = LISTEN_KEY_TTL, seed: int = 0) -> None:
        self.trading = trading
        self.usdm = trading.usdm
        self.keys = ListenKeys(ttl, seed)
        self.hub = UserStreamHub(trading.engine)
        self.path = "/fapi/v1/listenKey"
        self._streams: dict[str, set[UserConnection]] = {}  # key -> its open connections
        self._rng = random.Random(seed ^ 0xC11E)
        #: Spot's only user data stream since the listenKey one was retired (2026-02-20).
        self.ws_api = None if self.usdm else BinanceWsApi(trading, self.hub, self._spot)

    def shutdown_ws_api(self, close_after: float | None = None) -> None:
        """Spot: send every WebSocket API connection ``serverShutdown``; with ``close_after``, close
        them that many seconds later (``BinanceWsApi.shutdown``)."""
        if self.ws_api is None:
            raise RuntimeError("the USD-M simulator serves no WebSocket API")
        self.ws_api.shutdown(close_after)

    # --- REST (USD-M) -------------------------------------------------------------------------

    def routes(self, app: web.Application) -> None:
        if not self.usdm:  # spot's listenKey endpoints were retired: unknown paths now
            return
        for method in ("POST", "PUT", "DELETE"):
            app.router.add_route(method, self.path, self._endpoint)

    async def _endpoint(self, request: web.Request) -> web.Response:
        try:
            used = self.trading._charge(1)
            account = self._account(request)
            body = self._act(request, account)
        except BinanceError as exc:
            return json_reply(exc.status, exc.body(), exc.headers)
        return json_reply(200, body, {USED_WEIGHT: str(used)})

    def _account(self, request: web.Request) -> str:
        api_key = request.headers.get("X-MBX-APIKEY")
        if not api_key:
            raise BinanceError(401, -2014, "API-key format invalid.")
        return self.trading.account_for(api_key).name

    def _act(self, request: web.Request, account: str) -> dict:
        if request.method == "POST":
            return {"listenKey": self.keys.create(account)}
        key = self.keys.active(account) or ""  # keepalive and close go by the API key: the account's key
        if self.keys.account(key) != account:
            raise BinanceError(400, *NO_SUCH_KEY)
        if request.method == "PUT":
            self.keys.extend(key)
            return {"listenKey": key}
        self.keys.close(key)
        for stream in list(self._streams.get(key, ())):  # "will close the stream"
            stream.connection.transport.abort()
        return {}

    # --- the stream ---------------------------------------------------------------------------

    def owns(self, name: str) -> bool:
        """Whether ``name`` (a ``/ws/<name>`` path) is a listen key that is valid now."""
        return self.keys.account(name) is not None

    async def serve(self, connection: ServerConnection, connection_id: int, key: str) -> None:
        account = self.keys.account(key)
        assert account is not None
        stream = UserConnection(connection, connection_id, account, lambda: self.trading.faults, self.trading.stats)
        self._streams.setdefault(key, set()).add(stream)
        unsubscribe = self.hub.subscribe(account, lambda order, fill: self._changed(stream, key, order, fill))
        try:
            async for _ in connection:  # the client has nothing to say on a user stream
                pass
        except ConnectionClosed:
            pass
        finally:
            unsubscribe()
            self._streams.get(key, set()).discard(stream)

    def expire(self, key: str) -> None:
        """Let ``key`` lapse now: its streams get ``listenKeyExpired`` and nothing after it."""
        self.keys.lapse(key)
        # USD-M documents E as a string here: sent as documented.
        text = _json({"e": "listenKeyExpired", "E": str(self.trading.engine.now_ms()), "listenKey": key})
        for stream in self._streams.get(key, ()):
            stream.send(text, "listenKeyExpired", key, faultable=False)

    def _changed(self, stream: UserConnection, key: str, order: Order, fill: Fill | None) -> None:
        if self.keys.account(key) is None:  # lapsed: no more events until a new key is used
            return
        stream.send(self._order_trade_update(order, fill), "ORDER_TRADE_UPDATE", order.client_id)
        if fill is not None:
            stream.send(self._account_update(order), "ACCOUNT_UPDATE", order.instrument.quote)

    # --- spot ---------------------------------------------------------------------------------

    def _spot(self, order: Order, fill: Fill | None) -> list[tuple[bytes, str, str]]:
        """An order change as spot's events (JSON bodies, unwrapped), with what each is about."""
        t = self.trading
        now = t.engine.now_ms()
        execution = _execution(order, fill, amended="REPLACED")
        client_id, original = order.client_id, ""
        if execution == "CANCELED":  # c is the cancel request's own id, C the canceled order's
            client_id, original = self._random_id(), order.client_id
        working = _resting(order)
        last_quote = fill.price * fill.size if fill else Decimal(0)
        report = {
            "e": "executionReport", "E": now, "s": order.symbol, "c": client_id, "S": order.side,
            "o": t._type(order), "f": t._tif(order), "q": t._qty(order, order.size),
            "p": t._price(order, order.price), "P": t._price(order, None), "F": t._qty(order, Decimal(0)),
            "g": -1, "C": original, "x": execution, "X": order.status, "r": "NONE", "i": order.id,
            "l": t._qty(order, fill.size if fill else Decimal(0)),
            "z": t._qty(order, order.executed), "L": t._price(order, fill.price if fill else None),
            "n": f"{fill.fee:.8f}" if fill else "0", "N": fill.fee_asset if fill else None,
            "T": fill.time_ms if fill else order.updated_ms, "t": fill.trade_id if fill else -1,
            "I": self._rng.randrange(10**9), "w": working, "m": bool(fill and fill.maker), "M": False,
            "O": order.created_ms, "Z": t._quote(order, order.cumulative_quote), "Y": t._quote(order, last_quote),
            "Q": f"{order.quote_size or 0:.8f}", "W": order.created_ms, "V": "NONE",
        }  # fmt: skip
        if not working:
            del report["W"]  # "only visible if the order has been placed on the book"
        grid = order.instrument
        engine = t.engine
        balances = []
        for asset in (grid.base, grid.quote):
            free, locked = engine.balance(order.account, asset)
            balances.append({"a": asset, "f": f"{free:.8f}", "l": f"{locked:.8f}"})
        position = {"e": "outboundAccountPosition", "E": now, "u": order.updated_ms, "B": balances}
        assets = f"{grid.base},{grid.quote}"
        return [(_json(report), "executionReport", order.client_id),
                (_json(position), "outboundAccountPosition", assets)]  # fmt: skip

    def _random_id(self) -> str:
        alphabet = string.ascii_letters + string.digits
        return "".join(self._rng.choice(alphabet) for _ in range(22))

    # --- USD-M --------------------------------------------------------------------------------

    def _order_trade_update(self, order: Order, fill: Fill | None) -> bytes:
        t = self.trading
        now = t.engine.now_ms()
        bids, asks = self._open_notional(order)
        decimals = order.instrument.price.decimals
        body = {
            "s": order.symbol, "c": order.client_id, "S": order.side, "o": order.type, "f": t._tif(order),
            "q": t._qty(order, order.size), "p": t._price(order, order.price),
            "ap": f"{order.average_price:.{decimals + 2}f}", "sp": "0", "x": _execution(order, fill, "AMENDMENT"),
            "X": order.status, "i": order.id, "l": t._qty(order, fill.size if fill else Decimal(0)),
            "z": t._qty(order, order.executed), "L": t._price(order, fill.price if fill else None),
        }  # fmt: skip
        if fill is not None:  # "will not push if no commission"
            body |= {"N": fill.fee_asset, "n": f"{fill.fee:.8f}"}
        realized = Decimal(0)
        if fill is not None:
            realized = t.engine.position(order.account, order.symbol).realized
        body |= {
            "T": fill.time_ms if fill else order.updated_ms, "t": fill.trade_id if fill else 0,
            "b": f"{bids:.8f}", "a": f"{asks:.8f}", "m": bool(fill and fill.maker), "R": order.reduce_only,
            "wt": "CONTRACT_PRICE", "ot": order.type, "ps": "BOTH", "cp": False, "rp": f"{realized:.8f}",
            "pP": False, "si": 0, "ss": 0, "V": "EXPIRE_MAKER", "pm": "NONE", "gtd": 0,
        }  # fmt: skip
        return _json({"e": "ORDER_TRADE_UPDATE", "E": now, "T": fill.time_ms if fill else order.updated_ms,
                      "o": body})  # fmt: skip

    def _open_notional(self, order: Order) -> tuple[Decimal, Decimal]:
        """The account's open buy and sell notional on the symbol (the event's ``b`` and ``a``)."""
        bids = asks = Decimal(0)
        for other in self.trading.engine.open_orders(order.account, order.symbol):
            notional = (other.price or Decimal(0)) * other.remaining
            if other.side == "BUY":
                bids += notional
            else:
                asks += notional
        return bids, asks

    def _account_update(self, order: Order) -> bytes:
        engine = self.trading.engine
        quote = order.instrument.quote
        free, locked = engine.balance(order.account, quote)
        # The wallet balance counts margin too: held by open orders (locked) and by positions.
        held = sum((p.margin for (name, symbol), p in engine.positions.items()
                    if name == order.account.name and engine.instruments[symbol].quote == quote),
                   Decimal(0))  # fmt: skip
        wallet = free + locked + held
        position = engine.position(order.account, order.symbol)
        decimals = order.instrument.price.decimals
        now = engine.now_ms()
        return _json({
            "e": "ACCOUNT_UPDATE", "E": now, "T": order.updated_ms,
            "a": {"m": "ORDER",
                  "B": [{"a": quote, "wb": f"{wallet:.8f}", "cw": f"{wallet:.8f}", "bc": "0"}],
                  "P": [{"s": order.symbol, "pa": self.trading._qty(order, position.size),
                         "ep": f"{position.entry:.{decimals + 2}f}", "bep": f"{position.entry:.{decimals + 2}f}",
                         "cr": f"{position.realized:.8f}", "up": "0", "mt": "cross", "iw": "0", "ps": "BOTH"}]},
        })  # fmt: skip


def _execution(order: Order, fill: Fill | None, amended: str) -> str:
    """The event's execution type: what this change of the order was."""
    if fill is not None:
        return "TRADE"
    if order.status in (CANCELED, EXPIRED):
        return order.status
    # Open without a fill: the acceptance, or an amend (the engine records every edit first).
    return amended if order.edits and order.edits[-1][2] >= order.updated_ms else "NEW"


def _resting(order: Order) -> bool:
    return order.is_open and order.type == LIMIT and order.tif not in (IOC, FOK)


def _json(value: dict) -> bytes:
    return msgspec.json.encode(value)
