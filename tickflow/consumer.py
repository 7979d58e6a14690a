"""Reading events back: from the beginning, the end, an offset, or a timestamp.

``EventConsumer`` assigns partitions itself (no consumer group, nothing committed), which is
what analytics jobs and replays want: a position in history, read in order per partition. Each
record is decoded by the codec into its typed event; a record that cannot be decoded raises its
typed ``CodecError`` (with topic/partition/offset noted) or, with ``on_error="skip"``, is
counted and skipped.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, Consumer, KafkaException, TopicPartition
from confluent_kafka import KafkaError as RdKafkaError

from tickflow.codec import AvroCodec
from tickflow.config import KafkaSettings
from tickflow.errors import BrokerUnavailable, CodecError, KafkaError, OffsetOutOfRange, UnknownTopic
from tickflow.events import Event

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
    """Reads and decodes events from one or more topics, from a chosen position."""

    def __init__(
        self,
        settings: KafkaSettings,
        codec: AvroCodec,
        topics: list[str],
        start: StartAt | None = None,
        *,
        partitions: list[int] | None = None,
        on_error: Literal["raise", "skip"] = "raise",
        config: dict[str, Any] | None = None,
        timeout: float = 10.0,
    ) -> None:
        self.codec = codec
        self.on_error = on_error
        self.stats = ConsumerStats()
        self._timeout = timeout
        conf = {
            **settings.client_config(),
            # A group id is required by librdkafka even with manual assignment; nothing is committed.
            "group.id": f"tickflow-reader-{uuid.uuid4().hex[:12]}",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "error",
            "enable.partition.eof": True,
            "fetch.wait.max.ms": 100,
            **(config or {}),
        }
        self._consumer = Consumer(conf)
        self._assignment = self._resolve(topics, start or StartAt.beginning(), partitions)
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
        try:
            return self._consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=self._timeout)
        except KafkaException as exc:
            raise BrokerUnavailable(f"cannot read offsets of {topic}[{partition}]: {exc}") from exc

    def _resolve(self, topics: list[str], start: StartAt, only: list[int] | None) -> list[TopicPartition]:
        assignment = []
        for topic, parts in self._partitions_of(topics).items():
            for p in parts:
                if only is not None and p not in only:
                    continue
                assignment.append(self._start_offset(topic, p, start))
        return assignment

    def _start_offset(self, topic: str, partition: int, start: StartAt) -> TopicPartition:
        if start.kind == "beginning":
            return TopicPartition(topic, partition, OFFSET_BEGINNING)
        if start.kind == "end":
            return TopicPartition(topic, partition, OFFSET_END)
        low, high = self.watermarks(topic, partition)
        if start.kind == "offset":
            wanted = start.offset.get(partition, high) if isinstance(start.offset, dict) else start.offset
            assert wanted is not None
            if not low <= wanted <= high:
                raise OffsetOutOfRange(
                    f"offset {wanted} is outside {topic}[{partition}], which holds offsets {low}..{high - 1}"
                    + (" (empty)" if low == high else "")
                )
            return TopicPartition(topic, partition, wanted)
        # timestamp: the first record at or after it; past the last record -> the end.
        assert start.timestamp_ms is not None
        try:
            (found,) = self._consumer.offsets_for_times(
                [TopicPartition(topic, partition, start.timestamp_ms)], timeout=self._timeout
            )
        except KafkaException as exc:
            raise BrokerUnavailable(f"cannot look up offsets by time on {topic}[{partition}]: {exc}") from exc
        return TopicPartition(topic, partition, found.offset if found.offset >= 0 else high)

    @property
    def assignment(self) -> list[TopicPartition]:
        return list(self._assignment)

    # --- reading -------------------------------------------------------------------------------

    def poll(self, timeout: float = 1.0) -> ConsumedEvent | None:
        """The next event, or ``None`` if none arrived within ``timeout`` (or a partition ended)."""
        msg = self._consumer.poll(timeout)
        if msg is None:
            return None
        err = msg.error()
        if err is not None:
            if err.code() == RdKafkaError._PARTITION_EOF:
                return None
            if err.code() == RdKafkaError.OFFSET_OUT_OF_RANGE:
                raise OffsetOutOfRange(f"{msg.topic()}[{msg.partition()}]: {err.str()}")
            if err.fatal() or not err.retriable():
                raise KafkaError(f"consuming {msg.topic()}[{msg.partition()}] failed: {err.str()}")
            log.warning("Kafka consumer error (retrying): %s", err.str())
            return None
        value = msg.value()
        try:
            if value is None:
                raise CodecError("record has no value (a tombstone)")
            event = self.codec.decode(value)
        except CodecError as exc:
            where = f"{msg.topic()}[{msg.partition()}]@{msg.offset()}"
            self.stats.last_error = f"{where}: {exc}"
            if self.on_error == "raise":
                exc.add_note(f"record {where}")
                raise
            self.stats.skipped += 1
            name = type(exc).__name__
            self.stats.skipped_by_type[name] = self.stats.skipped_by_type.get(name, 0) + 1
            log.warning("skipped undecodable record %s: %s", where, exc)
            return None
        self.stats.consumed += 1
        _, ts = msg.timestamp()
        return ConsumedEvent(msg.topic(), msg.partition(), msg.offset(), ts, msg.key(), event)

    def read_to_end(self, idle_timeout: float = 10.0) -> Iterator[ConsumedEvent]:
        """Every event from the start position up to the end offsets as they are when called.

        Raises ``KafkaError`` if no record arrives for ``idle_timeout`` seconds while some
        partition has not reached its end offset.
        """
        targets = {(tp.topic, tp.partition): self.watermarks(tp.topic, tp.partition)[1] for tp in self._assignment}
        pending = {tp for tp, high in targets.items() if self._position(tp) < high}
        idle_since = time.monotonic()
        while pending:
            msg = self.poll(min(idle_timeout, 1.0))
            if msg is None:
                # Partition EOF, a skipped record, or nothing yet: re-check positions.
                reached = {tp for tp in pending if self._position(tp) >= targets[tp]}
                if reached:
                    pending -= reached
                    idle_since = time.monotonic()
                elif time.monotonic() - idle_since > idle_timeout:
                    raise KafkaError(f"no record for {idle_timeout:.0f}s before the end offsets of {sorted(pending)}")
                continue
            idle_since = time.monotonic()
            tp = (msg.topic, msg.partition)
            if msg.offset < targets[tp]:
                yield msg
            if msg.offset + 1 >= targets[tp]:
                pending.discard(tp)

    def _position(self, tp: tuple[str, int]) -> int:
        """The offset of the next record this consumer will read from ``tp``."""
        (pos,) = self._consumer.position([TopicPartition(tp[0], tp[1])])
        if pos.offset >= 0:
            return pos.offset
        # Nothing fetched yet: the assignment's start offset.
        start = next(a.offset for a in self._assignment if (a.topic, a.partition) == tp)
        if start >= 0:
            return start
        low, high = self.watermarks(*tp)
        return low if start == OFFSET_BEGINNING else high

    def close(self) -> None:
        self._consumer.close()

    def __enter__(self) -> EventConsumer:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
