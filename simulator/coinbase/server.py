"""Coinbase Advanced Trade market data on one port: WebSocket at ``/`` and public REST.

WebSocket: ``{"type": "subscribe"|"unsubscribe", "product_ids": [..], "channel": ".."}`` (one
channel per message, ``jwt`` accepted and ignored for public channels); channels ``heartbeats``,
``level2`` (messages on ``l2_data``: a ``snapshot`` of the whole book, then ``update``s),
``market_trades``, ``ticker``, ``candles`` (5 minutes), ``status``; every subscribe or
unsubscribe is confirmed by a ``subscriptions`` message listing everything subscribed;
``{"type": "error", "message": ..}`` for what cannot be subscribed; ``sequence_num`` counts every
message of a connection from 0; a connection that sends no subscribe within
``subscribe_timeout`` seconds is closed, as the venue does after about 5 s. With a trading API, the
authenticated ``user`` channel too (``simulator.coinbase.user_stream``).
REST: ``GET /api/v3/brokerage/market/products``, ``.../products/{id}``, ``.../product_book``,
``public_rate`` requests per second, then 429 with the venue's error body.
"""

from __future__ import annotations

import asyncio
import json
import time

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Response

from simulator.coinbase import rest
from simulator.coinbase.render import CoinbaseRenderer, head, product_id, tail
from simulator.coinbase.trading import CoinbaseTrading
from simulator.faults import Faults, SimStats
from simulator.limits import RequestRate
from simulator.market import SyntheticMarket
from simulator.sender import Sender
from simulator.server import VenueServer, cancel, json_response
from simulator.timeline import Item, SyntheticFeed
from simulator.trading.config import TradingConfig
from simulator.trading.engine import Engine
from simulator.wire import write_frames

CHANNELS = ("heartbeats", "level2", "market_trades", "ticker", "candles", "status")
#: Channels whose messages come from the market feed (the others are made per connection).
FEED_CHANNELS = ("level2", "market_trades", "ticker", "candles")


class Connection:
    """One client's state: its subscriptions and its message counter."""

    def __init__(self, connection_id: int = 0) -> None:
        self.connection_id = connection_id
        self.sequence = -1
        self.keys: set[str] = set()  # "level2:BTC-USD", ...
        self.subscribed: dict[str, list[str]] = {}  # channel -> product ids (the confirmation's shape)
        self.heartbeat_counter = 0

    def next(self) -> int:
        self.sequence += 1
        return self.sequence

    def message(self, head_text: str, tail_text: str) -> str:
        return f"{head_text}{self.next()}{tail_text}"


