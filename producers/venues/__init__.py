"""The venues tickflow connects to, each in its own folder, all behind one interface.

Adding a venue means adding its folder and one line in ``VENUES``; nothing else switches on
venue names.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from tickflow.producer import EventProducer


class Feed(Protocol):
    """A running market-data feed of one venue."""

    async def run(self, stop: Any) -> None: ...


@dataclass(frozen=True)
class VenueSpec:
    #: Public endpoints, used unless the config names others (the simulator, a proxy).
    default_ws_url: str
    default_rest_url: str
    make_feed: Callable[..., Feed]
    #: (parser, bridge rule) for offline work on captures (``tickflow capture check``).
    make_offline: Callable[[], tuple[Any, Any]]


def _binance(venue_attr: str, ws_url: str, rest_url: str) -> VenueSpec:
    def make_feed(symbols: list[str], producer: EventProducer, **options: Any) -> Feed:
        from producers.venues.binance import feed

        return feed.BinanceFeed(getattr(feed, venue_attr), symbols, producer, **options)

    def make_offline() -> tuple[Any, Any]:
        from producers.venues.binance import feed
        from producers.venues.binance.book_rules import SpotBridgeRule, UsdmBridgeRule
        from producers.venues.binance.parsing import BinanceParser

        venue = getattr(feed, venue_attr)
        return BinanceParser(venue.name, venue.market), SpotBridgeRule() if venue.spot else UsdmBridgeRule()

    return VenueSpec(ws_url, rest_url, make_feed, make_offline)


VENUES: dict[str, VenueSpec] = {
    "binance-spot": _binance("BINANCE_SPOT", "wss://stream.binance.com:9443", "https://api.binance.com"),
    "binance-usdm": _binance("BINANCE_USDM", "wss://fstream.binance.com", "https://fapi.binance.com"),
}
