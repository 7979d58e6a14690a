"""kill -9 a worker while it works through the book topic, again and again, and restart it: its
books equal the venue's in the end.

The worker runs with the memory store (its tables rebuilt from the changelog at each start),
Faust's at-least-once mode and the order-book agent's batched table writes
(``processors/changelog.py``: a batch's source records are acknowledged only once its changes
are in Kafka, and a book's head never lands without its levels). Records after the last
committed offset are read again and applied again (a delta sets levels to absolute sizes, so
applying it twice changes nothing).

Not covered yet, and why: the RocksDB store (the same scenario fails with it: after a restart
some books resume past records whose changes are not in the tables; under investigation, see
the README), and the kline agent's output after a crash (without transactions a kline can be
published twice or lost around a crash).
"""

from __future__ import annotations

import asyncio
import os
import random
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import msgspec
import pytest

from producers.venues import VENUES
from simulator.binance import BinanceSynthetic
from tests.integration.test_processors_books import Worker, as_book, free_port, read
from tests.integration.test_processors_klines import GRACE, INTERVALS
from tickflow import topics
from tickflow.codec import AvroCodec
from tickflow.config import Settings
from tickflow.events import BookReset, BookUpdate, Event
from tickflow.producer import EventProducer

PARTITIONS = 3
MARKET_SECONDS = 60
SPEED = 4
KILLS = 3


@pytest.fixture
def worker(settings: Settings, new_topic: Callable[..., str], tmp_path: Path) -> Iterator[Worker]:
    kinds = ("book", "bbo", "depth", "dlq", "trades", "klines", "derived")
    names = {kind: new_topic(f"test.crash.{kind}", partitions=PARTITIONS) for kind in kinds}
    port = free_port()
    env = {
        **os.environ,
        "TICKFLOW_KAFKA__BOOTSTRAP_SERVERS": settings.kafka.bootstrap_servers,
        "TICKFLOW_REGISTRY__URL": settings.registry.url,
        "TICKFLOW_PROCESSORS__PARTITIONS": str(PARTITIONS),
        "TICKFLOW_PROCESSORS__DATA_DIR": str(tmp_path / "data"),
        "TICKFLOW_PROCESSORS__BOOK_TOPIC": names["book"],
        "TICKFLOW_PROCESSORS__BBO_TOPIC": names["bbo"],
        "TICKFLOW_PROCESSORS__DEPTH_TOPIC": names["depth"],
        "TICKFLOW_PROCESSORS__DEAD_LETTER_TOPIC": names["dlq"],
        "TICKFLOW_PROCESSORS__TRADE_TOPIC": names["trades"],
        "TICKFLOW_PROCESSORS__KLINE_TOPIC": names["klines"],
        "TICKFLOW_PROCESSORS__DERIVED_KLINE_TOPIC": names["derived"],
        "TICKFLOW_PROCESSORS__KLINE_INTERVALS": msgspec.json.encode(list(INTERVALS)).decode(),
        "TICKFLOW_PROCESSORS__KLINE_GRACE": str(GRACE),
        "TICKFLOW_PROCESSORS__KLINE_IDLE_CLOSE": "5",
    }
    tickflow = str(Path(sys.executable).parent / "tickflow")
    command = [tickflow, "worker", "--app-id", f"test-crash-{uuid.uuid4().hex[:8]}", "--web-port", str(port),
               "--store", "memory://"]  # fmt: skip
    w = Worker(command, env, port, tmp_path / "worker.log", names["book"], names["bbo"], names["depth"], names["dlq"])
    w.topics = names  # type: ignore[attr-defined]
    try:
        w.start()
        yield w
    finally:
        w.stop()


class BooksOnly:
    """A feed's sink: book events to the test's book topic, the rest dropped."""

    def __init__(self, producer: EventProducer, names: dict[str, str]) -> None:
        self.producer = producer
        self.route = {topics.BOOK: names["book"]}

    def send(self, topic: str, event: Event) -> None:
        if topic in self.route:
            self.producer.send(self.route[topic], event)


def test_killed_again_and_again_the_worker_ends_with_the_venues_books(
    worker: Worker, settings: Settings, codec: AvroCodec
) -> None:
    names: dict[str, str] = worker.topics  # type: ignore[attr-defined]
    rng = random.Random(53)
    kill_log: list[str] = []
    killer_done = threading.Event()

    def killer() -> None:
        """kill -9 at random moments (each after the worker had a few seconds to work), restart."""
        try:
            for n in range(KILLS):
                time.sleep(rng.uniform(1.0, 4.0))
                worker.kill()
                kill_log.append(f"kill {n + 1} at {time.monotonic():.1f}")
                worker.start()
        finally:
            killer_done.set()

    async def scenario() -> dict[str, dict]:
        sim = BinanceSynthetic(symbols=4, usdm=False, seed=47, rate=300, duration=MARKET_SECONDS, speed=SPEED)
        async with sim:
            with EventProducer(settings.kafka, codec) as producer:
                channels = {"channels": ("depth@100ms",)}
                feed = VENUES["binance-spot"].make_feed(sim.symbols, BooksOnly(producer, names),
                                                        ws_url=sim.ws_url, rest_url=sim.rest_url,
                                                        venue_options=channels)  # fmt: skip
                stop = asyncio.Event()
                task = asyncio.create_task(feed.run(stop))
                await asyncio.sleep(MARKET_SECONDS / SPEED + 3)
                truth = {s: sim.true_book(s) for s in sim.symbols}
                stop.set()
                await asyncio.wait_for(task, 10)
        return truth

    thread = threading.Thread(target=killer, name="killer")
    thread.start()
    try:
        truth = asyncio.run(scenario())
    finally:
        thread.join(180)
    assert killer_done.is_set() and len(kill_log) == KILLS, kill_log

    # The books: each equals the venue's once the worker has read the last record of its topic.
    records = [r for r in read(settings, codec, names["book"]) if isinstance(r, (BookUpdate, BookReset))]
    for symbol, true_book in truth.items():
        mine = [r for r in records if r.venue_symbol == symbol]
        assert isinstance(mine[-1], BookUpdate), f"{symbol}: the producer ended with a marker"
        final_id = mine[-1].last_update_id
        worker.wait_for(f"{symbol} at update {final_id}", lambda s=symbol, i=final_id: _last_id(worker, s) == i,
                        timeout=120)  # fmt: skip
        book = worker.book_of("binance-spot", symbol)
        assert book is not None and book["health"] == "LIVE", (symbol, book and book["detail"])
        assert as_book(book) == as_book(true_book), symbol


def _last_id(worker: Worker, symbol: str) -> int | None:
    return (worker.book_of("binance-spot", symbol) or {}).get("last_update_id")
