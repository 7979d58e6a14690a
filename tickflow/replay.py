"""Replays of a topic range (``tickflow replay``): to Parquet files, or re-published into another
topic at the original pace, faster, or as fast as possible.

Both read with ``EventConsumer`` (any start and end, a symbol filter) and report progress as
records are read. Exports write as they read (a record batch at a time, bounded memory), one
Parquet file per event type in the range (``<directory>/<EventType>.parquet``), with the
columns of ``tickflow/arrow.py``: exact decimals, the records' Kafka coordinates.

The target topic is created (with the source's partition count) if it does not exist. A
re-published record is the original's key and value bytes, unchanged (its exchange and
receive times are in it), with the original's Kafka timestamp, so that a consumer of the copy
sees what a consumer of the original saw; its schemas are registered under the target topic's
subjects too. Pacing follows the records' Kafka timestamps: at ``speed`` 1 a record goes out
as long after the first as it came after it originally; at ``speed`` 10, ten times sooner.
Partitions are read as they come, so the pace is that of each partition's order (records of
one instrument keep theirs: one instrument, one partition).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tickflow.arrow import ArrowBuilder
from tickflow.codec import AvroCodec
from tickflow.config import KafkaSettings
from tickflow.consumer import EventConsumer
from tickflow.errors import CodecError
from tickflow.producer import EventProducer

#: ``progress(records read so far)``: called after each batch.
Progress = Callable[[int], None]


@dataclass
class ReplayResult:
    read: int = 0
    written: int = 0
    skipped: int = 0
    #: Event type name -> (Parquet file, rows) for exports.
    files: dict[str, tuple[Path, int]] = field(default_factory=dict)
    seconds: float = 0.0


def range_size(consumer: EventConsumer) -> int | None:
    """Records in the range before any symbol filter (None: an end not known yet)."""
    total = 0
    for tp in consumer.assignment:
        end = consumer.end_offset(tp.topic, tp.partition)
        if end is None:
            return None
        total += max(0, end - consumer.start_offset(tp.topic, tp.partition))
    return total


def export_parquet(consumer: EventConsumer, directory: Path, progress: Progress | None = None) -> ReplayResult:
    """The range into ``directory/<EventType>.parquet`` files, written as it is read."""
    import pyarrow.parquet as pq

    directory.mkdir(parents=True, exist_ok=True)
    builder = ArrowBuilder(consumer.codec)
    writers: dict[str, pq.ParquetWriter] = {}
    result = ReplayResult()
    started = time.monotonic()

    def write(batches: list) -> None:
        for event_type, batch in batches:
            name = event_type.__name__
            if name not in writers:
                path = directory / f"{name}.parquet"
                writers[name] = pq.ParquetWriter(path, batch.schema, compression="zstd")
                result.files[name] = (path, 0)
            writers[name].write_batch(batch)
            path, rows = result.files[name]
            result.files[name] = (path, rows + batch.num_rows)
            result.written += batch.num_rows

    skipped = consumer.stats.skipped
    try:
        for count in builder.read(consumer):
            result.read += count
            write(builder.drain())
            if progress is not None:
                progress(result.read)
        write(builder.drain(final=True))
        result.skipped = consumer.stats.skipped - skipped
    finally:
        for writer in writers.values():
            writer.close()
    result.seconds = time.monotonic() - started
    return result


def ensure_target(settings: KafkaSettings, target: str, partitions: int) -> bool:
    """Creates ``target`` with ``partitions`` partitions (so that each key keeps its partition)
    if it does not exist; an existing topic is left as it is. Returns whether it was created."""
    from tickflow.admin import admin_client, ensure_topics
    from tickflow.topics import TopicSpec

    if target in admin_client(settings).list_topics(timeout=30).topics:
        return False
    ensure_topics(settings, {target: TopicSpec(target, partitions, None)})
    return True


def republish(
    consumer: EventConsumer,
    producer: EventProducer,
    codec: AvroCodec,
    target: str,
    speed: float | None = None,
    progress: Progress | None = None,
) -> ReplayResult:
    """The range into ``target``, record for record; ``speed`` None: as fast as possible."""
    result = ReplayResult()
    started = time.monotonic()
    registered: set[int] = set()
    first_ms: int | None = None
    for batch in consumer.batches():
        for msg in batch:
            value = msg.value()
            timestamp_ms = msg.timestamp()[1]
            try:
                schema_id = codec.schema_id(value) if value is not None else None
                if schema_id is not None and schema_id not in registered:
                    event_type, _ = codec.exact_plan(schema_id)
                    codec.register(target, event_type)
                    registered.add(schema_id)
            except CodecError as exc:  # not a record of ours: not copied, counted (or raised)
                consumer.skip(msg, exc)
                result.skipped += 1
                continue
            if speed is not None:
                if first_ms is None:
                    first_ms = timestamp_ms
                delay = started + (timestamp_ms - first_ms) / 1000 / speed - time.monotonic()
                if delay > 0:
                    producer.poll(0)
                    time.sleep(delay)
            producer.produce(target, value, msg.key(), timestamp_ms)
            result.written += 1
        result.read += len(batch)
        if progress is not None:
            progress(result.read)
    producer.flush(60)
    result.seconds = time.monotonic() - started
    return result
