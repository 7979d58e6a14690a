"""Shared pieces of the end-to-end benchmarks (``vs_cryptofeed.py``, ``memory_run.py``).

* ``ProcStats``: CPU-seconds (user + system, every thread of the process: librdkafka's threads
  count) and RSS / peak RSS of a process, read from ``/proc/<pid>``; children are not included.
* ``EndOffsets``: the sum of the end offsets of a set of topics, read from the broker with one
  ``ListOffsets`` request, so events are counted on the broker, independently of either pipeline.
* ``Simulator``: ``tickflow simulate binance-spot`` in a subprocess (synthetic market or a
  recording), waited for until its port answers.
* ``free_port``: a loopback port below 32768 that nobody listens on.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from confluent_kafka import TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic, OffsetSpec

from infra.processes import free_port as infra_free_port

REPO = Path(__file__).resolve().parent.parent
TICKFLOW = str(Path(sys.executable).with_name("tickflow"))
_TICK = os.sysconf("SC_CLK_TCK")


# --- processes -----------------------------------------------------------------------------------


class ProcStats:
    """CPU and memory of one running process, from ``/proc``."""

    def __init__(self, pid: int) -> None:
        self.pid = pid

    def cpu_seconds(self) -> float:
        """User + system CPU time of every thread of the process so far."""
        with open(f"/proc/{self.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _TICK  # utime, stime (fields 14 and 15)

    def memory_kb(self) -> tuple[int, int]:
        """(current RSS, peak RSS) in kB."""
        rss = hwm = 0
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1])
                elif line.startswith("VmHWM:"):
                    hwm = int(line.split()[1])
        return rss, hwm


def stop_process(proc: subprocess.Popen, timeout: float = 30.0) -> int:
    """SIGTERM, then wait; SIGKILL only if it does not exit in ``timeout``."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def free_port(start: int = 18700, stop: int = 19000) -> int:
    return infra_free_port(start, stop)


def parse_or_serve(parser: argparse.ArgumentParser, serve: Callable[[int], None]) -> argparse.Namespace | None:
    """The bench's arguments; None when this process was started as its server
    (``server_process``), which ran ``serve(port)`` instead."""
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return None
    return args


@contextlib.contextmanager
def server_process(script: str) -> Iterator[int]:
    """``script --serve PORT`` in a process of its own (so its CPU is not the measured client's),
    once it listens; the port. Stopped on the way out."""
    port = free_port()
    server = subprocess.Popen([sys.executable, script, "--serve", str(port)], env=dict(os.environ))
    try:
        wait_listening(port)
        yield port
    finally:
        server.terminate()
        server.wait(10)


