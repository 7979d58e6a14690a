"""``tickflow.consume``: ranges by offset and timestamp, symbol filters, and the range as Arrow,
pandas and Parquet, exactly (decimals included), against the real broker and registry."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import msgspec
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import tickflow
from tests.integration.test_codec import _newer_contract_codec, sample_events
from tickflow.codec import AvroCodec
from tickflow.config import Settings
from tickflow.consumer import EndAt, EventConsumer, StartAt
from tickflow.errors import MalformedPayload, OffsetOutOfRange, UnknownTopic
from tickflow.events import BestBidOffer, BookUpdate, Event, MarketType, Trade
from tickflow.producer import EventProducer
from tickflow.reading import UnboundedRead

BASE_MS = 1_760_000_000_000  # record timestamps, ms
D = Decimal
#: The records are stamped long ago: kept whatever their age (the broker's retention check, every
#: 5 minutes, would otherwise delete them mid-test, as it once did in test_consumer).
KEEP = {"retention.ms": "-1"}


def bbo(symbol: str, i: int) -> BestBidOffer:
    return BestBidOffer(venue="okx", market=MarketType.SPOT, symbol=symbol, venue_symbol=symbol.replace("-", ""),
                        exchange_ts=(BASE_MS + i) * 1000, receive_ts=(BASE_MS + i) * 1000 + 250,
                        bid_price=D("10.1") + i, bid_size=D(1),
                        ask_price=D("10.2") + i, ask_size=D("2.000000000000000001"), update_id=i)  # fmt: skip


@pytest.fixture
def history(settings: Settings, codec: AvroCodec, new_topic: Callable[..., str]) -> str:
    """400 records over 3 partitions (keyed by 7 symbols), record i at BASE_MS + 10*i."""
    topic = new_topic(partitions=3, **KEEP)
    with EventProducer(settings.kafka, codec) as producer:
        for i in range(400):
            producer.send(topic, bbo(f"S{i % 7}-USDT", i), timestamp_ms=BASE_MS + 10 * i)
    return topic


def reading(settings: Settings, topic: str | list[str], **kwargs: object) -> tickflow.reading.Reading:
    return tickflow.consume(topic, bootstrap_servers=settings.kafka.bootstrap_servers,
                            registry_url=settings.registry.url, **kwargs)  # type: ignore[arg-type]  # fmt: skip


def positions(records: list) -> set[tuple[int, int]]:
    return {(r.partition, r.offset) for r in records}


def test_a_time_range_is_exactly_the_records_between_its_offsets(settings: Settings, history: str) -> None:
    """[a, b): the records from the first offset at or after a to the first at or after b."""
    with reading(settings, history) as everything:
        records = list(everything)
    assert len(records) == 400
    a, b = BASE_MS + 10 * 57 + 3, BASE_MS + 10 * 311  # b: exactly a record's timestamp (excluded)
    expected = {(r.partition, r.offset) for r in records if a <= r.timestamp_ms < b}
    ms = lambda t: datetime.fromtimestamp(t / 1000, UTC)  # noqa: E731
    with reading(settings, history, start=ms(a), end=ms(b)) as ranged:
        got = list(ranged)
    assert positions(got) == expected and len(got) == len(expected) == 311 - 58
    assert sorted(r.event.update_id for r in got) == list(range(58, 311))
    # The same range by offsets, per partition, as the broker's time index gives them.
    with EventConsumer(settings.kafka, AvroCodec_of(settings), [history]) as consumer:
        by_time = {p: consumer._offset_for_time(history, p, a) for p in range(3)}
        end_by_time = {p: consumer._offset_for_time(history, p, b) for p in range(3)}
    with reading(settings, history, start=by_time, end=end_by_time) as by_offsets:
        assert positions(list(by_offsets)) == expected


def AvroCodec_of(settings: Settings) -> AvroCodec:
    from tickflow.registry import SchemaRegistry

    return AvroCodec(SchemaRegistry(settings.registry))


def test_end_offsets_and_end_now(settings: Settings, codec: AvroCodec, history: str) -> None:
    with reading(settings, history, end={0: 10, 1: 0, 2: 3}) as ranged:
        got = list(ranged)
    assert sorted((p, o) for p, o in positions(got)) == [(0, o) for o in range(10)] + [(2, o) for o in range(3)]

    with reading(settings, history, end="now") as now:
        with EventProducer(settings.kafka, codec) as producer:  # after the read was opened: not in it
            producer.send(history, bbo("LATE-USDT", 1000), timestamp_ms=BASE_MS + 10_000)
        assert len(list(now)) == 400


def test_an_end_time_still_to_come_ends_with_the_first_record_after_it_or_with_the_clock(
    settings: Settings, codec: AvroCodec, new_topic: Callable[..., str]
) -> None:
    topic = new_topic(partitions=1)  # stamped now: no retention question
    now_ms = int(time.time() * 1000)
    end = datetime.fromtimestamp((now_ms + 30_000) / 1000, UTC)
    with reading(settings, topic, end=end) as waiting:
        with EventProducer(settings.kafka, codec) as producer:
            producer.send(topic, bbo("A-USDT", 1), timestamp_ms=now_ms)
            producer.send(topic, bbo("A-USDT", 2), timestamp_ms=now_ms + 30_000)  # at the end: excluded, ends it
            producer.send(topic, bbo("A-USDT", 3), timestamp_ms=now_ms + 10)  # after the record that ended it
        assert [r.event.update_id for r in waiting] == [1]
    # No record after the end ever comes: the read ends once the end time has passed.
    quiet = new_topic(partitions=1)
    started = time.monotonic()
    with reading(settings, quiet, end=datetime.fromtimestamp((time.time() + 1.5), UTC)) as waiting:
        with EventProducer(settings.kafka, codec) as producer:
            producer.send(quiet, bbo("A-USDT", 7))
        assert [r.event.update_id for r in waiting] == [7]
    assert time.monotonic() - started >= 1.4


def test_symbols_filter_by_key_without_decoding_the_rest(settings: Settings, history: str) -> None:
    with reading(settings, history, symbols=["S3-USDT", "okx:S5-USDT", "binance-spot:S6-USDT"]) as some:
        got = list(some)
    assert {r.event.symbol for r in got} == {"S3-USDT", "S5-USDT"}
    assert len(got) == len([i for i in range(400) if i % 7 in (3, 5)])
    assert some.consumer.stats.consumed == len(got)  # the others were never decoded


def test_bad_positions_and_topics_say_what_exists(settings: Settings, history: str) -> None:
    with pytest.raises(UnknownTopic, match=r"'tickflow\.nope' does not exist.*tickflow\.trades"):
        reading(settings, "tickflow.nope")
    with pytest.raises(OffsetOutOfRange, match=r"offset 9999 is outside .*which holds offsets 0\.\.\d+"):
        reading(settings, history, start=9999)
    with pytest.raises(OffsetOutOfRange, match="end offset 2 is before the start offset 5"):
        reading(settings, history, start=5, end=2)
    with pytest.raises(ValueError, match="no time zone"):
        reading(settings, history, start=datetime(2026, 1, 1))
    with reading(settings, history, end=None) as forever, pytest.raises(UnboundedRead, match="give end="):
        forever.to_arrow()


def test_a_timestamp_before_retention_says_what_is_left(settings: Settings, history: str) -> None:
    """Records deleted (as retention does): a start before the oldest left is an error that
    names it, not a read that silently starts later; a start after it reads as usual."""
    from confluent_kafka import TopicPartition

    from tickflow.admin import admin_client

    admin = admin_client(settings.kafka)
    with reading(settings, history) as everything:
        first_kept = sorted((r.offset, r.timestamp_ms) for r in everything if r.partition == 0)[20]
    for future in admin.delete_records([TopicPartition(history, 0, first_kept[0])]).values():
        future.result()
    with pytest.raises(OffsetOutOfRange, match=rf"before what {history}\[0\] still holds \(retention\): its oldest "
                       rf"record is offset {first_kept[0]} at"):  # fmt: skip
        reading(settings, history, start=datetime.fromtimestamp(BASE_MS / 1000, UTC))
    start = datetime.fromtimestamp(first_kept[1] / 1000, UTC)
    with reading(settings, history, start=start, partitions=[0]) as kept:
        assert min(r.offset for r in kept) == first_kept[0]


# --- tables ---------------------------------------------------------------------------------------


def _events_of(table: pa.Table, event_type: type[Event]) -> list[Event]:
    """The table's rows as events again (decimals from decimal128, timestamps back to µs)."""
    rows = table.drop_columns([c for c in table.column_names if c.startswith("kafka_")])
    for name in rows.column_names:
        if pa.types.is_timestamp(rows.schema.field(name).type):
            rows = rows.set_column(rows.column_names.index(name), name, rows[name].cast(pa.int64()))
    return [msgspec.convert(row, event_type) for row in rows.to_pylist()]


