"""Market-data events: what the producers publish and the processors consume."""

from __future__ import annotations

from decimal import Decimal

from tickflow.events.base import Event, MarketEvent, PriceLevel
from tickflow.events.enums import BookHealth, BookResetReason, BookUpdateKind, ConnectorState, MarketType, Side


class Trade(MarketEvent, kw_only=True):
    avro_name = "tickflow.Trade"
    exchange_ts: int
    trade_id: str
    price: Decimal
    size: Decimal
    side: Side


class BookUpdate(MarketEvent, kw_only=True):
    avro_name = "tickflow.BookUpdate"
    kind: BookUpdateKind
    bids: list[PriceLevel]
    asks: list[PriceLevel]
    first_update_id: int | None = None
    last_update_id: int | None = None
    prev_update_id: int | None = None
    sequence: int | None = None
    prev_sequence: int | None = None
    checksum: int | None = None


class BookReset(MarketEvent, kw_only=True):
    avro_name = "tickflow.BookReset"
    reason: BookResetReason
    expected_update_id: int | None = None
    received_update_id: int | None = None
    missed_updates: int | None = None
    detail: str = ""


class Kline(MarketEvent, kw_only=True):
    avro_name = "tickflow.Kline"
    exchange_ts: int
    interval: str
    open_time: int
    close_time: int
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal
    quote_volume: Decimal | None = None
    vwap: Decimal | None = None
    trade_count: int | None = None
    closed: bool
    revision: int = 0


class BestBidOffer(MarketEvent, kw_only=True):
    avro_name = "tickflow.BestBidOffer"
    bid_price: Decimal
    bid_size: Decimal
    ask_price: Decimal
    ask_size: Decimal
    update_id: int | None = None


class BookTop(MarketEvent, kw_only=True):
    """Best bid/offer of the order-book agent's validated book (``processors/``)."""

    avro_name = "tickflow.BookTop"
    processed_ts: int
    health: BookHealth
    detail: str = ""
    update_id: int | None = None
    bid_price: Decimal | None = None
    bid_size: Decimal | None = None
    ask_price: Decimal | None = None
    ask_size: Decimal | None = None


class BookDepth(MarketEvent, kw_only=True):
    """Top levels of the order-book agent's validated book (``processors/``)."""

    avro_name = "tickflow.BookDepth"
    processed_ts: int
    health: BookHealth
    detail: str = ""
    update_id: int | None = None
    depth: int
    bids: list[PriceLevel]
    asks: list[PriceLevel]


class ConnectorStatus(Event, kw_only=True):
    avro_name = "tickflow.ConnectorStatus"
    key_fields = ("venue",)
    venue: str
    connection_id: str
    state: ConnectorState
    reason: str | None = None
    channel: str | None = None
    symbol: str | None = None
    attempt: int = 0
    ts: int


class RawFrame(Event, kw_only=True):
    avro_name = "tickflow.RawFrame"
    key_fields = ("venue", "connection_id")
    venue: str
    connection_id: str
    #: 1 for the connection's first WebSocket, one more after each reconnect (0: not recorded).
    connection_number: int = 0
    receive_ts: int
    payload: str


class Instrument(Event, kw_only=True):
    """An instrument's trading rules as the venue publishes them."""

    avro_name = "tickflow.Instrument"
    key_fields = ("venue", "symbol")
    venue: str
    market: MarketType
    symbol: str
    venue_symbol: str
    base: str
    quote: str
    status: str
    trading: bool
    tick_size: Decimal
    lot_size: Decimal
    min_size: Decimal | None = None
    max_size: Decimal | None = None
    min_notional: Decimal | None = None
    ts: int
