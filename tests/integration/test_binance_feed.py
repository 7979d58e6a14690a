"""A Binance feed against the simulator replaying real traffic, into the real Kafka."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from pathlib import Path

import pytest

from producers.venues.binance.feed import BINANCE_SPOT, BINANCE_USDM, BinanceFeed
from simulator.binance import BinanceReplay
from tests.unit.test_binance_recordings import RECORDINGS, consumer_side_check
from tickflow import topics
from tickflow.codec import AvroCodec
from tickflow.config import Settings
from tickflow.consumer import EventConsumer, StartAt
from tickflow.events import BookReset, BookUpdate, ConnectorState, ConnectorStatus, Trade
from tickflow.producer import EventProducer

pytestmark = pytest.mark.skipif(not RECORDINGS.is_dir(), reason=f"no recordings at {RECORDINGS}")

SYMBOLS = {
    "binance-spot": (BINANCE_SPOT, ["NKNUSDT", "BLZETH", "LRCBTC", "RUNEEUR"]),
    "binance-usdm": (BINANCE_USDM, ["SUSHIUSDT", "AKROUSDT", "KEEPUSDT", "CTKUSDT"]),
}
SPEED = 6.0


async def run_feed(
    venue_id: str, settings: Settings, codec: AvroCodec, capture_dir: Path | None = None
) -> tuple[BinanceFeed, BinanceReplay]:
    venue, symbols = SYMBOLS[venue_id]
    async with BinanceReplay(RECORDINGS / venue_id, speed=SPEED) as sim:
        with EventProducer(settings.kafka, codec) as producer:
            feed = BinanceFeed(
                venue,
                symbols,
                producer,
                ws_url=sim.ws_url,
                rest_url=sim.rest_url,
                capture_raw=True,
                capture_dir=capture_dir,
            )
            stop = asyncio.Event()
            task = asyncio.create_task(feed.run(stop))
            await asyncio.sleep(31 / SPEED + 1.5)  # the 30 s recording, replayed faster
            stop.set()
            await asyncio.wait_for(task, 10)
    return feed, sim


@pytest.mark.parametrize("venue_id", list(SYMBOLS))
def test_feed_replays_real_traffic_into_kafka_with_books_that_bridge(
    venue_id: str, settings: Settings, codec: AvroCodec, tmp_path: Path
) -> None:
    started_us = time.time_ns() // 1000
    feed, sim = asyncio.run(run_feed(venue_id, settings, codec, capture_dir=tmp_path))
    assert feed.counters.malformed_frames == 0 and feed.counters.snapshot_failures == 0
    assert sim.stats.snapshots_served == 4 and sim.stats.connections == 1

    def mine(topic: str) -> list:
        with EventConsumer(settings.kafka, codec, [topic], StartAt.beginning()) as consumer:
            return [
                m.event
                for m in consumer.read_to_end()
                if getattr(m.event, "venue", None) == venue_id
                and getattr(m.event, "receive_ts", getattr(m.event, "ts", 0)) >= started_us
            ]

    lines = [line for line in (RECORDINGS / venue_id / "ws.log").read_text().splitlines()[1:] if line.strip()]
    recorded = [json.loads(line.split(": ", 1)[1]) for line in lines]
    agg = [f["data"] for f in recorded if f["stream"].endswith("@aggTrade")]
    trades = [e for e in mine(topics.TRADES) if isinstance(e, Trade)]
    for symbol in {a["s"] for a in agg}:  # every trade once, in order per instrument (= partition)
        assert [t.trade_id for t in trades if t.venue_symbol == symbol] == [
            str(a["a"]) for a in agg if a["s"] == symbol
        ]
    assert len(trades) == len(agg)

    book = mine(topics.BOOK)
    assert not [r for r in book if isinstance(r, BookReset)], "no gap expected in this recording"
    for symbol in {r.venue_symbol for r in book}:
        records = [r for r in book if r.venue_symbol == symbol]
        assert isinstance(records[0], BookUpdate) and records[0].kind.value == "SNAPSHOT"
        assert consumer_side_check(records, spot=venue_id == "binance-spot") == [], symbol
    assert len({r.venue_symbol for r in book}) == 4

    # Raw capture: every frame, unchanged, in order (one connection: one key, one partition).
    # The replies to our subscribe requests come first: streams are subscribed by request.
    raw = [e.payload for e in mine(topics.raw_topic(venue_id))]
    replies = [json.loads(p) for p in raw if '"result"' in p]
    assert replies == [{"result": None, "id": 1}]
    recorded_frames = [line.split(": ", 1)[1] for line in lines]
    frames = [p for p in raw if '"result"' not in p]
    # Frames the replay sent before our SUBSCRIBE reached it are lost to us, as at the venue.
    assert len(frames) >= len(recorded_frames) - 3 and frames == recorded_frames[-len(frames) :]

    # Capture files: the same traffic in the recordings' layout, which the offline check reads
    # with the live code: it finds what went to Kafka, and every book bridged.
    from producers.capture_check import check_capture

    (folder,) = tmp_path.iterdir()
    summary = check_capture(venue_id, folder)
    assert summary["messages"] == len(raw) and summary["parse_errors"] == 0 and summary["malformed_lines"] == 0
    assert summary["trades"] == len(trades) and summary["snapshots"] == 4 and summary["books_bridged"] == 4
    assert summary["book_updates"] == sum(1 for r in book if isinstance(r, BookUpdate) and r.kind.value == "DELTA")
    assert summary["gaps"] == 0 and summary["resyncs"] == 0

    states = [e.state for e in mine(topics.STATUS) if isinstance(e, ConnectorStatus)]
    assert states[:2] == [ConnectorState.CONNECTING, ConnectorState.CONNECTED]
    assert states[-1] is ConnectorState.STOPPED


def test_tickflow_produce_stops_cleanly_on_sigterm_with_everything_flushed(
    settings: Settings, codec: AvroCodec, tmp_path: Path
) -> None:
    """The producer process: feeds from a config file; SIGTERM -> records flushed, exit 0."""

    async def scenario() -> tuple[int, str, int]:
        async with BinanceReplay(RECORDINGS / "binance-usdm", speed=SPEED) as sim:
            feeds = tmp_path / "feeds.yaml"
            feeds.write_text(
                f"feeds:\n  - venue: binance-usdm\n    symbols: [SUSHIUSDT, CTKUSDT]\n"
                f"    ws_url: {sim.ws_url}\n    rest_url: {sim.rest_url}\n"
            )
            env = {
                **os.environ,
                "TICKFLOW_KAFKA__BOOTSTRAP_SERVERS": settings.kafka.bootstrap_servers,
                "TICKFLOW_REGISTRY__URL": settings.registry.url,
            }
            process = await asyncio.create_subprocess_exec(
                str(Path(sys.executable).parent / "tickflow"), "produce", "--feeds", str(feeds),
                env=env, stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
            await asyncio.sleep(4)
            process.send_signal(signal.SIGTERM)
            _, stderr = await asyncio.wait_for(process.communicate(), 30)
            return process.returncode or 0, stderr.decode(), sim.stats.frames_sent

    started_us = time.time_ns() // 1000
    code, stderr, frames_sent = asyncio.run(scenario())
    assert code == 0, stderr
    assert "Traceback" not in stderr
    with EventConsumer(settings.kafka, codec, [topics.STATUS, topics.TRADES], StartAt.beginning()) as consumer:
        mine = [
            m.event
            for m in consumer.read_to_end()
            if getattr(m.event, "receive_ts", getattr(m.event, "ts", 0)) >= started_us
            and m.event.venue == "binance-usdm"
        ]
    states = [e.state for e in mine if isinstance(e, ConnectorStatus)]
    assert states[0] is ConnectorState.CONNECTING and states[-1] is ConnectorState.STOPPED
    assert frames_sent > 0 and any(isinstance(e, Trade) for e in mine)


def test_a_dropped_connection_is_marked_resynced_and_bridged_again(settings: Settings, codec: AvroCodec) -> None:
    from tickflow.events import BookResetReason

    async def scenario() -> BinanceReplay:
        venue, symbols = SYMBOLS["binance-spot"]
        async with BinanceReplay(RECORDINGS / "binance-spot", speed=SPEED) as sim:
            with EventProducer(settings.kafka, codec) as producer:
                feed = BinanceFeed(venue, symbols, producer, ws_url=sim.ws_url, rest_url=sim.rest_url)
                stop = asyncio.Event()
                task = asyncio.create_task(feed.run(stop))
                await asyncio.sleep(2.0)
                await sim.drop_connections()  # the network fails mid-stream
                await asyncio.sleep(31 / SPEED)
                stop.set()
                await asyncio.wait_for(task, 10)
        return sim

    started_us = time.time_ns() // 1000
    sim = asyncio.run(scenario())
    assert sim.stats.connections == 2 and sim.stats.snapshots_served == 8
    with EventConsumer(settings.kafka, codec, [topics.BOOK, topics.STATUS], StartAt.beginning()) as consumer:
        mine = [
            m.event
            for m in consumer.read_to_end()
            if m.event.venue == "binance-spot"  # type: ignore[attr-defined]
            and getattr(m.event, "receive_ts", getattr(m.event, "ts", 0)) >= started_us
        ]
    states = [e.state for e in mine if isinstance(e, ConnectorStatus)]
    assert states.count(ConnectorState.CONNECTED) == 2
    assert ConnectorState.DISCONNECTED in states and ConnectorState.RECONNECTING in states
    book = [e for e in mine if not isinstance(e, ConnectorStatus)]
    for symbol in ("NKNUSDT", "BLZETH", "LRCBTC", "RUNEEUR"):
        records = [r for r in book if r.venue_symbol == symbol]
        resets = [r for r in records if isinstance(r, BookReset)]
        assert [r.reason for r in resets] == [BookResetReason.RECONNECT], symbol  # marked, never silent
        after = records[records.index(resets[0]) + 1 :]
        assert isinstance(after[0], BookUpdate) and after[0].kind.value == "SNAPSHOT", symbol  # resynced
        assert consumer_side_check(records, spot=True) == [], symbol  # and every delta bridges again
    nkn = [r for r in book if r.venue_symbol == "NKNUSDT"]
    after_reset = nkn[nkn.index(next(r for r in nkn if isinstance(r, BookReset))) :]
    assert [r for r in after_reset if isinstance(r, BookUpdate) and r.kind.value == "DELTA"]  # live again


@pytest.mark.parametrize("respect_limit", [True, False], ids=["own-limiter-keeps-under", "venue-says-stop"])
def test_snapshots_queue_under_the_venues_weight_limit(
    settings: Settings, codec: AvroCodec, respect_limit: bool
) -> None:
    """Four spot snapshots of weight 50 against a limit of 100 per 3 s: they queue, none is lost."""
    from producers.book_sync import SyncState
    from producers.rate_limit import WeightedRateLimiter

    async def scenario() -> tuple[BinanceFeed, BinanceReplay]:
        venue, symbols = SYMBOLS["binance-spot"]
        async with BinanceReplay(RECORDINGS / "binance-spot", speed=SPEED, weight_limit=100, weight_window=3.0) as sim:
            limiter = WeightedRateLimiter(100, 3.0, headroom=1.0) if respect_limit else None  # None: Binance's 6000/min
            with EventProducer(settings.kafka, codec) as producer:
                feed = BinanceFeed(
                    venue,
                    symbols,
                    producer,
                    ws_url=sim.ws_url,
                    rest_url=sim.rest_url,
                    limiter=limiter,
                )
                stop = asyncio.Event()
                task = asyncio.create_task(feed.run(stop))
                await asyncio.sleep(31 / SPEED + 1.5)
                stop.set()
                await asyncio.wait_for(task, 10)
        return feed, sim

    feed, sim = asyncio.run(scenario())
    assert sim.stats.snapshots_served == 4
    assert all(sync.state is SyncState.LIVE for sync in feed.syncs.values())
    if respect_limit:
        assert sim.stats.rate_limited == 0 and feed.limiter.waits >= 1  # we waited; the venue never had to say no
    else:
        assert sim.stats.rate_limited >= 1 and feed.counters.rate_limited >= 1 and feed.limiter.back_offs >= 1


def test_with_faults_injected_every_gap_is_marked_and_the_books_end_equal_to_the_venues(
    settings: Settings, codec: AvroCodec
) -> None:
    """Dropped, duplicated and malformed frames on the wire; a consumer rebuilds every book from
    the topic alone and it equals the simulator's true book at the end."""
    from decimal import Decimal

    from simulator.binance import Faults
    from tickflow.events import BookResetReason

    faults = Faults(drop_depth_every=15, duplicate_depth_every=7, malformed_every=20)

    async def scenario() -> tuple[BinanceFeed, BinanceReplay, dict]:
        venue, symbols = SYMBOLS["binance-spot"]
        async with BinanceReplay(RECORDINGS / "binance-spot", speed=SPEED, faults=faults) as sim:
            with EventProducer(settings.kafka, codec) as producer:
                feed = BinanceFeed(venue, symbols, producer, ws_url=sim.ws_url, rest_url=sim.rest_url)
                stop = asyncio.Event()
                task = asyncio.create_task(feed.run(stop))
                await asyncio.sleep(31 / SPEED + 3)  # the replay, then time for the last resyncs
                truth = {s: sim.true_book(s) for s in symbols}
                stop.set()
                await asyncio.wait_for(task, 10)
        return feed, sim, truth

    started_us = time.time_ns() // 1000
    feed, sim, truth = asyncio.run(scenario())
    assert sim.stats.dropped_depth >= 5 and sim.stats.duplicated_depth >= 5 and sim.stats.malformed_sent >= 5
    assert feed.counters.malformed_frames == sim.stats.malformed_sent  # counted and skipped, never fatal
    # Duplicates are dropped (while live, or while buffering), never mistaken for gaps; a few
    # arrive before their book's snapshot and are dropped as stale instead.
    duplicates = sum(s.counters.duplicates_dropped for s in feed.syncs.values())
    assert sim.stats.duplicated_depth // 2 <= duplicates <= sim.stats.duplicated_depth
    with EventConsumer(settings.kafka, codec, [topics.BOOK], StartAt.beginning()) as consumer:
        book = [
            m.event
            for m in consumer.read_to_end()
            if m.event.venue == "binance-spot" and m.event.receive_ts >= started_us  # type: ignore[attr-defined]
        ]
    markers = [r for r in book if isinstance(r, BookReset) and r.reason is BookResetReason.SEQUENCE_GAP]
    assert markers, "dropped diffs must show up as gap markers"
    assert len(markers) <= sim.stats.dropped_depth  # only lost diffs make gaps, not duplicates
    last_dropped = {symbol: u for symbol, u in sim.stats.dropped}
    compared = 0
    for symbol, expected in truth.items():
        records = [r for r in book if r.venue_symbol == symbol]
        assert consumer_side_check(records, spot=True) == [], symbol
        # Rebuild from the topic alone: the last snapshot, then every delta after it.
        start = max(i for i, r in enumerate(records) if isinstance(r, BookUpdate) and r.kind.value == "SNAPSHOT")
        assert not any(isinstance(r, BookReset) for r in records[start:]), f"{symbol} ended without a live book"
        rebuilt: dict[str, dict[Decimal, Decimal]] = {"bids": {}, "asks": {}}
        for record in records[start:]:
            for side in ("bids", "asks"):
                for level in getattr(record, side):
                    if level.size:
                        rebuilt[side][level.price] = level.size
                    else:
                        rebuilt[side].pop(level.price, None)
        last_diff = max((r.last_update_id for r in records[start:]), default=None)
        if last_dropped.get(symbol, -1) > (last_diff or -1):
            continue  # its very last diff was lost and nothing followed to reveal the gap
        for side in ("bids", "asks"):
            want = {Decimal(p): Decimal(q) for p, q in expected[side].items()}
            assert rebuilt[side] == want, f"{symbol} {side} differs from the venue's book"
            assert len(want) > 10, f"{symbol} {side}: a real book is deep"
        compared += 1
    assert compared >= 3
