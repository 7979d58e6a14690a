"""What the router's integration tests share: a simulated Binance with its order API (in a thread
of the test process, so a test can look at the venue's truth), a ``tickflow router`` process that
can be killed, and the topics it works on."""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, Decimal
from pathlib import Path

import yaml

from producers.venues import VENUES
from simulator.binance import BinanceSynthetic
from simulator.faults import Faults
from simulator.trading import Account, BinanceKey, TradingConfig
from tickflow.codec import AvroCodec
from tickflow.config import Settings
from tickflow.consumer import ConsumedEvent, EventConsumer
from tickflow.events import CreateOrder, MarketType, OrderEvent, OrderStatus, OrderType, Side, TimeInForce
from tickflow.producer import EventProducer

VENUE = "binance-spot"
#: The account's credentials: made up per run, handed to the router through the environment only.
API_KEY = "tf-test-key-" + secrets.token_hex(8)
SECRET = "tf-test-secret-" + secrets.token_hex(16)
KEY_ENV, SECRET_ENV = "ROUTER_TEST_API_KEY", "ROUTER_TEST_API_SECRET"


class SimulatedVenue:
    """A ``BinanceSynthetic`` with trading, served from its own thread and event loop."""

    def __init__(self, faults: Faults | None = None, symbols: int = 3, rate: float = 200.0) -> None:
        accounts = [Account("alice", {"USDT": "100000000", **{a: "100000" for a in ("BTC", "ETH", "BNB")}},
                            binance=BinanceKey(API_KEY, hmac_secret=SECRET))]  # fmt: skip
        self.sim = BinanceSynthetic(symbols, seed=11, rate=rate, trading=TradingConfig(accounts), faults=faults)
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="simulated-venue", daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)

        async def serve() -> None:
            self._stop = asyncio.Event()
            async with self.sim:
                self._ready.set()
                await self._stop.wait()

        self._loop.run_until_complete(serve())

    def __enter__(self) -> SimulatedVenue:
        self._thread.start()
        assert self._ready.wait(30), "the simulator did not start"
        return self

    def __exit__(self, *_: object) -> None:
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(15)

    def call(self, function: Callable[[], object]) -> object:
        """Run ``function`` on the venue's loop (reads of the engine while it trades)."""
        done = threading.Event()
        result: list[object] = []
        self._loop.call_soon_threadsafe(lambda: (result.append(function()), done.set()))
        assert done.wait(10)
        return result[0]

    def set_faults(self, faults: Faults) -> None:
        self.call(lambda: setattr(self.sim.trading, "faults", faults))

    def orders_by_client_id(self) -> dict[str, list[object]]:
        def collect() -> dict[str, list[object]]:
            out: dict[str, list[object]] = {}
            for order in self.sim.engine.orders:
                out.setdefault(order.client_id, []).append(order)
            return out

        return self.call(collect)  # type: ignore[return-value]

    def top(self, number: int = 0) -> tuple[str, Decimal, Decimal, Decimal, Decimal]:
        """(normalized symbol, best bid, best ask, tick, step) of instrument ``number`` now."""

        def read() -> tuple[str, Decimal, Decimal, Decimal, Decimal]:
            instrument = self.sim.synthetic.instruments[number]
            book = self.sim.synthetic.books[number]
            return (f"{instrument.base}-{instrument.quote}", instrument.price.value(book.best_bid),
                    instrument.price.value(book.best_ask), instrument.tick_size, instrument.step_size)  # fmt: skip

        return self.call(read)  # type: ignore[return-value]


def size_for(price: Decimal, step: Decimal, notional: Decimal = Decimal(20)) -> Decimal:
    return max(step, (notional / price / step).to_integral_value(rounding=ROUND_CEILING) * step)


@dataclass
class RouterTopics:
    commands: str
    events: str
    state: str
    control: str
    bbo: str
    balances: str

    @classmethod
    def make(cls, new_topic: Callable[..., str]) -> RouterTopics:
        return cls(
            commands=new_topic("router.commands", 3),
            events=new_topic("router.events", 3),
            state=new_topic("router.state", 3, **{"cleanup.policy": "compact"}),
            control=new_topic("router.control", 1, **{"cleanup.policy": "compact"}),
            bbo=new_topic("router.bbo", 1),
            balances=new_topic("router.balances", 1, **{"cleanup.policy": "compact"}),
        )


