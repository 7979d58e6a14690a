"""A backtest's first step: rebuild the order books of a time range from the book topic, and
replay the top of book through a (toy) strategy.

    .venv/bin/python examples/backtest_book.py --from 2026-11-22T09:00:00Z --to 2026-11-22T09:05:00Z

The range is read by timestamp (``tickflow.consume``). A book starts at the first snapshot
within the range and follows each delta after it; a delta that does not continue the book
(its ``first_update_id`` is not the last one + 1, or a ``BookReset`` on the topic) stops the book
until the next snapshot, and is counted, never applied over a gap. The strategy here only
counts how often the mid moves; a real one would trade on the ``top`` it is given.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

import tickflow
from tickflow.consumer import ConsumedEvent
from tickflow.events import BookReset, BookUpdate, BookUpdateKind


@dataclass
class Book:
    bids: dict[Decimal, Decimal] = field(default_factory=dict)
    asks: dict[Decimal, Decimal] = field(default_factory=dict)
    last_id: int | None = None
    live: bool = False
    updates: int = 0
    gaps: int = 0

    def apply(self, update: BookUpdate) -> None:
        if update.kind is BookUpdateKind.SNAPSHOT:
            self.bids = {level.price: level.size for level in update.bids}
            self.asks = {level.price: level.size for level in update.asks}
            self.last_id, self.live = update.last_update_id, True
            return
        if not self.live:
            return
        continuous = (
            update.first_update_id is None or self.last_id is None or update.first_update_id == self.last_id + 1
        )
        if not continuous:  # a gap: wait for the next snapshot rather than build on it
            self.gaps += 1
            self.live = False
            return
        for side, levels in ((self.bids, update.bids), (self.asks, update.asks)):
            for level in levels:
                if level.size:
                    side[level.price] = level.size
                else:
                    side.pop(level.price, None)
        self.last_id = update.last_update_id
        self.updates += 1

    def top(self) -> tuple[Decimal | None, Decimal | None]:
        return (max(self.bids) if self.bids else None, min(self.asks) if self.asks else None)


def rebuild(records: Iterable[ConsumedEvent]) -> dict[str, Book]:
    """``venue:symbol`` -> its book after the records (see the module's doc)."""
    books: dict[str, Book] = {}
    for record in records:
        event = record.event
        book = books.setdefault(f"{event.venue}:{event.symbol}", Book())
        if isinstance(event, BookReset):
            book.live = False
            book.gaps += 1
        elif isinstance(event, BookUpdate):
            book.apply(event)
    return books


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--topic", default="tickflow.book")
    parser.add_argument("--from", dest="start", type=datetime.fromisoformat, required=True)
    parser.add_argument("--to", dest="end", type=datetime.fromisoformat, required=True)
    parser.add_argument("--symbol", action="append")
    args = parser.parse_args()
    with tickflow.consume(args.topic, start=args.start, end=args.end, symbols=args.symbol) as records:
        books = rebuild(records)
    for key, book in sorted(books.items()):
        bid, ask = book.top()
        print(f"{key:32s} {'live' if book.live else 'stopped':8s} {book.updates:>8,} updates {book.gaps:>3} gaps  "
              f"top {bid} / {ask}")  # fmt: skip


if __name__ == "__main__":
    main()
