"""Running a router: credentials read, venue clients built, instrument rules loaded, Kafka wired."""

from __future__ import annotations

import asyncio
import gc
import logging
import signal

from processors.router.market import MarketView
from processors.router.router import OrderRouter
from processors.router.settings import RouterSettings
from producers.venues import VENUES, TradingSetup
from producers.venues.trading import HttpTimeouts, TradingClient
from producers.venues.user_stream import UserStream
from tickflow.codec import AvroCodec
from tickflow.config import Settings
from tickflow.errors import ConfigError
from tickflow.registry import SchemaRegistry

log = logging.getLogger(__name__)


def venue_url(settings: RouterSettings, venue: str) -> str:
    endpoint = settings.venues.get(venue)
    spec = VENUES.get(venue)
    if spec is None:
        raise ConfigError(f"unknown venue {venue!r}; known: {', '.join(VENUES)}")
    return (endpoint.rest_url if endpoint and endpoint.rest_url else None) or spec.default_rest_url


def build_clients(
    settings: RouterSettings,
) -> tuple[dict[tuple[str, str], TradingClient], dict[tuple[str, str], UserStream]]:
    """One trading client per account and venue, from the secrets the settings point at, and its
    private stream (unless ``user_streams`` is off or the venue has none)."""
    clients: dict[tuple[str, str], TradingClient] = {}
    streams: dict[tuple[str, str], UserStream] = {}
    for account, config in settings.accounts.items():
        for venue, credentials in config.venues.items():
            spec = VENUES.get(venue)
            if spec is None or spec.trading is None:
                raise ConfigError(f"account {account!r}: the router cannot trade on {venue!r}")
            endpoint = settings.venues.get(venue)
            what = f"account {account!r} at {venue}"
            setup = TradingSetup(
                rest_url=venue_url(settings, venue),
                api_key=credentials.api_key.read(f"{what}: api_key"),
                secret=credentials.secret.read(f"{what}: secret"),
                key_type=credentials.key_type,
                recv_window_ms=endpoint.recv_window_ms if endpoint else 5000,
                timeouts=HttpTimeouts(endpoint.connect_timeout, endpoint.read_timeout) if endpoint else HttpTimeouts(),
                order_limit=endpoint.order_limit if endpoint else None,
                weight_per_minute=endpoint.weight_per_minute if endpoint else None,
            )
            clients[(account, venue)] = spec.trading(setup)
            ws_url = (endpoint.user_stream_url if endpoint else None) or spec.default_user_ws_url
            if settings.user_streams and spec.user_stream is not None and ws_url:
                streams[(account, venue)] = spec.user_stream(setup, ws_url, [])
    return clients, streams


async def prepare(settings: RouterSettings, tickflow: Settings) -> OrderRouter:
    """A router ready to run: clients, instruments, the followed topics, Kafka."""
    codec = AvroCodec(SchemaRegistry(tickflow.registry))
    clients, streams = build_clients(settings)
    market = MarketView()
    for venue in sorted({venue for _, venue in clients}):
        endpoint = settings.venues.get(venue)
        url = (endpoint.market_data_url if endpoint else None) or venue_url(settings, venue)
        count = await market.load_instruments(venue, url)
        log.info("%s: %d instruments", venue, count)
    market.follow(tickflow.kafka, AvroCodec(SchemaRegistry(tickflow.registry)), settings.bbo_topic,
                  settings.control_topic, settings.bbo_max_age)  # fmt: skip
    await asyncio.to_thread(market.switches_loaded.wait, 30)
    router = OrderRouter(settings, tickflow.kafka, codec, clients, market, streams)
    await asyncio.to_thread(router.start_kafka)
    return router


async def serve(settings: RouterSettings, tickflow: Settings, ready: asyncio.Event | None = None) -> None:
    """Run a router until SIGTERM/SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    router = await prepare(settings, tickflow)
    # What start-up made (clients, the order state read back) is never garbage: keep it out of
    # the collector's passes; and collect less often, since each pass over a large heap stalls
    # every command waiting in the loop (tens of milliseconds, the p99 of the overhead).
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
    status_server = None
    if settings.status_port is not None:
        from processors.router.status import start_status_server

        status_server = await start_status_server(router, settings.status_host, settings.status_port)
    try:
        if ready is not None:
            ready.set()
        log.info("router %s ready: %d account/venue clients", settings.instance_id, len(router.clients))
        print("router ready", flush=True)
        await router.run(stop)
    finally:
        if status_server is not None:
            await status_server.cleanup()
        router.market.close()
        await router.aclose()


def run(settings: RouterSettings, tickflow: Settings) -> None:
    """``serve`` on uvloop where it is installed: its event loop and sockets are written in C, and
    the router's loop is its hot path (every command, request, answer and stream message)."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - a platform without uvloop runs on asyncio's loop
        asyncio.run(serve(settings, tickflow))
        return
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(serve(settings, tickflow))
