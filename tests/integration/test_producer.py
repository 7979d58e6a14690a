"""Producing: keyed ordering per instrument, back-pressure, failures that are never silent."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable
from decimal import Decimal

import pytest
from aiokafka.partitioner import murmur2

from tickflow.codec import AvroCodec
from tickflow.config import KafkaSettings, Settings
from tickflow.consumer import EventConsumer, StartAt
from tickflow.errors import BrokerUnavailable, DeliveryFailed
from tickflow.events import MarketType, Side, Trade
from tickflow.producer import EventProducer


def trade(symbol: str, seq: int) -> Trade:
    return Trade(
        venue="binance-spot",
        market=MarketType.SPOT,
        symbol=symbol,
        venue_symbol=symbol.replace("-", ""),
        exchange_ts=1_700_000_000_000_000 + seq,
        receive_ts=1_700_000_000_000_100 + seq,
        trade_id=str(seq),
        price=Decimal("100.25") + seq,
        size=Decimal("0.5"),
        side=Side.BUY if seq % 2 else Side.SELL,
    )


def test_each_instrument_stays_ordered_in_its_partition(
    settings: Settings, codec: AvroCodec, new_topic: Callable[..., str]
) -> None:
    topic = new_topic(partitions=6)
    symbols = [f"C{i}-USDT" for i in range(40)]
    with EventProducer(settings.kafka, codec) as producer:
        for seq in range(25):
            for symbol in symbols:
                producer.send(topic, trade(symbol, seq))
    assert producer.stats.delivered == 1000 and producer.stats.failed == 0

    seen: dict[str, list[int]] = defaultdict(list)
    partition_of: dict[str, set[int]] = defaultdict(set)
    with EventConsumer(settings.kafka, codec, [topic]) as consumer:
        for msg in consumer.read_to_end():
            seen[msg.event.symbol].append(int(msg.event.trade_id))  # type: ignore[attr-defined]
            partition_of[msg.event.symbol].add(msg.partition)  # type: ignore[attr-defined]
    assert set(seen) == set(symbols)
    for symbol in symbols:
        assert seen[symbol] == list(range(25)), f"{symbol} out of order or incomplete"
        # One partition per instrument, the one Java clients and Faust (aiokafka) pick for the key.
        key = f"binance-spot:{symbol}".encode()
        assert partition_of[symbol] == {(murmur2(key) & 0x7FFFFFFF) % 6}
    assert len({p for parts in partition_of.values() for p in parts}) > 1  # keys spread over partitions


def test_a_full_buffer_applies_back_pressure_and_loses_nothing(
    settings: Settings, codec: AvroCodec, new_topic: Callable[..., str]
) -> None:
    topic = new_topic(partitions=2)
    events = [trade("BTC-USDT", i) for i in range(20_000)]
    # A tiny in-flight buffer: the producer must wait for deliveries instead of growing.
    producer = EventProducer(settings.kafka, codec, config={"queue.buffering.max.messages": 200, "linger.ms": 1})
    most_in_flight = 0
    for event in events:
        producer.send(topic, event)
        most_in_flight = max(most_in_flight, producer.in_flight())
    producer.flush()
    # Bounded: the queue limit plus the few delivery reports not yet served.
    assert most_in_flight <= 250
    assert producer.stats.backpressure_waits > 0
    assert producer.stats.delivered == 20_000
    with EventConsumer(settings.kafka, codec, [topic]) as consumer:
        ids = [int(m.event.trade_id) for m in consumer.read_to_end()]  # type: ignore[attr-defined]
    assert ids == list(range(20_000))


def test_undeliverable_records_are_reported_with_their_bytes(codec: AvroCodec, settings: Settings) -> None:
    """No broker: after the delivery timeout every record comes back in DeliveryFailed, none vanish."""
    reported = []
    dead = KafkaSettings(bootstrap_servers="127.0.0.1:9")  # nothing listens on the discard port
    producer = EventProducer(
        dead, codec, config={"delivery.timeout.ms": 1500, "linger.ms": 0}, on_delivery_error=reported.append
    )
    events = [trade("ETH-USDT", i) for i in range(50)]
    for event in events:
        producer.send("tickflow.trades", event)
    with pytest.raises(DeliveryFailed, match="50 records were not delivered") as caught:
        producer.flush(timeout=20)
    failures = caught.value.failures
    assert len(failures) == 50 == len(reported) == producer.stats.failed
    assert {f.topic for f in failures} == {"tickflow.trades"}
    # The bytes are kept so the caller can re-send: they decode back to the original events.
    assert sorted(int(codec.decode(f.value).trade_id) for f in failures) == list(range(50))  # type: ignore
    assert producer.stats.broker_errors > 0 and producer.stats.last_broker_error


def test_a_downed_broker_is_reported_while_records_stay_queued(codec: AvroCodec) -> None:
    producer = EventProducer(KafkaSettings(bootstrap_servers="127.0.0.1:9"), codec)
    producer.send("tickflow.trades", trade("SOL-USDT", 1))
    started = time.monotonic()
    with pytest.raises(BrokerUnavailable, match="1 records still undelivered"):
        producer.flush(timeout=2)
    assert time.monotonic() - started < 10
    assert producer.in_flight() == 1  # still queued, still retried: not dropped


def test_resending_failed_records_delivers_them(
    settings: Settings, codec: AvroCodec, new_topic: Callable[..., str]
) -> None:
    topic = new_topic(partitions=1)
    dead = EventProducer(KafkaSettings(bootstrap_servers="127.0.0.1:9"), codec, config={"delivery.timeout.ms": 1000})
    for i in range(10):
        dead.send(topic, trade("XRP-USDT", i))
    with pytest.raises(DeliveryFailed) as caught:
        dead.flush(timeout=15)
    with EventProducer(settings.kafka, codec) as live:
        live.resend(caught.value.failures)
    with EventConsumer(settings.kafka, codec, [topic], StartAt.beginning()) as consumer:
        assert sorted(int(m.event.trade_id) for m in consumer.read_to_end()) == list(range(10))  # type: ignore


@pytest.mark.parametrize("compiled", [True, False], ids=["compiled", "python-fallback"])
def test_the_hot_path_sender_keys_encodes_and_counts_like_send(
    settings: Settings, registry: object, new_topic: Callable[..., str], compiled: bool
) -> None:
    codec = AvroCodec(registry, compiled_writer=compiled)  # type: ignore[arg-type]
    topic = new_topic(partitions=3)
    with EventProducer(settings.kafka, codec) as producer:
        send_trade = producer.sender(topic, Trade)
        assert producer.sender(topic, Trade) is send_trade  # bound once per topic and type
        for i in range(300):
            send_trade(trade(f"K{i % 5}-USDT", i))
        for i in range(300, 400):
            producer.send(topic, trade(f"K{i % 5}-USDT", i))
    assert producer.stats.sent == producer.stats.delivered == 400
    with EventConsumer(settings.kafka, codec, [topic]) as consumer:
        records = list(consumer.read_to_end())
    assert sorted(int(r.event.trade_id) for r in records) == list(range(400))  # type: ignore[attr-defined]
    for r in records:
        assert r.key == f"binance-spot:{r.event.symbol}".encode()  # type: ignore[attr-defined]
        assert r.partition == (murmur2(r.key) & 0x7FFFFFFF) % 3
