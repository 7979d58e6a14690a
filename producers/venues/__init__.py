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


def _binance(venue_attr: str) -> Callable[..., Feed]:
    def make(symbols: list[str], producer: EventProducer, **options: Any) -> Feed:
        from producers.venues.binance import feed

        return feed.BinanceFeed(getattr(feed, venue_attr), symbols, producer, **options)

    return make


VENUES: dict[str, VenueSpec] = {
    "binance-spot": VenueSpec("wss://stream.binance.com:9443", "https://api.binance.com", _binance("BINANCE_SPOT")),
    "binance-usdm": VenueSpec("wss://fstream.binance.com", "https://fapi.binance.com", _binance("BINANCE_USDM")),
}
