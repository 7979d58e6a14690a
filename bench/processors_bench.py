"""Processors benchmark: the order-book agent against a bare confluent-kafka loop, and the
end-to-end latency from the simulator to the best bid/offer topic.

Throughput (``throughput``, the default). A fresh book topic (6 partitions, as ``tickflow.book``)
is filled once with realistic Binance spot book records, encoded by the real codec against the
real registry and produced by ``EventProducer``: one snapshot of ``--snapshot-levels`` levels a
side per instrument, then deltas of 1-10 levels a side (mostly near the top: sizes changed,
levels added and removed, so the best bid/offer moves often), with continuous update ids, over
``--instruments`` instruments. Then, per round, interleaved, each variant in its own process:

* ``bare``: a confluent-kafka ``Consumer`` reading the topic from the start and decoding every
  record with ``AvroCodec.decode`` (to typed events), nothing else: the reference;
* ``agent-rocksdb``: a ``tickflow worker`` (the real Faust app, its changelog topics, RocksDB
  store as in production) with a fresh app id, so it consumes the topic from the start;
* ``agent-memory``: the same with ``--store memory://``.

Rates are records per wall second from the first record to the last (the agent: from the moment
its tables are recovered, i.e. when its stream starts, to the moment it has processed every
record; its committed offsets reaching the end are waited for too and reported). CPU is the
process's (all threads), from ``/proc``, over the same window (to the commit for the agent).
The ratio agent ÷ bare is taken within each round; the table shows medians. Issue 5's target:
the agent at least 50% of the bare loop.

A trade variant (kline agent vs a bare loop over the trade topic) fits the same frame: a
``fill`` function for the trade topic and the agent's topic setting; see ``VARIANTS``.

Not here yet: the end-to-end latency bench (simulator at 5k updates/s -> producer -> Kafka ->
worker -> bbo topic, p50/p99). The plan: a bbo topic with ``message.timestamp.type=LogAppendTime``
(the broker stamps each record's append), the simulator's market clock pinned to the wall clock
when its first client connects (so a diff's ``E`` is when it was sent), latency = append time -
``exchange_ts`` of the BookTop. It needs an agent that keeps up with 5k updates/s first.

Reproduce (a stack of your own; the TICKFLOW_* variables point every client at it)::

    export TICKFLOW_STACK__STATE_DIR=/tmp/bench-stack TICKFLOW_STACK__KAFKA_PORT=19792 \\
           TICKFLOW_STACK__REGISTRY_PORT=18781 TICKFLOW_KAFKA__BOOTSTRAP_SERVERS=127.0.0.1:19792 \\
           TICKFLOW_REGISTRY__URL=http://127.0.0.1:18781/apis/ccompat/v7
    .venv/bin/tickflow infra up
    .venv/bin/python bench/processors_bench.py throughput --records 60000 --rounds 3
    .venv/bin/python bench/processors_bench.py profile --records 30000   # cProfile of the agent
    .venv/bin/python bench/processors_bench.py profile --py-spy         # sampled instead (pip install py-spy)
    .venv/bin/tickflow infra down

The last line of each command's output is one JSON object with the figures, for scripts.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from harness import EndOffsets, ProcStats, free_port, median, stop_process

from tickflow.config import load_settings

PARTITIONS = 6
WEB_PORTS = range(16700, 16800)


# --- the records ---------------------------------------------------------------------------------


def book_records(instruments: int, count: int, snapshot_levels: int, seed: int = 5) -> list[Any]:
    """Binance spot book records as the feed produces them: a snapshot per instrument, then
    deltas of 1-10 levels a side with continuous ids (``U == previous u + 1``), never crossed
    (bids below a fixed centre, asks above), changes mostly near the top."""
    from tickflow.events import BookUpdate, BookUpdateKind, MarketType, PriceLevel

    rng = random.Random(seed)
    t_us = 1_700_000_000_000_000
    specs = []
    for i in range(instruments):
        tick = Decimal(1).scaleb(-rng.choice((2, 3, 4, 5, 6, 8)))
        lot = Decimal(1).scaleb(-rng.choice((0, 2, 3, 5, 8)))
        centre = rng.randint(10_000, 2_000_000)
        specs.append((f"S{i:02d}", tick, lot, centre))
    next_id = {spec[0]: 1_000_000 * (n + 1) for n, spec in enumerate(specs)}

    def head(name: str) -> dict[str, Any]:
        return {"venue": "binance-spot", "market": MarketType.SPOT, "symbol": f"{name}-USDT",
                "venue_symbol": f"{name}USDT", "exchange_ts": t_us // 1000 * 1000, "receive_ts": t_us}  # fmt: skip

    def level(tick: Decimal, lot: Decimal, centre: int, side: int, depth: int, size: int) -> PriceLevel:
        return PriceLevel((centre + side * depth) * tick, size * lot)

    out: list[Any] = []
    for name, tick, lot, centre in specs:
        t_us += 100
        bids = [level(tick, lot, centre, -1, d, rng.randint(1, 10_000)) for d in range(1, snapshot_levels + 1)]
        asks = [level(tick, lot, centre, +1, d, rng.randint(1, 10_000)) for d in range(1, snapshot_levels + 1)]
        out.append(BookUpdate(**head(name), kind=BookUpdateKind.SNAPSHOT, bids=bids, asks=asks,
                              last_update_id=next_id[name] - 1))  # fmt: skip
    while len(out) < count:
        name, tick, lot, centre = rng.choice(specs)
        t_us += rng.randint(20, 400)
        sides = []
        for side in (-1, +1):
            depths = {min(int(rng.expovariate(1 / 6)) + 1, snapshot_levels + 20) for _ in range(rng.randint(1, 10))}
            sides.append([level(tick, lot, centre, side, d, 0 if rng.random() < 0.2 else rng.randint(1, 10_000))
                          for d in sorted(depths)])  # fmt: skip
        first = next_id[name]
        last = first + rng.randint(0, 4)
        next_id[name] = last + 1
        out.append(BookUpdate(**head(name), kind=BookUpdateKind.DELTA, bids=sides[0], asks=sides[1],
                              first_update_id=first, last_update_id=last))  # fmt: skip
    return out


def fill_topic(topic: str, records: list[Any]) -> None:
    from tickflow.codec import AvroCodec
    from tickflow.producer import EventProducer
    from tickflow.registry import SchemaRegistry

    settings = load_settings()
    with SchemaRegistry(settings.registry) as registry, EventProducer(settings.kafka, AvroCodec(registry)) as producer:
        for record in records:
            producer.send(topic, record)
        producer.flush(120)


# --- Kafka helpers -------------------------------------------------------------------------------


_admin: Any = None


def admin() -> Any:
    """One admin client for the run: a client dropped before its futures resolve never resolves them."""
    global _admin
    if _admin is None:
        from confluent_kafka.admin import AdminClient

        _admin = AdminClient(load_settings().kafka.client_config())
    return _admin


def create_topics(names: list[str], partitions: int = PARTITIONS, config: dict[str, str] | None = None) -> None:
    from tickflow.admin import ensure_topics
    from tickflow.topics import TopicSpec

    ensure_topics(load_settings().kafka, {n: TopicSpec(n, partitions, None, dict(config or {})) for n in names})


def delete_topics(prefixes: list[str]) -> None:
    client = admin()
    names = [t for t in client.list_topics(timeout=30).topics if any(t.startswith(p) for p in prefixes)]
    if names:
        for future in client.delete_topics(names, operation_timeout=60).values():
            try:
                future.result()
            except Exception as exc:  # already gone: fine
                print(f"  (could not delete a topic: {exc})", file=sys.stderr)


def end_offsets(topics: list[str]) -> dict[str, int]:
    return EndOffsets(load_settings().kafka.bootstrap_servers, topics).by_topic()


def committed(group: str, topic: str) -> int:
    """Sum of ``group``'s committed offsets on ``topic`` (0 where none yet)."""
    from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition

    request = [ConsumerGroupTopicPartitions(group, [TopicPartition(topic, p) for p in range(PARTITIONS)])]
    result = admin().list_consumer_group_offsets(request, request_timeout=10)[group].result(timeout=15)
    return sum(max(tp.offset, 0) for tp in result.topic_partitions)


