"""A Binance market-data feed: one combined-stream connection, its books, into Kafka.

Frames -> ``BinanceParser`` -> trades, best bid/offer and klines straight to their topics;
depth diffs -> the symbol's ``BookSync`` -> ``BookUpdate``/``BookReset`` on the book topic.
Snapshots are fetched over REST once the stream runs (so diffs are buffered first), again for
any symbol whose book resets, and for every symbol after a reconnect (its books are marked
invalid first: data was missed while the socket was down).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from producers.book_events import BookEvents
from producers.book_sync import BookSync, NeedSnapshot, Output, SyncState
from producers.connection import Backoff, WebSocketSession, now_us
from producers.rate_limit import WeightedRateLimiter
from producers.venues.binance.book_rules import SpotBridgeRule, UsdmBridgeRule
from producers.venues.binance.parsing import BinanceParser, SymbolDiff
from producers.venues.binance.symbols import normalize_symbol
from tickflow import topics
from tickflow.errors import MalformedFrame
from tickflow.events import (
    BestBidOffer,
    BookResetReason,
    ConnectorState,
    ConnectorStatus,
    Event,
    Kline,
    MarketType,
    RawFrame,
    Trade,
)
from tickflow.producer import EventProducer

log = logging.getLogger(__name__)

_TOPIC_OF = {Trade: topics.TRADES, BestBidOffer: topics.BBO, Kline: topics.KLINES}


def _spot_depth_weight(limit: int) -> int:
    return 5 if limit <= 100 else 25 if limit <= 500 else 50 if limit <= 1000 else 250


def _usdm_depth_weight(limit: int) -> int:
    return 2 if limit <= 50 else 5 if limit <= 100 else 10 if limit <= 500 else 20


@dataclass(frozen=True)
class BinanceVenue:
    name: str
    market: MarketType
    depth_path: str
    spot: bool
    #: The IP's REQUEST_WEIGHT limit per minute, and the weight of a depth snapshot by its limit.
    weight_per_minute: int
    depth_weight: Callable[[int], int]


BINANCE_SPOT = BinanceVenue(
    "binance-spot", MarketType.SPOT, "/api/v3/depth", spot=True, weight_per_minute=6000, depth_weight=_spot_depth_weight
)
BINANCE_USDM = BinanceVenue(
    "binance-usdm", MarketType.PERPETUAL, "/fapi/v1/depth", spot=False, weight_per_minute=2400,
    depth_weight=_usdm_depth_weight,
)  # fmt: skip

#: Binance's header with the weight this IP used in the current minute.
USED_WEIGHT_HEADER = "X-MBX-USED-WEIGHT-1M"


@dataclass
class FeedCounters:
    frames: int = 0
    malformed_frames: int = 0
    events: int = 0
    snapshot_failures: int = 0
    rate_limited: int = 0
    last_error: str | None = None


class BinanceFeed:
    def __init__(
        self,
        venue: BinanceVenue,
        symbols: list[str],
        producer: EventProducer,
        *,
        ws_url: str,
        rest_url: str,
        streams: tuple[str, ...] = ("depth@100ms", "aggTrade", "bookTicker", "kline_1m"),
        snapshot_limit: int = 1000,
        backoff: Backoff | None = None,
        capture_raw: bool = False,
        limiter: WeightedRateLimiter | None = None,
    ) -> None:
        self.venue = venue
        self.symbols = [s.upper() for s in symbols]
        self.producer = producer
        self.rest_url = rest_url.rstrip("/")
        self.snapshot_limit = snapshot_limit
        self.counters = FeedCounters()
        self.limiter = limiter or WeightedRateLimiter(venue.weight_per_minute)
        #: Also send every frame, unchanged, to the venue's raw topic (for re-parsing later).
        self.capture_raw = capture_raw
        self._raw_topic = topics.raw_topic(venue.name)
        self.parser = BinanceParser(venue.name, venue.market)
        rule = SpotBridgeRule() if venue.spot else UsdmBridgeRule()
        self.syncs = {s: BookSync(rule) for s in self.symbols}
        self.books = {s: BookEvents(venue.name, venue.market, normalize_symbol(s), s, rule) for s in self.symbols}
        names = "/".join(f"{s.lower()}@{stream}" for s in self.symbols for stream in streams)
        self.session = WebSocketSession(
            f"{ws_url.rstrip('/')}/stream?streams={names}", self._on_frame, self._on_state, backoff=backoff
        )
        self._pending_snapshots: set[str] = set()
        # Snapshots in a row that did not bridge, per symbol: the next fetch backs off.
        self._stale_snapshots: dict[str, int] = dict.fromkeys(self.symbols, 0)
        self._tasks: set[asyncio.Task] = set()
        self._http: httpx.AsyncClient | None = None
        self._first_connect = True

    async def run(self, stop: asyncio.Event) -> None:
        async with httpx.AsyncClient(timeout=httpx.Timeout(10.0, connect=3.0)) as http:
            self._http = http
            try:
                await self.session.run(stop)
            finally:
                for task in self._tasks:
                    task.cancel()
                await asyncio.gather(*self._tasks, return_exceptions=True)

    # --- stream --------------------------------------------------------------------------------

    def _send(self, topic: str, event: Event) -> None:
        self.producer.send(topic, event)
        self.counters.events += 1

    def _on_frame(self, frame: str | bytes, receive_ts: int) -> None:
        self.counters.frames += 1
        if self.capture_raw:
            text = frame if isinstance(frame, str) else frame.decode("utf-8", "replace")
            self.producer.send(self._raw_topic, RawFrame(venue=self.venue.name, connection_id="stream-0",
                                                         receive_ts=receive_ts, payload=text))  # fmt: skip
        try:
            parsed = self.parser.parse(frame, receive_ts)
        except MalformedFrame as exc:
            self.counters.malformed_frames += 1
            self.counters.last_error = str(exc)
            log.warning("skipped malformed frame: %s", exc)
            return
        for item in parsed:
            if isinstance(item, SymbolDiff):
                sync = self.syncs.get(item.venue_symbol)
                if sync is not None:
                    self._handle(item.venue_symbol, sync.on_diff(item.diff))
            else:
                self._send(_TOPIC_OF[type(item)], item)

    def _handle(self, symbol: str, outputs: list[Output]) -> None:
        for event in self.books[symbol].events(outputs, now_us()):
            self._send(topics.BOOK, event)
        if any(isinstance(o, NeedSnapshot) for o in outputs):
            self._request_snapshot(symbol)

    def _on_state(self, state: ConnectorState, reason: str | None, attempt: int) -> None:
        self._send(
            topics.STATUS,
            ConnectorStatus(venue=self.venue.name, connection_id="stream-0", state=state, reason=reason,
                            attempt=attempt, ts=now_us()),
        )  # fmt: skip
        if state is ConnectorState.CONNECTED:
            # Diffs are buffered from now on; every book (re)starts from a fresh snapshot.
            detail = "first connection" if self._first_connect else "reconnected: data may have been missed"
            for symbol, sync in self.syncs.items():
                self._handle(symbol, sync.invalidate(BookResetReason.RECONNECT, detail))
            self._first_connect = False

    # --- snapshots -----------------------------------------------------------------------------

    def _request_snapshot(self, symbol: str) -> None:
        if symbol in self._pending_snapshots:
            return
        self._pending_snapshots.add(symbol)
        task = asyncio.get_running_loop().create_task(self._fetch_snapshot(symbol))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _fetch_snapshot(self, symbol: str) -> None:
        assert self._http is not None
        attempt = 0
        if self._stale_snapshots[symbol]:
            await asyncio.sleep(Backoff().delay(self._stale_snapshots[symbol]))
        try:
            while True:
                attempt += 1
                await self.limiter.acquire(self.venue.depth_weight(self.snapshot_limit))
                try:
                    response = await self._http.get(
                        f"{self.rest_url}{self.venue.depth_path}",
                        params={"symbol": symbol, "limit": self.snapshot_limit},
                    )
                    used = response.headers.get(USED_WEIGHT_HEADER)
                    if used and used.isdigit():
                        self.limiter.observe(int(used))
                    if response.status_code in (418, 429):  # rate limited (418: banned for a while)
                        retry_after = response.headers.get("Retry-After", "")
                        self.limiter.back_off(float(retry_after) if retry_after.isdigit() else 60.0)
                        self.counters.rate_limited += 1
                    response.raise_for_status()
                    snapshot = self.parser.snapshot(response.content, now_us())
                    break
                except (httpx.HTTPError, MalformedFrame) as exc:
                    self.counters.snapshot_failures += 1
                    self.counters.last_error = f"snapshot {symbol}: {exc}"
                    log.warning("snapshot of %s failed (attempt %d): %s", symbol, attempt, exc)
                    limited = isinstance(exc, httpx.HTTPStatusError) and exc.response.status_code in (418, 429)
                    if not limited:  # a rate limit is waited out in the limiter, until Retry-After
                        await asyncio.sleep(Backoff().delay(attempt))
        finally:
            self._pending_snapshots.discard(symbol)
        outputs = self.syncs[symbol].on_snapshot(snapshot)
        live = self.syncs[symbol].state is SyncState.LIVE
        self._stale_snapshots[symbol] = 0 if live else self._stale_snapshots[symbol] + 1
        self._handle(symbol, outputs)
