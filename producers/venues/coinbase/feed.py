"""Coinbase Advanced Trade as a ``Venue`` of the generic feed (``producers/feed.py``).

Books come in the stream (``level2``: snapshot, then updates); a book that needs a new snapshot
gets its ``level2`` subscription renewed. Instrument metadata comes from the public products
endpoint. Public market data needs no key.
"""

from __future__ import annotations

from collections.abc import Callable

import msgspec

from producers.feed import SnapshotRequest
from producers.rest import RestClient
from producers.stream import EventSink
from producers.venues.coinbase.instruments import PRODUCTS_PATH, parse_products
from producers.venues.coinbase.stream import CoinbaseStream
from producers.venues.coinbase.venue import HEARTBEATS, CoinbaseProtocol
from tickflow.events import Instrument, MarketType

DEFAULT_CHANNELS = ("level2", "market_trades", "ticker", "candles")

#: Seconds of silence before the watchdog acts: heartbeats come every second; books, tickers and
#: trades only when the market moves.
WATCHDOG_TIMEOUTS: dict[str, float | None] = {HEARTBEATS: 10.0, "level2": 120.0, "ticker": 120.0, "candles": 120.0,
                                              "market_trades": None}  # fmt: skip


class CoinbaseMarketData:
    name = "coinbase"
    market = MarketType.SPOT
    used_weight_header = None
    #: Public REST endpoints allow 10 requests per second per IP.
    weight_per_minute = 600

    def __init__(self, channels: tuple[str, ...] | list[str] = DEFAULT_CHANNELS) -> None:
        self.protocol = CoinbaseProtocol(tuple(channels))
        self.watchdog_timeouts = dict(WATCHDOG_TIMEOUTS)

    @staticmethod
    def venue_symbol(symbol: str) -> str:
        return symbol.upper()

    def make_stream(
        self, symbols: list[str], sink: EventSink, request_snapshot: Callable[[str], None], names: dict[str, str]
    ) -> CoinbaseStream:
        return CoinbaseStream(symbols, sink, request_snapshot=request_snapshot, symbol_names=names)

    def snapshot_request(self, symbol: str) -> SnapshotRequest | None:
        return None  # snapshots come in the stream

    @staticmethod
    def snapshot_symbol(url: str) -> str | None:
        return None

    @staticmethod
    def capture_symbols(url: str, frames: list[str]) -> list[str]:
        """The products of a capture, from its messages."""
        products: set[str] = set()
        for text in frames:
            try:
                message = msgspec.json.decode(text)
            except msgspec.DecodeError:
                continue  # counted when the check parses the frames
            for event in message.get("events", []) if isinstance(message, dict) else []:
                if isinstance(event, dict):
                    if isinstance(event.get("product_id"), str):
                        products.add(event["product_id"])
                    for item in event.get("trades", []) + event.get("tickers", []) + event.get("candles", []):
                        if isinstance(item, dict) and isinstance(item.get("product_id"), str):
                            products.add(item["product_id"])
        return sorted(products)

    async def instruments(self, rest: RestClient) -> list[Instrument]:
        return await rest.get(PRODUCTS_PATH, {}, 1, lambda body, _: parse_products(body))
