"""Memory run: ``tickflow produce`` against the synthetic simulator for ``--minutes``, RSS sampled.

What it measures: the producer's resident memory (``VmRSS`` of the process, from ``/proc``) every
``--every`` seconds while it feeds ``--symbols`` Binance spot symbols (depth@100ms, aggTrade,
bookTicker, kline_1m) from ``tickflow simulate binance-spot --synthetic`` into the local Kafka. It
prints RSS at the start of the measurement, at the end and its maximum, and the slope (MB per
minute, least squares) after ``--warmup`` minutes, over the whole remaining run and over its
second half. Events are counted on the broker (end offsets of the four market topics) per sample,
so a run in which the feed stalled shows up instead of passing for flat memory.

"Flat" means no growth trend: the least-squares growth after warm-up, slope times duration, is
below 2% of the mean RSS (at least 2 MB). A steady leak of 1 MB/min over 9 minutes on a 100 MB
process is 9% and fails; allocator noise of a few MB up and down passes.

Reproduce (the bench stack up as in ``bench/vs_cryptofeed.py``; TICKFLOW_* point at it)::

    .venv/bin/python bench/memory_run.py                    # 10 minutes, 50 symbols, full speed
    .venv/bin/python bench/memory_run.py --minutes 2 --warmup 0.5   # a quick check

The last line of output is one JSON object with the figures and every sample.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from harness import REPO, TICKFLOW, EndOffsets, ProcStats, Simulator, stop_process

from tickflow import topics
from tickflow.config import load_settings


def slope_mb_per_min(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (minutes, MB) points."""
    n = len(points)
    if n < 2:
        return 0.0
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    return sum((x - mx) * (y - my) for x, y in points) / sxx if sxx else 0.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog="See the module docstring.")
    parser.add_argument("--minutes", type=float, default=10.0, help="how long to run (default 10)")
    parser.add_argument("--warmup", type=float, default=1.0, help="minutes before the slope is measured (default 1)")
    parser.add_argument("--every", type=float, default=5.0, help="sampling interval, s (default 5)")
    parser.add_argument("--symbols", type=int, default=50, help="symbols (default 50)")
    parser.add_argument("--rate", type=float, default=1000, help="simulator market events/s (default 1000)")
    parser.add_argument("--frames", type=int, default=0, help="simulator --frames (default: none, endless)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--pin", action="store_true", help="producer on CPU 0, simulator on CPU 1 (taskset)")
    args = parser.parse_args()

    bootstrap = load_settings().kafka.bootstrap_servers
    counter = EndOffsets(bootstrap, [topics.BOOK, topics.TRADES, topics.BBO, topics.KLINES])
    sim = Simulator(symbols=args.symbols, frames=args.frames, rate=args.rate, seed=args.seed,
                    cpus="1" if args.pin else None)  # fmt: skip
    samples: list[dict[str, float]] = []
    log_path = Path(tempfile.gettempdir()) / "tickflow-bench-memory.log"
    try:
        with sim:
            listed = sim.exchange_info()
            if not listed:
                print("memory_run: the simulator serves no /api/v3/exchangeInfo", file=sys.stderr)
                return 2
            symbols = [s for s, _, _ in listed[: args.symbols]]
            feeds = Path(tempfile.gettempdir()) / "tickflow-bench-memory-feeds.yaml"
            feed = {"venue": "binance-spot", "symbols": symbols, "ws_url": f"ws://{sim.address}",
                    "rest_url": f"http://{sim.address}"}  # fmt: skip
            feeds.write_text(yaml.safe_dump({"feeds": [feed]}))
            argv = [TICKFLOW, "produce", "--feeds", str(feeds)]
            if args.pin:
                argv = ["taskset", "-c", "0", *argv]
            base = counter.total()
            with open(log_path, "wb") as log:
                proc = subprocess.Popen(argv, stdout=log, stderr=log, cwd=REPO)
            stats = ProcStats(proc.pid)
            print(f"producer pid {proc.pid}, {len(symbols)} symbols, simulator {' '.join(sim.argv()[2:])}; "
                  f"sampling every {args.every:g}s for {args.minutes:g} min", flush=True)  # fmt: skip
            started = time.monotonic()
            try:
                while (elapsed := time.monotonic() - started) < args.minutes * 60:
                    if proc.poll() is not None:
                        print(f"memory_run: the producer exited ({proc.returncode}); see {log_path}", file=sys.stderr)
                        return 1
                    rss, hwm = stats.memory_kb()
                    sample = {"t_s": round(elapsed, 1), "rss_mb": round(rss / 1024, 1), "hwm_mb": round(hwm / 1024, 1),
                              "cpu_s": stats.cpu_seconds(), "events": counter.total() - base}  # fmt: skip
                    samples.append(sample)
                    if len(samples) % max(1, round(60 / args.every)) == 1:
                        print(f"  {elapsed / 60:5.1f} min: RSS {sample['rss_mb']:6.1f} MB, "
                              f"{sample['events']:>11,} events", flush=True)  # fmt: skip
                    time.sleep(args.every - (time.monotonic() - started) % args.every)
            finally:
                code = stop_process(proc, timeout=60)
            if code != 0:
                print(f"memory_run: the producer exited with {code} after SIGTERM; see {log_path}", file=sys.stderr)
    except RuntimeError as exc:
        print(f"memory_run: error: {exc}", file=sys.stderr)
        return 1

    warm = [s for s in samples if s["t_s"] >= args.warmup * 60]
    if len(warm) < 4:
        print("memory_run: too few samples after warm-up", file=sys.stderr)
        return 1
    points = [(s["t_s"] / 60, s["rss_mb"]) for s in warm]
    slope = slope_mb_per_min(points)
    late = slope_mb_per_min(points[len(points) // 2 :])
    span = points[-1][0] - points[0][0]
    mean = sum(y for _, y in points) / len(points)
    growth = slope * span
    flat = growth < max(2.0, 0.02 * mean)
    events = [s["events"] for s in samples]
    # The feed must have produced all along: events in each minute after warm-up.
    per_minute = [
        (b["events"] - a["events"]) / (b["t_s"] - a["t_s"])
        for a, b in zip(warm, warm[max(1, round(60 / args.every)) :], strict=False)
    ]
    cpu = samples[-1]["cpu_s"] - warm[0]["cpu_s"]
    produced = events[-1] - warm[0]["events"]
    rate = produced / (warm[-1]["t_s"] - warm[0]["t_s"])
    print(f"\n{args.minutes:g} min, {len(samples)} samples every {args.every:g}s, {events[-1]:,} events "
          f"({rate:,.0f}/s after warm-up, slowest minute {min(per_minute, default=0):,.0f}/s; "
          f"{produced / cpu if cpu else 0:,.0f} events per CPU-second)")  # fmt: skip
    first = next((s for s in samples if s["events"] > 0), samples[0])  # the first sample with the feed running
    print(f"RSS: start {first['rss_mb']:.1f} MB (at {first['t_s']:g}s, feed running), "
          f"after warm-up {warm[0]['rss_mb']:.1f} MB, "
          f"end {samples[-1]['rss_mb']:.1f} MB, max {max(s['rss_mb'] for s in samples):.1f} MB "
          f"(peak VmHWM {samples[-1]['hwm_mb']:.1f} MB)")  # fmt: skip
    print(f"slope after {args.warmup:g} min warm-up: {slope:+.3f} MB/min over {span:.1f} min ({growth:+.1f} MB), "
          f"second half {late:+.3f} MB/min: {'FLAT' if flat else 'GROWING'}")  # fmt: skip
    summary = {"bench": "memory_run", "minutes": args.minutes, "symbols": len(symbols), "rate": args.rate,
               "start_mb": first["rss_mb"], "warm_mb": warm[0]["rss_mb"], "end_mb": samples[-1]["rss_mb"],
               "max_mb": max(s["rss_mb"] for s in samples), "slope_mb_per_min": round(slope, 3),
               "late_slope_mb_per_min": round(late, 3), "flat": flat, "events": events[-1],
               "samples": samples}  # fmt: skip
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