class CoinbaseSynthetic(VenueServer):
    """Coinbase Advanced Trade over ``SyntheticMarket(symbols, seed=seed, quote="USD")``; ``rate``
    and the bounds mean what they mean for ``BinanceSynthetic``. ``trading=TradingConfig(...)`` also
    serves the private order API (``simulator.coinbase.trading``) on its own port: ``trading_url``,
    ``engine``, ``trading`` (its server; swap its ``faults`` at runtime)."""

    def __init__(
        self,
        symbols: int = 10,
        *,
        seed: int = 0,
        rate: float = 100.0,
        frames: int | None = None,
        duration: float | None = None,
        speed: float = 1.0,
        start_ms: int | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        subscribe_timeout: float = 5.0,
        heartbeat_interval: float = 1.0,
        public_rate: int = 10,
        faults: Faults | None = None,
        stats: SimStats | None = None,
        trading: TradingConfig | None = None,
    ) -> None:
        super().__init__(host=host, port=port, faults=faults, stats=stats)
        self.trading_config = trading
        self.seed = seed
        self.synthetic = SyntheticMarket(symbols, seed=seed, quote="USD", rate=rate or 1000.0, start_ms=start_ms)
        self.renderer = CoinbaseRenderer(self.synthetic)
        self.feed = SyntheticFeed(self.synthetic, self.renderer, rate=rate, last_ids=self.renderer.last_id,
                                  frames=frames, duration=duration, speed=speed)  # fmt: skip
        self.products = {product_id(i): n for n, i in enumerate(self.synthetic.instruments)}
        self.subscribe_timeout = subscribe_timeout
        self.heartbeat_interval = heartbeat_interval
        self._public = RequestRate(public_rate)

    @property
    def symbols(self) -> list[str]:
        return list(self.products)

    async def start_trading(self, config: TradingConfig) -> CoinbaseTrading:
        products = self.products

        def book(product: str) -> tuple[dict[int, int], dict[int, int]]:
            bids, asks, _ = self.feed.book(products[product])
            return bids, asks

        if not self.feed.full_speed:
            self.feed.start()  # orders trade against the live market, market-data client or not
        instruments = {pid: self.synthetic.instruments[n] for pid, n in products.items()}
        engine = Engine(instruments, book, config.registry(), taker_fee=config.taker_fee,
                        maker_fee=config.maker_fee, fee_in_quote=True, seed=self.seed)  # fmt: skip
        trading = CoinbaseTrading(engine, host=config.host, port=config.port, faults=self.faults,
                                  stats=self.stats, match_interval=config.match_interval,
                                  private_rate=config.private_rate)  # fmt: skip
        await trading.start()
        return trading

    def true_book(self, product: str) -> dict[str, dict[str, str]]:
        """The venue's book of ``product`` now (price -> size per side, the venue's strings)."""
        bids, asks, _ = self.feed.book(self.products[product])
        instrument = self.synthetic.instruments[self.products[product]]
        price, size = instrument.price, instrument.size
        return {
            "bids": {price.plain(p): size.plain(n) for p, n in bids.items()},
            "asks": {price.plain(p): size.plain(n) for p, n in asks.items()},
        }

    # --- WebSocket ---------------------------------------------------------------------------

    async def session(self, connection: ServerConnection, connection_id: int) -> None:
        state = Connection(connection_id)

        def render(item: Item) -> list[str]:
            if item.key not in state.keys:
                return []
            return [state.message(item.frame, item.text)]

        stall_keys = frozenset(self.faults.stall_streams)
        sender = Sender(connection, connection_id, self.feed, render, self.faults, self.stats, stall_keys,
                        sequence=lambda: state.sequence, subscribed=lambda: bool(state.keys))  # fmt: skip
        tasks = [asyncio.create_task(sender.run()), asyncio.create_task(self._heartbeats(connection, state))]
        try:
            first = await asyncio.wait_for(connection.recv(), self.subscribe_timeout)
        except TimeoutError:
            self.stats.limit_closes += 1
            await connection.close(1000, "no subscribe message received")
            first = None
        except ConnectionClosed:
            first = None
        try:
            if first is not None:
                await self._handle(connection, state, sender, first)
                async for message in connection:
                    await self._handle(connection, state, sender, message)
        except ConnectionClosed:
            pass
        finally:
            for task in tasks:
                await cancel(task)
            if self.trading is not None:
                self.trading.user_streams.disconnect(state)

    async def _heartbeats(self, connection: ServerConnection, state: Connection) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_interval)
            if "heartbeats" in state.subscribed:
                state.heartbeat_counter += 1
                now = time.time_ns()
                seconds, nanos = divmod(now, 10**9)
                current = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(seconds)) + f".{nanos:09d} +0000 UTC"
                event = [{"current_time": current, "heartbeat_counter": state.heartbeat_counter}]
                text = state.message(head("heartbeats", self.renderer.clock(now // 10**6)), tail(event))
                if not await write_frames(connection, [text]):
                    return
                self.stats.frames_sent += 1

    async def _error(self, connection: ServerConnection, message: str) -> None:
        await connection.send(json.dumps({"type": "error", "message": message}, separators=(",", ":")))

    async def _handle(self, connection: ServerConnection, state: Connection, sender: Sender,
                      message: str | bytes) -> None:  # fmt: skip
        self.stats.subscribe_requests += 1
        try:
            request = json.loads(message)
        except (json.JSONDecodeError, UnicodeDecodeError):
            return await self._error(connection, "malformed JSON")
        if not isinstance(request, dict) or request.get("type") not in ("subscribe", "unsubscribe"):
            return await self._error(connection, "unknown message type: expected subscribe or unsubscribe")
        channel = request.get("channel")
        if channel == "user":
            return await self._user(connection, state, request)
        if channel not in CHANNELS:
            return await self._error(connection, f"Failed to subscribe: unknown channel {channel!r}")
        products = request.get("product_ids") or []
        if not isinstance(products, list) or (channel in FEED_CHANNELS and not products):
            return await self._error(connection, f"Failed to subscribe: product_ids required for channel {channel}")
        unknown = [p for p in products if p not in self.products]
        if unknown:
            return await self._error(connection, f"Failed to subscribe: unknown product_ids {unknown}")
        refused = [p for p in products if p in self.faults.refuse or f"{channel}:{p}" in self.faults.refuse]
        if refused or channel in self.faults.refuse:
            self.stats.refused.extend(refused or [channel])
            return await self._error(connection, f"Failed to subscribe to {channel}: {refused or channel}")
        # Paced: catch up to the head first, as a snapshot is of the book right there. Full speed:
        # the connection's own position is its "now".
        out = sender.take(end=sender.position if self.feed.full_speed else self.feed.due())
        if request["type"] == "subscribe":
            out += self._subscribe(state, channel, products, sender.position)
        else:
            listed = state.subscribed.get(channel, [])
            for p in products:
                state.keys.discard(f"{channel}:{p}")
                if p in listed:
                    listed.remove(p)
            if channel in state.subscribed and (not listed or channel in ("heartbeats", "status")):
                del state.subscribed[channel]
        out.append(self._subscriptions(state))
        self.stats.frames_sent += len(out)
        await write_frames(connection, out)

    async def _user(self, connection: ServerConnection, state: Connection, request: dict) -> None:
        """The authenticated ``user`` channel (``simulator.coinbase.user_stream``)."""
        if self.trading is None:  # no accounts here: no key can authenticate
            return await self._error(connection, "authentication failure")
        out = self.trading.user_streams.handle(connection, state, request)
        if isinstance(out, str):
            return await self._error(connection, out)
        out.append(self._subscriptions(state))
        self.stats.frames_sent += len(out)
        await write_frames(connection, out)

    def _subscribe(self, state: Connection, channel: str, products: list[str], position: int) -> list[str]:
        """Subscribe, and the messages a new subscription starts with."""
        out = []
        listed = state.subscribed.setdefault(channel, [])
        now_ms = self.synthetic.start_ms + int(self.synthetic.clock * 1000)  # the market's now
        for p in products if channel in FEED_CHANNELS else [channel]:
            if p not in listed:
                listed.append(p)
            if channel not in FEED_CHANNELS or f"{channel}:{p}" in state.keys:
                continue
            state.keys.add(f"{channel}:{p}")
            number = self.products[p]
            timestamp = self.renderer.clock(now_ms)
            if channel == "level2":
                bids, asks, _ = self.feed.book_at(number, position)
                out.append(state.message(*self.renderer.snapshot(number, bids, asks, now_ms)))
            elif channel == "market_trades":
                out.append(state.message(head("market_trades", timestamp), tail([{"type": "snapshot", "trades": []}])))
            elif channel == "ticker":
                out.append(state.message(head("ticker", timestamp), tail([self.renderer.ticker(number, "snapshot")])))
            elif channel == "candles":
                out.append(state.message(head("candles", timestamp), tail([self.renderer.candle(number, "snapshot")])))
        if channel == "status":
            out.append(state.message(head("status", self.renderer.clock(now_ms)), tail([self._status()])))
        return out

    def _subscriptions(self, state: Connection) -> str:
        timestamp = self.renderer.clock(self.synthetic.start_ms + int(self.synthetic.clock * 1000))
        return state.message(head("subscriptions", timestamp), tail([{"subscriptions": state.subscribed}]))

    def _status(self) -> dict:
        products = []
        for pid, number in self.products.items():
            i = self.synthetic.instruments[number]
            products.append({
                "product_type": "SPOT", "id": pid, "base_currency": i.base, "quote_currency": i.quote,
                "base_increment": i.size.plain(1), "quote_increment": i.price.plain(1), "display_name": pid,
                "status": "online", "status_message": "", "min_market_funds": f"{i.min_notional.normalize():f}",
            })  # fmt: skip
        return {"type": "snapshot", "products": products}

    # --- REST --------------------------------------------------------------------------------

    async def rest(self, path: str, query: dict[str, str]) -> Response:
        if not self._public.allow():
            self.stats.rate_limited += 1
            return rest.too_many(1)
        if path == f"{rest.PREFIX}/products":
            listed = [self._product(pid) for pid in self.products]
            return json_response(200, {"products": listed, "num_products": len(listed)})
        if path.startswith(f"{rest.PREFIX}/products/"):
            pid = path.rsplit("/", 1)[-1]
            return json_response(200, self._product(pid)) if pid in self.products else rest.not_found()
        if path == f"{rest.PREFIX}/product_book":
            pid = query.get("product_id", "")
            if pid not in self.products:
                return rest.not_found()
            number = self.products[pid]
            bids, asks, _ = self.feed.book(number)
            limit = int(query.get("limit") or 0) or 10**9
            last = self.renderer.stats[number][4]
            self.stats.snapshots_served += 1
            body = rest.product_book(pid, self.synthetic.instruments[number], bids, asks, limit, last)
            return json_response(200, body)
        return rest.error(404, "NOT_FOUND", f"no such endpoint {path}")

    def _product(self, pid: str) -> dict:
        number = self.products[pid]
        stats = self.renderer.stats[number]
        bid, _, ask, _ = self.renderer.tops[number]
        return rest.product(pid, self.synthetic.instruments[number], stats[4], stats[3], (bid, ask))

    def rest_throttled(self, retry_after: int) -> Response:
        return rest.too_many(retry_after)

    def rest_banned(self, retry_after: int) -> Response:
        return rest.too_many(retry_after)  # Coinbase answers every limit with 429
