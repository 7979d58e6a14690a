"""The codec against the real registry: exact round trips, interoperability, typed errors."""

from __future__ import annotations

import io
import json
import time
import uuid
from collections.abc import Callable
from decimal import Decimal

import avro.io
import avro.schema
import pytest
from confluent_kafka import Consumer
from confluent_kafka.schema_registry import SchemaRegistryClient, topic_record_subject_name_strategy
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from tickflow.codec import AvroCodec, subject_name
from tickflow.config import RegistrySettings, Settings
from tickflow.errors import (
    IncompatibleSchema,
    MalformedPayload,
    RecordMismatch,
    RegistryUnavailable,
    UnknownEventType,
    UnknownSchemaId,
)
from tickflow.events import (
    AmendOrder,
    Balance,
    BestBidOffer,
    BookReset,
    BookResetReason,
    BookUpdate,
    BookUpdateKind,
    CancelOrder,
    ConnectorState,
    ConnectorStatus,
    CreateOrder,
    DeadLetter,
    Event,
    KillSwitch,
    Kline,
    MarketType,
    OrderEvent,
    OrderState,
    OrderStatus,
    OrderType,
    PriceLevel,
    RawFrame,
    RejectReason,
    Side,
    TimeInForce,
    Trade,
)
from tickflow.producer import EventProducer
from tickflow.registry import SchemaRegistry
from tickflow.schemas import load_contract

NOW = 1_700_000_000_123_456
D = Decimal


def sample_events() -> list[tuple[str, Event]]:
    """One realistic event of every type, with awkward decimals, and its topic."""
    header = {
        "venue": "binance-usdm",
        "market": MarketType.PERPETUAL,
        "symbol": "SHIB-USDT",
        "venue_symbol": "1000SHIBUSDT",
        "receive_ts": NOW + 812,
    }
    order = {
        "command_id": "cmd-1",
        "account": "acct-7",
        "order_id": "ord-42",
        "venue": "binance-spot",
        "market": MarketType.SPOT,
        "symbol": "BTC-USDT",
        "issued_ts": NOW,
    }
    return [
        ("tickflow.trades", Trade(**header, exchange_ts=NOW, trade_id="987654321", price=D("0.000012345678901234"),
                                  size=D("123456789012345678.5"), side=Side.BUY)),
        ("tickflow.book", BookUpdate(**header, exchange_ts=NOW, kind=BookUpdateKind.DELTA,
                                     bids=[PriceLevel(D("0.01234"), D("0")), PriceLevel(D("0.01233"), D("1e-8"))],
                                     asks=[PriceLevel(D("0.01235"), D("99999999.99999999"))],
                                     first_update_id=100, last_update_id=105, prev_update_id=99, checksum=-1234567)),
        ("tickflow.book", BookUpdate(**header, exchange_ts=None, kind=BookUpdateKind.SNAPSHOT, bids=[], asks=[],
                                     last_update_id=2**62, sequence=7)),
        ("tickflow.book", BookReset(**header, exchange_ts=None, reason=BookResetReason.SEQUENCE_GAP,
                                    expected_update_id=106, received_update_id=110, missed_updates=4,
                                    detail="pu 109 != previous u 105")),
        ("tickflow.klines", Kline(**header, exchange_ts=NOW, interval="1m", open_time=NOW - 60_000_000,
                                  close_time=NOW, open=D("1"), high=D("2.5"), low=D("0.5"), close=D("2"),
                                  volume=D("10"), quote_volume=D("17.5"), trade_count=12, closed=True)),
        ("tickflow.bbo", BestBidOffer(**header, exchange_ts=None, bid_price=D("65000.01"), bid_size=D("0.5"),
                                      ask_price=D("65000.02"), ask_size=D("1.00000001"), update_id=5)),
        ("tickflow.status", ConnectorStatus(venue="coinbase", connection_id="ws-1", state=ConnectorState.RECONNECTING,
                                            reason="socket closed (1006)", attempt=3, ts=NOW)),
        ("tickflow.raw.binance-spot", RawFrame(venue="binance-spot", connection_id="ws-0", receive_ts=NOW,
                                               payload='{"stream":"btcusdt@trade","data":{"p":"1.0"}} ü')),
        ("tickflow.orders.commands", CreateOrder(**order, side=Side.BUY, order_type=OrderType.LIMIT,
                                                 time_in_force=TimeInForce.POST_ONLY, price=D("64000.5"),
                                                 size=D("0.001"))),
        ("tickflow.orders.commands", CancelOrder(**order)),
        ("tickflow.orders.commands", AmendOrder(**order, new_size=D("0.002"))),
        ("tickflow.orders.events", OrderEvent(event_id="ev-1", command_id="cmd-1", account="acct-7", order_id="ord-42",
                                              client_order_id="tf-ord-42", venue="binance-spot",
                                              market=MarketType.SPOT, symbol="BTC-USDT",
                                              status=OrderStatus.REJECTED, reason=RejectReason.RISK_CHECK_FAILED,
                                              rule="max_order_notional", side=Side.BUY, size=D("0.001"),
                                              filled_size=D("0"), event_ts=NOW)),
        ("tickflow.orders.control", KillSwitch(scope="*", engaged=True, reason="drill", set_by="ops", ts=NOW)),
        ("tickflow.dead-letter", DeadLetter(source_topic="tickflow.trades", source_partition=2, source_offset=77,
                                            source_key=b"k", source_value=b"\x00\x01", error_type="MalformedPayload",
                                            reason="short", consumer="test", ts=NOW)),
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("topic", "event"), sample_events(), ids=lambda v: type(v).__name__ if isinstance(v, Event) else v
)
def test_every_event_type_round_trips_exactly(codec: AvroCodec, topic: str, event: Event) -> None:
    payload = codec.encode(event, topic)
    assert payload[0] == 0 and len(payload) > 5
    decoded = codec.decode(payload)
    assert type(decoded) is type(event)
    assert decoded == event  # Decimal equality is numeric: 0.5 == 0.500000000000000000


