"""A seeded synthetic market: books, trades and klines that agree with each other, for any venue.

Why synthetic: the recordings are 30 seconds of 8 symbols; benchmarks and fault tests need any
number of symbols, any message rate and runs that repeat exactly. ``SyntheticMarket.step()``
advances one symbol by one event and returns a venue-neutral ``Step``:

- book changes as ``(side, price ticks, new size lots)`` (size 0 removes the level), mostly near
  the top of the book: sizes change, levels appear and are cancelled, the spread is improved;
- trades that take liquidity from the top of the book (a taker order walks the opposite side,
  level by level, and each level's fills are ``Fill``s), so trades and book always agree;
- the new best bid/offer when it changed.

Steps arrive as a Poisson process in the market's own (virtual) clock, so trades, a random share
of them, are Poisson too. The mid moves as a random walk on the tick grid: spreads are improved
and top levels swept at random, up and down alike. Prices and sizes are integers (ticks, lots);
the venue renderers turn them into exact decimal strings. Everything derives from ``seed``.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field

from simulator.instruments import Instrument, make_instruments

BID, ASK = 0, 1


@dataclass(slots=True)
class Fill:
    """One taker order's fills at one price level: trade ids ``first_id .. first_id+len(sizes)-1``."""

    agg_id: int
    first_id: int
    price: int
    sizes: list[int]
    taker_buy: bool

    @property
    def last_id(self) -> int:
        return self.first_id + len(self.sizes) - 1

    @property
    def lots(self) -> int:
        return sum(self.sizes)


@dataclass(slots=True)
class Step:
    index: int
    symbol: int
    ts_ms: int
    changes: list[tuple[int, int, int]]
    fills: list[Fill] = field(default_factory=list)
    #: (bid ticks, bid lots, ask ticks, ask lots) when the top of the book changed, else None.
    top: tuple[int, int, int, int] | None = None


class Book:
    """One symbol's book: price ticks -> size lots per side, with the best prices kept current."""

    __slots__ = ("asks", "best_ask", "best_bid", "bids", "target")

    def __init__(self, target: int) -> None:
        self.bids: dict[int, int] = {}
        self.asks: dict[int, int] = {}
        self.best_bid = 0
        self.best_ask = 0
        #: Levels per side this book keeps, give or take.
        self.target = target

    def side(self, side: int) -> dict[int, int]:
        return self.bids if side == BID else self.asks

    def best(self, side: int) -> int:
        return self.best_bid if side == BID else self.best_ask

    def top(self) -> tuple[int, int, int, int]:
        return self.best_bid, self.bids[self.best_bid], self.best_ask, self.asks[self.best_ask]

    def set(self, side: int, price: int, lots: int, changes: list[tuple[int, int, int]]) -> None:
        """Set a level (0 removes it), record the change, keep the best price right."""
        levels = self.bids if side == BID else self.asks
        changes.append((side, price, lots))
        if lots:
            levels[price] = lots
            if side == BID and price > self.best_bid:
                self.best_bid = price
            elif side == ASK and price < self.best_ask:
                self.best_ask = price
            return
        del levels[price]
        if side == BID and price == self.best_bid:
            while price not in levels:  # levels are dense near the top: a short walk
                price -= 1
            self.best_bid = price
        elif side == ASK and price == self.best_ask:
            while price not in levels:
                price += 1
            self.best_ask = price

    def copy_levels(self) -> tuple[dict[int, int], dict[int, int]]:
        return dict(self.bids), dict(self.asks)


