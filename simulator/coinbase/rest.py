"""Coinbase Advanced Trade public REST bodies: products, one product, the product book, errors."""

from __future__ import annotations

import time
from decimal import Decimal

from websockets.http11 import Response

from simulator.coinbase.render import Clock
from simulator.instruments import Instrument
from simulator.server import json_response

PREFIX = "/api/v3/brokerage/market"
NAMES = {"USD": "US Dollar", "USDT": "Tether", "USDC": "USDC", "EUR": "Euro", "BTC": "Bitcoin", "ETH": "Ethereum"}


def error(status: int, kind: str, message: str, headers: dict[str, str] | None = None) -> Response:
    return json_response(status, {"error": kind, "error_details": message, "message": message}, headers)


def not_found(message: str = "ProductID is invalid") -> Response:
    return error(404, "NOT_FOUND", message)


def too_many(retry_after: int) -> Response:
    return error(429, "RATE_LIMIT_EXCEEDED", "Too many requests", {"Retry-After": str(retry_after)})


def _plain(value: Decimal) -> str:
    return f"{value.normalize():f}"


def product(product_id: str, instrument: Instrument, last: int, volume_lots: int, best: tuple[int, int]) -> dict:
    """One product in the venue's shape (``GET .../market/products/{product_id}``)."""
    price, size = instrument.price, instrument.size
    mid = Decimal(best[0] + best[1]) / 2 * instrument.tick_size
    return {
        "product_id": product_id, "price": price.plain(last), "price_percentage_change_24h": "0",
        "volume_24h": size.plain(volume_lots), "volume_percentage_change_24h": "0",
        "base_increment": _plain(instrument.step_size), "quote_increment": _plain(instrument.tick_size),
        "quote_min_size": _plain(instrument.min_notional), "quote_max_size": "150000000",
        "base_min_size": _plain(instrument.step_size * instrument.min_size_lots), "base_max_size": "9000000",
        "base_name": NAMES.get(instrument.base, instrument.base),
        "quote_name": NAMES.get(instrument.quote, instrument.quote),
        "watched": False, "is_disabled": False, "new": False, "status": "online", "cancel_only": False,
        "limit_only": False, "post_only": False, "trading_disabled": False, "auction_mode": False,
        "product_type": "SPOT", "quote_currency_id": instrument.quote, "base_currency_id": instrument.base,
        "fcm_trading_session_details": None, "mid_market_price": _plain(mid), "alias": "", "alias_to": [],
        "base_display_symbol": instrument.base, "quote_display_symbol": instrument.quote, "view_only": False,
        "price_increment": _plain(instrument.tick_size), "display_name": product_id, "product_venue": "CBE",
        "approximate_quote_24h_volume": "0",
    }  # fmt: skip


def product_book(product_id: str, instrument: Instrument, bids: dict[int, int], asks: dict[int, int], limit: int,
                 last: int) -> dict:  # fmt: skip
    price, size = instrument.price, instrument.size
    top_bids = sorted(bids, reverse=True)[:limit]
    top_asks = sorted(asks)[:limit]
    best_bid, best_ask = top_bids[0], top_asks[0]
    mid = Decimal(best_bid + best_ask) / 2 * instrument.tick_size
    spread = (best_ask - best_bid) * instrument.tick_size
    return {
        "pricebook": {
            "product_id": product_id,
            "bids": [{"price": price.plain(p), "size": size.plain(bids[p])} for p in top_bids],
            "asks": [{"price": price.plain(p), "size": size.plain(asks[p])} for p in top_asks],
            "time": Clock()(int(time.time() * 1000)),
        },
        "last": price.plain(last),
        "mid_market": _plain(mid),
        "spread_bps": _plain((spread / mid * 10000).quantize(Decimal("0.000000000001"))),
        "spread_absolute": _plain(spread),
    }
