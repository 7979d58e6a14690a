"""The books in Faust table state, and the in-memory index the agent works on.

Two tables, both changelogged to compacted topics:

- ``book-levels``: one entry per (instrument, side, price) -> size. Why per level and not one
  entry per book: Faust writes every table assignment to the changelog, so a table of whole
  books would write the full book (thousands of levels) for each delta of a few. Keyed per
  level, a delta writes one record per level it really changes (``levels.Side.apply``), a
  snapshot one per level that differs from the book it replaces, a removal one tombstone; and
  compaction keeps the changelog at about the size of the books themselves. Plus the source
  positions (below), written after each batch's levels: how far the levels are, which can be
  ahead of the heads after a crash (``BookState.replaying``). (The other choice,
  a log of per-instrument deltas, would grow forever: compaction cannot fold deltas.)
- ``book-heads``: one entry per instrument -> ``BookHead`` (health, the venue's last ids, times),
  written for every record applied: continuity is checked against it after a restart. Plus one
  entry per source partition, ``@applied|topic|partition`` -> the last offset applied, written
  last in each batch (``resume.py``: a restart resumes exactly where the tables are).

The writes go through ``changelog.TableWriter`` a batch of source records at a time (the same
keys and values as ``table[key] = value``, far cheaper), so a level or head changed several
times within a batch is written once.

Faust sends a table change to the changelog partition of the record being processed, so both
tables are partitioned exactly like the book topic: the levels of ``venue:symbol`` live in its
partition whatever their key hashes to.

The agent reads and changes ``Book`` objects in memory (a dict and a heap per side: the best
price without scanning); the tables are only written, and read back in one pass when Faust has
recovered them (start, rebalance).
"""

from __future__ import annotations

import logging
from typing import Any

import msgspec
from faust.types import TP

from processors.book import Applied, Book, BookHead
from processors.changelog import LatestPerBatch, TableWriter
from processors.resume import SourcePositions, position_key, split_positions
from processors.scaled import parse_plain, plain

log = logging.getLogger(__name__)

_head_encoder = msgspec.msgpack.Encoder()
_head_decoder = msgspec.msgpack.Decoder(BookHead)
_BID, _ASK = "b", "a"


class BookState:
    """Books by instrument key (``venue:symbol``), in memory and in the two tables."""

    def __init__(self, app: Any, store: str, partitions: int, writer: TableWriter) -> None:
        self.writer = writer
        options = {"partitions": partitions, "store": store, "key_type": bytes, "value_type": bytes}
        self.levels = app.Table("book-levels", help="book levels: instrument|side|price -> size", **options)
        self.heads = app.Table("book-heads", help="book heads: instrument -> BookHead (msgpack)", **options)
        writer.order(self.levels, self.heads)  # a head never lands in Kafka without its levels
        writer.encode_values(self.levels, _size_text)  # sizes (scale 18) made text once per batch
        self.books: dict[str, Book] = {}
        #: Per instrument, the table key of each level (bids, asks) by price.
        self._keys: dict[str, tuple[dict[int, bytes], dict[int, bytes]]] = {}
        #: The heads changed since the last flush, encoded once each when it is written.
        self._heads = LatestPerBatch[Book](writer, self.heads, lambda book: _head_encoder.encode(book.head))
        self.positions = SourcePositions(app, "books")
        #: Per source partition, the last offset whose changes the levels table holds (read back
        #: with the tables): records up to it are applied again over levels that have them.
        self.levels_applied: dict[TP, int] = {}
        #: The tables have been recovered and the books loaded at least once (``/books`` says so:
        #: before that, the web server is up but the books are not there yet).
        self.recovered = False
        # Faust finishes each table's recovery in its own task, then calls that table's callbacks:
        # reloading after each of the two means the last reload sees both tables complete. The
        # agent's streams resume only after all of them.
        self.levels.on_recover(self.reload)
        self.heads.on_recover(self.reload)

    def get(self, instrument: str) -> Book | None:
        return self.books.get(instrument)

    def add(self, instrument: str, book: Book) -> None:
        self.books[instrument] = book

    def write(self, instrument: str, partition: int, book: Book, applied: Applied) -> None:
        """Write what one record of ``partition`` changed (sent with the batch's ``writer.flush()``)."""
        changes = self.writer.changes(self.levels, partition)
        keys = self._keys.get(instrument)
        if keys is None:
            keys = self._keys[instrument] = ({}, {})
        for side, side_keys, side_changes in ((_BID, keys[0], applied.bids), (_ASK, keys[1], applied.asks)):
            for price, size in side_changes:
                # Level keys: ``venue:symbol|b|65000.01``, the price in plain notation without
                # trailing zeros; made once per level (a level changes many times).
                key = side_keys.get(price)
                if key is None:
                    key = side_keys[price] = f"{instrument}|{side}|{plain(price)}".encode()
                if size is None:
                    del side_keys[price]
                    changes[key] = None
                else:
                    changes[key] = size  # ``_size_text`` at the flush: the batch's last size only
        if applied.head_changed:
            self._heads.changed(partition, instrument, book)

    def write_heads(self) -> None:
        """Hand the heads changed since the last call to the writer (before each flush)."""
        self._heads.write()

    def write_positions(self, tps: set[TP]) -> None:
        """Write the last offset applied of each of ``tps``: after the batch's heads, in their
        changelog partition (a record batch: it lands with them), and after its levels too."""
        applied = self.positions.applied
        for tp in tps:
            key = position_key(tp)
            value = str(applied[tp]).encode()
            self.writer.set(self.levels, tp.partition, key, value)
            self.writer.set(self.heads, tp.partition, key, value)

    def replaying(self, tp: TP, offset: int) -> bool:
        """Whether the levels already hold this record's changes though the heads do not (the
        levels of a batch land before its heads: a crash between the two leaves them ahead)."""
        return offset <= self.levels_applied.get(tp, -1)

    async def reload(self) -> None:
        """Rebuild the in-memory books from the tables (Faust calls this once they are recovered)."""
        positions, heads = split_positions(self.heads.items())
        books = {instrument: Book(_head_decoder.decode(value)) for instrument, value in heads}
        levels = 0
        levels_applied, entries = split_positions(self.levels.items())
        for key, value in entries:
            instrument, side, price = key.rsplit("|", 2)
            book = books.get(instrument)
            if book is None:
                continue  # levels without a head: never written that way; ignore rather than guess
            size = parse_plain(value.decode() if isinstance(value, bytes) else value)
            (book.bids if side == _BID else book.asks).load(parse_plain(price), size)
            levels += 1
        self.books = books
        self._keys.clear()
        self._heads.clear()
        self.positions.load(positions)
        self.levels_applied = levels_applied
        self.recovered = True
        log.info("book state loaded from the tables: %d books, %d levels, applied up to %s", len(books), levels,
                 {f"{tp.topic}[{tp.partition}]": offset for tp, offset in sorted(positions.items())})  # fmt: skip


def _size_text(size: int) -> bytes:
    """A level's table value: its size in plain decimal text."""
    return plain(size).encode()
