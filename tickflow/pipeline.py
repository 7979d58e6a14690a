"""``tickflow up``: the whole pipeline on one machine, and ``tickflow down``.

``Pipeline.up`` brings up, in order: the local Kafka and schema registry (unless the settings
point at a cluster of their own: then it only checks they answer), one exchange simulator per
venue (``simulator: true``, the default: the venues' real protocols on 127.0.0.1, synthetic
markets, each with its order API), the producer (``tickflow produce`` with its status server),
the processors' workers (``tickflow worker``) and the order router (``tickflow router``: against
the simulators, with a local account whose keys are made for the run and kept in secret files
under the state directory; against real venues, with ``router_config`` naming your accounts).
Each is a process of its own, its output in a log file under the state directory (``<stack
state dir>/pipeline``). ``status()`` gathers what the live view shows from the processes' own
endpoints (the producer's ``/status``, the workers' ``/books`` and ``/health``, the router's
``/status``) and the agents' consumer lag from Kafka. ``down`` stops the processes in the
reverse order (SIGTERM, then SIGKILL after a grace period) and the stack if it started it.

A state file (``pipeline.json``: the supervisor's pid and its processes') lets ``tickflow
down`` in another shell stop a pipeline: it asks the supervisor to stop (SIGTERM) and waits, or,
if the supervisor is gone, stops what it had started itself.

Configuration (``tickflow up --pipeline FILE``, YAML; all optional)::

    simulator: true          # false: the venues' public endpoints (needs the internet)
    venues:
      - {venue: binance-spot, symbols: 8, rate: 200}     # simulator: symbol count, events/s
      - {venue: coinbase, symbols: [BTC-USD, ETH-USD]}   # or the symbols themselves
    workers: 1
    router: true             # the order router (``tickflow order`` talks to it)
    router_config: null      # real venues: your router YAML (accounts, credentials by reference)
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from pydantic import BaseModel, Field, ValidationError

from tickflow import topics
from tickflow.config import Settings
from tickflow.errors import ConfigError, InfraError

if TYPE_CHECKING:
    from confluent_kafka.admin import AdminClient

#: The supervisor's group id for its processors (the Faust app id): the lag shown is theirs.
APP_ID = "tickflow-processors"


class VenuePlan(BaseModel):
    venue: str
    #: Simulator: how many synthetic symbols, or the venue's own symbols (live: required).
    symbols: int | list[str] = 8
    #: Simulator: market events a second over all the venue's symbols.
    rate: float = Field(default=200.0, gt=0)
    #: The venue's channels (its own names); default: books, trades, best bid/offer, klines.
    channels: list[str] | None = None


class PipelineConfig(BaseModel):
    simulator: bool = True
    venues: list[VenuePlan] = Field(
        default_factory=lambda: [
            VenuePlan(venue="binance-spot", symbols=8, rate=200),
            VenuePlan(venue="coinbase", symbols=4, rate=100),
        ],
        min_length=1,
    )
    workers: int = Field(default=1, ge=1, le=6)
    #: Run the order router (with the simulators: a local account made for the run).
    router: bool = True
    #: Against real venues: the router's YAML (accounts and where their credentials are).
    router_config: Path | None = None
    #: First loopback ports: simulators (one each) and their order APIs, the producer's status,
    #: the workers' web, the router's status.
    simulator_port: int = 18765
    trading_port: int = 18865
    producer_port: int = 18900
    worker_port: int = 18950
    router_port: int = 18990


def load_pipeline_config(path: Path | None) -> PipelineConfig:
    if path is None:
        return PipelineConfig()
    try:
        return PipelineConfig.model_validate(yaml.safe_load(path.read_text()) or {})
    except (OSError, yaml.YAMLError, ValidationError) as exc:
        raise ConfigError(f"invalid pipeline config {path}: {exc}") from exc


@dataclass
class Child:
    """A process of the pipeline."""

    name: str
    argv: list[str]
    log: Path
    #: Its status endpoint (producer: ``/status``; worker: its web server's root), if any.
    url: str | None = None
    proc: subprocess.Popen | None = None
    env: dict[str, str] = field(default_factory=dict)
    #: Times it was started again after it exited, and when it may be next (a backoff).
    restarts: int = 0
    next_restart: float = 0.0

    def start(self, env: dict[str, str]) -> None:
        self.env = env
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(self.argv, stdout=out, stderr=subprocess.STDOUT, env=env,
                                         start_new_session=True)  # fmt: skip  # Ctrl-C reaches the supervisor only

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def restart_if_exited(self, progress: Callable[[str], None]) -> bool:
        """Starts it again if it exited (a crash, a kill): after 1, 2, 4... up to 30 s, so a
        process that cannot start does not spin. Said on the progress line and in its log."""
        if self.proc is None or self.running or time.monotonic() < self.next_restart:
            return False
        code = self.proc.returncode
        self.restarts += 1
        self.next_restart = time.monotonic() + min(30.0, 2.0 ** (self.restarts - 1))
        progress(f"{self.name} exited (code {code}): starting it again (restart {self.restarts}; log {self.log})")
        with open(self.log, "ab") as out:
            out.write(f"--- tickflow up: exited with code {code}, restart {self.restarts} ---\n".encode())
        self.start(self.env)
        return True

    def stop(self, grace: float = 30.0) -> None:
        if not self.running:
            return
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(grace)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


def _tickflow() -> list[str]:
    return [sys.executable, "-m", "tickflow.cli"]


def _get_json(url: str, timeout: float = 2.0) -> Any:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:  # /health answers 503 with a body
        return json.loads(exc.read() or b"null")
    except (OSError, ValueError):
        return None


def _wait_for(check: Callable[[], bool], what: str, timeout: float, child: Child | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        if child is not None and not child.running:
            raise InfraError(f"{child.name} exited while {what}; its log: {child.log}")
        time.sleep(0.2)
    raise InfraError(f"timed out after {timeout:.0f}s {what}" + (f"; log: {child.log}" if child else ""))


@dataclass
class Pipeline:
    settings: Settings
    config: PipelineConfig
    progress: Callable[[str], None] = lambda _: None
    children: list[Child] = field(default_factory=list)
    managed_stack: bool = False
    started_at: float = field(default_factory=time.time)
    _admin: AdminClient | None = None

    @property
    def state_dir(self) -> Path:
        return self.settings.stack.state_dir / "pipeline"

    @property
    def state_file(self) -> Path:
        return self.state_dir / "pipeline.json"

    def _stack(self) -> Any:
        from infra.stack import LocalStack

        return LocalStack(self.settings.stack, progress=self.progress)

    # --- up ------------------------------------------------------------------------------------

    def up(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        running = read_state(self.state_file)
        if running is not None and _alive(running["pid"]):
            raise InfraError(f"a pipeline already runs (pid {running['pid']}): `tickflow down` stops it")
        stack = self._stack()
        # The stack's own address, not ``client_settings()`` (the environment overrides those).
        self.managed_stack = self.settings.kafka.bootstrap_servers == stack.bootstrap_servers
        if self.managed_stack:
            self.progress("starting the local Kafka and schema registry (downloads on first use)")
            stack.up()
        else:
            self.progress(f"using the configured Kafka {self.settings.kafka.bootstrap_servers}")
            from tickflow.provision import provision

            provision(self.settings)
        env = {**os.environ, "TICKFLOW_KAFKA__BOOTSTRAP_SERVERS": self.settings.kafka.bootstrap_servers,
               "TICKFLOW_REGISTRY__URL": self.settings.registry.url}  # fmt: skip
        try:
            feeds = self._start_simulators(env)
            self._start_producer(env, feeds)
            self._start_workers(env)
            if self.config.router and (self.config.simulator or self.config.router_config):
                self._start_router(env, feeds)
        except BaseException:
            self.down()
            raise
        self._write_state()

    def _start_simulators(self, env: dict[str, str]) -> list[dict[str, Any]]:
        feeds = []
        for n, plan in enumerate(self.config.venues):
            feed: dict[str, Any] = {"venue": plan.venue}
            if plan.channels:
                feed["channels"] = plan.channels
            if not self.config.simulator:
                if not isinstance(plan.symbols, list):
                    raise ConfigError(f"{plan.venue}: give the symbols to follow on the real venue")
                feeds.append({**feed, "symbols": plan.symbols})
                continue
            port = self.config.simulator_port + n
            names = self.state_dir / f"{plan.venue}.symbols"
            names.unlink(missing_ok=True)
            count = plan.symbols if isinstance(plan.symbols, int) else len(plan.symbols)
            argv = [*_tickflow(), "simulate", plan.venue, "--synthetic", "--symbols", str(count), "--rate",
                    f"{plan.rate:g}", "--seed", str(n), "--port", str(port), "--symbols-file", str(names)]  # fmt: skip
            if self.config.router:
                trading_port = self.config.trading_port + n
                argv += ["--trading-port", str(trading_port), "--accounts", str(self._local_accounts())]
                feed["trading_url"] = f"http://127.0.0.1:{trading_port}"
            child = Child(f"simulator {plan.venue}", argv, self.state_dir / f"simulator-{plan.venue}.log")
            self.progress(f"starting the {plan.venue} simulator ({count} symbols, {plan.rate:g} events/s)")
            child.start(env)
            self.children.append(child)
            _wait_for(names.exists, f"waiting for the {plan.venue} simulator", 120, child)
            symbols = names.read_text().split()
            if isinstance(plan.symbols, list):
                symbols = [s for s in plan.symbols if s in symbols] or symbols
            address = f"127.0.0.1:{port}"
            feeds.append({**feed, "symbols": symbols, "ws_url": f"ws://{address}", "rest_url": f"http://{address}"})
        return feeds

    def _start_producer(self, env: dict[str, str], feeds: list[dict[str, Any]]) -> None:
        path = self.state_dir / "feeds.yaml"
        path.write_text(yaml.safe_dump({"feeds": feeds}))
        port = self.config.producer_port
        child = Child("producer", [*_tickflow(), "produce", "--feeds", str(path), "--status-port", str(port)],
                      self.state_dir / "producer.log", url=f"http://127.0.0.1:{port}")  # fmt: skip
        self.progress(f"starting the producer ({', '.join(f['venue'] for f in feeds)})")
        child.start(env)
        self.children.append(child)
        _wait_for(lambda: _get_json(f"{child.url}/status") is not None, "waiting for the producer", 120, child)

    def _start_workers(self, env: dict[str, str]) -> None:
        for n in range(self.config.workers):
            port = self.config.worker_port + n
            child = Child(f"worker {n + 1}", [*_tickflow(), "worker", "--app-id", APP_ID, "--web-port", str(port),
                          "--loglevel", "warning"], self.state_dir / f"worker-{n + 1}.log",
                          url=f"http://127.0.0.1:{port}")  # fmt: skip
            worker_env = {**env, "TICKFLOW_PROCESSORS__DATA_DIR": str(self.state_dir / f"worker-{n + 1}")}
            self.progress(f"starting worker {n + 1} of {self.config.workers}")
            child.start(worker_env)
            self.children.append(child)
        for child in self.children:
            if child.name.startswith("worker"):
                _wait_for(lambda c=child: (_get_json(f"{c.url}/books") or {}).get("recovered", False),  # type: ignore[misc]
                          f"waiting for {child.name}'s tables", 180, child)  # fmt: skip

    @property
    def dashboard_url(self) -> str:
        """The first worker's dashboard, reading the router's status too when it runs."""
        url = f"http://127.0.0.1:{self.config.worker_port}/dashboard"
        router = next((c for c in self.children if c.name == "router"), None)
        return f"{url}?router={router.url}" if router is not None else url

    # --- the order router ----------------------------------------------------------------------

    @property
    def secrets_dir(self) -> Path:
        return self.state_dir / "secrets"

    def _local_accounts(self) -> Path:
        """The simulators' accounts file, with the keys of a local account made for this run: the
        public halves for the simulators, the secrets in files (0600) the router's config names."""
        path = self.state_dir / "accounts.yaml"
        if path.exists() and (self.secrets_dir / "binance.secret").exists():
            return path
        import secrets as random

        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ec

        self.secrets_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        key = ec.generate_private_key(ec.SECP256R1())
        values = {
            "binance.key": "local-" + random.token_hex(16), "binance.secret": random.token_hex(32),
            "coinbase.key": f"organizations/local/apiKeys/{random.token_hex(8)}",
            "coinbase.secret": key.private_bytes(serialization.Encoding.PEM,
                                                 serialization.PrivateFormat.TraditionalOpenSSL,
                                                 serialization.NoEncryption()).decode(),
        }  # fmt: skip
        for name, value in values.items():
            secret = self.secrets_dir / name
            secret.write_text(value)
            secret.chmod(0o600)
        public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                               serialization.PublicFormat.SubjectPublicKeyInfo).decode()  # fmt: skip
        balances = {"USDT": "1000000", "USD": "1000000"}
        account = {"name": "local", "balances": balances,
                   "binance": {"api_key": values["binance.key"], "hmac_secret": values["binance.secret"]},
                   "coinbase": {"key_name": values["coinbase.key"], "public_key": public}}  # fmt: skip
        path.write_text(yaml.safe_dump({"accounts": [account]}))
        path.chmod(0o600)
        return path

    def _router_config(self, feeds: list[dict[str, Any]]) -> Path:
        if self.config.router_config is not None:
            return self.config.router_config
        from producers.venues import VENUES  # the venues' own layouts (the simulators serve them)

        venues, credentials = {}, {}
        for feed in feeds:
            venue = feed["venue"]
            house = "coinbase" if venue == "coinbase" else "binance"
            venues[venue] = {"rest_url": feed["trading_url"], "market_data_url": feed["rest_url"],
                             "user_stream_url": VENUES[venue].user_ws_url(feed["ws_url"])}  # fmt: skip
            credentials[venue] = {"api_key": {"file": str(self.secrets_dir / f"{house}.key")},
                                  "secret": {"file": str(self.secrets_dir / f"{house}.secret")},
                                  "key_type": "es256" if house == "coinbase" else "hmac"}  # fmt: skip
        config = {"router": {"accounts": {"local": {"venues": credentials}}, "venues": venues}}
        path = self.state_dir / "router.yaml"
        path.write_text(yaml.safe_dump(config))
        return path

    def _start_router(self, env: dict[str, str], feeds: list[dict[str, Any]]) -> None:
        port = self.config.router_port
        child = Child("router", [*_tickflow(), "router", "--router-config", str(self._router_config(feeds)),
                                 "--status-port", str(port)], self.state_dir / "router.log",
                      url=f"http://127.0.0.1:{port}")  # fmt: skip
        self.progress("starting the order router (account 'local')")
        child.start(env)
        self.children.append(child)
        _wait_for(lambda: _get_json(f"{child.url}/status") is not None, "waiting for the router", 120, child)

    def _write_state(self) -> None:
        state = {"pid": os.getpid(), "started_at": self.started_at, "managed_stack": self.managed_stack,
                 "children": [{"name": c.name, "pid": c.proc.pid if c.proc else None, "url": c.url, "log": str(c.log)}
                              for c in self.children]}  # fmt: skip
        self.state_file.write_text(json.dumps(state, indent=2))

    # --- status --------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """One look at everything (JSON-ready): processes, feeds, books, lag."""
        processes = [{"name": c.name, "pid": c.proc.pid if c.proc else None, "running": c.running,
                      "restarts": c.restarts, "log": str(c.log)} for c in self.children]  # fmt: skip
        out: dict[str, Any] = {
            "now": time.time(),
            "uptime": time.time() - self.started_at,
            "processes": processes,
            "kafka": self.settings.kafka.bootstrap_servers,
            "registry": self.settings.registry.url,
        }
        producer = next((c for c in self.children if c.name == "producer"), None)
        out["producer"] = _get_json(f"{producer.url}/status") if producer and producer.running else None
        books: dict[str, Any] = {}
        health = []
        for child in self.children:
            if child.name.startswith("worker") and child.running:
                listing = _get_json(f"{child.url}/books") or {}
                for book in listing.get("books", []):
                    books[f"{book['venue']}:{book['symbol']}"] = book
                health.append({"worker": child.name, **(_get_json(f"{child.url}/health") or {})})
        out["books"] = books
        out["workers"] = health
        router = next((c for c in self.children if c.name == "router"), None)
        out["router"] = _get_json(f"{router.url}/status") if router and router.running else None
        if self._admin is None:  # one client for the run: a new one a second meant a new connection a second
            from tickflow.admin import admin_client

            self._admin = admin_client(self.settings.kafka)
        out["lag"] = consumer_lag(self._admin, APP_ID, [topics.BOOK, topics.TRADES])
        return out

    def supervise(self) -> None:
        """Starts again any process that exited (called once a second by ``tickflow up``)."""
        restarted = [child.restart_if_exited(self.progress) for child in self.children]
        if any(restarted):
            self._write_state()  # ``tickflow down`` must know the new pids

    # --- down ----------------------------------------------------------------------------------

    def down(self) -> list[str]:
        """Stops the processes (workers first: they settle their writes; the simulators last)
        and the stack if this pipeline started it."""
        stopped = []
        for child in reversed(self.children):
            if child.running:
                self.progress(f"stopping {child.name}")
                child.stop()
                stopped.append(child.name)
        if self.managed_stack:
            self.progress("stopping the local Kafka and schema registry")
            stopped += self._stack().down()
        self.state_file.unlink(missing_ok=True)
        return stopped


