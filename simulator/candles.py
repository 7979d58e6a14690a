"""OHLCV candles built from the market's fills, so a venue's klines agree with its trades."""

from __future__ import annotations

from dataclasses import dataclass

from simulator.market import Fill


@dataclass(slots=True)
class Candle:
    open_ms: int
    interval_ms: int
    open: int  # ticks
    high: int
    low: int
    close: int
    lots: int = 0
    #: Sum of ticks * lots: the quote volume in (tick * lot) units, exact.
    notional: int = 0
    trades: int = 0
    first_id: int = -1
    last_id: int = -1
    taker_buy_lots: int = 0
    taker_buy_notional: int = 0

    @property
    def close_ms(self) -> int:
        """The candle's last millisecond (Binance's ``T``)."""
        return self.open_ms + self.interval_ms - 1


class CandleSeries:
    """The current candle of one symbol at one interval; ``roll`` closes it when time moves on."""

    __slots__ = ("current", "interval_ms")

    def __init__(self, interval_ms: int, open_ticks: int, now_ms: int) -> None:
        self.interval_ms = interval_ms
        start = now_ms - now_ms % interval_ms
        self.current = Candle(start, interval_ms, open_ticks, open_ticks, open_ticks, open_ticks)

    def roll(self, now_ms: int) -> Candle | None:
        """If ``now_ms`` is past the current candle, start the next one (opening at the last
        close, as an empty candle does) and return the closed candle."""
        current = self.current
        if now_ms < current.open_ms + self.interval_ms:
            return None
        start = now_ms - now_ms % self.interval_ms
        c = current.close
        self.current = Candle(start, self.interval_ms, c, c, c, c)
        return current

    def add(self, fill: Fill) -> None:
        candle = self.current
        price, lots = fill.price, fill.lots
        if candle.trades == 0:
            candle.open = candle.high = candle.low = price
            candle.first_id = fill.first_id
        candle.high = max(candle.high, price)
        candle.low = min(candle.low, price)
        candle.close = price
        candle.lots += lots
        candle.notional += price * lots
        candle.trades += len(fill.sizes)
        candle.last_id = fill.last_id
        if fill.taker_buy:
            candle.taker_buy_lots += lots
            candle.taker_buy_notional += price * lots
