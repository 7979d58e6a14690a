"""``tickflow replay --reparse``: a raw-frame topic through the current normalizers gives the
same books and trades as the producer published live (Coinbase: snapshots in the stream), and
says what it cannot give back (Binance books: their REST snapshots are not in the topic)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from typer.testing import CliRunner

from simulator.binance import BinanceSynthetic
from simulator.coinbase import CoinbaseSynthetic
from simulator.faults import Faults
from tests.integration.processors_worker import RoutedSink
from tickflow import topics
from tickflow.admin import admin_client
from tickflow.cli import app
from tickflow.codec import AvroCodec
from tickflow.config import Settings
from tickflow.consumer import EndAt, EventConsumer
from tickflow.events import BookReset, BookResetReason, BookUpdate, BookUpdateKind, Trade
from tickflow.producer import EventProducer


def record(settings: Settings, codec: AvroCodec, venue: str, sim: Any, route: dict[str, str], seconds: float) -> None:
    """``venue``'s feed against ``sim`` with raw frames captured, into the routed topics."""
    from producers.venues import VENUES

    async def run() -> None:
        async with sim:
            with EventProducer(settings.kafka, codec) as producer:
                feed = VENUES[venue].make_feed(sim.symbols, RoutedSink(producer, route), ws_url=sim.ws_url,
                                               rest_url=sim.rest_url, capture_raw=True)  # fmt: skip
                stop = asyncio.Event()
                task = asyncio.create_task(feed.run(stop))
                await asyncio.sleep(seconds)
                stop.set()
                await asyncio.wait_for(task, 10)

    asyncio.run(run())


def events(settings: Settings, codec: AvroCodec, topic: str, kind: type) -> list[Any]:
    with EventConsumer(settings.kafka, codec, [topic], end=EndAt.now()) as consumer:
        return sorted((r.event for r in consumer if isinstance(r.event, kind)),
                      key=lambda e: (e.symbol, e.receive_ts, getattr(e, "last_update_id", None) or 0,
                                     getattr(e, "trade_id", "")))  # fmt: skip


@pytest.fixture
def reparse(settings: Settings) -> Iterator[Callable[[str, str], dict]]:
    """Runs ``tickflow replay RAW --reparse PREFIX``; deletes the topics it made afterwards."""
    made: list[str] = []

    def run(raw: str, prefix: str) -> dict:
        env = {"TICKFLOW_KAFKA__BOOTSTRAP_SERVERS": settings.kafka.bootstrap_servers,
               "TICKFLOW_REGISTRY__URL": settings.registry.url}  # fmt: skip
        result = CliRunner().invoke(app, ["replay", raw, "--reparse", prefix], env=env, catch_exceptions=False)
        assert result.exit_code == 0, result.output
        summary = json.loads(result.stdout.strip().splitlines()[-1])
        made.extend(summary["published"])
        return summary

    yield run
    if made:
        admin = admin_client(settings.kafka)  # kept until its futures resolve
        for future in admin.delete_topics(made, operation_timeout=30).values():
            future.result()


@pytest.fixture
def live_then_again(
    settings: Settings, codec: AvroCodec, new_topic: Callable[..., str], reparse: Callable[[str, str], dict]
) -> Callable[[str, Any], tuple[dict[str, str], str, dict]]:
    """Runs ``venue``'s feed against ``sim`` for 5 s with raw frames captured into test topics,
    then re-parses its raw topic: (the live topics by pipeline topic, the prefix, the summary)."""

    def run(venue: str, sim: Any) -> tuple[dict[str, str], str, dict]:
        route = {topics.BOOK: new_topic("live.book"), topics.TRADES: new_topic("live.trades"),
                 topics.raw_topic(venue): new_topic("live.raw", partitions=1)}  # fmt: skip
        record(settings, codec, venue, sim, route, 5.0)
        raw = route[topics.raw_topic(venue)]
        return route, f"{raw}.again.", reparse(raw, f"{raw}.again.")

    return run


def test_a_coinbase_raw_topic_reparses_into_the_same_books_and_trades(
    settings: Settings, codec: AvroCodec, live_then_again: Callable[[str, Any], tuple[dict[str, str], str, dict]]
) -> None:
    route, prefix, summary = live_then_again("coinbase", CoinbaseSynthetic(symbols=3, seed=4, rate=300))
    assert summary["frames"] > 500 and summary["malformed_frames"] == 0 and not summary["waiting_for_snapshot"]
    live_book = events(settings, codec, route[topics.BOOK], BookUpdate)
    again_book = events(settings, codec, prefix + topics.BOOK, BookUpdate)
    assert len(live_book) > 300 and again_book == live_book
    live_trades = events(settings, codec, route[topics.TRADES], Trade)
    assert len(live_trades) > 50 and events(settings, codec, prefix + topics.TRADES, Trade) == live_trades


def test_a_reconnect_in_the_raw_topic_restarts_the_books_as_it_did_live(
    settings: Settings, codec: AvroCodec, live_then_again: Callable[[str, Any], tuple[dict[str, str], str, dict]]
) -> None:
    # Each connection numbers its messages from the start again: read as one stream, the new
    # connection's frames would pass for duplicates, and its later deltas would go onto the old
    # connection's books.
    sim = CoinbaseSynthetic(symbols=3, seed=4, rate=300, faults=Faults(drop_connections_every=1.8))
    route, prefix, summary = live_then_again("coinbase", sim)
    # (A cut just before the end may leave a book waiting for its snapshot: live too.)
    assert summary["malformed_frames"] == 0
    live_book = events(settings, codec, route[topics.BOOK], BookUpdate)
    assert sum(1 for u in live_book if u.kind is BookUpdateKind.SNAPSHOT) >= 6  # 3 books, then again after a cut
    assert events(settings, codec, prefix + topics.BOOK, BookUpdate) == live_book
    resets = events(settings, codec, prefix + topics.BOOK, BookReset)
    assert {r.reason for r in resets} == {BookResetReason.RECONNECT} and len(resets) >= 3


def test_a_binance_raw_topic_reparses_trades_and_says_books_need_snapshots(
    settings: Settings, codec: AvroCodec, live_then_again: Callable[[str, Any], tuple[dict[str, str], str, dict]]
) -> None:
    route, prefix, summary = live_then_again("binance-spot", BinanceSynthetic(symbols=3, seed=4, rate=300))
    assert summary["waiting_for_snapshot"]["binance-spot"] > 100  # counted and said, not silently lost
    live_trades = events(settings, codec, route[topics.TRADES], Trade)
    again = events(settings, codec, prefix + topics.TRADES, Trade)
    assert len(live_trades) > 50
    strip = lambda ts: [(t.venue_symbol, t.trade_id, t.price, t.size, t.side, t.exchange_ts, t.receive_ts) for t in ts]  # noqa: E731
    assert strip(again) == strip(live_trades)
