"""The examples in ``examples/`` against the real broker and registry: each computes what an
independent calculation over the same events gives."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from types import ModuleType

import tickflow
from tests.integration.test_replay import BASE_US, KEEP, fill, market
from tickflow.codec import AvroCodec
from tickflow.config import Settings
from tickflow.events import BestBidOffer, BookTop, BookUpdate, MarketType, Trade
from tickflow.events.enums import BookHealth
from tickflow.producer import EventProducer

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def example(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"examples_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[f"examples_{name}"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def consume(settings: Settings, topic: str, **kwargs: object) -> tickflow.reading.Reading:
    return tickflow.consume(topic, bootstrap_servers=settings.kafka.bootstrap_servers,
                            registry_url=settings.registry.url, **kwargs)  # type: ignore[arg-type]  # fmt: skip


def test_vwap_per_instrument_is_exact(settings: Settings, codec: AvroCodec, new_topic: Callable[..., str]) -> None:
    vwap = example("vwap")
    records, _ = market()
    trades = [r for r in records if isinstance(r, Trade)]
    topic = new_topic(partitions=3, **KEEP)
    fill(settings, codec, topic, trades)
    with consume(settings, topic) as reading:
        got = vwap.vwap_by_instrument(reading.to_arrow("Trade"))
    for key in {t.key for t in trades}:
        mine = [t for t in trades if t.key == key]
        volume = sum((t.size for t in mine), Decimal(0))
        notional = sum((t.price * t.size for t in mine), Decimal(0))
        assert (got[key].trades, got[key].volume, got[key].notional) == (len(mine), volume, notional)
        assert got[key].vwap == (notional / volume).quantize(Decimal("1e-18"))
    # As a user runs it.
    env = {**os.environ, "TICKFLOW_KAFKA__BOOTSTRAP_SERVERS": settings.kafka.bootstrap_servers,
           "TICKFLOW_REGISTRY__URL": settings.registry.url}  # fmt: skip
    done = subprocess.run([sys.executable, str(EXAMPLES / "vwap.py"), "--topic", topic, "--symbol", "ETH-USDT"],
                          env=env, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "binance-spot:ETH-USDT" in done.stdout and f"VWAP {got['binance-spot:ETH-USDT'].vwap}" in done.stdout


def test_spread_monitor_follows_the_best_bid_offer(
    settings: Settings, codec: AvroCodec, new_topic: Callable[..., str]
) -> None:
    monitor = example("spread_monitor")
    topic = new_topic(partitions=2)
    head = {"venue": "okx", "market": MarketType.SPOT, "exchange_ts": BASE_US, "receive_ts": BASE_US}
    with EventProducer(settings.kafka, codec) as producer:
        for i in range(50):
            bid, ask = Decimal(100) - Decimal(i) / 100, Decimal(100) + Decimal(i) / 100
            producer.send(topic, BestBidOffer(**head, symbol="BTC-USDT", venue_symbol="BTC-USDT", bid_price=bid,
                                              bid_size=Decimal(1), ask_price=ask, ask_size=Decimal(1)))  # fmt: skip
        producer.send(topic, BookTop(**head, symbol="ETH-USDT", venue_symbol="ETHUSDT", processed_ts=BASE_US,
                                     health=BookHealth.LIVE, bid_price=None, ask_price=Decimal(5)))  # fmt: skip
    with consume(settings, topic) as reading:
        latest = monitor.spreads(reading, report=0.0, limit=51)
    assert latest["okx:BTC-USDT"] == Decimal("0.98") / 100 * 10_000  # (100.49 - 99.51) / 100 in bps
    assert latest["okx:ETH-USDT"] is None  # one-sided
    assert monitor.spread_bps(Decimal(10), Decimal(9)) < 0  # crossed: negative, flagged


def test_backtest_rebuilds_the_books_of_a_time_range_and_stops_at_a_gap(
    settings: Settings, codec: AvroCodec, new_topic: Callable[..., str]
) -> None:
    backtest = example("backtest_book")
    records, truth = market(seed=9)
    book_records = [r for r in records if isinstance(r, BookUpdate)]
    topic = new_topic(partitions=3, **KEEP)
    fill(settings, codec, topic, book_records, spread_ms=60_000)
    start = datetime.fromtimestamp(BASE_US / 1e6, UTC)
    end = datetime.fromtimestamp(BASE_US / 1e6 + 3600, UTC)
    with consume(settings, topic, start=start, end=end) as reading:
        books = backtest.rebuild(reading)
    for symbol, expected in truth.items():
        book = books[f"binance-spot:{symbol}"]
        assert book.live and book.gaps == 0
        assert (book.bids, book.asks) == (expected["bids"], expected["asks"])
    # One delta lost: that book stops at the gap instead of building on it.
    lost = next(i for i, r in enumerate(book_records) if r.kind.value == "DELTA" and r.symbol == "ETH-USDT")
    gappy = new_topic(partitions=3, **KEEP)
    fill(settings, codec, gappy, book_records[:lost] + book_records[lost + 1 :], spread_ms=60_000)
    with consume(settings, gappy, start=start, end=end) as reading:
        books = backtest.rebuild(reading)
    assert books["binance-spot:ETH-USDT"].gaps == 1 and not books["binance-spot:ETH-USDT"].live
    assert books["binance-spot:BTC-USDT"].live
