"""The synthetic market on its own: seeded, consistent books, trades that take the top, candles."""

from __future__ import annotations

from decimal import Decimal

from simulator.candles import CandleSeries
from simulator.decimals import Grid
from simulator.market import ASK, BID, SyntheticMarket


def test_same_seed_same_market_other_seed_other_market() -> None:
    def run(seed: int) -> list:
        market = SyntheticMarket(5, seed=seed, start_ms=1_700_000_000_000)
        return [(s.symbol, s.ts_ms, s.changes, s.fills, s.top) for s in (market.step() for _ in range(2000))]

    assert run(7) == run(7)
    assert run(7) != run(8)


def test_books_follow_their_changes_stay_uncrossed_and_deep_and_trades_take_the_top() -> None:
    market = SyntheticMarket(8, seed=3, start_ms=0)
    mirror = [market.levels(s) for s in range(8)]
    trades = 0
    for _ in range(20_000):
        before = [(max(b), min(a)) for b, a in mirror]
        step = market.step()
        bids, asks = mirror[step.symbol]
        for fill in step.fills:  # a taker order walks the opposite side from its best level
            side = asks if fill.taker_buy else bids
            best = min(side) if fill.taker_buy else max(side)
            assert fill.price == best and fill.lots <= side[fill.price]
            remaining = side[fill.price] - fill.lots
            if remaining:
                side[fill.price] = remaining
            else:
                del side[fill.price]
            trades += 1
        for side, price, lots in step.changes:
            levels = bids if side == BID else asks
            if lots:
                levels[price] = lots
            else:
                levels.pop(price, None)
        assert max(bids) < min(asks), "crossed book"
        if step.top is not None:
            assert step.top == (max(bids), bids[max(bids)], min(asks), asks[min(asks)])
        else:
            assert (max(bids), min(asks)) == before[step.symbol]
    for symbol in range(8):
        assert mirror[symbol] == market.levels(symbol)
        book = market.books[symbol]
        for side in (BID, ASK):
            assert 0.4 * book.target <= len(book.side(side)) <= 1.2 * book.target
    assert trades > 1000
    assert all(40 <= b.target <= 200 for b in market.books)


def test_the_mid_wanders_on_the_tick_grid() -> None:
    market = SyntheticMarket(1, seed=11, start_ms=0)
    mids = set()
    for _ in range(20_000):
        market.step()
        book = market.books[0]
        mids.add(book.best_bid + book.best_ask)
    assert len(mids) > 20


def test_candles_agree_with_the_fills() -> None:
    market = SyntheticMarket(2, seed=5, rate=5, start_ms=1_700_000_000_000)
    series = CandleSeries(60_000, market.instruments[0].open_ticks, market.start_ms)
    closed, fills = [], []
    for _ in range(10_000):
        step = market.step()
        if step.symbol != 0:
            continue
        done = series.roll(step.ts_ms)
        if done is not None:
            closed.append((done, fills))
            fills = []
        for fill in step.fills:
            series.add(fill)
            fills.append(fill)
    assert len(closed) > 10
    for candle, its in closed:
        if not its:
            assert candle.trades == 0 and candle.lots == 0
            continue
        prices = [f.price for f in its]
        assert (candle.open, candle.close) == (prices[0], prices[-1])
        assert (candle.high, candle.low) == (max(prices), min(prices))
        assert candle.lots == sum(f.lots for f in its)
        assert candle.trades == sum(len(f.sizes) for f in its)
        assert (candle.first_id, candle.last_id) == (its[0].first_id, its[-1].last_id)


def test_decimal_text_like_each_venue() -> None:
    tick = Grid(Decimal("0.01"))
    assert tick.fixed(1, 8) == "0.01000000" and tick.formatter(8)(123456) == "1234.56000000"
    assert Grid("0.0001").fixed(76110) == "7.6110" and Grid("1").fixed(813) == "813"
    assert Grid("0.05").plain(20) == "1" and Grid("0.01").formatter(plain=True, cache=True)(6892630) == "68926.3"
    assert Grid("0.00000001").formatter(8)(5) == "0.00000005"
    assert Grid("0.0001").value(76110) == Decimal("7.611")
