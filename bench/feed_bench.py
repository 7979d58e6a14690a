"""Feed hot-path benchmark: Binance frames -> parse -> normalize -> book sync -> encode -> Kafka.

Measures the producer's per-frame work (everything after the socket) on one thread, driving
``BinanceStream.on_frame`` with an ``EventProducer`` as its sink exactly as the live connection
does (``FeedConnection._on_frame`` in ``producers/feed.py``), into the real local broker.

Per round and variant it reports normalized events per second (wall clock, first frame to flush
complete) and CPU-µs per event of this process, split into the calling thread (parse, book,
encode, the produce call) and every other thread (librdkafka: batching, compression, network).
Issue 4's target is at least 50k normalized events per CPU-second (<= 20 CPU-µs per event).

Variants, interleaved within each round so that load from other processes hits all alike:

* ``kafka``: the real thing, into the broker (idempotent, acks=all, the producer's defaults).
* ``no-kafka``: the same stream and ``EventProducer``, with librdkafka's client replaced by a
  no-op: everything tickflow does per frame, without librdkafka.
* ``parse``: ``BinanceParser.parse`` alone (the generic decode + normalize, ``Decimal``s and
  structs): the reference the compiled depth path is compared with.

The frames are generated up front as Binance sends them: depth diffs with continuous update ids
(so every book stays live and every diff goes through the full book logic), aggregate trades and
book tickers, over ``--symbols`` symbols.

Reproduce (needs the local stack: ``make up``; TICKFLOW_* variables are honoured)::

    .venv/bin/python bench/feed_bench.py                 # median of 5 rounds
    taskset -c 0 .venv/bin/python bench/feed_bench.py    # everything on one core (or --pin 0)
    .venv/bin/python bench/feed_bench.py --profile       # cProfile of one no-kafka round

The last line of output is one JSON object with the medians, for scripts.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import json
import os
import pstats
import random
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import msgspec

from producers.venues.binance.parsing import BinanceParser
from producers.venues.binance.stream import BinanceStream
from producers.venues.binance.venue import BINANCE_SPOT
from tickflow.codec import AvroCodec
from tickflow.config import load_settings
from tickflow.errors import TickflowError
from tickflow.producer import EventProducer
from tickflow.registry import SchemaRegistry

T0_US = 1_700_000_000_000_000


def make_frames(count: int, symbols: list[str], seed: int = 1) -> tuple[list[bytes], dict[str, int]]:
    """Binance combined-stream frames: 50% depth diffs, 35% aggTrades, 15% bookTickers."""
    rng = random.Random(seed)
    next_id = dict.fromkeys(symbols, 1_000_000)
    snapshot_ids = {s: i - 1 for s, i in next_id.items()}
    mids = {s: rng.uniform(0.01, 60_000) for s in symbols}
    book_mids = dict(mids)  # book levels stay around a fixed mid, so the book never crosses
    frames, trade_id = [], 5_000_000
    for n in range(count):
        s = rng.choice(symbols)
        mid = mids[s] = mids[s] * (1 + rng.gauss(0, 0.0001))
        tick = mid / 10_000
        roll = rng.random()
        if roll < 0.5:
            first = next_id[s]
            last = first + rng.randint(0, 4)
            next_id[s] = last + 1
            centre, step = book_mids[s], book_mids[s] / 10_000
            bids = [[f"{centre - step * (i + 1):.8f}", f"{rng.uniform(0, 5):.8f}"] for i in range(rng.randint(1, 10))]
            asks = [[f"{centre + step * (i + 1):.8f}", f"{rng.uniform(0, 5):.8f}"] for i in range(rng.randint(1, 10))]
            data = {"e": "depthUpdate", "E": 1_700_000_000_000 + n, "s": s, "U": first, "u": last, "b": bids, "a": asks}
            stream = f"{s.lower()}@depth@100ms"
        elif roll < 0.85:
            trade_id += 1
            data = {"e": "aggTrade", "E": 1_700_000_000_000 + n, "s": s, "a": trade_id, "p": f"{mid:.8f}",
                    "q": f"{rng.uniform(0.001, 2):.8f}", "f": trade_id, "l": trade_id, "T": 1_700_000_000_000 + n,
                    "m": rng.random() < 0.5}  # fmt: skip
            stream = f"{s.lower()}@aggTrade"
        else:
            data = {"u": next_id[s], "s": s, "b": f"{mid - tick:.8f}", "B": "1.00000000", "a": f"{mid + tick:.8f}",
                    "A": "2.00000000"}  # fmt: skip
            stream = f"{s.lower()}@bookTicker"
        frames.append(msgspec.json.encode({"stream": stream, "data": data}))
    return frames, snapshot_ids


class _NullClient:
    """Stands in for ``confluent_kafka.Producer``: the ``no-kafka`` variant's produce is a no-op."""

    def produce(self, topic: str, value: bytes | None = None, key: Any = None, **_: Any) -> None:
        pass

    def poll(self, timeout: float = 0.0) -> int:
        return 0

    def flush(self, timeout: float = 0.0) -> int:
        return 0

    def __len__(self) -> int:
        return 0


