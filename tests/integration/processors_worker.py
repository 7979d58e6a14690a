"""What the processors' end-to-end tests share: a ``tickflow worker`` process with its own app
id, web port, data directory and topics (``make_worker``, ``Worker``); a feed from the simulator
whose events go to the test's topics (``RoutedSink``, ``run_feed``); reading a topic back and
comparing a served book with the simulator's true one.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from infra.processes import free_port as infra_free_port
from producers.venues import VENUES
from tickflow.codec import AvroCodec
from tickflow.config import Settings
from tickflow.consumer import EventConsumer, StartAt
from tickflow.events import BookReset, BookUpdate, Event
from tickflow.producer import EventProducer

PARTITIONS = 3


def free_port() -> int:
    """A free port for a worker's web server, per process (tests run side by side)."""
    return infra_free_port(18800 + os.getpid() % 500, 19800)


#: The processors' topic settings, by the short names the tests give their topics.
TOPIC_SETTINGS = {"book": "BOOK_TOPIC", "bbo": "BBO_TOPIC", "depth": "DEPTH_TOPIC", "dlq": "DEAD_LETTER_TOPIC",
                  "trades": "TRADE_TOPIC", "klines": "KLINE_TOPIC", "derived": "DERIVED_KLINE_TOPIC"}  # fmt: skip


ALL_TOPICS = tuple(TOPIC_SETTINGS)


def worker_env(settings: Settings, names: dict[str, str], data_dir: Path, **processors: str) -> dict[str, str]:
    """A worker's environment: the test's broker, registry, topics and data directory, plus
    ``processors`` as ``TICKFLOW_PROCESSORS__<NAME>`` settings."""
    env = {
        **os.environ,
        "TICKFLOW_KAFKA__BOOTSTRAP_SERVERS": settings.kafka.bootstrap_servers,
        "TICKFLOW_REGISTRY__URL": settings.registry.url,
        "TICKFLOW_PROCESSORS__PARTITIONS": str(PARTITIONS),
        "TICKFLOW_PROCESSORS__DATA_DIR": str(data_dir),
    }
    env.update({f"TICKFLOW_PROCESSORS__{TOPIC_SETTINGS[kind]}": topic for kind, topic in names.items()})
    env.update({f"TICKFLOW_PROCESSORS__{name.upper()}": value for name, value in processors.items()})
    return env


@dataclass
class Worker:
    """A ``tickflow worker`` process and the topics it reads and writes; ``restart`` stops it
    (SIGTERM) and starts it again with the same app id, so it recovers its tables."""

    command: list[str]
    env: dict[str, str]
    port: int
    log: Path
    book: str
    bbo: str
    depth: str
    dead_letter: str
    process: subprocess.Popen | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(self.command, env=self.env, stdout=out, stderr=subprocess.STDOUT)
        self.wait_for("the tables recovered", lambda: self.get("/books")["recovered"])

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)

    def kill(self) -> None:
        """``kill -9``: no shutdown, no last commit, no flush."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(10)

    @contextmanager
    def running(self) -> Iterator[Worker]:
        """Started, then stopped however the ``with`` block ends (a fixture's body)."""
        try:
            self.start()
            yield self
        finally:
            self.stop()

    def restart(self) -> None:
        self.stop()
        self.start()

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as response:
            return json.loads(response.read())

    def book_of(self, venue: str, symbol: str) -> dict[str, Any] | None:
        try:
            return self.get(f"/books/{venue}/{symbol}")
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return None
            raise

    def wait_for(self, what: str, check: Callable[[], bool], timeout: float = 60.0) -> None:
        """Poll ``check`` until true; on failure, show the books' listing and the worker's log."""
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"worker exited ({self.process.returncode}) waiting for {what}:\n{self.tail()}")
            try:
                if check():
                    return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.3)
        try:
            books = json.dumps(self.get("/books"), indent=1)
        except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
            books = repr(exc)
        pytest.fail(f"timed out waiting for {what}; books: {books}\nworker log:\n{self.tail()}")

    def tail(self, lines: int = 60) -> str:
        """The start of the worker's log (its setup) and its last lines."""
        text = self.log.read_text(errors="replace").splitlines()
        return "\n".join([*text[:25], f"... ({len(text)} lines in all)", *text[-lines:]])