@pytest.mark.parametrize(
    ("topic", "event"), sample_events(), ids=lambda v: type(v).__name__ if isinstance(v, Event) else v
)
def test_every_event_type_as_arrow_is_exactly_the_event(
    settings: Settings, codec: AvroCodec, new_topic: Callable[..., str], topic: str, event: Event
) -> None:
    """Every field of every event type, through the compiled column reader: decimals exact
    (decimal128(38, 18)), nulls, enums, nested levels, bytes, text that is not ASCII."""
    name = new_topic(partitions=1, **KEEP)
    with EventProducer(settings.kafka, codec) as producer:
        for _ in range(3):
            producer.send(name, event, timestamp_ms=BASE_MS)
    with reading(settings, name) as ranged:
        table = ranged.to_arrow()
    assert table.num_rows == 3 and table.schema.metadata[b"avro_name"] == event.avro_name.encode()
    assert _events_of(table, type(event)) == [event] * 3
    assert table["kafka_offset"].to_pylist() == [0, 1, 2]
    assert table["kafka_timestamp"].to_pylist()[0] == datetime.fromtimestamp(BASE_MS / 1000, UTC)


def test_decimals_of_every_width_are_exact_in_arrow(settings: Settings, codec: AvroCodec,
                                                    new_topic: Callable[..., str]) -> None:  # fmt: skip
    import random

    rng = random.Random(5)
    base = sample_events()[0][1]
    trades = []
    for i in range(2000):
        digits = rng.randint(1, 38)
        value = D(f"{'-' if rng.random() < 0.3 else ''}{rng.randrange(10 ** (digits - 1), 10**digits)}E-18")
        trades.append(msgspec.structs.replace(base, trade_id=str(i), price=value, size=value.copy_negate()))
    topic = new_topic(partitions=1, **KEEP)
    with EventProducer(settings.kafka, codec) as producer:
        for trade in trades:
            producer.send(topic, trade)
    with reading(settings, topic) as ranged:
        table = ranged.to_arrow()
    assert table["price"].to_pylist() == [t.price for t in trades]
    assert table["size"].to_pylist() == [t.size for t in trades]