def test_any_confluent_consumer_reads_our_topics_without_tickflow(settings: Settings, codec: AvroCodec) -> None:
    topic = "tickflow.trades"
    key = f"interop-{uuid.uuid4().hex[:8]}"
    _, trade = sample_events()[0]
    with EventProducer(settings.kafka, codec) as producer:
        producer.send(topic, trade, key=key)

    plain = Consumer({"bootstrap.servers": settings.kafka.bootstrap_servers, "group.id": key,
                      "auto.offset.reset": "earliest"})  # fmt: skip
    deserializer = AvroDeserializer(SchemaRegistryClient({"url": settings.registry.url}))
    plain.subscribe([topic])
    found = None
    deadline = time.monotonic() + 30
    while found is None and time.monotonic() < deadline:
        msg = plain.poll(1.0)
        if msg is not None and msg.error() is None and msg.key() == key.encode():
            found = deserializer(msg.value(), SerializationContext(topic, MessageField.VALUE))
    plain.close()
    assert found is not None, "the plain consumer did not see the record"
    assert found["price"] == D("0.000012345678901234")
    assert found["size"] == D("123456789012345678.5")
    assert found["side"] == "BUY" and found["venue_symbol"] == "1000SHIBUSDT"


def test_apache_avro_reference_implementation_decodes_our_bytes(codec: AvroCodec) -> None:
    """The payload after the 5-byte header is plain Avro that the .avsc alone describes."""
    contract = load_contract()
    for topic, event in sample_events():
        payload = codec.encode(event, topic)
        schema = avro.schema.parse(json.dumps(contract[event.avro_name].schema))
        reader = avro.io.DatumReader(schema)
        data = reader.read(avro.io.BinaryDecoder(io.BytesIO(payload[5:])))
        expected = codec.decode(payload)
        for field in contract[event.avro_name].schema["fields"]:
            ours = getattr(expected, field["name"])
            theirs = data[field["name"]]
            if isinstance(ours, list):
                ours = [(lvl.price, lvl.size) for lvl in ours]
                theirs = [(lvl["price"], lvl["size"]) for lvl in theirs]
            if field["name"].endswith("_ts") or field["name"] in ("ts", "open_time", "close_time"):
                # The reference implementation turns timestamp-micros into datetimes.
                theirs = None if theirs is None else round(theirs.timestamp() * 1_000_000)
            assert ours == theirs, f"{event.avro_name}.{field['name']}: {ours!r} != {theirs!r}"


