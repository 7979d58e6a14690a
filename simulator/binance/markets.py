"""What differs between Binance spot and USD-M, in one place: paths, limits, pings, streams."""

from __future__ import annotations

from dataclasses import dataclass

KLINE_INTERVALS = frozenset(
    ["1s", "1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "8h", "12h", "1d", "3d", "1w", "1M"]
)


@dataclass(frozen=True)
class BinanceMarket:
    name: str
    usdm: bool
    rest_prefix: str
    #: REQUEST_WEIGHT per minute for one IP.
    weight_limit: int
    #: Incoming WebSocket messages per second per connection before Binance disconnects.
    messages_per_second: int
    #: Binance pings every ``ping_interval`` s and disconnects without a pong within ``ping_timeout`` s.
    ping_interval: float
    ping_timeout: float
    depth_speeds: tuple[str, ...]
    channels: frozenset[str]
    exchange_info_weight: int
    max_streams: int = 1024

    def depth_weight(self, limit: int) -> int:
        """The documented weight of a depth snapshot by its ``limit``."""
        if self.usdm:
            return 2 if limit <= 50 else 5 if limit <= 100 else 10 if limit <= 500 else 20
        return 5 if limit <= 100 else 25 if limit <= 500 else 50 if limit <= 1000 else 250

    def key(self, name: str, symbols: frozenset[str]) -> str | None:
        """The feed key a stream name subscribes to (``btcusdt@depth@100ms`` -> ``btcusdt@depth``),
        or None when Binance would call it an invalid stream."""
        symbol, _, stream = name.partition("@")
        if symbol != symbol.lower() or symbol.upper() not in symbols:
            return None
        if stream.startswith("depth"):
            speed = stream[len("depth") :]
            return f"{symbol}@depth" if speed in self.depth_speeds else None
        if stream.startswith("kline_"):
            interval = stream[len("kline_") :]
            return name if interval in KLINE_INTERVALS and (interval != "1s" or not self.usdm) else None
        return name if stream in self.channels else None


SPOT = BinanceMarket(
    "binance-spot", usdm=False, rest_prefix="/api/v3", weight_limit=6000, messages_per_second=5,
    ping_interval=20.0, ping_timeout=60.0, depth_speeds=("", "@100ms", "@1000ms"),
    channels=frozenset({"aggTrade", "trade", "bookTicker"}), exchange_info_weight=20,
)  # fmt: skip
USDM = BinanceMarket(
    "binance-usdm", usdm=True, rest_prefix="/fapi/v1", weight_limit=2400, messages_per_second=10,
    ping_interval=180.0, ping_timeout=600.0, depth_speeds=("", "@100ms", "@250ms", "@500ms"),
    channels=frozenset({"aggTrade", "bookTicker"}), exchange_info_weight=1,
)  # fmt: skip
MARKETS = {SPOT.name: SPOT, USDM.name: USDM}
