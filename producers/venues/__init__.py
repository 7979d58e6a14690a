"""The venues tickflow connects to, each in its own folder, all behind one interface.

A venue's folder holds everything of the venue: for the feeds a ``Venue`` (``producers/feed.py``:
its WebSocket protocol, its stream handler, its REST requests and instrument metadata), for the
order router a ``TradingClient`` (``trading.py``: signed order requests, the venue's errors).
Adding a venue means adding its folder and one line in ``VENUES``; nothing else switches on
venue names.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from producers.feed import FeedOptions, Venue, VenueFeed
from producers.stream import EventSink
from producers.venues.trading import HttpTimeouts, TradingClient
from producers.venues.user_stream import UserStream


@dataclass(frozen=True)
class TradingSetup:
    """What a venue's trading client is built from (secrets already read, never logged)."""

    rest_url: str
    api_key: str
    secret: str
    key_type: str
    recv_window_ms: int = 5000
    timeouts: HttpTimeouts = field(default_factory=HttpTimeouts)
    #: The account's order-rate limit (orders, seconds), where it differs from the venue's default.
    order_limit: tuple[int, float] | None = None
    #: The IP's request weight per minute, where it differs from the venue's default.
    weight_per_minute: int | None = None

    def __repr__(self) -> str:
        return f"TradingSetup({self.rest_url!r}, key_type={self.key_type!r}, ***)"


@dataclass(frozen=True)
class VenueSpec:
    #: Public endpoints, used unless the config names others (the simulator, a proxy).
    default_ws_url: str
    default_rest_url: str
    #: Builds the venue's ``Venue`` (imported lazily: a process loads only the venues it runs).
    market_data: Callable[..., Venue]
    #: Builds one account's trading client (None: the router cannot trade there yet).
    trading: Callable[[TradingSetup], TradingClient] | None = None
    #: Builds one account's private stream: (setup, WebSocket URL, venue symbols) -> stream.
    user_stream: Callable[[TradingSetup, str, list[str]], UserStream] | None = None
    #: Where the private stream is, unless the config names another host.
    default_user_ws_url: str | None = None
    #: The private stream's path on the venue's WebSocket host (a simulator's, say): Binance spot's
    #: is the WebSocket API, ``/ws-api/v3``; the others' are at the host's root.
    user_ws_path: str = ""

    def user_ws_url(self, host_url: str) -> str:
        """The private stream's URL on ``host_url`` (``ws://127.0.0.1:8765``, say)."""
        return host_url.rstrip("/") + self.user_ws_path

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


def _binance_trading(paths: str) -> Callable[[TradingSetup], TradingClient]:
    def trading(setup: TradingSetup) -> TradingClient:
        from producers.venues.binance import trading

        return trading.make_client(getattr(trading, paths), setup)

    return trading


def _coinbase_trading(setup: TradingSetup) -> TradingClient:
    from producers.venues.coinbase.trading import make_client

    return make_client(setup)


def _binance_user_stream(venue: str) -> Callable[[TradingSetup, str, list[str]], UserStream]:
    def user_stream(setup: TradingSetup, ws_url: str, symbols: list[str]) -> UserStream:
        from producers.venues.binance.signing import signer_for
        from producers.venues.binance.user_stream import binance_user_stream

        signer = signer_for(setup.key_type, setup.secret)
        return binance_user_stream(venue, setup.rest_url, ws_url, setup.api_key, signer,
                                   recv_window_ms=setup.recv_window_ms)  # fmt: skip

    return user_stream


def _coinbase_user_stream(setup: TradingSetup, ws_url: str, symbols: list[str]) -> UserStream:
    from producers.venues.coinbase.signing import CoinbaseJwtSigner
    from producers.venues.coinbase.user_stream import coinbase_user_stream

    return coinbase_user_stream(ws_url, CoinbaseJwtSigner(setup.api_key, setup.secret.encode()), symbols)


VENUES: dict[str, VenueSpec] = {
    "binance-spot": VenueSpec(
        "wss://stream.binance.com:9443", "https://api.binance.com", _binance("BINANCE_SPOT"),
        _binance_trading("SPOT_TRADING"), _binance_user_stream("binance-spot"),
        "wss://ws-api.binance.com:443/ws-api/v3", "/ws-api/v3",
    ),
    "binance-usdm": VenueSpec(
        "wss://fstream.binance.com", "https://fapi.binance.com", _binance("BINANCE_USDM"),
        _binance_trading("USDM_TRADING"), _binance_user_stream("binance-usdm"), "wss://fstream.binance.com",
    ),
    "coinbase": VenueSpec(
        "wss://advanced-trade-ws.coinbase.com", "https://api.coinbase.com", _coinbase, _coinbase_trading,
        _coinbase_user_stream, "wss://advanced-trade-ws-user.coinbase.com",
    ),
}  # fmt: skip
