"""The order-book agent end to end: simulator -> producer -> real Kafka -> a `tickflow worker`
process -> its books over HTTP, compared with the simulator's true books.

Each test runs its own worker as a subprocess (``tickflow worker``, memory store), with its own
Faust app id, web port, data directory and its own book/bbo/depth/dead-letter topics, so it
never reads another test's records and leaves nothing behind that another test reads. The
producer's book events go to the test's book topic through a small sink; everything else it
produces (trades, tickers...) is dropped, as no agent here reads it.
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
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer

from infra.processes import free_port as infra_free_port
from producers.venues import VENUES
from simulator.binance import BinanceSynthetic
from simulator.coinbase import CoinbaseSynthetic
from simulator.faults import Faults
from tickflow import topics
from tickflow.codec import AvroCodec
from tickflow.config import Settings
from tickflow.consumer import EventConsumer, StartAt
from tickflow.events import (
    BookHealth,
    BookReset,
    BookResetReason,
    BookTop,
    BookUpdate,
    BookUpdateKind,
    DeadLetter,
    Event,
    PriceLevel,
)
from tickflow.producer import EventProducer

PARTITIONS = 3
DURATION = 6.0


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
                port: int, **processors: str) -> Worker:  # fmt: skip
    """A worker (not started) with its own app id, web ``port``, data directory and topics
    (``kinds``, short names of ``TOPIC_SETTINGS``), memory store; ``worker.topics`` names them."""
    names = {kind: new_topic(f"test.{name}.{kind}", partitions=PARTITIONS) for kind in kinds}
    env = worker_env(settings, names, tmp_path / "data", **processors)
    tickflow = str(Path(sys.executable).parent / "tickflow")
    command = [tickflow, "worker", "--app-id", f"test-{name}-{uuid.uuid4().hex[:8]}", "--web-port", str(port),
               "--store", os.environ.get("CRASH_STORE", "memory://")]  # fmt: skip
    w = Worker(command, env, port, tmp_path / "worker.log", names["book"], names["bbo"], names["depth"], names["dlq"])
    w.topics = names  # type: ignore[attr-defined]
    return w


@pytest.fixture
def worker(settings: Settings, new_topic: Callable[..., str], tmp_path: Path) -> Iterator[Worker]:
    w = make_worker(settings, new_topic, tmp_path, "proc", ("book", "bbo", "depth", "dlq"), free_port(),
                    depth_interval="0.5", depth_levels="5")  # fmt: skip
    try:
        w.start()
        yield w
    finally:
        w.stop()


class BookTopicOnly:
    """A feed's sink: book events to the test's book topic, the rest dropped."""

    def __init__(self, producer: EventProducer, topic: str) -> None:
        self.producer, self.topic = producer, topic

    def send(self, topic: str, event: Event) -> None:
        if topic == topics.BOOK:
            self.producer.send(self.topic, event)


def read(settings: Settings, codec: AvroCodec, topic: str) -> list[Any]:
    with EventConsumer(settings.kafka, codec, [topic], StartAt.beginning()) as consumer:
        return [m.event for m in consumer.read_to_end()]


def as_book(levels: dict[str, list[list[str]]] | dict[str, dict[str, str]]) -> dict[str, dict[Decimal, Decimal]]:
    out = {}
    for side in ("bids", "asks"):
        pairs = levels[side].items() if isinstance(levels[side], dict) else levels[side]
        out[side] = {Decimal(p): Decimal(q) for p, q in pairs}
    return out


def test_books_from_the_agent_equal_the_venues_and_a_gap_marker_holds_a_book_until_its_snapshot(
    worker: Worker, settings: Settings, codec: AvroCodec
) -> None:
    binance_faults = Faults(drop_depth_every=120, duplicate_depth_every=50, quiet_after=DURATION - 2)
    coinbase_faults = Faults(drop_depth_every=60, duplicate_depth_every=30, quiet_after=DURATION - 2)

    async def run(venue: str, sim: Any, producer: EventProducer) -> dict[str, Any]:
        symbols = sim.symbols
        sink = BookTopicOnly(producer, worker.book)
        feed = VENUES[venue].make_feed(symbols, sink, ws_url=sim.ws_url, rest_url=sim.rest_url)
        stop = asyncio.Event()
        task = asyncio.create_task(feed.run(stop))
        await asyncio.sleep(DURATION + 4)  # the market, then quiet while the last resyncs finish
        truth = {s: sim.true_book(s) for s in symbols}
        stop.set()
        await asyncio.wait_for(task, 10)
        return truth

    async def scenario() -> dict[tuple[str, str], Any]:
        spot = BinanceSynthetic(symbols=3, usdm=False, seed=21, rate=100, duration=DURATION, faults=binance_faults)
        usdm = BinanceSynthetic(symbols=3, usdm=True, seed=22, rate=100, duration=DURATION, faults=binance_faults)
        coinbase = CoinbaseSynthetic(symbols=3, seed=23, rate=100, duration=DURATION, faults=coinbase_faults)
        async with spot, usdm, coinbase:
            with EventProducer(settings.kafka, codec) as producer:
                venues = {"binance-spot": spot, "binance-usdm": usdm, "coinbase": coinbase}
                truths = await asyncio.gather(*(run(v, sim, producer) for v, sim in venues.items()))
        return {(venue, s): book for venue, truth in zip(venues, truths, strict=True) for s, book in truth.items()}

    truth = asyncio.run(scenario())
    assert len(truth) == 9

    # The agent first reads every record the producers wrote, then its books must be the venues'.
    records = read(settings, codec, worker.book)
    worker.wait_for(
        f"all {len(records)} book records read", lambda: worker.get("/books")["counters"]["records"] >= len(records)
    )
    for (venue, symbol), expected in truth.items():
        mine = [r for r in records if (r.venue, r.venue_symbol) == (venue, symbol)]
        # A producer book still resyncing at the end (its topic ends with a marker) cannot be
        # the venue's: that would be the producer's failure, named as such.
        assert not isinstance(mine[-1], BookReset), f"{venue} {symbol}: the producer ended with a marker {mine[-1]}"
        book = worker.book_of(venue, symbol)
        assert book is not None and book["health"] == "LIVE", (venue, symbol, book and book["detail"])
        assert as_book(book) == as_book(expected), (venue, symbol)

    # Every book that got a gap marker said so on the best bid/offer topic, and ended LIVE there.
    markers = [r for r in records if isinstance(r, BookReset)]
    assert markers, "the faults made gap markers"
    tops = [t for t in read(settings, codec, worker.bbo) if isinstance(t, BookTop)]
    marked = {(m.venue, m.venue_symbol) for m in markers}
    for venue_symbol in marked:
        health = [t.health for t in tops if (t.venue, t.venue_symbol) == venue_symbol]
        assert BookHealth.INVALID in health, f"{venue_symbol}: a marker, but no INVALID best bid/offer"
        assert health[-1] is BookHealth.LIVE, venue_symbol
    listing = worker.get("/books")["books"]
    assert {(b["venue"], b["venue_symbol"]) for b in listing} == set(truth)
    assert all(b["health"] == "LIVE" and b["continuity_checked"] for b in listing)
    assert sum(b["counters"]["invalidations"] for b in listing) >= len(marked)

    # Stopped and started again (memory store): the books come back from the changelog topics.
    worker.restart()
    for (venue, symbol), expected in truth.items():
        book = worker.book_of(venue, symbol)
        assert book is not None and book["health"] == "LIVE" and as_book(book) == as_book(expected), (venue, symbol)

    # A gap marker by hand: the book is INVALID, deltas do not revive it, the next snapshot does.
    venue = "binance-spot"
    symbol = sorted(s for v, s in truth if v == venue)[0]
    live = worker.book_of(venue, symbol)
    assert live is not None
    template = next(r for r in records if isinstance(r, BookUpdate) and r.venue_symbol == symbol and r.venue == venue)
    head = {"venue": venue, "market": template.market, "symbol": template.symbol, "venue_symbol": symbol}
    last = live["last_update_id"]
    with EventProducer(settings.kafka, codec) as producer:
        producer.send(worker.book, BookReset(**head, exchange_ts=None, receive_ts=1, reason=BookResetReason.RECONNECT,
                                             detail="by the test"))  # fmt: skip
        producer.flush()
        worker.wait_for("INVALID after the marker", lambda: worker.book_of(venue, symbol)["health"] == "INVALID")
        invalid = worker.book_of(venue, symbol)
        assert invalid["bids"] == invalid["asks"] == [] and "RECONNECT" in invalid["detail"]
        level = [PriceLevel(Decimal("1.5"), Decimal("2"))]
        producer.send(worker.book, BookUpdate(**head, exchange_ts=None, receive_ts=2, kind=BookUpdateKind.DELTA,
                                              bids=level, asks=[], first_update_id=last + 1,
                                              last_update_id=last + 1))  # fmt: skip
        producer.send(worker.book, BookUpdate(**head, exchange_ts=None, receive_ts=3, kind=BookUpdateKind.SNAPSHOT,
                                              bids=level, asks=[PriceLevel(Decimal("1.6"), Decimal("3"))],
                                              last_update_id=last + 10))  # fmt: skip
        producer.flush()
    worker.wait_for("LIVE after the snapshot", lambda: worker.book_of(venue, symbol)["last_update_id"] == last + 10)
    after = worker.book_of(venue, symbol)
    assert after["health"] == "LIVE" and after["bids"] == [["1.5", "2"]] and after["asks"] == [["1.6", "3"]]
    assert after["counters"]["ignored"] == 1  # the delta between marker and snapshot
    assert worker.get(f"/books/{venue}/{symbol}?depth=1")["asks"] == [["1.6", "3"]]
    tops = [t for t in read(settings, codec, worker.bbo) if isinstance(t, BookTop) and t.venue_symbol == symbol]
    assert [t.health for t in tops[-2:]] == [BookHealth.INVALID, BookHealth.LIVE]
    assert tops[-2].bid_price is None and tops[-1].bid_price == Decimal("1.5") and tops[-1].update_id == last + 10
    assert tops[-1].processed_ts >= tops[-1].receive_ts


def test_bad_records_go_to_the_dead_letter_topic_and_the_agent_goes_on(worker: Worker, settings: Settings) -> None:
    producer = Producer(settings.kafka.client_config())
    producer.produce(worker.book, b"not avro at all", key=b"binance-spot:X-Y", partition=0)
    producer.flush(10)
    from tickflow.registry import SchemaRegistry

    with SchemaRegistry(settings.registry) as registry:
        codec = AvroCodec(registry)
        worker.wait_for("a dead letter", lambda: worker.get("/books")["counters"]["dead_letters"] == 1)
        (letter,) = read(settings, codec, worker.dead_letter)
    assert isinstance(letter, DeadLetter)
    assert (letter.source_topic, letter.source_partition, letter.source_offset) == (worker.book, 0, 0)
    assert letter.source_value == b"not avro at all" and letter.error_type == "MalformedPayload"
    assert letter.consumer == "processors.books" and worker.process is not None and worker.process.poll() is None
