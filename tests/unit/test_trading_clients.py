"""The venues' trading clients against the simulator's order APIs: two implementations of each
venue's documented protocol, written apart, must understand each other; and every failure a
venue can answer must land in the right branch of the error hierarchy."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from decimal import ROUND_CEILING, Decimal

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from producers.venues import VENUES, TradingSetup
from producers.venues.trading import Amend, HttpTimeouts, OrderRequest, TradingClient, client_order_id
from simulator.binance import BinanceSynthetic
from simulator.coinbase import CoinbaseSynthetic
from simulator.faults import Faults
from simulator.trading import Account, BinanceKey, CoinbaseKey, TradingConfig
from tickflow.errors import (
    AuthFailed,
    InsufficientFunds,
    InvalidOrder,
    RateLimited,
    UnknownOrder,
    UnknownOutcome,
)
from tickflow.events import OrderStatus, OrderType, Side, TimeInForce

pytestmark = pytest.mark.timeout(90)

HMAC_SECRET = "s3cr3t-hmac-key-for-tests-0123456789"
ED_KEY = ed25519.Ed25519PrivateKey.generate()
EC_KEY = ec.generate_private_key(ec.SECP256R1())
COINBASE_NAME = "organizations/org-1/apiKeys/key-1"


def _pem(private: object, public: bool) -> str:
    if public:
        return private.public_key().public_bytes(serialization.Encoding.PEM,  # type: ignore[attr-defined]
                                                 serialization.PublicFormat.SubjectPublicKeyInfo).decode()  # fmt: skip
    return private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,  # type: ignore[attr-defined]
                                 serialization.NoEncryption()).decode()  # fmt: skip


ACCOUNTS = [
    Account("alice", {"USDT": "1000000", "USD": "1000000", **{a: "1000" for a in ("BTC", "ETH", "BNB")}},
            binance=BinanceKey("alice-key", hmac_secret=HMAC_SECRET),
            coinbase=CoinbaseKey(COINBASE_NAME, _pem(EC_KEY, public=True))),
    Account("bob", {"USDT": "1000000"}, binance=BinanceKey("bob-key", ed25519_public_key=_pem(ED_KEY, public=True))),
    Account("poor", {"USDT": "1", "USD": "1"}, binance=BinanceKey("poor-key", hmac_secret=HMAC_SECRET),
            coinbase=CoinbaseKey("organizations/org-1/apiKeys/poor", _pem(EC_KEY, public=True))),
]  # fmt: skip


def simulator(venue: str, faults: Faults | None = None) -> BinanceSynthetic | CoinbaseSynthetic:
    config = TradingConfig(ACCOUNTS)
    if venue == "coinbase":
        return CoinbaseSynthetic(2, seed=5, rate=50.0, trading=config, faults=faults)
    return BinanceSynthetic(2, usdm=venue == "binance-usdm", seed=5, rate=50.0, trading=config, faults=faults)


def client(venue: str, url: str, account: str = "alice", read_timeout: float = 3.0) -> TradingClient:
    if venue == "coinbase":
        name = COINBASE_NAME if account == "alice" else "organizations/org-1/apiKeys/poor"
        setup = TradingSetup(url, name, _pem(EC_KEY, public=False), "es256", timeouts=HttpTimeouts(2.0, read_timeout))
    elif account == "bob":
        setup = TradingSetup(url, "bob-key", _pem(ED_KEY, public=False), "ed25519")
    else:
        setup = TradingSetup(url, f"{account}-key", HMAC_SECRET, "hmac", timeouts=HttpTimeouts(2.0, read_timeout))
    spec = VENUES[venue]
    assert spec.trading is not None
    return spec.trading(setup)


def market(sim: BinanceSynthetic | CoinbaseSynthetic) -> tuple[str, Decimal, Decimal, Decimal, Decimal]:
    """(venue symbol, best bid, best ask, tick, step) of the first instrument, now."""
    instrument = sim.synthetic.instruments[0]
    book = sim.synthetic.books[0]
    symbol = f"{instrument.base}-{instrument.quote}" if isinstance(sim, CoinbaseSynthetic) else (
        instrument.base + instrument.quote)  # fmt: skip
    return (symbol, instrument.price.value(book.best_bid), instrument.price.value(book.best_ask),
            instrument.tick_size, instrument.step_size)  # fmt: skip


def size_for(price: Decimal, step: Decimal, notional: Decimal = Decimal(20)) -> Decimal:
    return max(step, (notional / price / step).to_integral_value(rounding=ROUND_CEILING) * step)


def run(venue: str, scenario: Callable[..., Awaitable[None]], faults: Faults | None = None) -> None:
    async def main() -> None:
        async with simulator(venue, faults) as sim:
            trading = client(venue, sim.trading_url)
            try:
                await scenario(sim, trading)
            finally:
                await trading.aclose()

    asyncio.run(main())


VENUE_IDS = ["binance-spot", "binance-usdm", "coinbase"]


@pytest.mark.parametrize("venue", VENUE_IDS)
def test_create_query_amend_cancel_round_trip(venue: str) -> None:
    async def scenario(sim: object, trading: TradingClient) -> None:
        symbol, bid, _, tick, step = market(sim)  # type: ignore[arg-type]
        price = bid - 20 * tick  # rests below the market
        size = size_for(price, step)
        cid = client_order_id(f"{venue}-1")
        placed = await trading.create(OrderRequest(symbol, cid, Side.BUY, OrderType.LIMIT, size, price))
        assert placed.status is OrderStatus.ACCEPTED and placed.client_order_id == cid
        assert placed.size == size and placed.price == price and placed.filled_size == 0
        assert (await trading.query(symbol, cid)) == placed
        assert [o.client_order_id for o in await trading.open_orders(symbol)] == [cid]
        new_cid = client_order_id(f"{venue}-1", salt="amend")
        amended = await trading.amend(Amend(symbol, cid, placed.venue_order_id, Side.BUY, price - tick, size + step,
                                            Decimal(0), new_cid))  # fmt: skip
        assert amended.open and amended.price == price - tick and amended.size == size + step
        current = amended.client_order_id
        assert current in (cid, new_cid)  # spot replaces the order, the others amend it
        canceled = await trading.cancel(symbol, current, amended.venue_order_id)
        assert canceled.status is OrderStatus.CANCELED
        assert await trading.open_orders(symbol) == []
        assert await trading.query(symbol, client_order_id("never-sent")) is None

    run(venue, scenario)


@pytest.mark.parametrize("venue", VENUE_IDS)
def test_a_marketable_order_fills(venue: str) -> None:
    async def scenario(sim: object, trading: TradingClient) -> None:
        symbol, _, ask, tick, step = market(sim)  # type: ignore[arg-type]
        size = size_for(ask, step)
        cid = client_order_id(f"{venue}-ioc")
        order = await trading.create(OrderRequest(symbol, cid, Side.BUY, OrderType.LIMIT, size, ask + 5 * tick,
                                                  TimeInForce.IOC))  # fmt: skip
        if order.status is not OrderStatus.FILLED:  # Coinbase answers the create before it matches
            order = await trading.query(symbol, cid)  # type: ignore[assignment]
        assert order is not None and order.status is OrderStatus.FILLED and order.filled_size == size
        assert order.avg_fill_price is not None and order.avg_fill_price <= ask + 5 * tick

    run(venue, scenario)


@pytest.mark.parametrize("venue", VENUE_IDS)
def test_venue_refusals_map_onto_the_error_hierarchy(venue: str) -> None:
    async def scenario(sim: object, trading: TradingClient) -> None:
        symbol, bid, _, tick, step = market(sim)  # type: ignore[arg-type]
        price = bid - 20 * tick
        size = size_for(price, step)
        with pytest.raises(InvalidOrder):  # off the tick grid
            await trading.create(OrderRequest(symbol, client_order_id("bad-tick"), Side.BUY, OrderType.LIMIT, size,
                                              price + tick / 3))  # fmt: skip
        poor = client(venue, sim.trading_url, account="poor")  # type: ignore[attr-defined]
        try:
            with pytest.raises(InsufficientFunds):
                await poor.create(OrderRequest(symbol, client_order_id("poor"), Side.BUY, OrderType.LIMIT,
                                               size * 1000, price))  # fmt: skip
        finally:
            await poor.aclose()
        with pytest.raises(UnknownOrder):
            await trading.cancel(symbol, client_order_id("never-sent"))
        assert sim.engine.orders == [] or all(o.status != "NEW" for o in sim.engine.orders)  # type: ignore[attr-defined]

    run(venue, scenario)


@pytest.mark.parametrize("venue", ["binance-spot", "coinbase"])
def test_wrong_credentials_are_auth_failures(venue: str) -> None:
    async def scenario(sim: object, _: TradingClient) -> None:
        symbol, bid, _, tick, step = market(sim)  # type: ignore[arg-type]
        url = sim.trading_url  # type: ignore[attr-defined]
        if venue == "coinbase":
            other = ec.generate_private_key(ec.SECP256R1())
            wrong = VENUES[venue].trading(TradingSetup(url, COINBASE_NAME, _pem(other, public=False), "es256"))  # type: ignore[misc]
        else:
            wrong = VENUES[venue].trading(TradingSetup(url, "alice-key", "not-the-secret", "hmac"))  # type: ignore[misc]
        try:
            with pytest.raises(AuthFailed):
                await wrong.create(OrderRequest(symbol, client_order_id("auth"), Side.BUY, OrderType.LIMIT,
                                                size_for(bid, step), bid - 20 * tick))  # fmt: skip
        finally:
            await wrong.aclose()

    run(venue, scenario)


def test_ed25519_keys_trade_on_binance() -> None:
    async def scenario(sim: BinanceSynthetic, _: TradingClient) -> None:
        symbol, bid, _, tick, step = market(sim)
        bob = client("binance-spot", sim.trading_url, account="bob")
        try:
            order = await bob.create(OrderRequest(symbol, client_order_id("bob"), Side.BUY, OrderType.LIMIT,
                                                  size_for(bid, step), bid - 20 * tick))  # fmt: skip
            assert order.status is OrderStatus.ACCEPTED
        finally:
            await bob.aclose()

    run("binance-spot", scenario)


@pytest.mark.parametrize("venue", VENUE_IDS)
def test_a_timeout_after_the_venue_accepted_is_an_unknown_outcome_the_query_resolves(venue: str) -> None:
    async def scenario(sim: object, _: TradingClient) -> None:
        symbol, bid, _, tick, step = market(sim)  # type: ignore[arg-type]
        trading = client(venue, sim.trading_url, read_timeout=0.5)  # type: ignore[attr-defined]
        cid = client_order_id(f"{venue}-timeout")
        try:
            with pytest.raises(UnknownOutcome):
                await trading.create(OrderRequest(symbol, cid, Side.BUY, OrderType.LIMIT, size_for(bid, step),
                                                  bid - 20 * tick))  # fmt: skip
            found = await trading.query(symbol, cid)
            assert found is not None and found.status is OrderStatus.ACCEPTED  # it was executed: never resend
        finally:
            await trading.aclose()

    run(venue, scenario, Faults(order_timeout_every=1, order_timeout_hold=3.0))


@pytest.mark.parametrize("venue", VENUE_IDS)
def test_5xx_after_accept_is_an_unknown_outcome_and_429_is_rate_limited(venue: str) -> None:
    async def scenario(sim: object, trading: TradingClient) -> None:
        symbol, bid, _, tick, step = market(sim)  # type: ignore[arg-type]
        request = OrderRequest(symbol, client_order_id(f"{venue}-5xx"), Side.BUY, OrderType.LIMIT,
                               size_for(bid, step), bid - 20 * tick)  # fmt: skip
        with pytest.raises(UnknownOutcome):
            await trading.create(request)
        assert await trading.query(symbol, request.client_order_id) is not None
        sim.trading.faults = Faults(order_429_every=1)  # type: ignore[attr-defined]
        with pytest.raises(RateLimited) as limited:
            await trading.create(OrderRequest(symbol, client_order_id(f"{venue}-429"), Side.BUY, OrderType.LIMIT,
                                              size_for(bid, step), bid - 20 * tick))  # fmt: skip
        assert limited.value.retry_after >= 0
        assert await trading.query(symbol, client_order_id(f"{venue}-429")) is None  # not executed

    run(venue, scenario, Faults(order_5xx_after_accept_every=1))
