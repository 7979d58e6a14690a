"""``tickflow replay``: a range to Parquet, and re-published into another topic, from which the
same books and klines are rebuilt; paced replays keep the original's pace."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pyarrow.parquet as pq
from typer.testing import CliRunner

from tests.integration.book_topic import rebuild
from tests.integration.test_processors_klines import reference_klines
from tickflow.cli import app
from tickflow.codec import AvroCodec
from tickflow.config import Settings
from tickflow.consumer import EndAt, EventConsumer, StartAt
from tickflow.events import BookUpdate, BookUpdateKind, MarketType, PriceLevel, Trade
from tickflow.events.enums import Side
from tickflow.producer import EventProducer

D = Decimal
#: The records are stamped long ago: kept whatever their age (the broker's retention check, every
#: 5 minutes, would otherwise delete them mid-test, as it once did in test_consumer).
KEEP = {"retention.ms": "-1"}
BASE_US = 1_763_000_000_000_000
SYMBOLS = ["BTC-USDT", "ETH-USDT", "SOL-USDT"]


def market(seed: int = 3) -> tuple[list[BookUpdate | Trade], dict[str, dict[str, dict[Decimal, Decimal]]]]:
    """Book records (a snapshot each, then deltas) and trades of three instruments, in order,
    and each instrument's final book (the truth the records must rebuild)."""
    rng = random.Random(seed)
    records: list[BookUpdate | Trade] = []
    truth: dict[str, dict[str, dict[Decimal, Decimal]]] = {}
    last_id: dict[str, int] = {}
    head = lambda s, i: {"venue": "binance-spot", "market": MarketType.SPOT, "symbol": s,  # noqa: E731
                         "venue_symbol": s.replace("-", ""), "exchange_ts": BASE_US + i * 1000,
                         "receive_ts": BASE_US + i * 1000 + 300}  # fmt: skip
    for n, symbol in enumerate(SYMBOLS):
        centre = D(100 * (n + 1))
        book = {"bids": {centre - D(i) / 10: D(rng.randint(1, 9)) for i in range(1, 21)},
                "asks": {centre + D(i) / 10: D(rng.randint(1, 9)) for i in range(1, 21)}}  # fmt: skip
        truth[symbol] = book
        last_id[symbol] = 1000
        records.append(BookUpdate(**head(symbol, 0), kind=BookUpdateKind.SNAPSHOT, last_update_id=1000,
                                  bids=[PriceLevel(p, s) for p, s in book["bids"].items()],
                                  asks=[PriceLevel(p, s) for p, s in book["asks"].items()]))  # fmt: skip
    for i in range(1, 3001):
        symbol = SYMBOLS[rng.randrange(3)]
        centre = D(100 * (SYMBOLS.index(symbol) + 1))
        if rng.random() < 0.4:
            price = centre + D(rng.choice([-1, 1]) * rng.randint(1, 3)) / 10
            records.append(Trade(**head(symbol, i), trade_id=str(i), price=price,
                                 size=D(rng.randint(1, 999)) / 1000, side=Side.BUY))  # fmt: skip
            continue
        changes: dict[str, list[PriceLevel]] = {"bids": [], "asks": []}
        for side, sign in (("bids", -1), ("asks", 1)):
            for _ in range(rng.randint(0, 3)):
                price = centre + sign * D(rng.randint(1, 25)) / 10
                size = D(0) if rng.random() < 0.3 else D(rng.randint(1, 500)) / 100
                changes[side].append(PriceLevel(price, size))
                if size:
                    truth[symbol][side][price] = size
                else:
                    truth[symbol][side].pop(price, None)
        first = last_id[symbol] + 1
        last_id[symbol] += 1
        records.append(BookUpdate(**head(symbol, i), kind=BookUpdateKind.DELTA, first_update_id=first,
                                  last_update_id=last_id[symbol], **changes))  # fmt: skip
    return records, truth


