"""The venues' user-stream clients (producers/venues/*/user_stream.py) against the simulator's user
streams: orders placed through the trading clients must come back as updates (acceptance, every
fill, the cancel) and balances; a dropped connection must reconnect and say so (the caller
reconciles); a message the venue loses must stay unreported; unreadable frames are skipped."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from collections.abc import Awaitable, Callable
from decimal import ROUND_CEILING, Decimal

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from websockets.asyncio.server import ServerConnection, serve

from producers.connection import Backoff
from producers.venues import VENUES, TradingSetup
from producers.venues.binance.signing import HmacSigner
from producers.venues.binance.user_stream import (
    USDM_USER_STREAM,
    ListenKeyUserStream,
    WsApiUserStream,
    binance_user_stream,
)
from producers.venues.coinbase.signing import CoinbaseJwtSigner
from producers.venues.coinbase.user_stream import coinbase_user_stream
from producers.venues.trading import OrderRequest, TradingClient, client_order_id
from producers.venues.user_stream import MALFORMED, BalanceUpdate, Fill, OrderUpdate, Parsed, VenueUserStream
from simulator.binance import BinanceSynthetic
from simulator.coinbase import CoinbaseSynthetic
from simulator.faults import Faults
from simulator.trading import Account, BinanceKey, CoinbaseKey, TradingConfig
from tickflow.events import OrderStatus, OrderType, Side, TimeInForce

pytestmark = pytest.mark.timeout(60)

SECRET = "user-stream-hmac-secret-0123456789"
EC_KEY = ec.generate_private_key(ec.SECP256R1())
KEY_NAME = "organizations/org-1/apiKeys/streams"
PUBLIC = EC_KEY.public_key().public_bytes(serialization.Encoding.PEM,
                                          serialization.PublicFormat.SubjectPublicKeyInfo).decode()  # fmt: skip
PRIVATE = EC_KEY.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                               serialization.NoEncryption()).decode()  # fmt: skip
FAST = Backoff(initial=0.05, maximum=0.2)
VENUE_IDS = ["binance-spot", "binance-usdm", "coinbase"]

Sim = BinanceSynthetic | CoinbaseSynthetic


def simulator(venue: str) -> Sim:
    balances = {"USDT": "1000000", "USD": "1000000", "BTC": "1000", "ETH": "1000"}
    accounts = [Account("alice", balances, binance=BinanceKey("alice-key", hmac_secret=SECRET),
                        coinbase=CoinbaseKey(KEY_NAME, PUBLIC))]  # fmt: skip
    if venue == "coinbase":
        return CoinbaseSynthetic(2, seed=7, rate=50.0, trading=TradingConfig(accounts))
    return BinanceSynthetic(2, usdm=venue == "binance-usdm", seed=7, rate=50.0, trading=TradingConfig(accounts))


def trading_client(venue: str, sim: Sim) -> TradingClient:
    secret = PRIVATE if venue == "coinbase" else SECRET
    setup = TradingSetup(sim.trading_url, KEY_NAME if venue == "coinbase" else "alice-key", secret,
                         "es256" if venue == "coinbase" else "hmac")  # fmt: skip
    spec = VENUES[venue]
    assert spec.trading is not None
    return spec.trading(setup)


def market(sim: Sim) -> tuple[str, Decimal, Decimal, Decimal, Decimal]:
    """(venue symbol, best bid, best ask, tick, step) of the first instrument, now."""
    instrument, book = sim.synthetic.instruments[0], sim.synthetic.books[0]
    separator = "-" if isinstance(sim, CoinbaseSynthetic) else ""
    return (f"{instrument.base}{separator}{instrument.quote}", instrument.price.value(book.best_bid),
            instrument.price.value(book.best_ask), instrument.tick_size, instrument.step_size)  # fmt: skip


def size_for(price: Decimal, step: Decimal) -> Decimal:
    return max(step, (Decimal(20) / price / step).to_integral_value(rounding=ROUND_CEILING) * step)


def user_stream(venue: str, sim: Sim, symbol: str) -> VenueUserStream:
    if venue == "coinbase":
        return coinbase_user_stream(sim.ws_url, CoinbaseJwtSigner(KEY_NAME, PRIVATE.encode()), [symbol], backoff=FAST)
    return binance_user_stream(venue, sim.trading_url, VENUES[venue].user_ws_url(sim.ws_url), "alice-key",
                               HmacSigner(SECRET), backoff=FAST)  # fmt: skip


class Recorder:
    def __init__(self) -> None:
        self.orders: list[OrderUpdate] = []
        self.balances: list[BalanceUpdate] = []
        self.connected = 0

    def on_order(self, update: OrderUpdate) -> None:
        self.orders.append(update)

    def on_balance(self, update: BalanceUpdate) -> None:
        self.balances.append(update)

    def on_connected(self) -> None:
        self.connected += 1

    def of(self, client_id: str) -> list[OrderUpdate]:
        return [u for u in self.orders if u.order.client_order_id == client_id]

    async def until(self, condition: Callable[[], bool], timeout: float = 5.0) -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        while not condition():
            assert asyncio.get_running_loop().time() < deadline, "timed out waiting for the stream"
            await asyncio.sleep(0.02)


Scenario = Callable[[Sim, TradingClient, VenueUserStream, Recorder, str], Awaitable[None]]


def run(venue: str, scenario: Scenario) -> None:
    async def main() -> None:
        async with simulator(venue) as sim:
            symbol = market(sim)[0]
            trading = trading_client(venue, sim)
            stream = user_stream(venue, sim, symbol)
            recorder, stop = Recorder(), asyncio.Event()
            task = asyncio.create_task(stream.run(recorder.on_order, recorder.on_balance, recorder.on_connected, stop))
            try:
                await recorder.until(lambda: recorder.connected == 1)
                await scenario(sim, trading, stream, recorder, symbol)
            finally:
                stop.set()
                await asyncio.wait_for(task, 5)
                await trading.aclose()

    asyncio.run(main())


@pytest.mark.parametrize("venue", VENUE_IDS)
def test_acceptance_fills_and_cancel_are_reported(venue: str) -> None:
    async def scenario(sim: Sim, trading: TradingClient, stream: VenueUserStream, rec: Recorder, symbol: str) -> None:
        _, bid, ask, tick, step = market(sim)
        resting = client_order_id(f"{venue}-rest")
        await trading.create(OrderRequest(symbol, resting, Side.BUY, OrderType.LIMIT, size_for(bid, step),
                                          bid - 20 * tick))  # fmt: skip
        await rec.until(lambda: bool(rec.of(resting)))
        accepted = rec.of(resting)[0]
        assert accepted.symbol == symbol and accepted.fill is None
        assert accepted.order.status is OrderStatus.ACCEPTED and accepted.order.price == bid - 20 * tick
        assert accepted.order.exchange_ts is not None and accepted.order.exchange_ts > 10**15  # µs

        taker = client_order_id(f"{venue}-take")
        size = size_for(ask, step) * 3
        await trading.create(OrderRequest(symbol, taker, Side.BUY, OrderType.LIMIT, size, ask + 5 * tick,
                                          TimeInForce.IOC))  # fmt: skip
        await rec.until(lambda: any(not u.order.open for u in rec.of(taker)))
        placed = next(o for o in sim.engine.orders if o.client_id == taker)
        updates = rec.of(taker)
        assert updates[-1].order.status is (OrderStatus.FILLED if placed.status == "FILLED" else OrderStatus.EXPIRED)
        assert updates[-1].order.filled_size == placed.executed > 0
        fills = [u.fill for u in updates if u.fill is not None]
        assert sum(f.size for f in fills) == placed.executed
        if venue == "coinbase":  # orders, not fills: no per-fill price, the fee in quote
            assert sum(f.fee or 0 for f in fills) == placed.fees
            assert all(f.price is None and f.trade_id is None and f.fee_asset == "USD" for f in fills)
            assert updates[-1].order.avg_fill_price == placed.average_price
        else:  # one update per venue fill, with its price, size, fee and trade id
            eight = Decimal("1e-8")  # Binance states commissions to 8 decimals
            venue_fills = [(str(f.trade_id), f.price, f.size, f.fee.quantize(eight), f.fee_asset) for f in placed.fills]
            assert [(f.trade_id, f.price, f.size, f.fee, f.fee_asset) for f in fills] == venue_fills
            assert all(f.price is not None and f.price <= ask + 5 * tick for f in fills)

        await trading.cancel(symbol, resting)
        await rec.until(lambda: rec.of(resting)[-1].order.status is OrderStatus.CANCELED)
        canceled = rec.of(resting)[-1].order
        assert canceled.filled_size == 0 and canceled.size == size_for(bid, step)

        if venue == "binance-spot":  # every balance change, free and locked as the venue has them
            base = sim.synthetic.instruments[0].base
            await rec.until(lambda: any(b.asset == base for b in rec.balances))
            last = [b for b in rec.balances if b.asset == base][-1]
            assert (last.free, last.locked) == sim.engine.balance("alice", base)
        elif venue == "binance-usdm":
            assert any(b.asset == "USDT" for b in rec.balances)
        assert stream.counters.malformed == 0 and stream.counters.connections == 1

    run(venue, scenario)


@pytest.mark.parametrize("venue", ["binance-spot", "coinbase"])
def test_a_dropped_connection_reconnects_and_calls_on_connected_again(venue: str) -> None:
    async def scenario(sim: Sim, trading: TradingClient, stream: VenueUserStream, rec: Recorder, symbol: str) -> None:
        _, bid, _, tick, step = market(sim)
        await sim.drop_connections()
        await rec.until(lambda: rec.connected == 2)
        assert stream.counters.reconnects >= 1 and stream.counters.last_error
        cid = client_order_id(f"{venue}-after")
        await trading.create(OrderRequest(symbol, cid, Side.BUY, OrderType.LIMIT, size_for(bid, step),
                                          bid - 20 * tick))  # fmt: skip
        await rec.until(lambda: bool(rec.of(cid)))  # the new connection carries the account's events

    run(venue, scenario)


@pytest.mark.parametrize("venue", ["binance-spot", "coinbase"])
def test_a_message_the_venue_loses_is_not_reported_and_only_a_rest_read_shows_it(venue: str) -> None:
    async def scenario(sim: Sim, trading: TradingClient, stream: VenueUserStream, rec: Recorder, symbol: str) -> None:
        _, bid, _, tick, step = market(sim)
        assert sim.trading is not None
        sim.trading.faults = Faults(user_stream_drop_every=1)
        lost = client_order_id(f"{venue}-lost")
        await trading.create(OrderRequest(symbol, lost, Side.BUY, OrderType.LIMIT, size_for(bid, step),
                                          bid - 20 * tick))  # fmt: skip
        sim.trading.faults = Faults()
        seen = client_order_id(f"{venue}-seen")
        await trading.create(OrderRequest(symbol, seen, Side.BUY, OrderType.LIMIT, size_for(bid, step),
                                          bid - 21 * tick))  # fmt: skip
        await rec.until(lambda: bool(rec.of(seen)))
        assert rec.of(lost) == []
        assert ("alice", "executionReport" if venue != "coinbase" else "update", lost) in sim.stats.user_stream_dropped
        found = await trading.query(symbol, lost)  # reconciliation is what finds it
        assert found is not None and found.status is OrderStatus.ACCEPTED
        if venue == "coinbase":  # the lost message used up its sequence_num: the client saw the gap
            assert stream.counters.gaps == 1

    run(venue, scenario)


def test_binance_replaces_an_expired_listen_key_and_a_key_the_keepalive_finds_gone() -> None:
    async def scenario(sim: Sim, trading: TradingClient, stream: VenueUserStream, rec: Recorder, symbol: str) -> None:
        assert isinstance(stream, ListenKeyUserStream) and isinstance(sim, BinanceSynthetic) and sim.trading
        first = stream.listen_key
        assert first is not None
        stream.keepalive_interval = 0.1  # from the next connection on
        sim.trading.user_streams.expire(first)  # listenKeyExpired on the stream
        await rec.until(lambda: rec.connected == 2)
        second = stream.listen_key
        assert second not in (None, first) and stream.counters.last_error == "listenKeyExpired"
        # The key disappears without an event: the next keepalive's -1125 replaces it.
        sim.trading.user_streams.keys.close(second)  # type: ignore[arg-type]
        await rec.until(lambda: rec.connected == 3)
        assert stream.listen_key not in (first, second)
        assert "listenKey gone" in (stream.counters.last_error or "")

    run("binance-usdm", scenario)


def test_binance_spot_reconnects_when_the_server_says_it_shuts_down_or_ends_the_subscription() -> None:
    async def scenario(sim: Sim, trading: TradingClient, stream: VenueUserStream, rec: Recorder, symbol: str) -> None:
        assert isinstance(sim, BinanceSynthetic) and sim.trading is not None
        sim.trading.user_streams.shutdown_ws_api()  # the connection stays open: the client leaves it
        await rec.until(lambda: rec.connected == 2)
        assert (stream.counters.last_error or "").startswith("serverShutdown")
        _, bid, _, tick, step = market(sim)
        cid = client_order_id("after-shutdown")
        await trading.create(OrderRequest(symbol, cid, Side.BUY, OrderType.LIMIT, size_for(bid, step),
                                          bid - 20 * tick))  # fmt: skip
        await rec.until(lambda: len(rec.of(cid)) == 1)  # once: the old connection's subscription is gone
        await asyncio.sleep(0.1)
        assert len(rec.of(cid)) == 1 and stream.counters.malformed == 0

    run("binance-spot", scenario)


def test_binance_spot_a_refused_subscription_is_retried_and_reported_without_the_secret() -> None:
    async def main() -> None:
        async with simulator("binance-spot") as sim:
            url = VENUES["binance-spot"].user_ws_url(sim.ws_url)
            stream = binance_user_stream("binance-spot", sim.trading_url, url, "alice-key",
                                         HmacSigner("not-alices-secret"), backoff=FAST)  # fmt: skip
            rec, stop = Recorder(), asyncio.Event()
            task = asyncio.create_task(stream.run(rec.on_order, rec.on_balance, rec.on_connected, stop))
            await rec.until(lambda: stream.counters.reconnects >= 3)
            stop.set()
            await asyncio.wait_for(task, 5)
            assert rec.connected == 0 and not stream.live  # never live on a refused subscription
            error = stream.counters.last_error or ""
            assert "-1022" in error and "not valid" in error and "not-alices-secret" not in error

    asyncio.run(main())


def test_the_keepalive_extends_the_key() -> None:
    async def main() -> None:
        async with simulator("binance-usdm") as sim:
            stream = binance_user_stream("binance-usdm", sim.trading_url, sim.ws_url, "alice-key", HmacSigner(SECRET),
                                         keepalive_interval=0.1, backoff=FAST)  # fmt: skip
            assert isinstance(stream, ListenKeyUserStream)
            rec, stop = Recorder(), asyncio.Event()
            task = asyncio.create_task(stream.run(rec.on_order, rec.on_balance, rec.on_connected, stop))
            await rec.until(lambda: stream.keepalives >= 3)
            assert rec.connected == 1 and stream.counters.reconnects == 0
            key = stream.listen_key
            stop.set()
            await asyncio.wait_for(task, 5)
            assert sim.trading is not None and not sim.trading.user_streams.keys.account(key or "")  # DELETEd

    asyncio.run(main())


def test_unreadable_frames_are_counted_and_skipped() -> None:
    """A stand-in venue that sends garbage between documented messages, on both venues' shapes."""
    report = {"e": "executionReport", "E": 1, "s": "BTCUSDT", "c": "a", "S": "BUY", "o": "LIMIT", "f": "GTC",
              "q": "1.00000000", "p": "2.00000000", "C": "", "x": "NEW", "X": "NEW", "i": 7, "l": "0", "z": "0",
              "L": "0", "n": "0", "N": None, "T": 1700000000000, "t": -1, "Z": "0"}  # fmt: skip
    order = {"order_id": "u-1", "client_order_id": "a", "cumulative_quantity": "0", "leaves_quantity": "1",
             "avg_price": "0", "total_fees": "0", "status": "OPEN", "product_id": "BTC-USD",
             "limit_price": "2"}  # fmt: skip
    envelope = {"channel": "user", "client_id": "", "timestamp": "2024-01-01T00:00:00.5Z"}

    def user(sequence: int, kind: str, orders: list[dict]) -> str:
        return json.dumps({**envelope, "sequence_num": sequence, "events": [{"type": kind, "orders": orders}]})

    frames = {
        "binance": ['{"e": "executionRep', "[1, 2]", json.dumps({**report, "z": "lots"}),
                    json.dumps({"e": "balanceUpdate", "E": 1, "a": "BTC", "d": "1.5", "T": 1}),  # ignored
                    json.dumps({k: v for k, v in report.items() if k != "q"}), json.dumps(report)],
        "coinbase": [user(0, "snapshot", []), "{not json", json.dumps({**envelope, "events": []}),
                     user(2, "update", [{**order, "cumulative_quantity": "x"}]), user(3, "update", [order])],
    }  # fmt: skip

    async def venue(connection: ServerConnection) -> None:
        kind = "binance" if connection.request and connection.request.path.startswith("/ws/") else "coinbase"
        for frame in frames[kind]:
            await connection.send(frame)
        await connection.wait_closed()

    async def main() -> None:
        async with serve(venue, "127.0.0.1", 0) as server:
            url = f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}"
            rest = httpx.MockTransport(lambda request: httpx.Response(200, json={"listenKey": "k" * 64}))
            binance = ListenKeyUserStream(USDM_USER_STREAM, "http://rest", url, "key", backoff=FAST,
                                          http=httpx.AsyncClient(base_url="http://rest", transport=rest))  # fmt: skip
            coinbase = coinbase_user_stream(url, CoinbaseJwtSigner(KEY_NAME, PRIVATE.encode()), [], backoff=FAST)
            for stream, malformed in ((binance, 4), (coinbase, 3)):
                rec, stop = Recorder(), asyncio.Event()
                task = asyncio.create_task(stream.run(rec.on_order, rec.on_balance, rec.on_connected, stop))
                await rec.until(lambda: len(rec.orders) == 1)  # noqa: B023 - awaited inside the iteration
                await asyncio.sleep(0.05)
                stop.set()
                await asyncio.wait_for(task, 5)
                assert stream.counters.malformed == malformed and rec.connected == 1
                assert rec.orders[0].order.client_order_id == "a" and rec.orders[0].order.status is OrderStatus.ACCEPTED

    asyncio.run(main())


