"""Synchronous Kafka queries asked again while the broker cannot answer yet.

Offset lookups (watermarks, offsets by time, committed offsets) are one-shot calls: librdkafka
gives up at their timeout and does not flag their errors as retriable. Some answers end by
themselves: "not leader" until a new leader is elected after a broker is lost, and committed
offsets held by an open transaction until the broker aborts it. ``ask_until`` asks again for
those, within one budget, and says so in the log.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from confluent_kafka import KafkaError, KafkaException

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Answers that a leader election or a reconnect ends.
TRANSIENT = frozenset({
    KafkaError.NOT_LEADER_FOR_PARTITION,
    KafkaError.LEADER_NOT_AVAILABLE,
    KafkaError.FENCED_LEADER_EPOCH,
    KafkaError.UNKNOWN_LEADER_EPOCH,
    KafkaError.REQUEST_TIMED_OUT,
    KafkaError._TRANSPORT,
})  # fmt: skip

#: Between two asks.
PAUSE = 0.2


def transient(exc: KafkaException) -> bool:
    """Whether the broker's answer is one a leader election or a reconnect ends."""
    error = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
    return error is not None and (error.retriable() or error.code() in TRANSIENT)


def ask_until(ask: Callable[[float], T], what: str, *, within: float, attempt: float,
              retry: Callable[[KafkaException], bool] = transient, level: int = logging.INFO) -> T:  # fmt: skip
    """``ask(timeout)``, each ask waiting at most ``attempt`` seconds, asked again while it raises
    a ``KafkaException`` that ``retry`` accepts, for up to ``within`` seconds in all; then the
    last exception is raised. Each retry is logged at ``level``, naming ``what`` was asked."""
    deadline = time.monotonic() + within
    while True:
        left = deadline - time.monotonic()
        try:
            return ask(max(min(attempt, left), 0.1))
        except KafkaException as exc:
            if not retry(exc) or deadline - time.monotonic() <= PAUSE:
                raise
            log.log(level, "waiting for %s (asking again): %s", what, exc)
            time.sleep(PAUSE)
