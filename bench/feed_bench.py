"""Feed hot-path benchmark: Binance frames -> parse -> normalize -> book sync -> encode -> Kafka.

Measures the producer's per-frame work (everything after the socket) on one thread, into the
real local broker: normalized events per second (wall clock, first frame to flush complete) and
CPU-seconds per event (this process, librdkafka's threads included). The frames are generated
up front as Binance sends them: depth diffs with continuous update ids (so every book stays
live and every diff goes through the full book logic), aggregate trades and book tickers, over
``--symbols`` symbols. Issue 4's target: at least 50k normalized events/s on one core.

Reproduce (needs the local stack: ``make up``)::

    .venv/bin/python bench/feed_bench.py
    .venv/bin/python bench/feed_bench.py --frames 300000 --symbols 50
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time

import msgspec

from producers.book_sync import DepthSnapshot
from producers.venues.binance.feed import BINANCE_SPOT, BinanceFeed
from tickflow.codec import AvroCodec
from tickflow.config import load_settings
from tickflow.errors import TickflowError
from tickflow.producer import EventProducer
from tickflow.registry import SchemaRegistry


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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog="See the module docstring.")
    parser.add_argument("--frames", type=int, default=200_000, help="frames per round (default 200000)")
    parser.add_argument("--symbols", type=int, default=20, help="distinct symbols (default 20)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds; the median is reported (default 3)")
    args = parser.parse_args()

    settings = load_settings()
    symbols = [f"SYM{i}USDT" for i in range(args.symbols)]
    print(f"generating {args.frames} frames over {len(symbols)} symbols...")
    frames, snapshot_ids = make_frames(args.frames, symbols)
    rates, cpu_per_event = [], []
    try:
        registry = SchemaRegistry(settings.registry.model_copy(update={"retry_seconds": 3.0}))
        codec = AvroCodec(registry)
        for r in range(args.rounds):
            producer = EventProducer(settings.kafka, codec)
            feed = BinanceFeed(BINANCE_SPOT, symbols, producer, ws_url="ws://unused", rest_url="http://unused")
            for s in symbols:  # books live from a snapshot, as after the REST fetch
                feed.syncs[s].on_snapshot(DepthSnapshot(snapshot_ids[s], [], [], 0))
            on_frame = feed._on_frame
            wall, cpu = time.perf_counter(), time.process_time()
            for i, frame in enumerate(frames):
                on_frame(frame, 1_700_000_000_000_000 + i)
            producer.flush(120)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            events = feed.counters.events
            resets = sum(s.counters.resets for s in feed.syncs.values())
            if resets or feed.counters.malformed_frames:
                print(f"error: {resets} book resets, {feed.counters.malformed_frames} malformed", file=sys.stderr)
                return 1
            rates.append(events / wall)
            cpu_per_event.append(cpu / events)
            print(f"round {r + 1}: {events} events from {len(frames)} frames in {wall:.2f}s: "
                  f"{events / wall:,.0f} events/s, {cpu / events * 1e6:.1f} CPU-us/event")  # fmt: skip
    except TickflowError as exc:
        print(f"error: {exc} (start the local stack with `make up`)", file=sys.stderr)
        return 2
    rates.sort()
    cpu_per_event.sort()
    median_rate, median_cpu = rates[len(rates) // 2], cpu_per_event[len(cpu_per_event) // 2]
    print(f"\nmedian: {median_rate:,.0f} normalized events/s, {median_cpu * 1e6:.1f} CPU-us per event "
          f"({1 / median_cpu:,.0f} events per CPU-second); target >= 50,000 events/s: "
          f"{'MET' if median_rate >= 50_000 else 'NOT MET'}")  # fmt: skip
    summary = {"bench": "feed", "frames": args.frames, "symbols": len(symbols), "events_per_s": round(median_rate)}
    print(json.dumps({**summary, "cpu_us_per_event": round(median_cpu * 1e6, 2)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
