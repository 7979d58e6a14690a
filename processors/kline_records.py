"""The kline agent's records: trades in (``TradeRecord``, checked, as ``Tick``), derived
``Kline`` out."""

from __future__ import annotations

from processors.codec import MarketRecord, ScaledReader
from processors.kline import Emitted, InstrumentKlines, Tick
from processors.scaled import plain, to_decimal
from tickflow.codec import AvroCodec
from tickflow.events import Kline, Trade

CONSUMER = "processors.klines"


class TradeRecord(MarketRecord):
    """A ``Trade``, price and size at scale 18 (``scaled.py``), enums as their symbols, read
    straight from the payload by the compiled reader (``exchange_ts`` is never null for a trade)."""

    trade_id: str
    price: int
    size: int
    side: str


def trade_reader(codec: AvroCodec) -> ScaledReader[TradeRecord]:
    """Reads the trade topic: ``TradeRecord``, or the typed event of any other record (the
    venue's klines come back as ``Kline``)."""
    return ScaledReader(codec, Trade, TradeRecord)


def implausible_trade(trade: TradeRecord) -> str | None:
    """Why a trade cannot be right, else ``None`` (the agent dead-letters it)."""
    if trade.price <= 0 or trade.size <= 0:
        return f"impossible trade price={plain(trade.price)} size={plain(trade.size)}"
    if trade.exchange_ts <= 0:
        return f"no exchange time ({trade.exchange_ts}): a trade cannot be placed in event time"
    return None


def implausible_kline(kline: Kline) -> str | None:
    prices = (kline.open, kline.high, kline.low, kline.close)
    if min(prices) <= 0 or kline.volume < 0 or kline.low > min(prices) or kline.high < max(prices):
        return f"impossible kline o={kline.open} h={kline.high} l={kline.low} c={kline.close} v={kline.volume}"
    return None


def tick(trade: TradeRecord) -> Tick:
    return Tick(trade.trade_id, trade.exchange_ts, trade.receive_ts, trade.price, trade.size)


def derived_kline(head: InstrumentKlines, emitted: Emitted) -> Kline:
    w = emitted.window
    return Kline(
        venue=head.venue,
        market=head.market,
        symbol=head.symbol,
        venue_symbol=head.venue_symbol,
        exchange_ts=w.last_ts,  # the latest trade's in the kline
        receive_ts=w.receive_ts,
        interval=emitted.interval,
        open_time=w.open_time,
        close_time=w.open_time + emitted.interval_us,
        open=to_decimal(w.open),
        high=to_decimal(w.high),
        low=to_decimal(w.low),
        close=to_decimal(w.close),
        volume=to_decimal(w.volume),
        quote_volume=to_decimal(w.quote_volume),
        vwap=to_decimal(w.vwap),
        trade_count=w.count,
        closed=emitted.closed,
        revision=w.revision if emitted.closed else 0,
    )