def _empty_snapshot(last_id: int) -> bytes:
    return b'{"lastUpdateId": %d, "bids": [], "asks": []}' % last_id


def _new_stream(producer: EventProducer, symbols: list[str], snapshot_ids: dict[str, int]) -> BinanceStream:
    stream = BinanceStream(BINANCE_SPOT, symbols, producer, request_snapshot=lambda symbol: None)
    for s in symbols:  # books live from a snapshot, as after the REST fetch
        stream.on_snapshot(s, _empty_snapshot(snapshot_ids[s]), T0_US)
    stream.counters.events = 0  # count the frames' events only
    return stream


def _drive(stream: BinanceStream, frames: list[bytes]) -> None:
    """What ``FeedConnection._on_frame`` does per frame (raw capture and capture files off)."""
    on_frame = stream.on_frame
    last_seen: dict[str, int] = {}  # the traffic watchdog's view
    receive_ts = T0_US
    for frame in frames:
        receive_ts += 1
        result = on_frame(frame, receive_ts)
        if type(result) is str:
            last_seen[result] = receive_ts


class Measure:
    """Wall time, process CPU and this thread's CPU over a block (the rest is librdkafka)."""

    def __enter__(self) -> Measure:
        gc.collect()
        self.wall, self.cpu, self.thread = time.perf_counter(), time.process_time(), time.thread_time()
        return self

    def __exit__(self, *_: object) -> None:
        self.wall = time.perf_counter() - self.wall
        self.cpu = time.process_time() - self.cpu
        self.thread = time.thread_time() - self.thread


def run_kafka(
    settings: Any, codec: AvroCodec, frames: list[bytes], symbols: list[str], ids: dict[str, int], null: bool
) -> tuple[int, Measure]:
    producer = EventProducer(settings.kafka, codec)
    if null:
        producer._producer = _NullClient()  # type: ignore[assignment]
    stream = _new_stream(producer, symbols, ids)
    producer.flush(60)  # the snapshots, and the registrations, before the clock starts
    with Measure() as m:
        _drive(stream, frames)
        producer.flush(120)
    resets = sum(s.counters.resets for s in stream.syncs.values())
    if resets or stream.counters.malformed_frames:
        raise SystemExit(f"error: {resets} book resets, {stream.counters.malformed_frames} malformed frames")
    HANDLED.append(stream.fast.handled / len(frames) if stream.fast is not None else 0.0)
    return stream.counters.events, m


#: Per kafka/no-kafka round: the share of frames the compiled path handled (the rest: generic).
HANDLED: list[float] = []