# --- Binance frames, parsed alone -------------------------------------------------------------------

#: As Binance documents them: a spot fill, and a USD-M one (its E and T as numbers here).
SPOT_TRADE = {
    "e": "executionReport", "E": 1499405658658, "s": "ETHBTC", "c": "mUvoqJxFIILMdfAW5iGSOW", "S": "BUY",
    "o": "LIMIT", "f": "GTC", "q": "1.00000000", "p": "0.10264410", "P": "0.00000000", "F": "0.00000000",
    "g": -1, "C": "", "x": "TRADE", "X": "PARTIALLY_FILLED", "r": "NONE", "i": 4293153, "l": "0.50000000",
    "z": "0.50000000", "L": "0.10264400", "n": "0.00050000", "N": "BNB", "T": 1499405658657, "t": 77,
    "I": 8641984, "w": True, "m": False, "M": True, "O": 1499405658657, "Z": "0.05132200", "Y": "0.05132200",
    "Q": "0.00000000", "W": 1499405658657, "V": "NONE",
}  # fmt: skip
USDM_TRADE = {
    "e": "ORDER_TRADE_UPDATE", "E": 1568879465651, "T": 1568879465650,
    "o": {"s": "BTCUSDT", "c": "TEST", "S": "SELL", "o": "LIMIT", "f": "GTC", "q": "0.002", "p": "7103.10",
          "ap": "7103.10000", "sp": "0", "x": "TRADE", "X": "PARTIALLY_FILLED", "i": 8886774, "l": "0.001",
          "z": "0.001", "L": "7103.10", "N": "USDT", "n": "0.00284124", "T": 1568879465649, "t": 12345,
          "b": "0", "a": "7.10310", "m": False, "R": False, "wt": "CONTRACT_PRICE", "ot": "LIMIT", "ps": "BOTH",
          "cp": False, "rp": "0", "pP": False, "si": 0, "ss": 0, "V": "EXPIRE_TAKER", "pm": "NONE", "gtd": 0},
}  # fmt: skip
SPOT_POSITION = {"e": "outboundAccountPosition", "E": 1564034571105, "u": 1564034571073,
                 "B": [{"a": "ETH", "f": "10000.000000", "l": "0.000000"}]}  # fmt: skip
