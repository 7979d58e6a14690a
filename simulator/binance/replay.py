"""Binance spot / USD-M replaying recorded traffic (the ``shared/recordings`` layout).

The recorded frames go out byte for byte at the recorded pace divided by ``speed``; the replay
clock starts when the first WebSocket client connects. A depth snapshot is the symbol's book as
the replay has it then (the recorded snapshot plus every diff sent since), answered no earlier
than the replay reaches the moment the snapshot was recorded. Both REST families are served, as
the replay of either venue was before the protocol layer was shared.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlparse

from producers.recordings import read_http_log, read_ws_log
from simulator.binance.markets import SPOT, USDM, BinanceMarket
from simulator.binance.server import BinanceServer
from simulator.faults import Faults, SimStats
from simulator.instruments import Instrument, instrument_from_prices
from simulator.timeline import Feed, Item

QUOTES = ("USDT", "BUSD", "USDC", "BTC", "ETH", "BNB", "EUR", "USD", "TRY")


@dataclass
class _Diff:
    at: float
    first_id: int
    last_id: int
    bids: list[list[str]]
    asks: list[list[str]]


def split_symbol(symbol: str) -> tuple[str, str]:
    quote = next((q for q in QUOTES if symbol.endswith(q) and len(symbol) > len(q)), symbol[-4:])
    return symbol[: -len(quote)], quote


class ReplaySource:
    """The recording as a feed of items plus the book the replay has at any moment."""

    def __init__(self, directory: Path, speed: float, market: BinanceMarket) -> None:
        ws = read_ws_log(directory / "ws.log")
        start = ws.frames[0].receive_ts if ws.frames else ws.opened_ts
        self.snapshots: dict[str, tuple[float, str]] = {}
        for response in read_http_log(directory / "http.log").responses:
            symbol = parse_qs(urlparse(response.url).query)["symbol"][0]
            self.snapshots[symbol] = ((response.receive_ts - start) / 1e6, response.body)
        symbols = sorted(self.snapshots)
        self.diffs: dict[str, list[_Diff]] = {}
        items = []
        for frame in ws.frames:
            message = json.loads(frame.text)
            name = message.get("stream", "")
            at = (frame.receive_ts - start) / 1e6
            data = message.get("data", {})
            text = frame.text[len(name) + 20 : -1]
            key = market.key(name, frozenset(symbols)) or name
            if data.get("e") == "depthUpdate":
                symbol = data["s"]
                self.diffs.setdefault(symbol, []).append(_Diff(at, data["U"], data["u"], data["b"], data["a"]))
                number = symbols.index(symbol) if symbol in symbols else len(symbols)
                items.append(Item(at, key, text, frame.text, name, symbol, number, data["U"], data["u"]))
            else:
                items.append(Item(at, key, text, frame.text, name, data.get("s", "")))
        self.feed = Feed(items, speed)
        self.instruments: dict[str, Instrument] = {}
        for symbol in symbols:
            body = json.loads(self.snapshots[symbol][1])
            levels = body["bids"] + body["asks"]
            base, quote = split_symbol(symbol)
            self.instruments[symbol] = instrument_from_prices(
                base, quote, [p for p, _ in levels], [q for _, q in levels]
            )

    def book_at(self, symbol: str, now: float, usdm: bool) -> tuple[int, dict[str, str], dict[str, str]]:
        """The symbol's book as the replay has it at ``now``: the recorded snapshot plus every diff
        sent since, with the ``lastUpdateId`` a Binance client bridges from (the venue's own rules).
        This is the simulator's truth, written independently of the producers' book code."""
        _, body = self.snapshots[symbol]
        snapshot = json.loads(body)
        last_id = snapshot["lastUpdateId"]
        bids = {p: q for p, q in snapshot["bids"]}
        asks = {p: q for p, q in snapshot["asks"]}
        upcoming = None
        for diff in self.diffs.get(symbol, []):
            if diff.last_id <= last_id:
                continue
            if diff.at > now:
                upcoming = diff
                break
            for side, levels in ((bids, diff.bids), (asks, diff.asks)):
                for price, size in levels:
                    if float(size) == 0:
                        side.pop(price, None)
                    else:
                        side[price] = size
            last_id = diff.last_id
        if usdm and upcoming is not None:
            # USD-M's first diff must satisfy U <= lastUpdateId <= u: state the next diff's U.
            last_id = upcoming.first_id
        return last_id, bids, asks

    async def snapshot(self, symbol: str, market: BinanceMarket) -> tuple[int, list[list[str]], list[list[str]]]:
        at, _ = self.snapshots[symbol]
        feed = self.feed
        if feed.started is not None and feed.elapsed() < at:
            await asyncio.sleep((at - feed.elapsed()) / feed.speed)
        last_id, bids, asks = self.book_at(symbol, feed.elapsed(), usdm=market.usdm)
        return (
            last_id,
            [list(kv) for kv in sorted(bids.items(), key=lambda kv: -float(kv[0]))],
            [list(kv) for kv in sorted(asks.items(), key=lambda kv: float(kv[0]))],
        )

    def true_book(self, symbol: str) -> dict[str, dict[str, str]]:
        _, bids, asks = self.book_at(symbol, self.feed.elapsed(), usdm=False)
        return {"bids": bids, "asks": asks}


class BinanceReplay(BinanceServer):
    """One simulated Binance venue replaying ``recording``; ``async with`` starts and stops it."""

    def __init__(
        self,
        recording: Path,
        speed: float = 1.0,
        host: str = "127.0.0.1",
        port: int = 0,
        weight_limit: int = 6000,
        weight_window: float = 60.0,
        faults: Faults | None = None,
        stats: SimStats | None = None,
        ban_seconds: float = 120.0,
    ) -> None:
        self.recording = Path(recording)
        self.speed = speed
        url = read_ws_log(self.recording / "ws.log").url
        market = USDM if "fstream" in url or "/fapi" in url else SPOT
        super().__init__(
            ReplaySource(self.recording, speed, market), market, rest_markets=(SPOT, USDM), host=host, port=port,
            weight_limit=weight_limit, weight_window=weight_window, ban_seconds=ban_seconds, faults=faults, stats=stats,
        )  # fmt: skip
