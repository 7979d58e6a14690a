"""The producer process's status over HTTP, for ``tickflow up``'s live view, Prometheus and
health checks (``tickflow produce --status-port``):

- ``GET /health``: 200 ``{"healthy": true}`` when every feed has a connection up and every book
  is live or on its way, else 503 with the reasons;
- ``GET /status``: JSON, per feed: connections (state, since when), counters (frames, events,
  malformed frames, snapshot failures, rate limiting), per symbol the book's state and its
  counters (diffs, resets: the gaps and resyncs, snapshots); and the Kafka producer's counters;
- ``GET /metrics``: the same as Prometheus metrics, ``tickflow_producer_*``, and librdkafka's
  own latency quantiles per broker (round trip, client queue, output buffer: ``KafkaLatency``).

Everything is read from the feeds' own counters when asked (a Prometheus collector, not
counters kept on the hot path). Nothing here carries a secret: no URL with credentials, no
configuration.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

if TYPE_CHECKING:
    from producers.feed import VenueFeed
    from tickflow.producer import EventProducer

_LIVE = "live"


def snapshot(feeds: list[VenueFeed], producer: EventProducer | None, started: float) -> dict[str, Any]:
    """The whole status, JSON-ready."""
    out: dict[str, Any] = {"started_at": started, "now": time.time(), "feeds": []}
    for feed in feeds:
        symbols = {}
        for symbol, sync in sorted(feed.syncs.items()):
            symbols[symbol] = {"book": sync.state.value, **vars(sync.counters)}
        connections = [
            {"id": c.connection_id, "state": c.state.value if c.state else "NEW", "since": c.state_since,
             "symbols": len(c.symbols)}
            for c in feed.connections
        ]  # fmt: skip
        out["feeds"].append({"venue": feed.venue.name, "connections": connections, "counters": vars(feed.counters),
                             "symbols": symbols})  # fmt: skip
    if producer is not None:
        stats = producer.stats
        out["kafka"] = {"sent": stats.sent, "delivered": stats.delivered, "failed": stats.failed,
                        "backpressure_waits": stats.backpressure_waits, "broker_errors": stats.broker_errors,
                        "last_broker_error": stats.last_broker_error}  # fmt: skip
    return out


def health(status: dict[str, Any]) -> list[str]:
    """Why the process is not healthy (empty: it is)."""
    problems = []
    for feed in status["feeds"]:
        up = [c for c in feed["connections"] if c["state"] in ("CONNECTED", "SUBSCRIBED", "RESYNCING")]
        if not up:
            problems.append(f"{feed['venue']}: no connection up")
        if feed["counters"].get("last_error") and not up:
            problems.append(f"{feed['venue']}: {feed['counters']['last_error']}")
    kafka = status.get("kafka")
    if kafka and kafka["failed"]:
        problems.append(f"kafka: {kafka['failed']} records not delivered ({kafka['last_broker_error']})")
    return problems


class _Collector:
    """Prometheus metrics read from the feeds at scrape time."""

    def __init__(self, feeds: list[VenueFeed], producer: EventProducer | None,
                 latency: KafkaLatency | None = None) -> None:  # fmt: skip
        self.feeds, self.producer, self.latency = feeds, producer, latency

    def collect(self) -> Iterator[Metric]:
        status = snapshot(self.feeds, self.producer, 0.0)
        per_feed = {
            name: CounterMetricFamily(f"tickflow_producer_{name}", help_, labels=["venue"])
            for name, help_ in (("frames", "WebSocket frames received"), ("events", "Events produced"),
                                ("malformed_frames", "Frames skipped as malformed"),
                                ("snapshot_failures", "REST snapshots that failed"),
                                ("rate_limited", "REST requests answered 429/418"))
        }  # fmt: skip
        per_symbol = {
            name: CounterMetricFamily(f"tickflow_producer_book_{name}", help_, labels=["venue", "symbol"])
            for name, help_ in (("diffs", "Book deltas received"), ("resets", "Book resets (gaps, resyncs)"),
                                ("snapshots", "Book snapshots applied"))
        }  # fmt: skip
        live = GaugeMetricFamily("tickflow_producer_book_live", "1 if the book is live", labels=["venue", "symbol"])
        up = GaugeMetricFamily("tickflow_producer_connections_up", "Connections up", labels=["venue"])
        for feed in status["feeds"]:
            venue = feed["venue"]
            for name, family in per_feed.items():
                family.add_metric([venue], feed["counters"][name])
            for symbol, book in feed["symbols"].items():
                for name, family in per_symbol.items():
                    family.add_metric([venue, symbol], book[name])
                live.add_metric([venue, symbol], 1.0 if book["book"] == _LIVE else 0.0)
            up.add_metric([venue], sum(c["state"] in ("CONNECTED", "SUBSCRIBED") for c in feed["connections"]))
        yield from (*per_feed.values(), *per_symbol.values(), live, up)
        if self.latency is not None:
            yield self.latency.metric()
        if "kafka" in status:
            for name in ("sent", "delivered", "failed"):
                yield CounterMetricFamily(f"tickflow_producer_kafka_{name}", f"Kafka records {name}",
                                          value=status["kafka"][name])  # fmt: skip


class KafkaLatency:
    """librdkafka's own latency windows (``statistics.interval.ms``; its ``stats_cb``): per
    broker the produce round trip (``rtt``), the time records wait in the client's queue
    (``int_latency``) and in its output buffer (``outbuf_latency``), each as p50/p95/p99 over
    the last interval, in seconds. No cost per record: librdkafka measures, this reads its
    summary every few seconds."""

    STAGES = {"rtt": "round trip", "int_latency": "client queue", "outbuf_latency": "output buffer"}

    def __init__(self) -> None:
        self.latest: dict[str, dict[str, dict[str, float]]] = {}  # broker -> stage -> quantile -> s

    def __call__(self, stats_json: str) -> None:
        import json

        stats = json.loads(stats_json)
        latest = {}
        for broker in stats.get("brokers", {}).values():
            if broker.get("nodeid", -1) < 0:  # the bootstrap pseudo-broker
                continue
            latest[str(broker["nodeid"])] = {
                stage: {q: broker[stage][q] / 1e6 for q in ("p50", "p95", "p99") if q in broker.get(stage, {})}
                for stage in self.STAGES
            }
        self.latest = latest

    def metric(self) -> GaugeMetricFamily:
        family = GaugeMetricFamily("tickflow_producer_kafka_latency_seconds",
                                   "librdkafka latency over its last statistics interval",
                                   labels=["broker", "stage", "quantile"])  # fmt: skip
        for broker, stages in self.latest.items():
            for stage, quantiles in stages.items():
                for q, value in quantiles.items():
                    family.add_metric([broker, stage, str(int(q[1:]) / 100)], value)  # p99 -> 0.99
        return family


class StatusServer:
    """Serves ``/health``, ``/status`` and ``/metrics`` on ``host:port`` (loopback by default)."""

    def __init__(self, feeds: list[VenueFeed], producer: EventProducer | None, port: int,
                 host: str = "127.0.0.1", latency: KafkaLatency | None = None) -> None:  # fmt: skip
        self.feeds, self.producer, self.port, self.host = feeds, producer, port, host
        self.started = time.time()
        self.registry = CollectorRegistry()
        self.registry.register(_Collector(feeds, producer, latency))  # type: ignore[arg-type]
        self._runner: web.AppRunner | None = None

    def status(self) -> dict[str, Any]:
        return snapshot(self.feeds, self.producer, self.started)

    async def _health(self, request: web.Request) -> web.Response:
        problems = health(self.status())
        return web.json_response({"healthy": not problems, "problems": problems}, status=503 if problems else 200)

    async def _status(self, request: web.Request) -> web.Response:
        return web.json_response(self.status())

    async def _metrics(self, request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(self.registry), content_type="text/plain", charset="utf-8")

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/health", self._health)
        app.router.add_get("/status", self._status)
        app.router.add_get("/metrics", self._metrics)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
