"""Order-book synchronisation: snapshot + buffered diffs, bridged and checked, per symbol.

One ``BookSync`` per symbol runs the documented procedure of its venue, which supplies the
``BridgeRule`` (how a diff relates to a snapshot and to the previous diff):

1. diffs are buffered from the moment the subscription starts;
2. when the REST snapshot arrives, stale diffs are dropped and the first remaining one must
   bridge the snapshot, else the snapshot is too old and another is needed;
3. from then on every diff must continue the previous one; the book is kept and checked
   (never crossed).

Any failure (a gap, a crossed book, a stale snapshot) resets that one symbol: a ``Reset`` output
says what was expected and what arrived, the book is dropped and a new snapshot is requested.
Nothing else is touched: other symbols and the socket carry on.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from decimal import Decimal
from enum import Enum
from typing import Any, Protocol

import msgspec

from tickflow.book_side import BookSide
from tickflow.errors import MalformedFrame
from tickflow.events import BookResetReason

Level = tuple[Decimal, Decimal]  # (price, size), exact: decoded once from the venue's strings


# The records below are frozen msgspec structs rather than dataclasses: they are made once or
# twice per depth frame, and a frozen dataclass costs several times more to build.


class DepthDiff(msgspec.Struct, frozen=True):
    """A venue-neutral incremental book update."""

    first_id: int
    last_id: int
    #: The previous diff's last id, where the venue sends it (Binance USD-M ``pu``).
    prev_id: int | None
    bids: list[Level]
    asks: list[Level]
    exchange_ts: int | None
    receive_ts: int
    #: The venue's levels still undecoded (``bids``/``asks`` empty until then): a diff buffered
    #: while its book waits for a snapshot is mostly dropped as stale, so its levels are
    #: decoded only if it is applied (``BookSync(decode_levels=...)``).
    undecoded: Any = None


class DepthSnapshot(msgspec.Struct, frozen=True):
    last_id: int
    bids: list[Level]
    asks: list[Level]
    receive_ts: int


class BridgeRule(Protocol):
    """How a venue's diffs relate to its snapshots and to each other."""

    #: True if update ids count this instrument's updates alone (then a gap's size is known).
    ids_per_instrument: bool

    def stale(self, diff: DepthDiff, snapshot_id: int) -> bool:
        """The diff is entirely covered by the snapshot: drop it."""

    def bridges(self, diff: DepthDiff, snapshot_id: int) -> bool:
        """The diff is the first one to apply on top of the snapshot."""

    def continues(self, diff: DepthDiff, previous: DepthDiff) -> bool:
        """The diff follows ``previous`` with nothing missed."""

    def expected(self, previous: DepthDiff) -> int:
        """The id the next diff must carry (for the gap marker)."""

    def received(self, diff: DepthDiff) -> int:
        """The id this diff carries, comparable with ``expected``."""


class _Side(BookSide[Decimal]):
    """One side of the generic book (``tickflow.book_side``: a dict and a heap)."""

    __slots__ = ()

    def apply(self, levels: Iterable[Level]) -> None:
        book = self.levels
        for price, size in levels:
            if size:
                if price not in book:
                    self.add_price(price)
                book[price] = size
            else:
                book.pop(price, None)
        self.compact()


class OrderBook:
    """Price levels of one book; prices and sizes exact ``Decimal``s."""

    def __init__(self) -> None:
        self._bids = _Side(-1)
        self._asks = _Side(+1)

    @property
    def bids(self) -> dict[Decimal, Decimal]:
        return self._bids.levels

    @property
    def asks(self) -> dict[Decimal, Decimal]:
        return self._asks.levels

    def clear(self) -> None:
        self._bids.clear()
        self._asks.clear()

    def apply(self, bids: Iterable[Level], asks: Iterable[Level]) -> None:
        self._bids.apply(bids)
        self._asks.apply(asks)

    def best_bid(self) -> tuple[Decimal, Decimal] | None:
        return self._bids.best()

    def best_ask(self) -> tuple[Decimal, Decimal] | None:
        return self._asks.best()

    def crossed(self) -> bool:
        bid, ask = self.best_bid(), self.best_ask()
        return bid is not None and ask is not None and bid[0] >= ask[0]


class SyncState(Enum):
    AWAITING_SNAPSHOT = "awaiting_snapshot"
    LIVE = "live"


class PublishSnapshot(msgspec.Struct, frozen=True):
    snapshot: DepthSnapshot


class PublishDiff(msgspec.Struct, frozen=True):
    diff: DepthDiff


class Reset(msgspec.Struct, frozen=True):
    reason: BookResetReason
    expected: int | None
    received: int | None
    detail: str


class NeedSnapshot(msgspec.Struct, frozen=True):
    """Fetch a REST snapshot for this symbol (after the subscription is live)."""


Output = PublishSnapshot | PublishDiff | Reset | NeedSnapshot


@dataclass
class SyncCounters:
    diffs: int = 0
    stale_dropped: int = 0
    resets: int = 0
    snapshots: int = 0
    duplicates_dropped: int = 0