def test_a_topic_of_several_types_gives_a_table_each_and_parquet_round_trips_exactly(
    settings: Settings, codec: AvroCodec, new_topic: Callable[..., str], tmp_path: Path
) -> None:
    events = [e for _, e in sample_events() if isinstance(e, BookUpdate | Trade | BestBidOffer)]
    topic = new_topic(partitions=2, **KEEP)
    with EventProducer(settings.kafka, codec) as producer:
        for i in range(300):
            producer.send(topic, events[i % len(events)])
    with reading(settings, topic) as ranged:
        tables = ranged.tables()
    assert sorted(tables) == ["BestBidOffer", "BookUpdate", "Trade"]
    with reading(settings, topic) as ranged, pytest.raises(Exception, match="say which"):
        ranged.to_arrow()
    with reading(settings, topic) as ranged:
        book = ranged.to_arrow("BookUpdate")
        assert ranged.consumer.stats.consumed == 300
    assert book.equals(tables["BookUpdate"])
    expected = [e for i in range(300) for e in [events[i % len(events)]] if isinstance(e, BookUpdate)]
    order = lambda e: (e.kind, e.last_update_id)  # noqa: E731
    assert sorted(_events_of(book, BookUpdate), key=order) == sorted(expected, key=order)
    path = tmp_path / "book.parquet"
    pq.write_table(book, path)
    again = pq.read_table(path)
    assert again.schema.field("bids").type == pa.list_(
        pa.field(
            "item",
            pa.struct(
                [pa.field("price", pa.decimal128(38, 18), False), pa.field("size", pa.decimal128(38, 18), False)]
            ),
            False,
        )
    )
    assert again.schema.equals(book.schema) and again.equals(book)  # Parquet keeps the Arrow schema
    assert _events_of(again, BookUpdate) == _events_of(book, BookUpdate)
    frame = tables["Trade"].to_pandas()
    assert frame["price"].iloc[0] == D("0.000012345678901234") and frame["side"].iloc[0] == "BUY"


