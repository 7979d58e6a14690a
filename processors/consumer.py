"""A leaner per-record path from Faust's aiokafka consumer to the agents' streams.

Why. Profiled on ``bench/processors_bench.py`` (py-spy, memory store), about half of the
worker's busy time was Faust's own per-record machinery between the fetched batch and the agent:
``Consumer._drain_messages`` awaited each record's delivery through ``Service.wait_first``, which
creates four tasks (the delivery, ``suspend_flow.wait()``, the consumer's ``stopped`` and
``crashed`` waits), an ``asyncio.wait`` and three cancellations per record; the conductor took an
``asyncio.Lock`` and awaited two coroutines (flow control, producer buffer) per record before the
put; ``getmany`` asked the consumer thread for the high-water mark of every record. Everything
else of Faust (group membership, rebalancing, table recovery, acknowledgements, offset commits,
the streams and agents) is unchanged: these classes override only the methods below, and the
app uses them through ``LeanTransport`` (``ProcessorsApp._new_transport``, ``worker.py``).

What is overridden, and why each is safe (read against faust-streaming 0.15.3,
``faust/transport/consumer.py``, ``conductor.py``, ``drivers/aiokafka.py``, ``app/base.py``,
``tables/recovery.py``):

``LeanConsumer._drain_messages`` (Faust's fetcher loop). The same steps per record, in the same
order: skip a record below the partition's read offset, record a gap in the offsets (acks enabled
only) for the commit logic, commit every ``broker_commit_every`` acknowledgements, deliver, then
advance the read offset. What changes is how a delivery is awaited: directly, not as a task raced
against ``suspend_flow`` (and ``stopped``/``crashed``) by ``wait_first``. A delivery almost never
suspends (the queue has room, flow control is on), so the common path creates no task at all. The
race is kept where it matters: when the flow is stopped (``stop_flow``, which the app calls first
thing on a rebalance and on shutdown) while a delivery is suspended (the queue full, flow control
suspended, the producer buffer full), ``_interrupt_delivery`` cancels the fetcher task at that
await, exactly what ``wait_first`` did by cancelling the delivery task. Unlike Faust's loop, an
interrupted record's read offset is *not* advanced (Faust advanced it although the record was
never delivered, which its gap logic can later count as done); the rest of the batch is
dropped, as Faust's ``getmany`` drops it when the flow stops. Nothing dropped is lost: the flow is
only resumed by the table recovery after ``consumer.perform_seek()``, i.e. from the committed
offsets, and a record is committed only once acknowledged by its agent, which only sees records
that were delivered. The loop also stops taking records of a batch as soon as the flow stops or
the group's generation changes, as Faust's ``getmany`` does. Stopping the consumer or the
fetcher still ends the loop: both cancel the fetcher task (a real cancellation is told apart from
an interruption by the task's cancel count and re-raised).

``LeanConsumer._fetch_batch`` (instead of iterating Faust's ``getmany``): the same
``_wait_next_records`` (flow control, paused and active partitions), the same round-robin
``scheduler.iterate``, the same message objects (``_to_message``), the same filter (a record
of a partition no longer active or buffered is not delivered), and the same seek to the
committed offsets when called while the flow is stopped. The high-water mark is read once per
partition per batch for the monitor (Faust read it per record; the monitor keeps the last value).

``LeanConductor``: the per-partition delivery closure (``_build_handler``; Faust's
``ConductorCompiler.build``) and the outer lookup (``_compile_message_handler``). The same
delivery (incref by the number of channels, decode once per key/value type, ``put_nowait_enhanced``
with the same pressure callbacks (which no longer pause a partition: ``flow.py``), decode errors handed to the
channels and acknowledged) with the waits checked before they are awaited: flow control and the
producer buffer are awaited only when suspended or full; the callback index lock only when held
(``_update_indices`` holds it across an await while it rebuilds the index; otherwise nothing
can change the index between the check and the lookup, the loop being single-threaded). A full
queue is waited for with ``put`` awaited in the delivery itself (Faust wrapped each put in a task
and an ``asyncio.wait``, which an interruption cancelled without cancelling the put: the record
could land in the queue after the flow had stopped).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import typing
from collections.abc import Callable, MutableSet
from typing import Any, cast

from faust.exceptions import KeyDecodeError, ValueDecodeError
from faust.transport.conductor import Conductor
from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP, Message
from faust.types.transports import ConsumerCallback
from mode import Service, ServiceT

from processors.flow import SteadyConsumer

if typing.TYPE_CHECKING:
    from faust.types import EventT


class LeanConsumer(SteadyConsumer):
    """Faust's aiokafka consumer (with ``flow.py``'s changes) and a fetcher loop that awaits each
    delivery directly."""

    #: The fetcher task while it is inside a delivery (the only await ``stop_flow`` interrupts).
    _delivering: asyncio.Task | None = None
    #: Set by ``_interrupt_delivery``: the next CancelledError in the delivery is ours.
    _interrupted: bool = False
    _loop_thread: int | None = None
    #: Set when a partition becomes active again (``_wait_next_records`` waits for it).
    _partitions_active: asyncio.Event | None = None

    def stop_flow(self) -> None:
        super().stop_flow()
        self._interrupt_delivery()

    async def on_stop(self) -> None:
        self._interrupt_delivery()
        await super().on_stop()

    def _interrupt_delivery(self) -> None:
        """Cancel a suspended delivery (what ``wait_first`` did when ``suspend_flow`` was set)."""
        task = self._delivering
        if task is None or self._interrupted:
            return
        if self._loop_thread is not None and threading.get_ident() != self._loop_thread:
            # Faust calls stop_flow on the event loop's thread; never cancel a task from another.
            task.get_loop().call_soon_threadsafe(self._interrupt_delivery)
            return
        self._interrupted = True
        task.cancel()

    def on_buffer_drop(self, tp: TP) -> None:
        super().on_buffer_drop(tp)
        self._wake_fetcher()

    def resume_partitions(self, tps: Any) -> None:
        super().resume_partitions(tps)
        self._wake_fetcher()

    def _wake_fetcher(self) -> None:
        if self._active_partitions and self._partitions_active is not None:
            self._partitions_active.set()

    async def _wait_next_records(self, timeout: float) -> tuple[Any, set[TP] | None]:
        """Faust's, except that with every partition paused (its agents' queues full) it waits
        for one to be resumed (``on_buffer_drop``), at most a second, instead of sleeping a
        second: the agent empties its queue far quicker than that, then waited for the rest."""
        if not self.flow_active:
            await self.wait(self.can_resume_flow)  # type: ignore[arg-type]
        try:
            self.not_waiting_next_records.set()
            if self.app.client_only:
                return await self._getmany(active_partitions=None, timeout=timeout), None
            active_partitions = self._get_active_partitions()
            if active_partitions:
                return await self._getmany(active_partitions=active_partitions, timeout=timeout), active_partitions
            event = self._partitions_active = self._partitions_active or asyncio.Event()
            event.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), timeout=1.0)
            return {}, active_partitions
        finally:
            self.not_waiting_next_records.set()

    async def _fetch_batch(self, timeout: float) -> list[tuple[TP, Message]]:
        """Faust's ``getmany`` as a list: the records of one fetch to deliver, round-robin."""
        records, active_partitions = await self._wait_next_records(timeout)
        if records is None or self.should_stop:
            return []
        if not self.flow_active:
            self.log.dev("getmany called while flow not active. Seek back to committed offsets.")
            try:
                await self.perform_seek()
            except Exception as ex:
                self.log.warning(f"exception performing seek when flow not active {ex}")
            return []
        to_message = self._to_message
        buffered = self._buffered_partitions
        track_end = self.app.monitor.track_tp_end_offset
        for tp in records:
            track_end(tp, self.highwater(tp))
        return [
            (tp, to_message(tp, record))
            for tp, record in self.scheduler.iterate(records)
            if active_partitions is None or tp in active_partitions or tp in buffered
        ]

    async def _drain_messages(self, fetcher: ServiceT) -> None:
        callback = self.callback
        consumer_should_stop = cast(Service, self)._stopped.is_set
        fetcher_should_stop = cast(Service, fetcher)._stopped.is_set
        read_offset = self._read_offset
        set_flag, unset_flag = self.diag.set_flag, self.diag.unset_flag
        commit_every = self._commit_every
        acks_enabled_for = self.app.topics.acks_enabled_for
        app = self.app
        task = asyncio.current_task()
        assert task is not None
        self._loop_thread = threading.get_ident()
        yield_every = 100
        since_yield = 0
        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                set_flag(CONSUMER_FETCHING)
                batch = await self._fetch_batch(timeout=1.0)
                await self.sleep(0)  # as Faust: getmany can return at once, again and again
                if self.should_stop:
                    break
                generation = app.consumer_generation_id
                for tp, message in batch:
                    if not self.flow_active or app.consumer_generation_id != generation:
                        break  # as Faust's getmany: the rest is read again from the committed offsets
                    since_yield += 1
                    if since_yield > yield_every:
                        await asyncio.sleep(0)
                        since_yield = 0
                        if not self.flow_active:
                            break
                    offset = message.offset
                    r_offset = read_offset[tp]
                    if r_offset is not None and offset < r_offset:
                        self.log.dev("DROPPED MESSAGE ROFF %r: k=%r v=%r", offset, message.key, message.value)
                        continue
                    if r_offset and offset - r_offset > 1 and acks_enabled_for(message.topic):
                        await self._add_gap(tp, r_offset + 1, offset)
                    if commit_every is not None and self._n_acked >= commit_every:
                        self._n_acked = 0
                        await self.commit()
                    if not self.flow_active:
                        break  # stopped during the awaits above
                    self._delivering = task
                    try:
                        await callback(message)
                    except asyncio.CancelledError:
                        if not self._interrupted:
                            raise
                        self._interrupted = False
                        if task.uncancel():  # cancelled for real as well (the fetcher stopping)
                            raise
                        break  # not delivered: its read offset stays, the rest is read again
                    finally:
                        self._delivering = None
                    read_offset[tp] = offset
                unset_flag(CONSUMER_FETCHING)
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                self.log.info("Broker stopped consumer, shutting down...")
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                self.log.info("Consumer shutting down for user cancel.")
                return
            raise
        except Exception as exc:
            self.log.exception("Drain messages raised: %r", exc)
            raise
        finally:
            self._delivering = None
            self._interrupted = False


