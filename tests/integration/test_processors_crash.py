"""kill -9 a worker while the market runs, again and again, and restart it: the books equal the
venue's again, and the derived klines hold every window exactly once, none missing.

The worker runs as in production: RocksDB tables and Faust's exactly-once mode (transactions:
each commit's changelog writes, output records and consumed offsets land together or not at
all). Readers here read committed records only (librdkafka's default ``isolation.level``), as
every consumer of these topics should. A worker killed with uncommitted local RocksDB changes
finds its running mark at start and rebuilds its tables from the changelog
(``processors/local_state.py``): the test would see skipped book records or lost klines
otherwise.
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
from tests.integration.test_processors_klines import GRACE, INTERVALS, S, as_tuple, reference_klines
from tickflow import topics
from tickflow.codec import AvroCodec
from tickflow.config import Settings
from tickflow.events import BookReset, BookUpdate, Event, Kline, Trade
from tickflow.producer import EventProducer

PARTITIONS = 3
MARKET_SECONDS = 120
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
               "--store", "rocksdb://"]  # fmt: skip
    w = Worker(command, env, port, tmp_path / "worker.log", names["book"], names["bbo"], names["depth"], names["dlq"])
    w.topics = names  # type: ignore[attr-defined]
    try:
        w.start()
        yield w
    finally:
        w.stop()


class BooksAndTrades:
    """A feed's sink: book events and trades to the test's topics, the rest dropped."""

    def __init__(self, producer: EventProducer, names: dict[str, str]) -> None:
        self.producer = producer
        self.route = {topics.BOOK: names["book"], topics.TRADES: names["trades"]}

    def send(self, topic: str, event: Event) -> None:
        if topic in self.route:
            self.producer.send(self.route[topic], event)


def test_killed_again_and_again_the_worker_ends_with_the_venues_books_and_each_kline_once(
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
                time.sleep(rng.uniform(2.0, 6.0))
                worker.kill()
                kill_log.append(f"kill {n + 1} at {time.monotonic():.1f}")
                worker.start()
        finally:
            killer_done.set()

    async def scenario() -> dict[str, dict]:
        sim = BinanceSynthetic(symbols=4, usdm=False, seed=47, rate=80, duration=MARKET_SECONDS, speed=SPEED)
        async with sim:
            with EventProducer(settings.kafka, codec) as producer:
                channels = {"channels": ("depth@100ms", "aggTrade")}
                feed = VENUES["binance-spot"].make_feed(sim.symbols, BooksAndTrades(producer, names),
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

    # Close every window of the run: one trade per instrument two minutes after it.
    trades = [t for t in read(settings, codec, names["trades"]) if isinstance(t, Trade)]
    last = {t.key: t for t in trades}
    assert len(last) == 4 and len(trades) > 500
    end = max(t.exchange_ts for t in trades) + 120 * S
    with EventProducer(settings.kafka, codec) as producer:
        for t in last.values():
            producer.send(names["trades"], msgspec.structs.replace(t, trade_id="9" * 15, exchange_ts=end))
        producer.flush()
    trades = [t for t in read(settings, codec, names["trades"]) if isinstance(t, Trade)]
    expected = reference_klines(trades, dict.fromkeys(last, end - GRACE * S))

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

    # The klines: every window exactly once (committed records only), each equal to the trades'.
    def derived() -> list[Kline]:
        return [k for k in read(settings, codec, names["derived"]) if isinstance(k, Kline)]

    deadline = time.monotonic() + 120
    while len({(k.key, k.interval, k.open_time) for k in derived()}) < len(expected) and time.monotonic() < deadline:
        time.sleep(1)
    published = derived()
    windows = [(k.key, k.interval, k.open_time) for k in published]
    duplicates = {w for w in windows if windows.count(w) > 1}
    assert not duplicates, f"{len(duplicates)} windows published more than once, e.g. {sorted(duplicates)[:3]}"
    assert set(windows) == set(expected), (
        f"missing {sorted(set(expected) - set(windows))[:3]}, unexpected {sorted(set(windows) - set(expected))[:3]}"
    )
    for kline in published:
        assert kline.closed and kline.revision == 0
        assert as_tuple(kline) == expected[(kline.key, kline.interval, kline.open_time)], kline
    assert sum(1 for w in windows if w[1] == "1m") >= 4

    # Each unclean stop was noticed, and the local tables rebuilt from the changelog.
    log = worker.log.read_text(errors="replace")
    assert log.count("did not stop cleanly") == KILLS, log.count("did not stop cleanly")


def _last_id(worker: Worker, symbol: str) -> int | None:
    return (worker.book_of("binance-spot", symbol) or {}).get("last_update_id")
