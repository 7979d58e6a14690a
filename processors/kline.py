"""One instrument's klines as the kline agent keeps them: the open windows of every interval, the
event-time watermark, the trade ids already counted, counters. ``InstrumentWindows.trade`` and
``.advance`` are the agent's whole window logic (no Kafka, no Faust), so it is tested on its own.

- Event time: a trade belongs to the window of each interval that holds its ``exchange_ts``
  (windows aligned to the epoch, ``[open_time, open_time + interval)``).
- The watermark is the instrument's latest ``exchange_ts`` minus the grace period (or its
  partition's time minus the idle allowance, ``advance``); it never goes back. A window closes,
  and is published once with ``closed=True``, when the watermark reaches its close time.
- A trade whose window has closed is late: the window is published again with the trade in it
  and ``revision`` one higher (a correction; revision 1 for a window that was empty when it
  closed, and so never published). Closed windows are kept for that until the watermark is a
  correction horizon past them; a trade older than the horizon is refused (``expired``: the
  agent dead-letters it) rather than counted in some windows and not in others.
- A trade id already counted (the venue or the producer sent the trade twice) is skipped.
  Records read again after a restart are recognised earlier, by their offset (the agent's
  source positions, ``resume.py``, the highest offset the heads record per partition).

Prices and sizes are integers at scale 18 (the contract's decimal(38, 18)), products of the two
at scale 36: sums are exact; only VWAP and quote volume are rounded, half to even, to 18 places.
"""

from __future__ import annotations

import heapq
import re
from bisect import bisect_right
from dataclasses import dataclass, field
from typing import NamedTuple

import msgspec

from processors.scaled import UNIT
from tickflow.events import MarketType

SCALE = UNIT
_INTERVAL = re.compile(r"^([1-9][0-9]*)([smhd])$")
_UNIT_US = {"s": 1_000_000, "m": 60_000_000, "h": 3_600_000_000, "d": 86_400_000_000}
#: Numeric ids are kept as ranges; past this many ranges (this many gaps in the ids seen) the
#: two oldest merge, so ids inside the oldest gap count as seen from then on.
MAX_RANGES = 64
#: Ids that are not numbers (no venue of ours sends such yet) are kept as the latest this many.
MAX_RECENT = 256


def parse_interval(label: str) -> int:
    """``"5m"`` -> 300_000_000 (microseconds)."""
    match = _INTERVAL.match(label)
    if match is None:
        raise ValueError(f"kline interval {label!r}: expected <n>s, <n>m, <n>h or <n>d, e.g. 1s, 5m, 1h")
    return int(match.group(1)) * _UNIT_US[match.group(2)]


def div_half_even(n: int, d: int) -> int:
    """``n / d`` rounded half to even, for ``n >= 0, d > 0``."""
    q, r = divmod(n, d)
    if 2 * r > d or (2 * r == d and q % 2 == 1):
        q += 1
    return q


@dataclass(frozen=True)
class KlineConfig:
    #: ``(label, microseconds)`` per interval, shortest first.
    intervals: tuple[tuple[str, int], ...]
    grace_us: int
    idle_us: int
    horizon_us: int
    #: Event time between in-progress updates of one window; ``None``: closed klines only.
    updates_us: int | None = None

    @classmethod
    def of(cls, intervals: list[str], grace: float, idle: float, horizon: float,
           updates: float | None = None) -> KlineConfig:  # fmt: skip
        parsed = sorted(((label, parse_interval(label)) for label in dict.fromkeys(intervals)), key=lambda i: i[1])
        us = 1_000_000
        return cls(tuple(parsed), round(grace * us), round(idle * us), round(horizon * us),
                   None if updates is None else round(updates * us))  # fmt: skip

    def interval_us(self, label: str) -> int | None:
        return next((us for name, us in self.intervals if name == label), None)


class Tick(NamedTuple):
    """A trade as the window logic needs it (prices and sizes at scale 18)."""

    trade_id: str
    ts: int
    receive_ts: int
    price: int
    size: int


