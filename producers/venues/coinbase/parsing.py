"""Coinbase Advanced Trade frames, decoded with typed ``msgspec`` structs.

Every market-data message has one envelope (``channel``, ``timestamp``, ``sequence_num``,
``events``); its events are decoded by channel. Prices and sizes become ``Decimal`` straight
from the venue's strings: exact, never a float. Timestamps are RFC 3339 with nanoseconds.
"""

from __future__ import annotations

import calendar
from decimal import Decimal
from functools import lru_cache

import msgspec

from tickflow.errors import MalformedFrame


class Envelope(msgspec.Struct):
    channel: str | None = None
    timestamp: str | None = None
    sequence_num: int | None = None
    events: msgspec.Raw = msgspec.Raw()
    # Errors: {"type": "error", "message": "Failed to subscribe", "reason": "..."}
    type: str | None = None
    message: str | None = None
    reason: str | None = None


class L2Update(msgspec.Struct):
    side: str  # "bid" or "offer"
    price_level: Decimal
    new_quantity: Decimal  # the new size of the level, not a delta; 0 removes it
    event_time: str | None = None


class L2Event(msgspec.Struct):
    type: str  # "snapshot" or "update"
    product_id: str
    updates: list[L2Update]


class MarketTrade(msgspec.Struct):
    trade_id: str
    product_id: str
    price: str
    size: str
    side: str  # "BUY" / "SELL"
    time: str


class TradesEvent(msgspec.Struct):
    type: str
    trades: list[MarketTrade]


class Ticker(msgspec.Struct):
    product_id: str
    best_bid: str
    best_ask: str
    best_bid_quantity: str
    best_ask_quantity: str
    price: str | None = None


class TickerEvent(msgspec.Struct):
    type: str
    tickers: list[Ticker]


class Candle(msgspec.Struct):
    start: str
    open: str
    high: str
    low: str
    close: str
    volume: str
    product_id: str


class CandlesEvent(msgspec.Struct):
    type: str
    candles: list[Candle]


class SubscriptionsEvent(msgspec.Struct):
    subscriptions: dict[str, list[str]]


envelope = msgspec.json.Decoder(Envelope)
EVENT_DECODERS: dict[str, msgspec.json.Decoder] = {
    "l2_data": msgspec.json.Decoder(list[L2Event]),
    "market_trades": msgspec.json.Decoder(list[TradesEvent]),
    "ticker": msgspec.json.Decoder(list[TickerEvent]),
    "ticker_batch": msgspec.json.Decoder(list[TickerEvent]),
    "candles": msgspec.json.Decoder(list[CandlesEvent]),
    "subscriptions": msgspec.json.Decoder(list[SubscriptionsEvent]),
}

#: The channel a message arrives on -> the channel it was subscribed as (the watchdog's key).
SUBSCRIBED_AS = {"l2_data": "level2", "ticker_batch": "ticker"}


@lru_cache(maxsize=4096)
def _second(prefix: str) -> int:
    """``2023-02-09T20:32:50`` -> seconds since the epoch (UTC). Cached: a busy feed sends many
    messages within one second."""
    date, _, clock = prefix.partition("T")
    year, month, day = date.split("-")
    hour, minute, second = clock.split(":")
    return calendar.timegm((int(year), int(month), int(day), int(hour), int(minute), int(second)))


def micros(timestamp: str) -> int:
    """RFC 3339 (``2023-02-09T20:32:50.714964855Z``) -> microseconds since the epoch (UTC)."""
    try:
        body = timestamp.rstrip("Z")
        prefix, _, fraction = body.partition(".")
        return _second(prefix[:19]) * 1_000_000 + int((fraction + "000000")[:6])
    except (ValueError, IndexError):
        raise MalformedFrame(f"coinbase: bad timestamp {timestamp!r}") from None
