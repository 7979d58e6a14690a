"""Replay benchmark: reading a topic range back, into typed events and into Arrow, on one core.

A fresh topic (6 partitions) is filled once with ``--records`` realistic records (trades by
default, ``--kind book`` for book records: a 100+100-level snapshot per instrument, then deltas
of 1-10 levels a side), encoded by the real codec against the real registry. Then, per round,
each variant in its own process, pinned to one core (``sched_setaffinity``: the process and the
librdkafka threads it starts share it), reads the whole range (``end="now"``):

* ``raw``: ``EventConsumer.batches`` and nothing else (the records' bytes, undecoded): what
  fetching from the broker costs, the floor of the others;
* ``typed``: iterating ``tickflow.consume(...)``: a typed event (``Trade``, ``BookUpdate``,
  decimals as ``Decimal``) a record;
* ``arrow``: ``tickflow.consume(...).tables()``: Arrow tables (``tickflow/arrow.py``, the
  compiled column reader);
* ``parquet``: ``tickflow.replay.export_parquet`` (Arrow, then zstd Parquet files).

Rates are records per wall second from the read's start (consumer assigned) to its last
record; CPU is the process's over the same time (all threads, ``/proc``). Issue 6's target:
at least 300,000 events/s on one core into Arrow.

Reproduce (a stack of your own, as for ``processors_bench.py``)::

    .venv/bin/tickflow infra up
    .venv/bin/python bench/replay_bench.py --records 600000 --rounds 3
    .venv/bin/python bench/replay_bench.py --kind book --records 200000 --rounds 3

The last line is one JSON object with the figures, for scripts.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from harness import median
from processors_bench import book_records, create_topics, delete_topics, fill_topic, trade_records

from tickflow.config import load_settings

VARIANTS = ("raw", "typed", "arrow", "parquet")


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def read_range(topic: str, variant: str, core: int) -> dict[str, float]:
    """One variant's read of the whole topic, in this process, pinned to ``core``."""
    os.sched_setaffinity(0, {core})
    import tickflow
    from tickflow import replay

    settings = load_settings()
    with tickflow.consume(topic, settings=settings, end="now") as reading:
        t0, cpu0 = time.perf_counter(), _cpu()
        count = 0
        if variant == "raw":
            for batch in reading.consumer.batches():
                count += len(batch)
        elif variant == "typed":
            for _ in reading:
                count += 1
        elif variant == "arrow":
            count = sum(table.num_rows for table in reading.tables().values())
        elif variant == "parquet":
            with tempfile.TemporaryDirectory() as directory:
                count = replay.export_parquet(reading.consumer, Path(directory)).written
        else:
            raise ValueError(variant)
        wall, cpu = time.perf_counter() - t0, _cpu() - cpu0
    return {"records": count, "seconds": wall, "rate": count / wall, "cpu_us_per_record": cpu / count * 1e6}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=600_000)
    parser.add_argument("--kind", choices=("trades", "book"), default="trades")
    parser.add_argument("--instruments", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--core", type=int, default=1, help="the core each reading process is pinned to")
    parser.add_argument("--topic", help="read this topic as it is (no fill)")
    parser.add_argument("--keep", action="store_true", help="keep the filled topic (printed) for later runs")
    parser.add_argument("--read", help="(internal) read the topic with this variant and print the figures")
    args = parser.parse_args()
    if args.read:
        print(json.dumps(read_range(args.topic, args.read, args.core)))
        return 0

    topic = args.topic
    if topic is None:
        topic = f"bench.replay.{args.kind}.{uuid.uuid4().hex[:8]}"
        create_topics([topic])
        t0 = time.perf_counter()
        records = (
            trade_records(args.instruments, args.records)
            if args.kind == "trades"
            else book_records(args.instruments, args.records, 100)
        )
        fill_topic(topic, records)
        print(f"filled {topic} with {len(records):,} {args.kind} records in {time.perf_counter() - t0:.1f} s",
              flush=True)  # fmt: skip
        del records
    results: dict[str, list[dict[str, float]]] = {v: [] for v in args.variants.split(",")}
    try:
        for n in range(args.rounds):
            for variant in results:
                argv = [sys.executable, __file__, "--topic", topic, "--read", variant, "--core", str(args.core)]
                out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
                r = json.loads(out.strip().splitlines()[-1])
                results[variant].append(r)
                print(f"round {n + 1} {variant:8s} {r['records']:>9,.0f} records  {r['rate']:>10,.0f}/s  "
                      f"{r['cpu_us_per_record']:6.2f} CPU-µs/record", flush=True)  # fmt: skip
    finally:
        if args.topic is None and not args.keep:
            delete_topics([topic])
        elif args.keep:
            print(f"kept {topic}")
    summary = {
        v: {"rate": median([r["rate"] for r in rs]), "cpu_us_per_record": median([r["cpu_us_per_record"] for r in rs])}
        for v, rs in results.items()
    }
    raw = summary.get("raw", {}).get("rate")
    print(f"\n{args.kind}, medians of {args.rounds} rounds, one core:\n")
    print("| variant | records/s | CPU-µs/record | ÷ raw |\n|---|---:|---:|---:|")
    for variant, s in summary.items():
        ratio = f"{s['rate'] / raw:.2f}" if raw else "-"
        print(f"| {variant} | {s['rate']:,.0f} | {s['cpu_us_per_record']:.2f} | {ratio} |")
    print(json.dumps({"kind": args.kind, "records": args.records, "summary": summary, "runs": results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