def test_we_read_what_a_confluent_serializer_writes(settings: Settings, codec: AvroCodec) -> None:
    topic = "tickflow.bbo"
    schema = load_contract()["tickflow.BestBidOffer"].schema_str
    serializer = AvroSerializer(
        SchemaRegistryClient({"url": settings.registry.url}),
        schema,
        conf={"subject.name.strategy": topic_record_subject_name_strategy, "auto.register.schemas": False,
              "use.latest.version": False},
    )  # fmt: skip
    record = {"venue": "coinbase", "market": "SPOT", "symbol": "BTC-USD", "venue_symbol": "BTC-USD",
              "exchange_ts": NOW, "receive_ts": NOW + 1, "bid_price": D("1.5"), "bid_size": D("2"),
              "ask_price": D("1.6"), "ask_size": D("3"), "update_id": None}  # fmt: skip
    payload = serializer(record, SerializationContext(topic, MessageField.VALUE))
    event = codec.decode(payload)
    assert isinstance(event, BestBidOffer)
    assert event.bid_price == D("1.5") and event.exchange_ts == NOW and event.key == "coinbase:BTC-USD"


# --- bad input ---------------------------------------------------------------------------------


def test_malformed_payloads_are_typed_errors(codec: AvroCodec) -> None:
    good = codec.encode(sample_events()[0][1], "tickflow.trades")
    with pytest.raises(MalformedPayload, match="shorter than the 5-byte"):
        codec.decode(b"\x00\x00")
    with pytest.raises(MalformedPayload, match="not the Confluent magic byte"):
        codec.decode(b"{" + good[1:])
    with pytest.raises(MalformedPayload, match="not a valid tickflow.Trade"):
        codec.decode(good[:-6])
    with pytest.raises(MalformedPayload, match="bytes after the end"):
        codec.decode(good + b"\x00\x00")


def test_unknown_schema_id(codec: AvroCodec) -> None:
    with pytest.raises(UnknownSchemaId, match="schema id 987654 is not known"):
        codec.decode(b"\x00" + (987654).to_bytes(4, "big") + b"\x02")


def test_schema_that_is_not_a_tickflow_event(codec: AvroCodec, registry: SchemaRegistry) -> None:
    schema = json.dumps({"type": "record", "name": "Foreign", "namespace": "elsewhere",
                         "fields": [{"name": "x", "type": "long"}]})  # fmt: skip
    schema_id = registry.register(f"test-foreign-{uuid.uuid4().hex[:6]}-value", schema)
    with pytest.raises(UnknownEventType, match="elsewhere.Foreign"):
        codec.decode(b"\x00" + schema_id.to_bytes(4, "big") + b"\x02")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"price": D("0.0000000000000000001")}, "(?i)scale"),  # 19 fractional digits: beyond scale 18
        ({"price": "not a number"}, "price"),
        ({"price": D("1." + "0" * 70 + "1")}, "price"),  # 72 digits: never rounded away silently
        ({"size": D("1e20")}, "size"),  # 21 integer digits: beyond precision 38 at scale 18
        ({"size": D("NaN")}, "size"),
        ({"trade_id": None}, "trade_id"),
    ],
)
def test_records_that_do_not_fit_their_schema_are_rejected(codec: AvroCodec, change: dict, message: str) -> None:
    import msgspec

    bad = msgspec.structs.replace(sample_events()[0][1], **change)
    with pytest.raises(RecordMismatch, match=message):
        codec.encode(bad, "tickflow.trades")


