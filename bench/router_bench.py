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
REST round trip to it, and its private stream is followed. The orders are IOC limits below the
market, so each is answered EXPIRED and nothing piles up at the venue. The router is ``tickflow
router`` in a process of its own, as users run it: its overhead percentiles come from its
``/status``, its CPU from ``/proc``. This process produces the commands and reads the answers.
The Kafka broker is the bench stack's (``tickflow infra up``).

    .venv/bin/python bench/router_bench.py overhead --rate 500 --duration 20
    .venv/bin/python bench/router_bench.py throughput --commands 20000
"""

from __future__ import annotations

import argparse
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


def router_config(venue: Venue, topics: dict[str, str], workdir: Path) -> Path:
    config = {"router": {
        "group_id": f"bench-router-{secrets.token_hex(4)}", "instance_id": "bench",
        "commands_topic": topics["commands"], "events_topic": topics["events"], "state_topic": topics["state"],
        "control_topic": topics["control"], "bbo_topic": topics["bbo"], "max_command_age": 3600,
        "reconcile_interval": 60, "commit_interval_ms": int(os.environ.get("BENCH_COMMIT_MS", "20")),
        "accounts": {"bench": {"venues": {"binance-spot": {"api_key": {"env": "BENCH_ROUTER_KEY"},
                                                           "secret": {"env": "BENCH_ROUTER_SECRET"}}},
                               "limits": {"price_band": None}}},
        "venues": {"binance-spot": {"rest_url": venue.url, "user_stream_url": f"ws://127.0.0.1:{venue.port}/ws-api/v3",
                                    "order_limit": [1_000_000_000, 10], "weight_per_minute": 1_000_000_000}},
    }}  # fmt: skip
    path = workdir / "router.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


class Router:
    """``tickflow router`` in its own process, with its status server."""

    def __init__(self, config: Path, workdir: Path) -> None:
        self.config, self.log, self.port = config, workdir / "router.log", free_port(19400, 19600)
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> Router:
        env = {**os.environ, "BENCH_ROUTER_KEY": API_KEY, "BENCH_ROUTER_SECRET": SECRET}
        argv = [TICKFLOW, "router", "--router-config", str(self.config), "--status-port", str(self.port)]
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=self.log.open("ab"), env=env, cwd=REPO)
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if b"router ready" in line:
                return self
        raise RuntimeError(f"the router did not start; see {self.log}")

    def status(self) -> dict[str, Any]:
        import urllib.request

        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/status", timeout=10) as response:
            return json.load(response)

    def cpu(self) -> float:
        assert self.proc is not None
        return ProcStats(self.proc.pid).cpu_seconds()

    def __exit__(self, *_: object) -> None:
        if self.proc is not None:
            stop_process(self.proc, timeout=30)


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


def stream_messages(status: dict[str, Any]) -> int:
    """The private stream's messages the router read; a bench run without them measured a router
    that skipped the stream's work, and is refused."""
    streams = [v["stream"] for v in status["venues"] if v.get("stream")]
    count = sum(s["messages"] for s in streams)
    if not count:
        raise RuntimeError(f"the router read no private stream message: {streams}")
    return count


def overhead(args: argparse.Namespace) -> dict[str, Any]:
    tickflow = load_settings()
    codec = AvroCodec(SchemaRegistry(tickflow.registry))
    with tempfile.TemporaryDirectory() as tmp, Venue(Path(tmp)) as venue:
        topics = make_topics(secrets.token_hex(3))
        symbol, price, size = venue.below_market()
        batch = commands(int(args.rate * args.duration), symbol, price, size)
        with Router(router_config(venue, topics, Path(tmp)), Path(tmp)) as router:
            answers = Answers(tickflow.kafka, codec, topics["events"], len(batch))
            answers.start()
            sent_at: dict[str, float] = {}
            cpu, venue_cpu = router.cpu(), ProcStats(venue.proc.pid).cpu_seconds()  # type: ignore[union-attr]
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
            answers.done.wait(120)
            status = router.status()
            cpu, venue_cpu = router.cpu() - cpu, ProcStats(venue.proc.pid).cpu_seconds() - venue_cpu  # type: ignore[union-attr]
        round_trip = [(answers.answered[c] - sent_at[c]) * 1000 for c in answers.answered if c in sent_at]
        return {"mode": "overhead", "rate": args.rate, "commands": len(batch), "statuses": answers.statuses,
                "router_overhead_ms (consumed -> request sent, less waits for the venue)": status["overhead_ms"],
                "of_which_queued_ms (consumed -> its turn, behind the commands that came with it)": status["queued_ms"],
                "waited_for_the_venue_ms (rate budgets, a free connection)": status["venue_wait_ms"],
                "kafka_delivery_ms (produced -> consumed by the router)": status["delivery_ms"],
                "produced_to_answer_committed_ms": percentiles(round_trip),
                "router_cpu_ms_per_command": round(cpu / len(batch) * 1000, 3),
                "venue_cpu_ms_per_command": round(venue_cpu / len(batch) * 1000, 3),
                "private_stream_messages": stream_messages(status)}  # fmt: skip


def throughput(args: argparse.Namespace) -> dict[str, Any]:
    tickflow = load_settings()
    codec = AvroCodec(SchemaRegistry(tickflow.registry))
    with tempfile.TemporaryDirectory() as tmp, Venue(Path(tmp)) as venue:
        topics = make_topics(secrets.token_hex(3))
        symbol, price, size = venue.below_market()
        batch = commands(args.commands, symbol, price, size)
        with Router(router_config(venue, topics, Path(tmp)), Path(tmp)) as router:
            answers = Answers(tickflow.kafka, codec, topics["events"], len(batch))
            answers.start()
            cpu, venue_cpu = router.cpu(), ProcStats(venue.proc.pid).cpu_seconds()  # type: ignore[union-attr]
            with EventProducer(tickflow.kafka, codec) as producer:
                now = time.time_ns() // 1000
                for command in batch:
                    command.issued_ts = now
                    producer.send(topics["commands"], command)
            answers.done.wait(600)
            status = router.status()
            cpu, venue_cpu = router.cpu() - cpu, ProcStats(venue.proc.pid).cpu_seconds() - venue_cpu  # type: ignore[union-attr]
        times = sorted(answers.answered.values())
        elapsed = times[-1] - times[0]
        return {"mode": "throughput", "commands": len(batch), "statuses": answers.statuses,
                "seconds_first_to_last_answer": round(elapsed, 2),
                "commands_per_second": round((len(times) - 1) / elapsed, 1) if elapsed else None,
                "router_cpu_ms_per_command": round(cpu / len(batch) * 1000, 3),
                "router_capacity_per_core": round(len(batch) / cpu) if cpu else None,
                "venue_cpu_ms_per_command": round(venue_cpu / len(batch) * 1000, 3),
                "transactions": status["transactions"], "private_stream_messages": stream_messages(status)}  # fmt: skip


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