USDM_ACCOUNT = {"e": "ACCOUNT_UPDATE", "E": 1564745798939, "T": 1564745798938,
                "a": {"m": "ORDER", "B": [{"a": "USDT", "wb": "122624.12345678", "cw": "100.12345678", "bc": "0"}],
                      "P": []}}  # fmt: skip


def parse(event: dict | str, venue: str = "binance-usdm") -> Parsed:
    """``event`` as the venue's stream brings it: spot's wrapped in its WebSocket API subscription."""
    stream = binance_user_stream(venue, "http://rest", "ws://stream", "key", HmacSigner("secret"))
    text = event if isinstance(event, str) else json.dumps(event)
    if isinstance(stream, WsApiUserStream):
        stream.subscription_id = 0
        text = f'{{"subscriptionId": 0, "event": {text}}}'
    return stream.parse(text)


def without(event: dict, path: str) -> dict:
    """``event`` less one field: ``"z"``, ``"o.n"``, ``"B.0.f"`` (a copy; the constants stay whole)."""
    head, _, rest = path.partition(".")
    if not rest:
        return {k: v for k, v in event.items() if k != head}
    inner = event[head]
    if isinstance(inner, list):
        index, _, rest = rest.partition(".")
        return {**event, head: [without(x, rest) if i == int(index) else x for i, x in enumerate(inner)]}
    return {**event, head: without(inner, rest)}


