"""Binance symbol names: ``BTCUSDT`` -> ``BTC-USDT``.

Binance symbols have no separator, so the quote asset is recognised by suffix, longest first.
The instrument provider (exchangeInfo, next step) will give exact base/quote per symbol; until
then this covers every quote asset Binance lists.
"""

from __future__ import annotations

from functools import cache

QUOTE_ASSETS = sorted(
    {
        "USDT", "USDC", "FDUSD", "TUSD", "BUSD", "DAI", "USDP", "USD", "BTC", "ETH", "BNB", "XRP", "TRX",
        "DOGE", "DOT", "EUR", "GBP", "TRY", "BRL", "AUD", "RUB", "UAH", "NGN", "ZAR", "IDR", "JPY", "PLN",
        "RON", "ARS", "MXN", "COP", "CZK", "BIDR", "BVND", "IDRT", "VAI", "PAX", "AEUR",
    },
    key=len,
    reverse=True,
)  # fmt: skip


@cache
def normalize_symbol(venue_symbol: str) -> str:
    """``BASE-QUOTE`` for a Binance symbol; dated futures keep their expiry (``BTC-USDT-240628``)."""
    symbol, _, expiry = venue_symbol.upper().partition("_")
    for quote in QUOTE_ASSETS:
        if symbol.endswith(quote) and len(symbol) > len(quote):
            normalized = f"{symbol[: -len(quote)]}-{quote}"
            return f"{normalized}-{expiry}" if expiry else normalized
    return symbol
