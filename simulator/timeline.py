"""What a venue server sends: a timeline of rendered items, paced by a clock or at full speed.

Both sources feed the same protocol code through ``Feed``:

- a recording replay: every item known up front, each at its recorded time (``Feed`` itself);
- the synthetic market (``SyntheticFeed``): paced (items generated lazily when they fall due,
  ``rate`` market events per second, so memory stays flat and the live market *is* the book
  at the head), or full speed (``rate=0``: every item rendered before the first client, sent as
  fast as sockets take them; the book at any position is rebuilt from the recorded changes).

Each connection keeps its own position in the timeline and joins where the venue is now (a
reconnect does not get a replay of what it missed: that is what a real venue does).
"""

from __future__ import annotations

import asyncio
import bisect
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from simulator.market import BID, Step, SyntheticMarket


@dataclass(slots=True)
class Item:
    """One message a venue may send, before per-connection details (stream wrapper, sequence)."""

    #: Seconds since the feed's start (feed time: divide by ``speed`` for wall time).
    at: float
    #: What a subscription names, e.g. ``btcusdt@depth`` or ``level2:BTC-USD``.
    key: str
    #: The venue payload (Binance: the raw stream payload; Coinbase: the envelope after ``sequence_num``).
    text: str
    #: Binance: the full combined-stream frame for the item's own stream name (exact replay bytes).
    frame: str = ""
    name: str = ""
    #: The venue's symbol / product id (for fault records).
    sym: str = ""
    #: Book items only: the symbol index (-1: not a book item), the venue's first/last sequence
    #: ids, the neutral changes (synthetic only).
    symbol: int = -1
    first_id: int = 0
    last_id: int = 0
    changes: list[tuple[int, int, int]] | None = None

    def payload(self) -> str:
        """The raw payload; derived from the combined frame when only that was kept (saves memory)."""
        if self.text:
            return self.text
        return self.frame[len(self.name) + 20 : -1]  # '{"stream":"<name>","data":' ... '}'


class Feed:
    """A fixed list of items at known times (a replay). The clock starts with the first client."""

    def __init__(self, items: list[Item], speed: float = 1.0) -> None:
        self.items = items
        self.speed = speed
        #: Absolute index of ``items[0]`` (items before it were trimmed away).
        self.base = 0
        self.started: float | None = None
        #: Each connection's position (absolute index of the next item it will look at).
        self.positions: dict[int, int] = {}
        self.ended = False

    def start(self) -> None:
        if self.started is None:
            self.started = time.monotonic()

    def elapsed(self) -> float:
        """Feed seconds since the first client connected."""
        return 0.0 if self.started is None else (time.monotonic() - self.started) * self.speed

    @property
    def end(self) -> int:
        return self.base + len(self.items)

    def due(self) -> int:
        """Absolute index of the first item not yet due."""
        now = self.elapsed()
        return self.base + bisect.bisect_right(self.items, now, key=lambda item: item.at)

    def join(self, connection: int) -> int:
        """A new connection's first position: where the venue is now (the first client starts
        the clock and gets everything from the start)."""
        first = self.started is None
        self.start()
        position = self.base if first else self.due()
        self.positions[connection] = position
        return position

    def leave(self, connection: int) -> None:
        self.positions.pop(connection, None)

    def item(self, position: int) -> Item:
        return self.items[position - self.base]

    def moved(self, connection: int, position: int) -> None:
        self.positions[connection] = position

    async def wait(self, position: int) -> bool:
        """Wait until the item at ``position`` is due; False once the feed has no more items."""
        while True:
            if position < self.due():
                return True
            if position >= self.end:
                self.ended = True
                return False
            await asyncio.sleep(max((self.item(position).at - self.elapsed()) / self.speed, 0.0005))


Renderer = Callable[[Step, float], list[Item]]


@dataclass
class BookHistory:
    """Full-speed truth: one symbol's book changes by timeline position, replayed on demand."""

    initial: tuple[dict[int, int], dict[int, int]]
    first_id: int
    positions: list[int] = field(default_factory=list)
    entries: list[Item] = field(default_factory=list)

    def at(self, position: int) -> tuple[dict[int, int], dict[int, int], int]:
        """(bids, asks, last id) after every change before ``position``."""
        bids, asks = dict(self.initial[0]), dict(self.initial[1])
        last_id = self.first_id
        for item in self.entries[: bisect.bisect_left(self.positions, position)]:
            for side, price, lots in item.changes or ():
                levels = bids if side == BID else asks
                if lots:
                    levels[price] = lots
                else:
                    levels.pop(price, None)
            last_id = item.last_id
        return bids, asks, last_id