@pytest.mark.parametrize("change", [{"price": D("0.0000000000000000001")}, {"trade_id": None}, {"price": "x"}])
def test_the_fastavro_fallback_rejects_bad_records_too(registry: SchemaRegistry, change: dict) -> None:
    import msgspec

    bad = msgspec.structs.replace(sample_events()[0][1], **change)
    with pytest.raises(RecordMismatch):
        AvroCodec(registry, compiled_writer=False).encode(bad, "tickflow.trades")


@pytest.mark.parametrize(
    ("topic", "event"), sample_events(), ids=lambda v: type(v).__name__ if isinstance(v, Event) else v
)
def test_decode_typed_gives_what_decode_gives(codec: AvroCodec, topic: str, event: Event) -> None:
    payload = codec.encode(event, topic)
    typed = codec.decode_typed(payload)
    assert typed == codec.decode(payload) == event
    assert type(typed) is type(event)


def test_the_compiled_writer_is_built_and_writes_exactly_what_fastavro_writes(registry: SchemaRegistry) -> None:
    from tickflow import avro_plan

    assert avro_plan.compiled is not None, "the compiled Avro writer was not built (needs Cython and a C compiler)"
    fast, reference = AvroCodec(registry), AvroCodec(registry, compiled_writer=False)
    levels = [PriceLevel(D(f"{i}.{i:03d}"), D(f"-{i}e-18")) for i in range(1, 300)]
    extra = [
        ("tickflow.book", BookUpdate(venue="v", market=MarketType.FUTURE, symbol="A-B", venue_symbol="AB",
                                     exchange_ts=-1, receive_ts=2**62, kind=BookUpdateKind.DELTA, bids=levels,
                                     asks=levels[::-1], first_update_id=-(2**63), last_update_id=2**63 - 1)),
        ("tickflow.trades", Trade(venue="ü" * 300, market=MarketType.SPOT, symbol="", venue_symbol="x", exchange_ts=0,
                                  receive_ts=1, trade_id="t", price=D("-128"),
                                  size=D("99999999999999999999.999999999999999999"), side=Side.UNKNOWN)),
        # An array of strings: the writer's alone (the compiled readers leave it to fastavro).
        *[("tickflow.orders.state", OrderState(order_id="o", account="a", venue="v", market=MarketType.SPOT,
                                               symbol="A-B", side=Side.SELL, order_type=OrderType.LIMIT,
                                               client_order_id="tf1", status=OrderStatus.PARTIALLY_FILLED,
                                               price=D("1.5"), size=D("2"), filled_size=D("0.5"), answered=answered,
                                               updated_ts=NOW))
          for answered in ([], ["cmd-1"], ["cmd-ü" * 40, "", "x"] * 30)],
        ("tickflow.balances", Balance(account="a", venue="v", asset="USDT", free=D("1.25"), locked=D(0), event_ts=NOW)),
    ]  # fmt: skip
    for topic, event in [*sample_events(), *extra]:
        assert isinstance(fast.encoder(topic, type(event)), avro_plan.compiled.Encoder), event.avro_name
        assert fast.encode(event, topic) == reference.encode(event, topic), event.avro_name


def test_unreachable_registry_is_retried_then_reported() -> None:
    registry = SchemaRegistry(RegistrySettings(url="http://127.0.0.1:9/apis/ccompat/v7", retry_seconds=1.0))
    codec = AvroCodec(registry)
    started = time.monotonic()
    with pytest.raises(RegistryUnavailable, match="unavailable after 1s of retries"):
        codec.encode(sample_events()[0][1], "tickflow.trades")
    assert 0.5 < time.monotonic() - started < 5


# --- compatibility -----------------------------------------------------------------------------


