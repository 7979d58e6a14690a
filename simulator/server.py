"""The part of every simulated venue that is not the venue: one loopback port serving WebSocket
and REST, a registry of connections, cutting them, and the REST faults.

A subclass speaks the venue: ``session()`` runs one WebSocket connection, ``rest()`` answers one
GET, ``rest_throttled()`` / ``rest_banned()`` give the venue's error replies for injected 429/418.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
from typing import TYPE_CHECKING, Self
from urllib.parse import parse_qs, urlparse

from websockets import http11
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from simulator.faults import Faults, SimStats

if TYPE_CHECKING:
    from simulator.trading.config import TradingConfig
    from simulator.trading.engine import Engine
    from simulator.trading.http import TradingServer

log = logging.getLogger(__name__)

#: Combined-stream URLs with hundreds of streams are longer than the library's 8 KiB line limit;
#: the venues take them (1024 streams of ~25 characters).
http11.MAX_LINE_LENGTH = max(http11.MAX_LINE_LENGTH, 64 * 1024)

REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 418: "I'm a teapot", 429: "Too Many Requests"}


def json_response(status: int, body: object, headers: dict[str, str] | None = None) -> Response:
    text = body if isinstance(body, str) else json.dumps(body, separators=(",", ":"))
    all_headers = Headers({"Content-Type": "application/json;charset=UTF-8", **(headers or {})})
    return Response(status, REASONS.get(status, "Error"), all_headers, text.encode())


class VenueServer:
    """``async with`` starts and stops it; ``ws_url`` / ``rest_url`` are where clients go."""

    #: The venue's keepalive pings (None: the venue sends none).
    ping_interval: float | None = None
    ping_timeout: float | None = None

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, faults: Faults | None = None,
                 stats: SimStats | None = None) -> None:  # fmt: skip
        self.host = host
        self.port = port
        self.faults = faults or Faults()
        self.stats = stats or SimStats()
        self._server: Server | None = None
        self._ids = itertools.count(1)
        self._tasks: set[asyncio.Task] = set()

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    @property
    def rest_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    #: The private order API: what to serve (``trading=TradingConfig(...)``), and its server once
    #: started (``simulator.trading``); a venue builds it in ``start_trading``.
    trading_config: TradingConfig | None = None
    trading: TradingServer | None = None

    async def __aenter__(self) -> Self:
        self._server = await serve(
            self._session, self.host, self.port, process_request=self._http, compression=None,
            ping_interval=self.ping_interval, ping_timeout=self.ping_timeout, max_size=2**20,
        )  # fmt: skip
        self.port = self._server.sockets[0].getsockname()[1]
        if self.faults.drop_connections_every:
            self._spawn(self._drop_periodically(self.faults.drop_connections_every))
        if self.trading_config is not None:
            try:
                self.trading = await self.start_trading(self.trading_config)
            except BaseException:
                await self.__aexit__(None, None, None)
                raise
        return self

    async def start_trading(self, config: TradingConfig) -> TradingServer:
        """Start this venue's order API (its engine over this venue's market)."""
        raise NotImplementedError(f"{type(self).__name__} has no order API")

    @property
    def trading_url(self) -> str:
        """Where the order API listens (``http://127.0.0.1:<port>``); only with ``trading=``."""
        return self._trading().url

    @property
    def engine(self) -> Engine:
        """The order API's matching engine: every order, for tests to check against."""
        return self._trading().engine

    def _trading(self) -> TradingServer:
        if self.trading is None:
            raise RuntimeError("this simulator has no trading API (pass trading=TradingConfig(...))")
        return self.trading

    async def __aexit__(self, *_: object) -> None:
        if self.trading is not None:
            await self.trading.stop()
            self.trading = None
        for task in list(self._tasks):
            task.cancel()
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    def _spawn(self, coroutine: object) -> None:
        task = asyncio.ensure_future(coroutine)  # type: ignore[arg-type]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drop_connections(self) -> None:
        """Cut every client connection abruptly, as a network failure would (no close frame)."""
        assert self._server is not None
        for connection in list(self._server.connections):
            self.stats.connections_dropped += 1
            connection.transport.abort()

    async def _drop_periodically(self, every: float) -> None:
        while True:
            await asyncio.sleep(every)
            await self.drop_connections()

    # --- WebSocket ---------------------------------------------------------------------------

    async def _session(self, connection: ServerConnection) -> None:
        self.stats.connections += 1
        try:
            await self.session(connection, next(self._ids))
        except Exception:  # a bug here must not look like a venue that hangs up
            log.exception("simulated session failed")
            raise

    async def session(self, connection: ServerConnection, connection_id: int) -> None:
        raise NotImplementedError

    def websocket_path(self, path: str) -> bool:
        """Whether a WebSocket handshake on ``path`` is accepted."""
        return True

    # --- REST --------------------------------------------------------------------------------

    async def _http(self, connection: ServerConnection, request: Request) -> Response | None:
        url = urlparse(request.path)
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return None if self.websocket_path(url.path) else json_response(404, {"error": "not found"})
        self.stats.rest_requests += 1
        n, faults = self.stats.rest_requests, self.faults
        if faults.rest_latency and (not faults.rest_latency_every or n % faults.rest_latency_every == 0):
            self.stats.slowed_requests += 1
            await asyncio.sleep(faults.rest_latency)
        if faults.rest_418_every and n % faults.rest_418_every == 0:
            self.stats.banned += 1
            return self.rest_banned(faults.rest_retry_after)
        if faults.rest_429_every and n % faults.rest_429_every == 0:
            self.stats.rate_limited += 1
            return self.rest_throttled(faults.rest_retry_after)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        return await self.rest(url.path, query)

    async def rest(self, path: str, query: dict[str, str]) -> Response:
        raise NotImplementedError

    def rest_throttled(self, retry_after: int) -> Response:
        raise NotImplementedError

    def rest_banned(self, retry_after: int) -> Response:
        raise NotImplementedError


async def cancel(task: asyncio.Task) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
