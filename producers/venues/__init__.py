"""The venues tickflow connects to, each in its own folder, all behind one interface.

A venue's folder provides a ``Venue`` (``producers/feed.py``): its WebSocket protocol, its
stream handler (frames -> events, book rules), its REST requests and instrument metadata.
Adding a venue means adding its folder and one line in ``VENUES``; nothing else switches on
venue names.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from producers.feed import FeedOptions, Venue, VenueFeed
from producers.stream import EventSink


@dataclass(frozen=True)
class VenueSpec:
    #: Public endpoints, used unless the config names others (the simulator, a proxy).
    default_ws_url: str
    default_rest_url: str
    #: Builds the venue's ``Venue`` (imported lazily: a process loads only the venues it runs).
    market_data: Callable[..., Venue]

    def make_feed(self, symbols: list[str], sink: EventSink, **options: Any) -> VenueFeed:
        venue = self.market_data(**options.pop("venue_options", {}))
        return VenueFeed(venue, [venue.venue_symbol(s) for s in symbols], sink, FeedOptions(**options))


def _binance(attr: str) -> Callable[..., Venue]:
    def market_data(**options: Any) -> Venue:
        from producers.venues.binance import feed

        return feed.BinanceMarketData(getattr(feed, attr), **options)

    return market_data


def _coinbase(**options: Any) -> Venue:
    from producers.venues.coinbase.feed import CoinbaseMarketData

    return CoinbaseMarketData(**options)


VENUES: dict[str, VenueSpec] = {
    "binance-spot": VenueSpec("wss://stream.binance.com:9443", "https://api.binance.com", _binance("BINANCE_SPOT")),
    "binance-usdm": VenueSpec("wss://fstream.binance.com", "https://fapi.binance.com", _binance("BINANCE_USDM")),
    "coinbase": VenueSpec("wss://advanced-trade-ws.coinbase.com", "https://api.coinbase.com", _coinbase),
}
