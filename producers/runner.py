"""``tickflow produce``: run the feeds a config file names, into Kafka, until told to stop.

Config (YAML)::

    feeds:
      - venue: binance-spot
        symbols: [BTCUSDT, ETHUSDT]
        channels: [depth@100ms, aggTrade, bookTicker, kline_1m]   # the default
        ws_url: ws://127.0.0.1:18765     # optional: the simulator instead of the venue
        rest_url: http://127.0.0.1:18765
        capture_raw: true                # every frame also to tickflow.raw.<venue>
        capture_dir: captures/           # and to capture files (ws.log/http.log per connection)
        watchdog: {depth: 60}            # seconds of silence per channel before resubscribing
        symbols_per_connection: 100

Kafka and the registry come from the usual settings (``TICKFLOW_*``). SIGTERM or SIGINT stops
the feeds, flushes every record to Kafka and exits 0; records that could not be delivered make
it exit non-zero, saying how many.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, Field, ValidationError

from producers.venues import VENUES
from tickflow.codec import AvroCodec
from tickflow.config import Settings
from tickflow.errors import ConfigError
from tickflow.producer import EventProducer
from tickflow.registry import SchemaRegistry

log = logging.getLogger(__name__)


class FeedConfig(BaseModel):
    venue: str
    symbols: list[str] = Field(min_length=1)
    #: The venue's channels, in its own words (Binance: ``depth@100ms``, ``aggTrade``, ...;
    #: Coinbase: ``level2``, ``market_trades``, ...); default: book, trades, best bid/offer, klines.
    channels: list[str] | None = Field(default=None, min_length=1)
    ws_url: str | None = None
    rest_url: str | None = None
    capture_raw: bool = False
    #: Write the traffic as capture files under this folder (``shared/recordings`` layout).
    capture_dir: Path | None = None
    #: Watchdog timeouts per channel, in seconds (null: not watched), over the venue's defaults.
    watchdog: dict[str, float | None] = Field(default_factory=dict)
    symbols_per_connection: int | None = Field(default=None, ge=1)
    silence_timeout: float = Field(default=30.0, gt=0)
    #: Load the venue's instrument metadata first (symbols checked against it, rules published).
    load_instruments: bool = True


class ProduceConfig(BaseModel):
    feeds: list[FeedConfig] = Field(min_length=1)


def load_produce_config(path: Path) -> ProduceConfig:
    try:
        config = ProduceConfig.model_validate(yaml.safe_load(path.read_text()) or {})
    except (OSError, yaml.YAMLError, ValidationError) as exc:
        raise ConfigError(f"invalid feed config {path}: {exc}") from exc
    unknown = [f.venue for f in config.feeds if f.venue not in VENUES]
    if unknown:
        raise ConfigError(f"unknown venue(s) {unknown}; known: {sorted(VENUES)}")
    return config


async def produce(
    settings: Settings, config: ProduceConfig, stop: asyncio.Event | None = None, status_port: int | None = None
) -> None:
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    registry = SchemaRegistry(settings.registry)
    latency = None
    client_config: dict[str, Any] = {}
    if status_port is not None:  # librdkafka's latency windows for /metrics, every 5 s
        from producers.status import KafkaLatency

        latency = KafkaLatency()
        client_config = {"statistics.interval.ms": 5000, "stats_cb": latency}
    producer = EventProducer(settings.kafka, AvroCodec(registry), config=client_config)
    feeds = []
    for feed in config.feeds:
        spec = VENUES[feed.venue]
        feeds.append(
            spec.make_feed(
                feed.symbols,
                producer,
                ws_url=feed.ws_url or spec.default_ws_url,
                rest_url=feed.rest_url or spec.default_rest_url,
                capture_raw=feed.capture_raw,
                capture_dir=feed.capture_dir / feed.venue if feed.capture_dir else None,
                watchdog=feed.watchdog,
                symbols_per_connection=feed.symbols_per_connection,
                silence_timeout=feed.silence_timeout,
                load_instruments=feed.load_instruments,
                venue_options={"channels": feed.channels} if feed.channels else {},
            )
        )

    async def serve_delivery_reports() -> None:
        while not stop.is_set():
            producer.poll(0)
            await asyncio.sleep(0.1)

    server = None
    if status_port is not None:  # /health, /status, /metrics (producers/status.py)
        from producers.status import StatusServer

        server = StatusServer(feeds, producer, status_port, latency=latency)
        await server.start()
    try:
        await asyncio.gather(serve_delivery_reports(), *(f.run(stop) for f in feeds))
    finally:
        if server is not None:
            await server.stop()
        log.info("stopping: flushing records to Kafka")
        producer.flush(timeout=60)  # raises DeliveryFailed / BrokerUnavailable: never silent
        registry.close()