def consumer_lag(admin: AdminClient, group: str, names: list[str]) -> dict[str, int] | None:
    """Records not yet processed by ``group`` per topic (end offsets - committed offsets)."""
    from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition
    from confluent_kafka.admin import OffsetSpec

    try:
        metadata = admin.list_topics(timeout=5).topics
        partitions = [TopicPartition(t, p) for t in names if t in metadata for p in metadata[t].partitions]
        request = [ConsumerGroupTopicPartitions(group, partitions)]
        committed = admin.list_consumer_group_offsets(request, request_timeout=5)[group].result(timeout=6)
        ends = admin.list_offsets({tp: OffsetSpec.latest() for tp in partitions}, request_timeout=5)
        lag: dict[str, int] = {}
        done = {(tp.topic, tp.partition): max(tp.offset, 0) for tp in committed.topic_partitions}
        for tp, future in ends.items():
            behind = max(0, future.result().offset - done.get((tp.topic, tp.partition), 0))
            lag[tp.topic] = lag.get(tp.topic, 0) + behind
        return lag
    except Exception:  # KafkaException, timeouts: the view shows "-" rather than failing
        return None


def read_state(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, exited but not yet reaped by its parent, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def down_from_state(state_file: Path, progress: Callable[[str], None], timeout: float = 120.0) -> list[str]:
    """``tickflow down`` in another shell: the supervisor stops everything (SIGTERM); if it is
    gone, its processes are stopped from the state file."""
    state = read_state(state_file)
    if state is None:
        return []
    if _alive(state["pid"]):
        progress(f"asking the pipeline (pid {state['pid']}) to stop")
        os.kill(state["pid"], signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while _alive(state["pid"]) and state_file.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        if not state_file.exists() or not _alive(state["pid"]):
            return ["pipeline"]
    stopped = []
    for child in reversed(state["children"]):
        pid = child.get("pid")
        if pid and _alive(pid):
            progress(f"stopping {child['name']} (pid {pid})")
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + 30
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.2)
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
            stopped.append(child["name"])
    state_file.unlink(missing_ok=True)
    return stopped
