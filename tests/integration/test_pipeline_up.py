"""``tickflow up``: the whole pipeline against the simulator, its status changing while it runs,
stopped cleanly by its own end, and by ``tickflow down`` from another process.

The pipeline runs on the session's broker and registry as a configured (external) cluster: its
own stack settings name a state directory and ports where nothing runs, so it neither starts
nor stops the session's stack."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from decimal import ROUND_CEILING, Decimal
from pathlib import Path

import pytest
import yaml

from tickflow.config import Settings


def free_ports(count: int, start: int) -> list[int]:
    """``count`` consecutive free ports from ``start`` on (the pipeline numbers its simulators'
    ports on from the first)."""
    base = start
    while True:
        ports = list(range(base, base + count))
        for port in ports:
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    break
        else:
            return ports
        base += count


@pytest.fixture
def pipeline_env(settings: Settings, tmp_path: Path) -> tuple[dict[str, str], Path]:
    # Ports from a base of this process's own (test runs side by side on one machine).
    sim_a, sim_b, trading_a, trading_b, producer, worker, router, kafka, registry = free_ports(
        9, 28000 + os.getpid() % 500 * 9
    )
    config = tmp_path / "pipeline.yaml"
    venues = [{"venue": "binance-spot", "symbols": 4, "rate": 100}, {"venue": "coinbase", "symbols": 3, "rate": 60}]
    config.write_text(yaml.safe_dump({"venues": venues, "simulator_port": sim_a, "producer_port": producer,
                                      "worker_port": worker, "trading_port": trading_a,
                                      "router_port": router}))  # fmt: skip
    assert sim_b == sim_a + 1 and trading_b == trading_a + 1  # the second simulator's ports
    env = {**os.environ, "TICKFLOW_KAFKA__BOOTSTRAP_SERVERS": settings.kafka.bootstrap_servers,
           "TICKFLOW_REGISTRY__URL": settings.registry.url, "TICKFLOW_STACK__STATE_DIR": str(tmp_path / "state"),
           "TICKFLOW_STACK__KAFKA_PORT": str(kafka), "TICKFLOW_STACK__REGISTRY_PORT": str(registry)}  # fmt: skip
    return env, config


def up(env: dict[str, str], config: Path, *extra: str) -> subprocess.Popen:
    argv = [sys.executable, "-m", "tickflow.cli", "up", "--pipeline", str(config), "--json", *extra]
    return subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read().decode()


def get_until(url: str, wanted: str, timeout: float) -> str:
    """The page at ``url`` once it contains ``wanted`` (a worker reports a book live only once
    it has read the book's snapshot: later than the topic shows it, on a loaded machine)."""
    deadline = time.monotonic() + timeout
    while wanted not in (page := get(url)):
        if time.monotonic() > deadline:
            shown = [line for line in page.splitlines() if wanted.split("{")[0] in line]
            raise AssertionError(f"no {wanted!r} in {timeout:.0f}s; instead: {shown}")
        time.sleep(0.5)
    return page


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def lines_until(proc: subprocess.Popen, done: callable, timeout: float) -> list[dict]:  # type: ignore[valid-type]
    assert proc.stdout is not None
    seen: list[dict] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        seen.append(json.loads(line))
        if done(seen):
            return seen
    last = json.dumps(seen[-1])[:2000] if seen else None
    errors = proc.stderr.read() if proc.poll() is not None and proc.stderr else ""
    raise AssertionError(f"no such status in {timeout:.0f}s; last: {last}; stderr: {errors}")


def live_everywhere(status: dict) -> bool:
    producer = status.get("producer") or {}
    feeds = producer.get("feeds", [])
    books = status.get("books") or {}
    return (
        len(feeds) == 2
        and all(book["book"] == "live" for feed in feeds for book in feed["symbols"].values())
        and sum(1 for b in books.values() if b["health"] == "LIVE" and b["best_bid"] and b["best_ask"]) >= 7
        and all(w.get("healthy") for w in status["workers"])
    )


def test_the_pipeline_runs_end_to_end_and_its_numbers_move(pipeline_env: tuple[dict[str, str], Path]) -> None:
    env, config = pipeline_env
    proc = up(env, config, "--for", "240")
    try:
        seen = lines_until(proc, lambda s: live_everywhere(s[-1]), timeout=200)
        first = seen[-1]
        later = lines_until(proc, lambda s: len(s) >= 4, timeout=60)[-1]
        assert all(p["running"] for p in later["processes"]) and len(later["processes"]) == 5
        for before, after in zip(first["producer"]["feeds"], later["producer"]["feeds"], strict=True):
            assert after["counters"]["events"] > before["counters"]["events"]  # the numbers move
            assert after["counters"]["malformed_frames"] == 0
            assert all(c["state"] in ("CONNECTED", "SUBSCRIBED") for c in after["connections"])
        assert later["producer"]["kafka"]["delivered"] > first["producer"]["kafka"]["delivered"]
        assert later["producer"]["kafka"]["failed"] == 0
        assert later["lag"] is not None and set(later["lag"]) == {"tickflow.book", "tickflow.trades"}
        # Prometheus metrics of each process, read from their own counters.
        config_data = yaml.safe_load(config.read_text())
        producer_metrics = get(f"http://127.0.0.1:{config_data['producer_port']}/metrics")
        assert 'tickflow_producer_events_total{venue="coinbase"}' in producer_metrics
        assert 'tickflow_producer_book_live{symbol="BTCUSDT",venue="binance-spot"} 1.0' in producer_metrics
        assert 'quantile="0.99",stage="rtt"' in producer_metrics  # librdkafka's windows, every 5 s
        book_live = 'tickflow_worker_book_health{symbol="BTC-USD",venue="coinbase"} 1.0'
        worker_metrics = get_until(f"http://127.0.0.1:{config_data['worker_port']}/metrics", book_live, 60)
        assert "tickflow_worker_books_records_total" in worker_metrics
        count = next(
            line for line in worker_metrics.splitlines() if line.startswith("tickflow_worker_bbo_latency_seconds_count")
        )
        assert float(count.split()[-1]) > 0  # the latency histogram is fed
        assert 'tickflow_worker_lag_records{agent="books",' in worker_metrics
        # The order router runs with the local account: `tickflow order` places an order and cancels it.
        assert later["router"] is not None and later["router"]["venues"]
        lines_until(proc, lambda s: (s[-1].get("router") or {}).get("quotes_read", 0) > 0, 60)  # the price band's
        order_id = place_and_cancel_an_order(env, config_data)
        router_metrics = get(f"http://127.0.0.1:{config_data['router_port']}/metrics")
        assert 'tickflow_router_outcomes_total{status="ACCEPTED"} 1' in router_metrics
        assert 'tickflow_router_outcomes_total{status="CANCELED"} 1' in router_metrics
        orders = lines_until(proc, lambda s: (s[-1].get("router") or {}).get("outcomes", {}).get("CANCELED"), 30)[-1]
        assert orders["router"]["commands"] == 2 and orders["router"]["open_orders"] == 0
        # kill -9 the producer: the supervisor starts it again, and events flow again.
        producer = next(p for p in later["processes"] if p["name"] == "producer")
        os.kill(producer["pid"], signal.SIGKILL)

        def restarted(seen: list[dict]) -> bool:
            now = seen[-1]
            again = next(p for p in now["processes"] if p["name"] == "producer")
            delivered = ((now.get("producer") or {}).get("kafka") or {}).get("delivered", 0)
            return again["restarts"] == 1 and again["running"] and again["pid"] != producer["pid"] and delivered > 0

        back = lines_until(proc, restarted, timeout=120)[-1]
        pids = [p["pid"] for p in back["processes"]]
        state = Path(env["TICKFLOW_STACK__STATE_DIR"]) / "pipeline" / "pipeline.json"
        assert json.loads(state.read_text())["pid"] == proc.pid
    finally:
        # ``tickflow down`` from another process: the supervisor stops everything and exits.
        down = subprocess.run([sys.executable, "-m", "tickflow.cli", "down"], env=env, capture_output=True, text=True,
                              timeout=180)  # fmt: skip
        exit_code = proc.wait(120)
    assert exit_code == 0, proc.stderr.read() if proc.stderr else ""
    assert down.returncode == 0 and "stopped: pipeline" in down.stderr
    assert not [pid for pid in pids if alive(pid)]
    assert not state.exists()
    log = proc.stderr.read() if proc.stderr else ""
    assert "stopping worker 1" in log and "stopping simulator binance-spot" in log
    assert "producer exited (code -9): starting it again (restart 1" in log
    assert_no_secret_anywhere(env, Path(env["TICKFLOW_STACK__STATE_DIR"]) / "pipeline", order_id)


def place_and_cancel_an_order(env: dict[str, str], config: dict) -> str:
    """``tickflow order create`` (a buy at the best bid, worth about 20 USDT) and ``cancel``."""
    info = json.loads(get(f"http://127.0.0.1:{config['simulator_port']}/api/v3/exchangeInfo"))
    symbol = info["symbols"][0]
    filters = {f["filterType"]: f for f in symbol["filters"]}
    step, tick = Decimal(filters["LOT_SIZE"]["stepSize"]), Decimal(filters["PRICE_FILTER"]["tickSize"])
    depth = json.loads(get(f"http://127.0.0.1:{config['simulator_port']}/api/v3/depth?symbol={symbol['symbol']}"))
    price = (Decimal(depth["bids"][0][0]) * Decimal("0.99") / tick).to_integral_value() * tick  # rests: not filled
    size = (Decimal(20) / price / step).to_integral_value(rounding=ROUND_CEILING) * step
    order_id = f"pipeline-test-{os.getpid()}"
    normalized = f"{symbol['baseAsset']}-{symbol['quoteAsset']}"
    common = ["--account", "local", "--venue", "binance-spot", "--symbol", normalized, "--order-id", order_id]
    tickflow = [sys.executable, "-m", "tickflow.cli", "order"]
    created = subprocess.run([*tickflow, "create", *common, "--side", "BUY", "--price", f"{price.normalize():f}",
                              "--size", f"{size.normalize():f}", "--json"], env=env, capture_output=True, text=True,
                             timeout=60)  # fmt: skip
    assert created.returncode == 0, created.stdout + created.stderr
    assert '"status": "ACCEPTED"' in created.stdout, created.stdout
    canceled = subprocess.run([*tickflow, "cancel", *common], env=env, capture_output=True, text=True, timeout=60)
    assert canceled.returncode == 0 and "CANCELED" in canceled.stdout, canceled.stdout + canceled.stderr
    return order_id


def assert_no_secret_anywhere(env: dict[str, str], pipeline_dir: Path, order_id: str) -> None:
    """The local account's API keys and secrets appear in no log of the run and in no record of
    any tickflow topic written during it (raw bytes: keys, values and headers)."""
    from confluent_kafka import Consumer, TopicPartition

    secrets = []
    for path in (pipeline_dir / "secrets").iterdir():
        text = path.read_text().strip()
        secrets.append(text)
        secrets += [line for line in text.splitlines() if len(line) >= 16 and "-----" not in line]  # PEM lines
    assert len(secrets) >= 4
    for log in pipeline_dir.glob("*.log"):
        content = log.read_text(errors="replace")
        leaked = [s[:6] for s in secrets if s in content]
        assert not leaked, f"a secret ({leaked}...) is in {log.name}"
    consumer = Consumer({"bootstrap.servers": env["TICKFLOW_KAFKA__BOOTSTRAP_SERVERS"], "enable.auto.commit": False,
                         "group.id": f"grep-{os.getpid()}", "enable.partition.eof": True})  # fmt: skip
    try:
        names = [t for t in consumer.list_topics(timeout=10).topics if t.startswith("tickflow.")]
        since = int((time.time() - 900) * 1000)
        wanted = [TopicPartition(t, p, since) for t in names for p in consumer.list_topics(t).topics[t].partitions]
        assignment = [tp for tp in consumer.offsets_for_times(wanted, timeout=10) if tp.offset >= 0]
        consumer.assign(assignment)
        left, records, seen_order = {(tp.topic, tp.partition) for tp in assignment}, 0, False
        needles = [s.encode() for s in secrets]
        while left:
            for msg in consumer.consume(10_000, 2.0) or [None]:
                if msg is None:
                    left.clear()  # quiet: nothing more is coming
                    break
                if msg.error():
                    left.discard((msg.topic(), msg.partition()))
                    continue
                records += 1
                raw = (msg.key() or b"") + (msg.value() or b"") + b"".join(v or b"" for _, v in msg.headers() or [])
                seen_order |= order_id.encode() in raw
                assert not any(needle in raw for needle in needles), f"a secret is in {msg.topic()}"
        assert records > 0 and seen_order  # the scan did read the run's records, the order's among them
    finally:
        consumer.close()