def _trade_schema(extra_field: dict | None) -> str:
    schema = json.loads(load_contract()["tickflow.Trade"].schema_str)
    if extra_field:
        schema["fields"].append(extra_field)
    return json.dumps(schema)


def test_registry_enforces_backward_compatibility(registry: SchemaRegistry, new_topic: Callable[..., str]) -> None:
    from tickflow.provision import register_schemas
    from tickflow.topics import TopicSpec

    topic = new_topic("test-compat", partitions=1)
    register_schemas(registry, {topic: TopicSpec(topic, 1, None, {}, ("tickflow.Trade",))})
    subject = subject_name(topic, "tickflow.Trade")
    assert registry.compatibility(subject) == "BACKWARD"

    # Adding an optional field with a default: new readers can read old data.
    compatible = _trade_schema({"name": "venue_trade_time", "type": ["null", "long"], "default": None})
    v2 = registry.register(subject, compatible)
    assert registry.versions(subject) == [1, 2] and v2 > 0

    # Adding a required field with no default: old data cannot be read. Refused, with a reason.
    with pytest.raises(IncompatibleSchema, match=f"subject '{subject}' is incompatible"):
        registry.register(subject, _trade_schema({"name": "fee_tier", "type": "string"}))
    assert registry.versions(subject) == [1, 2]


class TradeV2(Trade, kw_only=True):
    """``Trade`` as a newer contract might have it: one more field, with a default."""

    venue_trade_time: int | None = None


def _newer_contract_codec(registry: SchemaRegistry) -> AvroCodec:
    """A codec whose contract has ``TradeV2``'s schema for ``tickflow.Trade``."""
    import fastavro

    from tickflow.schemas import RecordSchema

    newer = json.loads(_trade_schema({"name": "venue_trade_time", "type": ["null", "long"], "default": None}))
    contract = dict(load_contract())
    contract["tickflow.Trade"] = RecordSchema("tickflow.Trade", newer, fastavro.parse_schema(newer), contract[
        "tickflow.Trade"].path)  # fmt: skip
    return AvroCodec(registry, contract=contract, event_types={"tickflow.Trade": TradeV2})


def test_old_records_decode_after_the_contract_evolves(codec: AvroCodec, registry: SchemaRegistry) -> None:
    """A reader built with a newer schema (extra field with default) reads records written with the old one."""
    import msgspec

    old_payload = codec.encode(sample_events()[0][1], "tickflow.trades")
    event = _newer_contract_codec(registry).decode(old_payload)
    assert isinstance(event, TradeV2) and event.venue_trade_time is None
    assert msgspec.structs.asdict(event) | {"venue_trade_time": None} == msgspec.structs.asdict(event)
    assert event.price == D("0.000012345678901234")


def test_compiled_decimals_match_fastavro_on_many_values(registry: SchemaRegistry) -> None:
    """Random decimals of every shape, through both Decimal readers of the compiled writer."""
    import random

    import msgspec

    from tickflow import avro_plan

    assert avro_plan.compiled is not None and avro_plan.compiled.DECIMAL_READER == "struct"

    class TextDecimal(D):  # a subclass: the compiled writer reads it from its text
        pass

    rng = random.Random(7)
    fast, reference = AvroCodec(registry), AvroCodec(registry, compiled_writer=False)
    base = sample_events()[0][1]
    for _ in range(3000):
        scale = rng.randint(0, 18)
        digits = rng.randint(max(1, scale), scale + 20)  # decimal(38, 18): 20 integer digits at most
        coefficient = rng.randrange(10 ** (digits - 1) if digits > 1 else 0, 10**digits)
        text = f"{'-' if rng.random() < 0.3 else ''}{coefficient}E-{scale}"
        value = D(text)
        if rng.random() < 0.3:
            value = value.normalize()  # other exponents for the same number
        if len(value.as_tuple().digits) > 38 or -value.as_tuple().exponent > 18:
            continue
        plain = msgspec.structs.replace(base, price=value, size=value.copy_abs())
        expected = reference.encode(plain, "tickflow.trades")
        assert fast.encode(plain, "tickflow.trades") == expected, text
        subclassed = msgspec.structs.replace(plain, price=TextDecimal(value))
        assert fast.encode(subclassed, "tickflow.trades") == expected, text


