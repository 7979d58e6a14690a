"""Binance's protocol on one port, over any source of stream items (a replay or the synthetic market).

WebSocket: ``/stream?streams=a/b`` (combined: ``{"stream":..,"data":..}``), ``/ws/<stream>`` and
``/ws`` (raw payloads); ``SUBSCRIBE`` / ``UNSUBSCRIBE`` / ``LIST_SUBSCRIPTIONS`` /
``SET_PROPERTY`` / ``GET_PROPERTY`` answered ``{"result": .., "id": n}`` or Binance's
``{"error": {"code": .., "msg": ..}, "id": n}``; at most 1024 streams and 5 (spot) / 10 (USD-M)
incoming messages per second per connection, else the connection is closed (1008) as Binance
does; keepalive pings at Binance's interval. With a trading API, the user data streams
(``simulator.binance.user_stream``): spot's WebSocket API on ``/ws-api/v3``
(``simulator.binance.ws_api``; the only spot way since the listenKey stream was retired on
2026-02-20), USD-M's ``/ws/<listenKey>`` when the trading API issued that key. REST: ``depth`` and
``exchangeInfo`` under ``/api/v3`` (spot) or ``/fapi/v1`` (USD-M), charged by documented weights against the
REQUEST_WEIGHT limit, ``X-MBX-USED-WEIGHT-1M`` on every answer, 429 then 418 with ``Retry-After``.
"""

from __future__ import annotations

import asyncio
import json
from typing import Protocol
from urllib.parse import parse_qs, urlparse

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Response

from simulator.binance import rest
from simulator.binance.markets import BinanceMarket
from simulator.binance.ws_api import WS_API_PATH, BinanceWsApi
from simulator.faults import Faults, SimStats
from simulator.instruments import Instrument
from simulator.limits import RequestRate, WeightWindow
from simulator.sender import Sender
from simulator.server import VenueServer, cancel, json_response
from simulator.timeline import Feed, Item

METHODS = "`SUBSCRIBE`, `UNSUBSCRIBE`, `LIST_SUBSCRIPTIONS`, `SET_PROPERTY`, `GET_PROPERTY`"


class BinanceSource(Protocol):
    feed: Feed
    #: Venue symbol (``BTCUSDT``) -> its metadata.
    instruments: dict[str, Instrument]

    async def snapshot(self, symbol: str, market: BinanceMarket) -> tuple[int, list[list[str]], list[list[str]]]:
        """(lastUpdateId, bids best first, asks best first) of the whole book now."""
        ...

    def true_book(self, symbol: str) -> dict[str, dict[str, str]]: ...


class Subscriptions:
    """One connection's streams: names as the client wrote them, and by feed key for the sender."""

    def __init__(self) -> None:
        self.names: dict[str, str] = {}  # name -> key, in subscription order
        self.by_key: dict[str, list[str]] = {}

    def add(self, name: str, key: str) -> None:
        if name not in self.names:
            self.names[name] = key
            self.by_key.setdefault(key, []).append(name)

    def remove(self, name: str) -> None:
        key = self.names.pop(name, None)
        if key is not None:
            self.by_key[key].remove(name)
            if not self.by_key[key]:
                del self.by_key[key]


def _error(code: int, msg: str, request_id: object = None) -> dict:
    return {"error": {"code": code, "msg": msg}, "id": request_id}