# --- the bare loop -------------------------------------------------------------------------------


def bare_loop(topic: str, count: int) -> dict[str, float]:
    """Consume ``topic`` from the start and decode every record; times from the first record."""
    from confluent_kafka import Consumer

    from tickflow.codec import AvroCodec
    from tickflow.registry import SchemaRegistry

    settings = load_settings()
    conf = {**settings.kafka.client_config(), "group.id": f"bench-bare-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest", "enable.auto.commit": False}  # fmt: skip
    codec = AvroCodec(SchemaRegistry(settings.registry))
    consumer = Consumer(conf)
    consumer.subscribe([topic])
    seen = 0
    t0 = cpu0 = 0.0
    decode = codec.decode
    while seen < count:
        messages = consumer.consume(1000, 1.0)
        if messages and not seen:
            t0, cpu0 = time.monotonic(), time.process_time()
        for message in messages:
            if message.error() is None:
                decode(message.value())
                seen += 1
    wall, cpu = time.monotonic() - t0, time.process_time() - cpu0
    consumer.close()
    return {"records": seen, "wall": wall, "cpu": cpu}


def run_bare(topic: str, count: int) -> dict[str, float]:
    argv = [sys.executable, __file__, "bare", "--topic", topic, "--records", str(count)]
    out = subprocess.run(argv, check=True, capture_output=True, text=True, timeout=1200)
    return json.loads(out.stdout.strip().splitlines()[-1])


