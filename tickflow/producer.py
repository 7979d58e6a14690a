"""Producing events to Kafka: confluent-kafka, idempotent, batched, with back-pressure.

- Idempotent (``enable.idempotence``, ``acks=all``): a retried batch never duplicates records, and
  each partition keeps the order records were produced in.
- Keyed by instrument (``venue:symbol``) with the murmur2 partitioner, the one Java clients and
  Faust (aiokafka) use, so every client puts one instrument in the same partition.
- Bounded in-flight buffer: when librdkafka's queue is full, ``send`` serves delivery reports
  until there is room (back-pressure) instead of growing memory without limit.
- Nothing is dropped silently: librdkafka retries failed sends until ``delivery.timeout.ms``;
  what still fails is counted, logged, kept (with its bytes, for re-sending) and raised from
  ``flush`` as ``DeliveryFailed``. Broker-level errors (all brokers down) are counted and logged.
"""

from __future__ import annotations

import copy
import itertools
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaError as RdKafkaError
from confluent_kafka import KafkaException, Message, Producer

from tickflow import avro_plan
from tickflow.codec import AvroCodec
from tickflow.config import KafkaSettings
from tickflow.errors import BrokerUnavailable, DeliveryFailed, KafkaError
from tickflow.events import Event

log = logging.getLogger(__name__)

#: Every producer's partitioner: murmur2, as Java clients and Faust (aiokafka) use. One key, one
#: partition number on every topic, whoever produced it (the router reads an order's state from
#: the state partition numbered like the command partition it owns).
PARTITIONER = "murmur2_random"

#: Tuned for market data: small linger for latency, large batches and zstd for throughput.
DEFAULT_PRODUCER_CONFIG: dict[str, Any] = {
    "enable.idempotence": True,
    "acks": "all",
    "partitioner": PARTITIONER,
    "linger.ms": 5,
    "batch.size": 1_000_000,
    "batch.num.messages": 10_000,
    "compression.type": "zstd",
    "queue.buffering.max.messages": 200_000,
    "queue.buffering.max.kbytes": 256 * 1024,
    "delivery.timeout.ms": 120_000,
    "message.max.bytes": 8 * 1024 * 1024,
}

# How many sends between two polls for delivery reports (a poll costs about a microsecond).
_POLL_EVERY = 1_000


@dataclass(frozen=True)
class FailedRecord:
    topic: str
    key: bytes | None
    value: bytes | None
    reason: str


@dataclass
class ProducerStats:
    sent: int = 0
    #: Acknowledged by the brokers: sent, minus failed, minus what is still in flight.
    delivered: int = 0
    failed: int = 0
    backpressure_waits: int = 0
    broker_errors: int = 0
    last_broker_error: str | None = None


