"""Reading events back: from the beginning, the end, an offset, or a timestamp, up to an end
offset, an end timestamp, the end as it is now, or forever.

``EventConsumer`` assigns partitions itself (no consumer group, nothing committed), which is
what analytics jobs and replays want: a position in history, read in order per partition. Each
record is decoded by the codec into its typed event; a record that cannot be decoded raises its
typed ``CodecError`` (with topic/partition/offset noted) or, with ``on_error="skip"``, is
counted and skipped.

Ranges are Kafka's: a timestamp stands for the first offset whose record timestamp is at or
after it (the broker's time index, ``offsets_for_times``), so reading from timestamp ``a`` to
timestamp ``b`` reads exactly the offsets from ``a``'s to ``b``'s, end excluded, in every
partition. On topics stamped by the broker (``LogAppendTime``) that is every record with
``a <= timestamp < b``; on topics stamped by producers it is the same as long as each
partition's timestamps do not go back.
"""

from __future__ import annotations

import gc
import logging
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from confluent_kafka import Consumer, KafkaException, Message, TopicPartition
from confluent_kafka import KafkaError as RdKafkaError

from tickflow.codec import AvroCodec
from tickflow.config import KafkaSettings
from tickflow.errors import BrokerUnavailable, CodecError, KafkaError, OffsetOutOfRange, UnknownTopic
from tickflow.events import Event
from tickflow.kafka_retry import ask_until
from tickflow.kafka_select import select as _select

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StartAt:
    """Where to start reading. Build with ``beginning()``, ``end()``, ``offset()`` or ``timestamp()``."""

    kind: Literal["beginning", "end", "offset", "timestamp"]
    #: For ``offset``: one offset for every partition, or a mapping partition -> offset.
    offset: int | dict[int, int] | None = None
    #: For ``timestamp``: milliseconds since the epoch (Kafka record timestamps are in ms).
    timestamp_ms: int | None = None

    @classmethod
    def beginning(cls) -> StartAt:
        return cls("beginning")

    @classmethod
    def end(cls) -> StartAt:
        return cls("end")

    @classmethod
    def at_offset(cls, offset: int | dict[int, int]) -> StartAt:
        return cls("offset", offset=offset)

    @classmethod
    def at_timestamp(cls, timestamp_ms: int) -> StartAt:
        return cls("timestamp", timestamp_ms=timestamp_ms)


@dataclass(frozen=True)
class EndAt:
    """Where to stop reading (that offset or timestamp excluded). Build with ``now()`` (the end
    offsets when reading starts), ``at_offset()``, ``at_timestamp()`` or ``never()``."""

    kind: Literal["now", "offset", "timestamp", "never"]
    #: For ``offset``: one offset for every partition, or a mapping partition -> offset.
    offset: int | dict[int, int] | None = None
    #: For ``timestamp``: milliseconds since the epoch.
    timestamp_ms: int | None = None

    @classmethod
    def now(cls) -> EndAt:
        return cls("now")

    @classmethod
    def never(cls) -> EndAt:
        return cls("never")

    @classmethod
    def at_offset(cls, offset: int | dict[int, int]) -> EndAt:
        return cls("offset", offset=offset)

    @classmethod
    def at_timestamp(cls, timestamp_ms: int) -> EndAt:
        return cls("timestamp", timestamp_ms=timestamp_ms)

    @property
    def bounded(self) -> bool:
        return self.kind != "never"


#: A partition's end: an offset (excluded), or a timestamp not reached yet by any record (the
#: first record at or after it ends the partition), or ``None`` (never).
_End = int | tuple[Literal["ts"], int] | None


@dataclass(frozen=True)
class ConsumedEvent:
    topic: str
    partition: int
    offset: int
    #: Kafka record timestamp, milliseconds since the epoch.
    timestamp_ms: int
    key: bytes | None
    event: Event


@dataclass
class ConsumerStats:
    consumed: int = 0
    skipped: int = 0
    last_error: str | None = None
    skipped_by_type: dict[str, int] = field(default_factory=dict)


