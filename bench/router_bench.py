"""The order router's benchmarks: its overhead, and the commands a second one router sustains.

* ``overhead``: commands produced at ``--rate`` a second for ``--duration`` seconds. The figure
  is the router's own work: from a command consumed from Kafka (the batch it came in handed to
  the router) to its venue request handed to the HTTP client (decoding, the order lock, the
  pre-trade checks, the client order id, building and signing the request). Also shown: from
  the command produced to its answer committed on the event topic (Kafka both ways, the venue,
  the transaction), for context.
* ``throughput``: one router started, then ``--commands`` commands put on the topic at once;
  commands answered a second, from its first answer to its last. (A router *restarted* on a
  backlog asks the venue for each create it may have sent before: twice the requests there.)

The venue is ``tickflow simulate binance-spot --trading-port`` in a process of its own, with the
account's order and weight limits raised (a market maker's tier): every command is a real signed
REST round trip to it. The orders are IOC limits below the market, so each is answered EXPIRED
and nothing piles up at the venue. The router runs in this process (its statistics are read
directly); the Kafka broker is the bench stack's (``tickflow infra up``).

    .venv/bin/python bench/router_bench.py overhead --rate 500 --duration 20
    .venv/bin/python bench/router_bench.py throughput --commands 20000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import subprocess
import sys
import tempfile
import threading
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml
from confluent_kafka import Consumer, TopicPartition

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import REPO, TICKFLOW, ProcStats, free_port, stop_process
from bench.processors_bench import create_topics, percentiles
from processors.router.app import prepare
from processors.router.settings import RouterSettings
from tickflow.codec import AvroCodec
from tickflow.config import load_settings
from tickflow.events import CreateOrder, MarketType, OrderEvent, OrderType, Side, TimeInForce
from tickflow.producer import EventProducer
from tickflow.registry import SchemaRegistry

API_KEY, SECRET = "bench-key-" + secrets.token_hex(6), "bench-secret-" + secrets.token_hex(12)


class Venue:
    """The simulated Binance spot with its order API, in a process of its own."""

    def __init__(self, workdir: Path) -> None:
        self.port, self.trading_port = free_port(), free_port(19000, 19400)
        accounts = {"accounts": [{"name": "bench", "balances": {"USDT": "1000000000000"},
                                  "binance": {"api_key": API_KEY, "hmac_secret": SECRET}}]}  # fmt: skip
        self.accounts = workdir / "accounts.yaml"
        self.accounts.write_text(yaml.safe_dump(accounts))
        self.log = workdir / "simulator.log"
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> Venue:
        argv = [TICKFLOW, "simulate", "binance-spot", "--synthetic", "--symbols", "3", "--rate", "20",
                "--port", str(self.port), "--trading-port", str(self.trading_port), "--accounts", str(self.accounts),
                "--order-limit", "1000000000/10", "--weight-limit", "1000000000"]  # fmt: skip
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(argv, stdout=log, stderr=log, cwd=REPO)
        import urllib.request

        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.url}/api/v3/exchangeInfo", timeout=2) as response:
                    self.info = json.load(response)
                return self
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"the simulator did not start; see {self.log}")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.trading_port}"

    def __exit__(self, *_: object) -> None:
        if self.proc is not None:
            stop_process(self.proc, timeout=10)

    def below_market(self) -> tuple[str, Decimal, Decimal]:
        """(symbol BASE-QUOTE, an IOC buy price far below the market, a size), from its depth."""
        import urllib.request

        symbol = self.info["symbols"][0]
        filters = {f["filterType"]: f for f in symbol["filters"]}
        tick, step = Decimal(filters["PRICE_FILTER"]["tickSize"]), Decimal(filters["LOT_SIZE"]["stepSize"])
        with urllib.request.urlopen(
            f"http://127.0.0.1:{self.port}/api/v3/depth?symbol={symbol['symbol']}&limit=5"
        ) as r:
            bid = Decimal(json.load(r)["bids"][0][0])
        price = (bid * Decimal("0.9") / tick).to_integral_value() * tick
        size = max(step, (Decimal(20) / price / step).to_integral_value() * step + step)
        return f"{symbol['baseAsset']}-{symbol['quoteAsset']}", price.normalize(), size.normalize()


def router_settings(venue: Venue, topics: dict[str, str]) -> RouterSettings:
    os.environ["BENCH_ROUTER_KEY"], os.environ["BENCH_ROUTER_SECRET"] = API_KEY, SECRET
    return RouterSettings(
        group_id=f"bench-router-{secrets.token_hex(4)}", instance_id="bench",
        commands_topic=topics["commands"], events_topic=topics["events"], state_topic=topics["state"],
        control_topic=topics["control"], bbo_topic=topics["bbo"], max_command_age=3600, reconcile_interval=60,
        accounts={"bench": {"venues": {"binance-spot": {"api_key": {"env": "BENCH_ROUTER_KEY"},
                                                        "secret": {"env": "BENCH_ROUTER_SECRET"}}},
                            "limits": {"price_band": None}}},
        venues={"binance-spot": {"rest_url": venue.url, "order_limit": (1_000_000_000, 10),
                                 "weight_per_minute": 1_000_000_000}},
    )  # fmt: skip


def make_topics(run: str) -> dict[str, str]:
    names = {kind: f"bench.router.{run}.{kind}" for kind in ("commands", "events", "state", "control", "bbo")}
    create_topics([names["commands"], names["events"], names["bbo"]], partitions=6)
    create_topics([names["state"]], partitions=6, config={"cleanup.policy": "compact"})
    create_topics([names["control"]], partitions=1, config={"cleanup.policy": "compact"})
    return names


def commands(count: int, symbol: str, price: Decimal, size: Decimal) -> list[CreateOrder]:
    run = secrets.token_hex(3)
    return [CreateOrder(command_id=f"{run}-c{n}", account="bench", order_id=f"{run}-o{n}", venue="binance-spot",
                        market=MarketType.SPOT, symbol=symbol, issued_ts=0, side=Side.BUY, order_type=OrderType.LIMIT,
                        time_in_force=TimeInForce.IOC, price=price, size=size) for n in range(count)]  # fmt: skip


class Answers(threading.Thread):
    """Reads the event topic (read committed) and notes when each command's answer arrived."""

    def __init__(self, kafka: Any, codec: AvroCodec, topic: str, expected: int) -> None:
        super().__init__(daemon=True)
        self.consumer = Consumer({**kafka.client_config(), "group.id": f"bench-{secrets.token_hex(4)}",
                                  "isolation.level": "read_committed", "enable.auto.commit": False})  # fmt: skip
        parts = self.consumer.list_topics(topic, timeout=10).topics[topic].partitions
        self.consumer.assign([TopicPartition(topic, p, 0) for p in parts])
        self.codec, self.expected = codec, expected
        self.answered: dict[str, float] = {}
        self.statuses: dict[str, int] = {}
        self.done = threading.Event()

    def run(self) -> None:
        while len(self.answered) < self.expected:
            for msg in self.consumer.consume(1000, 0.2):
                if msg.error():
                    continue
                event = self.codec.decode(msg.value())
                if isinstance(event, OrderEvent) and event.command_id and event.status.value != "UNKNOWN_OUTCOME":
                    self.answered.setdefault(event.command_id, time.time())
                    self.statuses[event.status.value] = self.statuses.get(event.status.value, 0) + 1
        self.done.set()
        self.consumer.close()