# --- the agent -----------------------------------------------------------------------------------


@dataclass
class WorkerRun:
    """A ``tickflow worker`` with a fresh app id on ``book`` (so it reads it from the start)."""

    book: str
    outputs: dict[str, str]
    store: str = "rocksdb://"
    extra_env: dict[str, str] = field(default_factory=dict)
    profile: Path | None = None
    app_id: str = field(default_factory=lambda: f"bench-proc-{uuid.uuid4().hex[:8]}")
    port: int = 0
    proc: subprocess.Popen | None = None
    sampler: subprocess.Popen | None = None
    data_dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="pthru-worker-")))

    def start(self) -> None:
        self.port = _free_web_port()
        env = {**os.environ, **self.extra_env,
               "TICKFLOW_PROCESSORS__PARTITIONS": str(PARTITIONS),
               "TICKFLOW_PROCESSORS__DATA_DIR": str(self.data_dir),
               "TICKFLOW_PROCESSORS__BOOK_TOPIC": self.book,
               "TICKFLOW_PROCESSORS__BBO_TOPIC": self.outputs["bbo"],
               "TICKFLOW_PROCESSORS__DEPTH_TOPIC": self.outputs["depth"],
               "TICKFLOW_PROCESSORS__DEAD_LETTER_TOPIC": self.outputs["dlq"],
               # The kline agent runs in the same worker: on empty topics of the run, not the
               # stack's tickflow.trades (which may hold millions of trades it would chew through
               # meanwhile, measured as the book agent's cost).
               "TICKFLOW_PROCESSORS__TRADE_TOPIC": self.outputs["trades"],
               "TICKFLOW_PROCESSORS__KLINE_TOPIC": self.outputs["klines"],
               "TICKFLOW_PROCESSORS__DERIVED_KLINE_TOPIC": self.outputs["derived"]}  # fmt: skip
        tickflow = str(Path(sys.executable).with_name("tickflow"))
        argv = [tickflow, "worker", "--app-id", self.app_id, "--web-port", str(self.port), "--store", self.store,
                "--loglevel", "warning"]  # fmt: skip
        if self.profile is not None and self.profile.suffix != ".txt":  # py-spy attaches later (``sample``)
            argv = [sys.executable, "-m", "cProfile", "-o", str(self.profile), tickflow, *argv[1:]]
        log = open(self.data_dir / "worker.log", "ab")  # noqa: SIM115 - the child keeps it
        self.proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)

    def sample(self) -> None:
        """py-spy (``profile.txt``) attached to the running worker: from here to ``stop_sampling``.
        Attached rather than launching the worker, so that the worker's own pid is the one timed
        and stopped, and the profile covers the processing only (not start-up and recovery)."""
        if self.profile is None or self.profile.suffix != ".txt":
            return
        assert self.proc is not None
        pyspy = str(Path(sys.executable).with_name("py-spy"))
        argv = [pyspy, "record", "--format", "raw", "-r", "250", "-o", str(self.profile), "--pid", str(self.proc.pid)]
        self.sampler = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def stop_sampling(self) -> None:
        """SIGINT: py-spy writes its file and exits (SIGTERM would lose the samples)."""
        if self.sampler is not None and self.sampler.poll() is None:
            self.sampler.send_signal(signal.SIGINT)
            self.sampler.wait(60)
        self.sampler = None

    def books(self) -> dict[str, Any] | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/books", timeout=5) as response:
                return json.loads(response.read())
        except OSError:
            return None

    def wait_recovered(self, timeout: float = 120) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited ({self.proc.returncode}); log in {self.data_dir}")
            books = self.books()
            if books is not None and books["recovered"]:
                return books
            time.sleep(0.05)
        raise RuntimeError(f"worker not recovered in {timeout}s; log in {self.data_dir}")

    def stop(self) -> None:
        self.stop_sampling()
        if self.proc is not None:
            stop_process(self.proc, timeout=60)
        delete_topics([self.app_id])
        shutil.rmtree(self.data_dir, ignore_errors=True)


