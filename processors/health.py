"""The worker's ``/health`` and ``/metrics`` (Prometheus) pages, beside ``/books`` and ``/klines``.

- ``GET /health``: 200 ``{"healthy": true}`` once the agents' tables are recovered and no book
  is invalid, else 503 with the reasons (a book that is invalid waits for its snapshot: the
  worker is up, its outputs for that instrument say so);
- ``GET /metrics``: ``tickflow_worker_*``: the agents' counters (records, outputs, dead letters,
  klines, corrections), per book its health, counters (applied, duplicates, ignored,
  invalidations) and last update's age, the best bid/offer records' latency from receive to
  processed as a histogram (``tickflow_worker_bbo_latency_seconds``), and per agent and source
  partition the records not applied yet (``tickflow_worker_lag_records``: the partition's high
  watermark as the consumer last fetched it, after the agent's last applied offset).

Read from the agents' state when asked, nothing counted twice on the hot path.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from faust.web import Request, Response, View
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from tickflow.events import BookHealth

if TYPE_CHECKING:
    import faust

_HEALTH = {BookHealth.LIVE: 1.0, BookHealth.AWAITING_SNAPSHOT: 0.0, BookHealth.INVALID: -1.0}


def problems(app: Any) -> list[str]:
    """Why the worker is not healthy (empty: it is)."""
    books, klines = app.tickflow_books, app.tickflow_klines
    out = [f"{name} tables not recovered yet" for name, agent in (("books", books), ("klines", klines))
           if not agent.state.recovered]  # fmt: skip
    out += [f"book {key} invalid: {book.head.detail}" for key, book in sorted(books.state.books.items())
            if book.head.health is BookHealth.INVALID]  # fmt: skip
    return out


class _Collector:
    def __init__(self, app: Any) -> None:
        self.app = app

    def collect(self) -> Iterator[Metric]:
        for name, agent in (("books", self.app.tickflow_books), ("klines", self.app.tickflow_klines)):
            for counter, value in agent.counters.items():
                yield CounterMetricFamily(f"tickflow_worker_{name}_{counter}", f"{name} agent: {counter}", value=value)
        labels = ["venue", "symbol"]
        health = GaugeMetricFamily(
            "tickflow_worker_book_health", "1 live, 0 awaiting a snapshot, -1 invalid", labels=labels
        )
        age = GaugeMetricFamily(
            "tickflow_worker_book_age_seconds", "Since the book's last update was received", labels=labels
        )
        per_book = {name: CounterMetricFamily(f"tickflow_worker_book_{name}", f"Book records {name}", labels=labels)
                    for name in ("applied", "duplicates", "ignored", "invalidations")}  # fmt: skip
        now_us = time.time() * 1e6
        for book in self.app.tickflow_books.state.books.values():
            head = book.head
            key = [head.venue, head.symbol]
            health.add_metric(key, _HEALTH.get(head.health, 0.0))
            age.add_metric(key, max(0.0, (now_us - head.receive_ts) / 1e6) if head.receive_ts else float("nan"))
            for name, family in per_book.items():
                family.add_metric(key, getattr(book.counters, name))
        yield from (health, age, *per_book.values())
        yield from self.app.tickflow_books.latency.collect()
        yield self._lag()

    def _lag(self) -> Metric:
        """Per agent and source partition assigned here: records after the last one applied."""
        lag = GaugeMetricFamily("tickflow_worker_lag_records", "Records of the partition not applied yet",
                                labels=["agent", "topic", "partition"])  # fmt: skip
        consumer = self.app.consumer
        assigned = consumer.assignment()
        for name, agent in (("books", self.app.tickflow_books), ("klines", self.app.tickflow_klines)):
            for tp, offset in list(agent.state.positions.applied.items()):
                if tp not in assigned:
                    continue
                high = consumer.highwater(tp)  # None until the partition's first fetch
                if high is not None:
                    lag.add_metric([name, tp.topic, str(tp.partition)], max(0, high - offset - 1))
        return lag


def register_health_views(app: faust.App) -> None:
    registry = CollectorRegistry()
    registry.register(_Collector(app))  # type: ignore[arg-type]

    @app.page("/health")
    class Health(View):
        async def get(self, request: Request) -> Response:
            found = problems(app)
            return self.json({"healthy": not found, "problems": found}, status=503 if found else 200)

    @app.page("/metrics")
    class Metrics(View):
        async def get(self, request: Request) -> Response:
            return self.bytes(generate_latest(registry), content_type="text/plain")
