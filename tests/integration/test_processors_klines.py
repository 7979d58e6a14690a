"""The kline agent end to end: the Binance simulator (synthetic spot market) -> the producer ->
real Kafka -> a `tickflow worker` process -> derived klines, compared with klines computed here,
independently, from the trades read back from the trade topic; the cross-check against the
venue's own 1m klines; then late, duplicate and bad records by hand, and a restart.

The worker has its own app id, web port, data directory and topics (``processors_worker.py``).
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import msgspec
import pytest
from confluent_kafka import Producer

from simulator.binance import BinanceSynthetic
from tests.integration.processors_worker import ALL_TOPICS, RoutedSink, Worker, free_port, make_worker, read, run_feed
from tickflow import topics
from tickflow.codec import AvroCodec
from tickflow.config import Settings
from tickflow.events import DeadLetter, Kline, Trade
from tickflow.producer import EventProducer

PARTITIONS = 3
S = 1_000_000
INTERVALS = {"1s": S, "1m": 60 * S}
GRACE = 1
#: Market seconds of the run, and how much faster than the wall clock they pass.
MARKET_SECONDS = 240
SPEED = 12


@pytest.fixture
def worker(settings: Settings, new_topic: Callable[..., str], tmp_path: Path) -> Iterator[Worker]:
    w = make_worker(settings, new_topic, tmp_path, "kl", ALL_TOPICS, free_port(),
                    kline_intervals=msgspec.json.encode(list(INTERVALS)).decode(), kline_grace=str(GRACE),
                    kline_idle_close="5")  # fmt: skip
    with w.running():
        w.wait_for("the kline tables recovered", lambda: w.get("/klines")["recovered"])
        yield w


def close_every_window(settings: Settings, codec: AvroCodec, topic: str,
                       trades: list[Trade]) -> tuple[list[Trade], dict[str, int]]:  # fmt: skip
    """One trade per instrument, all at the same time two minutes after the run's last: every
    window of the run closes (on the instrument's own watermark, then the same for all). The
    trades on ``topic`` after that, and each instrument's watermark."""
    last = {t.key: t for t in trades}
    end = max(t.exchange_ts for t in trades) + 120 * S
    with EventProducer(settings.kafka, codec) as producer:
        for t in last.values():
            producer.send(topic, msgspec.structs.replace(t, trade_id="9" * 15, exchange_ts=end))
        producer.flush()
    closed = [t for t in read(settings, codec, topic) if isinstance(t, Trade)]
    return closed, dict.fromkeys(last, end - GRACE * S)


def reference_klines(trades: list[Trade], watermarks: dict[str, int]) -> dict[tuple[str, str, int], tuple]:
    """Klines from the trades alone, as a consumer of the trade topic would compute them: each
    trade id once; open and close by exchange time, then topic order; VWAP and quote volume
    rounded half to even to 18 places (``round`` on a ``Fraction``). Only windows closed by the
    instrument's final watermark."""
    seen: set[tuple[str, str]] = set()
    windows: dict[tuple[str, str, int], list[tuple[int, int, Trade]]] = defaultdict(list)
    for position, trade in enumerate(trades):
        if (trade.key, trade.trade_id) in seen:
            continue
        seen.add((trade.key, trade.trade_id))
        for label, us in INTERVALS.items():
            open_time = trade.exchange_ts - trade.exchange_ts % us
            if open_time + us <= watermarks[trade.key]:
                windows[(trade.key, label, open_time)].append((trade.exchange_ts, position, trade))
    out = {}
    for key, items in windows.items():
        items.sort(key=lambda i: (i[0], i[1]))
        ts = [t for _, _, t in items]
        notional = sum(Fraction(t.price) * Fraction(t.size) for t in ts)
        volume = sum(Fraction(t.size) for t in ts)
        half_even = lambda f: Decimal(round(f * 10**18)).scaleb(-18)  # noqa: E731
        out[key] = (ts[0].price, max(t.price for t in ts), min(t.price for t in ts), ts[-1].price,
                    Decimal(volume.numerator) / Decimal(volume.denominator), half_even(notional),
                    half_even(notional / volume), len(ts))  # fmt: skip
    return out


def as_tuple(k: Kline) -> tuple:
    return (k.open, k.high, k.low, k.close, k.volume, k.quote_volume, k.vwap, k.trade_count)


def assert_each_kline_once(settings: Settings, codec: AvroCodec, names: dict[str, str], symbols: int) -> None:
    """After a run with failures (crashes, a rebalance): the derived topic holds every window of
    the trades on ``names["trades"]`` exactly once, none missing, each equal to the klines
    computed here from those trades (the last windows closed by ``close_every_window``)."""
    trades = [t for t in read(settings, codec, names["trades"]) if isinstance(t, Trade)]
    assert len({t.key for t in trades}) == symbols and len(trades) > 500
    trades, watermarks = close_every_window(settings, codec, names["trades"], trades)
    expected = reference_klines(trades, watermarks)

    def derived() -> list[Kline]:
        return [k for k in read(settings, codec, names["derived"]) if isinstance(k, Kline)]

    deadline = time.monotonic() + 120
    while len({(k.key, k.interval, k.open_time) for k in derived()}) < len(expected) and time.monotonic() < deadline:
        time.sleep(1)
    published = derived()
    windows = [(k.key, k.interval, k.open_time) for k in published]
    duplicates = {w for w in windows if windows.count(w) > 1}
    assert not duplicates, f"{len(duplicates)} windows published more than once, e.g. {sorted(duplicates)[:3]}"
    missing, unexpected = set(expected) - set(windows), set(windows) - set(expected)
    assert not missing and not unexpected, (sorted(missing)[:3], sorted(unexpected)[:3])
    for kline in published:
        assert kline.closed and kline.revision == 0
        assert as_tuple(kline) == expected[(kline.key, kline.interval, kline.open_time)], kline
    assert sum(1 for w in windows if w[1] == "1m") >= 4


def counters(worker: Worker) -> dict[str, dict[str, int]]:
    return {f"{i['venue']}:{i['symbol']}": i["counters"] for i in worker.get("/klines")["instruments"]}


def test_derived_klines_equal_klines_from_the_trades_and_match_the_venues(
    worker: Worker, settings: Settings, codec: AvroCodec
) -> None:
    names: dict[str, str] = worker.topics  # type: ignore[attr-defined]

    async def scenario() -> None:
        sim = BinanceSynthetic(symbols=4, usdm=False, seed=31, rate=60, duration=MARKET_SECONDS, speed=SPEED)
        async with sim:
            with EventProducer(settings.kafka, codec) as producer:
                sink = RoutedSink(producer, {topics.TRADES: names["trades"], topics.KLINES: names["klines"]})
                await run_feed("binance-spot", sim, sink, MARKET_SECONDS / SPEED + 2, channels=("aggTrade", "kline_1m"))

    asyncio.run(scenario())
    trades = [t for t in read(settings, codec, names["trades"]) if isinstance(t, Trade)]
    assert len({t.key for t in trades}) == 4 and len(trades) > 1000
    last = {t.key: t for t in trades}  # each instrument's last trade of the run
    trades, watermarks = close_every_window(settings, codec, names["trades"], trades)
    unique = len({(t.key, t.trade_id) for t in trades})
    worker.wait_for(f"all {unique} trades counted",
                    lambda: sum(c["trades"] for c in counters(worker).values()) == unique)  # fmt: skip
    expected = reference_klines(trades, watermarks)
    worker.wait_for(
        f"all {len(expected)} klines published", lambda: worker.get("/klines")["counters"]["klines"] == len(expected)
    )

    derived = [k for k in read(settings, codec, names["derived"]) if isinstance(k, Kline)]
    published = {(k.key, k.interval, k.open_time): k for k in derived}
    assert len(published) == len(derived), "a window published twice"
    assert all(k.closed and k.revision == 0 for k in derived)
    assert set(published) == set(expected)
    for key, kline in published.items():
        assert as_tuple(kline) == expected[key], key
        assert kline.close_time == kline.open_time + INTERVALS[kline.interval]
    assert sum(1 for k in published if k[1] == "1m") >= 4 * 3

    # The venue's closed 1m klines agree with ours wherever we saw the whole minute.
    venue = [k for k in read(settings, codec, names["klines"]) if isinstance(k, Kline) and k.closed]
    first = {}
    for t in trades:
        first.setdefault(t.key, t.exchange_ts)
    comparable = [k for k in venue if k.open_time > first[k.key]]
    assert len(comparable) >= 4 * 2

    def compared() -> int:
        return sum(c["crosscheck_matches"] + c["crosscheck_mismatches"] for c in counters(worker).values())

    worker.wait_for("the venue's klines compared", lambda: compared() == len(comparable))
    by_instrument = counters(worker)
    assert sum(c["crosscheck_mismatches"] for c in by_instrument.values()) == 0
    assert all(c["crosscheck_matches"] >= 2 for c in by_instrument.values())
    assert all(c["late"] == c["corrections"] == c["duplicates"] == c["expired"] == 0 for c in by_instrument.values())

    # By hand: a late trade (its windows closed, within the horizon) -> corrections; the same
    # trade again -> a duplicate; a trade a day old -> dead-lettered; bad records dead-lettered.
    instrument, template = sorted(last.items())[0]
    minute = max(o for (i, label, o) in expected if i == instrument and label == "1m")
    late = msgspec.structs.replace(template, trade_id="8" * 15, exchange_ts=minute + 7 * S + 3,
                                   price=Decimal("0.0000001"), size=Decimal("5"))  # fmt: skip
    old = msgspec.structs.replace(late, trade_id="7" * 15, exchange_ts=minute - 86_400 * S)
    with EventProducer(settings.kafka, codec) as producer:
        producer.send(names["trades"], late)
        producer.send(names["trades"], late)
        producer.send(names["trades"], old)
        producer.send(names["trades"], msgspec.structs.replace(late, trade_id="6" * 15, price=Decimal(0)))
        producer.send(names["trades"], published[(instrument, "1m", minute)])  # a Kline on the trade topic
        producer.flush()
    raw = Producer(settings.kafka.client_config())
    raw.produce(names["trades"], b"not avro", key=instrument.encode())
    raw.flush(10)
    worker.wait_for("four dead letters", lambda: worker.get("/klines")["counters"]["dead_letters"] == 4)
    c = counters(worker)[instrument]
    assert (c["late"], c["corrections"], c["duplicates"], c["expired"]) == (1, 2, 1, 1)
    corrections = [k for k in read(settings, codec, names["derived"]) if isinstance(k, Kline) and k.revision]
    assert {(k.interval, k.open_time, k.revision) for k in corrections} == {
        ("1s", minute + 7 * S, 1), ("1m", minute, 1)}  # fmt: skip
    fixed = next(k for k in corrections if k.interval == "1m")
    before = expected[(instrument, "1m", minute)]
    assert fixed.low == late.price and fixed.trade_count == before[-1] + 1 and fixed.volume == before[4] + 5
    letters = [d for d in read(settings, codec, worker.dead_letter) if isinstance(d, DeadLetter)]
    assert sorted(d.error_type for d in letters) == ["ImplausibleRecord", "LateTrade", "MalformedPayload",
                                                       "UnexpectedRecord"]  # fmt: skip
    assert all(d.consumer == "processors.klines" and d.source_topic == names["trades"] for d in letters)

    # Restarted (memory store: the tables come back from the changelog), the counters and the
    # trade ids are back: the late trade sent again is a duplicate, nothing is published again.
    before = counters(worker)
    worker.restart()
    worker.wait_for("the kline tables recovered", lambda: worker.get("/klines")["recovered"])
    assert counters(worker) == before
    with EventProducer(settings.kafka, codec) as producer:
        producer.send(names["trades"], late)
        producer.flush()
    worker.wait_for("the duplicate", lambda: counters(worker)[instrument]["duplicates"] == 2)
    again = [k for k in read(settings, codec, names["derived"]) if isinstance(k, Kline)]
    assert len(again) == len(derived) + 2
