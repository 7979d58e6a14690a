"""The worker's path from Faust's aiokafka consumer to the agents' streams: batch delivery for
the topics that ask for it, a leaner per-record path for the rest.

**Batch delivery** (``app.batch_topics``: the book, trade and venue-kline topics). A partition's records of one fetch go
to its agent as one event whose value is a ``RecordBatch`` (aiokafka's records, undecoded), not
one event a record. Faust's stream costs the same per event whatever it carries (sensors, the
current-event context, the generation check, acknowledgements, a queue hop); per record it was
as much CPU as the order-book logic itself (``bench/processors_bench.py``: the book agent went
from ~410 to ~205 CPU-µs a record, 2,160 to ~4,000 records/s). What is left on the per-record
path: the changelog topics (table recovery and standbys). Everything Faust does per record
before delivery is still done per record (read offset, gaps, commits); what Faust does with the
event (tracking it, skipping it when its generation is stale, ``wait_empty`` waiting for it) is
done with the batch's last record as its message, and the agent acknowledges the other records
by offset (``LeanConsumer.ack_records``), after its flush.

**The per-record path.** Profiled on ``bench/processors_bench.py`` (py-spy, memory store), about half of the
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

``LeanConsumer._fetch`` (instead of iterating Faust's ``getmany``): the same
``_wait_next_records`` (flow control, paused and active partitions), the same round-robin
``scheduler.iterate``, the same message objects (``_to_message``), the same filter (a record
of a partition no longer active or buffered is not delivered), and the same seek to the
committed offsets when called while the flow is stopped. The high-water mark is read once per
partition per batch for the monitor (Faust read it per record; the monitor keeps the last value).
The generation the records belong to is taken as soon as they are fetched, as Faust's
``getmany`` does (records fetched before a rebalance are then never delivered after it).

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
could land in the queue after the flow had stopped). A put cancelled on its own, not the
delivery (mode's ``ThrowableQueue.clear``, when the flow resumes after a rebalance, cancels the
puts waiting on a cleared queue), drops the event, as Faust's task did; before that was caught,
the cancellation ended the fetcher loop and Faust's fetcher with it, silently, and a worker
never read again (the rebalance test's hang: "No event received for active tp").
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import typing
from collections.abc import Awaitable, Callable, MutableSet
from dataclasses import dataclass, field
from typing import Any, cast

from faust.exceptions import KeyDecodeError, ValueDecodeError
from faust.transport.conductor import Conductor
from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP, Message
from faust.types.transports import ConsumerCallback
from faust.types.tuples import ack_lock
from mode import Service, ServiceT
from mode.utils.futures import notify

from processors.flow import SteadyConsumer

if typing.TYPE_CHECKING:
    from faust.types import EventT

log = logging.getLogger(__name__)


@dataclass(slots=True)
class RecordBatch:
    """The records of one partition from one fetch, in offset order: what the agent of a batch
    topic gets as one event's value. The records are aiokafka's ``ConsumerRecord`` (``topic``,
    ``partition``, ``offset``, ``timestamp``, ``key``, ``value``, ``headers``), undecoded: the agent
    decodes them (a Faust value serializer is per record, the very cost batches save). The agent
    acknowledges them with ``LeanConsumer.ack_records`` and the event itself (its message is the
    last record's, tracked by Faust: ``wait_empty`` waits for it)."""

    tp: TP
    records: list[Any]

    @property
    def offsets(self) -> list[int]:
        return [record.offset for record in self.records]


async def acknowledge(stream: Any, event: Any) -> None:
    """Acknowledge a ``RecordBatch`` event of a manual (``noack``) stream: its message (the batch's
    last record, the one Faust tracks) through the stream, then the other records by offset."""
    await stream.ack(event)
    batch: RecordBatch = event.value
    stream.app.consumer.ack_records(batch.tp, batch.offsets)


@dataclass(slots=True)
class Fetched:
    """One fetch, as ``LeanConsumer._drain_messages`` delivers it."""

    generation: int | None
    #: Per partition of a batch topic, its records (aiokafka's), delivered as one ``RecordBatch``.
    batches: list[tuple[TP, list[Any]]] = field(default_factory=list)
    #: The other records, one by one, in Faust's round-robin order.
    singles: list[tuple[TP, Message]] = field(default_factory=list)


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

    async def _fetch(self, timeout: float) -> Fetched:
        """Faust's ``getmany``, split: the records of batch topics a partition at a time, the rest
        as a list in Faust's round-robin order."""
        records, active_partitions = await self._wait_next_records(timeout)
        # The generation the records were fetched in, taken before anything can await (Faust's
        # getmany takes it here too): a rebalance after this drops what was fetched before it.
        generation = self.app.consumer_generation_id
        fetched = Fetched(generation)
        if records is None or self.should_stop:
            return fetched
        if not self.flow_active:
            self.log.dev("getmany called while flow not active. Seek back to committed offsets.")
            try:
                await self.perform_seek()
            except Exception as ex:
                self.log.warning(f"exception performing seek when flow not active {ex}")
            return fetched
        buffered = self._buffered_partitions
        track_end = self.app.monitor.track_tp_end_offset
        batch_topics: set[str] = getattr(self.app, "batch_topics", set())
        singles: dict[TP, list[Any]] = {}
        for tp, tp_records in records.items():
            track_end(tp, self.highwater(tp))
            if active_partitions is not None and tp not in active_partitions and tp not in buffered:
                continue  # as Faust: a partition no longer active or buffered is not delivered
            if tp.topic in batch_topics:
                fetched.batches.append((tp, tp_records))
            else:
                singles[tp] = tp_records
        if singles:
            to_message = self._to_message
            fetched.singles = [(tp, to_message(tp, record)) for tp, record in self.scheduler.iterate(singles)]
        return fetched

    def ack_records(self, tp: TP, offsets: list[int]) -> None:
        """``Consumer.ack`` for the records of a ``RecordBatch`` (by offset: they have no
        ``Message``), in one step: their offsets become committable."""
        if not self.app.topics.acks_enabled_for(tp.topic):
            return
        with ack_lock:
            committed = self._committed_offset[tp]
            index = self._acked_index[tp]
            new = [o for o in offsets if (committed is None or o >= committed) and o not in index]
            index.update(new)
            self._acked[tp].extend(new)
            self._n_acked += len(new)
            notify(self._waiting_for_ack)

    async def _drain_messages(self, fetcher: ServiceT) -> None:
        consumer_should_stop = cast(Service, self)._stopped.is_set
        fetcher_should_stop = cast(Service, fetcher)._stopped.is_set
        set_flag, unset_flag = self.diag.set_flag, self.diag.unset_flag
        app = self.app
        task = asyncio.current_task()
        assert task is not None
        self._loop_thread = threading.get_ident()
        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                set_flag(CONSUMER_FETCHING)
                await self.sleep(0)  # as Faust: the fetch can return at once, again and again
                fetched = await self._fetch(timeout=1.0)
                if self.should_stop:
                    break
                generation = fetched.generation
                going = True
                for tp, records in fetched.batches:
                    if not self.flow_active or app.consumer_generation_id != generation:
                        going = False  # as Faust's getmany: the rest is read again from the committed offsets
                        break
                    if not await self._deliver_batch(tp, records, generation, task):
                        going = False
                        break
                if going and fetched.singles:
                    await self._deliver_singles(fetched.singles, generation, task)
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
            # Faust's fetcher ends for good on this unless a rebalance is under way: say so.
            self.log.warning("the fetcher loop was cancelled (rebalancing: %s)", self.app.rebalancing, exc_info=True)
            raise
        except Exception as exc:
            self.log.exception("Drain messages raised: %r", exc)
            raise
        finally:
            self._delivering = None
            self._interrupted = False

    async def _deliver(self, delivery: Awaitable[None], task: asyncio.Task) -> bool:
        """Await ``delivery``; False if ``stop_flow`` interrupted it (not delivered)."""
        self._delivering = task
        try:
            await delivery
        except asyncio.CancelledError:
            if not self._interrupted:
                raise
            self._interrupted = False
            if task.uncancel():  # cancelled for real as well (the fetcher stopping)
                raise
            return False
        finally:
            self._delivering = None
        return True

    async def _commit_if_due(self) -> None:
        commit_every = self._commit_every
        if commit_every is not None and self._n_acked >= commit_every:
            self._n_acked = 0
            await self.commit()

    async def _deliver_batch(self, tp: TP, records: list[Any], generation: int | None, task: asyncio.Task) -> bool:
        """One partition's records of a batch topic, as one ``RecordBatch``; the same steps as
        a record's (read offset, gaps, commits) for each. False if the flow stopped."""
        read_offset = self._read_offset[tp]
        if read_offset is not None and records[0].offset < read_offset:
            self.log.dev("DROPPED MESSAGES BELOW ROFF %r of %r", read_offset, tp)
            records = [r for r in records if r.offset >= read_offset]
            if not records:
                return True
        if self.app.topics.acks_enabled_for(tp.topic):
            previous = read_offset
            for record in records:
                if previous and record.offset - previous > 1:
                    await self._add_gap(tp, previous + 1, record.offset)
                previous = record.offset
        await self._commit_if_due()
        if not self.flow_active:
            return False
        conductor = cast(LeanConductor, self.app.topics)
        if not await self._deliver(conductor.deliver_batch(tp, records, generation), task):
            return False  # not delivered: its read offset stays, the batch is read again
        self._read_offset[tp] = records[-1].offset
        return True

    async def _deliver_singles(self, batch: list[tuple[TP, Message]], generation: int | None,
                               task: asyncio.Task) -> None:  # fmt: skip
        """Faust's per-record delivery (module docstring)."""
        callback = self.callback
        read_offset = self._read_offset
        acks_enabled_for = self.app.topics.acks_enabled_for
        app = self.app
        since_yield = 0
        for tp, message in batch:
            if not self.flow_active or app.consumer_generation_id != generation:
                break  # as Faust's getmany: the rest is read again from the committed offsets
            since_yield += 1
            if since_yield > 100:
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
            await self._commit_if_due()
            if not self.flow_active:
                break  # stopped during the awaits above
            if not await self._deliver(callback(message), task):
                break  # not delivered: its read offset stays, the rest is read again
            read_offset[tp] = offset


class LeanConductor(Conductor):
    """Faust's conductor with a per-partition delivery that awaits only what is not ready, and
    a delivery of a whole fetched batch for the topics in ``app.batch_topics``."""

    _tp_to_batch: dict[TP, Callable[[list[Any], int | None], Awaitable[None]]]

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

    def _update_callback_map(self) -> None:
        super()._update_callback_map()
        batched: set[str] = getattr(self.app, "batch_topics", set())
        index = self._tp_index
        self._tp_to_batch = {tp: _batch_handler(self, tp, chans) for tp, chans in index.items() if tp.topic in batched}

    async def deliver_batch(self, tp: TP, records: list[Any], generation: int | None) -> None:
        """Hand ``records`` (one partition's, in order) to its channels as one ``RecordBatch``."""
        if self._tp_to_callback_lock.locked():  # the index is being rebuilt: wait for it
            async with self._tp_to_callback_lock:
                pass
        handler = getattr(self, "_tp_to_batch", {}).get(tp)
        if handler is not None:  # else no agent reads this partition (Faust's per-record path: the same)
            await handler(records, generation)


def _putter(app: Any, tp: TP) -> Callable[[Any, Any, Any], Awaitable[None]]:
    """How a delivery puts an event into a channel's queue: at once when there is room (with
    Faust's pressure callbacks), else awaited in the delivery itself (an interrupted delivery
    cancels the put)."""
    consumer_on_buffer_full = app.consumer.on_buffer_full
    consumer_on_buffer_drop = app.consumer.on_buffer_drop
    on_topic_buffer_full = app.sensors.on_topic_buffer_full

    def on_pressure_high() -> None:
        on_topic_buffer_full(tp)
        consumer_on_buffer_full(tp)

    def on_pressure_drop() -> None:
        consumer_on_buffer_drop(tp)

    async def put(queue: Any, event: Any, chan: Any) -> None:
        if queue.full():
            on_topic_buffer_full(tp)
            try:
                await chan.put(event)
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if task is None or task.cancelling():  # the delivery interrupted, or the fetcher stopping
                    raise
                # Not this task cancelled but the put: a queue cleared when the flow resumes after a
                # rebalance (mode's ``ThrowableQueue.clear`` cancels its waiting putters). The event
                # is dropped, as Faust drops it (its put ran in a task of its own); letting the
                # error through ended the fetcher for good, silently (the rebalance test's hang).
                log.info("a record of %s[%d] waiting for room in a queue was dropped: the queue was cleared",
                         tp.topic, tp.partition)  # fmt: skip
        else:
            queue.put_nowait_enhanced(event, on_pressure_high=on_pressure_high, on_pressure_drop=on_pressure_drop)

    return put


async def _ready(app: Any) -> None:
    """Wait for what a delivery must wait for: flow control suspended, the producer's buffer full."""
    if not app.flow_control.is_active():
        await app.flow_control.acquire()
    buffer = app.producer.buffer
    if buffer.size > buffer.max_messages:
        await buffer.wait_until_ebb()


def _batch_handler(conductor: Conductor, tp: TP, channels: MutableSet[Any]) -> Callable[..., Awaitable[None]]:
    """The delivery of a partition's fetched records as one event to each channel of ``tp``: its
    value a ``RecordBatch``, its message the last record's (Faust tracks it, checks its generation
    and counts it; the agent acknowledges the rest by offset)."""
    app = conductor.app
    to_message = app.consumer._to_message
    put = _putter(app, tp)

    async def on_batch(records: list[Any], generation: int | None) -> None:
        await _ready(app)
        n = len(channels)
        if not n:
            return
        message = to_message(tp, records[-1])
        message.generation_id = generation  # the fetch's: a stream skips a batch from before a rebalance
        message.incref(n)
        batch = RecordBatch(tp, records)
        for chan in channels:
            await put(chan.queue, app.create_event(message.key, batch, message.headers, message), chan)

    return on_batch


def _lean_handler(conductor: Conductor, tp: TP, channels: MutableSet[Any]) -> ConsumerCallback:
    """Faust's ``ConductorCompiler.build``, the waits awaited only when needed (module docstring)."""
    app = conductor.app
    flow_active = app.flow_control.is_active
    producer_buffer = app.producer.buffer

    put = _putter(app, tp)

    async def on_message(message: Message) -> None:
        if not flow_active() or producer_buffer.size > producer_buffer.max_messages:
            await _ready(app)  # checked first: awaiting it for every record would cost a coroutine
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