def test_binance_fields_are_read_by_their_case_sensitive_letters() -> None:
    update = parse(SPOT_TRADE, "binance-spot").orders[0]
    assert update.symbol == "ETHBTC" and update.order.client_order_id == "mUvoqJxFIILMdfAW5iGSOW"  # c, C empty
    assert update.order.status is OrderStatus.PARTIALLY_FILLED and update.order.venue_order_id == "4293153"
    assert (update.order.size, update.order.filled_size, update.order.price) == (
        Decimal("1.00000000"), Decimal("0.50000000"), Decimal("0.10264410"))  # q, z, p (not P)  # fmt: skip
    assert update.order.avg_fill_price == Decimal("0.102644")  # Z / z
    assert update.order.exchange_ts == 1499405658657000  # T (not E), in µs
    # L the price, l the size, t (not T) the trade id.
    assert update.fill == Fill("77", Decimal("0.10264400"), Decimal("0.50000000"), Decimal("0.00050000"), "BNB")
    cancel = {**SPOT_TRADE, "x": "CANCELED", "X": "CANCELED", "c": "cancel-request", "C": "the-order"}
    assert parse(cancel, "binance-spot").orders[0].order.client_order_id == "the-order"  # C, not c
    assert parse({**cancel, "C": ""}, "binance-spot").orders[0].order.client_order_id == "cancel-request"
    futures = parse(USDM_TRADE).orders[0]
    assert futures.order.avg_fill_price == Decimal("7103.10000") and futures.order.exchange_ts == 1568879465649000
    assert futures.fill == Fill("12345", Decimal("7103.10"), Decimal("0.001"), Decimal("0.00284124"), "USDT")