class BinanceServer(VenueServer):
    def __init__(
        self,
        source: BinanceSource,
        market: BinanceMarket,
        *,
        rest_markets: tuple[BinanceMarket, ...] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        weight_limit: int | None = None,
        weight_window: float = 60.0,
        ban_seconds: float = 120.0,
        faults: Faults | None = None,
        stats: SimStats | None = None,
    ) -> None:
        super().__init__(host=host, port=port, faults=faults, stats=stats)
        self.source = source
        self.market = market
        self.ping_interval, self.ping_timeout = market.ping_interval, market.ping_timeout
        self.rest_markets = rest_markets or (market,)
        self.weight_limit = weight_limit
        self.weight_window = weight_window
        self._weights = {m.rest_prefix: WeightWindow(weight_limit or m.weight_limit, weight_window,
                                                     ban_seconds=ban_seconds) for m in self.rest_markets}  # fmt: skip
        self._symbols = frozenset(source.instruments)

    def true_book(self, symbol: str) -> dict[str, dict[str, str]]:
        """The venue's book of ``symbol`` now (price -> size per side), for tests to compare."""
        return self.source.true_book(symbol)

    # --- WebSocket ---------------------------------------------------------------------------

    def websocket_path(self, path: str) -> bool:
        if path == WS_API_PATH:
            return self._ws_api() is not None
        return path == "/stream" or path == "/ws" or path.startswith("/ws/")

    def _ws_api(self) -> BinanceWsApi | None:
        """Spot's WebSocket API, when this simulator trades spot (Binance serves it on its own host)."""
        trading = getattr(self, "trading", None)
        return trading.user_streams.ws_api if trading is not None else None

    async def session(self, connection: ServerConnection, connection_id: int) -> None:
        url = urlparse(connection.request.path if connection.request else "/")
        combined = url.path == "/stream"
        ws_api = self._ws_api() if url.path == WS_API_PATH else None
        if ws_api is not None:
            return await ws_api.serve(connection, connection_id)
        if url.path.startswith("/ws/"):
            names = [n for n in url.path[len("/ws/") :].split("/") if n]
            # USD-M's user data stream (``/ws/<listenKey>``, as Binance serves it on its stream host). A
            # key that is unknown or closed is just a stream name nobody publishes: a silent connection.
            trading = getattr(self, "trading", None)
            if len(names) == 1 and trading is not None and trading.user_streams.owns(names[0]):
                return await trading.user_streams.serve(connection, connection_id, names[0])
        else:
            names = [n for n in parse_qs(url.query).get("streams", [""])[0].split("/") if n]
        if len(names) > self.market.max_streams:
            self.stats.limit_closes += 1
            await connection.close(1008, "Too many streams")
            return
        subscriptions = Subscriptions()
        for name in names:
            key = self.market.key(name, self._symbols)
            if name in self.faults.refuse:
                self.stats.refused.append(name)
            elif key is not None:
                subscriptions.add(name, key)
        state = {"combined": combined}

        def render(item: Item) -> list[str]:
            names = subscriptions.by_key.get(item.key)
            if not names:
                return []
            if not state["combined"]:
                return [item.payload() for _ in names]
            return [item.frame if n == item.name else f'{{"stream":"{n}","data":{item.payload()}}}' for n in names]

        stall_keys = frozenset(k for k in (self.market.key(n, self._symbols) for n in self.faults.stall_streams) if k)
        sender = Sender(connection, connection_id, self.source.feed, render, self.faults, self.stats, stall_keys,
                        subscribed=lambda: bool(subscriptions.names))  # fmt: skip
        task = asyncio.create_task(sender.run())
        rate = RequestRate(self.market.messages_per_second)
        try:
            async for message in connection:
                if not rate.allow():
                    self.stats.limit_closes += 1
                    await connection.close(1008, "Too many requests")
                    break
                reply = self.control(message, subscriptions, state)
                await connection.send(json.dumps(reply, separators=(",", ":")))
        except ConnectionClosed:
            pass
        finally:
            await cancel(task)

    def control(self, message: str | bytes, subscriptions: Subscriptions, state: dict[str, bool]) -> dict:
        """Answer one control message as Binance does."""
        self.stats.subscribe_requests += 1
        try:
            request = json.loads(message)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            return _error(3, f"Invalid JSON: expected value at line {exc.lineno} column {exc.colno}")  # type: ignore[union-attr]
        if not isinstance(request, dict):
            return _error(2, "Invalid request: expected a JSON object")
        request_id = request.get("id")
        valid_id = request_id is None or (isinstance(request_id, int) and not isinstance(request_id, bool)) or (
            isinstance(request_id, str) and request_id.isalnum() and len(request_id) <= 36)  # fmt: skip
        if not valid_id:
            return _error(2, "Invalid request: request ID must be an unsigned integer")
        method = request.get("method")
        if method is None:
            return _error(2, f"Invalid request: missing field `method` at line 1 column {len(message)}", request_id)
        params = request.get("params", [])
        if method in ("SUBSCRIBE", "UNSUBSCRIBE"):
            if not isinstance(params, list) or not all(isinstance(p, str) for p in params):
                return _error(2, "Invalid request: params must be a list of stream names", request_id)
            if method == "UNSUBSCRIBE":
                for name in params:
                    subscriptions.remove(name)
                return {"result": None, "id": request_id}
            keys = [self.market.key(name, self._symbols) for name in params]
            refused = [name for name in params if name in self.faults.refuse]
            if refused or None in keys:
                self.stats.refused.extend(refused)
                return _error(2, "Invalid request: invalid stream", request_id)
            if len(set(subscriptions.names) | set(params)) > self.market.max_streams:
                return _error(2, f"Invalid request: too many streams (at most {self.market.max_streams})", request_id)
            for name, key in zip(params, keys, strict=True):
                subscriptions.add(name, key)  # type: ignore[arg-type]
            return {"result": None, "id": request_id}
        if method == "LIST_SUBSCRIPTIONS":
            return {"result": list(subscriptions.names), "id": request_id}
        if method in ("SET_PROPERTY", "GET_PROPERTY"):
            if not params or params[0] != "combined":
                return {"code": 0, "msg": "Unknown property", "id": request_id}
            if method == "GET_PROPERTY":
                return {"result": state["combined"], "id": request_id}
            if len(params) != 2 or not isinstance(params[1], bool):
                return _error(1, "Invalid value type: expected Boolean", request_id)
            state["combined"] = params[1]
            return {"result": None, "id": request_id}
        return _error(2, f"Invalid request: unknown variant `{method}`, expected one of {METHODS} at line 1 column 28",
                      request_id)  # fmt: skip

    # --- REST --------------------------------------------------------------------------------

    def _rest_market(self, path: str) -> BinanceMarket | None:
        return next((m for m in self.rest_markets if path.startswith(m.rest_prefix + "/")), None)

    async def rest(self, path: str, query: dict[str, str]) -> Response:
        market = self._rest_market(path)
        endpoint = path.rsplit("/", 1)[-1]
        if market is None or endpoint not in ("depth", "exchangeInfo", "ping", "time"):
            return rest.error(404, -1000, f"Unknown endpoint {path}")
        if endpoint == "depth":
            if not query.get("symbol"):
                return rest.missing("symbol")
            try:
                limit = int(query.get("limit", "100"))
            except ValueError:
                return rest.error(
                    400, -1100, "Illegal characters found in parameter 'limit'; legal range is '^[0-9]{1,20}$'."
                )
            weight = market.depth_weight(limit)
        else:
            weight = market.exchange_info_weight if endpoint == "exchangeInfo" else 1
        window = self._weights[market.rest_prefix]
        verdict = window.charge(weight)
        if verdict.status == 418:
            self.stats.banned += 1
            return rest.banned(verdict.retry_after, verdict.used)
        if verdict.status == 429:
            self.stats.rate_limited += 1
            return rest.throttled(market, window.limit, window.window, verdict.retry_after, verdict.used)
        headers = {rest.USED_WEIGHT: str(verdict.used)}
        if endpoint == "ping":
            return json_response(200, {}, headers)
        if endpoint == "time":
            import time

            return json_response(200, {"serverTime": int(time.time() * 1000)}, headers)
        if endpoint == "exchangeInfo":
            return json_response(200, rest.exchange_info(market, self._listed(query), window.limit), headers)
        symbol = query["symbol"].upper()
        if symbol not in self.source.instruments:
            return rest.invalid_symbol()
        last_id, bids, asks = await self.source.snapshot(symbol, market)
        self.stats.snapshots_served += 1
        return json_response(200, rest.depth_body(market, last_id, bids[:limit], asks[:limit]), headers)

    def _listed(self, query: dict[str, str]) -> dict[str, Instrument]:
        wanted = [query["symbol"]] if "symbol" in query else json.loads(query.get("symbols", "null")) or None
        instruments = self.source.instruments
        return {s: i for s, i in instruments.items() if wanted is None or s in wanted}

    def rest_throttled(self, retry_after: int) -> Response:
        limit = self._weights[self.market.rest_prefix].limit
        return rest.throttled(self.market, limit, self.weight_window, retry_after, limit)

    def rest_banned(self, retry_after: int) -> Response:
        return rest.banned(retry_after)