class EventProducer:
    """Encodes events with the codec and produces them, keyed, to Kafka."""

    def __init__(
        self,
        settings: KafkaSettings,
        codec: AvroCodec | None = None,
        *,
        config: dict[str, Any] | None = None,
        on_delivery_error: Callable[[FailedRecord], None] | None = None,
    ) -> None:
        self.codec = codec
        self._stats = ProducerStats()
        self._failures: list[FailedRecord] = []  # since the last flush
        self._lock = threading.Lock()
        self._on_delivery_error = on_delivery_error
        # Counts enqueued records; itertools.count is the cheapest counter Python has.
        self._counter = itertools.count(1)
        self._senders: dict[tuple[str, type[Event]], Callable[[Event], None]] = {}
        self._compiled_senders: list[Any] = []
        if avro_plan.compiled is not None:
            # The same as the send() below, compiled: on this path Python's call overhead is
            # as large as encoding the event.
            self.send = avro_plan.compiled.SendDispatch(  # type: ignore[method-assign]
                self._senders, self.sender, self._send_with
            )
        conf = {
            **settings.client_config(),
            **DEFAULT_PRODUCER_CONFIG,
            **(config or {}),
            "error_cb": self._on_client_error,
            # Reports for failures only, through one callback: a per-record callback costs more
            # than the produce call itself; successes are counted as sent - failed - in flight.
            "delivery.report.only.error": True,
            "on_delivery": self._on_delivery,
        }
        self._producer = Producer(conf)

    # --- sending -------------------------------------------------------------------------------

    def sender(self, topic: str, event_type: type[Event]) -> Callable[[Event], None]:
        """A function that encodes and enqueues ``event_type`` events to ``topic``, keyed by
        ``event.key``: the hot path, with everything that does not change per event bound once.
        """
        if self.codec is None:
            raise KafkaError("this producer has no codec; use produce() for bytes")
        sender = self._senders.get((topic, event_type))
        if sender is not None:
            return sender
        encoder = self.codec.encoder(topic, event_type)
        if avro_plan.compiled is not None and isinstance(encoder, avro_plan.compiled.Encoder):
            sender = avro_plan.compiled.Sender(
                encoder, topic, self._producer.produce, self._producer.poll, self._produce_when_room
            )
            self._compiled_senders.append(sender)
        else:
            sender = self._python_sender(topic, encoder.keyed)
        self._senders[(topic, event_type)] = sender
        return sender

    def _python_sender(self, topic: str, keyed: Callable[[Event], tuple[str, bytes]]) -> Callable[[Event], None]:
        """The sender where the compiled hot path is not built: the same steps in Python."""
        produce = self._producer.produce
        counter = self._counter

        def send(event: Event) -> None:
            key, value = keyed(event)
            try:
                produce(topic, value, key)
            except BufferError:
                self._produce_when_room(topic, value, key, None)
            except KafkaException as exc:
                raise KafkaError(f"cannot produce to {topic}: {exc.args[0].str()}") from exc
            if next(counter) % _POLL_EVERY == 0:  # serve failure reports and client errors
                self._producer.poll(0)

        return send

    def send(self, topic: str, event: Event, key: str | None = None, timestamp_ms: int | None = None) -> None:
        """Encode and enqueue ``event`` (keyed by ``event.key`` unless ``key`` is given)."""
        if key is None and timestamp_ms is None:
            (self._senders.get((topic, type(event))) or self.sender(topic, type(event)))(event)
        else:
            self._send_with(topic, event, key, timestamp_ms)

    def _send_with(self, topic: str, event: Event, key: str | None, timestamp_ms: int | None) -> None:
        if self.codec is None:
            raise KafkaError("this producer has no codec; use produce() for bytes")
        self.produce(topic, self.codec.encode(event, topic), key if key is not None else event.key, timestamp_ms)

    def produce(
        self, topic: str, value: bytes | None, key: str | bytes | None = None, timestamp_ms: int | None = None
    ) -> None:
        """Enqueue already-encoded bytes (a str key is sent as its UTF-8 bytes).

        Blocks, serving delivery reports, while the in-flight buffer is full.
        """
        try:
            if timestamp_ms is None:
                self._producer.produce(topic, value, key)
            else:
                self._producer.produce(topic, value, key, timestamp=timestamp_ms)
        except BufferError:
            self._produce_when_room(topic, value, key, timestamp_ms)
        except KafkaException as exc:
            raise KafkaError(f"cannot produce to {topic}: {exc.args[0].str()}") from exc
        if next(self._counter) % _POLL_EVERY == 0:
            self._producer.poll(0)

    def _produce_when_room(
        self, topic: str, value: bytes | None, key: str | bytes | None, timestamp_ms: int | None
    ) -> None:
        """Back-pressure: wait for deliveries to free room in the buffer, then enqueue."""
        while True:
            self._stats.backpressure_waits += 1
            self._producer.poll(0.05)
            try:
                if timestamp_ms is None:
                    self._producer.produce(topic, value, key)
                else:
                    self._producer.produce(topic, value, key, timestamp=timestamp_ms)
                return
            except BufferError:
                continue

    @property
    def stats(self) -> ProducerStats:
        """A snapshot of the counters."""
        s = self._stats
        # What the counter would give next, minus one, plus what the compiled senders counted.
        sent = next(copy.copy(self._counter)) - 1 + sum(sender.sent for sender in self._compiled_senders)
        delivered = sent - s.failed - len(self._producer)
        return ProducerStats(sent, max(delivered, 0), s.failed, s.backpressure_waits, s.broker_errors,
                             s.last_broker_error)  # fmt: skip

    def poll(self, timeout: float = 0.0) -> int:
        """Serve delivery reports and client errors; returns how many were served."""
        return self._producer.poll(timeout)

    def flush(self, timeout: float = 30.0) -> None:
        """Wait until every enqueued record is delivered.

        Raises ``DeliveryFailed`` with the records that failed since the last flush, or
        ``BrokerUnavailable`` if records are still undelivered when ``timeout`` runs out (they
        stay queued and keep being retried).
        """
        remaining = self._producer.flush(timeout)
        with self._lock:
            failures, self._failures = self._failures, []
        if failures:
            reasons = sorted({f.reason for f in failures})
            raise DeliveryFailed(f"{len(failures)} records were not delivered ({'; '.join(reasons)[:300]})", failures)
        if remaining:
            raise BrokerUnavailable(
                f"{remaining} records still undelivered after {timeout:.0f}s "
                f"(last broker error: {self._stats.last_broker_error or 'none'}); they remain queued and are retried"
            )

    def resend(self, failures: list[FailedRecord]) -> None:
        """Enqueue records that failed delivery again (e.g. from ``DeliveryFailed.failures``)."""
        for record in failures:
            self.produce(record.topic, record.value, record.key)

    def in_flight(self) -> int:
        return len(self._producer)

    def close(self, timeout: float = 30.0) -> None:
        self.flush(timeout)

    def __enter__(self) -> EventProducer:
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self._producer.flush(5)

    # --- callbacks (run inside poll/flush) -------------------------------------------------------

    def _on_delivery(self, err: RdKafkaError | None, msg: Message) -> None:
        if err is None:  # only with delivery.report.only.error overridden
            return
        record = FailedRecord(msg.topic(), msg.key(), msg.value(), err.str())
        self._stats.failed += 1
        with self._lock:
            self._failures.append(record)
        log.error("record to %s not delivered: %s", record.topic, record.reason)
        if self._on_delivery_error is not None:
            self._on_delivery_error(record)

    def _on_client_error(self, err: RdKafkaError) -> None:
        self._stats.broker_errors += 1
        self._stats.last_broker_error = err.str()
        if err.fatal():  # the next produce() raises KafkaError with it
            log.critical("fatal Kafka producer error: %s", err.str())
        else:
            # librdkafka keeps retrying on its own; say so instead of staying silent.
            log.warning("Kafka client error (retrying): %s", err.str())