class LeanConductor(Conductor):
    """Faust's conductor with a per-partition delivery that awaits only what is not ready."""

    def _compile_message_handler(self) -> ConsumerCallback:
        if self.app.client_only:
            return super()._compile_message_handler()
        callbacks = self._tp_to_callback
        lock = self._tp_to_callback_lock

        async def on_message(message: Message) -> None:
            if lock.locked():  # the index is being rebuilt: wait for it, as Faust does
                async with lock:
                    callback = callbacks[message.tp]
            else:
                callback = callbacks[message.tp]
            await callback(message)

        return on_message

    def _build_handler(self, tp: TP, channels: MutableSet[Any]) -> ConsumerCallback:
        return _lean_handler(self, tp, channels)


def _lean_handler(conductor: Conductor, tp: TP, channels: MutableSet[Any]) -> ConsumerCallback:
    """Faust's ``ConductorCompiler.build``, the waits awaited only when needed (module docstring)."""
    app = conductor.app
    consumer_on_buffer_full = app.consumer.on_buffer_full
    consumer_on_buffer_drop = app.consumer.on_buffer_drop
    flow_control = app.flow_control
    flow_active = flow_control.is_active
    producer_buffer = app.producer.buffer
    on_topic_buffer_full = app.sensors.on_topic_buffer_full

    def on_pressure_high() -> None:
        on_topic_buffer_full(tp)
        consumer_on_buffer_full(tp)

    def on_pressure_drop() -> None:
        consumer_on_buffer_drop(tp)

    async def put(queue: Any, event: EventT, chan: Any) -> None:
        if queue.full():
            on_topic_buffer_full(tp)
            await chan.put(event)  # awaited here: an interrupted delivery cancels the put itself
        else:
            queue.put_nowait_enhanced(event, on_pressure_high=on_pressure_high, on_pressure_drop=on_pressure_drop)

    async def on_message(message: Message) -> None:
        if not flow_active():
            await flow_control.acquire()
        if producer_buffer.size > producer_buffer.max_messages:
            await producer_buffer.wait_until_ebb()
        n = len(channels)
        if not n:
            return
        message.incref(n)
        event: EventT | None = None
        event_keyid: tuple[Any, Any] | None = None
        delivered: set[Any] = set()
        try:
            for chan in channels:
                keyid = chan.key_type, chan.value_type
                if event is None:
                    event = await chan.decode(message, propagate=True)
                    event_keyid = keyid
                    await put(chan.queue, event, chan)
                else:
                    dest = event if keyid == event_keyid else await chan.decode(message, propagate=True)
                    await put(chan.queue, dest, chan)
                delivered.add(chan)
        except KeyDecodeError as exc:
            remaining = channels - delivered
            message.ack(app.consumer, n=len(remaining))
            for chan in remaining:
                await chan.on_key_decode_error(exc, message)
        except ValueDecodeError as exc:
            remaining = channels - delivered
            message.ack(app.consumer, n=len(remaining))
            for chan in remaining:
                await chan.on_value_decode_error(exc, message)

    return on_message


class LeanTransport(faust_aiokafka.Transport):
    """Faust's aiokafka transport with ``LeanConsumer`` and ``LeanConductor``."""

    Consumer = LeanConsumer
    Conductor = LeanConductor


#: What ``ProcessorsApp`` replaces: Faust's aiokafka transport (``kafka://``, ``aiokafka://``).
REPLACES: Callable[..., Any] = faust_aiokafka.Transport