def _free_web_port() -> int:
    return free_port(WEB_PORTS.start, WEB_PORTS.stop)


#: Topics of a run besides the book topic: the book agent's outputs, and the kline agent's inputs
#: and output (left empty: the bench measures the book agent).
OUTPUT_KINDS = ("bbo", "depth", "dlq", "trades", "klines", "derived")


def run_topics(run: str) -> list[str]:
    return [f"bench.proc.{kind}.{run}" for kind in OUTPUT_KINDS]


def output_topics(run: str) -> dict[str, str]:
    names = {kind: f"bench.proc.{kind}.{run}" for kind in OUTPUT_KINDS}
    create_topics(list(names.values()))
    return names


def run_agent(topic: str, count: int, store: str, outputs: dict[str, str], profile: Path | None = None,
              extra_env: dict[str, str] | None = None) -> dict[str, float]:  # fmt: skip
    worker = WorkerRun(topic, outputs, store=store, profile=profile, extra_env=extra_env or {})
    worker.start()
    try:
        assert worker.proc is not None
        stats = ProcStats(worker.proc.pid)
        first = worker.wait_recovered()
        worker.sample()
        t0, cpu0, done0 = time.monotonic(), stats.cpu_seconds(), first["counters"]["records"]
        t_processed = cpu_processed = None
        while True:
            if worker.proc.poll() is not None:
                raise RuntimeError(f"worker exited ({worker.proc.returncode}); log in {worker.data_dir}")
            if t_processed is None:
                books = worker.books()
                if books is not None and books["counters"]["records"] >= count:
                    t_processed, cpu_processed = time.monotonic(), stats.cpu_seconds()
                    worker.stop_sampling()
            if t_processed is not None and committed(worker.app_id, topic) >= count:
                break
            time.sleep(0.1)
        t_committed, cpu_committed = time.monotonic(), stats.cpu_seconds()
        changelog = sum(n for t, n in end_offsets(_changelogs(worker.app_id)).items())
        assert t_processed is not None and cpu_processed is not None
        return {"records": count - done0, "wall": t_processed - t0, "wall_committed": t_committed - t0,
                "cpu": cpu_committed - cpu0, "changelog": changelog}  # fmt: skip
    finally:
        worker.stop()


def _changelogs(app_id: str) -> list[str]:
    return [f"{app_id}-book-levels-changelog", f"{app_id}-book-heads-changelog"]


# --- throughput ----------------------------------------------------------------------------------

FAUST = {"TICKFLOW_PROCESSORS_LEAN_CONSUMER": "0"}

