"""The order-book agent end to end: simulator -> producer -> real Kafka -> a `tickflow worker`
process -> its books over HTTP, compared with the simulator's true books.

Each test runs its own worker as a subprocess (``tickflow worker``, memory store), with its own
Faust app id, web port, data directory and its own topics, every one the worker reads or writes
(the kline agent's too: on the stack's shared ``tickflow.trades``, which other tests fill, it
could dead-letter their trades into this test's dead-letter topic; a CI run found two dead
letters there where the test sent one bad record), so it never reads another
test's records and leaves nothing behind that another test reads. The
producer's book events go to the test's book topic through a small sink; everything else it
produces (trades, tickers...) is dropped, as no agent here reads it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from simulator.binance import BinanceSynthetic
from simulator.coinbase import CoinbaseSynthetic
from simulator.faults import Faults
from tests.integration.processors_worker import (
    ALL_TOPICS,
    RoutedSink,
    Worker,
    as_book,
    assert_books_equal_truth,
    free_port,
    make_worker,
    read,
    run_feed,
)
from tickflow import topics
from tickflow.codec import AvroCodec
from tickflow.config import Settings
from tickflow.events import (
    BookHealth,
    BookReset,
    BookResetReason,
    BookTop,
    BookUpdate,
    BookUpdateKind,
    DeadLetter,
    PriceLevel,
)
from tickflow.producer import EventProducer

DURATION = 6.0


@pytest.fixture
def worker(settings: Settings, new_topic: Callable[..., str], tmp_path: Path) -> Iterator[Worker]:
    w = make_worker(settings, new_topic, tmp_path, "proc", ALL_TOPICS, free_port(),
                    depth_interval="0.5", depth_levels="5")  # fmt: skip
    with w.running():
        yield w


def test_books_from_the_agent_equal_the_venues_and_a_gap_marker_holds_a_book_until_its_snapshot(
    worker: Worker, settings: Settings, codec: AvroCodec
) -> None:
    binance_faults = Faults(drop_depth_every=120, duplicate_depth_every=50, quiet_after=DURATION - 2)
    coinbase_faults = Faults(drop_depth_every=60, duplicate_depth_every=30, quiet_after=DURATION - 2)

    async def run(venue: str, sim: Any, producer: EventProducer) -> dict[str, Any]:
        # the market, then quiet while the last resyncs finish
        return await run_feed(venue, sim, RoutedSink(producer, {topics.BOOK: worker.book}), DURATION + 4)

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
        letters = read(settings, codec, worker.dead_letter)
    assert len(letters) == 1, letters
    (letter,) = letters
    assert isinstance(letter, DeadLetter)
    assert (letter.source_topic, letter.source_partition, letter.source_offset) == (worker.book, 0, 0)
    assert letter.source_value == b"not avro at all" and letter.error_type == "MalformedPayload"
    assert letter.consumer == "processors.books" and worker.process is not None and worker.process.poll() is None


class _Recorder:
    """A feed's sink that keeps the book records, to be produced by the test when it chooses."""

    def __init__(self) -> None:
        self.records: list[Any] = []

    def send(self, topic: str, event: Any) -> None:
        if topic == topics.BOOK:
            self.records.append(event)


def test_a_group_committed_past_the_tables_is_read_again_from_where_the_tables_are(
    worker: Worker, settings: Settings, codec: AvroCodec
) -> None:
    """Faust committing offsets the tables do not hold (as after some crashes) loses nothing: the
    worker reads again from the offsets its tables say they applied (``processors/resume.py``)."""

    async def scenario() -> tuple[dict[str, Any], list[Any]]:
        sim = BinanceSynthetic(symbols=3, usdm=False, seed=31, rate=150, duration=DURATION)
        recorder = _Recorder()
        async with sim:
            truth = await run_feed("binance-spot", sim, recorder, DURATION + 2)
        return truth, recorder.records

    truth, records = asyncio.run(scenario())
    half = len(records) // 2
    with EventProducer(settings.kafka, codec) as producer:
        for record in records[:half]:
            producer.send(worker.book, record)
        producer.flush()
    worker.wait_for(f"the first {half} records applied", lambda: worker.get("/books")["counters"]["records"] >= half)
    worker.stop()

    # While it is down: the rest of the market, and its group's offsets committed at the end of
    # the topic, past every record its tables hold.
    with EventProducer(settings.kafka, codec) as producer:
        for record in records[half:]:
            producer.send(worker.book, record)
        producer.flush()
    group = worker.command[worker.command.index("--app-id") + 1]
    consumer = Consumer({**settings.kafka.client_config(), "group.id": group, "enable.auto.commit": False})
    try:
        partitions = consumer.list_topics(worker.book, timeout=10).topics[worker.book].partitions
        ends = [TopicPartition(worker.book, p, consumer.get_watermark_offsets(TopicPartition(worker.book, p))[1])
                for p in partitions]  # fmt: skip
        consumer.commit(offsets=ends, asynchronous=False)
    finally:
        consumer.close()

    worker.start()
    assert_books_equal_truth(worker, settings, codec, "binance-spot", truth)
    assert "resuming where the tables are" in worker.log.read_text()
