"""Sending order commands and waiting for their outcomes: what ``tickflow order`` does, and what a
strategy embeds.

``OrderClient.send`` produces a command (keyed by order id) and returns its command id;
``outcome`` waits for the command's answer on the event topic (read committed, so only answers
the router has committed). The events topic is followed from its end as it was before the first
send, so no answer can be missed.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field

from confluent_kafka import Consumer, TopicPartition

from tickflow import topics
from tickflow.codec import AvroCodec
from tickflow.config import KafkaSettings
from tickflow.errors import CodecError, TickflowError
from tickflow.events import Event, KillSwitch, OrderCommand, OrderEvent, OrderStatus
from tickflow.producer import EventProducer


class OutcomeTimeout(TickflowError):
    """No outcome arrived in time: the router may be down or behind (the command stays queued)."""


@dataclass
class Outcome:
    """Every event a command got: an UNKNOWN_OUTCOME first, maybe, then its answer."""

    command_id: str
    events: list[OrderEvent] = field(default_factory=list)

    @property
    def final(self) -> OrderEvent | None:
        return next((e for e in reversed(self.events) if e.status is not OrderStatus.UNKNOWN_OUTCOME), None)


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex}"


class OrderClient:
    def __init__(
        self, kafka: KafkaSettings, codec: AvroCodec, *, commands_topic: str = topics.ORDER_COMMANDS,
        events_topic: str = topics.ORDER_EVENTS, control_topic: str = topics.ORDER_CONTROL,
    ) -> None:  # fmt: skip
        self.codec = codec
        self.commands_topic = commands_topic
        self.events_topic = events_topic
        self.control_topic = control_topic
        self.producer = EventProducer(kafka, codec, config={"linger.ms": 0})
        self.consumer = Consumer({**kafka.client_config(), "group.id": new_id("tickflow-order-client"),
                                  "enable.auto.commit": False, "isolation.level": "read_committed"})  # fmt: skip
        partitions = self.consumer.list_topics(events_topic, timeout=10).topics[events_topic].partitions
        assignment = []
        for p in partitions:
            _, high = self.consumer.get_watermark_offsets(TopicPartition(events_topic, p), timeout=10)
            assignment.append(TopicPartition(events_topic, p, high))
        self.consumer.assign(assignment)
        self._seen: dict[str, list[OrderEvent]] = {}

    def send(self, command: OrderCommand) -> str:
        self.producer.send(self.commands_topic, command)
        self.producer.flush()
        return command.command_id

    def set_kill_switch(self, switch: KillSwitch) -> None:
        self.producer.send(self.control_topic, switch)
        self.producer.flush()

    def outcome(self, command_id: str, timeout: float = 30.0) -> Outcome:
        """The command's events once its answer is in; ``OutcomeTimeout`` after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while True:
            events = self._seen.get(command_id, [])
            outcome = Outcome(command_id, list(events))
            if outcome.final is not None:
                return outcome
            left = deadline - time.monotonic()
            if left <= 0:
                raise OutcomeTimeout(f"no outcome for command {command_id} within {timeout:g} s "
                                     f"({len(events)} interim events); is a router running?")  # fmt: skip
            self._poll(min(left, 0.5))

    def _poll(self, timeout: float) -> None:
        for msg in self.consumer.consume(1000, timeout):
            if msg.error():
                continue
            try:
                event: Event = self.codec.decode(msg.value())
            except CodecError:
                continue
            if isinstance(event, OrderEvent) and event.command_id:
                self._seen.setdefault(event.command_id, []).append(event)

    def close(self) -> None:
        self.consumer.close()
        self.producer.close()

    def __enter__(self) -> OrderClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