def thread_cpu() -> dict[str, float]:
    """CPU seconds of this process's threads by name (the main thread: the router's event loop;
    librdkafka's threads are named rdk:*)."""
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[str, float] = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            name = Path(f"/proc/self/task/{tid}/comm").read_text().strip()
            fields = Path(f"/proc/self/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        name = "event loop" if int(tid) == os.getpid() else "librdkafka" if name.startswith("rdk:") else "other"
        out[name] = out.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / tick
    return out


async def run_router(settings: RouterSettings, tickflow: Any, until: threading.Event) -> Any:
    router = await prepare(settings, tickflow)
    stop = asyncio.Event()

    async def watch() -> None:
        await asyncio.to_thread(until.wait)
        stop.set()

    watcher = asyncio.create_task(watch())
    started = time.process_time()
    before = thread_cpu()
    await router.run(stop)
    cpu = time.process_time() - started
    after = thread_cpu()
    router.thread_cpu = {name: round(after[name] - before.get(name, 0.0), 2) for name in after}
    await watcher
    router.market.close()
    await router.aclose()
    return router, cpu


def overhead(args: argparse.Namespace) -> dict[str, Any]:
    tickflow = load_settings()
    codec = AvroCodec(SchemaRegistry(tickflow.registry))
    with tempfile.TemporaryDirectory() as tmp, Venue(Path(tmp)) as venue:
        topics = make_topics(secrets.token_hex(3))
        symbol, price, size = venue.below_market()
        batch = commands(int(args.rate * args.duration), symbol, price, size)
        answers = Answers(tickflow.kafka, codec, topics["events"], len(batch))
        answers.start()
        sent_at: dict[str, float] = {}
        ready = threading.Event()

        def send() -> None:
            ready.wait()
            with EventProducer(tickflow.kafka, codec, config={"linger.ms": 0}) as producer:
                start = time.perf_counter()
                for n, command in enumerate(batch):
                    delay = start + n / args.rate - time.perf_counter()
                    if delay > 0:
                        time.sleep(delay)
                    command.issued_ts = time.time_ns() // 1000
                    sent_at[command.command_id] = time.time()
                    producer.send(topics["commands"], command)
                    producer.poll(0)

        sender = threading.Thread(target=send, daemon=True)
        sender.start()

        async def main() -> Any:
            router_task = asyncio.create_task(run_router(router_settings(venue, topics), tickflow, answers.done))
            await asyncio.sleep(3.0)  # the router joins its group and reads its state first
            ready.set()
            return await router_task

        venue_cpu = ProcStats(venue.proc.pid).cpu_seconds()  # type: ignore[union-attr]
        router, cpu = asyncio.run(main())
        venue_cpu = ProcStats(venue.proc.pid).cpu_seconds() - venue_cpu  # type: ignore[union-attr]
        latency = [s * 1000 for s in router.stats.send_latency]
        round_trip = [(answers.answered[c] - sent_at[c]) * 1000 for c in answers.answered if c in sent_at]
        return {"mode": "overhead", "rate": args.rate, "commands": len(batch), "statuses": answers.statuses,
                "router_overhead_ms": percentiles(latency), "produced_to_answer_committed_ms": percentiles(round_trip),
                "router_cpu_s_per_command_ms": round(cpu / len(batch) * 1000, 3),
                "venue_cpu_s_per_command_ms": round(venue_cpu / len(batch) * 1000, 3)}  # fmt: skip


def throughput(args: argparse.Namespace) -> dict[str, Any]:
    tickflow = load_settings()
    codec = AvroCodec(SchemaRegistry(tickflow.registry))
    with tempfile.TemporaryDirectory() as tmp, Venue(Path(tmp)) as venue:
        topics = make_topics(secrets.token_hex(3))
        symbol, price, size = venue.below_market()
        batch = commands(args.commands, symbol, price, size)
        answers = Answers(tickflow.kafka, codec, topics["events"], len(batch))
        answers.start()

        def send() -> None:
            with EventProducer(tickflow.kafka, codec) as producer:
                now = time.time_ns() // 1000
                for command in batch:
                    command.issued_ts = now
                    producer.send(topics["commands"], command)

        async def main() -> Any:
            router_task = asyncio.create_task(run_router(router_settings(venue, topics), tickflow, answers.done))
            await asyncio.sleep(3.0)  # the router joins its group and reads its state first
            await asyncio.to_thread(send)
            return await router_task

        venue_cpu = ProcStats(venue.proc.pid).cpu_seconds()  # type: ignore[union-attr]
        router, cpu = asyncio.run(main())
        venue_cpu = ProcStats(venue.proc.pid).cpu_seconds() - venue_cpu  # type: ignore[union-attr]
        times = sorted(answers.answered.values())
        elapsed = times[-1] - times[0]
        return {"mode": "throughput", "commands": len(batch), "statuses": answers.statuses,
                "seconds_first_to_last_answer": round(elapsed, 2),
                "commands_per_second": round((len(times) - 1) / elapsed, 1) if elapsed else None,
                "router_cpu_s_per_command_ms": round(cpu / len(batch) * 1000, 3),
                "venue_cpu_s_per_command_ms": round(venue_cpu / len(batch) * 1000, 3),
                "cpu_seconds_by_thread": router.thread_cpu, "transactions": router.stats.transactions}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    modes = parser.add_subparsers(dest="mode", required=True)
    over = modes.add_parser("overhead")
    over.add_argument("--rate", type=float, default=500.0)
    over.add_argument("--duration", type=float, default=20.0)
    through = modes.add_parser("throughput")
    through.add_argument("--commands", type=int, default=20_000)
    args = parser.parse_args()
    result = overhead(args) if args.mode == "overhead" else throughput(args)
    print(json.dumps(result, indent=2, default=str))


if __name__ == "__main__":
    main()