class SyntheticFeed(Feed):
    """The synthetic market rendered by one venue's ``render``; ``rate`` 0 = full speed."""

    #: Paced mode trims items every connection has passed once this many have piled up.
    TRIM = 20_000

    def __init__(
        self,
        market: SyntheticMarket,
        render: Renderer,
        *,
        rate: float,
        last_ids: Callable[[int], int],
        frames: int | None = None,
        duration: float | None = None,
        speed: float = 1.0,
    ) -> None:
        super().__init__([], speed)
        self.market = market
        self.render = render
        self.full_speed = rate == 0
        if not self.full_speed:
            market.rate = rate
        self.frames = frames
        self.duration = duration
        #: Milliseconds the venue's event time trails the market's clock, when the clock is pinned
        #: to the wall clock (``pin_to_wall_clock``); None: not pinned.
        self._wall_clock_lag: float | None = None
        #: The venue's last book id of a symbol at the head (paced mode).
        self._last_ids = last_ids
        self._generated = 0
        self.histories: list[BookHistory] = []
        if self.full_speed:
            if frames is None and duration is None:
                raise ValueError("full speed needs a bound: frames or duration")
            self.histories = [BookHistory(market.levels(s), last_ids(s)) for s in range(len(market.books))]
            while not self._exhausted():
                self._render_next()
            for position, item in enumerate(self.items):
                if item.changes is not None:
                    history = self.histories[item.symbol]
                    history.positions.append(position)
                    history.entries.append(item)

    def pin_to_wall_clock(self, event_lag_ms: float = 0.0) -> None:
        """When the first client connects (the feed's clock starts), move the market's
        ``start_ms`` so that market time is wall time: an item falls due when its timestamp says,
        and an event time ``event_lag_ms`` after the market's (a venue's engine-to-gateway delay)
        is, on average, the wall time at which the item falls due. A latency benchmark can then
        measure from a message's own event time to its arrival anywhere downstream. Paced mode at
        speed 1 only: at full speed, or at another speed, market time runs apart from wall time."""
        if self.full_speed or self.speed != 1.0:
            raise ValueError("the wall clock needs a paced feed (rate > 0) at speed 1")
        self._wall_clock_lag = event_lag_ms

    def start(self) -> None:
        if self.started is None and self._wall_clock_lag is not None:
            # Both clocks read together: ``elapsed`` counts from ``started`` (monotonic), the
            # timestamps from ``start_ms`` (wall); a monotonic read between two wall reads that
            # agree (on a loaded machine the process can be descheduled between two reads).
            for _ in range(10):
                before, self.started, after = time.time(), time.monotonic(), time.time()
                if after - before < 0.0002:
                    break
            wall_ms = (before + after) * 500
            # Rounded: a step's timestamp truncates the market clock to whole milliseconds (0.5
            # ms early on average, as a broker's append times are, so those cancel); a truncated
            # start would make it 1 ms.
            self.market.start_ms = round(wall_ms - self.market.clock * 1000 - self._wall_clock_lag)
        super().start()

    def _exhausted(self) -> bool:
        if self.frames is not None and self._generated >= self.frames:
            return True
        return self.duration is not None and self.market.next_at() > self.duration

    def _render_next(self) -> None:
        step = self.market.step()
        rendered = self.render(step, self.market.clock)
        self.items.extend(rendered)
        self._generated += len(rendered)

    def due(self) -> int:
        if self.full_speed or (self.started is None and self._wall_clock_lag is not None):
            return self.end  # pinned: nothing falls due before the clock starts (and is pinned)
        now = self.elapsed()
        while not self._exhausted() and self.market.next_at() <= now:
            self._render_next()
        return self.end

    def join(self, connection: int) -> int:
        self.start()
        position = self.cursor if self.full_speed else self.due()
        self.positions[connection] = position
        return position

    #: Full speed: the furthest position any connection has reached (the venue's "now").
    cursor = 0

    def moved(self, connection: int, position: int) -> None:
        self.positions[connection] = position
        if position > self.cursor:
            self.cursor = position
        if not self.full_speed and len(self.items) > 2 * self.TRIM:
            oldest = min(self.positions.values(), default=self.end)
            drop = min(oldest - self.base, len(self.items) - self.TRIM)
            if drop > self.TRIM // 2:
                del self.items[:drop]
                self.base += drop

    async def wait(self, position: int) -> bool:
        while True:
            if position < self.due():
                return True
            if self.full_speed or self._exhausted():
                self.ended = True
                return False
            delay = (self.market.next_at() - self.elapsed()) / self.speed
            await asyncio.sleep(max(delay, 0.0005))

    def book(self, symbol: int) -> tuple[dict[int, int], dict[int, int], int]:
        """The venue's book of ``symbol`` now, with the venue's id of its last change: at the
        head when paced (the live market), at the leading connection's position at full speed."""
        if self.full_speed:
            return self.histories[symbol].at(self.cursor)
        self.due()
        bids, asks = self.market.levels(symbol)
        return bids, asks, self._last_ids(symbol)

    def book_at(self, symbol: int, position: int) -> tuple[dict[int, int], dict[int, int], int]:
        """The book just before ``position`` (a connection's own position; paced: must be the head)."""
        if self.full_speed:
            return self.histories[symbol].at(position)
        assert position >= self.end, "paced books exist at the head only"
        bids, asks = self.market.levels(symbol)
        return bids, asks, self._last_ids(symbol)