class Window(msgspec.Struct, array_like=True):
    """One kline's aggregate. ``open`` is the price of the trade with the earliest exchange time
    (the first to arrive among equal times), ``close`` the latest's (the last to arrive)."""

    open_time: int
    open: int
    high: int
    low: int
    close: int
    volume: int
    #: Sum of price * size at scale 36 (exact): the quote volume, and VWAP's numerator.
    notional: int
    count: int
    first_ts: int
    last_ts: int
    receive_ts: int
    #: Closed windows: the revision last published (0, then one more per correction).
    revision: int = 0
    #: Open windows: exchange time of the trade behind the last in-progress update published.
    updated_ts: int | None = None

    @classmethod
    def of(cls, open_time: int, t: Tick) -> Window:
        return cls(open_time, t.price, t.price, t.price, t.price, t.size, t.price * t.size, 1, t.ts, t.ts, t.receive_ts)

    def add(self, t: Tick) -> None:
        if t.ts < self.first_ts:
            self.open, self.first_ts = t.price, t.ts
        if t.ts >= self.last_ts:
            self.close, self.last_ts = t.price, t.ts
        if t.price > self.high:
            self.high = t.price
        if t.price < self.low:
            self.low = t.price
        self.volume += t.size
        self.notional += t.price * t.size
        self.count += 1
        if t.receive_ts > self.receive_ts:
            self.receive_ts = t.receive_ts

    @property
    def vwap(self) -> int:
        return div_half_even(self.notional, self.volume)

    @property
    def quote_volume(self) -> int:
        return div_half_even(self.notional, SCALE)

    def ohlcv(self) -> tuple[int, int, int, int, int]:
        return self.open, self.high, self.low, self.close, self.volume


class TradeIds(msgspec.Struct, array_like=True):
    """The trade ids counted: numeric ids as sorted, disjoint ``[lo, hi]`` ranges (a venue's ids
    follow each other, so this stays a range or a few whatever the number of trades), others as
    the latest ``MAX_RECENT``."""

    ranges: list[list[int]] = msgspec.field(default_factory=list)
    recent: list[str] = msgspec.field(default_factory=list)

    def seen(self, trade_id: str) -> bool:
        n = _numeric(trade_id)
        if n is None:
            return trade_id in self.recent
        if not self.ranges or n > self.ranges[-1][1]:  # past every id counted: the common case
            return False
        i = bisect_right(self.ranges, n, key=lambda r: r[0])
        return i > 0 and self.ranges[i - 1][1] >= n

    def add(self, trade_id: str) -> None:
        """Add an id not ``seen``."""
        n = _numeric(trade_id)
        if n is None:
            self.recent.append(trade_id)
            if len(self.recent) > MAX_RECENT:
                del self.recent[0]
            return
        r = self.ranges
        if r and n == r[-1][1] + 1:  # the next id: the common case
            r[-1][1] = n
            return
        i = bisect_right(r, n, key=lambda x: x[0])
        joins_left = i > 0 and r[i - 1][1] == n - 1
        joins_right = i < len(r) and r[i][0] == n + 1
        if joins_left and joins_right:
            r[i - 1][1] = r[i][1]
            del r[i]
        elif joins_left:
            r[i - 1][1] = n
        elif joins_right:
            r[i][0] = n
        else:
            r.insert(i, [n, n])
            if len(r) > MAX_RANGES:
                r[1][0] = r[0][0]
                del r[0]


def _numeric(trade_id: str) -> int | None:
    if trade_id.isascii() and trade_id.isdigit() and (len(trade_id) == 1 or trade_id[0] != "0"):
        return int(trade_id)
    return None


class Counters(msgspec.Struct):
    """Per instrument, kept in its table entry (so they survive restarts)."""

    trades: int = 0  # trades counted
    klines: int = 0  # closed klines published (revision 0)
    updates: int = 0  # in-progress klines published
    late: int = 0  # trades counted after one of their windows had closed
    corrections: int = 0  # klines published again (revision > 0)
    expired: int = 0  # trades older than the correction horizon: dead-lettered
    duplicates: int = 0  # trade ids already counted
    crosscheck_matches: int = 0
    crosscheck_mismatches: int = 0
    crosscheck_skipped: int = 0  # venue klines of windows we cannot have seen whole


class InstrumentKlines(msgspec.Struct, kw_only=True):
    """One table entry per instrument, written once per record applied."""

    venue: str
    market: MarketType
    symbol: str
    venue_symbol: str
    #: Source partition and, per source (``trades``, ``klines``), the last offset applied.
    partition: int = -1
    offsets: dict[str, int] = msgspec.field(default_factory=dict)
    max_ts: int = 0
    #: Exchange time of the first trade counted: windows opening before it may have had trades
    #: we never received (the cross-check skips them).
    first_ts: int | None = None
    watermark: int = 0
    ids: TradeIds = msgspec.field(default_factory=TradeIds)
    #: Open windows per interval label, oldest first.
    open: dict[str, list[Window]] = msgspec.field(default_factory=dict)
    counters: Counters = msgspec.field(default_factory=Counters)


@dataclass
class Emitted:
    interval: str
    interval_us: int
    window: Window  # a copy, as published
    closed: bool


