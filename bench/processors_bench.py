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
* ``bare-scaled``: the same, decoding with the agents' own reader (``ScaledReader``: the
  compiled reader, decimals as integers at scale 18): how fast the topic can be read at all;
* ``bare-aiokafka``: ``bare-scaled`` with aiokafka (Faust's client library) instead of
  confluent-kafka: what consuming costs the agents before Faust and their own logic;
* ``agent-rocksdb``: a ``tickflow worker`` (the real Faust app, its changelog topics, RocksDB
  store as in production) with a fresh app id, so it consumes the topic from the start;
* ``agent-memory``: the same with ``--store memory://``.

Rates are records per wall second from the first record to the last: the bare loop by its
clock, the agent by its own (``GET /books`` or ``/klines``: ``times``, from the first batch its
stream gave it to the last it applied). Its committed offsets reaching the end are waited for
too; "polled timing" is the agent's rate as the bench sees it, from its tables recovered to every
record done (polled every 0.1 s: the consumer's start and the polling counted in). CPU is the
process's (all threads), from ``/proc``: the bare loop's over its window, the agent's from its
tables recovered to the commit. The ratios agent ÷ bare and agent ÷ bare-scaled are taken
within each round; the table shows medians. Issue 5's target: the agent at least 50% of the
bare loop.

``--kind trades``: the same for the kline agent: a fresh trade topic (6 partitions) filled with
Binance spot trades (``trade_records``: exchange time advancing 0.2-2 ms a trade, so 1 s klines
close all along), the bare loop consuming and decoding it, the worker's kline agent reading it
(its book agent on an empty topic), timed by ``GET /klines``.

Latency (``latency``). End to end, with the real processes: the synthetic Binance spot market
(``simulate``: ``BinanceSynthetic`` paced at ``--rates`` market events per second over
``--symbols`` symbols, each event a depth diff, its clock pinned to the wall clock when the feed
connects, so a diff's ``E`` is when the simulator sent it, to the millisecond) -> the tickflow
Binance feed (``feed``: ``VENUES["binance-spot"].make_feed`` with an ``EventProducer``, the
compiled hot path, its book records renamed to the run's topic, ``--channels`` depth only by
default) -> a fresh 6-partition book topic -> a ``tickflow worker`` (fresh app id, memory store)
-> a best bid/offer topic. Three processes besides the bench's, which only samples the lag and
the processes' CPU once a second. Both topics are created with
``message.timestamp.type=LogAppendTime``: the broker stamps each record's append time, one clock
for all, and no client can set it. Latency of a ``BookTop`` = its append time - its
``exchange_ts`` (the ``E`` of the diff behind it), for the diffs whose ``E`` falls in the
``--duration`` seconds after a ``--warmup`` (connection, REST snapshots, the agent's first
batches). The market runs for the warm-up and the measured seconds, then stops; the run waits
until the book topic stops growing and the worker has processed it all (``--drain`` seconds at
most), so the slowest records are measured, not cut off by the end of the run. Records the worker
never got to count as slower than any measured (a percentile that falls on them prints "-").

Floors (``--processor``): ``relay`` runs ``run_relay`` in the worker's place (a confluent-kafka
consumer that reads each book record with the agents' reader and produces a ``BookTop`` of its
first levels: no book, no state, no Faust), the least any processor must do; ``none`` runs no
processor at all, so that only the stages up to the book topic are measured. Both say what this
machine allows whatever the processor does.

Stages, from the same records: ``sim_to_producer`` = ``receive_ts`` - ``E`` (the simulator's own
lateness, the socket, the feed's read), ``producer_to_book`` = the book record's append time (the
``BookUpdate`` with the BookTop's ``update_id``) - ``receive_ts`` (parse, book, encode, librdkafka's
5 ms linger, the broker), ``book_to_agent`` = ``processed_ts`` - that append time (Faust's fetch
and stream, the agent's queue), ``agent_to_bbo`` = the BookTop's append time - ``processed_ts``
(the rest of the batch, the batch linger, the table writes and their acknowledgement, the send);
``sim_to_book_topic`` covers every diff, not only those that move the top. Times are whole
milliseconds where they come from ``E`` or the broker (the two truncations cancel on average),
so each figure is +-1 ms. "kept up": the feed, if the book topic grew at the rate of the diffs
sent while it was measured (the simulator's own lateness, when it is starved of CPU, shows in
``sim_to_producer``); the worker, if its lag at the end was under half a second of records.

Reproduce (a stack of your own; the TICKFLOW_* variables point every client at it)::

    export TICKFLOW_STACK__STATE_DIR=/tmp/bench-stack TICKFLOW_STACK__KAFKA_PORT=19792 \\
           TICKFLOW_STACK__REGISTRY_PORT=18781 TICKFLOW_KAFKA__BOOTSTRAP_SERVERS=127.0.0.1:19792 \\
           TICKFLOW_REGISTRY__URL=http://127.0.0.1:18781/apis/ccompat/v7
    .venv/bin/tickflow infra up
    .venv/bin/python bench/processors_bench.py throughput --records 30000 --rounds 3 \\
        --variants bare,bare-scaled,agent-memory,agent-rocksdb
    .venv/bin/python bench/processors_bench.py profile --records 30000   # cProfile of the agent
    .venv/bin/python bench/processors_bench.py profile --py-spy         # sampled instead (pip install py-spy)
    .venv/bin/python bench/processors_bench.py latency --rates 500,1000,1500 --duration 30
    .venv/bin/python bench/processors_bench.py latency --rates 5000 --duration 20
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

from harness import EndOffsets, ProcStats, Simulator, free_port, median, stop_process

from tickflow.config import load_settings
from tickflow.producer import EventProducer

PARTITIONS = 6
WEB_PORTS = range(16700, 16800)


# --- the records ---------------------------------------------------------------------------------


def _instruments(rng: random.Random, count: int) -> list[tuple[str, Decimal, Decimal, int]]:
    """(name, tick, lot, centre price in ticks) of ``count`` instruments."""
    specs = []
    for i in range(count):
        tick = Decimal(1).scaleb(-rng.choice((2, 3, 4, 5, 6, 8)))
        lot = Decimal(1).scaleb(-rng.choice((0, 2, 3, 5, 8)))
        specs.append((f"S{i:02d}", tick, lot, rng.randint(10_000, 2_000_000)))
    return specs


def book_records(instruments: int, count: int, snapshot_levels: int, seed: int = 5) -> list[Any]:
    """Binance spot book records as the feed produces them: a snapshot per instrument, then
    deltas of 1-10 levels a side with continuous ids (``U == previous u + 1``), never crossed
    (bids below a fixed centre, asks above), changes mostly near the top."""
    from tickflow.events import BookUpdate, BookUpdateKind, MarketType, PriceLevel

    rng = random.Random(seed)
    t_us = 1_700_000_000_000_000
    specs = _instruments(rng, instruments)
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


def trade_records(instruments: int, count: int, seed: int = 7) -> list[Any]:
    """Binance spot trades as the feed produces them: ``count`` trades over ``instruments``
    instruments, exchange time advancing 0.2-2 ms a trade (so 1 s klines close all along and
    1 m ones now and then), prices wandering a tick at a time, unique trade ids."""
    from tickflow.events import MarketType, Side, Trade

    rng = random.Random(seed)
    t_us = 1_700_000_000_000_000
    specs = [[*spec, 0] for spec in _instruments(rng, instruments)]  # + the next trade id
    out: list[Any] = []
    for _ in range(count):
        spec = rng.choice(specs)
        name, tick, lot, price, trade_id = spec
        spec[3] = price = max(1, price + rng.choice((-1, 0, 0, 1)))
        spec[4] = trade_id + 1
        t_us += rng.randint(200, 2_000)
        out.append(Trade(venue="binance-spot", market=MarketType.SPOT, symbol=f"{name}-USDT",
                         venue_symbol=f"{name}USDT", exchange_ts=t_us // 1000 * 1000, receive_ts=t_us,
                         trade_id=str(trade_id), price=price * tick, size=rng.randint(1, 10_000) * lot,
                         side=Side.BUY if rng.random() < 0.5 else Side.SELL))  # fmt: skip
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


def pick_decoder(codec: Any, decoder: str, payload: bytes) -> Callable[[bytes], Any]:
    """``typed``: ``AvroCodec.decode`` (typed events with ``Decimal``s: what any consumer of the
    topic gets); ``scaled``: the agents' own reader for the topic's event type (``payload``
    tells it), the compiled reader with decimals as integers at scale 18."""
    if decoder == "typed":
        return codec.decode
    from processors.book_records import book_reader
    from processors.kline_records import trade_reader

    readers = {"tickflow.BookUpdate": book_reader, "tickflow.Trade": trade_reader}
    make = readers.get(codec.decode_data(payload)[0].avro_name)
    return make(codec) if make is not None else codec.decode


def bare_loop(topic: str, count: int, decoder: str = "typed") -> dict[str, float]:
    """Consume ``topic`` from the start with confluent-kafka and decode every record
    (``pick_decoder``); times from the second record to the last: the first one's decode
    looks its schema up in the registry and sets the reader up, once per process (the agents
    pay theirs within their first batch: a few ms in a run of seconds)."""
    from confluent_kafka import Consumer

    from tickflow.codec import AvroCodec
    from tickflow.registry import SchemaRegistry

    settings = load_settings()
    conf = {**settings.kafka.client_config(), "group.id": f"bench-bare-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest", "enable.auto.commit": False}  # fmt: skip
    codec = AvroCodec(SchemaRegistry(settings.registry))
    consumer = Consumer(conf)
    consumer.subscribe([topic])
    first = next(m for m in iter(lambda: consumer.poll(1.0), 0) if m is not None and m.error() is None)
    decode = pick_decoder(codec, decoder, first.value())
    decode(first.value())  # the registry lookup and the reader's set-up: not timed
    seen = 1
    t0, cpu0 = time.monotonic(), time.process_time()
    while seen < count:
        for message in consumer.consume(min(1000, count - seen), 1.0):  # never waits for more than is left
            if message.error() is None:
                decode(message.value())
                seen += 1
    wall, cpu = time.monotonic() - t0, time.process_time() - cpu0
    consumer.close()
    return {"records": seen - 1, "wall": wall, "cpu": cpu}


def aiokafka_loop(topic: str, count: int) -> dict[str, float]:
    """The same with aiokafka (Faust's client library) instead of confluent-kafka, decoding with
    the agents' reader: what consuming the topic costs the agents before Faust and their logic."""
    import asyncio

    from aiokafka import AIOKafkaConsumer

    from tickflow.codec import AvroCodec
    from tickflow.registry import SchemaRegistry

    settings = load_settings()
    codec = AvroCodec(SchemaRegistry(settings.registry))

    async def run() -> dict[str, float]:
        consumer = AIOKafkaConsumer(topic, bootstrap_servers=settings.kafka.bootstrap_servers,
                                    group_id=f"bench-bare-{uuid.uuid4().hex[:8]}", auto_offset_reset="earliest",
                                    enable_auto_commit=False)  # fmt: skip
        await consumer.start()
        try:
            first = await consumer.getone()
            decode = pick_decoder(codec, "scaled", first.value)
            decode(first.value)  # not timed, as in ``bare_loop``
            seen = 1
            t0, cpu0 = time.monotonic(), time.process_time()
            while seen < count:
                batches = await consumer.getmany(timeout_ms=1000, max_records=10_000)
                for records in batches.values():
                    for record in records:
                        decode(record.value)
                        seen += 1
        finally:
            await consumer.stop()
        return {"records": seen - 1, "wall": time.monotonic() - t0, "cpu": time.process_time() - cpu0}

    return asyncio.run(run())


def run_bare(topic: str, count: int, decoder: str = "typed") -> dict[str, float]:
    argv = [sys.executable, __file__, "bare", "--topic", topic, "--records", str(count), "--decoder", decoder]
    out = subprocess.run(argv, check=True, capture_output=True, text=True, timeout=1200)
    return json.loads(out.stdout.strip().splitlines()[-1])


# --- the agent -----------------------------------------------------------------------------------


@dataclass
class WorkerRun:
    """A ``tickflow worker`` with a fresh app id on ``book`` (so it reads it from the start)."""

    book: str
    outputs: dict[str, str]
    store: str = "rocksdb://"
    #: The trade topic the kline agent reads (default: an empty topic of the run).
    trades: str | None = None
    extra_env: dict[str, str] = field(default_factory=dict)
    profile: Path | None = None
    app_id: str = field(default_factory=lambda: f"bench-proc-{uuid.uuid4().hex[:8]}")
    port: int = 0
    #: Where its web port is taken from (the first free one).
    ports: range = WEB_PORTS
    proc: subprocess.Popen | None = None
    sampler: subprocess.Popen | None = None
    data_dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="pthru-worker-")))

    def start(self) -> None:
        self.port = free_port(self.ports.start, self.ports.stop)
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
               "TICKFLOW_PROCESSORS__TRADE_TOPIC": self.trades or self.outputs["trades"],
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
        return self.view("books")

    def view(self, name: str) -> dict[str, Any] | None:
        """``GET /books`` or ``/klines`` (the agent's counters), ``None`` if not answering."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/{name}", timeout=5) as response:
                return json.loads(response.read())
        except OSError:
            return None

    def wait_recovered(self, timeout: float = 120, view: str = "books") -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited ({self.proc.returncode}); log in {self.data_dir}")
            books = self.view(view)
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


#: Topics of a run besides the topic measured: the book agent's outputs, the kline agent's inputs
#: and output (left empty when the book agent is measured), an empty book topic (for the book
#: agent when the kline agent is measured: ``--kind trades``).
OUTPUT_KINDS = ("bbo", "depth", "dlq", "trades", "klines", "derived", "idle-book")


def run_topics(run: str) -> list[str]:
    return [f"bench.proc.{kind}.{run}" for kind in OUTPUT_KINDS]


def output_topics(run: str) -> dict[str, str]:
    names = {kind: f"bench.proc.{kind}.{run}" for kind in OUTPUT_KINDS}
    create_topics(list(names.values()))
    return names


def run_agent(topic: str, count: int, store: str, outputs: dict[str, str], profile: Path | None = None,
              extra_env: dict[str, str] | None = None, kind: str = "book") -> dict[str, float]:  # fmt: skip
    """A worker's agent for ``kind`` (``book``: the book agent on ``topic``; ``trades``: the kline
    agent on ``topic``, the book agent on an empty topic) from recovery to every record done."""
    trades = kind == "trades"
    book = outputs["idle-book"] if trades else topic
    worker = WorkerRun(book, outputs, store=store, profile=profile, extra_env=extra_env or {},
                       trades=topic if trades else None)  # fmt: skip
    view = "klines" if trades else "books"
    worker.start()
    try:
        assert worker.proc is not None
        stats = ProcStats(worker.proc.pid)
        first = worker.wait_recovered(view=view)
        worker.sample()
        t0, cpu0, done0 = time.monotonic(), stats.cpu_seconds(), first["counters"]["records"]
        t_processed = cpu_processed = None
        while True:
            if worker.proc.poll() is not None:
                raise RuntimeError(f"worker exited ({worker.proc.returncode}); log in {worker.data_dir}")
            if t_processed is None:
                seen = worker.view(view)
                if seen is not None and seen["counters"]["records"] >= count:
                    t_processed, cpu_processed = time.monotonic(), stats.cpu_seconds()
                    times = seen["times"]
                    worker.stop_sampling()
            if t_processed is not None and committed(worker.app_id, topic) >= count:
                break
            time.sleep(0.1)
        t_committed, cpu_committed = time.monotonic(), stats.cpu_seconds()
        changelog = sum(n for t, n in end_offsets(_changelogs(worker.app_id, kind)).items())
        assert t_processed is not None and cpu_processed is not None
        # Wall: from the first records the agent took to the last applied, by its own clock (as
        # the bare loop's, from its first record to its last); the polling above only bounds it.
        wall = times["last_applied_at"] - times["first_batch_at"]
        return {"records": count - done0, "wall": wall, "wall_polled": t_processed - t0,
                "wall_committed": t_committed - t0, "cpu": cpu_committed - cpu0, "changelog": changelog}  # fmt: skip
    finally:
        worker.stop()


def _changelogs(app_id: str, kind: str = "book") -> list[str]:
    tables = ("kline-heads", "kline-closed") if kind == "trades" else ("book-levels", "book-heads")
    return [f"{app_id}-{table}-changelog" for table in tables]


# --- throughput ----------------------------------------------------------------------------------

#: Variant name -> how to run it on (topic, records, outputs). A trade variant (the kline agent
#: against a bare loop on the trade topic) adds its own entries and fill function.
VARIANTS: dict[str, Callable[[str, int, dict[str, str], str], dict[str, float]]] = {
    "bare": lambda topic, count, _, kind: run_bare(topic, count),
    "bare-scaled": lambda topic, count, _, kind: run_bare(topic, count, "scaled"),
    "bare-aiokafka": lambda topic, count, _, kind: run_bare(topic, count, "aiokafka"),
    "agent-rocksdb": lambda topic, count, outputs, kind: run_agent(topic, count, "rocksdb://", outputs, kind=kind),
    "agent-memory": lambda topic, count, outputs, kind: run_agent(topic, count, "memory://", outputs, kind=kind),
}


def throughput(args: argparse.Namespace) -> dict[str, Any]:
    run = uuid.uuid4().hex[:8]
    topic = args.topic or f"bench.proc.{args.kind}.{run}"
    if not args.topic and args.kind == "trades":
        create_topics([topic])
        print(f"filling {topic}: {args.records} trades over {args.instruments} instruments", flush=True)
        fill_topic(topic, trade_records(args.instruments, args.records))
    elif not args.topic:
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
    scaled_ratios: dict[str, list[float]] = {v: [] for v in variants if v.startswith("agent")}
    try:
        for n in range(args.rounds):
            order = variants if n % 2 == 0 else variants[::-1]
            got = {}
            for variant in order:
                got[variant] = VARIANTS[variant](topic, count, outputs, args.kind)
                r = got[variant]
                print(f"round {n + 1} {variant:14s} {r['records'] / r['wall']:9.0f} records/s  "
                      f"{r['cpu'] / r['records'] * 1e6:7.1f} CPU-µs/record", flush=True)  # fmt: skip
                results[variant].append(r)
            if "bare" in got:
                bare_rate = got["bare"]["records"] / got["bare"]["wall"]
                for variant in ratios:
                    ratios[variant].append(got[variant]["records"] / got[variant]["wall"] / bare_rate)
            if "bare-scaled" in got:
                scaled_rate = got["bare-scaled"]["records"] / got["bare-scaled"]["wall"]
                for variant in scaled_ratios:
                    scaled_ratios[variant].append(got[variant]["records"] / got[variant]["wall"] / scaled_rate)
    finally:
        delete_topics(run_topics(run))
        if not args.topic and not args.keep:
            delete_topics([topic])
    summary: dict[str, Any] = {"records": count, "rounds": args.rounds}
    print(f"\n{count} {'trades' if args.kind == 'trades' else 'book records'}, {args.rounds} rounds, medians")
    print("| variant | records/s (wall) | CPU-µs/record | records per CPU-s | changelog records/record | ÷ bare "
          "| ÷ bare-scaled |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|")
    for variant, rs in results.items():
        rate = median([r["records"] / r["wall"] for r in rs])
        cpu_us = median([r["cpu"] / r["records"] * 1e6 for r in rs])
        changelog = median([r.get("changelog", 0) / count for r in rs])
        ratio = median(ratios[variant]) if ratios.get(variant) else 1.0
        scaled = median(scaled_ratios[variant]) if scaled_ratios.get(variant) else None
        # The agents' rate as measured before they reported their own times: from the bench
        # seeing the tables recovered to seeing every record done (polled every 0.1 s).
        polled = median([r["records"] / r["wall_polled"] for r in rs]) if "wall_polled" in rs[0] else None
        summary[variant] = {"rate": rate, "cpu_us": cpu_us, "changelog_per_record": changelog, "ratio": ratio,
                            "ratio_scaled": scaled, "rate_polled": polled}  # fmt: skip
        print(f"| {variant} | {rate:,.0f} | {cpu_us:.1f} | {1e6 / cpu_us:,.0f} | {changelog:.2f} | {ratio:.2f} | "
              f"{'-' if scaled is None else f'{scaled:.2f}'} |")  # fmt: skip
    return summary


def profile(args: argparse.Namespace) -> dict[str, Any]:
    """One agent run under cProfile; prints the top functions by cumulative and by own time."""
    import pstats

    if args.folded:
        print_folded(args.folded)
        return {"profile": str(args.folded)}
    run = uuid.uuid4().hex[:8]
    topic = f"bench.proc.{args.kind}.{run}"
    create_topics([topic])
    trades = args.kind == "trades"
    fill_topic(topic, trade_records(args.instruments, args.records) if trades
               else book_records(args.instruments, args.records, args.snapshot_levels))  # fmt: skip
    outputs = output_topics(run)
    suffix = ".txt" if args.py_spy else ".prof"
    out = Path(tempfile.gettempdir()) / f"processors-profile-{run}{suffix}"
    try:
        result = run_agent(topic, args.records, args.store, outputs, profile=out, kind=args.kind)
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


# --- latency -------------------------------------------------------------------------------------

#: The broker stamps each record of these topics with its append time (ms): one clock for every
#: stage, whoever produced the record, and no client can set it.
LOG_APPEND_TIME = {"message.timestamp.type": "LogAppendTime"}
#: Web ports for the latency runs' workers (``--web-ports``).
LATENCY_WEB_PORTS = "16800-16899"


class RoutedProducer(EventProducer):
    """An ``EventProducer`` that writes the feed's topics in ``route`` to the bench's own and
    drops the others. A subclass, not a wrapping sink as the tests' ``RoutedSink``: the Binance
    stream takes its compiled hot path only with an ``EventProducer`` for a sink, and the bench
    is about the real producer."""

    def __init__(self, settings: Any, codec: Any, route: dict[str, str]) -> None:
        super().__init__(settings, codec)
        # ``EventProducer.send`` looks its (renamed) topic up again through ``sender``.
        self.route = {**route, **{target: target for target in route.values()}}

    def sender(self, topic: str, event_type: Any) -> Callable[[Any], None]:
        target = self.route.get(topic)
        return _drop if target is None else super().sender(target, event_type)

    def send(self, topic: str, event: Any, key: str | None = None, timestamp_ms: int | None = None) -> None:
        target = self.route.get(topic)
        if target is not None:
            super().send(target, event, key, timestamp_ms)


def _drop(event: Any) -> None:
    pass


def serve_simulator(args: argparse.Namespace) -> dict[str, Any]:
    """The ``simulate`` subcommand (a process of its own): the synthetic Binance spot market,
    paced at ``--rate`` market events per second (each a depth diff, with the trades and book
    ticker it causes), its clock pinned to the wall clock when the feed connects, for
    ``--duration`` market seconds; served until SIGTERM."""
    import asyncio
    import signal

    from simulator.binance import BinanceSynthetic

    async def serve() -> dict[str, Any]:
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        sim = BinanceSynthetic(args.symbols, seed=args.seed, rate=args.rate, duration=args.duration,
                               wall_clock=True, port=args.port)  # fmt: skip
        async with sim:
            print(f"ready on {sim.ws_url}", flush=True)
            await stop.wait()
            return {"frames_sent": sim.stats.frames_sent}

    return asyncio.run(serve())


def run_feed_process(args: argparse.Namespace) -> dict[str, Any]:
    """The ``feed`` subcommand (a process of its own): the tickflow Binance spot feed against the
    simulator, its book records to ``--topic``, until SIGTERM; then every record is flushed."""
    import asyncio
    import signal

    from producers.venues import VENUES
    from tickflow import topics
    from tickflow.codec import AvroCodec
    from tickflow.registry import SchemaRegistry

    async def run() -> dict[str, Any]:
        settings = load_settings()
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        with SchemaRegistry(settings.registry) as registry:
            producer = RoutedProducer(settings.kafka, AvroCodec(registry), {topics.BOOK: args.topic})
            feed = VENUES["binance-spot"].make_feed(
                args.symbols.split(","), producer, ws_url=f"ws://{args.address}", rest_url=f"http://{args.address}",
                venue_options={"channels": args.channels.split(",")},
            )  # fmt: skip
            task = asyncio.create_task(feed.run(stop))
            while not stop.is_set():  # delivery reports, as ``tickflow produce`` serves them
                producer.poll(0)
                await asyncio.sleep(0.1)
            await asyncio.wait_for(task, 30)
            producer.flush(60)
            return {"sent": producer.stats.sent, "failed": producer.stats.failed}

    return asyncio.run(run())


def run_relay(args: argparse.Namespace) -> dict[str, Any]:
    """The ``relay`` subcommand (a process of its own): the least any processor must do between
    the book topic and the best bid/offer topic, as the floor the worker is measured against.
    A confluent-kafka ``Consumer`` reads ``--book`` from the start, decodes each record with the
    agent's reader (``book_reader``: the compiled reader, integers at scale 18) and produces, for
    each book record, a ``BookTop`` of its first levels (no book kept, no validation, no state)
    through ``EventProducer`` (the feed's settings); until SIGTERM."""
    import signal

    from confluent_kafka import Consumer

    from processors.book_records import BookRecord, book_reader
    from processors.scaled import to_decimal
    from tickflow.codec import AvroCodec
    from tickflow.events import BookHealth, BookTop
    from tickflow.registry import SchemaRegistry

    settings = load_settings()
    stopped: list[int] = []
    signal.signal(signal.SIGTERM, lambda signum, frame: stopped.append(signum))
    consumer = Consumer({"bootstrap.servers": settings.kafka.bootstrap_servers, "group.id": f"relay-{uuid.uuid4()}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})  # fmt: skip
    consumer.subscribe([args.book])
    relayed = 0
    with SchemaRegistry(settings.registry) as registry:
        codec = AvroCodec(registry)
        read = book_reader(codec)
        producer = EventProducer(settings.kafka, codec)
        send = producer.sender(args.bbo, BookTop)
        while not stopped:
            # ``consume(n, timeout)`` waits for n records or the timeout: a record is waited for
            # here, then whatever else has arrived is taken without waiting.
            first = consumer.poll(0.05)
            for message in [first, *consumer.consume(1000, 0)] if first is not None else ():
                if message.error() is not None:
                    continue
                update = read(message.value())
                if not isinstance(update, BookRecord):
                    continue
                bid, ask = (update.bids or [None])[0], (update.asks or [None])[0]
                send(BookTop(venue=update.venue, market=update.market, symbol=update.symbol,
                             venue_symbol=update.venue_symbol, exchange_ts=update.exchange_ts,
                             receive_ts=update.receive_ts, processed_ts=time.time_ns() // 1000,
                             health=BookHealth.LIVE, update_id=update.last_update_id,
                             bid_price=to_decimal(bid[0]) if bid else None,
                             bid_size=to_decimal(bid[1]) if bid else None,
                             ask_price=to_decimal(ask[0]) if ask else None,
                             ask_size=to_decimal(ask[1]) if ask else None))  # fmt: skip
                relayed += 1
            producer.poll(0)
        producer.flush(60)
    consumer.close()
    return {"relayed": relayed}


@dataclass
class RelayRun:
    """``run_relay`` in a process of its own, in the worker's place in a latency run (the same
    calls as ``WorkerRun``): one best bid/offer record per book record, so its records processed
    are the best bid/offer topic's end offsets. ``relay=False``: no processor at all (the stages
    up to the book topic alone; "processed" is then the book topic's own end offsets)."""

    book: str
    bbo: str
    relay: bool = True
    proc: subprocess.Popen | None = None
    offsets: EndOffsets | None = None

    def start(self) -> None:
        self.offsets = EndOffsets(load_settings().kafka.bootstrap_servers, [self.bbo if self.relay else self.book])
        argv = [sys.executable, __file__, "relay", "--book", self.book, "--bbo", self.bbo]
        if not self.relay:  # something to poll and stop: the bench's own ``sleep``
            argv = ["sleep", "100000"]
        self.proc = subprocess.Popen(argv)

    def wait_recovered(self) -> None:
        pass

    def books(self) -> dict[str, Any]:
        assert self.offsets is not None
        return {"counters": {"records": self.offsets.total()}}

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, timeout=60)


@dataclass
class PinnedSimulator(Simulator):
    """``harness.Simulator`` (start, wait for the port, stop), running ``serve_simulator``: the
    ``tickflow simulate`` command has no option for the wall clock."""

    #: Market seconds from the first client to the market's end (then the feed idles).
    duration: float = 60.0

    def argv(self) -> list[str]:
        return [sys.executable, __file__, "simulate", "--symbols", str(self.symbols), "--rate", f"{self.rate:g}",
                "--seed", str(self.seed), "--port", str(self.port), "--duration", f"{self.duration:g}"]  # fmt: skip


def percentiles(values: list[float], missing: int = 0) -> dict[str, float | None]:
    """p50/p90/p99/max of ``values`` (ms); ``missing`` values count as larger than any (records the
    worker had not processed when the run ended): a percentile that falls on one is None."""
    ordered = sorted(values)
    n = len(ordered) + missing
    out: dict[str, float | None] = {"count": float(len(ordered))}
    for name, q in (("p50", 0.50), ("p90", 0.90), ("p99", 0.99), ("max", 1.0)):
        i = min(n - 1, int(q * n)) if n else 0
        out[name] = ordered[i] if i < len(ordered) else None
    return out


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f}"


@dataclass
class LatencyRun:
    """What one run leaves for the measurement: its topics' records and what was sampled."""

    #: (broker append time ms, event) of the book topic and of the best bid/offer topic.
    book: list[tuple[int, Any]]
    tops: list[tuple[int, Any]]
    #: Once a second: wall time since the feed started, book records appended, records the
    #: worker had processed, CPU-seconds of each process.
    samples: list[dict[str, float]]
    #: Wall time the feed process was started (s since the epoch).
    t_start: float
    #: Wall time the book topic stopped growing after the market ended (every record delivered).
    t_delivered: float
    #: Seconds the worker took after that to process everything (None: not within ``--drain``).
    drained: float | None
    #: Records it had not processed when the run ended.
    unprocessed: int
    #: Whether the simulator's backlog was all delivered before the feed was stopped.
    delivered: bool


def drive(args: argparse.Namespace, rate: float) -> LatencyRun:
    """Fresh topics, worker, simulator and feed; the market runs for the warm-up and the measured
    seconds (in its own clock, pinned to the wall clock when the feed connects), then stops, so
    that whatever the simulator or the feed still had queued is delivered too and measured:
    a run that ended on the wall clock instead would leave out the slowest records."""
    from tickflow.codec import AvroCodec
    from tickflow.consumer import EventConsumer, StartAt
    from tickflow.registry import SchemaRegistry

    run = uuid.uuid4().hex[:8]
    book = f"bench.lat.book.{run}"
    outputs = {kind: f"bench.lat.{kind}.{run}" for kind in OUTPUT_KINDS}
    create_topics([book, outputs["bbo"]], config=LOG_APPEND_TIME)
    create_topics([topic for kind, topic in outputs.items() if kind != "bbo"])  # the kline agent's: left empty
    first, last = (int(p) for p in args.web_ports.split("-"))
    extra_env = {"TICKFLOW_PROCESSORS__BATCH_WAIT": str(args.batch_wait)} if args.batch_wait is not None else {}
    worker: WorkerRun | RelayRun = (
        WorkerRun(book, outputs, store=args.store, ports=range(first, last + 1), extra_env=extra_env)
        if args.processor == "worker"
        else RelayRun(book, outputs["bbo"], relay=args.processor == "relay")
    )
    logs = Path(tempfile.mkdtemp(prefix="latency-"))
    sim = PinnedSimulator(symbols=args.symbols, rate=rate, seed=args.seed, log=logs / "simulator.log",
                          duration=args.warmup + args.duration)  # fmt: skip
    feed: subprocess.Popen | None = None
    samples: list[dict[str, float]] = []
    try:
        worker.start()
        worker.wait_recovered()  # the feed's first records find the agent running
        assert worker.proc is not None
        with sim:
            assert sim.proc is not None
            symbols = ",".join(s for s, _, _ in sim.exchange_info() or [])
            argv = [sys.executable, __file__, "feed", "--address", sim.address, "--symbols", symbols,
                    "--topic", book, "--channels", args.channels]  # fmt: skip
            with open(logs / "feed.log", "ab") as log:
                feed = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
            t_start = time.time()
            offsets = EndOffsets(load_settings().kafka.bootstrap_servers, [book])
            procs = {"worker": ProcStats(worker.proc.pid), "feed": ProcStats(feed.pid),
                     "simulator": ProcStats(sim.proc.pid)}  # fmt: skip
            # The market ends at least warm-up + duration after ``t_start`` (its clock starts
            # when the feed connects); then the feed gets the backlog until the topic stands still.
            t_end, still_since, previous = t_start + args.warmup + args.duration, time.time(), -1
            while True:
                for proc in (feed, worker.proc, sim.proc):
                    if proc.poll() is not None:
                        where = getattr(worker, "data_dir", "")
                        raise RuntimeError(f"a process exited ({proc.args}); logs in {logs} {where}")
                now, appended, books = time.time(), offsets.total(), worker.books()
                if books is not None:
                    sample = {"t": now - t_start, "appended": appended, "processed": books["counters"]["records"]}
                    samples.append({**sample, **{f"cpu_{k}": p.cpu_seconds() for k, p in procs.items()}})
                if appended != previous:
                    still_since, previous = now, appended
                delivered = now > t_end + 1 and now - still_since >= 3
                if delivered or now > t_end + args.drain:
                    break
                time.sleep(1.0)
            stop_process(feed, timeout=60)
        appended = offsets.total()
        processed = (worker.books() or {"counters": {"records": 0}})["counters"]["records"]
        drained, t_stop = None, time.monotonic()
        while time.monotonic() < t_stop + args.drain:
            processed = (worker.books() or {"counters": {"records": 0}})["counters"]["records"]
            if processed >= appended:
                drained = time.monotonic() - t_stop
                break
            time.sleep(0.2)
    finally:
        if feed is not None:
            stop_process(feed)
        worker.stop()
    # Both topics read back: every time is in the records (exchange, receive, processed) or is
    # the broker's append time.
    settings = load_settings()
    with SchemaRegistry(settings.registry) as registry:
        codec = AvroCodec(registry)
        with EventConsumer(settings.kafka, codec, [book], StartAt.beginning()) as consumer:
            book_records = [(m.timestamp_ms, m.event) for m in consumer.read_to_end()]
        with EventConsumer(settings.kafka, codec, [outputs["bbo"]], StartAt.beginning()) as consumer:
            tops = [(m.timestamp_ms, m.event) for m in consumer.read_to_end()]
    delete_topics([book, *outputs.values()])
    shutil.rmtree(logs, ignore_errors=True)  # kept when a run fails: the simulator's and the feed's logs
    unprocessed = max(0, appended - processed)
    return LatencyRun(book_records, tops, samples, t_start, still_since, drained, unprocessed, delivered)


def measure(args: argparse.Namespace, rate: float, run: LatencyRun) -> dict[str, Any]:
    """Latencies of the best bid/offer records whose book record's exchange time falls in the
    measured seconds, by stage; rates and lag over the same seconds."""
    from tickflow.events import BookTop, BookUpdate, BookUpdateKind

    w0, w1 = run.t_start + args.warmup, run.t_start + args.warmup + args.duration  # exchange time, s
    appended_at: dict[tuple[str, int], int] = {}
    to_book: list[float] = []  # simulator -> book topic, every delta (not only those that move the top)
    late_snapshots = 0
    for append_ms, event in run.book:
        if not isinstance(event, BookUpdate):
            continue
        appended_at[(event.venue_symbol, event.last_update_id)] = append_ms
        if event.kind is BookUpdateKind.SNAPSHOT and event.receive_ts > w0 * 1e6:
            late_snapshots += 1  # a book not yet live when the window opened: warm-up too short
        elif event.exchange_ts is not None and w0 * 1e6 <= event.exchange_ts < w1 * 1e6:
            to_book.append(append_ms - event.exchange_ts / 1000)
    stages: dict[str, list[float]] = {"sim_to_producer": [], "producer_to_book": [], "book_to_agent": [],
                                      "agent_to_bbo": []}  # fmt: skip
    total: list[tuple[float, float]] = []  # (exchange time s, latency ms)
    for append_ms, top in run.tops:
        if not isinstance(top, BookTop) or top.exchange_ts is None or not w0 * 1e6 <= top.exchange_ts < w1 * 1e6:
            continue
        total.append((top.exchange_ts / 1e6, append_ms - top.exchange_ts / 1000))
        stages["sim_to_producer"].append((top.receive_ts - top.exchange_ts) / 1000)
        book_ms = appended_at.get((top.venue_symbol, top.update_id if top.update_id is not None else -1))
        if book_ms is not None:
            stages["producer_to_book"].append(book_ms - top.receive_ts / 1000)
            stages["book_to_agent"].append(top.processed_ts / 1000 - book_ms)
            stages["agent_to_bbo"].append(append_ms - top.processed_ts / 1000)
    # Records the worker never processed have no best bid/offer record: counted as later than
    # any measured (in the share of records that make one), so a percentile past them is None.
    missing = round(run.unprocessed * len(total) / max(1, len(to_book) - run.unprocessed)) if run.unprocessed else 0
    during = [s for s in run.samples if args.warmup <= s["t"] <= args.warmup + args.duration]
    span = during[-1]["t"] - during[0]["t"] if len(during) >= 2 else 0.0

    def per_second(key: str) -> float:
        return (during[-1][key] - during[0][key]) / span if span else 0.0

    lag_end = int(during[-1]["appended"] - during[-1]["processed"]) if during else -1

    # p50 over each fifth of the window: flat when the pipeline keeps up, rising when a backlog grows.
    fifths = [[ms for t, ms in total if w0 + n * (w1 - w0) / 5 <= t < w0 + (n + 1) * (w1 - w0) / 5] for n in range(5)]
    return {
        "rate": rate,
        "symbols": args.symbols,
        "book_deltas": len(to_book),
        "appended_per_s": per_second("appended"),
        "processed_per_s": per_second("processed"),
        "lag_end": lag_end,
        "lag_max": int(max((s["appended"] - s["processed"] for s in during), default=0)),
        "delivered_s": run.t_delivered - w1,
        "drained_s": run.drained,
        "unprocessed": run.unprocessed,
        "delivered": run.delivered,
        # The simulator and the feed delivered the rate into the book topic while it was measured
        # (a simulator starved of CPU falls behind: its lateness is in ``sim_to_producer``) ...
        "feed_kept_up": run.delivered and per_second("appended") >= 0.95 * len(to_book) / args.duration,
        # ... and the worker was less than half a second of records behind at the end.
        "worker_kept_up": 0 <= lag_end <= max(100, rate / 2),
        "late_snapshots": late_snapshots,
        "cpu_per_s": {k: per_second(f"cpu_{k}") for k in ("worker", "feed", "simulator")},
        "load": Path("/proc/loadavg").read_text().split()[:3],
        "latency_ms": percentiles([ms for _, ms in total], missing),
        "p50_by_fifth_ms": [percentiles(f)["p50"] for f in fifths],
        "stages_ms": {"sim_to_book_topic": percentiles(to_book), **{k: percentiles(v) for k, v in stages.items()}},
    }


def latency(args: argparse.Namespace) -> dict[str, Any]:
    results = []
    for rate in (float(r) for r in args.rates.split(",")):
        print(f"rate {rate:g} market events/s over {args.symbols} symbols: {args.warmup:g} s warm-up, "
              f"{args.duration:g} s measured", flush=True)  # fmt: skip
        r = measure(args, rate, drive(args, rate))
        results.append(r)
        lat, cpu = r["latency_ms"], ", ".join(f"{k} {v:.2f}" for k, v in r["cpu_per_s"].items())
        print(f"  book topic {r['appended_per_s']:,.0f} records/s, worker {r['processed_per_s']:,.0f} records/s; "
              f"lag at the end {r['lag_end']:,} (max {r['lag_max']:,}); book topic complete "
              f"{r['delivered_s']:.1f} s after the window, worker {_ms(r['drained_s'])} s after that; "
              f"kept up: feed {r['feed_kept_up']}, worker {r['worker_kept_up']}; CPU-s/s {cpu}; "
              f"load {' '.join(r['load'])}", flush=True)  # fmt: skip
        if r["late_snapshots"] or not r["delivered"]:
            print(f"  warning: {r['late_snapshots']} books went live after the warm-up; "
                  f"backlog delivered: {r['delivered']}", flush=True)  # fmt: skip
        print(f"  simulator -> best bid/offer topic ({lat['count']:,.0f} records): p50 {_ms(lat['p50'])} ms, "
              f"p90 {_ms(lat['p90'])}, p99 {_ms(lat['p99'])}, max {_ms(lat['max'])}; p50 by fifth of the window: "
              + " ".join(_ms(p) for p in r["p50_by_fifth_ms"]), flush=True)  # fmt: skip
        for name, p in r["stages_ms"].items():
            print(f"    {name:18s} p50 {_ms(p['p50']):>8s}  p90 {_ms(p['p90']):>8s}  p99 {_ms(p['p99']):>8s}  "
                  f"max {_ms(p['max']):>8s} ms", flush=True)  # fmt: skip
    print("\n| market events/s | book topic records/s | worker records/s | lag at end | p50 ms | p90 ms | p99 ms "
          "| max ms |")  # fmt: skip
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        lat = r["latency_ms"]
        print(f"| {r['rate']:,.0f} | {r['appended_per_s']:,.0f} | {r['processed_per_s']:,.0f} | {r['lag_end']:,} | "
              f"{_ms(lat['p50'])} | {_ms(lat['p90'])} | {_ms(lat['p99'])} | {_ms(lat['max'])} |")  # fmt: skip
    return {"runs": results}


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
        p.add_argument("--kind", choices=("book", "trades"), default="book",
                       help="book records for the book agent, or trades for the kline agent")  # fmt: skip
        p.add_argument("--store", default="rocksdb://")
        p.add_argument("--decoder", choices=("typed", "scaled", "aiokafka"), default="typed",
                       help="bare: its decoder (aiokafka: scaled, with aiokafka, not confluent-kafka)")  # fmt: skip
        p.add_argument("--keep", action="store_true", help="keep the filled topic (printed) for later runs")
        p.add_argument("--py-spy", action="store_true", help="profile: sample with py-spy instead of cProfile")
        p.add_argument("--folded", type=Path, help="profile: only print the breakdown of this py-spy raw file")
    p = sub.add_parser("latency", help="simulator -> producer -> Kafka -> worker -> best bid/offer topic")
    p.add_argument("--rates", default="5000", help="market events (depth diffs) per second, all symbols; a list "
                   "(1000,2000,5000) runs each in turn")  # fmt: skip
    p.add_argument("--symbols", type=int, default=20)
    p.add_argument("--duration", type=float, default=30.0, help="seconds measured, after the warm-up")
    p.add_argument("--warmup", type=float, default=10.0, help="seconds from the feed's start not measured")
    p.add_argument("--drain", type=float, default=300.0, help="seconds the worker may take to catch up afterwards")
    p.add_argument("--channels", default="depth@100ms", help="the feed's Binance channels")
    p.add_argument("--store", default="memory://")
    p.add_argument("--batch-wait", type=float, help="the book agent's batch linger (s; default: the worker's)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--web-ports", default=LATENCY_WEB_PORTS, help="the worker's web port: the first free in this range")
    p.add_argument("--processor", choices=("worker", "relay", "none"), default="worker",
                   help="between the book topic and the best bid/offer topic: the tickflow worker, the bare "
                   "relay (the floor), or nothing (the stages up to the book topic alone)")  # fmt: skip
    p = sub.add_parser("simulate", help="(internal) the latency run's simulator")
    for name, kind in (("--symbols", int), ("--rate", float), ("--seed", int), ("--port", int), ("--duration", float)):
        p.add_argument(name, type=kind, required=True)
    p = sub.add_parser("relay", help="(internal) the latency run's bare relay")
    for name in ("--book", "--bbo"):
        p.add_argument(name, required=True)
    p = sub.add_parser("feed", help="(internal) the latency run's producer")
    for name in ("--address", "--symbols", "--topic", "--channels"):
        p.add_argument(name, required=True)
    args = parser.parse_args(sys.argv[1:] or ["throughput"])
    if args.command == "bare":
        result = (
            aiokafka_loop(args.topic, args.records)
            if args.decoder == "aiokafka"
            else bare_loop(args.topic, args.records, args.decoder)
        )
    else:
        commands = {"throughput": throughput, "profile": profile, "latency": latency, "simulate": serve_simulator,
                    "feed": run_feed_process, "relay": run_relay}  # fmt: skip
        result = commands[args.command](args)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
