"""A Coinbase Advanced Trade feed against the simulator (faults on), into the real Kafka."""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal
from pathlib import Path

from producers.capture_check import check_capture
from producers.feed import VenueFeed
from producers.venues import VENUES
from simulator.coinbase import CoinbaseSynthetic
from simulator.faults import Faults
from tests.integration.book_topic import read, rebuild
from tickflow import topics
from tickflow.codec import AvroCodec
from tickflow.config import Settings
from tickflow.events import BookReset, BookResetReason, BookUpdate, ConnectorState, ConnectorStatus, Instrument, Trade
from tickflow.producer import EventProducer

DURATION = 8.0


def test_coinbase_with_faults_every_gap_is_marked_and_the_books_end_equal_to_the_venues(
    settings: Settings, codec: AvroCodec, tmp_path: Path
) -> None:
    faults = Faults(
        drop_depth_every=40,
        duplicate_depth_every=25,
        reorder_depth_every=55,
        malformed_every=70,
        quiet_after=DURATION - 2,
    )

    async def scenario() -> tuple[VenueFeed, CoinbaseSynthetic, dict]:
        async with CoinbaseSynthetic(symbols=4, seed=11, rate=300, duration=DURATION, faults=faults) as sim:
            products = list(sim.products)
            with EventProducer(settings.kafka, codec) as producer:
                feed = VENUES["coinbase"].make_feed(
                    products, producer, ws_url=sim.ws_url, rest_url=sim.rest_url, capture_dir=tmp_path
                )
                stop = asyncio.Event()
                task = asyncio.create_task(feed.run(stop))
                await asyncio.sleep(DURATION + 4)  # the market, then quiet while the last resyncs finish
                truth = {p: sim.true_book(p) for p in products}
                stop.set()
                await asyncio.wait_for(task, 10)
        return feed, sim, truth

    started_us = time.time_ns() // 1000
    feed, sim, truth = asyncio.run(scenario())
    drops, reorders = sim.stats.of_kind("drop"), sim.stats.of_kind("reorder")
    assert len(drops) >= 3 and len(reorders) >= 2 and sim.stats.duplicated_depth >= 3 and sim.stats.malformed_sent >= 3
    assert feed.counters.malformed_frames == sim.stats.malformed_sent  # counted and skipped, never fatal

    book = read(settings, codec, "coinbase", topics.BOOK, started_us)
    gaps = [r for r in book if isinstance(r, BookReset) and r.reason is BookResetReason.SEQUENCE_GAP]
    # Every lost message is inside a gap marker's range of missed sequence numbers (a held-back
    # message too: the one after it arrives first); duplicates make no marker; no marker without
    # a fault behind it.
    ranges = {(r.expected_update_id, r.received_update_id) for r in gaps}
    missed = {d.sequence for d in drops} | {r.sequence for r in reorders}
    for sequence in missed:
        assert any(lo <= sequence < hi for lo, hi in ranges), f"sequence_num {sequence} lost without a marker"
    assert {lo for lo, _ in ranges} <= missed
    for product, expected in truth.items():
        records = [r for r in book if r.venue_symbol == product]
        rebuilt = rebuild(records)
        assert rebuilt == {
            side: {Decimal(p): Decimal(q) for p, q in levels.items()} for side, levels in expected.items()
        }, product
        snapshots = [r for r in records if isinstance(r, BookUpdate) and r.kind.value == "SNAPSHOT"]
        assert len(snapshots) >= 2, f"{product}: resynced after gaps"

    trades = [t for t in read(settings, codec, "coinbase", topics.TRADES, started_us) if isinstance(t, Trade)]
    assert trades
    for product in truth:
        ids = [int(t.trade_id) for t in trades if t.venue_symbol == product]
        assert ids == sorted(set(ids)), f"{product}: every trade once, in order"

    instruments = read(settings, codec, "coinbase", topics.INSTRUMENTS, 0)
    assert {i.venue_symbol for i in instruments if isinstance(i, Instrument)} >= set(truth)
    states = [
        e.state for e in read(settings, codec, "coinbase", topics.STATUS, started_us) if isinstance(e, ConnectorStatus)
    ]
    assert states[:2] == [ConnectorState.CONNECTING, ConnectorState.CONNECTED]
    assert ConnectorState.SUBSCRIBED in states and states[-1] is ConnectorState.STOPPED

    # The capture files the feed wrote, checked offline by the same code: the same gaps.
    (folder,) = tmp_path.iterdir()
    summary = check_capture("coinbase", folder)
    assert summary["gaps"] == len(gaps) and summary["parse_errors"] == sim.stats.malformed_sent
    assert summary["trades"] == len(trades)
