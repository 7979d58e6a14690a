"""Reading back from the beginning, the end, an offset or a timestamp; bad records and bad positions."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

import pytest

from tickflow.codec import AvroCodec
from tickflow.config import Settings
from tickflow.consumer import EventConsumer, StartAt
from tickflow.errors import MalformedPayload, OffsetOutOfRange, UnknownTopic
from tickflow.events import BestBidOffer, MarketType
from tickflow.producer import EventProducer

BASE_MS = 1_750_000_000_000  # record timestamps, ms


def bbo(symbol: str, i: int) -> BestBidOffer:
    return BestBidOffer(
        venue="okx",
        market=MarketType.SPOT,
        symbol=symbol,
        venue_symbol=symbol,
        exchange_ts=(BASE_MS + i) * 1000,
        receive_ts=(BASE_MS + i) * 1000 + 250,
        bid_price=Decimal("10.1") + i,
        bid_size=Decimal(1),
        ask_price=Decimal("10.2") + i,
        ask_size=Decimal(2),
        update_id=i,
    )


@pytest.fixture
def history(settings: Settings, codec: AvroCodec, new_topic: Callable[..., str]) -> str:
    """A topic with 300 records over 3 partitions, record i timestamped BASE_MS + 10*i."""
    # Kept whatever their age: BASE_MS is long past the broker's default retention (7 days), and
    # its retention check (every 5 minutes) deleted them mid-test once (a CI run: partition 0
    # "holds offsets 171..170").
    topic = new_topic(partitions=3, **{"retention.ms": "-1"})
    with EventProducer(settings.kafka, codec) as producer:
        for i in range(300):
            producer.send(topic, bbo(f"S{i % 7}-USDT", i), timestamp_ms=BASE_MS + 10 * i)
    return topic


def read_all(settings: Settings, codec: AvroCodec, topic: str, start: StartAt) -> list:
    with EventConsumer(settings.kafka, codec, [topic], start) as consumer:
        return list(consumer.read_to_end())


def test_from_the_beginning_reads_everything_once(settings: Settings, codec: AvroCodec, history: str) -> None:
    records = read_all(settings, codec, history, StartAt.beginning())
    assert sorted(r.event.update_id for r in records) == list(range(300))
    assert {r.timestamp_ms for r in records} == {BASE_MS + 10 * i for i in range(300)}


def test_from_a_timestamp_reads_exactly_the_records_at_or_after_it(
    settings: Settings, codec: AvroCodec, history: str
) -> None:
    everything = read_all(settings, codec, history, StartAt.beginning())
    cut = BASE_MS + 10 * 123 + 5  # between records 123 and 124
    expected = {(r.partition, r.offset) for r in everything if r.timestamp_ms >= cut}
    got = read_all(settings, codec, history, StartAt.at_timestamp(cut))
    assert {(r.partition, r.offset) for r in got} == expected
    assert sorted(r.event.update_id for r in got) == list(range(124, 300))
    # Past the last record: nothing, not an error.
    assert read_all(settings, codec, history, StartAt.at_timestamp(BASE_MS + 10**9)) == []


def test_from_an_offset_per_partition(settings: Settings, codec: AvroCodec, history: str) -> None:
    everything = read_all(settings, codec, history, StartAt.beginning())
    got = read_all(settings, codec, history, StartAt.at_offset({0: 5, 1: 0}))  # partition 2: from its end
    expected = {(r.partition, r.offset) for r in everything if (r.partition == 0 and r.offset >= 5) or r.partition == 1}
    assert {(r.partition, r.offset) for r in got} == expected


def test_from_the_end_sees_only_new_records(settings: Settings, codec: AvroCodec, history: str) -> None:
    with EventConsumer(settings.kafka, codec, [history], StartAt.end()) as consumer:
        assert list(consumer.read_to_end()) == []
        with EventProducer(settings.kafka, codec) as producer:
            producer.send(history, bbo("NEW-USDT", 999))
        got = None
        for _ in range(30):
            got = consumer.poll(1.0) or got
            if got:
                break
    assert got is not None and got.event.update_id == 999


def test_offset_out_of_range_says_what_the_topic_holds(settings: Settings, codec: AvroCodec, history: str) -> None:
    with pytest.raises(OffsetOutOfRange, match=r"offset 5000 is outside .*\[0\], which holds offsets 0\.\.\d+"):
        EventConsumer(settings.kafka, codec, [history], StartAt.at_offset(5000))


def test_unknown_topic_lists_the_topics_that_exist(settings: Settings, codec: AvroCodec) -> None:
    with pytest.raises(UnknownTopic, match=r"'tickflow\.nope' does not exist.*tickflow\.trades"):
        EventConsumer(settings.kafka, codec, ["tickflow.nope"])


def test_a_bad_record_is_skipped_and_counted_or_raised_with_its_position(
    settings: Settings, codec: AvroCodec, new_topic: Callable[..., str]
) -> None:
    topic = new_topic(partitions=1)
    with EventProducer(settings.kafka, codec) as producer:
        producer.send(topic, bbo("A-USDT", 1))
        producer.produce(topic, b"\x00\x00\x00", b"garbage")
        producer.send(topic, bbo("A-USDT", 2))

    with EventConsumer(settings.kafka, codec, [topic], on_error="skip") as consumer:
        ids = [m.event.update_id for m in consumer.read_to_end()]
        assert ids == [1, 2]
        assert consumer.stats.skipped == 1 and consumer.stats.skipped_by_type == {"MalformedPayload": 1}
        assert f"{topic}[0]@1" in (consumer.stats.last_error or "")

    with EventConsumer(settings.kafka, codec, [topic], on_error="raise") as consumer:
        records = consumer.read_to_end()
        assert next(records).event.update_id == 1
        with pytest.raises(MalformedPayload) as caught:
            next(records)
        assert f"record {topic}[0]@1" in caught.value.__notes__


def test_an_unreachable_cluster_is_a_clear_error(codec: AvroCodec) -> None:
    from tickflow.config import KafkaSettings
    from tickflow.errors import BrokerUnavailable

    with pytest.raises(BrokerUnavailable, match="cannot read cluster metadata"):
        EventConsumer(KafkaSettings(bootstrap_servers="127.0.0.1:9"), codec, ["tickflow.trades"], timeout=2)