@pytest.mark.parametrize("kind", ["balanceUpdate", "externalLockUpdate", "listStatus",
                                  "TRADE_LITE", "ACCOUNT_CONFIG_UPDATE", "MARGIN_CALL", "STRATEGY_UPDATE",
                                  "aKindBinanceAddsLater", "executionreport"])  # fmt: skip
def test_binance_events_of_other_kinds_are_ignored_not_malformed(kind: str) -> None:
    """Their fields may share letters with the kinds read (here with other types): never validated."""
    assert parse({"e": kind, "E": "1", "o": 5, "a": "BTC", "B": None, "z": "lots"}) == Parsed()
    assert parse({**SPOT_TRADE, "e": kind}, "binance-spot") == Parsed()


@pytest.mark.parametrize(
    ("event", "path"),
    [(SPOT_TRADE, "z"), (SPOT_TRADE, "q"), (SPOT_TRADE, "X"), (SPOT_TRADE, "s"), (SPOT_TRADE, "x"),
     (SPOT_TRADE, "t"), (SPOT_TRADE, "L"), (SPOT_TRADE, "l"), (SPOT_TRADE, "n"), (SPOT_TRADE, "c"),
     (without(SPOT_TRADE, "T"), "E"), (SPOT_POSITION, "B"), (SPOT_POSITION, "B.0.f"),
     (USDM_TRADE, "o"), (USDM_TRADE, "o.z"), (USDM_TRADE, "o.c"), (USDM_TRADE, "o.ap"), (USDM_TRADE, "o.L"),
     (without(without(USDM_TRADE, "T"), "o.T"), "E"), (USDM_ACCOUNT, "a.B"), (USDM_ACCOUNT, "a.B.0.wb")],
)  # fmt: skip
def test_binance_events_read_here_with_a_field_missing_are_malformed(event: dict, path: str) -> None:
    with pytest.raises(MALFORMED):
        parse(without(event, path))
    whole = parse(event)  # and whole, they are read
    assert whole.orders or whole.balances