def run_parse(frames: list[bytes]) -> tuple[int, Measure]:
    parse = BinanceParser(BINANCE_SPOT.name, BINANCE_SPOT.market).parse
    with Measure() as m:
        for i, frame in enumerate(frames):
            parse(frame, T0_US + i)
    return len(frames), m


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog="See the module docstring.")
    parser.add_argument("--frames", type=int, default=200_000, help="frames per round (default 200000)")
    parser.add_argument("--symbols", type=int, default=20, help="distinct symbols (default 20)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds; medians are reported (default 5)")
    parser.add_argument("--pin", type=int, metavar="CPU", help="run every thread on this one CPU (as taskset -c)")
    parser.add_argument("--profile", action="store_true", help="cProfile one no-kafka round and exit")
    args = parser.parse_args()
    if args.pin is not None:  # before librdkafka starts its threads: they inherit the affinity
        os.sched_setaffinity(0, {args.pin})

    settings = load_settings()
    symbols = [f"SYM{i}USDT" for i in range(args.symbols)]
    print(f"generating {args.frames} frames over {len(symbols)} symbols...")
    frames, ids = make_frames(args.frames, symbols)
    print(f"CPUs this process may use: {sorted(os.sched_getaffinity(0))}")
    try:
        codec = AvroCodec(SchemaRegistry(settings.registry.model_copy(update={"retry_seconds": 3.0})))
        if args.profile:
            profiler = cProfile.Profile()
            profiler.enable()
            run_kafka(settings, codec, frames, symbols, ids, null=True)
            profiler.disable()
            pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
            return 0
        variants: dict[str, Callable[[], tuple[int, Measure]]] = {
            "kafka": lambda: run_kafka(settings, codec, frames, symbols, ids, null=False),
            "no-kafka": lambda: run_kafka(settings, codec, frames, symbols, ids, null=True),
            "parse": lambda: run_parse(frames),
        }
        results: dict[str, list[tuple[float, float, float, float]]] = {name: [] for name in variants}
        for r in range(args.rounds):
            for name, variant in variants.items():
                events, m = variant()
                row = (events / m.wall, m.cpu / events * 1e6, m.thread / events * 1e6,
                       (m.cpu - m.thread) / events * 1e6)  # fmt: skip
                results[name].append(row)
                print(f"round {r + 1} {name:>8}: {events} events in {m.wall:.2f}s: {row[0]:>9,.0f} events/s, "
                      f"{row[1]:5.1f} CPU-us/event (calling thread {row[2]:5.1f}, "
                      f"other threads {row[3]:4.1f})")  # fmt: skip
    except TickflowError as exc:
        print(f"error: {exc} (start the local stack with `make up`)", file=sys.stderr)
        return 2
    medians = {name: [statistics.median(col) for col in zip(*rows, strict=True)] for name, rows in results.items()}
    print()
    for name, (rate, cpu, thread, other) in medians.items():
        print(f"median {name:>8}: {rate:>9,.0f} events/s, {cpu:5.1f} CPU-us/event ({1e6 / cpu:>9,.0f} events per "
              f"CPU-second; calling thread {thread:5.1f}, other threads {other:4.1f})")  # fmt: skip
    print(f"frames handled by the compiled path: {min(HANDLED):.1%}-{max(HANDLED):.1%} (the rest: generic Python)")
    per_cpu = 1e6 / medians["kafka"][1]
    print(f"target >= 50,000 events per CPU-second into Kafka: {'MET' if per_cpu >= 50_000 else 'NOT MET'} "
          f"({per_cpu:,.0f})")  # fmt: skip
    summary: dict[str, Any] = {"bench": "feed", "frames": args.frames, "symbols": len(symbols),
                               "cpus": sorted(os.sched_getaffinity(0))}  # fmt: skip
    for name, (rate, cpu, thread, other) in medians.items():
        summary[name] = {"events_per_s": round(rate), "cpu_us_per_event": round(cpu, 2),
                         "thread_us": round(thread, 2), "other_threads_us": round(other, 2)}  # fmt: skip
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
