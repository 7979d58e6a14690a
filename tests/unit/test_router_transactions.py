"""How the router retries a transaction, by librdkafka's rules: a call that failed with a
retriable error is made again as it was (a commit that timed out may have gone through: producing
its answers again in a new transaction would answer their commands twice); a failure that
requires an abort is aborted and its records go again, without the offsets; anything else stops
the router. (The Kafka side of transactions is covered against the real broker in
``tests/integration/test_router.py``; here a producer fails on cue.)"""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from processors.router import router as router_module
from tests.unit.test_router_checks import make_router

RECORDS = [("events", "o1", b"answer-1"), ("state", "o1", b"state-1")]
OFFSETS = [TopicPartition("commands", 0, 42)]


class ScriptedProducer:
    """Records the transactional calls; ``fail`` maps a call's name to the errors it raises, in
    turn, before it succeeds."""

    def __init__(self, **fail: list[KafkaError]) -> None:
        self.fail = fail
        self.calls: list[str] = []
        self.produced: list[bytes] = []

    def _call(self, name: str) -> None:
        self.calls.append(name)
        if self.fail.get(name):
            raise KafkaException(self.fail[name].pop(0))

    def begin_transaction(self) -> None:
        self._call("begin")

    def produce(self, topic: str, value: bytes, key: bytes) -> None:
        self.produced.append(value)

    def poll(self, timeout: float) -> int:
        return 0

    def send_offsets_to_transaction(self, offsets: list[TopicPartition], group: object, timeout: float) -> None:
        self._call("offsets")

    def commit_transaction(self, timeout: float) -> None:
        self._call("commit")

    def abort_transaction(self, timeout: float) -> None:
        self._call("abort")


class GroupConsumer:
    def consumer_group_metadata(self) -> object:
        return object()


def run_transaction(producer: ScriptedProducer) -> bool:
    router, _ = make_router()
    router.producer, router.consumer = producer, GroupConsumer()  # type: ignore[assignment]
    return router._transaction(RECORDS, OFFSETS)


@pytest.fixture(autouse=True)
def no_pause(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("tickflow.kafka_retry.PAUSE", 0.0)


def test_a_commit_that_timed_out_is_committed_again_never_produced_again() -> None:
    timed_out = KafkaError(KafkaError._TIMED_OUT, "commit timed out", retriable=True)
    producer = ScriptedProducer(commit=[timed_out, timed_out])
    assert run_transaction(producer) is True
    assert producer.calls == ["begin", "offsets", "commit", "commit", "commit"]
    assert producer.produced == [b"answer-1", b"state-1"]  # once: no second copy of any answer


def test_offsets_that_failed_retriably_are_sent_again_in_the_same_transaction() -> None:
    loading = KafkaError(KafkaError.COORDINATOR_LOAD_IN_PROGRESS, "coordinator loading", retriable=True)
    producer = ScriptedProducer(offsets=[loading])
    assert run_transaction(producer) is True
    assert producer.calls == ["begin", "offsets", "offsets", "commit"]
    assert producer.produced == [b"answer-1", b"state-1"]


def test_an_abortable_failure_is_aborted_and_its_records_go_again_without_the_offsets() -> None:
    lost_generation = KafkaError(KafkaError.ILLEGAL_GENERATION, "rebalanced", txn_requires_abort=True)
    producer = ScriptedProducer(offsets=[lost_generation])
    assert run_transaction(producer) is False  # the offsets were not in the committed transaction
    assert producer.calls == ["begin", "offsets", "abort", "begin", "commit"]
    # The aborted copy is never read (read_committed); the committed one is whole.
    assert producer.produced == [b"answer-1", b"state-1"] * 2


def test_a_fenced_producer_stops_the_router_at_once() -> None:
    fenced = KafkaError(KafkaError._FENCED, "fenced by a newer incarnation", fatal=True)
    producer = ScriptedProducer(commit=[fenced])
    with pytest.raises(KafkaException) as raised:
        run_transaction(producer)
    assert raised.value.args[0].code() == KafkaError._FENCED
    assert producer.calls == ["begin", "offsets", "commit"]


def test_transactions_that_keep_aborting_stop_the_router() -> None:
    abort = KafkaError(KafkaError.INVALID_TXN_STATE, "abort me", txn_requires_abort=True)
    producer = ScriptedProducer(commit=[abort] * router_module.TRANSACTION_ATTEMPTS)
    with pytest.raises(KafkaException):
        run_transaction(producer)
    assert producer.calls.count("begin") == router_module.TRANSACTION_ATTEMPTS
