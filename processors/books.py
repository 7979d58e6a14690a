"""The order-book agent: ``tickflow.book`` in, validated books in table state, best bid/offer
on every change and top-N depth at an interval out, the books served over HTTP.

Records are applied in partition order, one instrument per key, by ``Book.apply``, in batches.
The agent takes a partition's fetched records at a time (a ``RecordBatch``, ``consumer.py``: one
event for the lot, not one per record through Faust's stream, which cost more than the book
logic), decodes them (``book_records.py``: the compiled reader, levels as integers at scale 18)
and applies them; what they changed (the tables and the best bid/offer topic, one
``TableWriter`` flush, ``changelog.py``) is written by group commit (``group_commit.py``: one
write in flight, the batch grows with the rate; ``BATCH_WAIT`` linger, ``BATCH_MAX`` records).
With the batch go the last offset applied of each partition, after its changes (``resume.py``:
a restart resumes exactly where the tables are, whatever Faust committed); the batch's records
are acknowledged once all of it is in Kafka, while the agent goes on with the next records.

Outputs:

- ``BookTop`` on the bbo topic whenever the best bid or offer (price, size) or the book's health
  changes, from the record that changed it;
- ``BookDepth`` on the depth topic every ``depth_interval`` seconds for each book that changed
  meanwhile (a timer: a depth record per delta would multiply the topic's volume for nothing);
- ``DeadLetter`` for a record that cannot be decoded, is not a book record, or is impossible.
"""

from __future__ import annotations

import logging
from typing import Any

import faust
from faust.types import TP
from prometheus_client import Histogram

from processors.book import Book, Top
from processors.book_records import BookRecord, book_reader, implausible
from processors.changelog import TableWriter
from processors.codec import AvroSerializer, Undecodable
from processors.group_commit import GroupCommit
from processors.outputs import book_depth, book_top, dead_letter
from processors.settings import ProcessorSettings
from processors.state import BookState
from tickflow.codec import AvroCodec
from tickflow.events import BookReset, Event

log = logging.getLogger(__name__)

#: Latency buckets (seconds): 1 ms to 10 s.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)


class BookAgent:
    """Declares the agent, its tables, topics, timer and web views on a Faust app."""

    def __init__(self, app: faust.App, codec: AvroCodec, settings: ProcessorSettings) -> None:
        self.app = app
        self.settings = settings
        self.writer = TableWriter(app)
        self.state = BookState(app, settings.store, settings.changelog_partitions(), self.writer)
        self.codec = codec
        self.read = book_reader(codec)
        # Delivered a partition's fetched records at a time, undecoded (``consumer.RecordBatch``).
        self.source = app.topic(settings.book_topic, key_serializer="raw", value_serializer="raw")
        app.batch_topics.add(settings.book_topic)  # type: ignore[attr-defined]
        self.bbo = self._output(codec, settings.bbo_topic)
        self.depth = self._output(codec, settings.depth_topic)
        self.dead_letters = self._output(codec, settings.dead_letter_topic)
        self._tops: dict[str, Top] = {}  # last best bid/offer published, per instrument
        self._changed: set[str] = set()  # instruments changed since the last depth records
        self.counters = {"records": 0, "dead_letters": 0, "bbo": 0, "depth": 0}
        self.latency = Histogram("tickflow_worker_bbo_latency_seconds",
                                 "Best bid/offer records: receive time to processed time", registry=None,
                                 buckets=LATENCY_BUCKETS)  # fmt: skip
        #: Records applied since the last write that go to the dead-letter topic: (record, error type, reason).
        self._dead: list[tuple[Any, str, str]] = []
        self.commit = GroupCommit("books", self.writer, self.state.positions, self.apply, self.prepare_write,
                                  settings.batch_max, settings.batch_wait)  # fmt: skip
        app.agent_settlers.append(self.commit.settle)  # type: ignore[attr-defined]
        app.source_positions.append(self.state.positions)  # type: ignore[attr-defined]
        app.agent(self.source, name="books")(self.commit.run)
        app.timer(settings.depth_interval, name="books.depth")(self.publish_depth)
        from processors.web import register_views

        register_views(app, self)

    def _output(self, codec: AvroCodec, topic: str) -> Any:
        return self.app.topic(topic, key_serializer="raw", value_serializer=AvroSerializer(codec, topic))

    async def apply(self, tp: TP, records: list[Any]) -> None:
        """Apply records of ``tp`` the tables do not hold yet (``GroupCommit`` admits them)."""
        read, dead = self.read, self._dead
        for record in records:
            problem = self.on_record(tp, record.offset, read(record.value))
            if problem is not None:
                dead.append((record, *problem))

    async def prepare_write(self, touched: set[TP]) -> None:
        """A write's first half (``GroupCommit.flush``): the dead letters delivered (before the
        positions that pass them), the heads and the positions of ``touched`` staged after the
        levels."""
        dead, self._dead = self._dead, []
        for message, error_type, reason in dead:
            await self._dead_letter(message, error_type, reason)
        self.state.write_heads()
        self.state.write_positions(touched)

    def on_record(self, tp: Any, offset: int, value: object) -> tuple[str, str] | None:
        """Apply one record; its changes and output wait for the batch's flush. Returns
        ``(error type, reason)`` for a record that goes to the dead-letter topic instead."""
        self.counters["records"] += 1
        if isinstance(value, Undecodable):
            return value.error_type, value.reason
        if not isinstance(value, (BookRecord, BookReset)):
            kind = type(value).__name__ if isinstance(value, Event) else repr(type(value))
            return "UnexpectedRecord", f"{kind} on the book topic"
        if isinstance(value, BookRecord) and (problem := implausible(value)) is not None:
            return "ImplausibleRecord", problem
        instrument = value.key
        book = self.state.get(instrument)
        if book is None:
            book = Book.of(value)
            self.state.add(instrument, book)
        was_live = book.live
        book.replaying = self.state.replaying(tp, offset)
        applied = book.apply(value)
        self.state.write(instrument, tp.partition, book, applied)
        if applied.skipped and was_live:
            log.debug("%s: %s", instrument, applied.skipped)
        if applied.head_changed:
            self._changed.add(instrument)
            top = book.top()
            if top != self._tops.get(instrument):
                self._tops[instrument] = top
                record = book_top(book, top)
                self.writer.send(self.settings.bbo_topic, instrument.encode(),
                                 self.codec.encode(record, self.settings.bbo_topic))  # fmt: skip
                self.counters["bbo"] += 1
                # Receive (the producer's clock) -> processed (ours): the agent's share of the
                # best bid/offer's latency, as Prometheus buckets (``/metrics``).
                self.latency.observe(max(0, record.processed_ts - record.receive_ts) / 1e6)
        return None

    async def publish_depth(self) -> None:
        changed, self._changed = self._changed, set()
        for instrument in sorted(changed):
            book = self.state.get(instrument)
            if book is not None:
                await self.depth.send(key=instrument.encode(), value=book_depth(book, self.settings.depth_levels))
                self.counters["depth"] += 1

    async def _dead_letter(self, message: Any, error_type: str, reason: str) -> None:
        self.counters["dead_letters"] += 1
        where = f"{message.topic}[{message.partition}]@{message.offset}"
        log.warning("dead letter %s: %s: %s", where, error_type, reason)
        record = dead_letter(message.topic, message.partition, message.offset, message.key, message.value,
                             error_type, reason)  # fmt: skip
        await (await self.dead_letters.send(key=message.topic.encode(), value=record))
