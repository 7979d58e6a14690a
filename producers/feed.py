"""A venue's market-data feed: its connections, their subscriptions and watchdogs, its books'
snapshots, into Kafka. Venue-neutral: everything venue-specific comes from a ``Venue``.

- The symbols are spread over as many connections as the venue's per-connection subscription
  limit needs (or ``symbols_per_connection``); a symbol's channels stay on one connection, so a
  reconnect touches only that connection's books.
- Each connection subscribes by request, paced and matched with the venue's replies
  (``SubscriptionManager``); a refused subscription is an ``ERROR`` status event naming the
  channel and symbol. A traffic watchdog per subscription resubscribes a silent channel, then
  reconnects (``TrafficWatchdog``).
- Books start from a snapshot only once their channel is subscribed (diffs are buffered from
  then on): over REST through the venue's shared rate limiter (Binance), or by subscribing the
  book channel again (Coinbase sends its snapshot in the stream).
- Every state change is a ``ConnectorStatus`` event. Optionally every raw frame goes to the
  venue's raw topic, and the traffic is written as capture files (``shared/recordings`` layout).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import httpx
from websockets.asyncio.client import ClientConnection

from producers.book_sync import BookSync
from producers.connection import Backoff, WebSocketSession, now_us
from producers.rate_limit import RequestPacer, WeightedRateLimiter
from producers.recordings import CaptureWriter
from producers.rest import RestClient, shared_limiter, shared_pacer
from producers.stream import Control, EventSink, StreamCounters, reconnect_detail
from producers.subscriptions import SubscriptionManager, SubState, WsProtocol
from producers.watchdog import TrafficWatchdog
from tickflow import topics
from tickflow.errors import ConfigError, MalformedFrame
from tickflow.events import BookResetReason, ConnectorState, ConnectorStatus, Instrument, MarketType, RawFrame

log = logging.getLogger(__name__)


class VenueStream(Protocol):
    """A venue's frames -> events, for the symbols of one connection (``producers/stream.py``)."""

    counters: StreamCounters
    syncs: dict[str, BookSync]

    def on_frame(self, frame: str | bytes, receive_ts: int) -> str | Control | None: ...

    def on_snapshot(self, symbol: str, body: str | bytes, receive_ts: int) -> None: ...

    def invalidate(self, reason: BookResetReason, detail: str, now_us: int) -> None: ...


@dataclass(frozen=True)
class SnapshotRequest:
    path: str
    params: dict[str, str | int]
    weight: int


class Venue(Protocol):
    """Everything the feed needs to know of one venue; each venue's folder provides one."""

    name: str
    market: MarketType
    protocol: WsProtocol
    #: The venue's REST budget per minute, and the header with its own count of it (if any).
    weight_per_minute: int
    used_weight_header: str | None
    #: Seconds of silence allowed per channel before the watchdog acts (None: not watched).
    watchdog_timeouts: dict[str, float | None]

    def venue_symbol(self, symbol: str) -> str:
        """A symbol as the config gives it -> the venue's own spelling."""

    def make_stream(
        self, symbols: list[str], sink: EventSink, request_snapshot: Callable[[str], None], names: dict[str, str]
    ) -> VenueStream: ...

    def snapshot_request(self, symbol: str) -> SnapshotRequest | None:
        """The REST request of a book snapshot; None if snapshots come in the stream."""

    async def instruments(self, rest: RestClient) -> list[Instrument]:
        """Every instrument of the venue, from its REST API."""


@dataclass(frozen=True)
class FeedOptions:
    ws_url: str
    rest_url: str
    #: Every frame, unchanged, also to the venue's raw topic (for re-parsing later).
    capture_raw: bool = False
    #: Write the traffic as capture files here (``<dir>/<connection>-<n>/ws.log`` + ``http.log``).
    capture_dir: Path | None = None
    backoff: Backoff | None = None
    silence_timeout: float = 30.0
    #: Per-channel watchdog timeouts, overriding the venue's defaults.
    watchdog: dict[str, float | None] = field(default_factory=dict)
    symbols_per_connection: int | None = None
    #: The venue's REST limiter; by default one shared by every feed of the venue in the process.
    limiter: WeightedRateLimiter | None = None
    #: Load the venue's instrument metadata first (symbols checked, names from the venue).
    load_instruments: bool = True
    #: REST snapshots in flight at once per venue (the rest wait in the rate limiter's queue).
    max_concurrent_snapshots: int = 4


