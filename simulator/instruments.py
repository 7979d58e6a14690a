"""Instrument metadata of the synthetic market: what a venue's exchangeInfo / products list says.

One ``Instrument`` per symbol, venue-neutral: base and quote assets, the price grid (tick size),
the size grid (lot/step size), the minimum size and the minimum notional. Venues name symbols
their own way (``BTCUSDT`` at Binance, ``BTC-USD`` at Coinbase) from ``base`` and ``quote``.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from decimal import Decimal

from simulator.decimals import Grid

#: Real-looking base assets first; past these, synthetic names (SYN051, ...).
BASE_ASSETS = [
    "BTC",
    "ETH",
    "BNB",
    "SOL",
    "XRP",
    "ADA",
    "DOGE",
    "TRX",
    "DOT",
    "LINK",
    "MATIC",
    "LTC",
    "AVAX",
    "ATOM",
    "UNI",
    "XLM",
    "ETC",
    "FIL",
    "NEAR",
    "APT",
    "ARB",
    "OP",
    "ALGO",
    "VET",
    "ICP",
    "HBAR",
    "SAND",
    "MANA",
    "AAVE",
    "EGLD",
    "AXS",
    "THETA",
    "FTM",
    "XTZ",
    "EOS",
    "FLOW",
    "CHZ",
    "KAVA",
    "ZEC",
    "DASH",
    "NEO",
    "IOTA",
    "ENJ",
    "BAT",
    "ZIL",
    "COMP",
    "SNX",
    "CRV",
    "SUSHI",
    "YFI",
]


@dataclass(frozen=True)
class Instrument:
    base: str
    quote: str
    price: Grid  # tick size
    size: Grid  # lot / step size
    min_size_lots: int
    min_notional: Decimal
    #: The price the market opens at, in ticks.
    open_ticks: int

    @property
    def tick_size(self) -> Decimal:
        return self.price.increment

    @property
    def step_size(self) -> Decimal:
        return self.size.increment


def make_instruments(count: int, quote: str, rng: random.Random) -> list[Instrument]:
    """``count`` instruments with prices from cents to tens of thousands, and grids that fit them
    (a tick about a millionth of the price, a lot worth a fraction of a quote unit), as real
    listings have: a client that rounds to the filters must be tested on more than one scale."""
    instruments = []
    for i in range(count):
        base = BASE_ASSETS[i] if i < len(BASE_ASSETS) else f"SYN{i + 1:03d}"
        price = 10 ** rng.uniform(-2, 4.7)
        magnitude = math.floor(math.log10(price))
        tick = Decimal(1).scaleb(max(-8, magnitude - 5))
        step = Decimal(1).scaleb(min(0, max(-8, -magnitude - 1)))
        instruments.append(
            Instrument(
                base=base,
                quote=quote,
                price=Grid(tick),
                size=Grid(step),
                min_size_lots=1,
                min_notional=Decimal(5),
                open_ticks=max(1000, round(Decimal(repr(price)) / tick)),
            )
        )
    return instruments


def instrument_from_prices(base: str, quote: str, prices: list[str], sizes: list[str]) -> Instrument:
    """Plausible metadata for a recorded symbol: its grids are the finest steps its recorded
    prices and sizes use (a recording never shows the real filters)."""

    def finest(values: list[str]) -> Decimal:
        places = max((-Decimal(v).normalize().as_tuple().exponent for v in values if Decimal(v)), default=0)
        return Decimal(1).scaleb(-max(0, int(places)))

    tick, step = finest(prices), finest(sizes)
    middle = Decimal(prices[len(prices) // 2]) if prices else Decimal(1)
    return Instrument(base, quote, Grid(tick), Grid(step), 1, Decimal(5), int(middle / tick))
