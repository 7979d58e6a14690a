"""Binance spot and USD-M over the synthetic market, many symbols, faults on, into the real
Kafka: the book topic alone verifies and rebuilds every book equal to the venue's."""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal

import pytest

from producers.feed import VenueFeed
from producers.venues import VENUES
from simulator.binance import BinanceSynthetic
from simulator.faults import Faults
from tests.integration.book_topic import read, rebuild
from tests.unit.test_binance_recordings import consumer_side_check
from tickflow import topics
from tickflow.codec import AvroCodec
from tickflow.config import Settings
from tickflow.events import BookReset, BookResetReason, BookUpdate

DURATION = 8.0


@pytest.mark.parametrize("venue", ["binance-spot", "binance-usdm"])
def test_many_symbols_with_faults_books_verify_from_the_topic_and_equal_the_venues(
    venue: str, settings: Settings, codec: AvroCodec
) -> None:
    # Each gap costs a REST snapshot (weight 50 of the 6000 a minute): faults at a rate that a
    # minute's budget covers, else the feed rightly waits for the next minute.
    faults = Faults(
        drop_depth_every=200,
        duplicate_depth_every=45,
        reorder_depth_every=250,
        malformed_every=150,
        quiet_after=DURATION - 2,
    )
    usdm = venue == "binance-usdm"

    async def scenario() -> tuple[VenueFeed, BinanceSynthetic, dict]:
        async with BinanceSynthetic(symbols=12, usdm=usdm, seed=3, rate=500, duration=DURATION, faults=faults) as sim:
            from tickflow.producer import EventProducer

            with EventProducer(settings.kafka, codec) as producer:
                feed = VENUES[venue].make_feed(sim.symbols, producer, ws_url=sim.ws_url, rest_url=sim.rest_url)
                stop = asyncio.Event()
                task = asyncio.create_task(feed.run(stop))
                await asyncio.sleep(DURATION + 4)
                truth = {s: sim.true_book(s) for s in sim.symbols}
                stop.set()
                await asyncio.wait_for(task, 10)
        return feed, sim, truth

    started_us = time.time_ns() // 1000
    feed, sim, truth = asyncio.run(scenario())
    assert len(sim.stats.of_kind("drop")) >= 5 and len(sim.stats.of_kind("reorder")) >= 3
    assert feed.counters.malformed_frames == sim.stats.malformed_sent > 0

    book = read(settings, codec, venue, topics.BOOK, started_us)
    markers = [r for r in book if isinstance(r, BookReset) and r.reason is BookResetReason.SEQUENCE_GAP]
    assert markers and len(markers) <= len(sim.stats.of_kind("drop")) + len(sim.stats.of_kind("reorder"))
    for symbol, expected in truth.items():
        records = [r for r in book if r.venue_symbol == symbol]
        assert isinstance(records[0], BookUpdate) and records[0].kind.value == "SNAPSHOT", symbol
        assert consumer_side_check(records, spot=not usdm) == [], symbol  # no unmarked hole anywhere
        want = {side: {Decimal(p): Decimal(q) for p, q in levels.items()} for side, levels in expected.items()}
        assert rebuild(records) == want, symbol