def test_bad_records_in_a_table_read_are_skipped_and_counted_or_raised(
    settings: Settings, codec: AvroCodec, new_topic: Callable[..., str]
) -> None:
    topic = new_topic(partitions=1, **KEEP)
    event = sample_events()[1][1]  # a book delta
    payload = codec.encode(event, topic)
    with EventProducer(settings.kafka, codec) as producer:
        producer.send(topic, event)
        producer.produce(topic, b"k", payload[:-3])  # truncated inside the asks
        producer.produce(topic, b"k", b"\x00\x00")
        producer.send(topic, event)
    with reading(settings, topic, on_error="skip") as ranged:
        table = ranged.to_arrow()
        assert ranged.consumer.stats.skipped == 2
    assert table["kafka_offset"].to_pylist() == [0, 3]
    assert _events_of(table, BookUpdate) == [event, event]  # nothing of the bad one left in the columns
    with reading(settings, topic) as ranged, pytest.raises(MalformedPayload) as caught:
        ranged.to_arrow()
    assert f"record {topic}[0]@1" in caught.value.__notes__


def test_records_of_another_schema_version_give_the_same_table(
    settings: Settings, codec: AvroCodec, registry: object, new_topic: Callable[..., str]
) -> None:
    """Written with our schema, read by a codec whose contract evolved (one more field): the
    compiled reader does not apply, the records are resolved and come out in the newer shape."""
    from tickflow.arrow import ArrowBuilder

    trade = sample_events()[0][1]
    topic = new_topic(partitions=1, **KEEP)
    with EventProducer(settings.kafka, codec) as producer:
        producer.send(topic, trade)
    newer = _newer_contract_codec(registry)  # type: ignore[arg-type]
    with EventConsumer(settings.kafka, newer, [topic], end=EndAt.now()) as consumer:
        builder = ArrowBuilder(newer)
        for batch in consumer.batches():
            for msg in batch:
                builder.add(msg.value(), msg.topic(), msg.partition(), msg.offset(), msg.timestamp()[1])
    (table,) = builder.tables().values()
    assert table["venue_trade_time"].to_pylist() == [None]
    assert table["price"].to_pylist() == [trade.price] and table["trade_id"].to_pylist() == [trade.trade_id]


def test_events_iterates_the_typed_events(settings: Settings, history: str) -> None:
    with reading(settings, history, start=StartAt.at_offset({0: 0, 1: 0, 2: 0}), end=EndAt.at_offset(5)) as ranged:
        got = list(ranged.events())
    assert len(got) == 15 and all(isinstance(e, BestBidOffer) for e in got)
