"""Binance spot and USD-M: what differs between the two, and Binance's WebSocket protocol.

Both speak the same combined-stream protocol (``/stream``, then ``SUBSCRIBE`` requests with
ids echoed in the replies); they differ in REST paths, weights, limits and the bridge rule.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import msgspec

from producers.subscriptions import ConnectionLimits
from tickflow.events import MarketType


def _spot_depth_weight(limit: int) -> int:
    return 5 if limit <= 100 else 25 if limit <= 500 else 50 if limit <= 1000 else 250


def _usdm_depth_weight(limit: int) -> int:
    return 2 if limit <= 50 else 5 if limit <= 100 else 10 if limit <= 500 else 20


@dataclass(frozen=True)
class BinanceVenue:
    name: str
    market: MarketType
    depth_path: str
    exchange_info_path: str
    exchange_info_weight: int
    spot: bool
    #: The IP's REQUEST_WEIGHT limit per minute, and the weight of a depth snapshot by its limit.
    weight_per_minute: int
    depth_weight: Callable[[int], int]
    #: Streams per connection, and incoming messages per second per connection (subscribe
    #: requests count; Binance closes a connection that sends more).
    limits: ConnectionLimits


BINANCE_SPOT = BinanceVenue(
    "binance-spot", MarketType.SPOT, "/api/v3/depth", "/api/v3/exchangeInfo", 20, spot=True,
    weight_per_minute=6000, depth_weight=_spot_depth_weight,
    limits=ConnectionLimits(max_subscriptions=1024, max_per_request=200, requests_per_second=4.0),
)  # fmt: skip
BINANCE_USDM = BinanceVenue(
    "binance-usdm", MarketType.PERPETUAL, "/fapi/v1/depth", "/fapi/v1/exchangeInfo", 1, spot=False,
    weight_per_minute=2400, depth_weight=_usdm_depth_weight,
    limits=ConnectionLimits(max_subscriptions=1024, max_per_request=200, requests_per_second=8.0),
)  # fmt: skip

#: Binance's header with the weight this IP used in the current minute.
USED_WEIGHT_HEADER = "X-MBX-USED-WEIGHT-1M"


class BinanceProtocol:
    """Binance's combined-stream subscription protocol: keys are stream names."""

    echoes_ids = True

    def __init__(self, venue: BinanceVenue, streams: tuple[str, ...]) -> None:
        self.limits = venue.limits
        self.streams = streams

    def url(self, base_url: str) -> str:
        return f"{base_url.rstrip('/')}/stream"

    def keys(self, symbol: str) -> list[str]:
        return [f"{symbol.lower()}@{stream}" for stream in self.streams]

    def book_key(self, symbol: str) -> str | None:
        return next((k for k in self.keys(symbol) if "@depth" in k), None)

    @staticmethod
    def symbol_of(key: str) -> str:
        return key.partition("@")[0].upper()

    @staticmethod
    def channel_of(key: str) -> str:
        return key.partition("@")[2]

    @staticmethod
    def connection_keys() -> list[str]:
        return []

    @staticmethod
    def group(keys: list[str]) -> list[list[str]]:
        return [keys]  # one request may mix streams of every kind

    def subscribe(self, keys: list[str], request_id: int) -> str:
        return msgspec.json.encode({"method": "SUBSCRIBE", "params": keys, "id": request_id}).decode()

    def unsubscribe(self, keys: list[str], request_id: int) -> str:
        return msgspec.json.encode({"method": "UNSUBSCRIBE", "params": keys, "id": request_id}).decode()
