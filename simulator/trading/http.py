"""The trading API's web server: aiohttp on its own loopback port, with the faults every venue shares.

Why a second port: the market-data port is served by ``websockets``, whose HTTP parser takes GET
only, and order endpoints need POST / PUT / DELETE with bodies. A venue subclass registers its
routes (``routes``) and gives its own replies to injected faults (``throttled``, ``unavailable``);
this class runs the server, the periodic matcher, the per-request latency and the per-create
faults (``place``), and the debug endpoints for tests in other processes:

- ``GET /_sim/orders``: every accepted order as JSON (account, client order id, venue order id,
  status, executed, fills...);
- ``GET /_sim/stats``: the simulator's ``SimStats`` (trading counters, injected client order ids).

Faults are read from ``self.faults`` on every request, so a test may swap them at runtime
(``sim.trading.faults = Faults(...)``).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from aiohttp import web

from simulator.faults import Faults, SimStats
from simulator.trading.engine import Engine, Order

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def json_reply(status: int, body: Any, headers: dict[str, str] | None = None) -> web.Response:
    # msgspec writes what ``json.dumps(body, separators=(",", ":"))`` does, several times faster.
    return web.Response(status=status, body=msgspec.json.encode(body), content_type="application/json",
                        headers=headers)  # fmt: skip


def every(n: int | None, count: int) -> bool:
    return bool(n) and count % n == 0  # type: ignore[operator]


class TradingServer:
    """``await start()`` / ``await stop()``; ``url`` is where clients go."""

    def __init__(self, engine: Engine, *, host: str = "127.0.0.1", port: int = 0, faults: Faults | None = None,
                 stats: SimStats | None = None, match_interval: float = 0.05) -> None:  # fmt: skip
        self.engine = engine
        self.host = host
        self.port = port
        self.faults = faults or Faults()
        self.stats = stats or SimStats()
        self.match_interval = match_interval
        self._runner: web.AppRunner | None = None
        self._matcher: asyncio.Task | None = None
        self._closing = asyncio.Event()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    # --- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        app = web.Application(middlewares=[self._middleware])
        app.router.add_get("/_sim/orders", self._debug_orders)
        app.router.add_get("/_sim/stats", self._debug_stats)
        self.routes(app)
        self._closing = asyncio.Event()
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        server = site._server  # the listening socket: port 0 becomes the ephemeral port
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self._matcher = asyncio.create_task(self._match_periodically())

    async def stop(self) -> None:
        self._closing.set()  # held (timed-out) answers end now, so shutdown does not wait for them
        if self._matcher is not None:
            self._matcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._matcher
        if self._runner is not None:
            await self._runner.cleanup()

    async def _match_periodically(self) -> None:
        while True:
            await asyncio.sleep(self.match_interval)
            try:
                self.engine.match_resting()
            except Exception:  # a bug in matching must not silently stop every later fill
                log.exception("resting-order matcher failed")

    # --- requests ---------------------------------------------------------------------------

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.startswith("/_sim/"):
            return await handler(request)
        self.stats.trading_requests += 1
        faults = self.faults
        if faults.order_latency and (not faults.order_latency_every
                                     or self.stats.trading_requests % faults.order_latency_every == 0):  # fmt: skip
            self.stats.slowed_orders += 1
            await asyncio.sleep(faults.order_latency)
        try:
            return await handler(request)
        except web.HTTPException:
            raise
        except Exception:
            log.exception("trading request %s %s failed", request.method, request.path)
            return self.internal_error()

    async def place(self, client_id: str, execute: Callable[[], tuple[web.Response, Order | None]]) -> web.Response:
        """One create, with the create faults: 429 / 5xx before execution (nothing happens), or
        execution then a 5xx or an answer held past the client's timeout. ``execute`` returns the
        venue's answer and the order it created (None: rejected); injected outcomes are recorded
        by client order id only for orders that exist."""
        faults, stats = self.faults, self.stats
        stats.order_creates += 1
        n = stats.order_creates
        if every(faults.order_429_every, n):
            stats.orders_throttled.append(client_id)
            return self.throttled()
        if every(faults.order_5xx_before_accept_every, n):
            stats.orders_5xx_before_accept.append(client_id)
            return self.unavailable(executed=False)
        response, order = execute()
        if every(faults.order_5xx_after_accept_every, n):
            if order is not None:
                stats.orders_5xx_after_accept.append(order.client_id)
            return self.unavailable(executed=True)
        if every(faults.order_timeout_every, n):
            if order is not None:
                stats.orders_timed_out.append(order.client_id)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), faults.order_timeout_hold)
        return response

    # --- venue hooks ------------------------------------------------------------------------

    def routes(self, app: web.Application) -> None:
        raise NotImplementedError

    def venue_order_id(self, order: Order) -> int | str:
        return order.id

    def throttled(self) -> web.Response:
        """The venue's 429 for an injected rate limit."""
        raise NotImplementedError

    def unavailable(self, executed: bool) -> web.Response:
        """The venue's 5xx for an injected failure (``executed``: the order was placed anyway)."""
        raise NotImplementedError

    def internal_error(self) -> web.Response:
        return json_reply(500, {"error": "INTERNAL", "message": "internal error"})

    # --- debug ------------------------------------------------------------------------------

    async def _debug_orders(self, request: web.Request) -> web.Response:
        orders = [{**order.as_dict(), "venue_order_id": self.venue_order_id(order)} for order in self.engine.orders]
        return json_reply(200, {"orders": orders})

    async def _debug_stats(self, request: web.Request) -> web.Response:
        return json_reply(200, dataclasses.asdict(self.stats))