@dataclass
class FeedCounters:
    """A feed's counters, summed over its connections (a snapshot, for tests and status)."""

    frames: int = 0
    malformed_frames: int = 0
    events: int = 0
    snapshot_failures: int = 0
    rate_limited: int = 0
    refused_subscriptions: int = 0
    resubscribed: int = 0
    last_error: str | None = None


class VenueFeed:
    def __init__(self, venue: Venue, symbols: list[str], sink: EventSink, options: FeedOptions) -> None:
        self.venue = venue
        self.symbols = list(dict.fromkeys(symbols))
        self.sink = sink
        self.options = options
        self.instruments: dict[str, Instrument] = {}
        self.connections: list[FeedConnection] = []
        self.rest: RestClient | None = None
        self.limiter = options.limiter
        self._snapshot_slots = asyncio.Semaphore(options.max_concurrent_snapshots)
        self._tasks: set[asyncio.Task] = set()
        self.snapshot_failures = 0

    # --- running -------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        if self.limiter is None:
            self.limiter = shared_limiter(self.venue.name, self.venue.weight_per_minute)
        async with httpx.AsyncClient(timeout=httpx.Timeout(10.0, connect=3.0)) as http:
            self.rest = RestClient(
                http, self.options.rest_url, self.limiter, used_weight_header=self.venue.used_weight_header,
                backoff=self.options.backoff,
            )  # fmt: skip
            try:
                if self.options.load_instruments:
                    await self._load_instruments()
                self.connections = [
                    FeedConnection(self, f"{self.venue.name}-{i}", group) for i, group in enumerate(self._groups())
                ]
                await asyncio.gather(*(c.session.run(stop) for c in self.connections))
            finally:
                for task in self._tasks:
                    task.cancel()
                await asyncio.gather(*self._tasks, return_exceptions=True)
                for connection in self.connections:
                    connection.close_capture()

    async def _load_instruments(self) -> None:
        assert self.rest is not None
        listed = {i.venue_symbol: i for i in await self.venue.instruments(self.rest)}
        unknown = [s for s in self.symbols if s not in listed]
        if unknown:
            reason = f"{self.venue.name} does not list {unknown}"
            self.status(f"{self.venue.name}-0", ConnectorState.ERROR, reason)
            raise ConfigError(f"{reason}; check the symbols in the feed config (the venue's own names)")
        self.instruments = {s: listed[s] for s in self.symbols}
        for instrument in listed.values():  # every instrument's rules, for the order router
            self.sink.send(topics.INSTRUMENTS, instrument)
        not_trading = [s for s, i in self.instruments.items() if not i.trading]
        if not_trading:
            log.warning("%s: %s not trading now (status from the venue)", self.venue.name, not_trading)

    def _groups(self) -> list[list[str]]:
        protocol = self.venue.protocol
        per_symbol = max(len(protocol.keys(self.symbols[0])), 1) if self.symbols else 1
        size = max(protocol.limits.max_subscriptions // per_symbol, 1)
        if self.options.symbols_per_connection:
            size = min(size, self.options.symbols_per_connection)
        return [self.symbols[i : i + size] for i in range(0, len(self.symbols), size)]

    def status(
        self, connection_id: str, state: ConnectorState, reason: str | None = None, attempt: int = 0,
        channel: str | None = None, symbol: str | None = None,
    ) -> None:  # fmt: skip
        self.sink.send(
            topics.STATUS,
            ConnectorStatus(venue=self.venue.name, connection_id=connection_id, state=state, reason=reason,
                            channel=channel, symbol=symbol, attempt=attempt, ts=now_us()),
        )  # fmt: skip

    # --- snapshots -----------------------------------------------------------------------------

    def fetch_snapshot(self, connection: FeedConnection, symbol: str) -> None:
        task = asyncio.get_running_loop().create_task(self._fetch_snapshot(connection, symbol))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _fetch_snapshot(self, connection: FeedConnection, symbol: str) -> None:
        assert self.rest is not None
        request = self.venue.snapshot_request(symbol)
        assert request is not None
        stale = connection.stale_snapshots.get(symbol, 0)
        if stale:  # the last snapshot did not bridge: the stream is ahead of the REST cache
            await asyncio.sleep(Backoff().delay(stale))
        attempt = 0
        try:
            async with self._snapshot_slots:
                while True:
                    attempt += 1
                    body, receive_ts = await self.rest.get(request.path, request.params, request.weight, _raw)
                    connection.capture_response(request, body, receive_ts, self.options.rest_url)
                    try:
                        connection.stream.on_snapshot(symbol, body, receive_ts)
                        break
                    except MalformedFrame as exc:
                        self.snapshot_failures += 1
                        log.warning("snapshot of %s unusable (attempt %d): %s", symbol, attempt, exc)
                        await asyncio.sleep(Backoff().delay(attempt))
        finally:
            connection.pending_snapshots.discard(symbol)
        live = connection.stream.syncs[symbol].state.value == "live"
        connection.stale_snapshots[symbol] = 0 if live else stale + 1

    # --- views ---------------------------------------------------------------------------------

    @property
    def syncs(self) -> dict[str, BookSync]:
        return {s: sync for c in self.connections for s, sync in c.stream.syncs.items()}

    @property
    def counters(self) -> FeedCounters:
        out = FeedCounters(snapshot_failures=self.snapshot_failures)
        for c in self.connections:
            out.frames += c.stream.counters.frames
            out.malformed_frames += c.stream.counters.malformed_frames
            out.events += c.stream.counters.events
            out.refused_subscriptions += c.subscriptions.counters.refused
            out.resubscribed += c.subscriptions.counters.resubscribed
            out.last_error = c.stream.counters.last_error or out.last_error
        if self.rest is not None:
            out.snapshot_failures += self.rest.counters.failures
            out.rate_limited = self.rest.counters.rate_limited
        return out


def _raw(body: bytes, receive_ts: int) -> tuple[bytes, int]:
    return body, receive_ts


class FeedConnection:
    """One WebSocket connection of a feed and the symbols it carries."""

    def __init__(self, feed: VenueFeed, connection_id: str, symbols: list[str]) -> None:
        self.feed = feed
        self.connection_id = connection_id
        self.symbols = symbols
        #: The connection's last state and when it began (wall time), for the status endpoint.
        self.state: ConnectorState | None = None
        self.state_since = time.time()
        venue, options = feed.venue, feed.options
        self.protocol = venue.protocol
        names = {s: i.symbol for s, i in feed.instruments.items()}
        self.stream = venue.make_stream(symbols, feed.sink, self._request_snapshot, names)
        self.subscriptions = SubscriptionManager(
            self.protocol, self.protocol.connection_keys() + [k for s in symbols for k in self.protocol.keys(s)],
            on_active=self._on_active, on_refused=self._on_refused,
        )  # fmt: skip
        timeouts = {**venue.watchdog_timeouts, **options.watchdog}
        self.watchdog = TrafficWatchdog(lambda key: _timeout(timeouts, self.protocol.channel_of(key)))
        self.session = WebSocketSession(
            self.protocol.url(options.ws_url), self._on_frame, self._on_state, on_open=self._while_open,
            backoff=options.backoff, silence_timeout=options.silence_timeout,
        )  # fmt: skip
        self.rest_snapshots = venue.snapshot_request(symbols[0]) is not None if symbols else False
        self.pending_snapshots: set[str] = set()
        self.stale_snapshots: dict[str, int] = {}
        self._deferred: set[str] = set()  # books waiting for their channel to be subscribed
        self._resync_keys: list[str] = []  # book channels to subscribe again (in-stream snapshots)
        #: WebSockets opened so far (the raw topic's ``connection_number``: a new stream).
        self.connection_number = 0
        self._wake = asyncio.Event()
        self._raw_topic = topics.raw_topic(venue.name)
        self._capture: CaptureWriter | None = None

    # --- frames (the hot path) -----------------------------------------------------------------

    def _on_frame(self, frame: bytes, receive_ts: int) -> None:
        if self.feed.options.capture_raw:
            self.feed.sink.send(self._raw_topic, RawFrame(venue=self.feed.venue.name, connection_id=self.connection_id,
                                connection_number=self.connection_number, receive_ts=receive_ts,
                                payload=frame.decode("utf-8", "replace")))  # fmt: skip
        if self._capture is not None:
            self._capture.frame(receive_ts, frame.decode("utf-8", "replace"))
        result = self.stream.on_frame(frame, receive_ts)
        if type(result) is str:
            self.watchdog.last_seen[result] = receive_ts
        elif isinstance(result, Control):
            self.subscriptions.on_control(result)
            self._wake.set()

    # --- connection life -----------------------------------------------------------------------

    def _on_state(self, state: ConnectorState, reason: str | None, attempt: int) -> None:
        self.state, self.state_since = state, time.time()
        self.feed.status(self.connection_id, state, reason, attempt)
        if state is ConnectorState.CONNECTED:
            # Nothing is subscribed on a new connection; every book restarts from a snapshot
            # taken once its channel is subscribed again (data may have been missed).
            self.subscriptions.start()
            self.watchdog.reset()
            self._deferred.clear()
            self._resync_keys.clear()
            self._open_capture()
            self.connection_number += 1
            self.stream.invalidate(BookResetReason.RECONNECT, reconnect_detail(self.connection_number), now_us())
        elif state in (ConnectorState.DISCONNECTED, ConnectorState.STOPPED):
            self.close_capture()

    async def _while_open(self, ws: ClientConnection) -> str | None:
        """Beside the reader: send subscription requests at the venue's pace, expire requests
        left unanswered, and run the watchdog. Returns a reason to reconnect."""
        limits = self.protocol.limits
        pacer = RequestPacer(limits.requests_per_second)
        per_ip = (
            shared_pacer(self.feed.venue.name, limits.requests_per_second_per_ip)
            if limits.requests_per_second_per_ip
            else None
        )
        announced = False
        while True:
            if self._resync_keys:  # books to resync by subscribing again, in as few requests as fit
                keys, self._resync_keys = list(dict.fromkeys(self._resync_keys)), []
                self.subscriptions.resubscribe(keys)
            message = self.subscriptions.next_message()
            if message is not None:
                await pacer.wait()
                if per_ip is not None:
                    await per_ip.wait()
                await ws.send(message)
                continue
            self.subscriptions.expire()
            if not announced and self.subscriptions.all_active:
                announced = True
                self.feed.status(
                    self.connection_id, ConnectorState.SUBSCRIBED, f"{len(self.subscriptions.keys)} subscriptions"
                )
            verdict = self.watchdog.check(now_us())
            for key in verdict.resubscribe:
                channel, symbol = self.protocol.channel_of(key), self.protocol.symbol_of(key)
                self.feed.status(
                    self.connection_id, ConnectorState.RESYNCING, "no data: subscribing again", channel=channel,
                    symbol=symbol,
                )  # fmt: skip
            self.subscriptions.resubscribe(verdict.resubscribe)
            if verdict.reconnect:
                return verdict.reason
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=1.0)

    def _on_active(self, keys: list[str]) -> None:
        self.watchdog.activated(keys, now_us())
        for key in keys:
            symbol = self.protocol.symbol_of(key)
            if symbol in self._deferred and self.protocol.book_key(symbol) == key:
                self._deferred.discard(symbol)
                self._request_snapshot(symbol)

    def _on_refused(self, keys: list[str], reason: str) -> None:
        for key in keys:
            channel, symbol = self.protocol.channel_of(key), self.protocol.symbol_of(key)
            log.error("%s: subscription %s refused: %s", self.connection_id, key, reason)
            self.feed.status(self.connection_id, ConnectorState.ERROR, f"subscription refused: {reason}",
                             channel=channel, symbol=symbol)  # fmt: skip

    def _request_snapshot(self, symbol: str) -> None:
        key = self.protocol.book_key(symbol)
        if key is None:
            return
        subscribed = self.subscriptions.states.get(key) is SubState.ACTIVE
        if not self.rest_snapshots:
            # The venue sends a snapshot whenever the book's channel is subscribed: if it is
            # being subscribed now, one is on its way; else subscribe it again (batched).
            if subscribed:
                self._resync_keys.append(key)
                self._wake.set()
            return
        if not subscribed:
            self._deferred.add(symbol)  # subscribe first, buffer, then take the snapshot
        elif symbol not in self.pending_snapshots:
            self.pending_snapshots.add(symbol)
            self.feed.fetch_snapshot(self, symbol)

    # --- capture files -------------------------------------------------------------------------

    def _open_capture(self) -> None:
        self.close_capture()
        directory = self.feed.options.capture_dir
        if directory is not None:
            folder = directory / f"{self.connection_id}-{self.session.connections}"
            self._capture = CaptureWriter(folder, self.session.url, now_us())

    def capture_response(self, request: SnapshotRequest, body: bytes, receive_ts: int, base_url: str) -> None:
        if self._capture is not None:
            query = "&".join(f"{k}={v}" for k, v in request.params.items())
            self._capture.response(f"{base_url.rstrip('/')}{request.path}?{query}", receive_ts, body.decode())

    def close_capture(self) -> None:
        if self._capture is not None:
            self._capture.close()
            self._capture = None


def _timeout(timeouts: dict[str, float | None], channel: str) -> float | None:
    """The watchdog timeout of a channel: an exact entry, else the longest matching prefix
    (``depth`` covers ``depth@100ms``)."""
    if channel in timeouts:
        return timeouts[channel]
    matches = [c for c in timeouts if channel.startswith(c)]
    return timeouts[max(matches, key=len)] if matches else None