def fill(settings: Settings, codec: AvroCodec, topic: str, records: list, spread_ms: int = 0) -> None:
    with EventProducer(settings.kafka, codec) as producer:
        for i, record in enumerate(records):
            producer.send(topic, record, timestamp_ms=BASE_US // 1000 + (i * spread_ms) // max(1, len(records)))


def read(settings: Settings, codec: AvroCodec, topic: str) -> list:
    with EventConsumer(settings.kafka, codec, [topic], StartAt.beginning(), end=EndAt.now()) as consumer:
        return list(consumer)


def invoke(settings: Settings, *args: str) -> dict:
    env = {"TICKFLOW_KAFKA__BOOTSTRAP_SERVERS": settings.kafka.bootstrap_servers,
           "TICKFLOW_REGISTRY__URL": settings.registry.url}  # fmt: skip
    result = CliRunner().invoke(app, list(args), env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_a_replayed_topic_rebuilds_the_same_books_and_klines(
    settings: Settings, codec: AvroCodec, new_topic: Callable[..., str]
) -> None:
    records, truth = market()
    source, copy = new_topic(partitions=3, **KEEP), new_topic(partitions=3, **KEEP)
    fill(settings, codec, source, records, spread_ms=60_000)
    summary = invoke(settings, "replay", source, "--to-topic", copy)
    assert summary["read"] == summary["written"] == len(records)

    original, replayed = read(settings, codec, source), read(settings, codec, copy)
    assert len(replayed) == len(original)
    # Same records, keys and Kafka timestamps, partition by partition, in order.
    as_rows = lambda rs: sorted((r.key, r.timestamp_ms, r.partition, r.offset, r.event.receive_ts) for r in rs)  # noqa: E731
    assert as_rows(replayed) == as_rows(original)
    for symbol in SYMBOLS:
        of = lambda rs: [r.event for r in rs if r.event.symbol == symbol and isinstance(r.event, BookUpdate)]  # noqa: E731,B023
        assert rebuild(of(replayed)) == rebuild(of(original)) == truth[symbol]
    trades = lambda rs: [r.event for r in rs if isinstance(r.event, Trade)]  # noqa: E731
    watermarks = {f"binance-spot:{s}": BASE_US + 3001 * 1000 for s in SYMBOLS}
    klines = reference_klines(trades(replayed), watermarks)
    assert klines == reference_klines(trades(original), watermarks) and len(klines) >= 3 * 3  # 1s and 1m windows


def test_a_paced_replay_keeps_the_original_pace(
    settings: Settings, codec: AvroCodec, new_topic: Callable[..., str]
) -> None:
    records, _ = market()
    source, copy = new_topic(partitions=1, **KEEP), new_topic(partitions=1, **KEEP)
    fill(settings, codec, source, records[:200], spread_ms=3_000)  # 200 records over 3 s of Kafka time
    started = time.monotonic()
    summary = invoke(settings, "replay", source, "--to-topic", copy, "--speed", "10")
    took = time.monotonic() - started
    assert summary["written"] == 200
    assert took >= 0.29  # 3 s of records at ten times: never faster than the pace
    with EventConsumer(settings.kafka, codec, [copy], end=EndAt.now()) as consumer:
        stamps = [r.timestamp_ms for r in consumer]
    assert stamps == [BASE_US // 1000 + i * 3_000 // 200 for i in range(200)]


def test_parquet_export_of_a_range_and_a_symbol(
    settings: Settings, codec: AvroCodec, new_topic: Callable[..., str], tmp_path: Path
) -> None:
    records, _ = market()
    source = new_topic(partitions=3, **KEEP)
    fill(settings, codec, source, records, spread_ms=60_000)
    start = datetime.fromtimestamp((BASE_US // 1000 + 10_000) / 1000, UTC)
    end = datetime.fromtimestamp((BASE_US // 1000 + 40_000) / 1000, UTC)
    summary = invoke(settings, "replay", source, "--from", start.isoformat(), "--to", end.isoformat().replace(
        "+00:00", "Z"), "--symbol", "ETH-USDT", "--parquet", str(tmp_path / "out"))  # fmt: skip
    a, b = start.timestamp() * 1000, end.timestamp() * 1000
    expected = [r for r in read(settings, codec, source) if r.event.symbol == "ETH-USDT" and a <= r.timestamp_ms < b]
    book = pq.read_table(tmp_path / "out" / "BookUpdate.parquet")
    trade = pq.read_table(tmp_path / "out" / "Trade.parquet")
    assert summary["written"] == book.num_rows + trade.num_rows == len(expected) > 100
    assert set(book["symbol"].to_pylist()) == {"ETH-USDT"}
    got = sorted(zip(trade["kafka_partition"].to_pylist(), trade["kafka_offset"].to_pylist(),
                     trade["price"].to_pylist(), trade["size"].to_pylist(), strict=True))  # fmt: skip
    want = sorted((r.partition, r.offset, r.event.price, r.event.size) for r in expected if isinstance(r.event, Trade))
    assert got == want


def test_bad_replay_requests_are_clear(settings: Settings, new_topic: Callable[..., str], tmp_path: Path) -> None:
    env = {"TICKFLOW_KAFKA__BOOTSTRAP_SERVERS": settings.kafka.bootstrap_servers,
           "TICKFLOW_REGISTRY__URL": settings.registry.url}  # fmt: skip
    runner = CliRunner()
    topic = new_topic(partitions=1, **KEEP)
    out = runner.invoke(app, ["replay", topic, "--to", "never", "--parquet", str(tmp_path)], env=env)
    assert out.exit_code != 0 and "needs an end" in out.output
    out = runner.invoke(app, ["replay", topic, "--from", "yesterday", "--parquet", str(tmp_path)], env=env)
    assert out.exit_code != 0 and "ISO time" in out.output
    out = runner.invoke(app, ["replay", topic], env=env)
    flat = " ".join(out.output.replace("│", " ").split())  # the message as one line, out of its box
    assert out.exit_code != 0 and "give one of --parquet DIR, --to-topic TOPIC or --reparse PREFIX" in flat


def test_an_unknown_topic_says_which_exist(settings: Settings) -> None:
    """As a user sees it: the command's message, no traceback."""
    env = {**os.environ, "TICKFLOW_KAFKA__BOOTSTRAP_SERVERS": settings.kafka.bootstrap_servers,
           "TICKFLOW_REGISTRY__URL": settings.registry.url}  # fmt: skip
    done = subprocess.run([sys.executable, "-m", "tickflow.cli", "replay", "tickflow.nope", "--parquet", "x"],
                          env=env, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 1
    assert "topic 'tickflow.nope' does not exist. Topics on this cluster:" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_missing_target_topic_is_created_like_the_source(
    settings: Settings, codec: AvroCodec, new_topic: Callable[..., str]
) -> None:
    from tickflow.admin import admin_client

    records, _ = market()
    source = new_topic(partitions=3)
    with EventProducer(settings.kafka, codec) as producer:  # stamped now: no retention question
        for record in records[:50]:
            producer.send(source, record)
    target = f"{source}.copy"
    admin = admin_client(settings.kafka)
    try:
        assert invoke(settings, "replay", source, "--to-topic", target)["written"] == 50
        assert len(admin.list_topics(timeout=30).topics[target].partitions) == 3
        copied = read(settings, codec, target)
        assert sorted((r.partition, r.offset, r.key) for r in copied) == sorted(
            (r.partition, r.offset, r.key) for r in read(settings, codec, source)
        )
    finally:
        for future in admin.delete_topics([target], operation_timeout=30).values():
            future.result()
