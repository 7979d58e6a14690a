"""The lean consumer path (``processors/consumer.py``) without Kafka: the app uses it, its
fetcher loop delivers in order and advances read offsets only past delivered records, a batch
topic's records come as one ``RecordBatch`` a partition and are acknowledged by offset, a
``stop_flow`` interrupts a suspended delivery without losing the record, a real cancellation
still ends the loop, and a paused fetcher wakes when a partition resumes."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from faust.types import TP

from processors.consumer import Fetched, LeanConductor, LeanConsumer, LeanTransport
from processors.settings import ProcessorSettings
from processors.worker import create_app
from tickflow.config import KafkaSettings, Settings

P0, P1 = TP("t", 0), TP("t", 1)


def _app(tmp_path: Path) -> Any:
    settings = Settings(kafka=KafkaSettings(bootstrap_servers="k1:9093"))
    return create_app(settings, ProcessorSettings(app_id="t-lean", store="memory://", data_dir=tmp_path))


def test_the_app_uses_the_lean_transport_and_delivers_the_agents_topics_in_batches(tmp_path: Path) -> None:
    app = _app(tmp_path)
    assert type(app.transport) is LeanTransport
    assert type(app.consumer) is LeanConsumer and type(app.topics) is LeanConductor
    settings = ProcessorSettings()
    assert app.batch_topics == {settings.book_topic, settings.trade_topic, settings.kline_topic}


def _message(tp: TP, offset: int) -> Any:
    return SimpleNamespace(topic=tp.topic, partition=tp.partition, tp=tp, offset=offset, key=b"k", value=b"v")


class _Fetcher:
    def __init__(self) -> None:
        self._stopped = asyncio.Event()


def _drain(
    consumer: LeanConsumer, batches: list[list[Any]], callback: Any, by_partition: list[Any] | None = None
) -> tuple[asyncio.Task, _Fetcher]:
    """Run the consumer's fetcher loop over ``batches`` of single records (and ``by_partition``
    records, with the first fetch, for batch topics), then nothing, with ``callback``."""
    fetcher = _Fetcher()
    generation = consumer.app.consumer_generation_id

    async def fetch(timeout: float) -> Fetched:
        nonlocal by_partition
        if batches:
            fetched = Fetched(generation, singles=[(m.tp, m) for m in batches.pop(0)])
            partitions: dict[TP, list[Any]] = {}
            for record in by_partition or ():
                partitions.setdefault(record.tp, []).append(record)
            fetched.batches = list(partitions.items())
            by_partition = None
            return fetched
        await asyncio.sleep(0.01)
        return Fetched(generation)

    consumer._fetch = fetch  # type: ignore[method-assign]
    consumer.callback = callback
    return asyncio.ensure_future(consumer._drain_messages(fetcher)), fetcher  # type: ignore[arg-type]


async def _until(condition: Any, timeout: float = 2.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.001)


async def _stop(task: asyncio.Task, fetcher: _Fetcher) -> None:
    fetcher._stopped.set()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


def test_records_are_delivered_in_order_and_read_offsets_advance(tmp_path: Path) -> None:
    async def run() -> None:
        consumer = _app(tmp_path).consumer
        consumer._read_offset[P1] = 5  # as after a seek: offsets below were committed
        got: list[tuple[int, int]] = []

        async def deliver(message: Any) -> None:
            got.append((message.partition, message.offset))

        batch = [_message(P0, 0), _message(P1, 4), _message(P1, 5), _message(P0, 1), _message(P1, 6)]
        task, fetcher = _drain(consumer, [batch], deliver)
        await _until(lambda: len(got) == 4)
        await _stop(task, fetcher)
        assert got == [(0, 0), (1, 5), (0, 1), (1, 6)]  # offset 4 of P1 is below its read offset
        assert (consumer._read_offset[P0], consumer._read_offset[P1]) == (1, 6)

    asyncio.run(run())


def test_stop_flow_interrupts_a_suspended_delivery_without_counting_it_read(tmp_path: Path) -> None:
    async def run() -> None:
        consumer = _app(tmp_path).consumer
        release = asyncio.Event()
        got: list[int] = []

        async def deliver(message: Any) -> None:
            if message.offset == 1:
                await release.wait()  # a full queue, or flow control suspended
            got.append(message.offset)

        task, fetcher = _drain(consumer, [[_message(P0, 0), _message(P0, 1), _message(P0, 2)]], deliver)
        await _until(lambda: consumer._delivering is not None and got == [0])
        consumer.stop_flow()  # a rebalance starts
        await _until(lambda: consumer._delivering is None)
        release.set()
        await asyncio.sleep(0.05)
        assert got == [0]  # offset 1 was interrupted, offset 2 never taken: both read again
        assert consumer._read_offset[P0] == 0  # not advanced past the undelivered record
        assert not task.done() and not consumer._interrupted  # the loop goes on (waits for the flow)
        await _stop(task, fetcher)

    asyncio.run(run())


@pytest.mark.parametrize("interrupted_too", [False, True], ids=["cancelled", "cancelled-and-interrupted"])
def test_a_real_cancellation_during_a_delivery_ends_the_loop(tmp_path: Path, interrupted_too: bool) -> None:
    """The fetcher stopping (a cancellation) ends the loop, also when a ``stop_flow`` comes with it."""

    async def run() -> None:
        consumer = _app(tmp_path).consumer
        forever = asyncio.Event()

        async def deliver(message: Any) -> None:
            await forever.wait()

        task, _ = _drain(consumer, [[_message(P0, 0)]], deliver)
        await _until(lambda: consumer._delivering is not None)
        if interrupted_too:
            consumer.stop_flow()
        task.cancel()  # the fetcher stopping
        with pytest.raises(asyncio.CancelledError):
            await task
        assert consumer._read_offset[P0] is None

    asyncio.run(run())


def test_a_paused_fetcher_wakes_when_a_partition_resumes(tmp_path: Path) -> None:
    async def run() -> None:
        consumer = _app(tmp_path).consumer
        consumer._active_partitions = set()
        consumer._buffered_partitions = {P0}  # paused: its agent's queue was full
        consumer.app.client_only = False
        started = asyncio.get_running_loop().time()
        waiting = asyncio.ensure_future(consumer._wait_next_records(1.0))
        await asyncio.sleep(0.01)
        consumer.on_buffer_drop(P0)  # the queue drained
        records, active = await waiting
        assert records == {} and active == {P0}
        assert asyncio.get_running_loop().time() - started < 0.5  # not the second Faust slept

    asyncio.run(run())


B0, B1 = TP("books", 0), TP("books", 1)


def _record(tp: TP, offset: int) -> Any:
    """An aiokafka ``ConsumerRecord`` as the fetcher has it (with ``tp`` for the test's grouping)."""
    return SimpleNamespace(topic=tp.topic, partition=tp.partition, tp=tp, offset=offset, timestamp=1_000,
                           timestamp_type=0, key=b"k", value=b"v", headers=[], checksum=None,
                           serialized_key_size=1, serialized_value_size=1)  # fmt: skip


def test_batch_topic_records_come_a_partition_at_a_time_with_read_offsets_and_gaps(tmp_path: Path) -> None:
    async def run() -> None:
        app = _app(tmp_path)
        consumer = app.consumer
        consumer._read_offset[B1] = 5  # as after a seek
        app.topics.acks_enabled_for = lambda topic: True
        got: list[tuple[TP, list[int]]] = []
        singles: list[int] = []

        async def deliver_batch(tp: TP, records: list[Any], generation: int | None) -> None:
            got.append((tp, [r.offset for r in records]))

        async def deliver(message: Any) -> None:
            singles.append(message.offset)

        app.topics.deliver_batch = deliver_batch
        records = [_record(B0, 0), _record(B0, 1), _record(B0, 2), _record(B1, 4), _record(B1, 5), _record(B1, 7)]
        task, fetcher = _drain(consumer, [[_message(P0, 9)]], deliver, by_partition=records)
        await _until(lambda: singles == [9])
        await _stop(task, fetcher)
        assert got == [(B0, [0, 1, 2]), (B1, [5, 7])]  # offset 4 of B1 is below its read offset
        assert (consumer._read_offset[B0], consumer._read_offset[B1]) == (2, 7)
        assert [(i.begin, i.end) for i in consumer._gap[B1]] == [(6, 8)]  # as Faust records a gap

    asyncio.run(run())


def test_an_interrupted_batch_is_not_counted_read_nor_the_rest_of_the_fetch_delivered(tmp_path: Path) -> None:
    async def run() -> None:
        app = _app(tmp_path)
        consumer = app.consumer
        forever = asyncio.Event()
        singles: list[int] = []

        async def deliver_batch(tp: TP, records: list[Any], generation: int | None) -> None:
            await forever.wait()  # the agent's queue full

        async def deliver(message: Any) -> None:
            singles.append(message.offset)

        app.topics.deliver_batch = deliver_batch
        task, fetcher = _drain(consumer, [[_message(P0, 0)]], deliver, by_partition=[_record(B0, 3)])
        await _until(lambda: consumer._delivering is not None)
        consumer.stop_flow()
        await _until(lambda: consumer._delivering is None)
        await asyncio.sleep(0.05)
        assert consumer._read_offset[B0] is None and singles == []
        assert not task.done()
        await _stop(task, fetcher)

    asyncio.run(run())


def test_a_batch_is_one_event_whose_message_is_its_last_record_of_the_fetch_generation(tmp_path: Path) -> None:
    async def run() -> None:
        from processors.consumer import RecordBatch, _batch_handler

        app = _app(tmp_path)
        app.flow_control.resume()
        channel = app.channel()
        handler = _batch_handler(app.topics, B0, {channel})
        records = [_record(B0, 10), _record(B0, 11), _record(B0, 12)]
        await handler(records, 7)
        event = channel.queue.get_nowait()
        assert isinstance(event.value, RecordBatch)
        assert event.value.tp == B0 and event.value.offsets == [10, 11, 12]
        assert (event.message.offset, event.message.generation_id, event.message.refcount) == (12, 7, 1)

    asyncio.run(run())


def test_records_of_a_batch_are_acknowledged_by_offset_and_become_committable(tmp_path: Path) -> None:
    consumer = _app(tmp_path).consumer
    consumer.app.topics.acks_enabled_for = lambda topic: True
    consumer._committed_offset[B0] = 3
    consumer.ack_records(B0, [2, 3, 4, 5])  # 2 is below the committed offset: already done
    consumer.ack_records(B0, [5])  # twice: counted once
    assert sorted(consumer._acked[B0]) == [3, 4, 5] and consumer._n_acked == 3
    assert consumer._new_offset(B0) == 6


class _TopicChannel:
    """What the conductor delivers to: a topic channel being iterated (its ``put`` is its queue's)."""

    def __init__(self, queue: Any) -> None:
        self.queue = queue

    async def put(self, event: Any) -> None:
        await self.queue.put(event)


def test_a_put_cancelled_by_a_cleared_queue_drops_the_record_and_the_delivery_goes_on(tmp_path: Path) -> None:
    """When the flow resumes after a rebalance, mode's ``ThrowableQueue.clear`` cancels the puts
    waiting for room in a cleared queue. Faust's own delivery drops that record; before this was
    handled, the cancellation ended the fetcher loop for good (the rebalance test's hang)."""

    async def run() -> None:
        from processors.consumer import _batch_handler

        app = _app(tmp_path)
        app.flow_control.resume()
        channel = _TopicChannel(app.FlowControlQueue(maxsize=1, clear_on_resume=True))
        handler = _batch_handler(app.topics, B0, {channel})

        channel.queue.put_nowait(object())  # full
        delivery = asyncio.ensure_future(handler([_record(B0, 1)], 1))
        await asyncio.sleep(0.01)
        assert not delivery.done()  # waiting for room
        channel.queue.clear()  # what the flow's resume does
        await asyncio.wait_for(delivery, 1)  # returns: no CancelledError out of the fetcher loop
        assert channel.queue.empty()

        channel.queue.put_nowait(object())
        blocked = asyncio.ensure_future(handler([_record(B0, 2)], 1))
        await asyncio.sleep(0.01)
        blocked.cancel()  # the delivery itself cancelled (an interruption): that still propagates
        with pytest.raises(asyncio.CancelledError):
            await blocked

    asyncio.run(run())