#: Variant name -> how to run it on (topic, records, outputs). A trade variant (the kline agent
#: against a bare loop on the trade topic) adds its own entries and fill function.
VARIANTS: dict[str, Callable[[str, int, dict[str, str]], dict[str, float]]] = {
    "bare": lambda topic, count, _: run_bare(topic, count),
    "agent-rocksdb": lambda topic, count, outputs: run_agent(topic, count, "rocksdb://", outputs),
    "agent-memory": lambda topic, count, outputs: run_agent(topic, count, "memory://", outputs),
    # Faust's own consumer path (processors/consumer.py off): the before of the lean path.
    "faust-rocksdb": lambda topic, count, outputs: run_agent(topic, count, "rocksdb://", outputs, extra_env=FAUST),
    "faust-memory": lambda topic, count, outputs: run_agent(topic, count, "memory://", outputs, extra_env=FAUST),
}


def throughput(args: argparse.Namespace) -> dict[str, Any]:
    run = uuid.uuid4().hex[:8]
    topic = args.topic or f"bench.proc.book.{run}"
    if not args.topic:
        create_topics([topic])
        records = book_records(args.instruments, args.records, args.snapshot_levels)
        deltas = records[args.instruments :]
        levels = sum(len(r.bids) + len(r.asks) for r in deltas) / max(1, len(deltas))
        print(f"filling {topic}: {len(records)} records ({args.instruments} snapshots of {args.snapshot_levels}+"
              f"{args.snapshot_levels} levels, deltas of {levels:.1f} levels on average)", flush=True)  # fmt: skip
        fill_topic(topic, records)
    count = sum(end_offsets([topic]).values())
    outputs = output_topics(run)
    variants = args.variants.split(",")
    results: dict[str, list[dict[str, float]]] = {v: [] for v in variants}
    ratios: dict[str, list[float]] = {v: [] for v in variants if v != "bare"}
    try:
        for n in range(args.rounds):
            order = variants if n % 2 == 0 else variants[::-1]
            got = {}
            for variant in order:
                got[variant] = VARIANTS[variant](topic, count, outputs)
                r = got[variant]
                print(f"round {n + 1} {variant:14s} {r['records'] / r['wall']:9.0f} records/s  "
                      f"{r['cpu'] / r['records'] * 1e6:7.1f} CPU-µs/record", flush=True)  # fmt: skip
                results[variant].append(r)
            if "bare" in got:
                bare_rate = got["bare"]["records"] / got["bare"]["wall"]
                for variant in ratios:
                    ratios[variant].append(got[variant]["records"] / got[variant]["wall"] / bare_rate)
    finally:
        delete_topics(run_topics(run))
        if not args.topic and not args.keep:
            delete_topics([topic])
    summary: dict[str, Any] = {"records": count, "rounds": args.rounds}
    print(f"\n{count} book records, {args.rounds} rounds, medians")
    print("| variant | records/s (wall) | CPU-µs/record | records per CPU-s | changelog records/record | ÷ bare |")
    print("|---|---:|---:|---:|---:|---:|")
    for variant, rs in results.items():
        rate = median([r["records"] / r["wall"] for r in rs])
        cpu_us = median([r["cpu"] / r["records"] * 1e6 for r in rs])
        changelog = median([r.get("changelog", 0) / count for r in rs])
        ratio = median(ratios[variant]) if ratios.get(variant) else 1.0
        summary[variant] = {"rate": rate, "cpu_us": cpu_us, "changelog_per_record": changelog, "ratio": ratio}
        print(f"| {variant} | {rate:,.0f} | {cpu_us:.1f} | {1e6 / cpu_us:,.0f} | {changelog:.2f} | {ratio:.2f} |")
    return summary


def profile(args: argparse.Namespace) -> dict[str, Any]:
    """One agent run under cProfile; prints the top functions by cumulative and by own time."""
    import pstats

    if args.folded:
        print_folded(args.folded)
        return {"profile": str(args.folded)}
    run = uuid.uuid4().hex[:8]
    topic = f"bench.proc.book.{run}"
    create_topics([topic])
    fill_topic(topic, book_records(args.instruments, args.records, args.snapshot_levels))
    outputs = output_topics(run)
    suffix = ".txt" if args.py_spy else ".prof"
    out = Path(tempfile.gettempdir()) / f"processors-profile-{run}{suffix}"
    try:
        result = run_agent(topic, args.records, args.store, outputs, profile=out)
    finally:
        delete_topics([topic, *run_topics(run)])
    if args.py_spy:
        print_folded(out)
        return {"profile": str(out), **result}
    stats = pstats.Stats(str(out))
    stats.sort_stats("tottime").print_stats(35)
    stats.sort_stats("cumulative").print_stats(45)
    return {"profile": str(out), **result}


