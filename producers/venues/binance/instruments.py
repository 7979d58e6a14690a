"""Binance's instrument metadata (``exchangeInfo``): symbols, assets and trading filters."""

from __future__ import annotations

from decimal import Decimal

import msgspec

from producers.connection import now_us
from tickflow.errors import MalformedFrame
from tickflow.events import Instrument, MarketType


class _Filter(msgspec.Struct):
    filterType: str
    tickSize: str | None = None
    stepSize: str | None = None
    minQty: str | None = None
    maxQty: str | None = None
    minNotional: str | None = None  # spot NOTIONAL / MIN_NOTIONAL
    notional: str | None = None  # USD-M MIN_NOTIONAL


class _Symbol(msgspec.Struct):
    symbol: str
    status: str
    baseAsset: str
    quoteAsset: str
    filters: list[_Filter]
    contractType: str | None = None  # USD-M: PERPETUAL, CURRENT_QUARTER, ...


class _ExchangeInfo(msgspec.Struct):
    symbols: list[_Symbol]


_decoder = msgspec.json.Decoder(_ExchangeInfo)


def _dec(value: str | None) -> Decimal | None:
    return None if value is None or Decimal(value) == 0 else Decimal(value).normalize()


def parse_exchange_info(body: bytes, venue: str, market: MarketType) -> list[Instrument]:
    try:
        info = _decoder.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise MalformedFrame(f"{venue} exchangeInfo: {exc}") from None
    ts = now_us()
    out = []
    for s in info.symbols:
        filters = {f.filterType: f for f in s.filters}
        price, lot = filters.get("PRICE_FILTER"), filters.get("LOT_SIZE")
        notional = filters.get("NOTIONAL") or filters.get("MIN_NOTIONAL")
        expiry = s.symbol.partition("_")[2]  # dated futures: BTCUSDT_240628
        dated = bool(expiry) or (s.contractType not in (None, "PERPETUAL"))
        out.append(
            Instrument(
                venue=venue, market=MarketType.FUTURE if dated and market is MarketType.PERPETUAL else market,
                symbol=f"{s.baseAsset}-{s.quoteAsset}" + (f"-{expiry}" if expiry else ""), venue_symbol=s.symbol,
                base=s.baseAsset, quote=s.quoteAsset, status=s.status, trading=s.status == "TRADING",
                tick_size=_dec(price.tickSize if price else None) or Decimal(0),
                lot_size=_dec(lot.stepSize if lot else None) or Decimal(0),
                min_size=_dec(lot.minQty if lot else None), max_size=_dec(lot.maxQty if lot else None),
                min_notional=_dec((notional.minNotional or notional.notional) if notional else None), ts=ts,
            )
        )  # fmt: skip
    return out