def test_binance_malformed_frames_raise_and_fields_read_only_sometimes_may_be_absent() -> None:
    for frame in ('{"e": "executionRep', "[1, 2]", "null", '"executionReport"', '{"E": 1}'):
        with pytest.raises(MALFORMED):
            parse(frame)
    for event in ({**SPOT_TRADE, "z": "lots"}, {**SPOT_TRADE, "X": "NO_SUCH_STATUS"}, {**USDM_TRADE, "o": []},
                  {**SPOT_POSITION, "B": [{"a": "ETH", "f": "x", "l": "0"}]}):  # fmt: skip
        with pytest.raises(MALFORMED):
            parse(event)
    # No fill: the fill's fields are not needed; a cancel naming C needs no c; T there, no E needed.
    new = {**without(SPOT_TRADE, "t"), "x": "NEW", "X": "NEW", "L": None, "l": "", "n": "0", "N": None}
    assert parse(without(new, "E"), "binance-spot").orders[0].fill is None
    cancel = {**without(SPOT_TRADE, "c"), "x": "CANCELED", "X": "CANCELED", "C": "the-order"}
    assert parse(cancel, "binance-spot").orders[0].order.client_order_id == "the-order"
    unfilled = {**USDM_TRADE, "o": {**without(USDM_TRADE["o"], "ap"), "x": "NEW", "X": "NEW", "z": "0"}}
    assert parse(unfilled).orders[0].order.avg_fill_price is None


