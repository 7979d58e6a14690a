"""``--brokers 3``: a three-node KRaft cluster on one host that survives losing a broker."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from confluent_kafka.admin import ConfigResource

from tests.conftest import TEST_KAFKA_PORT, TEST_REGISTRY_PORT, local_stack_settings
from tickflow.admin import admin_client
from tickflow.codec import AvroCodec
from tickflow.consumer import EventConsumer
from tickflow.events import MarketType, Side, Trade
from tickflow.producer import EventProducer
from tickflow.registry import SchemaRegistry

pytestmark = pytest.mark.cluster


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, stack: object) -> Iterator[object]:
    """A second stack, 3 brokers, on its own ports and state directory (the session stack keeps running)."""
    from infra.stack import LocalStack

    state: Path = tmp_path_factory.mktemp("cluster") / "state"
    three = LocalStack(
        local_stack_settings(
            state, kafka_port=TEST_KAFKA_PORT + 100, registry_port=TEST_REGISTRY_PORT + 100, brokers=3
        ),
        progress=lambda msg: print(f"[cluster] {msg}"),
    )
    try:
        three.up()
        yield three
    finally:
        three.down()


def trade(i: int) -> Trade:
    return Trade(
        venue="bybit",
        market=MarketType.PERPETUAL,
        symbol="BTC-USDT",
        venue_symbol="BTCUSDT",
        exchange_ts=1_700_000_000_000_000 + i,
        receive_ts=1_700_000_000_000_000 + i,
        trade_id=str(i),
        price=Decimal("65000.5"),
        size=Decimal("0.001"),
        side=Side.SELL,
    )


def test_topics_are_replicated_three_times_with_two_in_sync(cluster: object) -> None:
    settings = cluster.client_settings()  # type: ignore[attr-defined]
    admin = admin_client(settings.kafka)
    metadata = admin.list_topics(timeout=10)
    assert len(metadata.brokers) == 3
    for partition in metadata.topics["tickflow.trades"].partitions.values():
        assert len(partition.replicas) == 3 and len(partition.isrs) == 3
    resource = ConfigResource(ConfigResource.Type.TOPIC, "tickflow.trades")
    configs = admin.describe_configs([resource])[resource].result()
    assert configs["min.insync.replicas"].value == "2"


def test_losing_one_broker_loses_no_acknowledged_record(cluster: object) -> None:
    settings = cluster.client_settings()  # type: ignore[attr-defined]
    with SchemaRegistry(settings.registry) as registry:
        codec = AvroCodec(registry)
        with EventProducer(settings.kafka, codec) as producer:
            for i in range(500):
                producer.send("tickflow.trades", trade(i))
        victim = cluster.nodes[2]  # type: ignore[attr-defined]
        victim.process.kill()  # kill -9: no controlled shutdown
        try:
            # acks=all with min.insync.replicas=2: two live replicas still accept writes.
            with EventProducer(settings.kafka, codec) as producer:
                for i in range(500, 1000):
                    producer.send("tickflow.trades", trade(i))
            assert producer.stats.failed == 0
            with EventConsumer(settings.kafka, codec, ["tickflow.trades"]) as consumer:
                ids = sorted(int(m.event.trade_id) for m in consumer.read_to_end())  # type: ignore[attr-defined]
            assert ids == list(range(1000))
        finally:
            cluster.start_node(victim)  # type: ignore[attr-defined]
    assert cluster.running  # type: ignore[attr-defined]


def test_down_stops_exactly_the_cluster_processes(cluster: object, stack: object) -> None:
    pids = [p.pid for p in cluster.processes()]  # type: ignore[attr-defined]
    assert all(pids) and len(pids) == 4
    cluster.down()  # type: ignore[attr-defined]
    assert all(p.pid is None for p in cluster.processes())  # type: ignore[attr-defined]
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2]
    # The session's own stack is untouched.
    assert stack.running  # type: ignore[attr-defined]
