"""Coinbase's instrument metadata: ``GET /api/v3/brokerage/market/products`` (public)."""

from __future__ import annotations

from decimal import Decimal

import msgspec

from producers.connection import now_us
from tickflow.errors import MalformedFrame
from tickflow.events import Instrument, MarketType

PRODUCTS_PATH = "/api/v3/brokerage/market/products"


class _Product(msgspec.Struct):
    product_id: str
    base_currency_id: str
    quote_currency_id: str
    base_increment: str
    quote_increment: str
    status: str
    price_increment: str | None = None
    base_min_size: str | None = None
    base_max_size: str | None = None
    quote_min_size: str | None = None
    trading_disabled: bool = False
    is_disabled: bool = False
    product_type: str = "SPOT"


class _Products(msgspec.Struct):
    products: list[_Product]


_decoder = msgspec.json.Decoder(_Products)


def _dec(value: str | None) -> Decimal | None:
    return None if not value or Decimal(value) == 0 else Decimal(value).normalize()


def parse_products(body: bytes) -> list[Instrument]:
    try:
        products = _decoder.decode(body).products
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise MalformedFrame(f"coinbase products: {exc}") from None
    ts = now_us()
    return [
        Instrument(
            venue="coinbase",
            market=MarketType.SPOT if p.product_type == "SPOT" else MarketType.FUTURE,
            symbol=f"{p.base_currency_id}-{p.quote_currency_id}",
            venue_symbol=p.product_id,
            base=p.base_currency_id,
            quote=p.quote_currency_id,
            status=p.status,
            trading=p.status == "online" and not (p.trading_disabled or p.is_disabled),
            tick_size=_dec(p.price_increment or p.quote_increment) or Decimal(0),
            lot_size=_dec(p.base_increment) or Decimal(0),
            min_size=_dec(p.base_min_size),
            max_size=_dec(p.base_max_size),
            min_notional=_dec(p.quote_min_size),
            ts=ts,
        )
        for p in products
    ]
