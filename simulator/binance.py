"""Binance spot / USD-M, replaying recorded traffic (``shared/recordings`` layout).

Speaks Binance's protocol on one loopback port:

- WebSocket ``/stream?streams=a@x/b@y`` (combined streams): the recorded frames of those streams,
  at the recorded pace divided by ``speed``; ``{"method": "SUBSCRIBE"|"UNSUBSCRIBE", "params":
  [...], "id": n}`` changes the set and is answered ``{"result": null, "id": n}`` like Binance.
- REST ``/api/v3/depth`` (spot) and ``/fapi/v1/depth`` (USD-M) ``?symbol=X&limit=N``: the
  symbol's book as the replay has it now (the recorded snapshot plus the diffs sent since),
  answered no earlier than the replay reaches the moment the snapshot was recorded; 400 with
  Binance's error body for an unknown symbol.
- ``drop_connections()`` cuts every client abruptly, for reconnect tests.

The replay clock starts when the first WebSocket client connects. Frames recorded before that
moment in another connection's life are simply the start of the recording.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlparse

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from producers.recordings import read_http_log, read_ws_log

log = logging.getLogger(__name__)


@dataclass
class _Diff:
    at: float
    first_id: int
    last_id: int
    bids: list[list[str]]
    asks: list[list[str]]


@dataclass
class _Recording:
    frames: list[tuple[float, str, str]]  # (seconds from start, stream, frame text)
    snapshots: dict[str, tuple[float, str]]  # symbol -> (seconds from start, body)
    diffs: dict[str, list[_Diff]]  # symbol -> its depth diffs, in order


def _book_at(recording: _Recording, symbol: str, now: float, usdm: bool) -> str:
    """The symbol's book as the replay has it at ``now``: the recorded snapshot plus every diff
    sent since, with the ``lastUpdateId`` a Binance client bridges from (the venue's own rules).
    This is the simulator's truth, written independently of the producers' book code."""
    _, body = recording.snapshots[symbol]
    snapshot = json.loads(body)
    last_id = snapshot["lastUpdateId"]
    sides = {
        "bids": {p: q for p, q in snapshot["bids"]},
        "asks": {p: q for p, q in snapshot["asks"]},
    }
    upcoming = None
    for diff in recording.diffs.get(symbol, []):
        if diff.last_id <= last_id:
            continue
        if diff.at > now:
            upcoming = diff
            break
        for side, levels in (("bids", diff.bids), ("asks", diff.asks)):
            for price, size in levels:
                if float(size) == 0:
                    sides[side].pop(price, None)
                else:
                    sides[side][price] = size
        last_id = diff.last_id
    if usdm and upcoming is not None:
        # USD-M's first diff must satisfy U <= lastUpdateId <= u: state the next diff's U.
        last_id = upcoming.first_id
    bids = sorted(sides["bids"].items(), key=lambda kv: -float(kv[0]))
    asks = sorted(sides["asks"].items(), key=lambda kv: float(kv[0]))
    return json.dumps({"lastUpdateId": last_id, "bids": bids, "asks": asks})


def _load(directory: Path) -> _Recording:
    ws = read_ws_log(directory / "ws.log")
    start = ws.frames[0].receive_ts if ws.frames else ws.opened_ts
    frames = []
    diffs: dict[str, list[_Diff]] = {}
    for frame in ws.frames:
        message = json.loads(frame.text)
        stream = message.get("stream", "")
        at = (frame.receive_ts - start) / 1e6
        frames.append((at, stream, frame.text))
        data = message.get("data", {})
        if data.get("e") == "depthUpdate":
            diffs.setdefault(data["s"], []).append(_Diff(at, data["U"], data["u"], data["b"], data["a"]))
    snapshots = {}
    for response in read_http_log(directory / "http.log").responses:
        symbol = parse_qs(urlparse(response.url).query)["symbol"][0]
        snapshots[symbol] = ((response.receive_ts - start) / 1e6, response.body)
    return _Recording(frames, snapshots, diffs)


@dataclass(frozen=True)
class Faults:
    """Faults to inject into the frames sent, each switchable: every n-th depth diff dropped
    (a gap on the wire) or sent twice, every n-th frame replaced by a malformed one."""

    drop_depth_every: int | None = None
    duplicate_depth_every: int | None = None
    malformed_every: int | None = None


@dataclass
class ReplayStats:
    connections: int = 0
    frames_sent: int = 0
    snapshots_served: int = 0
    subscribe_requests: int = 0
    rate_limited: int = 0
    dropped_depth: int = 0
    #: (symbol, last update id) of every dropped diff.
    dropped: list[tuple[str, int]] = field(default_factory=list)
    duplicated_depth: int = 0
    malformed_sent: int = 0


@dataclass
class BinanceReplay:
    """One simulated Binance venue; ``async with`` starts and stops it."""

    recording: Path
    speed: float = 1.0
    host: str = "127.0.0.1"
    port: int = 0
    #: Binance's REQUEST_WEIGHT limit and its window (a minute at Binance; shorter in tests).
    weight_limit: int = 6000
    weight_window: float = 60.0
    faults: Faults = field(default_factory=Faults)
    stats: ReplayStats = field(default_factory=ReplayStats)

    def __post_init__(self) -> None:
        self._data = _load(self.recording)
        self._started: float | None = None
        self._server: Server | None = None
        self._window_start = time.monotonic()
        self._weight_used = 0

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    @property
    def rest_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _elapsed(self) -> float:
        """Replay seconds since the first client connected."""
        if self._started is None:
            return 0.0
        return (time.monotonic() - self._started) * self.speed

    async def __aenter__(self) -> BinanceReplay:
        self._server = await serve(self._session, self.host, self.port, process_request=self._http)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    # --- REST ----------------------------------------------------------------------------------

    async def _http(self, connection: ServerConnection, request: Request) -> Response | None:
        url = urlparse(request.path)
        if url.path == "/stream":
            return None  # the WebSocket handshake
        if url.path not in ("/api/v3/depth", "/fapi/v1/depth"):
            return _json(404, {"code": -1, "msg": f"no such endpoint {url.path}"})
        symbol = parse_qs(url.query).get("symbol", [""])[0].upper()
        if symbol not in self._data.snapshots:
            return _json(400, {"code": -1121, "msg": "Invalid symbol."})
        limit = int(parse_qs(url.query).get("limit", ["100"])[0])
        weight = _depth_weight(limit, usdm=url.path.startswith("/fapi/"))
        now = time.monotonic()
        if now - self._window_start >= self.weight_window:
            self._window_start, self._weight_used = now, 0
        if self._weight_used + weight > self.weight_limit:
            self.stats.rate_limited += 1
            retry_after = max(1, int(self._window_start + self.weight_window - now + 0.999))
            response = _json(429, {"code": -1003, "msg": "Too many requests; current limit is exceeded."})
            response.headers["Retry-After"] = str(retry_after)
            response.headers["X-MBX-USED-WEIGHT-1M"] = str(self._weight_used)
            return response
        self._weight_used += weight
        at, _ = self._data.snapshots[symbol]
        if self._started is not None and self._elapsed() < at:
            await asyncio.sleep((at - self._elapsed()) / self.speed)
        body = _book_at(self._data, symbol, self._elapsed(), usdm=url.path.startswith("/fapi/"))
        self.stats.snapshots_served += 1
        headers = Headers({"Content-Type": "application/json", "X-MBX-USED-WEIGHT-1M": str(self._weight_used)})
        return Response(200, "OK", headers, body.encode())

    async def drop_connections(self) -> None:
        """Cut every client connection abruptly, as a network failure would."""
        assert self._server is not None
        for connection in list(self._server.connections):
            connection.transport.abort()

    # --- WebSocket -----------------------------------------------------------------------------

    async def _session(self, connection: ServerConnection) -> None:
        self.stats.connections += 1
        first = self._started is None
        if first:
            self._started = time.monotonic()
        query = parse_qs(urlparse(connection.request.path).query if connection.request else "")
        streams = {s for s in query.get("streams", [""])[0].split("/") if s}
        # The first client starts the replay; a later one (a reconnect) joins it where it is now.
        sender = asyncio.create_task(self._send_frames(connection, streams, 0.0 if first else self._elapsed()))
        try:
            async for message in connection:
                request = json.loads(message)
                self.stats.subscribe_requests += 1
                params = request.get("params", [])
                if request.get("method") == "SUBSCRIBE":
                    streams.update(params)
                elif request.get("method") == "UNSUBSCRIBE":
                    streams.difference_update(params)
                await connection.send(json.dumps({"result": None, "id": request.get("id")}))
        except (ConnectionClosed, json.JSONDecodeError):
            pass
        finally:
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sender

    async def _send_frames(self, connection: ServerConnection, streams: set[str], now: float) -> None:
        faults, sent, depth = self.faults, 0, 0
        for at, stream, text in self._data.frames:
            if at < now:
                continue
            delay = (at - self._elapsed()) / self.speed
            if delay > 0:
                await asyncio.sleep(delay)
            if stream not in streams:
                continue
            sent += 1
            if faults.malformed_every and sent % faults.malformed_every == 0:
                await connection.send('{"stream": "' + stream + '", "data": {"e": "depthUpdate", "s": ')
                self.stats.malformed_sent += 1
            if "@depth" in stream:
                depth += 1
                if faults.drop_depth_every and depth % faults.drop_depth_every == 0:
                    self.stats.dropped_depth += 1
                    data = json.loads(text)["data"]
                    self.stats.dropped.append((data["s"], data["u"]))
                    continue  # lost on the wire: the book on the client side now has a gap
                if faults.duplicate_depth_every and depth % faults.duplicate_depth_every == 0:
                    await connection.send(text)
                    self.stats.duplicated_depth += 1
            await connection.send(text)
            self.stats.frames_sent += 1

    def true_book(self, symbol: str) -> dict[str, dict[str, str]]:
        """The simulator's book of ``symbol`` now (price -> size per side), for tests to compare."""
        book = json.loads(_book_at(self._data, symbol, self._elapsed(), usdm=False))
        return {"bids": dict(book["bids"]), "asks": dict(book["asks"])}


def _depth_weight(limit: int, usdm: bool) -> int:
    """Binance's documented weight of a depth request."""
    if usdm:
        return 2 if limit <= 50 else 5 if limit <= 100 else 10 if limit <= 500 else 20
    return 5 if limit <= 100 else 25 if limit <= 500 else 50 if limit <= 1000 else 250


def _json(status: int, body: dict) -> Response:
    reason = {400: "Bad Request", 404: "Not Found", 429: "Too Many Requests"}.get(status, "Error")
    return Response(status, reason, Headers({"Content-Type": "application/json"}), json.dumps(body).encode())
