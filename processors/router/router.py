"""The order router's loop: consume a command, check it, call the venue, answer on the event topic.

**Never twice.** A create's client order id is derived from its command id
(``client_order_id``), so the venue itself recognises a repeat. Answers (events), the router's
order state and the command offsets are committed together in one Kafka transaction, every
``commit_interval_ms``: after a crash, a command whose answer was committed is recognised from
the state (``answered``) and skipped; one whose answer was not is executed again, and for a
create that might already have reached the venue (it lies below the end of the partition as it
was when the router took it over) the venue is asked for the order first.

**Never lost.** A create that times out or gets a 5xx is never resent blindly: an
UNKNOWN_OUTCOME event says so at once, then the venue is asked for the order by client order id
until it answers or the request's recvWindow has passed (after which the venue can no longer
execute it), and the resolution is published. Every command gets exactly one outcome event
(any status but UNKNOWN_OUTCOME) with its command id.

**Ordered per order, parallel across orders.** Commands are keyed by order id; each order's
commands run one after the other (a lock per order), different orders' concurrently, so one
slow venue call does not hold up the others. A partition's offset is committed only up to its
oldest command still running.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import threading
import time
from collections import OrderedDict, defaultdict, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from typing import TypeVar

from confluent_kafka import (
    OFFSET_BEGINNING,
    TIMESTAMP_CREATE_TIME,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)

from processors.router import orders as book_events
from processors.router.checks import CheckFailed, PreTradeChecks, Rejection, invalid
from processors.router.locks import KeyedLocks
from processors.router.market import MarketView
from processors.router.orders import (
    OrderBook,
    answered_by,
    event,
    merge,
    new_state,
    now_us,
    rejected_state,
    with_venue,
)
from processors.router.settings import RouterSettings
from producers.venues.trading import (
    ON_REQUEST,
    Amend,
    OrderRequest,
    TradingClient,
    VenueOrder,
    client_order_id,
)
from producers.venues.user_stream import BalanceUpdate, OrderUpdate, UserStream
from tickflow import topics
from tickflow.codec import AvroCodec
from tickflow.config import KafkaSettings
from tickflow.errors import (
    CodecError,
    DuplicateOrder,
    OrderRejected,
    RateLimited,
    ReplaceFailed,
    UnknownOrder,
    UnknownOutcome,
    VenueError,
    VenueUnavailable,
)
from tickflow.events import (
    AmendOrder,
    Balance,
    CancelOrder,
    CreateOrder,
    DeadLetter,
    Event,
    Instrument,
    OrderCommand,
    OrderEvent,
    OrderState,
    OrderStatus,
    RejectReason,
)
from tickflow.kafka_retry import ask_until
from tickflow.producer import PARTITIONER

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Commands handled at once; past this the router stops consuming until ``RESUME_AT`` are left:
#: consuming again in batches, not one command whenever one finishes (a fetch each costs more
#: than the command's own work).
MAX_IN_FLIGHT = 512
RESUME_AT = MAX_IN_FLIGHT - 128
#: Seconds a rebalance may wait for the revoked partitions' running commands to finish.
HAND_OVER = 20.0
#: How long a transaction may stay open before the broker aborts it. Ours last milliseconds; a
#: router killed in the middle of one leaves its offsets pending, and the next owner of its
#: partitions cannot read where to start until the broker aborts it (10 s, as Kafka Streams sets
#: for exactly-once, plus the broker's cleanup interval, 10 s by default).
TRANSACTION_TIMEOUT_MS = 10_000
#: Transactions aborted in a row (each retried without its offsets) before the router gives up.
TRANSACTION_ATTEMPTS = 6
#: How long a newly assigned partition's committed offset is asked for before the router gives up
#: (and stops, loudly): beyond a dead owner's open transaction, something is wrong.
ASSIGN_TIMEOUT = 120.0
#: Latency samples kept for the status percentiles.
SAMPLES = 20_000


@dataclass
class RouterStats:
    commands: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    rejected_by_rule: dict[str, int] = field(default_factory=dict)
    repeats_skipped: int = 0
    unknown_outcomes: int = 0
    recovered_by_query: int = 0
    #: Creates and amends asked about at the venue before sending, because a previous router may
    #: have sent them (below its reservation).
    recovery_queries: int = 0
    dead_letters: int = 0
    internal_errors: int = 0
    transactions: int = 0
    reconciled: int = 0
    stream_fills: int = 0
    stream_unmatched: int = 0
    in_flight: int = 0
    #: Seconds from a command consumed to its first venue request handed to the HTTP client, less
    #: the time that request waited for the venue (``venue_wait``: its rate budgets, a free
    #: connection while all were busy with earlier requests): the router's own overhead.
    send_latency: deque[float] = field(default_factory=lambda: deque(maxlen=SAMPLES))
    venue_wait: deque[float] = field(default_factory=lambda: deque(maxlen=SAMPLES))
    #: Of ``send_latency``, the seconds a command waited for its turn: from consumed (with the
    #: batch it came in) to the router starting on it, behind the commands ahead of it.
    queued: deque[float] = field(default_factory=lambda: deque(maxlen=SAMPLES))
    #: Seconds from a command produced (its record's timestamp, by its producer's clock) to
    #: consumed here: Kafka's delivery, for context (a burst of commands comes from there).
    delivery: deque[float] = field(default_factory=lambda: deque(maxlen=SAMPLES))

    def outcome(self, status: OrderStatus, rule: str | None) -> None:
        self.outcomes[status.value] = self.outcomes.get(status.value, 0) + 1
        if rule:
            self.rejected_by_rule[rule] = self.rejected_by_rule.get(rule, 0) + 1


#: The offsets' metadata that carries a partition's reservation (see ``_Partition``).
RESERVED = "tickflow.reserved="


def _again(call: Callable[[float], T], what: str) -> T:
    """A transactional call, made again while it fails with a retriable error (librdkafka: "the
    application may retry" the very call), for a minute at most."""
    return ask_until(call, what, within=60.0, attempt=30.0, retry=lambda exc: exc.args[0].retriable(),
                     level=logging.WARNING)  # fmt: skip


def _reservation(metadata: str | None) -> int | None:
    if metadata and metadata.startswith(RESERVED) and metadata[len(RESERVED) :].isdigit():
        return int(metadata[len(RESERVED) :])
    return None


class _Partition:
    """A partition's commands in flight, for the offset to commit (the oldest not yet done), and
    its reservation: the router starts a command only below the offset that its committed
    transactions reserved, so whatever a crashed router may have sent lies between the committed
    offset and its reservation, and only those creates need asking the venue about."""

    def __init__(self, base: int, reserved: int, recover_below: int) -> None:
        self.offsets: OrderedDict[int, bool] = OrderedDict()
        self.commit: int | None = None
        #: Where the partition resumed (its committed offset) when this router took it.
        self.base = base
        #: Commands at offsets below this may start: a committed transaction reserved them.
        self.reserved = reserved
        #: Commands below this (the partition's end when taken over, or the previous owner's
        #: reservation) may have been run by a previous owner whose answer was never committed.
        self.recover_below = recover_below
        #: One past the last command fetched.
        self.fetched = base
        #: Being handed over or shut down: nothing more starts, the reservation shrinks to ``fetched``.
        self.closing = False

    def started(self, offset: int) -> None:
        self.offsets[offset] = False

    def done(self, offset: int) -> None:
        if offset in self.offsets:
            self.offsets[offset] = True
        while self.offsets:
            first, finished = next(iter(self.offsets.items()))
            if not finished:
                break
            self.offsets.popitem(last=False)
            self.commit = first + 1


class OrderRouter:
    def __init__(
        self,
        settings: RouterSettings,
        kafka: KafkaSettings,
        codec: AvroCodec,
        clients: dict[tuple[str, str], TradingClient],
        market: MarketView,
        streams: dict[tuple[str, str], UserStream] | None = None,
    ) -> None:
        self.settings = settings
        self.kafka = kafka
        self.codec = codec
        self.clients = clients
        self.market = market
        self.checks = PreTradeChecks(settings, market)
        self.book = OrderBook()
        self.stats = RouterStats()
        #: Events and states to commit with the next transaction: (topic, event).
        self._outbox: list[tuple[str, Event]] = []
        #: The latest balance per (account, venue, asset) since the last transaction, and when it came.
        self._balances: dict[tuple[str, str, str], tuple[BalanceUpdate, int]] = {}
        self._partitions: dict[tuple[str, int], _Partition] = {}
        #: Each order's lock: its commands, and the stream reports that come while one runs, in turn.
        self._locks = KeyedLocks()
        self._tasks: set[asyncio.Task] = set()
        self._background: set[asyncio.Future] = set()
        #: The consumer's thread (``_fetch_forever``): fetches while there is room for more commands
        #: in flight, hands a batch over and waits until it is taken; stops when told.
        self._fetch_room = threading.Event()
        self._fetch_room.set()
        self._taken = threading.Event()
        self._fetch_stop = threading.Event()
        #: A batch waiting for a transaction to reserve its offsets (``_start_reserved``).
        self._reserving: asyncio.Future[None] | None = None
        self._failed: asyncio.Future[None] | None = None
        self._stopping = False
        self.consumer: Consumer | None = None
        self.producer: Producer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0
        self._copartitioned = False
        self._committing = asyncio.Lock()
        self._last_offsets: list[tuple[str, int, int, int]] | None = None
        self._listeners: list[Callable[[OrderEvent], None]] = []
        self.streams = streams or {}
        #: Trade ids each open order's fills were published with (a stream may repeat itself).
        self._trades: dict[str, set[str]] = {}
        #: Stream reports that came before the create's answer (an order that fills at once), by
        #: (account, venue, client order id): applied as soon as the answer is published.
        self._early: defaultdict[tuple[str, str, str], list[tuple[float, OrderUpdate]]] = defaultdict(list)

    # --- start and stop -----------------------------------------------------------------------

    def start_kafka(self) -> None:
        """Fence any previous incarnation, read the order state back, subscribe to commands."""
        s = self.settings
        # Delivery reports for failed records only: a committed transaction is the proof of delivery,
        # and a report per record costs a trip into Python (holding the GIL) inside commit_transaction.
        self.producer = Producer({**self.kafka.client_config(), "transactional.id": f"{s.group_id}.{s.instance_id}",
                                  "enable.idempotence": True, "acks": "all", "linger.ms": 1,
                                  "partitioner": PARTITIONER,
                                  "transaction.timeout.ms": TRANSACTION_TIMEOUT_MS,
                                  "delivery.report.only.error": True})  # fmt: skip
        self.producer.init_transactions(30)  # aborts what the previous incarnation left open
        for state in self._load_state():
            self.book.put(state)
        log.info("order state read back: %d orders, %d open", len(self.book.orders), len(self.book.open_orders()))
        self.consumer = Consumer({
            **self.kafka.client_config(), "group.id": s.group_id, "group.instance.id": s.instance_id,
            "enable.auto.commit": False, "isolation.level": "read_committed", "auto.offset.reset": "earliest",
            "session.timeout.ms": 10_000, "partition.assignment.strategy": "range",
        })  # fmt: skip
        topics = self.consumer.list_topics(timeout=10).topics
        counts = [len(topics[t].partitions) if t in topics else 0 for t in (s.commands_topic, s.state_topic)]
        self._copartitioned = counts[0] == counts[1] > 0
        self.consumer.subscribe([s.commands_topic], on_assign=self._on_assign, on_revoke=self._on_revoke)

    def _load_state(self, only: set[int] | None = None) -> list[OrderState]:
        """The committed order states (of the state topic's partitions ``only``, or all)."""
        topic = self.settings.state_topic
        states: list[OrderState] = []
        reader = Consumer({**self.kafka.client_config(), "group.id": f"{self.settings.group_id}-state",
                           "enable.auto.commit": False, "isolation.level": "read_committed",
                           "enable.partition.eof": True})  # fmt: skip
        try:
            partitions = reader.list_topics(topic, timeout=10).topics[topic].partitions
            left = set()
            assignment = []
            for p in partitions if only is None else [p for p in partitions if p in only]:
                low, high = reader.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
                if high > low:
                    left.add(p)
                    assignment.append(TopicPartition(topic, p, OFFSET_BEGINNING))
            reader.assign(assignment)
            while left:
                msg = reader.poll(1.0)
                if msg is None:
                    continue
                if msg.error():
                    if msg.error().code() == KafkaError._PARTITION_EOF:
                        left.discard(msg.partition())
                    continue
                state = self.codec.decode(msg.value())
                if isinstance(state, OrderState):
                    states.append(state)
        finally:
            reader.close()
        return states

    # Rebalances. The callbacks run in the consumer's thread (inside ``consume``); what they change
    # of the router's state is handed to the event loop, which runs it before the first command of
    # the new assignment (both go through the loop's queue, in that order).

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        try:
            resumed = self._resume_points(consumer, partitions)
            # Orders of these partitions may have been answered by another router since this one
            # read the state: read it again (the state topic is partitioned like the commands).
            states = self._load_state({tp.partition for tp in partitions} if self._copartitioned else None)
        except Exception as exc:  # where to start, or what was answered, is unknown: nothing may start
            self._loop.call_soon_threadsafe(self._stop_consuming, exc)  # type: ignore[union-attr]
            return
        self._loop.call_soon_threadsafe(self._assigned, resumed, states)  # type: ignore[union-attr]
        log.warning("command partitions assigned: %s (%d order states read)", [tp.partition for tp in partitions],
                    len(states))  # fmt: skip

    def _resume_points(self, consumer: Consumer,
                       partitions: list[TopicPartition]) -> list[tuple[tuple[str, int], _Partition]]:  # fmt: skip
        """Each partition's key, and where it resumes (``_Partition``)."""
        resumed = []
        # Partitions taken over from a router killed inside a transaction have their offsets
        # pending in it until the broker aborts it (``TRANSACTION_TIMEOUT_MS``): asked again.
        patiently = partial(ask_until, within=ASSIGN_TIMEOUT, attempt=10.0, retry=lambda exc: True,
                            level=logging.WARNING)  # fmt: skip
        committed = patiently(lambda timeout: consumer.committed(partitions, timeout=timeout),
                              "the committed offsets of the assigned command partitions (a previous "
                              "owner's transaction may still be open)")  # fmt: skip
        for tp, done in zip(partitions, committed, strict=True):
            low, high = patiently(lambda timeout, tp=tp: consumer.get_watermark_offsets(tp, timeout=timeout),
                                  f"the offsets of command partition {tp.partition}")  # fmt: skip
            base = done.offset if done.offset >= 0 else low
            # What a previous owner may have sent: below its reservation (or, from a router that
            # reserved nothing, anything up to the partition's end).
            previous = _reservation(done.metadata)
            recover_below = min(high, previous) if previous is not None else high
            resumed.append(((tp.topic, tp.partition), _Partition(base, max(base, previous or base), recover_below)))
        return resumed

    def _assigned(self, resumed: list[tuple[tuple[str, int], _Partition]], states: list[OrderState]) -> None:
        for key, partition in resumed:
            self._partitions.setdefault(key, partition)
        for state in states:
            current = self.book.get(state.order_id)
            if current is None or state.updated_ts > current.updated_ts:
                self.book.put(state)

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Before the partitions go, their running commands finish and their answers, state and
        offsets are committed: the rebalance waits for that (up to ``HAND_OVER`` seconds), so
        the next owner reads a state that has them answered. (At shutdown the loop has already
        finished and committed everything.)"""
        keys = [(tp.topic, tp.partition) for tp in partitions]
        log.warning("command partitions revoked: %s", [tp.partition for tp in partitions])
        if self._loop is None or threading.get_ident() == self._loop_thread:
            for key in keys:
                self._partitions.pop(key, None)
            return
        handed = asyncio.run_coroutine_threadsafe(self._hand_over(keys), self._loop)
        try:
            handed.result(HAND_OVER + 5)
        except Exception as exc:  # the next owner asks the venue for what may have been sent
            log.warning("partitions %s handed over unfinished: %r", [k[1] for k in keys], exc)

    async def _hand_over(self, keys: list[tuple[str, int]]) -> None:
        for key in keys:
            if (part := self._partitions.get(key)) is not None:
                part.closing = True
        deadline = time.monotonic() + HAND_OVER
        while time.monotonic() < deadline and any(
            (part := self._partitions.get(key)) is not None and part.offsets for key in keys
        ):
            await asyncio.sleep(0.01)
        await self._commit_now()
        for key in keys:
            self._partitions.pop(key, None)

    async def run(self, stop: asyncio.Event) -> None:
        """Consume and answer commands until ``stop`` is set; then finish what runs and commit."""
        assert self.consumer is not None
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        committer = asyncio.create_task(self._commit_loop())
        reconciler = asyncio.create_task(self._reconcile_loop())
        streams_stop = asyncio.Event()
        streams = [asyncio.create_task(self._follow(key, stream, streams_stop)) for key, stream in self.streams.items()]
        # Set when consuming cannot go on safely (the consumer failed, or commands could not be
        # reserved): nothing more is fetched, and the router stops with that error once what runs
        # is answered and committed. A restart carries on from the committed offsets.
        failed = self._failed = self._loop.create_future()
        fetcher = threading.Thread(target=self._fetch_forever, name="router-consumer", daemon=True)
        fetcher.start()
        try:
            stopped = asyncio.ensure_future(stop.wait())
            await asyncio.wait([stopped, failed, committer], return_when=asyncio.FIRST_COMPLETED)
            stopped.cancel()
            if failed.done():
                failed.result()  # raised here: the router stops
            if committer.done():
                committer.result()  # transactions keep failing: the router stops
        finally:
            self._fetch_stop.set()
            self._taken.set()
            await asyncio.to_thread(fetcher.join)
            if self._reserving is not None:
                await asyncio.wait([self._reserving])
            self._stopping = True
            streams_stop.set()
            if streams:
                await asyncio.wait(streams, timeout=10)
            reconciler.cancel()
            if self._tasks:
                await asyncio.wait(self._tasks, timeout=30)
            committer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await committer
            await self._commit_now()
            self.consumer.close()

    def _fetch_forever(self) -> None:
        """The consumer's own thread: fetch while there is room, hand each batch to the loop, and
        wait until the loop has taken it (the loop starts its commands in the order fetched; a
        rebalance callback, which runs in here, hands its changes over between two batches).
        One thread for the router's life, instead of one executor job per fetch: at a few
        hundred commands a second a fetch is often a single command."""
        loop = self._loop
        assert loop is not None
        try:
            while not self._fetch_stop.is_set():
                if not self._fetch_room.wait(0.05):
                    continue
                messages = self._fetch()
                if not messages:
                    continue
                self._taken.clear()
                loop.call_soon_threadsafe(self._take, messages)
                self._taken.wait()
        except:  # noqa: E722 - also what is no Exception: confluent-kafka re-raises a failed callback as a KafkaError
            # The consumer is unusable: the router must stop, loudly (never sit there, consuming nothing).
            failure = sys.exc_info()[1]
            exc = failure if isinstance(failure, BaseException) else KafkaException(failure)
            loop.call_soon_threadsafe(self._stop_consuming, exc)

    def _take(self, messages: list[Message]) -> None:
        if self._fetch_stop.is_set():  # stopping (or failed): these start nowhere; the next owner reads them
            self._taken.set()
            return
        consumed_at = time.perf_counter()
        commands, reserve = [], False
        try:
            for msg in messages:
                if (error := msg.error()) is not None:
                    if error.fatal() or error.code() == KafkaError._FATAL:  # fenced (same instance id), or worse
                        self._stop_consuming(KafkaException(error))
                        break
                    if error.code() != KafkaError._PARTITION_EOF:
                        log.warning("command consumer: %s", error)
                    continue
                key, offset = (msg.topic(), msg.partition()), msg.offset()
                part = self._partitions.get(key)
                if part is None:  # not assigned through _on_assign (never expected): nothing reserved
                    part = self._partitions[key] = _Partition(offset, offset, offset)
                part.fetched = max(part.fetched, offset + 1)
                reserve = reserve or offset >= part.reserved
                commands.append((msg, part))
        except BaseException:
            self._taken.set()
            raise
        if reserve:  # beyond the reservation: a transaction reserves further before any starts
            self._reserving = asyncio.ensure_future(self._start_reserved(commands, consumed_at))
            return
        for msg, part in commands:
            self._start(msg, part, consumed_at)
        self._taken.set()

    async def _start_reserved(self, commands: list[tuple[Message, _Partition]], consumed_at: float) -> None:
        try:
            for attempt in range(50):
                await self._commit_now()
                if all(msg.offset() < part.reserved for msg, part in commands):
                    break
                await asyncio.sleep(min(0.01 * 2**attempt, 1.0))  # an aborted transaction reserved nothing
            else:
                raise RuntimeError("no transaction could reserve the commands fetched")
            for msg, part in commands:
                self._start(msg, part, consumed_at)
        except BaseException as exc:
            # None of these commands started; none after them may (their offsets would be
            # committed past these).
            self._stop_consuming(exc)
            raise
        finally:
            self._reserving = None
            self._taken.set()

    def _stop_consuming(self, exc: BaseException) -> None:
        """Consuming cannot go on safely: fetch nothing more, and stop the router with ``exc``
        once what runs is answered (``run``)."""
        log.error("the router stops consuming: %s", exc)
        self._fetch_stop.set()
        if self._failed is not None and not self._failed.done():
            self._failed.set_exception(exc)

    def _fetch(self) -> list[Message]:
        """What the consumer has: wait (50 ms at most) for one command, then take whatever else is
        there already. Not ``consume(500, 0.05)``, which waits to fill its batch: a command would
        wait for the ones after it, then for the ones before it in the loop."""
        assert self.consumer is not None
        first = self.consumer.consume(1, 0.05)
        return first + self.consumer.consume(499, 0) if first else first

    async def aclose(self) -> None:
        for client in self.clients.values():
            await client.aclose()

    # --- one command --------------------------------------------------------------------------

    def _start(self, msg: Message, partition: _Partition, consumed_at: float) -> None:
        partition.started(msg.offset())
        task = asyncio.create_task(self._handle(msg, consumed_at, partition))
        self._tasks.add(task)
        self.stats.in_flight = len(self._tasks)
        if len(self._tasks) >= MAX_IN_FLIGHT:
            self._fetch_room.clear()
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        self.stats.in_flight = len(self._tasks)
        if len(self._tasks) <= RESUME_AT and not self._fetch_room.is_set():
            self._fetch_room.set()

    async def _handle(self, msg: Message, consumed_at: float, partition: _Partition) -> None:
        self.stats.queued.append(time.perf_counter() - consumed_at)
        kind, produced_ms = msg.timestamp()
        if kind == TIMESTAMP_CREATE_TIME:
            self.stats.delivery.append(time.time() - produced_ms / 1000)
        try:
            try:
                command = self.codec.decode_typed(msg.value())
            except CodecError as exc:
                self._dead_letter(msg, type(exc).__name__, str(exc))
                return
            if not isinstance(command, OrderCommand):
                self._dead_letter(msg, "UnexpectedRecord", f"{type(command).__name__} is not an order command")
                return
            recovering = msg.offset() < partition.recover_below
            await self.handle(command, recovering=recovering, consumed_at=consumed_at)
        finally:
            partition.done(msg.offset())

    async def handle(
        self, command: OrderCommand, *, recovering: bool = False, consumed_at: float | None = None
    ) -> None:
        """Answer one command: exactly one outcome event, unless it was answered before."""
        self.stats.commands += 1
        consumed_at = time.perf_counter() if consumed_at is None else consumed_at
        async with self._locks.hold(command.order_id):
            if self.book.answered(command):
                self.stats.repeats_skipped += 1
                log.debug("%s: answered before, skipped", command.command_id)
                return
            first = [True]

            def sent(waited_for_venue: float) -> None:
                if first[0]:
                    first[0] = False
                    total = time.perf_counter() - consumed_at
                    self.stats.send_latency.append(total - waited_for_venue)
                    self.stats.venue_wait.append(waited_for_venue)

            ON_REQUEST.set(sent)
            try:
                await self._execute(command, recovering)
            except CheckFailed as failed:
                self._reject(command, failed.rejection)
            except Exception as exc:  # a bug: answer the command anyway, and say so loudly
                self.stats.internal_errors += 1
                log.exception("command %s of order %s failed inside the router", command.command_id, command.order_id)
                self._reject(command, Rejection(RejectReason.OTHER, "internal_error", f"router error: {exc!r}"))

    async def _execute(self, command: OrderCommand, recovering: bool) -> None:
        instrument = self.checks.command(command, now_us())
        if isinstance(command, CreateOrder):
            await self._create(command, instrument, recovering)
        elif isinstance(command, CancelOrder):
            await self._cancel(command, instrument)
        elif isinstance(command, AmendOrder):
            await self._amend(command, instrument, recovering)

    async def _create(self, command: CreateOrder, instrument: Instrument, recovering: bool) -> None:
        existing = self.book.get(command.order_id)
        if existing is not None and (
            existing.venue_order_id is not None or existing.status is not OrderStatus.REJECTED
        ):
            message = f"order id already used (order placed as {existing.client_order_id})"
            raise CheckFailed(Rejection(RejectReason.DUPLICATE, "order_id", message))
        self.checks.create(command, instrument, self.book.exposure(command.account))
        cid = client_order_id(command.command_id)
        state = new_state(command, cid, answered=existing.answered if existing else [])
        client = self.clients[(command.account, command.venue)]
        symbol = instrument.venue_symbol
        if recovering:  # a previous incarnation may have sent it: ask before sending
            self.stats.recovery_queries += 1
            found = await self._ask(lambda: client.query(symbol, cid))
            if found is not None:
                self.stats.recovered_by_query += 1
                log.warning("%s: the venue already has order %s (sent before a restart): answered from it, "
                            "not sent again", command.command_id, cid)  # fmt: skip
                self._answer(command, with_venue(state, found, command.command_id), found.status, found)
                return
        request = OrderRequest(symbol=symbol, client_order_id=cid, side=command.side, order_type=command.order_type,
                               size=command.size, price=command.price, time_in_force=command.time_in_force,
                               reduce_only=command.reduce_only)  # fmt: skip
        sent_at = time.time()
        try:
            order = await self._send(command, lambda: client.create(request))
        except DuplicateOrder as exc:  # the venue has it already: what is it?
            order = await self._ask(lambda: client.query(symbol, cid))
            if order is None:
                self._venue_rejected(command, state, exc)
                return
            self.stats.recovered_by_query += 1
        except OrderRejected as exc:
            self._venue_rejected(command, state, exc)
            return
        except UnknownOutcome as exc:
            order = await self._resolve(command, state, exc, lambda: client.query(symbol, cid), sent_at)
            if order is None:
                return
        self._answer(command, with_venue(state, order, command.command_id), order.status, order)

    async def _cancel(self, command: CancelOrder, instrument: Instrument) -> None:
        state = self._own_order(command)
        client = self.clients[(command.account, command.venue)]
        symbol, cid, venue_id = instrument.venue_symbol, state.client_order_id, state.venue_order_id
        while True:
            try:
                order = await self._send(command, lambda: client.cancel(symbol, cid, venue_id))
                break
            except UnknownOrder as exc:  # filled or gone in the meantime: say what it is now
                found = await self._ask(lambda: client.query(symbol, cid))
                if found is not None:
                    state = with_venue(state, found)
                self._venue_rejected(command, state, exc)
                return
            except OrderRejected as exc:
                self._venue_rejected(command, state, exc)
                return
            except UnknownOutcome as exc:  # canceling twice does no harm: ask, and cancel again if still open
                self._unknown(command, state, exc)
                found = await self._ask(lambda: client.query(symbol, cid))
                if found is not None and not found.open:
                    order = found
                    break
        status = OrderStatus.CANCELED if order.status is OrderStatus.CANCELED else order.status
        self._answer(command, with_venue(state, order, command.command_id), status, order)

    async def _amend(self, command: AmendOrder, instrument: Instrument, recovering: bool) -> None:
        state = self._own_order(command)
        size, price = self.checks.amend(command, state.side, state.size, state.price, state.filled_size, instrument,
                                        self.book.exposure(command.account))  # fmt: skip
        client = self.clients[(command.account, command.venue)]
        symbol = instrument.venue_symbol
        new_cid = client_order_id(command.command_id, salt="amend")
        amend = Amend(symbol=symbol, client_order_id=state.client_order_id, venue_order_id=state.venue_order_id,
                      side=state.side, price=price, size=size, filled_size=state.filled_size,
                      new_client_order_id=new_cid, time_in_force=state.time_in_force)  # fmt: skip

        async def amended_already() -> VenueOrder | None:
            """The order as amended, if the venue has it so (a replacement, or the same order changed)."""
            replacement = await self._ask(lambda: client.query(symbol, new_cid))
            if replacement is not None:
                return replacement
            same = await self._ask(lambda: client.query(symbol, state.client_order_id))
            return same if same is not None and same.price == price and same.size == size else None

        if recovering:
            self.stats.recovery_queries += 1
        if recovering and (done := await amended_already()) is not None:
            self._answer(command, with_venue(state, done, command.command_id), OrderStatus.AMENDED, done)
            return
        sent_at = time.time()
        try:
            order = await self._send(command, lambda: client.amend(amend))
        except ReplaceFailed as exc:
            if exc.old_canceled:  # the old order is gone, its replacement refused
                state = answered_by(state, command.command_id, status=OrderStatus.CANCELED)
                self._publish(
                    event(state, OrderStatus.CANCELED, command_id=None, venue_message=exc.venue_message), state
                )
            self._venue_rejected(command, state, exc)
            return
        except OrderRejected as exc:
            self._venue_rejected(command, state, exc)
            return
        except UnknownOutcome as exc:
            order = await self._resolve(command, state, exc, amended_already, sent_at)
            if order is None:
                return
        self._answer(command, with_venue(state, order, command.command_id), OrderStatus.AMENDED, order)

    def _own_order(self, command: OrderCommand) -> OrderState:
        state = self.book.get(command.order_id)
        if state is None:
            raise CheckFailed(Rejection(RejectReason.UNKNOWN_ORDER, "order_id", "no order by this id"))
        if state.account != command.account or state.venue != command.venue or state.symbol != command.symbol:
            raise invalid("order_mismatch", "account, venue or symbol differ from the order's")
        if not state.open:
            raise CheckFailed(Rejection(RejectReason.UNKNOWN_ORDER, "order_closed", f"the order is {state.status}"))
        return state

    # --- talking to the venue -----------------------------------------------------------------

    async def _send(self, command: OrderCommand, call: Callable[[], Awaitable[T]]) -> T:
        """``call()``, again after a rate limit or an unreachable venue (nothing was executed),
        while the command is young enough; then the error stands."""
        attempt = 0
        while True:
            attempt += 1
            try:
                return await call()
            except (RateLimited, VenueUnavailable) as exc:
                age = (now_us() - command.issued_ts) / 1e6
                wait = exc.retry_after if isinstance(exc, RateLimited) else min(0.1 * 2**attempt, 2.0)
                if attempt >= 8 or age + wait > self.settings.max_command_age:
                    raise OrderRejected(str(exc), exc.venue_message) from exc
                log.warning("%s: %s; again in %.1f s", command.command_id, exc, wait)
                await asyncio.sleep(wait)

    async def _ask(self, query: Callable[[], Awaitable[VenueOrder | None]]) -> VenueOrder | None:
        """``query()``, repeated while the venue cannot answer: what it says is what we publish."""
        attempt = 0
        while True:
            attempt += 1
            try:
                return await query()
            except (RateLimited, VenueUnavailable, UnknownOutcome) as exc:
                wait = exc.retry_after if isinstance(exc, RateLimited) else min(0.1 * 2**attempt, 2.0)
                log.warning("query failed (%s); again in %.1f s", exc, wait)
                await asyncio.sleep(wait)

    async def _resolve(
        self, command: OrderCommand, state: OrderState, exc: UnknownOutcome,
        find: Callable[[], Awaitable[VenueOrder | None]], sent_at: float,
    ) -> VenueOrder | None:  # fmt: skip
        """After an unknown outcome: say so, then ask until the venue has the order or can no
        longer execute the request; None (and a REJECTED answer) when it never did."""
        self._unknown(command, state, exc)
        client = self.clients[(command.account, command.venue)]
        recv_window = getattr(client, "recv_window_ms", 5000) / 1000
        deadline = sent_at + recv_window + self.settings.resolve_margin
        delay = 0.05
        while True:
            try:
                found = await find()
            except VenueError as error:
                log.warning("%s: resolving the unknown outcome: %s", command.command_id, error)
                found = None
            if found is not None:
                self.stats.recovered_by_query += 1
                return found
            if time.time() > deadline:
                break
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)
        self._reject(command, Rejection(RejectReason.VENUE_ERROR, "unknown_outcome",
                                        "the venue has no such order after the request's recvWindow: not executed"),
                     state)  # fmt: skip
        return None

    # --- answering ----------------------------------------------------------------------------

    def _answer(self, command: OrderCommand, state: OrderState, status: OrderStatus, order: VenueOrder) -> None:
        self._publish(event(state, status, command_id=command.command_id, exchange_ts=order.exchange_ts), state)
        self.stats.outcome(status, None)

    def _unknown(self, command: OrderCommand, state: OrderState, exc: UnknownOutcome) -> None:
        self.stats.unknown_outcomes += 1
        message = exc.venue_message or str(exc)
        self._publish(event(state, OrderStatus.UNKNOWN_OUTCOME, command_id=command.command_id,
                            reason=RejectReason.VENUE_ERROR, venue_message=message), None)  # fmt: skip

    def _venue_rejected(self, command: OrderCommand, state: OrderState, exc: VenueError) -> None:
        reason = RejectReason(exc.reason) if exc.reason in RejectReason.__members__ else RejectReason.OTHER
        state = answered_by(state, command.command_id)
        self._publish(event(state, OrderStatus.REJECTED, command_id=command.command_id, reason=reason,
                            venue_message=exc.venue_message or str(exc)), state)  # fmt: skip
        self.stats.outcome(OrderStatus.REJECTED, None)

    def _reject(self, command: OrderCommand, rejection: Rejection, state: OrderState | None = None) -> None:
        """A command refused before or without reaching the venue. The order's state (a
        placeholder when there is no order) records the command as answered, so a repeat of it
        after a restart is not answered twice."""
        if state is None:
            state = self.book.get(command.order_id) or rejected_state(command)
        state = answered_by(state, command.command_id)
        self._publish(event(state, OrderStatus.REJECTED, command_id=command.command_id, reason=rejection.reason,
                            rule=rejection.rule, venue_message=rejection.message), state)  # fmt: skip
        self.stats.outcome(OrderStatus.REJECTED, rejection.rule)

    def _publish(self, evt: OrderEvent, state: OrderState | None) -> None:
        if evt.command_id is not None:
            log.debug("%s: %s (order %s)", evt.command_id, evt.status.name, evt.order_id)
        self._outbox.append((self.settings.events_topic, evt))
        if state is not None:
            self.book.put(state)
            self._outbox.append((self.settings.state_topic, state))
            early = self._early.pop((state.account, state.venue, state.client_order_id), None) if self._early else None
            for _, update in early or ():  # the caller holds the order's lock (or nobody does)
                self._apply_now(state.order_id, update)
        for listener in self._listeners:
            listener(evt)

    def on_event(self, listener: Callable[[OrderEvent], None]) -> None:
        self._listeners.append(listener)

    def _dead_letter(self, msg: Message, error_type: str, reason: str) -> None:
        self.stats.dead_letters += 1
        log.warning("command at %s[%d]@%d is unreadable, dead-lettered: %s", msg.topic(), msg.partition(),
                    msg.offset(), reason)  # fmt: skip
        letter = DeadLetter(source_topic=msg.topic(), source_partition=msg.partition(), source_offset=msg.offset(),
                            source_key=msg.key(), source_value=msg.value(), error_type=error_type, reason=reason[:1000],
                            consumer=self.settings.group_id, ts=now_us())  # fmt: skip
        self._outbox.append((topics.DEAD_LETTER, letter))

    # --- transactions -------------------------------------------------------------------------

    async def _commit_loop(self) -> None:
        interval = self.settings.commit_interval_ms / 1000
        while True:
            await asyncio.sleep(interval)
            await self._commit_now()

    def _offsets(self) -> list[tuple[TopicPartition, _Partition, int]]:
        """Each partition's offset to commit, with its reservation in the metadata: ``reserve_ahead``
        past the last command fetched (never less than already reserved); when the partition is
        being handed over or the router stops, just the last fetched (nothing more will start)."""
        ahead = self.settings.reserve_ahead
        offsets = []
        for (topic, number), part in self._partitions.items():
            offset = part.commit if part.commit is not None else part.base
            if part.closing or self._stopping:
                reserve = max(offset, part.fetched)
            else:
                reserve = max(part.reserved, part.fetched + ahead)
            offsets.append((TopicPartition(topic, number, offset, metadata=f"{RESERVED}{reserve}"), part, reserve))
        return offsets

    def _coalesced(self, outbox: list[tuple[str, Event]]) -> list[tuple[str, Event]]:
        """The outbox with, on the compacted topics (order state, balances), only the last record
        per key: compaction would keep only that one anyway, and one transaction's records land
        together. Events are all kept, in order."""
        compacted = (self.settings.state_topic, self.settings.balances_topic)
        last: dict[tuple[str, str], int] = {}
        for n, (topic, item) in enumerate(outbox):
            if topic in compacted:
                last[(topic, item.key)] = n
        if len(last) == sum(1 for topic, _ in outbox if topic in compacted):
            return outbox
        keep = set(last.values())
        return [entry for n, entry in enumerate(outbox) if entry[0] not in compacted or n in keep]

    def take_outbox(self) -> list[tuple[str, Event]]:
        """What the next transaction would commit, taken out (tests run the router without Kafka)."""
        if self._balances:
            topic = self.settings.balances_topic
            self._outbox.extend(
                (topic, Balance(account=account, venue=venue, asset=asset, free=update.free, locked=update.locked,
                                exchange_ts=update.exchange_ts, event_ts=event_ts))
                for (account, venue, asset), (update, event_ts) in self._balances.items()
            )  # fmt: skip
            self._balances = {}
        taken, self._outbox = self._outbox, []
        return taken

    async def _commit_now(self) -> None:
        async with self._committing:  # one transaction at a time (the loop's and a hand-over's)
            await self._commit_once()

    async def _commit_once(self) -> None:
        records = [
            (topic, *self.codec.encode_keyed(item, topic)) for topic, item in self._coalesced(self.take_outbox())
        ]
        offsets = self._offsets()
        summary = [(tp.topic, tp.partition, tp.offset, reserve) for tp, _, reserve in offsets]
        if not records and summary == self._last_offsets:
            return
        with_offsets = await asyncio.to_thread(self._transaction, records, [tp for tp, _, _ in offsets])
        log.debug("transaction committed: %d records, offsets %s", len(records),
                  summary if with_offsets else "none")  # fmt: skip
        if with_offsets:
            self._last_offsets = summary
            for _, part, reserve in offsets:
                part.reserved = reserve
        self.stats.transactions += 1

    def _transaction(self, records: list[tuple[str, str, bytes]], offsets: list[TopicPartition]) -> bool:
        """Commit ``records`` and ``offsets`` in one transaction; whether the offsets were in it
        (an aborted attempt is retried without them).

        librdkafka's rules: a call failing with a retriable error is made again as it was (never
        a new transaction: a commit that timed out may have gone through, and producing the
        records again would answer their commands twice); a failure that requires an abort is
        aborted, and the records go again in a new transaction; anything else (fenced by a
        newer incarnation, fatal) stops the router, and a restart carries on."""
        producer, consumer = self.producer, self.consumer
        assert producer is not None and consumer is not None
        for attempt in range(1, TRANSACTION_ATTEMPTS + 1):
            try:
                producer.begin_transaction()
                for topic, key, value in records:
                    while True:
                        try:
                            producer.produce(topic, value, key.encode())
                            break
                        except BufferError:
                            producer.poll(0.05)
                if offsets:
                    send = partial(producer.send_offsets_to_transaction, offsets, consumer.consumer_group_metadata())
                    _again(send, "the offsets sent to the transaction")
                _again(producer.commit_transaction, "the transaction's commit")
                return bool(offsets)
            except KafkaException as exc:
                if not exc.args[0].txn_requires_abort() or attempt == TRANSACTION_ATTEMPTS:
                    raise
                # A rebalance can make the offsets no longer ours: the records go again without
                # them (the next transaction sends the offsets the router then holds).
                log.warning("transaction aborted, retrying it without its offsets: %s", exc.args[0])
                _again(producer.abort_transaction, "the transaction's abort")
                offsets = []
        raise AssertionError("unreachable")

    # --- private streams ----------------------------------------------------------------------

    async def _follow(self, key: tuple[str, str], stream: UserStream, stop: asyncio.Event) -> None:
        """One account's private stream at one venue: fills and venue-side changes become events,
        balances go to the balance topic, and every (re)connect is followed by a reconciliation
        (what happened while the stream was down is asked of the REST API)."""
        account, venue = key

        def on_order(update: OrderUpdate) -> None:
            state = self.book.by_client_id(account, venue, update.order.client_order_id)
            if state is None:  # not ours, or its create is still being answered: kept a while
                self.stats.stream_unmatched += 1
                self._early[(account, venue, update.order.client_order_id)].append((time.monotonic(), update))
                return
            if not self._locks.busy(state.order_id):
                self._apply_now(state.order_id, update)  # nobody works on the order: no task needed
            else:
                self._spawn(self._apply_update(state.order_id, update))

        def on_balance(update: BalanceUpdate) -> None:
            # Only the latest balance of an asset is kept until the next transaction (the topic is
            # compacted, and a burst of fills reports the same asset many times over): its record
            # is made then.
            self._balances[(account, venue, update.asset)] = (update, now_us())

        def on_connected() -> None:
            self._spawn(self.reconcile(only=key))

        await stream.run(on_order, on_balance, on_connected, stop)

    def _spawn(self, coroutine: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _apply_update(self, order_id: str, update: OrderUpdate) -> None:
        """A stream report about an order a command works on: after that command."""
        async with self._locks.hold(order_id):
            self._apply_now(order_id, update)

    def _apply_now(self, order_id: str, update: OrderUpdate) -> None:
        """A stream report, applied to the order's state now: by whoever holds the order's lock,
        or when nobody does."""
        state = self.book.get(order_id)
        if state is None or state.client_order_id != update.order.client_order_id:
            return  # an order since replaced (a cancel-replace's old half)
        order, fill = update.order, update.fill
        if fill is not None:
            seen = self._trades.setdefault(order_id, set())
            if fill.trade_id is not None and fill.trade_id in seen:
                return
            if fill.trade_id is None and order.filled_size <= state.filled_size:
                return  # a cumulative report (Coinbase) of what is already counted
            if fill.trade_id is not None:
                seen.add(fill.trade_id)
            updated = merge(state, order)
            self.stats.stream_fills += 1
            self._publish(event(updated, order.status, command_id=None, exchange_ts=order.exchange_ts,
                                fill=fill), updated)  # fmt: skip
        elif not order.open and state.open and order.filled_size >= state.filled_size:
            updated = merge(state, order)  # canceled or expired at the venue's initiative
            self._publish(event(updated, order.status, command_id=None, exchange_ts=order.exchange_ts), updated)
        if not order.open:
            self._trades.pop(order_id, None)

    # --- reconciliation -----------------------------------------------------------------------

    async def _reconcile_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.reconcile_interval)
            self.book.forget_closed(self.settings.max_command_age + 60)
            cutoff = time.monotonic() - 60  # stream reports of orders that never became ours
            for key in [k for k, updates in self._early.items() if updates[-1][0] < cutoff]:
                del self._early[key]
            try:
                await self.reconcile()
            except Exception:
                log.exception("reconciliation failed; it runs again in %g s", self.settings.reconcile_interval)

    async def reconcile(self, only: tuple[str, str] | None = None) -> None:
        """Bring open orders in line with the venues: fills, cancels and expiries the router did
        not cause (and the private stream did not tell) are published as events without a
        command id. ``only``: one account at one venue (after its stream reconnected)."""
        by_client: dict[tuple[str, str], list[OrderState]] = {}
        for state in self.book.open_orders():
            if only is None or (state.account, state.venue) == only:
                by_client.setdefault((state.account, state.venue), []).append(state)
        for key, states in by_client.items():
            client = self.clients.get(key)
            if client is None:
                continue
            try:
                venue_open = {o.client_order_id: o for o in await client.open_orders()}
            except VenueError as exc:
                log.warning("reconciliation of %s at %s: %s", *key, exc)
                continue
            for state in states:
                if self._locks.busy(state.order_id):
                    continue  # a command is working on it
                order = venue_open.get(state.client_order_id)
                if order is None:
                    instrument = self.market.instrument(state.venue, state.symbol)
                    if instrument is None:
                        continue
                    try:
                        order = await client.query(instrument.venue_symbol, state.client_order_id)
                    except VenueError:
                        continue
                    if order is None:
                        continue
                # A command may have taken the order while the venue was asked: it is left to the
                # command (whose answer, made from the state it started with, would undo this).
                current = self.book.get(state.order_id)
                if current is None or not current.open or self._locks.busy(state.order_id):
                    continue
                self._reconciled(current, order)

    def _reconciled(self, state: OrderState, order: VenueOrder) -> None:
        if order.status == state.status and order.filled_size == state.filled_size:
            return
        if order.filled_size < state.filled_size:
            return  # the venue's answer is older than the fills the stream has told since
        self.stats.reconciled += 1
        updated = with_venue(state, order)
        fill = order.filled_size - state.filled_size
        last_fill = (fill, None) if fill > 0 else None
        self._publish(book_events.event(updated, order.status, command_id=None, exchange_ts=order.exchange_ts,
                                        last_fill=last_fill), updated)  # fmt: skip