#: Leaf frames of a thread that waits (py-spy counts some of them as busy): left out of "busy".
IDLE_LEAVES = ("EpollSelector.select", "_worker (concurrent/futures/thread.py", "wait (threading.py",
               "select (selectors.py")  # fmt: skip

#: Where a busy sample's time goes: the frame nearest the leaf that matches one of these (in
#: this order of priority for the same frame) names its part. Frames of asyncio and the standard
#: library match nothing, so a task switch counts for the code that caused it.
PARTS = (
    ("decode (AvroCodec)", ("tickflow/codec.py", "fastavro")),
    ("table/output writes (changelog.py)", ("processors/changelog.py",)),
    ("book agent's own code (books.py, book logic, state)", ("processors/", "tickflow/")),
    ("aiokafka producer", ("aiokafka/producer",)),
    ("aiokafka client, consumer side (main thread)", ("aiokafka/",)),
    ("faust/mode (consumer path, conductor, streams, sensors)", ("faust/", "mode/")),
)


def _part(frames: list[str]) -> str:
    if frames[0].startswith("Thread._bootstrap"):  # not the event loop's thread
        if any("mode/threads.py" in f for f in frames):
            return "faust's aiokafka consumer thread (fetching, decompressing)"
        return "other threads"
    for frame in reversed(frames):
        for name, markers in PARTS:
            if any(m in frame for m in markers):
                if name.startswith("aiokafka") and any("aiokafka/producer" in f for f in frames):
                    return "aiokafka producer"  # its connection's writes too
                return name
    return "event loop / other"


def print_folded(path: Path, top: int = 40) -> None:
    """py-spy's folded stacks: busy samples by part, then the functions with the most samples,
    own and inclusive."""
    own: dict[str, int] = {}
    inclusive: dict[str, int] = {}
    parts: dict[str, int] = {}
    total = idle = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        n = int(count)
        frames = stack.split(";")
        if frames[-1].startswith(IDLE_LEAVES):
            idle += n
            continue
        total += n
        own[frames[-1]] = own.get(frames[-1], 0) + n
        for frame in set(frames):
            inclusive[frame] = inclusive.get(frame, 0) + n
        part = _part(frames)
        parts[part] = parts.get(part, 0) + n
    print(f"\nbusy samples: {total} ({idle} idle left out), by part:")
    for part, n in sorted(parts.items(), key=lambda kv: -kv[1]):
        print(f"{100 * n / total:6.1f}%  {part}")
    for title, table in (("own", own), ("inclusive", inclusive)):
        print(f"\n{title} samples of {total} busy:")
        for frame, n in sorted(table.items(), key=lambda kv: -kv[1])[:top]:
            print(f"{100 * n / total:6.1f}%  {frame}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command")
    for name in ("throughput", "profile", "bare"):
        p = sub.add_parser(name)
        p.add_argument("--records", type=int, default=60_000)
        p.add_argument("--instruments", type=int, default=30)
        p.add_argument("--snapshot-levels", type=int, default=100)
        p.add_argument("--topic", help="use this book topic as it is (bare: required)")
        p.add_argument("--rounds", type=int, default=3)
        p.add_argument("--variants", default="bare,agent-rocksdb,agent-memory")
        p.add_argument("--store", default="rocksdb://")
        p.add_argument("--keep", action="store_true", help="keep the filled topic (printed) for later runs")
        p.add_argument("--py-spy", action="store_true", help="profile: sample with py-spy instead of cProfile")
        p.add_argument("--folded", type=Path, help="profile: only print the breakdown of this py-spy raw file")
    args = parser.parse_args(sys.argv[1:] or ["throughput"])
    if args.command == "bare":
        result = bare_loop(args.topic, args.records)
    else:
        result = {"throughput": throughput, "profile": profile}[args.command](args)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
