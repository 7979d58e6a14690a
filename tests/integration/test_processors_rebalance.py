"""Two workers of one app share the books and the klines by partition: one works alone, a second
joins while the market runs (the partitions are split between them), then the first is killed
(kill -9: the second takes all of them over). In the end every book, served by the worker that
holds it, equals the venue's, every kline window is published exactly once and equals the
klines of the trades, and while both ran each book was held by exactly one of them, and a
request to one for a book the other held was redirected there.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
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

MARKET_SECONDS = 100
SPEED = 4
SYMBOLS = 6


@pytest.fixture
def workers(settings: Settings, new_topic: Callable[..., str], tmp_path: Path) -> Iterator[tuple[Worker, Worker]]:
    (tmp_path / "first").mkdir()
    (tmp_path / "second").mkdir()
    first = make_worker(settings, new_topic, tmp_path / "first", "rebal", ALL_TOPICS, free_port(),
                        kline_intervals=msgspec.json.encode(list(INTERVALS)).decode(), kline_grace=str(GRACE),
                        kline_idle_close="5")  # fmt: skip
    first.start()  # before the second's port is chosen: free_port gives the first free one
    # The same app (group, changelogs, topics), its own web port, data directory and log.
    port = free_port()
    command = [str(port) if previous == "--web-port" else part
               for previous, part in zip(["", *first.command], first.command, strict=False)]  # fmt: skip
    env = {**first.env, "TICKFLOW_PROCESSORS__DATA_DIR": str(tmp_path / "second" / "data")}
    second = replace(first, command=command, env=env, port=port, log=tmp_path / "second" / "worker.log",
                     process=None)  # fmt: skip
    second.topics = first.topics  # type: ignore[attr-defined]
    try:
        yield first, second
    finally:
        first.stop()
        second.stop()


def holdings(worker: Worker) -> set[str]:
    return {b["venue_symbol"] for b in worker.get("/books")["books"]}


def test_a_worker_joining_and_one_killed_rebalance_the_books_without_wrong_output(
    workers: tuple[Worker, Worker], settings: Settings, codec: AvroCodec
) -> None:
    first, second = workers
    names: dict[str, str] = first.topics  # type: ignore[attr-defined]
    seen: dict[str, object] = {}
    done = threading.Event()

    def membership() -> None:
        """The second joins after a while; once the partitions are split, the first is killed."""
        try:
            time.sleep(4)
            second.start()
            second.wait_for("the second worker holding books", lambda: bool(holdings(second)), timeout=90)
            first.wait_for("the first worker giving books up", lambda: len(holdings(first)) < SYMBOLS, timeout=90)
            seen["first"], seen["second"] = holdings(first), holdings(second)
            # Asked for a book the other holds, a worker redirects there.
            theirs = second.get("/books")["books"][0]
            routed = first.book_of("binance-spot", theirs["symbol"])
            seen["routed"] = routed is not None and routed["venue_symbol"] == theirs["venue_symbol"]
            first.kill()
        finally:
            done.set()

    async def scenario() -> dict[str, dict]:
        sim = BinanceSynthetic(symbols=SYMBOLS, usdm=False, seed=59, rate=200, duration=MARKET_SECONDS, speed=SPEED)
        async with sim:
            with EventProducer(settings.kafka, codec) as producer:
                sink = RoutedSink(producer, {topics.BOOK: names["book"], topics.TRADES: names["trades"]})
                return await run_feed("binance-spot", sim, sink, MARKET_SECONDS / SPEED + 3,
                                      channels=("depth@100ms", "aggTrade"))  # fmt: skip

    thread = threading.Thread(target=membership, name="membership")
    thread.start()
    try:
        truth = asyncio.run(scenario())
    finally:
        thread.join()  # bounded by its own waits; the fixture must not stop the workers before it is done
    assert done.is_set() and "first" in seen, "the rebalance did not happen"
    # While both ran, each book was held by one of them, and both held some.
    assert seen["first"] and seen["second"] and not seen["first"] & seen["second"], seen  # type: ignore[operator]
    assert seen["routed"], "a request to the first worker for a book the second holds was not routed there"

    # The survivor holds every book, and each equals the venue's once it has read the topic.
    assert_books_equal_truth(second, settings, codec, "binance-spot", truth)
    assert holdings(second) == set(truth)
    # Every kline window once, none missing, each equal to the trades' (the first worker's
    # klines, the survivor's, and those of the partitions that moved).
    assert_each_kline_once(settings, codec, names, symbols=SYMBOLS)
