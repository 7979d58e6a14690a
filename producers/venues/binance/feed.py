"""Binance spot and USD-M as a ``Venue`` of the generic feed (``producers/feed.py``).

Books follow Binance's documented procedure: the depth stream is subscribed first and its diffs
buffered, then the REST snapshot is fetched (through the venue's shared weighted rate limiter)
and bridged (``book_rules.py``); a gap, a crossed book or a reconnect resyncs from a new
snapshot.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlparse

import msgspec

from producers.feed import FeedOptions, SnapshotRequest, VenueFeed
from producers.rest import RestClient
from producers.stream import EventSink
from producers.venues.binance.instruments import parse_exchange_info
from producers.venues.binance.stream import BinanceStream
from producers.venues.binance.venue import BINANCE_SPOT, BINANCE_USDM, USED_WEIGHT_HEADER, BinanceProtocol, BinanceVenue
from tickflow.events import Instrument

__all__ = ["BINANCE_SPOT", "BINANCE_USDM", "BinanceFeed", "BinanceMarketData"]

DEFAULT_STREAMS = ("depth@100ms", "aggTrade", "bookTicker", "kline_1m")

#: Seconds of silence per channel before the watchdog resubscribes. The kline stream pushes
#: every 2 s whatever happens; depth and book ticker only when the book moves, and trades only
#: when someone trades, so those are watched loosely or not at all.
WATCHDOG_TIMEOUTS: dict[str, float | None] = {"kline": 20.0, "depth": 120.0, "bookTicker": 120.0, "aggTrade": None,
                                              "trade": None}  # fmt: skip


class BinanceMarketData:
    """One Binance venue (spot or USD-M), as the generic feed needs it."""

    used_weight_header = USED_WEIGHT_HEADER

    def __init__(
        self, venue: BinanceVenue, channels: tuple[str, ...] | list[str] = DEFAULT_STREAMS, snapshot_limit: int = 1000
    ) -> None:
        self.config = venue
        self.name = venue.name
        self.market = venue.market
        self.protocol = BinanceProtocol(venue, tuple(channels))
        self.weight_per_minute = venue.weight_per_minute
        self.watchdog_timeouts = dict(WATCHDOG_TIMEOUTS)
        self.snapshot_limit = snapshot_limit

    @staticmethod
    def venue_symbol(symbol: str) -> str:
        return symbol.upper()

    def make_stream(
        self, symbols: list[str], sink: EventSink, request_snapshot: Callable[[str], None], names: dict[str, str]
    ) -> BinanceStream:
        return BinanceStream(self.config, symbols, sink, request_snapshot=request_snapshot, symbol_names=names)

    def snapshot_request(self, symbol: str) -> SnapshotRequest:
        return SnapshotRequest(
            self.config.depth_path, {"symbol": symbol, "limit": self.snapshot_limit},
            self.config.depth_weight(self.snapshot_limit),
        )  # fmt: skip

    @staticmethod
    def snapshot_symbol(url: str) -> str | None:
        """The symbol a recorded snapshot URL asked for (``...?symbol=BTCUSDT&limit=1000``)."""
        return parse_qs(urlparse(url).query).get("symbol", [""])[0].upper() or None

    @staticmethod
    def capture_symbols(url: str, frames: list[str]) -> list[str]:
        """The symbols of a capture: from the combined-stream URL, else from the frames."""
        streams = parse_qs(urlparse(url).query).get("streams", [""])[0]
        symbols = {s.partition("@")[0].upper() for s in streams.split("/") if s}
        for text in frames if not symbols else ():
            try:
                data = msgspec.json.decode(text).get("data")
            except (msgspec.DecodeError, AttributeError):
                continue  # a malformed frame: the check counts it when it parses the frames
            if isinstance(data, dict) and isinstance(data.get("s"), str):
                symbols.add(data["s"])
        return sorted(symbols)

    async def instruments(self, rest: RestClient) -> list[Instrument]:
        venue = self.config
        return await rest.get(
            venue.exchange_info_path, {}, venue.exchange_info_weight,
            lambda body, _: parse_exchange_info(body, venue.name, venue.market),
        )  # fmt: skip


def BinanceFeed(
    venue: BinanceVenue,
    symbols: list[str],
    sink: EventSink,
    *,
    ws_url: str,
    rest_url: str,
    channels: tuple[str, ...] = DEFAULT_STREAMS,
    snapshot_limit: int = 1000,
    **options: Any,
) -> VenueFeed:
    """A feed of Binance ``symbols`` (venue names, e.g. ``BTCUSDT``) into ``sink``."""
    return VenueFeed(
        BinanceMarketData(venue, channels, snapshot_limit),
        [BinanceMarketData.venue_symbol(s) for s in symbols],
        sink,
        FeedOptions(ws_url=ws_url, rest_url=rest_url, **options),
    )
