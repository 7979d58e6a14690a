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


def test_the_agents_readers_give_the_records_fastavro_would(codec: AvroCodec) -> None:
    """The book and trade records the agents read with the compiled reader equal those made from
    the typed events; other records come back typed; bad bytes come back ``Undecodable``."""
    from processors.book_records import BookRecord, book_reader
    from processors.kline_records import TradeRecord, trade_reader
    from tickflow.events import BookReset, BookResetReason, BookUpdate, BookUpdateKind, PriceLevel, Side, Trade

    D = Decimal
    head = {"venue": "binance-spot", "market": MarketType.SPOT, "symbol": "BTC-USDT", "venue_symbol": "BTCUSDT",
            "receive_ts": 2}  # fmt: skip
    delta = BookUpdate(**head, exchange_ts=1, kind=BookUpdateKind.DELTA, first_update_id=5, last_update_id=6,
                       bids=[PriceLevel(D("65000.01"), D("0")), PriceLevel(D("64999.5"), D("0.00000001"))],
                       asks=[PriceLevel(D("123456789012345678.5"), D("1"))])  # fmt: skip
    trade = Trade(**head, exchange_ts=1, trade_id="t-1", price=D("0.000012345678901234"), size=D("3"), side=Side.SELL)
    reset = BookReset(**head, exchange_ts=None, reason=BookResetReason.RECONNECT)
    read_book, read_trades = book_reader(codec), trade_reader(codec)

    record = read_book(codec.encode(delta, "tickflow.book"))
    assert isinstance(record, BookRecord) and record == BookRecord.of(delta)
    assert record.bids == [(65000010000000000000000, 0), (64999500000000000000000, 10000000000)]
    assert record.kind == BookUpdateKind.DELTA and record.key == delta.key
    assert read_book(codec.encode(reset, "tickflow.book")) == reset
    traded = read_trades(codec.encode(trade, "tickflow.trades"))
    assert isinstance(traded, TradeRecord) and traded == TradeRecord.of(trade) and traded.price == 12345678901234
    bad = read_book(codec.encode(delta, "tickflow.book")[:-3])
    assert isinstance(bad, Undecodable) and bad.error_type == "MalformedRecord" and "tickflow.BookUpdate" in bad.reason
