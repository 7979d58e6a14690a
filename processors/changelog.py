"""Table changes and output records written a batch at a time, straight to aiokafka.

Why. Faust's ``table[key] = value`` sends each change through its own per-message path (a
``FutureMessage``, the producer buffer's queue, a task hop, ``publish_message``, sensors, one
aiokafka ``send`` with its own future, a done-callback that writes the persisted offset to
RocksDB) and aiokafka, without linger, makes a produce request of nearly every change. For the
order-book agent, ~10 changelog records per book record, that path was >95% of the worker's CPU
(``bench/processors_bench.py``: ~220 book records/s).

What this does instead, for each batch of source records the agent takes from its stream:

- table changes are collected per (table, partition, key), the last one winning (a level
  changed twice in a batch is written once: compaction would keep only the last anyway);
- ``flush`` writes them to the table's store as Faust would (the same keys and values, in the
  store of the source record's partition; RocksDB in one ``WriteBatch`` per partition) and to
  the table's changelog topic, one aiokafka ``BatchBuilder`` per partition (``send_batch``: one
  future per batch, not per record); when a batch is acknowledged, the store's persisted offset
  becomes its last record's offset, exactly what Faust's ``_on_changelog_sent`` records;
- output records (best bid/offer) go the same way, first (they wait for no acknowledgement),
  partitioned by key with aiokafka's default partitioner, which is what ``topic.send(key=...)``
  would have used.

Why this stays exact after a crash: tables named in ``order`` land in that order (a book's head
never without its levels, a source position never without its heads), and a restart resumes at
the positions the tables hold (``resume.py``), not at Faust's committed offsets; records read
again are skipped by their ids or applied again (absolute sizes). The changelog carries the same
keys and values as Faust's own writes, so recovery, standbys and the RocksDB persisted offsets work as with Faust's
own table writes. Not for Faust's exactly-once mode (its changelog writes must go through the
transactional producer of each partition): ``TableWriter`` refuses it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any, Generic, TypeVar

from aiokafka.partitioner import DefaultPartitioner
from faust.types import TP

from tickflow.errors import ConfigError, KafkaError

log = logging.getLogger(__name__)

T = TypeVar("T")

#: (partition, {key: value or None for a deletion})
_StoreWrite = Callable[[int, dict[bytes, bytes | None]], None]


class TableWriter:
    """Collects table changes and output records; ``flush`` hands them to Kafka in batches."""

    def __init__(self, app: Any) -> None:
        if str(app.conf.processing_guarantee).endswith("exactly_once"):
            raise ConfigError("the batched table writer supports Faust's at-least-once mode only")
        self.app = app
        # table -> partition -> key -> value (None: delete); outputs: topic -> [(key, value)]
        self._changes: dict[Any, dict[int, dict[bytes, bytes | None]]] = {}
        self._outputs: dict[str, list[tuple[bytes, bytes]]] = {}
        self._partitions: dict[str, list[int]] = {}
        self._stores: dict[Any, _StoreWrite] = {}
        self._partitioner = DefaultPartitioner()
        self._order: list[Any] = []
        self._encoders: dict[int, Callable[[Any], bytes]] = {}  # by id(table)
        self.counters = {"changelog_records": 0, "output_records": 0, "batches": 0}

    def order(self, *tables: Any) -> None:
        """Write ``tables`` in this order, each one's batch acknowledged before the next is sent
        (tables not named follow, in the order they were first changed). So a table written
        after another never lands without it: a book's head, which says up to which record
        the book is applied, is never in Kafka without the levels of those records (a crash
        between the two would otherwise leave a head whose records are skipped as applied)."""
        self._order = list(tables)

    def encode_values(self, table: Any, encode: Callable[[Any], bytes]) -> None:
        """Take ``table``'s values as any objects, encoded by ``encode`` when they are written:
        only the last value of a key in a batch is encoded (a book level changes many times a
        batch and is written once; its size text is made once too). ``bytes`` values are
        written as they are."""
        self._encoders[id(table)] = encode

    def set(self, table: Any, partition: int, key: bytes, value: bytes | None) -> None:
        """``table[key] = value`` (``None``: ``del table[key]``) for a record of ``partition``."""
        self.changes(table, partition)[key] = value

    def changes(self, table: Any, partition: int) -> dict[bytes, bytes | None]:
        """The changes to ``table`` in ``partition`` to be written at the next flush, to add to
        (``changes[key] = value``, ``None`` to delete: what ``set`` does, for many keys at once)."""
        by_partition = self._changes.get(table)
        if by_partition is None:
            by_partition = self._changes[table] = {}
        changes = by_partition.get(partition)
        if changes is None:
            changes = by_partition[partition] = {}
        return changes

    def send(self, topic: str, key: bytes, value: bytes) -> None:
        """An output record, sent at the next ``flush`` (in order per topic)."""
        records = self._outputs.get(topic)
        if records is None:
            records = self._outputs[topic] = []
        records.append((key, value))

    async def deliver_outputs(self) -> None:
        """Send the output records collected so far now, and wait until Kafka has them all (the
        kline agent: a batch's klines are in their topic before the tables that say they were
        published). Failures raise ``KafkaError``: the caller must not write those tables."""
        if not self._outputs:
            return
        producer = self.app.producer._ensure_producer()
        outputs, self._outputs = self._outputs, {}
        sent = await self._send_outputs(producer, outputs)
        failed = [r for r in await asyncio.gather(*sent, return_exceptions=True) if isinstance(r, BaseException)]
        if failed:
            raise KafkaError(f"{len(failed)} output batches were not written: {failed[0]!r}")

    async def flush(self) -> Coroutine[Any, Any, None]:
        """Begin a flush: what was collected is taken (later changes go to the next flush), the
        outputs and the first ordered table's changes handed to aiokafka. Returns what is left
        to do, to be awaited: wait for those changes to be acknowledged, then hand over the next
        table's, and so on. The caller may go on applying records meanwhile (the book agent
        does: the broker round trip no longer stops it), but must finish one flush before it
        finishes the next (a table's later changes must not overtake its earlier ones)."""
        if not self._changes and not self._outputs:
            return _nothing()
        producer = self.app.producer._ensure_producer()  # Faust's AIOKafkaProducer
        changes, self._changes = self._changes, {}
        outputs, self._outputs = self._outputs, {}
        # Outputs first: they wait for no table's acknowledgement (a best bid/offer would
        # otherwise wait a broker round trip for the levels); after a crash the records behind
        # them are applied again and their outputs sent again (at least once, same values).
        await self._send_outputs(producer, outputs)
        # Tables are dicts (equal when their contents are): membership by identity, not ``==``.
        named = {id(t) for t in self._order}
        ordered = [t for t in self._order if t in changes] + [t for t in changes if id(t) not in named]
        sent: list[Any] = []
        while ordered:
            table = ordered.pop(0)
            sent += await self._send_table(producer, table, changes[table])
            if ordered and id(table) in named:
                return self._send_after(producer, sent, ordered, changes, named)
        return _nothing()

    async def _send_after(self, producer: Any, sent: list[Any], ordered: list[Any], changes: dict[Any, Any],
                          named: set[int]) -> None:  # fmt: skip
        """Once ``sent`` is acknowledged, hand ``ordered`` over the same way (the rest of a flush)."""
        while ordered:
            await asyncio.gather(*sent, return_exceptions=True)  # failures are logged by ``done``
            table = ordered.pop(0)
            sent = await self._send_table(producer, table, changes[table])
            if id(table) not in named:
                sent = []  # tables not named are not waited for

    async def _send_table(self, producer: Any, table: Any, changes: dict[int, dict[bytes, bytes | None]]) -> list[Any]:
        """Write a table's changes to its store and hand them to aiokafka; the delivery futures."""
        write_store = self._stores.get(table) or self._store_writer(table)
        topic = table.changelog_topic.get_topic_name()
        encode = self._encoders.get(id(table))
        sent: list[Any] = []
        for partition, records in changes.items():
            if encode is not None:
                records = {key: value if value is None or type(value) is bytes else encode(value)
                           for key, value in records.items()}  # fmt: skip
            write_store(partition, records)
            on_sent = _persist_offset(table.data, TP(topic, partition))
            sent += await self._send(producer, topic, partition, list(records.items()), on_sent)
            self.counters["changelog_records"] += len(records)
        return sent

    async def _send_outputs(self, producer: Any, outputs: dict[str, list[tuple[bytes, bytes]]]) -> list[Any]:
        """Hand ``outputs`` to aiokafka; the delivery futures."""
        sent: list[Any] = []
        for topic, records in outputs.items():
            partitions = self._partitions.get(topic)
            if partitions is None:
                partitions = self._partitions[topic] = sorted(await producer.partitions_for(topic))
            by_partition: dict[int, list[tuple[bytes, bytes | None]]] = {}
            for key, value in records:
                partition = self._partitioner(key, partitions, partitions)
                by_partition.setdefault(partition, []).append((key, value))
            for partition, items in by_partition.items():
                sent += await self._send(producer, topic, partition, items, None)
            self.counters["output_records"] += len(records)
        return sent

    async def _send(
        self,
        producer: Any,
        topic: str,
        partition: int,
        records: list[tuple[bytes, bytes | None]],
        on_sent: Callable[[int], None] | None,
    ) -> list[Any]:
        """Hand ``records`` to aiokafka; returns the batches' delivery futures."""
        batch = producer.create_batch()
        count, futures = 0, []
        for key, value in records:
            if batch.append(key=key, value=value, timestamp=None) is None:  # full: send, start another
                futures.append(await self._submit(producer, batch, topic, partition, count, on_sent))
                batch, count = producer.create_batch(), 0
                if batch.append(key=key, value=value, timestamp=None) is None:
                    raise ValueError(f"a record for {topic} is larger than a producer batch")
            count += 1
        futures.append(await self._submit(producer, batch, topic, partition, count, on_sent))
        return [f for f in futures if f is not None]

    async def _submit(
        self, producer: Any, batch: Any, topic: str, partition: int, count: int, on_sent: Callable[[int], None] | None
    ) -> Any:
        if not count:
            return None
        future = await producer.send_batch(batch, topic, partition=partition)
        self.counters["batches"] += 1

        def done(f: Any) -> None:
            if f.cancelled() or f.exception() is not None:
                # aiokafka gave up after its retries: never silent (Faust's own path only warns).
                self.counters["failed_batches"] = self.counters.get("failed_batches", 0) + 1
                log.error("%d records to %s[%d] were not written: %r", count, topic, partition,
                          None if f.cancelled() else f.exception())  # fmt: skip
            elif on_sent is not None:
                on_sent(f.result().offset + count - 1)

        future.add_done_callback(done)
        return future

    def _store_writer(self, table: Any) -> _StoreWrite:
        """How to write changes into ``table``'s store for a partition, as Faust's own set/del would."""
        store = table.data
        if hasattr(store, "_db_for_partition"):  # RocksDB: one database per partition
            import rocksdict

            def write_rocksdb(partition: int, changes: dict[bytes, bytes | None]) -> None:
                batch, index = rocksdict.WriteBatch(raw_mode=True), store._key_index
                for key, value in changes.items():
                    if value is None:
                        batch.delete(key)
                        index.pop(key, None)
                    else:
                        batch.put(key, value)
                        index[key] = partition
                store._db_for_partition(partition).write(batch)

            writer: _StoreWrite = write_rocksdb
        else:  # memory: one dict, with each key's partition for rebalances
            data, key_partition = store.data, store._key_partition

            def write_memory(partition: int, changes: dict[bytes, bytes | None]) -> None:
                for key, value in changes.items():
                    if value is None:
                        data.pop(key, None)
                        key_partition.pop(key, None)
                    else:
                        data[key] = value
                        key_partition[key] = partition

            writer = write_memory
        self._stores[table] = writer
        return writer


class LatestPerBatch(Generic[T]):
    """Table entries changed many times in a batch, encoded once when it is written (an
    instrument's head changes with every record; only the batch's last value lands anyway)."""

    def __init__(self, writer: TableWriter, table: Any, encode: Callable[[T], bytes]) -> None:
        self.writer, self.table, self.encode = writer, table, encode
        self._changed: dict[int, dict[str, T]] = {}  # partition -> key -> what to encode

    def changed(self, partition: int, key: str, value: T) -> None:
        by_key = self._changed.get(partition)
        if by_key is None:
            by_key = self._changed[partition] = {}
        by_key[key] = value

    def write(self) -> None:
        """Hand what changed since the last call to the writer (before its flush)."""
        changed, self._changed = self._changed, {}
        encode = self.encode
        for partition, by_key in changed.items():
            changes = self.writer.changes(self.table, partition)
            for key, value in by_key.items():
                changes[key.encode()] = encode(value)

    def clear(self) -> None:
        self._changed.clear()


async def _nothing() -> None:
    return None


def _persist_offset(store: Any, tp: TP) -> Callable[[int], None]:
    def persist(offset: int) -> None:
        store.set_persisted_offset(tp, offset)

    return persist
