"""The lean consumer path (``processors/consumer.py``) without Kafka: the app uses it, its
fetcher loop delivers in order and advances read offsets only past delivered records, a
``stop_flow`` interrupts a suspended delivery without losing the record, a real cancellation
still ends the loop, and a paused fetcher wakes when a partition resumes."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from unittest import mock

import pytest
from faust.transport.conductor import Conductor
from faust.types import TP

from processors.consumer import LeanConductor, LeanConsumer, LeanTransport
from processors.flow import SteadyConsumer, SteadyTransport
from processors.settings import ProcessorSettings
from processors.worker import create_app
from tickflow.config import KafkaSettings, Settings

P0, P1 = TP("t", 0), TP("t", 1)


def _app(tmp_path: Path, lean: bool = True) -> Any:
    settings = Settings(kafka=KafkaSettings(bootstrap_servers="k1:9093"))
    with mock.patch.dict(os.environ, {"TICKFLOW_PROCESSORS_LEAN_CONSUMER": "1" if lean else "0"}):
        app = create_app(settings, ProcessorSettings(app_id="t-lean", store="memory://", data_dir=tmp_path))
        # The transport, consumer and conductor are made on first use: while the variable is set.
        assert app.transport is not None and app.consumer is not None and app.topics is not None
        return app


def test_the_app_uses_the_lean_transport_only_when_told_to(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Faust's own per-record path by default, with the consumer that resumes where the tables are.
    monkeypatch.delenv("TICKFLOW_PROCESSORS_LEAN_CONSUMER", raising=False)
    settings = Settings(kafka=KafkaSettings(bootstrap_servers="k1:9093"))
    app = create_app(settings, ProcessorSettings(app_id="t-default", store="memory://", data_dir=tmp_path))
    assert type(app.transport) is SteadyTransport
    assert type(app.consumer) is SteadyConsumer and type(app.topics) is Conductor
    app = _app(tmp_path, lean=True)
    assert type(app.transport) is LeanTransport
    assert type(app.consumer) is LeanConsumer and type(app.topics) is LeanConductor


def _message(tp: TP, offset: int) -> Any:
    return SimpleNamespace(topic=tp.topic, partition=tp.partition, tp=tp, offset=offset, key=b"k", value=b"v")


class _Fetcher:
    def __init__(self) -> None:
        self._stopped = asyncio.Event()


def _drain(consumer: LeanConsumer, batches: list[list[Any]], callback: Any) -> tuple[asyncio.Task, _Fetcher]:
    """Run the consumer's fetcher loop over ``batches`` (then nothing) with ``callback``."""
    fetcher = _Fetcher()

    async def fetch_batch(timeout: float) -> list[Any]:
        if batches:
            return [(m.tp, m) for m in batches.pop(0)]
        await asyncio.sleep(0.01)
        return []

    consumer._fetch_batch = fetch_batch  # type: ignore[method-assign]
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