@dataclass
class Outcome:
    """What one record or one advance did: klines to publish, table writes."""

    emitted: list[Emitted] = field(default_factory=list)
    #: Closed windows to write (``(interval, window)``) and to delete (``(interval, open_time)``).
    closed_put: list[tuple[str, Window]] = field(default_factory=list)
    closed_del: list[tuple[str, int]] = field(default_factory=list)
    head_changed: bool = False
    #: Why the trade was not counted: ``duplicate`` or ``expired``.
    skipped: str | None = None


class InstrumentWindows:
    """The head (``InstrumentKlines``) and the closed windows still open to corrections."""

    def __init__(self, head: InstrumentKlines, config: KlineConfig) -> None:
        self.head = head
        self.config = config
        self.closed: dict[tuple[str, int], Window] = {}
        self._expiry: list[tuple[int, str, int]] = []  # (close_time, interval, open_time), a heap

    def load_closed(self, interval: str, window: Window) -> None:
        """A closed window read back from the table."""
        us = self.config.interval_us(interval)
        if us is not None:
            self._keep(interval, us, window)

    def mark(self, source: str, partition: int, offset: int) -> None:
        """This record is applied: what the source positions are read back from after a restart."""
        self.head.partition = partition
        self.head.offsets[source] = offset

    def trade(self, t: Tick) -> Outcome:
        head, config, out = self.head, self.config, Outcome(head_changed=True)
        counters = head.counters
        if head.ids.seen(t.trade_id):
            counters.duplicates += 1
            out.skipped = "duplicate"
            return out
        if t.ts < head.watermark - config.horizon_us:
            counters.expired += 1
            out.skipped = "expired"
            return out
        head.ids.add(t.trade_id)
        counters.trades += 1
        if head.first_ts is None:
            head.first_ts = t.ts
        late = False
        for label, us in config.intervals:
            open_time = t.ts - t.ts % us
            if open_time + us <= head.watermark:
                late = True
                self._correct(label, us, open_time, t, out)
            else:
                self._add_open(label, us, open_time, t, out)
        if late:
            counters.late += 1
        if t.ts > head.max_ts:
            head.max_ts = t.ts
        self._close(head.max_ts - config.grace_us, out)
        return out

    def advance(self, watermark: int) -> Outcome:
        """Close what a watermark that came from elsewhere (the partition's time) closes."""
        out = Outcome()
        self._close(watermark, out)
        return out

    def _correct(self, label: str, us: int, open_time: int, t: Tick, out: Outcome) -> None:
        window = self.closed.get((label, open_time))
        if window is None:  # empty when it closed, so never published
            window = Window.of(open_time, t)
            self._keep(label, us, window)
        else:
            window.add(t)
        window.revision += 1
        self.head.counters.corrections += 1
        out.closed_put.append((label, window))
        out.emitted.append(Emitted(label, us, msgspec.structs.replace(window), True))

    def _add_open(self, label: str, us: int, open_time: int, t: Tick, out: Outcome) -> None:
        windows = self.head.open.setdefault(label, [])
        if windows and windows[-1].open_time == open_time:  # the latest window: nearly every trade
            window: Window | None = windows[-1]
        else:
            window = next((w for w in reversed(windows) if w.open_time == open_time), None)
        if window is None:
            window = Window.of(open_time, t)
            windows.append(window)
            if len(windows) > 1 and windows[-2].open_time > open_time:
                windows.sort(key=lambda w: w.open_time)
        else:
            window.add(t)
        every = self.config.updates_us
        if every is not None and (window.updated_ts is None or t.ts - window.updated_ts >= every):
            window.updated_ts = t.ts
            self.head.counters.updates += 1
            out.emitted.append(Emitted(label, us, msgspec.structs.replace(window), False))

    def _close(self, watermark: int, out: Outcome) -> None:
        head = self.head
        if watermark <= head.watermark:
            return
        head.watermark = watermark
        out.head_changed = True
        for label, us in self.config.intervals:
            windows = head.open.get(label)
            while windows and windows[0].open_time + us <= watermark:
                window = windows.pop(0)
                window.updated_ts = None
                self._keep(label, us, window)
                head.counters.klines += 1
                out.closed_put.append((label, window))
                out.emitted.append(Emitted(label, us, msgspec.structs.replace(window), True))
        # Closed windows past the horizon can take no more trades (``trade`` refuses them).
        limit = watermark - self.config.horizon_us
        while self._expiry and self._expiry[0][0] <= limit:
            _, label, open_time = heapq.heappop(self._expiry)
            if self.closed.pop((label, open_time), None) is not None:
                out.closed_del.append((label, open_time))

    def _keep(self, label: str, us: int, window: Window) -> None:
        key = (label, window.open_time)
        if key not in self.closed:
            heapq.heappush(self._expiry, (window.open_time + us, label, window.open_time))
        self.closed[key] = window
