"""Binance spot / USD-M over the synthetic market: any number of symbols, any rate, seeded."""

from __future__ import annotations

from simulator.binance.markets import SPOT, USDM, BinanceMarket
from simulator.binance.render import MEAN_EVENT_LAG_MS, BinanceRenderer, venue_symbol
from simulator.binance.server import BinanceServer
from simulator.binance.trading import BinanceTrading
from simulator.faults import Faults, SimStats
from simulator.instruments import Instrument
from simulator.market import SyntheticMarket
from simulator.timeline import SyntheticFeed
from simulator.trading.config import TradingConfig
from simulator.trading.engine import Engine


class SyntheticSource:
    def __init__(self, market: BinanceMarket, synthetic: SyntheticMarket, renderer: BinanceRenderer,
                 feed: SyntheticFeed) -> None:  # fmt: skip
        self.market = market
        self.synthetic = synthetic
        self.renderer = renderer
        self.feed = feed
        self.instruments: dict[str, Instrument] = {venue_symbol(i): i for i in synthetic.instruments}
        self._numbers = {s: n for n, s in enumerate(self.instruments)}

    def _levels(self, symbol: str) -> tuple[int, list[list[str]], list[list[str]]]:
        number = self._numbers[symbol]
        bids, asks, last_id = self.feed.book(number)
        digits = None if self.market.usdm else 8
        instrument = self.instruments[symbol]
        price, size = instrument.price, instrument.size
        return (
            last_id,
            [[price.fixed(p, digits), size.fixed(bids[p], digits)] for p in sorted(bids, reverse=True)],
            [[price.fixed(p, digits), size.fixed(asks[p], digits)] for p in sorted(asks)],
        )

    async def snapshot(self, symbol: str, market: BinanceMarket) -> tuple[int, list[list[str]], list[list[str]]]:
        return self._levels(symbol)

    def true_book(self, symbol: str) -> dict[str, dict[str, str]]:
        _, bids, asks = self._levels(symbol)
        return {"bids": dict(bids), "asks": dict(asks)}


class BinanceSynthetic(BinanceServer):
    """A Binance venue whose market is ``SyntheticMarket(symbols, seed=seed)``.

    ``rate`` market events per second (each a depth diff, with the trades, book ticker and kline
    updates it causes); ``rate=0`` renders ``frames`` items (or ``duration`` market seconds)
    before serving and sends them as fast as the client reads. ``start_ms`` pins the market's
    clock (timestamps) so two runs with one seed are identical byte for byte. ``wall_clock``
    (paced, speed 1) instead pins it to the wall clock when the first client connects: a
    message's ``E`` is then, to the millisecond, when the simulator sent it (when it fell due;
    later only if the simulator itself falls behind), for latency benchmarks.

    ``trading=TradingConfig(...)`` also serves the private order API (``simulator.binance.trading``)
    on its own port: ``trading_url``, ``engine`` (every order), ``trading`` (its server; swap its
    ``faults`` at runtime).
    """

    def __init__(
        self,
        symbols: int = 10,
        *,
        usdm: bool = False,
        seed: int = 0,
        rate: float = 100.0,
        frames: int | None = None,
        duration: float | None = None,
        speed: float = 1.0,
        start_ms: int | None = None,
        wall_clock: bool = False,
        host: str = "127.0.0.1",
        port: int = 0,
        weight_limit: int | None = None,
        weight_window: float = 60.0,
        ban_seconds: float = 120.0,
        faults: Faults | None = None,
        stats: SimStats | None = None,
        trading: TradingConfig | None = None,
    ) -> None:
        market = USDM if usdm else SPOT
        synthetic = SyntheticMarket(symbols, seed=seed, quote="USDT", rate=rate or 1000.0, start_ms=start_ms)
        renderer = BinanceRenderer(market, synthetic, seed)
        feed = SyntheticFeed(synthetic, renderer, rate=rate, last_ids=renderer.last_id, frames=frames,
                             duration=duration, speed=speed)  # fmt: skip
        if wall_clock:
            feed.pin_to_wall_clock(MEAN_EVENT_LAG_MS)
        self.synthetic = synthetic
        super().__init__(
            SyntheticSource(market, synthetic, renderer, feed), market, host=host, port=port,
            weight_limit=weight_limit, weight_window=weight_window, ban_seconds=ban_seconds, faults=faults, stats=stats,
        )  # fmt: skip
        self.trading_config = trading
        self.seed = seed

    async def start_trading(self, config: TradingConfig) -> BinanceTrading:
        from simulator.binance import rest

        source = self.source
        assert isinstance(source, SyntheticSource)
        numbers = {symbol: n for n, symbol in enumerate(source.instruments)}

        def book(symbol: str) -> tuple[dict[int, int], dict[int, int]]:
            bids, asks, _ = source.feed.book(numbers[symbol])
            return bids, asks

        if not source.feed.full_speed:
            # Orders trade against the live market, so it runs from now on, market-data client or not.
            source.feed.start()
        window = self._weights[self.market.rest_prefix]
        engine = Engine(source.instruments, book, config.registry(), derivatives=self.market.usdm,
                        taker_fee=config.taker_fee, maker_fee=config.maker_fee, leverage=config.leverage,
                        fok_unfilled="reject" if self.market.usdm else "expire", seed=self.seed,
                        first_order_id=1_000_000 + self.seed * 1000)  # fmt: skip
        trading = BinanceTrading(
            engine, self.market, weights=window, host=config.host, port=config.port, faults=self.faults,
            stats=self.stats, match_interval=config.match_interval, order_limits=config.order_limits,
            exchange_info=lambda query: rest.exchange_info(self.market, self._listed(query), window.limit),
        )  # fmt: skip
        await trading.start()
        return trading

    @property
    def symbols(self) -> list[str]:
        return list(self.source.instruments)