class BookSync:
    """The synchronisation state machine of one symbol's book.

    ``book`` is an ``OrderBook`` unless another implementation with the same methods is given
    (the compiled ``tickflow._hotpath.Book``, which the Binance stream's compiled path also
    updates directly for diffs that continue a live book; see ``BinanceStream``).
    """

    def __init__(
        self,
        rule: BridgeRule,
        *,
        max_buffer: int = 10_000,
        book: Any = None,
        decode_levels: Callable[[DepthDiff], DepthDiff] | None = None,
    ) -> None:
        self.rule = rule
        #: Decodes the levels of a diff buffered undecoded; raises ``MalformedFrame`` if they are bad.
        self.decode_levels = decode_levels
        self.state = SyncState.AWAITING_SNAPSHOT
        self.book = book if book is not None else OrderBook()
        self.counters = SyncCounters()
        self._buffer: deque[DepthDiff] = deque(maxlen=max_buffer)
        self._previous: DepthDiff | None = None
        self._snapshot_id = -1

    @property
    def buffered(self) -> int:
        """Diffs held for the next snapshot (at most ``max_buffer``)."""
        return len(self._buffer)

    def on_diff(self, diff: DepthDiff) -> list[Output]:
        self.counters.diffs += 1
        if self.state is SyncState.AWAITING_SNAPSHOT:
            self._buffer.append(diff)
            return []
        if self._previous is None:  # live on a snapshot, no diff applied yet: this one must bridge
            if self.rule.stale(diff, self._snapshot_id):
                self.counters.stale_dropped += 1
                return []
            if not self.rule.bridges(diff, self._snapshot_id):
                return self._reset(
                    BookResetReason.SEQUENCE_GAP,
                    self._snapshot_id,
                    self.rule.received(diff),
                    f"first diff after snapshot {self._snapshot_id} does not bridge it",
                    keep=diff,
                )
            return self._apply(diff)
        if diff.last_id <= self._previous.last_id:  # a duplicate or replayed diff: already applied
            self.counters.duplicates_dropped += 1
            return []
        if not self.rule.continues(diff, self._previous):
            return self._reset(
                BookResetReason.SEQUENCE_GAP,
                self.rule.expected(self._previous),
                self.rule.received(diff),
                "diff does not continue the previous one",
                keep=diff,
            )
        return self._apply(diff)

    def on_snapshot(self, snapshot: DepthSnapshot) -> list[Output]:
        """Apply a REST snapshot; buffered diffs are bridged onto it."""
        self.counters.snapshots += 1
        pending = [d for d in self._buffer if not self.rule.stale(d, snapshot.last_id)]
        self.counters.stale_dropped += len(self._buffer) - len(pending)
        self._buffer.clear()
        if pending and not self.rule.bridges(pending[0], snapshot.last_id):
            # A gap between the snapshot and the stream: the snapshot is too old (or too new).
            for diff in pending:
                self._buffer.append(diff)
            return self._reset(
                BookResetReason.SEQUENCE_GAP,
                snapshot.last_id,
                self.rule.received(pending[0]),
                f"first diff after snapshot {snapshot.last_id} does not bridge it",
                keep=None,
            )
        self.book.clear()
        self.book.apply(snapshot.bids, snapshot.asks)
        self.state = SyncState.LIVE
        self._previous = None
        self._snapshot_id = snapshot.last_id
        out: list[Output] = [PublishSnapshot(snapshot)]
        for i, diff in enumerate(pending):
            if self._previous is not None and diff.last_id <= self._previous.last_id:
                self.counters.duplicates_dropped += 1  # sent twice while we were buffering
                continue
            if self._previous is not None and not self.rule.continues(diff, self._previous):
                for later in pending[i:]:
                    self._buffer.append(later)
                return out + self._reset(
                    BookResetReason.SEQUENCE_GAP,
                    self.rule.expected(self._previous),
                    self.rule.received(diff),
                    "gap among the buffered diffs",
                    keep=None,
                )
            if diff.undecoded is not None:
                assert self.decode_levels is not None, "an undecoded diff needs decode_levels"
                try:
                    diff = self.decode_levels(diff)
                except MalformedFrame as exc:  # its ids were fine, its levels are not: a hole
                    return out + self._reset(
                        BookResetReason.SEQUENCE_GAP, self.rule.received(diff), None,
                        f"buffered diff with unusable levels: {exc}", keep=None,
                    )  # fmt: skip
            out += self._apply(diff)
            if self.state is not SyncState.LIVE:
                return out
        return out

    def invalidate(self, reason: BookResetReason, detail: str) -> list[Output]:
        """Drop the book because its stream broke (a reconnect): a marker if it was live."""
        was_live = self.state is SyncState.LIVE
        self._buffer.clear()
        out = self._reset(reason, None, None, detail, keep=None)
        return out if was_live else [NeedSnapshot()]

    def _apply(self, diff: DepthDiff) -> list[Output]:
        self.book.apply(diff.bids, diff.asks)
        return self.applied(diff)

    def applied(self, diff: DepthDiff) -> list[Output]:
        """``diff`` (which continues the book) is in the book now: keep it as the previous diff
        and check the book. The compiled path calls this when its diff crossed the book."""
        self._previous = diff
        if self.book.crossed():
            bid, ask = self.book.best_bid(), self.book.best_ask()
            return self._reset(
                BookResetReason.CROSSED_BOOK, None, diff.last_id, f"best bid {bid} >= best ask {ask}", keep=None
            )
        return [PublishDiff(diff)]

    def _reset(
        self, reason: BookResetReason, expected: int | None, received: int | None, detail: str, keep: DepthDiff | None
    ) -> list[Output]:
        self.counters.resets += 1
        self.state = SyncState.AWAITING_SNAPSHOT
        self.book.clear()
        self._previous = None
        if keep is not None:
            self._buffer.append(keep)  # the diff that showed the gap may bridge the next snapshot
        return [Reset(reason, expected, received, detail), NeedSnapshot()]