class EventConsumer:
    """Reads and decodes events from one or more topics, from ``start`` up to ``end``.

    ``symbols`` keeps only the records of those instruments (by the record key, ``venue:symbol``:
    ``"BTC-USDT"`` on every venue, ``"binance-spot:BTC-USDT"`` on one), without decoding the
    others. Iterating yields every event in the range (forever if ``end`` is ``never``);
    ``batches`` yields the raw records, for readers that decode them themselves (``arrow.py``).
    """

    def __init__(
        self,
        settings: KafkaSettings,
        codec: AvroCodec,
        topics: list[str],
        start: StartAt | None = None,
        *,
        end: EndAt | None = None,
        partitions: list[int] | None = None,
        symbols: list[str] | None = None,
        on_error: Literal["raise", "skip"] = "raise",
        config: dict[str, Any] | None = None,
        timeout: float = 10.0,
    ) -> None:
        self.codec = codec
        self.on_error = on_error
        self.stats = ConsumerStats()
        self._timeout = timeout
        self._keep = _key_filter(symbols)
        self._given = (settings, symbols, config)  # for ``again``
        conf = {
            **settings.client_config(),
            # A group id is required by librdkafka even with manual assignment; nothing is committed.
            "group.id": f"tickflow-reader-{uuid.uuid4().hex[:12]}",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "error",
            "enable.partition.eof": True,
            "fetch.wait.max.ms": 100,
            # Prefetch deeper than librdkafka's 100,000 records a partition: a bulk read of
            # history (replays, tables) otherwise waits on fetches about half of the time
            # (bench/replay_bench.py: 196k -> 520k records/s, one core). Memory stays bounded by
            # ``queued.max.messages.kbytes`` (64 MiB).
            "queued.min.messages": 1_000_000,
            **(config or {}),
        }
        self._consumer = Consumer(conf)
        self._assignment: list[TopicPartition] = []
        self._ends: dict[tuple[str, int], _End] = {}
        self._resolve(topics, start or StartAt.beginning(), end or EndAt.never(), partitions)
        self._consumer.assign(self._assignment)

    # --- positions -----------------------------------------------------------------------------

    def _partitions_of(self, topics: list[str]) -> dict[str, list[int]]:
        try:
            metadata = self._consumer.list_topics(timeout=self._timeout)
        except KafkaException as exc:
            raise BrokerUnavailable(f"cannot read cluster metadata: {exc}") from exc
        result = {}
        for topic in topics:
            meta = metadata.topics.get(topic)
            if meta is None or meta.error is not None:
                known = ", ".join(sorted(t for t in metadata.topics if not t.startswith("_")))
                raise UnknownTopic(f"topic {topic!r} does not exist. Topics on this cluster: {known}")
            result[topic] = sorted(meta.partitions)
        return result

    def watermarks(self, topic: str, partition: int) -> tuple[int, int]:
        """(low, high): the first offset still held and the offset the next record will get."""
        tp = TopicPartition(topic, partition)
        return self._asking(f"the offsets of {topic}[{partition}]",
                            lambda timeout: self._consumer.get_watermark_offsets(tp, timeout=timeout))  # fmt: skip

    def _asking(self, what: str, ask: Callable[[float], Any]) -> Any:
        """``ask(timeout)``, asked again while the broker cannot answer yet, within the consumer's
        timeout. Just after a broker is lost, its partitions answer "not leader" until a new
        leader is elected: a reader opened then waits for that instead of failing."""
        try:
            return ask_until(ask, what, within=self._timeout, attempt=self._timeout)
        except KafkaException as exc:
            raise BrokerUnavailable(f"cannot read {what}: {exc}") from exc

    def _resolve(self, topics: list[str], start: StartAt, end: EndAt, only: list[int] | None) -> None:
        """The assignment (each partition at its start offset) and each partition's end, from one
        look at its watermarks."""
        for topic, parts in self._partitions_of(topics).items():
            for p in parts:
                if only is not None and p not in only:
                    continue
                low, high = self.watermarks(topic, p)
                tp = self._start_offset(topic, p, start, low, high)
                self._assignment.append(tp)
                self._ends[(topic, p)] = self._end_offset(tp, end, low, high)

    def _start_offset(self, topic: str, partition: int, start: StartAt, low: int, high: int) -> TopicPartition:
        # The beginning and the end as the offsets they are now: librdkafka resolving its logical
        # offsets itself took 0.3-0.6 s before the first record (bench/replay_bench.py). Should
        # retention delete the first records in the meantime, reading them fails with
        # ``OffsetOutOfRange`` rather than starting later than asked without a word.
        if start.kind == "beginning":
            return TopicPartition(topic, partition, low)
        if start.kind == "end":
            return TopicPartition(topic, partition, high)
        if start.kind == "offset":
            wanted = start.offset.get(partition, high) if isinstance(start.offset, dict) else start.offset
            assert wanted is not None
            if not low <= wanted <= high:
                raise OffsetOutOfRange(f"offset {wanted} is outside {topic}[{partition}], {_holds(low, high)}")
            return TopicPartition(topic, partition, wanted)
        # timestamp: the first record at or after it; past the last record -> the end.
        assert start.timestamp_ms is not None
        found = self._offset_for_time(topic, partition, start.timestamp_ms)
        if found == low and low > 0:
            # Records before ``low`` were deleted: if they may have been in the range, say so
            # rather than start silently later than asked.
            first = self._timestamp_at(topic, partition, low)
            if first is not None and first > start.timestamp_ms:
                raise OffsetOutOfRange(
                    f"{_iso(start.timestamp_ms)} is before what {topic}[{partition}] still holds (retention): "
                    f"its oldest record is offset {low} at {_iso(first)}; {_holds(low, high)}"
                )
        return TopicPartition(topic, partition, high if found is None else found)

    def _offset_for_time(self, topic: str, partition: int, timestamp_ms: int) -> int | None:
        """The first offset whose record timestamp is at or after ``timestamp_ms`` (None: none yet)."""
        wanted = [TopicPartition(topic, partition, timestamp_ms)]
        (found,) = self._asking(f"the offsets by time of {topic}[{partition}]",
                                lambda timeout: self._consumer.offsets_for_times(wanted, timeout=timeout))  # fmt: skip
        return found.offset if found.offset >= 0 else None

    def _timestamp_at(self, topic: str, partition: int, offset: int) -> int | None:
        """The timestamp of the record at ``offset`` (read with this consumer before its assignment)."""
        self._consumer.assign([TopicPartition(topic, partition, offset)])
        try:
            deadline = time.monotonic() + self._timeout
            while time.monotonic() < deadline:
                msg = self._consumer.poll(0.5)
                if msg is not None and msg.error() is None:
                    return msg.timestamp()[1]
            return None
        finally:
            self._consumer.unassign()

    def _end_offset(self, tp: TopicPartition, end: EndAt, low: int, high: int) -> _End:
        if end.kind == "never":
            return None
        if end.kind == "now":
            return high
        if end.kind == "offset":
            wanted = end.offset.get(tp.partition, high) if isinstance(end.offset, dict) else end.offset
            assert wanted is not None
            if wanted < low:
                raise OffsetOutOfRange(f"end offset {wanted} is before {tp.topic}[{tp.partition}], {_holds(low, high)}")
            if tp.offset >= 0 and wanted < tp.offset:
                raise OffsetOutOfRange(f"end offset {wanted} is before the start offset {tp.offset}")
            return wanted
        assert end.timestamp_ms is not None
        return self._end_for_time(tp.topic, tp.partition, end.timestamp_ms, high)

    def _end_for_time(self, topic: str, partition: int, timestamp_ms: int, high: int) -> _End:
        """The end offset of a range ending at ``timestamp_ms``: the first record at or after it;
        if there is none, the end of the partition once that time has passed (records come
        stamped later), else the time itself (the first record at or after it will end it)."""
        found = self._offset_for_time(topic, partition, timestamp_ms)
        if found is not None:
            return found
        return high if timestamp_ms <= time.time() * 1000 else ("ts", timestamp_ms)

    def again(self) -> EventConsumer:
        """A new consumer of the same range: the same partitions, from the same offsets to the
        same ends (as resolved when this one was made: "now" is not moved)."""
        settings, symbols, config = self._given
        topics = sorted({tp.topic for tp in self._assignment})
        other = EventConsumer(settings, self.codec, topics, StartAt.beginning(), symbols=symbols,
                              on_error=self.on_error, config=config, timeout=self._timeout)  # fmt: skip
        other._assignment = [TopicPartition(tp.topic, tp.partition, tp.offset) for tp in self._assignment]
        other._ends = dict(self._ends)
        other._consumer.assign(other._assignment)
        return other

    @property
    def assignment(self) -> list[TopicPartition]:
        return list(self._assignment)

    @property
    def bounded(self) -> bool:
        """Whether reading ends (every partition has an end)."""
        return all(end is not None for end in self._ends.values())

    # --- reading -------------------------------------------------------------------------------

    def poll(self, timeout: float = 1.0) -> ConsumedEvent | None:
        """The next event, or ``None`` if none arrived within ``timeout`` (or a partition ended).
        Unlike iterating, it reads past the end position and does not filter by symbol."""
        msg = self._consumer.poll(timeout)
        if msg is None or not self._usable(msg):
            return None
        return self._decode(msg)

    def _usable(self, msg: Message) -> bool:
        """Whether ``msg`` is a record (not a partition's end, not a retried error)."""
        err = msg.error()
        if err is None:
            return True
        if err.code() == RdKafkaError._PARTITION_EOF:
            return False
        if err.code() == RdKafkaError.OFFSET_OUT_OF_RANGE:
            raise OffsetOutOfRange(f"{msg.topic()}[{msg.partition()}]: {err.str()}")
        if err.fatal() or not err.retriable():
            raise KafkaError(f"consuming {msg.topic()}[{msg.partition()}] failed: {err.str()}")
        log.warning("Kafka consumer error (retrying): %s", err.str())
        return False

    def _decode(self, msg: Message) -> ConsumedEvent | None:
        """The record's event; ``None`` if it was skipped (``on_error="skip"``)."""
        value = msg.value()
        try:
            if value is None:
                raise CodecError("record has no value (a tombstone)")
            event = self.codec.decode(value)
        except CodecError as exc:
            self.skip(msg, exc)
            return None
        self.stats.consumed += 1
        return ConsumedEvent(msg.topic(), msg.partition(), msg.offset(), msg.timestamp()[1], msg.key(), event)

    def skip(self, msg: Message, exc: CodecError) -> None:
        """Counts ``msg`` as undecodable and carries on, or raises ``exc`` (``on_error="raise"``)."""
        where = f"{msg.topic()}[{msg.partition()}]@{msg.offset()}"
        self.stats.last_error = f"{where}: {exc}"
        if self.on_error == "raise":
            exc.add_note(f"record {where}")
            raise exc
        self.stats.skipped += 1
        name = type(exc).__name__
        self.stats.skipped_by_type[name] = self.stats.skipped_by_type.get(name, 0) + 1
        log.warning("skipped undecodable record %s: %s", where, exc)

    def __iter__(self) -> Iterator[ConsumedEvent]:
        """Every event from the start position to the end (forever if there is none)."""
        return self._events()

    def _events(self, idle_timeout: float | None = None) -> Iterator[ConsumedEvent]:
        for batch in self.batches(idle_timeout=idle_timeout):
            for msg in batch:
                event = self._decode(msg)
                if event is not None:
                    yield event

    def batches(self, size: int = 10_000, idle_timeout: float | None = None) -> Iterator[list[Message]]:
        """The records in the range, undecoded, in lists of up to ``size`` as they arrive.

        Ends when every partition has reached its end. ``idle_timeout``: raise ``KafkaError`` if
        no record arrives for that many seconds while a partition has not reached its end
        (``None``: wait as long as it takes).
        """
        pending = {tp: end for tp, end in self._ends.items() if not self._reached(tp, end)}
        self._pause([tp for tp in self._ends if tp not in pending and self._ends[tp] is not None])
        unbounded = any(end is None for end in pending.values())
        idle_since = time.monotonic()
        try:
            while pending or unbounded:
                # Whatever has arrived, without waiting for ``size`` records (``consume(n, timeout)``
                # waits for n or the timeout); if nothing has, wait for the next one.
                messages = self._consumer.consume(size, 0)
                if not messages:
                    first = self._consumer.poll(0.2)
                    messages = [first, *self._consumer.consume(size - 1, 0)] if first is not None else []
                batch, finished, errors = _select(messages, pending, self._keep)
                for msg in errors:
                    self._usable(msg)  # raises for what is not a partition's end or a retried error
                self._pause(finished)
                if messages:
                    idle_since = time.monotonic()
                else:
                    # Nothing arrived: an end time may have passed with no record to show it ...
                    for tp, end in list(pending.items()):
                        if isinstance(end, tuple) and end[1] <= time.time() * 1000:
                            pending[tp] = self._ends[tp] = self._end_for_time(*tp, end[1], self.watermarks(*tp)[1])
                    # ... and a partition may be at its end with no record to show it.
                    for tp in [tp for tp, end in pending.items() if end is not None and self._reached(tp, end)]:
                        self._finish(pending, tp)
                    if idle_timeout is not None and time.monotonic() - idle_since > idle_timeout and pending:
                        late = sorted(pending)
                        raise KafkaError(f"no record for {idle_timeout:.0f}s before the end offsets of {late}")
                if batch:
                    yield batch

        finally:
            # Partitions paused at their end fetch again: ``poll`` reads on past the range.
            self._resume(list(self._ends))

    def _finish(self, pending: dict[tuple[str, int], _End], tp: tuple[str, int]) -> None:
        pending.pop(tp, None)
        self._pause([tp])

    def _pause(self, tps: list[tuple[str, int]]) -> None:
        if tps:
            self._consumer.pause([TopicPartition(topic, partition) for topic, partition in tps])

    def _resume(self, tps: list[tuple[str, int]]) -> None:
        if tps:
            self._consumer.resume([TopicPartition(topic, partition) for topic, partition in tps])

    def _reached(self, tp: tuple[str, int], end: _End) -> bool:
        return end is not None and not isinstance(end, tuple) and self._position(tp) >= end

    def read_to_end(self, idle_timeout: float = 10.0) -> Iterator[ConsumedEvent]:
        """Every event from the start position up to the end offsets as they are when called.

        Raises ``KafkaError`` if no record arrives for ``idle_timeout`` seconds while some
        partition has not reached its end offset.
        """
        self._ends = {tp: self.watermarks(*tp)[1] for tp in self._ends}
        return self._events(idle_timeout)

    def _position(self, tp: tuple[str, int]) -> int:
        """The offset of the next record this consumer will read from ``tp``."""
        (pos,) = self._consumer.position([TopicPartition(tp[0], tp[1])])
        if pos.offset >= 0:
            return pos.offset
        return self.start_offset(*tp)  # nothing fetched yet

    def start_offset(self, topic: str, partition: int) -> int:
        """The offset reading starts at in a partition of the assignment."""
        return next(a.offset for a in self._assignment if (a.topic, a.partition) == (topic, partition))

    def end_offset(self, topic: str, partition: int) -> int | None:
        """The offset reading stops at (excluded) in a partition; ``None``: not known (never, or
        a timestamp no record has reached yet)."""
        end = self._ends[(topic, partition)]
        return end if isinstance(end, int) else None

    def close(self) -> None:
        self._consumer.close()

    def __enter__(self) -> EventConsumer:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


@contextmanager
def gc_paused() -> Iterator[None]:
    """Python's cyclic garbage collector off for a bulk read, as it was after. A read allocates
    a ``Message`` a record (tracked by the collector, and not in any cycle): at 500k a second
    the collector ran all the time, a quarter of a bulk read's CPU (py-spy,
    bench/replay_bench.py). Nothing is leaked: cycles made meanwhile are collected afterwards."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _key_filter(symbols: list[str] | None) -> Callable[[bytes | None], bool] | None:
    """A test on record keys (``venue:symbol``) for ``symbols`` (``SYMBOL`` or ``venue:SYMBOL``)."""
    if not symbols:
        return None
    exact = {s.encode() for s in symbols if ":" in s}
    bare = {s.encode() for s in symbols if ":" not in s}

    def keep(key: bytes | None) -> bool:
        return key is not None and (key in exact or key.rpartition(b":")[2] in bare)

    return keep


def _holds(low: int, high: int) -> str:
    return f"which holds offsets {low}..{high - 1}" if high > low else f"which is empty (next offset {high})"


def _iso(timestamp_ms: int) -> str:
    return datetime.fromtimestamp(timestamp_ms / 1000, UTC).isoformat(timespec="milliseconds")