def wait_listening(port: int, deadline: float = 10.0) -> None:
    """Until something accepts connections on 127.0.0.1:``port`` (a bench's server process)."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"the bench server on port {port} did not start")


def pinned(argv: list[str], cpus: str | None) -> list[str]:
    """``argv`` under ``taskset -c cpus`` (taskset execs it: the pid stays the program's)."""
    return ["taskset", "-c", cpus, *argv] if cpus else argv


# --- Kafka ---------------------------------------------------------------------------------------


class EndOffsets:
    """Sum of the end offsets of ``topics`` (every partition), in one request to the broker."""

    def __init__(self, bootstrap: str, topics: list[str]) -> None:
        self.admin = AdminClient({"bootstrap.servers": bootstrap})
        metadata = self.admin.list_topics(timeout=30)
        missing = [t for t in topics if t not in metadata.topics]
        if missing:
            raise RuntimeError(f"topics missing on the broker: {missing[:5]}{'...' if len(missing) > 5 else ''}")
        self.partitions = [TopicPartition(t, p) for t in topics for p in metadata.topics[t].partitions]

    def total(self) -> int:
        return sum(self.by_topic().values())

    def by_topic(self) -> dict[str, int]:
        """End offsets summed per topic."""
        request = {tp: OffsetSpec.latest() for tp in self.partitions}
        futures = self.admin.list_offsets(request, request_timeout=30)
        totals: dict[str, int] = {}
        for tp, future in futures.items():
            totals[tp.topic] = totals.get(tp.topic, 0) + future.result().offset
        return totals


def ensure_topics(bootstrap: str, topics: list[str], partitions: int = 1) -> int:
    """Create the topics that do not exist yet (the broker does not create topics by itself)."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    existing = admin.list_topics(timeout=30).topics
    new = [NewTopic(t, partitions, 1) for t in topics if t not in existing]
    if new:
        for name, future in admin.create_topics(new, operation_timeout=60).items():
            try:
                future.result()
            except Exception as exc:  # a race with another run creating it is fine
                if "TOPIC_ALREADY_EXISTS" not in str(exc):
                    raise RuntimeError(f"cannot create topic {name}: {exc}") from exc
        deadline = time.monotonic() + 30
        while any(t not in admin.list_topics(timeout=30).topics for t in topics):
            if time.monotonic() > deadline:
                raise RuntimeError("created topics did not appear in the metadata")
            time.sleep(0.5)
    return len(new)


# --- the simulator -------------------------------------------------------------------------------


@dataclass
class Simulator:
    """The venue for a run, in a subprocess: ``tickflow simulate binance-spot --synthetic``, or with
    ``recording`` its replay of a recording. Waited for until its port answers."""

    symbols: int = 50
    #: Messages to send (--frames; 0: the simulator's default: 200k at full speed, endless when paced).
    frames: int = 200_000
    rate: float = 0
    seed: int = 1
    recording: Path | None = None
    speed: float = 1000.0
    cpus: str | None = None
    port: int = field(default_factory=free_port)
    log: Path = Path("/tmp/tickflow-bench-sim.log")
    proc: subprocess.Popen | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def argv(self) -> list[str]:
        base = [TICKFLOW, "simulate", "binance-spot", "--port", str(self.port)]
        if self.recording is not None:
            return [*base, "--recording", str(self.recording), "--speed", str(self.speed)]
        argv = [*base, "--synthetic", "--symbols", str(self.symbols), "--rate", f"{self.rate:g}",
                "--seed", str(self.seed)]  # fmt: skip
        return [*argv, "--frames", str(self.frames)] if self.frames else argv

    def __enter__(self) -> Simulator:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(pinned(self.argv(), self.cpus), stdout=log, stderr=log, cwd=REPO)
        deadline = time.monotonic() + 300  # pre-rendering a few hundred thousand frames takes a while
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the simulator exited ({self.proc.returncode}); see {self.log}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return self
            if time.monotonic() > deadline:
                raise RuntimeError(f"the simulator did not listen on {self.port}; see {self.log}")
            time.sleep(0.2)

    def __exit__(self, *_: object) -> None:
        if self.proc is not None:
            stop_process(self.proc, timeout=10)

    def exchange_info(self) -> list[tuple[str, str, str]] | None:
        """(symbol, base, quote) of every TRADING symbol the simulator lists, or None if it has no exchangeInfo."""
        try:
            with urllib.request.urlopen(f"http://{self.address}/api/v3/exchangeInfo", timeout=30) as response:
                data = json.load(response)
        except OSError:
            return None
        return [
            (s["symbol"], s["baseAsset"], s["quoteAsset"])
            for s in data.get("symbols", [])
            if s.get("status", "TRADING") == "TRADING"
        ]


#: The recording's symbols and their assets (the recording replay serves no exchangeInfo).
RECORDING_SYMBOLS = [("NKNUSDT", "NKN", "USDT"), ("BLZETH", "BLZ", "ETH"), ("LRCBTC", "LRC", "BTC"),
                     ("RUNEEUR", "RUNE", "EUR")]  # fmt: skip


@dataclass
class Sample:
    t: float
    cpu: float
    rss_kb: int
    hwm_kb: int
    offsets: int


def median(values: list[float]) -> float:
    ordered = sorted(values)
    n = len(ordered)
    return ordered[n // 2] if n % 2 else (ordered[n // 2 - 1] + ordered[n // 2]) / 2