def make_worker(settings: Settings, new_topic: Callable[..., str], tmp_path: Path, name: str, kinds: tuple[str, ...],
                port: int, store: str = "memory://", **processors: str) -> Worker:  # fmt: skip
    """A worker (not started) with its own app id, web ``port``, data directory and topics
    (``kinds``, short names of ``TOPIC_SETTINGS``), ``store``; ``worker.topics`` names them."""
    names = {kind: new_topic(f"test.{name}.{kind}", partitions=PARTITIONS) for kind in kinds}
    env = worker_env(settings, names, tmp_path / "data", **processors)
    tickflow = str(Path(sys.executable).parent / "tickflow")
    command = [tickflow, "worker", "--app-id", f"test-{name}-{uuid.uuid4().hex[:8]}", "--web-port", str(port),
               "--store", store]  # fmt: skip
    w = Worker(command, env, port, tmp_path / "worker.log", names["book"], names["bbo"], names["depth"], names["dlq"])
    w.topics = names  # type: ignore[attr-defined]
    return w


class RoutedSink:
    """A feed's sink: events of the pipeline's topics in ``route`` go to the test's topics, the
    rest are dropped."""

    def __init__(self, producer: EventProducer, route: dict[str, str]) -> None:
        self.producer, self.route = producer, route

    def send(self, topic: str, event: Event) -> None:
        target = self.route.get(topic)
        if target is not None:
            self.producer.send(target, event)


async def run_feed(venue: str, sim: Any, sink: Any, seconds: float, **venue_options: Any) -> dict[str, Any]:
    """Run ``venue``'s feed against the running simulator ``sim`` for ``seconds``; the simulator's
    true books at the end, by venue symbol."""
    feed = VENUES[venue].make_feed(sim.symbols, sink, ws_url=sim.ws_url, rest_url=sim.rest_url,
                                   venue_options=venue_options)  # fmt: skip
    stop = asyncio.Event()
    task = asyncio.create_task(feed.run(stop))
    await asyncio.sleep(seconds)
    truth = {s: sim.true_book(s) for s in sim.symbols}
    stop.set()
    await asyncio.wait_for(task, 10)
    return truth


def read(settings: Settings, codec: AvroCodec, topic: str) -> list[Any]:
    with EventConsumer(settings.kafka, codec, [topic], StartAt.beginning()) as consumer:
        return [m.event for m in consumer.read_to_end()]


def as_book(levels: dict[str, list[list[str]]] | dict[str, dict[str, str]]) -> dict[str, dict[Decimal, Decimal]]:
    out = {}
    for side in ("bids", "asks"):
        pairs = levels[side].items() if isinstance(levels[side], dict) else levels[side]
        out[side] = {Decimal(p): Decimal(q) for p, q in pairs}
    return out


def assert_books_equal_truth(worker: Worker, settings: Settings, codec: AvroCodec, venue: str,
                             truth: dict[str, Any], timeout: float = 120) -> None:  # fmt: skip
    """Each book, once ``worker`` has applied the last record of its book topic, is ``LIVE`` and
    equals the simulator's true book."""
    records = [r for r in read(settings, codec, worker.book) if isinstance(r, (BookUpdate, BookReset))]
    for symbol, true_book in truth.items():
        mine = [r for r in records if (r.venue, r.venue_symbol) == (venue, symbol)]
        assert isinstance(mine[-1], BookUpdate), f"{symbol}: the producer ended with a marker"
        final_id = mine[-1].last_update_id
        worker.wait_for(f"{symbol} at update {final_id}",
                        lambda s=symbol, i=final_id: (worker.book_of(venue, s) or {}).get("last_update_id") == i,
                        timeout=timeout)  # fmt: skip
        book = worker.book_of(venue, symbol)
        assert book is not None and book["health"] == "LIVE", (symbol, book and book["detail"])
        assert as_book(book) == as_book(true_book), symbol
