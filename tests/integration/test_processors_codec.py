"""The processors' Faust serializer against the real registry: typed events both ways, Confluent
framing, and a bad payload as a value (for the dead-letter topic) instead of an exception."""

from __future__ import annotations

from decimal import Decimal

from processors.codec import AvroSerializer, Undecodable
from tickflow.codec import AvroCodec
from tickflow.events import BookHealth, BookTop, MarketType


def test_round_trip_through_the_registry_and_framing(codec: AvroCodec) -> None:
    top = BookTop(venue="binance-spot", market=MarketType.SPOT, symbol="BTC-USDT", venue_symbol="BTCUSDT",
                  exchange_ts=1, receive_ts=2, processed_ts=3, health=BookHealth.LIVE, update_id=7,
                  bid_price=Decimal("65000.01"), bid_size=Decimal("0.5"))  # fmt: skip
    payload = AvroSerializer(codec, "tickflow.book.bbo").dumps(top)
    assert payload[0] == 0 and codec.schema_id(payload) == codec.register("tickflow.book.bbo", BookTop)
    decoded = AvroSerializer(codec).loads(payload)  # decoding needs no topic
    assert decoded == top and isinstance(decoded, BookTop)


def test_bad_payloads_decode_to_undecodable(codec: AvroCodec) -> None:
    serializer = AvroSerializer(codec)
    not_framed = serializer.loads(b'{"json": true}')
    assert isinstance(not_framed, Undecodable) and not_framed.error_type == "MalformedPayload"
    unknown = serializer.loads(b"\x00\x7f\xff\xff\xf0payload")
    assert isinstance(unknown, Undecodable) and unknown.error_type == "UnknownSchemaId"
    assert unknown.payload == b"\x00\x7f\xff\xff\xf0payload"
