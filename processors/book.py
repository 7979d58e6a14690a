"""One instrument's book as the order-book agent keeps it: levels, health, the venue's last ids.

``Book.apply`` takes the book topic's records in order and is the whole of the agent's book
logic (no Kafka, no Faust, so it is tested on its own):

- a snapshot replaces the levels and makes the book LIVE (unless it is crossed);
- a delta on a LIVE book must continue it by the venue's rule (``continuity.py``); a delta
  already covered is a duplicate and skipped; one that does not continue it, a crossed book
  after it, or a checksum that does not match marks the book INVALID;
- a ``BookReset`` (the producer's gap marker) marks the book INVALID;
- an INVALID (or never snapshotted) book ignores deltas until the next snapshot.

An INVALID book keeps its levels in memory and in the table (so the next snapshot writes only
the levels that differ), but no output shows them: ``top`` and ``depth`` give no levels unless
the book is LIVE.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import msgspec

from processors.book_records import BookRecord
from processors.continuity import Continuity, rule_for
from processors.levels import Change, Level, Side
from processors.scaled import plain
from tickflow.events import BookHealth, BookReset, BookResetReason, BookUpdate, BookUpdateKind, MarketType


class BookHead(msgspec.Struct, kw_only=True):
    """What the agent keeps about a book besides its levels; one table entry per instrument,
    written once per record applied."""

    venue: str
    market: MarketType
    symbol: str
    venue_symbol: str
    health: BookHealth = BookHealth.AWAITING_SNAPSHOT
    #: Why the book is not LIVE.
    detail: str = ""
    snapshot_id: int | None = None
    #: The venue's last update id applied (a snapshot's, then each delta's).
    last_id: int | None = None
    #: No delta applied since the snapshot (the next one must bridge it).
    after_snapshot: bool = False
    exchange_ts: int | None = None
    receive_ts: int = 0


@dataclass
class Counters:
    """In memory only (they restart at zero with the worker): for the ``/books`` listing."""

    applied: int = 0
    duplicates: int = 0
    ignored: int = 0  # deltas while not LIVE
    invalidations: int = 0


@dataclass
class Applied:
    """What one record did to the book."""

    bids: list[Change] = field(default_factory=list)
    asks: list[Change] = field(default_factory=list)
    #: The head changed and must be written.
    head_changed: bool = False
    #: Why nothing was applied (duplicate, book not LIVE), for logs and counters.
    skipped: str | None = None


#: Health, best bid and best ask as (price, size) at scale 18 (``None``: the side is empty or the
#: book not LIVE).
Top = tuple[BookHealth, Level | None, Level | None]


class Book:
    def __init__(self, head: BookHead, rule: Continuity | None = None) -> None:
        self.head = head
        self.rule = rule if rule is not None else rule_for(head.venue)
        self.bids = Side(-1)
        self.asks = Side(+1)
        self.counters = Counters()
        #: Set while records are applied again over levels that already hold their changes (a
        #: crash between a batch's levels and its head, ``state.py``): the levels are then ahead
        #: of the record, so the checks of the book as a whole (crossed, checksum) would judge a
        #: state that never existed; they were made when the record was first applied.
        self.replaying = False

    @classmethod
    def of(cls, record: BookRecord | BookUpdate | BookReset) -> Book:
        """A new, empty book for the instrument of ``record``."""
        return cls(BookHead(venue=record.venue, market=MarketType(record.market), symbol=record.symbol,
                            venue_symbol=record.venue_symbol))  # fmt: skip

    @property
    def live(self) -> bool:
        return self.head.health is BookHealth.LIVE

    # --- records -----------------------------------------------------------------------------

    def apply(self, record: BookRecord | BookUpdate | BookReset) -> Applied:
        """Apply one record of the book topic (a typed ``BookUpdate`` is read as its ``BookRecord``)."""
        if isinstance(record, BookUpdate):
            record = BookRecord.of(record)
        if isinstance(record, BookReset):
            detail = f"gap marker {record.reason.value}"
            if record.expected_update_id is not None or record.received_update_id is not None:
                detail += f" (expected {record.expected_update_id}, received {record.received_update_id})"
            if record.detail:
                detail += f": {record.detail}"
            self._times(record.exchange_ts, record.receive_ts)
            return self._invalidate(detail)
        if record.kind == BookUpdateKind.SNAPSHOT:
            return self._snapshot(record)
        return self._delta(record)

    def _snapshot(self, record: BookRecord) -> Applied:
        head = self.head
        out = Applied(self.bids.replace(record.bids), self.asks.replace(record.asks), head_changed=True)
        head.snapshot_id = head.last_id = record.last_update_id
        head.after_snapshot = True
        head.health, head.detail = BookHealth.LIVE, ""
        self._times(record.exchange_ts, record.receive_ts)
        self.counters.applied += 1
        return self._checked(record, out)

    def _delta(self, record: BookRecord) -> Applied:
        head = self.head
        if head.health is not BookHealth.LIVE:
            self.counters.ignored += 1
            return Applied(skipped=f"book is {head.health.value}: waiting for a snapshot")
        last = head.last_id
        if last is not None:
            if self.rule.duplicate(last, head.after_snapshot, record):
                self.counters.duplicates += 1
                return Applied(skipped=f"duplicate: ends at {record.last_update_id}, {last} applied already")
            broken = self.rule.check(last, head.after_snapshot, record)
            if broken is not None:
                return self._invalidate(f"{BookResetReason.SEQUENCE_GAP.value}: {broken.detail}")
        out = Applied(self.bids.apply(record.bids), self.asks.apply(record.asks), head_changed=True)
        if record.last_update_id is not None:
            head.last_id = record.last_update_id
        head.after_snapshot = False
        self._times(record.exchange_ts, record.receive_ts)
        self.counters.applied += 1
        return self._checked(record, out)

    def _checked(self, record: BookRecord, out: Applied) -> Applied:
        """The checks after applying ``record``: crossed book, the venue's checksum."""
        if self.replaying:
            return out
        bid, ask = self.bids.best(), self.asks.best()
        if bid is not None and ask is not None and bid[0] >= ask[0]:
            self._invalidate(
                f"{BookResetReason.CROSSED_BOOK.value}: best bid {plain(bid[0])} >= best ask {plain(ask[0])}"
            )
        elif record.checksum is not None:
            ours = self.rule.checksum(self.bids.levels, self.asks.levels)
            if ours is not None and ours != record.checksum:
                self._invalidate(
                    f"{BookResetReason.CHECKSUM_MISMATCH.value}: venue says {record.checksum}, book gives {ours}"
                )
        return out

    def _invalidate(self, detail: str) -> Applied:
        head = self.head
        if head.health is not BookHealth.INVALID:
            self.counters.invalidations += 1
        head.health, head.detail = BookHealth.INVALID, detail
        return Applied(head_changed=True)

    def _times(self, exchange_ts: int | None, receive_ts: int) -> None:
        self.head.exchange_ts, self.head.receive_ts = exchange_ts, receive_ts

    # --- reading -----------------------------------------------------------------------------

    def top(self) -> Top:
        """Health, best bid and best ask at scale 18 (``None`` when the side is empty or the book
        not LIVE)."""
        if not self.live:
            return self.head.health, None, None
        return self.head.health, self.bids.best(), self.asks.best()

    def depth(self, n: int | None = None) -> tuple[list[Level], list[Level]]:
        """The best ``n`` levels a side (all if ``None``), best first, at scale 18; nothing
        unless LIVE."""
        if not self.live:
            return [], []
        return self.bids.top(n), self.asks.top(n)