def test_binance_usdm_times_sent_as_strings() -> None:
    """USD-M sends some event times as strings (its listenKeyExpired documents E as one)."""
    order = {**without(without(USDM_TRADE, "T"), "o.T"), "E": "1568879465651"}  # no T: E is the time
    assert parse(order).orders[0].order.exchange_ts == 1568879465651000
    assert parse({**USDM_TRADE, "E": "1568879465651", "T": "1568879465650"}).orders[0].order.exchange_ts == (
        1568879465649000)  # o.T first  # fmt: skip
    account = {**without(USDM_ACCOUNT, "T"), "E": "1564745798939"}
    assert parse(account).balances == [BalanceUpdate("USDT", Decimal("122624.12345678"), Decimal(0),
                                                     1564745798939000)]  # fmt: skip
    expired = {"e": "listenKeyExpired", "E": "1736996475556", "listenKey": "k" * 64}
    assert parse(expired) == Parsed(reconnect="listenKeyExpired")
    assert parse({**SPOT_POSITION, "E": "1564034571105", "u": ""}, "binance-spot").balances[0].exchange_ts == (
        1564034571105000)  # fmt: skip


def test_binance_usdm_fill_without_commission() -> None:
    """A USD-M fill "will not push if no commission": no n (nor N); or N null."""
    o = without(without(USDM_TRADE["o"], "n"), "N")
    assert parse({**USDM_TRADE, "o": o}).orders[0].fill == Fill("12345", Decimal("7103.10"), Decimal("0.001"),
                                                                  None, None)  # fmt: skip
    null_asset = {**USDM_TRADE, "o": {**USDM_TRADE["o"], "N": None}}
    assert parse(null_asset).orders[0].fill == Fill("12345", Decimal("7103.10"), Decimal("0.001"),
                                                    Decimal("0.00284124"), None)  # fmt: skip


# --- Binance spot: the WebSocket API subscription, frame by frame -------------------------------------