@dataclass
class RouterProcess:
    """``tickflow router`` in a process of its own: started, killed (-9) and started again."""

    settings: Settings
    config: Path
    log: Path
    process: subprocess.Popen | None = None
    starts: int = 0
    kills: int = 0
    extra_env: dict[str, str] = field(default_factory=dict)

    @classmethod
    def configure(cls, settings: Settings, tmp_path: Path, topics: RouterTopics, venue: SimulatedVenue,
                  limits: dict | None = None, name: str = "router", **router: object) -> RouterProcess:  # fmt: skip
        config = {
            "group_id": f"router-test-{secrets.token_hex(4)}",
            "instance_id": "router-a",
            "commands_topic": topics.commands, "events_topic": topics.events, "state_topic": topics.state,
            "control_topic": topics.control, "bbo_topic": topics.bbo, "balances_topic": topics.balances,
            "commit_interval_ms": 20,
            "reconcile_interval": 1.0,
            "accounts": {"alice": {
                "venues": {VENUE: {"api_key": {"env": KEY_ENV}, "secret": {"env": SECRET_ENV}, "key_type": "hmac"}},
                "limits": {"price_band": None, **(limits or {})},
            }},
            "venues": {VENUE: {"rest_url": venue.sim.trading_url, "read_timeout": 1.0, "recv_window_ms": 3000,
                               "user_stream_url": VENUES[VENUE].user_ws_url(venue.sim.ws_url)}},
            **router,
        }  # fmt: skip
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump({"router": config}))
        return cls(settings, path, tmp_path / f"{name}.log")

    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TICKFLOW_")}
        env |= {"TICKFLOW_KAFKA__BOOTSTRAP_SERVERS": self.settings.kafka.bootstrap_servers,
                "TICKFLOW_REGISTRY__URL": self.settings.registry.url, KEY_ENV: API_KEY, SECRET_ENV: SECRET,
                "TICKFLOW_LOG_LEVEL": "INFO", **self.extra_env}  # fmt: skip
        return env

    def start(self, timeout: float = 60.0) -> None:
        self.starts += 1
        command = [sys.executable, "-m", "tickflow.cli", "router", "--router-config", str(self.config)]
        with self.log.open("ab") as out:
            out.write(f"--- test: start {self.starts} ---\n".encode())
            out.flush()
            self.process = subprocess.Popen(command, env=self.env, stdout=subprocess.PIPE, stderr=out)
        assert self.process.stdout is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()
            if b"router ready" in line:
                return
            if not line and self.process.poll() is not None:
                break
        raise AssertionError(f"the router did not start; its log:\n{self.log.read_text()[-4000:]}")

    def kill(self) -> None:
        """``kill -9``: no last transaction, no goodbye to the group."""
        if self.process is not None and self.process.poll() is None:
            self.kills += 1
            self.process.kill()
            self.process.wait(10)
            with self.log.open("ab") as out:
                out.write(f"--- test: kill {self.kills} ---\n".encode())

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)

    @contextmanager
    def running(self) -> Iterator[RouterProcess]:
        try:
            self.start()
            yield self
        finally:
            self.stop()


def committed_events(settings: Settings, codec: AvroCodec, topic: str) -> list[ConsumedEvent]:
    """Every committed record of ``topic`` up to its end now, decoded (read committed: what its
    consumers see)."""
    with EventConsumer(settings.kafka, codec, [topic], config={"isolation.level": "read_committed"}) as consumer:
        return list(consumer.read_to_end())


def read_events(settings: Settings, codec: AvroCodec, topic: str, kind: type = OrderEvent) -> list:
    """Every committed ``kind`` record of ``topic``."""
    return [r.event for r in committed_events(settings, codec, topic) if isinstance(r.event, kind)]


def partitions_by_order(settings: Settings, codec: AvroCodec, topic: str) -> dict[str, set[int]]:
    """The partitions each order's records are in, on ``topic`` (commands or order states)."""
    found = defaultdict(set)
    for record in committed_events(settings, codec, topic):
        found[record.event.order_id].add(record.partition)  # type: ignore[attr-defined]
    return dict(found)


def send_commands(settings: Settings, codec: AvroCodec, topic: str, commands: list) -> None:
    with EventProducer(settings.kafka, codec) as producer:
        for command in commands:
            producer.send(topic, command)


def wait_answered(settings: Settings, codec: AvroCodec, topic: str, commands: list, timeout: float = 120.0,
                  every: float = 1.0) -> list:  # fmt: skip
    """The event topic's events once every one of ``commands`` has its answer (any status but
    UNKNOWN_OUTCOME), or when ``timeout`` has passed (the caller's assertions then tell what is missing)."""
    wanted, deadline = {c.command_id for c in commands}, time.monotonic() + timeout
    while True:
        events = read_events(settings, codec, topic)
        answered = {e.command_id for e in events if e.status is not OrderStatus.UNKNOWN_OUTCOME}
        if wanted <= answered or time.monotonic() > deadline:
            return events
        time.sleep(every)


_numbers = iter(range(1, 10**9))


def create(symbol: str, side: Side, price: Decimal | None, size: Decimal, *, tif: TimeInForce = TimeInForce.GTC,
           order_type: OrderType = OrderType.LIMIT, tag: str = "t") -> CreateOrder:  # fmt: skip
    n = next(_numbers)
    return CreateOrder(command_id=f"{tag}-create-{n}-{secrets.token_hex(3)}", account="alice",
                       order_id=f"{tag}-order-{n}-{secrets.token_hex(3)}", venue=VENUE, market=MarketType.SPOT,
                       symbol=symbol, issued_ts=time.time_ns() // 1000, side=side, order_type=order_type,
                       time_in_force=tif, price=price, size=size)  # fmt: skip