class SyntheticMarket:
    """Deterministic by ``seed``: the same arguments give the same steps, byte for byte."""

    def __init__(
        self,
        symbols: int = 10,
        *,
        seed: int = 0,
        quote: str = "USDT",
        rate: float = 1000.0,
        start_ms: int | None = None,
        depth: tuple[int, int] = (50, 200),
        trade_share: float = 0.15,
    ) -> None:
        self.rng = random.Random(seed)
        self.instruments: list[Instrument] = make_instruments(symbols, quote, self.rng)
        #: Steps per second of market time (the Poisson rate of events, all symbols together).
        self.rate = rate
        self.start_ms = int(time.time() * 1000) if start_ms is None else start_ms
        self.trade_share = trade_share
        self.books: list[Book] = []
        self._clock = 0.0  # market seconds since start_ms
        self._index = 0
        self._trade_ids = [self.rng.randrange(10**6, 10**8) for _ in self.instruments]
        self._agg_ids = [self.rng.randrange(10**5, 10**7) for _ in self.instruments]
        self._tops: list[tuple[int, int, int, int]] = []
        #: Typical resting size per level, in lots (a level is worth about 2000 quote units).
        self._level_lots = [max(1, int(2000 / float(i.price.value(i.open_ticks)) / float(i.step_size))) for i in
                            self.instruments]  # fmt: skip
        for number, instrument in enumerate(self.instruments):
            book = Book(self.rng.randint(*depth))
            self._fill(number, book, instrument.open_ticks)
            self.books.append(book)
            self._tops.append(book.top())

    # --- the book at the start --------------------------------------------------------------

    def _fill(self, symbol: int, book: Book, mid: int) -> None:
        spread = 1 + int(self.rng.expovariate(1.0))
        bid, ask = mid - spread // 2 - 1, mid + (spread + 1) // 2
        scratch: list[tuple[int, int, int]] = []
        for side, edge, sign in ((BID, bid, -1), (ASK, ask, 1)):
            price, placed = edge, 0
            if side == BID:
                book.best_bid = edge
            else:
                book.best_ask = edge
            while placed < book.target:
                if placed == 0 or self.rng.random() < 0.8:
                    book.set(side, price, self._size(symbol, abs(price - edge)), scratch)
                    placed += 1
                price += sign

    def _size(self, symbol: int, distance: int) -> int:
        """A resting size: log-normal, larger away from the top, as books are."""
        typical = self._level_lots[symbol] * (1 + distance / 20)
        return max(1, int(typical * self.rng.lognormvariate(0, 0.8)))

    # --- stepping ---------------------------------------------------------------------------

    @property
    def clock(self) -> float:
        """Market seconds since ``start_ms`` of the last step."""
        return self._clock

    def next_at(self) -> float:
        """When the next step happens, in market seconds (drawn now, so it is known in advance)."""
        return self._clock + self._gap

    _gap = 0.0

    def step(self) -> Step:
        rng = self.rng
        self._clock += self._gap
        self._gap = rng.expovariate(self.rate)
        symbol = rng.randrange(len(self.books))
        book = self.books[symbol]
        step = Step(self._index, symbol, self.start_ms + int(self._clock * 1000), [])
        self._index += 1
        draw = rng.random()
        if draw < self.trade_share:
            self._trade(symbol, book, step)
        elif draw < self.trade_share + 0.05:
            self._move(symbol, book, step)
        else:
            self._update(symbol, book, step.changes)
        self._keep_depth(symbol, book, step.changes)
        top = book.top()
        if top != self._tops[symbol]:
            self._tops[symbol] = step.top = top
        return step

    def _update(self, symbol: int, book: Book, changes: list[tuple[int, int, int]]) -> None:
        """1-4 level changes, mostly within a few ticks of the top."""
        rng = self.rng
        spread = book.best_ask - book.best_bid
        if spread > 1 and rng.random() < 0.6:  # liquidity providers close a wide spread
            side = BID if rng.random() < 0.5 else ASK
            inside = rng.randrange(1, spread)
            price = book.best_bid + inside if side == BID else book.best_ask - inside
            book.set(side, price, self._size(symbol, 0), changes)
        for _ in range(1 + (rng.random() < 0.5) + (rng.random() < 0.3) + (rng.random() < 0.2)):
            side = BID if rng.random() < 0.5 else ASK
            levels = book.side(side)
            distance = int(rng.expovariate(0.15))
            price = book.best(side) - distance if side == BID else book.best(side) + distance
            size = levels.get(price)
            if size is None:
                book.set(side, price, self._size(symbol, distance), changes)
            elif rng.random() < 0.3 and len(levels) > book.target // 2:
                book.set(side, price, 0, changes)
            else:
                new = max(1, int(size * rng.uniform(0.4, 1.7)))
                if new != size:
                    book.set(side, price, new, changes)

    def _move(self, symbol: int, book: Book, step: Step) -> None:
        """The random walk: improve one side inside the spread, or sweep the other's top level."""
        up = self.rng.random() < 0.5
        spread = book.best_ask - book.best_bid
        if spread > 1:
            side, price = (BID, book.best_bid + 1) if up else (ASK, book.best_ask - 1)
            book.set(side, price, self._size(symbol, 0), step.changes)
        else:
            side = ASK if up else BID
            self._take(symbol, book, step, taker_buy=up, lots=book.side(side)[book.best(side)])

    def _trade(self, symbol: int, book: Book, step: Step) -> None:
        taker_buy = self.rng.random() < 0.5
        side = ASK if taker_buy else BID
        top_lots = book.side(side)[book.best(side)]
        lots = max(1, int(top_lots * self.rng.uniform(0.05, 1.4)))
        self._take(symbol, book, step, taker_buy, lots)

    def _take(self, symbol: int, book: Book, step: Step, taker_buy: bool, lots: int) -> None:
        """A taker order of ``lots`` walks the opposite side from its best level."""
        rng = self.rng
        side = ASK if taker_buy else BID
        levels = book.side(side)
        while lots > 0 and len(levels) > book.target // 2:
            price = book.best(side)
            resting = levels[price]
            taken = min(resting, lots)
            lots -= taken
            parts = min(taken, 1 + (rng.random() < 0.4) + (rng.random() < 0.2))
            sizes = [taken // parts] * parts
            sizes[-1] += taken - sum(sizes)
            first = self._trade_ids[symbol]
            self._trade_ids[symbol] += parts
            step.fills.append(Fill(self._agg_ids[symbol], first, price, sizes, taker_buy))
            self._agg_ids[symbol] += 1
            book.set(side, price, resting - taken, step.changes)

    def _keep_depth(self, symbol: int, book: Book, changes: list[tuple[int, int, int]]) -> None:
        """Keep each side near its target depth: cancel the farthest level, or add one beyond it."""
        for side in (BID, ASK):
            levels = book.side(side)
            if len(levels) > book.target * 1.1:
                far = min(levels) if side == BID else max(levels)
                book.set(side, far, 0, changes)
            elif len(levels) < book.target * 0.9:
                far = min(levels) if side == BID else max(levels)
                gap = 1 + int(self.rng.expovariate(1.0))
                price = far - gap if side == BID else far + gap
                if price > 0:
                    book.set(side, price, self._size(symbol, abs(price - book.best(side))), changes)

    # --- truth ------------------------------------------------------------------------------

    def levels(self, symbol: int) -> tuple[dict[int, int], dict[int, int]]:
        """The book of ``symbol`` now: (bids, asks), price ticks -> size lots."""
        return self.books[symbol].copy_levels()