class SentFrames:
    """A stand-in connection: what the stream sends on it."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []

    async def send(self, message: bytes) -> None:
        self.sent.append(message)


def subscribed_stream(subscription_id: int = 4) -> tuple[WsApiUserStream, dict]:
    """A spot stream that sent its subscription (returned, as sent) and had it accepted."""
    stream = binance_user_stream("binance-spot", "http://rest", "ws://api", "the-key", HmacSigner("the-secret"))
    assert isinstance(stream, WsApiUserStream)
    ws = SentFrames()
    assert asyncio.run(stream.opened(ws)) is False  # live only once the venue says yes  # type: ignore[arg-type]
    request = json.loads(ws.sent[0])
    answer = {"id": request["id"], "status": 200, "result": {"subscriptionId": subscription_id}, "rateLimits": []}
    assert stream.parse(json.dumps(answer)) == Parsed(live=True) and stream.subscription_id == subscription_id
    return stream, request


def wrapped(subscription_id: int | None, event: dict) -> str:
    return json.dumps({"event": event} if subscription_id is None else {"subscriptionId": subscription_id,
                                                                         "event": event})  # fmt: skip


def test_binance_spot_subscribes_with_a_signed_request_as_the_websocket_api_documents() -> None:
    stream, request = subscribed_stream()
    params = request["params"]
    assert request["method"] == "userDataStream.subscribe.signature"
    assert set(params) == {"apiKey", "recvWindow", "timestamp", "signature"} and params["apiKey"] == "the-key"
    assert abs(params["timestamp"] - time.time() * 1000) < 5000 and params["recvWindow"] == 5000
    # The payload: the parameters but the signature, sorted by name, not percent-encoded; HMAC hex.
    payload = f"apiKey=the-key&recvWindow=5000&timestamp={params['timestamp']}"
    assert params["signature"] == hmac.new(b"the-secret", payload.encode(), hashlib.sha256).hexdigest()
    assert "the-secret" not in repr(stream)
    update = stream.parse(wrapped(4, SPOT_TRADE)).orders[0]
    assert update.order.client_order_id == "mUvoqJxFIILMdfAW5iGSOW" and update.fill is not None
    assert stream.parse(wrapped(4, SPOT_POSITION)).balances[0].asset == "ETH"


def test_binance_spot_reads_only_its_own_answer_and_subscription() -> None:
    stream, request = subscribed_stream(4)
    assert stream.parse(wrapped(5, SPOT_TRADE)) == Parsed()  # another subscription's
    assert stream.parse(json.dumps({"id": "not-ours", "status": 400, "error": {"code": -1, "msg": "x"}})) == Parsed()
    assert stream.parse(json.dumps({"id": request["id"] + "-later", "status": 200, "result": {}})) == Parsed()
    for frame in ('{"subscriptionId": 4, "event": {"e": "executionRep', '{"id": [1]}', "[]",
                  wrapped(4, without(SPOT_TRADE, "z"))):  # fmt: skip
        with pytest.raises(MALFORMED):
            stream.parse(frame)


@pytest.mark.parametrize(
    ("frame", "why"),
    [(wrapped(4, {"e": "eventStreamTerminated", "E": 1728973001334}), "eventStreamTerminated"),
     (wrapped(None, {"e": "serverShutdown", "E": 1770123456789}), "serverShutdown")],
)  # fmt: skip
def test_binance_spot_replaces_the_connection_when_the_venue_ends_the_stream(frame: str, why: str) -> None:
    stream, _ = subscribed_stream(4)
    parsed = stream.parse(frame)
    assert parsed.reconnect is not None and parsed.reconnect.startswith(why)


def test_binance_spot_a_refused_subscription_replaces_the_connection_and_says_why() -> None:
    stream = binance_user_stream("binance-spot", "http://rest", "ws://api", "the-key", HmacSigner("the-secret"))
    ws = SentFrames()
    asyncio.run(stream.opened(ws))  # type: ignore[arg-type]
    request_id = json.loads(ws.sent[0])["id"]
    said = "Signature for this request is not valid."
    refusal = {"id": request_id, "status": 400, "error": {"code": -1022, "msg": said}, "rateLimits": []}
    parsed = stream.parse(json.dumps(refusal))
    assert not parsed.live and parsed.reconnect == (
        "userDataStream.subscribe.signature refused: -1022 Signature for this request is not valid.")  # fmt: skip
