"""kill -9 a worker while it works through the book and trade topics, again and again, and
restart it: its books equal the venue's in the end, and the derived klines hold every window
exactly once, none missing, each equal to the klines computed here from the trades.

Once with each store: memory (the tables rebuilt from the changelog at each start) and RocksDB
(kept on disk; after a kill, discarded and rebuilt from the changelog, ``local_state.py``); Faust's
at-least-once mode. Books: a batch's changes land in Kafka before its records are
acknowledged, a book's head never lands without its levels, nor a partition's position
(``processors/resume.py``) without its heads; each restart resumes at the position, whatever
Faust committed. Klines: a kline is delivered before the table writes that record it, and after
recovery the agent reads back the derived topic's recent klines so that one published just
before the crash is not published again.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import msgspec
import pytest

from simulator.binance import BinanceSynthetic
from tests.integration.processors_worker import (
    ALL_TOPICS,
    RoutedSink,
    Worker,
    assert_books_equal_truth,
    free_port,
    make_worker,
    run_feed,
)
from tests.integration.test_processors_klines import GRACE, INTERVALS, assert_each_kline_once
from tickflow import topics
from tickflow.codec import AvroCodec
from tickflow.config import Settings
from tickflow.producer import EventProducer

PARTITIONS = 3

MARKET_SECONDS = 60
SPEED = 4
KILLS = 3


@pytest.fixture(params=["memory://", "rocksdb://"])
def worker(request: pytest.FixtureRequest, settings: Settings, new_topic: Callable[..., str],
           tmp_path: Path) -> Iterator[Worker]:  # fmt: skip
    w = make_worker(settings, new_topic, tmp_path, "crash", ALL_TOPICS, free_port(), request.param,
                    kline_intervals=msgspec.json.encode(list(INTERVALS)).decode(), kline_grace=str(GRACE),
                    kline_idle_close="5")  # fmt: skip
    with w.running():
        yield w


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
                sink = RoutedSink(producer, {topics.BOOK: names["book"], topics.TRADES: names["trades"]})
                return await run_feed("binance-spot", sim, sink, MARKET_SECONDS / SPEED + 3,
                                      channels=("depth@100ms", "aggTrade"))  # fmt: skip

    thread = threading.Thread(target=killer, name="killer")
    thread.start()
    try:
        truth = asyncio.run(scenario())
    finally:
        thread.join(180)
    assert killer_done.is_set() and len(kill_log) == KILLS, kill_log

    # The books: each equals the venue's once the worker has read the last record of its topic.
    assert_books_equal_truth(worker, settings, codec, "binance-spot", truth)
    # The klines: every window exactly once, none missing, each equal to the trades'.
    assert_each_kline_once(settings, codec, names, symbols=4)