# --- the compiled field reader (decode_fields) ----------------------------------------------------


def _as_fields(value: object) -> object:
    """What ``decode_fields`` gives for fastavro's decoded value: records as tuples in schema
    order (fastavro's dicts keep it), decimals as their unscaled integers at scale 18."""
    from processors.scaled import units

    if isinstance(value, dict):
        return tuple(_as_fields(v) for v in value.values())
    if isinstance(value, list):
        return [_as_fields(v) for v in value]
    if isinstance(value, Decimal):
        return units(value)
    return value


@pytest.mark.parametrize(
    ("topic", "event"), sample_events(), ids=lambda v: type(v).__name__ if isinstance(v, Event) else v
)
def test_decode_fields_reads_every_event_type_as_fastavro_does(codec: AvroCodec, topic: str, event: Event) -> None:
    from tickflow import codec as codec_module

    assert codec_module._avro_reader is not None, "the compiled Avro reader was not built (Cython, a C compiler)"
    payload = codec.encode(event, topic)
    event_type, data = codec.decode_data(payload)
    assert codec.decode_fields(payload) == (event_type, _as_fields(data))


def test_decode_fields_decimals_are_exact_on_many_values(codec: AvroCodec) -> None:
    """Random prices and sizes of every width (1 to 16 bytes on the wire, negative too)."""
    import random

    import msgspec

    from processors.scaled import units

    rng = random.Random(11)
    base = sample_events()[0][1]
    for _ in range(3000):
        digits = rng.randint(1, 38)
        value = D(f"{'-' if rng.random() < 0.3 else ''}{rng.randrange(10 ** (digits - 1), 10**digits)}E-18")
        trade = msgspec.structs.replace(base, price=value, size=value.copy_negate())
        fields = codec.decode_fields(codec.encode(trade, "tickflow.trades"))
        assert fields is not None and fields[1][7:9] == (units(value), -units(value)), value


def test_decode_fields_rejects_malformed_bytes_with_the_field_named(codec: AvroCodec) -> None:
    event = sample_events()[1][1]  # a book delta
    payload = codec.encode(event, "tickflow.book")
    for cut in range(6, len(payload)):  # every truncation: a typed error, never a wrong record
        with pytest.raises(MalformedPayload):
            codec.decode_fields(payload[:cut])
    with pytest.raises(MalformedPayload, match="bytes after the end of the tickflow.BookUpdate record"):
        codec.decode_fields(payload + b"\x00")
    header, body = payload[:5], payload[5:]
    venue = len(event.venue) + 1  # the venue string, then the market enum's index
    with pytest.raises(MalformedPayload, match=r"tickflow.BookUpdate.market: enum index 63"):
        codec.decode_fields(header + body[:venue] + b"\x7e" + body[venue + 1 :])
    with pytest.raises(MalformedPayload, match="shorter than the 5-byte"):
        codec.decode_fields(b"\x00\x00")


def test_decode_fields_leaves_other_writer_schemas_to_fastavro(codec: AvroCodec, registry: SchemaRegistry) -> None:
    """A record written with a schema other than ours (here: an older one, as after the contract
    evolves) needs schema resolution: ``decode_fields`` declines it and ``decode`` reads it."""
    old_payload = codec.encode(sample_events()[0][1], "tickflow.trades")
    reader = _newer_contract_codec(registry)
    assert reader.decode_fields(old_payload) is None
    assert reader.decode(old_payload).price == D("0.000012345678901234")
    assert codec.decode_fields(old_payload) is not None  # the same bytes, our own schema: read
