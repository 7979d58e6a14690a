"""The ``tickflow`` command."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from tickflow.config import Settings, load_settings
from tickflow.errors import TickflowError

if TYPE_CHECKING:
    from tickflow.codec import AvroCodec
    from tickflow.consumer import EventConsumer

console = Console(stderr=False)
err = Console(stderr=True, soft_wrap=True)  # messages stay whole lines, greppable in logs

app = typer.Typer(no_args_is_help=True, add_completion=False, help="tickflow: crypto market data and orders on Kafka.")
infra_app = typer.Typer(no_args_is_help=True, help="The local Kafka + schema registry stack.")
app.add_typer(infra_app, name="infra")

ConfigOption = Annotated[
    Path | None, typer.Option("--config", "-c", help="YAML config file (default: $TICKFLOW_CONFIG).")
]


def _settings(config: Path | None, brokers: int | None = None) -> Settings:
    settings = load_settings(config)
    if brokers is not None:
        settings.stack.brokers = brokers  # type: ignore[assignment]
    return settings


def _stack(settings: Settings):
    from infra.stack import LocalStack

    return LocalStack(settings.stack, progress=lambda msg: err.print(f"[cyan]•[/] {msg}"))


@infra_app.command("up")
def infra_up(
    config: ConfigOption = None,
    brokers: Annotated[int, typer.Option(help="1, or 3 for a three-node cluster (RF 3, min ISR 2).")] = 1,
) -> None:
    """Start Kafka and the schema registry, create topics, register schemas (idempotent)."""
    if brokers not in (1, 3):
        raise TickflowError("--brokers must be 1 or 3")
    settings = _settings(config, brokers)
    stack = _stack(settings)
    report = stack.up()
    if report is not None:
        t = report.topics
        err.print(
            f"[green]✓[/] topics: {len(t.created)} created, {len(t.grown)} grown, {len(t.reconfigured)} reconfigured; "
            f"{len(report.subjects)} schema subjects registered"
        )
        for warning in t.warnings:
            err.print(f"[yellow]![/] {warning}")
    _print_status(settings)


@infra_app.command("down")
def infra_down(
    config: ConfigOption = None,
    wipe: Annotated[bool, typer.Option(help="Also delete the state directory (all topic data, all schemas).")] = False,
) -> None:
    """Stop the processes `infra up` started."""
    settings = _settings(config)
    state = settings.stack.state_dir
    brokers = _recorded_brokers(state)
    stopped = _stack(_settings(config, brokers)).down()
    err.print(f"[green]✓[/] stopped: {', '.join(stopped) if stopped else 'nothing was running'}")
    if wipe and state.exists():
        shutil.rmtree(state)
        err.print(f"[green]✓[/] removed {state}")


@infra_app.command("status")
def infra_status(config: ConfigOption = None) -> None:
    """What runs, on which ports, which versions, which topics."""
    settings = _settings(config)
    _print_status(_settings(config, _recorded_brokers(settings.stack.state_dir)))


@app.command("provision")
def provision_cmd(config: ConfigOption = None) -> None:
    """Create topics and register schemas on the configured (possibly external) Kafka and registry."""
    from tickflow.provision import provision

    report = provision(_settings(config))
    err.print(f"[green]✓[/] {len(report.topics.created)} topics created, {len(report.subjects)} subjects registered")


@app.command("produce")
def produce_cmd(
    feeds: Annotated[Path, typer.Option("--feeds", "-f", help="YAML file naming the venues and symbols.")],
    config: ConfigOption = None,
    status_port: Annotated[
        int | None, typer.Option(help="Serve /health, /status (JSON) and /metrics (Prometheus) on this port.")
    ] = None,
) -> None:
    """Run market-data feeds into Kafka until SIGTERM/SIGINT; then flush and exit."""
    import asyncio

    from producers.runner import load_produce_config, produce

    asyncio.run(produce(_settings(config), load_produce_config(feeds), status_port=status_port))


@app.command("worker")
def worker_cmd(
    config: ConfigOption = None,
    app_id: Annotated[str | None, typer.Option(help="Faust app id (consumer group, changelog topic prefix).")] = None,
    web_port: Annotated[int | None, typer.Option(help="Port of the web server (/books).")] = None,
    store: Annotated[str | None, typer.Option(help="Table store: rocksdb:// (default) or memory://.")] = None,
    loglevel: Annotated[str, typer.Option(help="Faust's log level.")] = "info",
) -> None:
    """Run a processors worker (the Faust app: order-book agent) until SIGTERM/SIGINT.

    Settings: TICKFLOW_PROCESSORS__* variables (processors/settings.py); the options override them.
    """
    from processors.settings import ProcessorSettings
    from processors.worker import create_app, run_worker

    overrides = {"app_id": app_id, "web_port": web_port, "store": store}
    processors = ProcessorSettings(**{k: v for k, v in overrides.items() if v is not None})
    settings = _settings(config)
    run_worker(create_app(settings, processors), loglevel=loglevel, settings=settings)


@app.command("router")
def router_cmd(
    router_config: Annotated[Path, typer.Option("--router-config", "-r", help="The router's YAML (accounts, venues).")],
    config: ConfigOption = None,
    instance_id: Annotated[str | None, typer.Option(help="This router's id (static membership, transactions).")] = None,
    status_port: Annotated[
        int | None, typer.Option(help="Serve /health, /status (JSON) and /metrics (Prometheus) on this port.")
    ] = None,
) -> None:
    """Run an order router: commands from Kafka to the venues, outcomes back, until SIGTERM/SIGINT."""

    from processors.router.app import run
    from processors.router.settings import load_router_settings

    overrides: dict[str, object] = {"instance_id": instance_id} if instance_id else {}
    if status_port is not None:
        overrides["status_port"] = status_port
    run(load_router_settings(router_config, **overrides), _settings(config))


order_app = typer.Typer(no_args_is_help=True, help="Send order commands to the router and wait for their outcome.")
app.add_typer(order_app, name="order")

_ORDER_OPTIONS = {
    "account": typer.Option(help="Trading account (as the router's config names it)."),
    "venue": typer.Option(help="binance-spot, binance-usdm or coinbase."),
    "symbol": typer.Option(help="Normalized symbol BASE-QUOTE, e.g. BTC-USDT."),
}


def _send_and_wait(command: object, config: Path | None, wait: float, as_json: bool, topics: tuple[str, str]) -> None:
    """Send one command, wait for its answer, print it; exit 2 when the command was refused."""
    from processors.router.client import OrderClient
    from tickflow.codec import AvroCodec
    from tickflow.events import OrderStatus
    from tickflow.registry import SchemaRegistry

    settings = _settings(config)
    codec = AvroCodec(SchemaRegistry(settings.registry))
    with OrderClient(settings.kafka, codec, commands_topic=topics[0], events_topic=topics[1]) as client:
        command_id = client.send(command)  # type: ignore[arg-type]
        err.print(f"[cyan]•[/] sent {type(command).__name__} {command_id} (order {command.order_id})")  # type: ignore[attr-defined]
        if wait <= 0:
            return
        outcome = client.outcome(command_id, timeout=wait)
    for event in outcome.events:
        if as_json:
            import msgspec

            console.print_json(msgspec.json.encode(event).decode())
            continue
        detail = ", ".join(f"{k}={v}" for k, v in (("venue order", event.venue_order_id), ("price", event.price),
                           ("size", event.size), ("filled", event.filled_size), ("avg", event.avg_fill_price),
                           ("reason", event.reason), ("rule", event.rule), ("venue says", event.venue_message))
                           if v is not None)  # fmt: skip
        console.print(f"{event.status.value:<16} {detail}")
    final = outcome.final
    if final is not None and final.status is OrderStatus.REJECTED:
        raise typer.Exit(2)


def _market(venue: str) -> object:
    from tickflow.events import MarketType

    return MarketType.PERPETUAL if venue == "binance-usdm" else MarketType.SPOT


def _now_us() -> int:
    import time

    return time.time_ns() // 1000


WaitOption = Annotated[float, typer.Option(help="Seconds to wait for the outcome (0: send and return).")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print the events as JSON.")]
CommandsTopic = Annotated[str, typer.Option(help="The router's command topic.")]
EventsTopic = Annotated[str, typer.Option(help="The router's event topic.")]


@order_app.command("create")
def order_create_cmd(
    account: Annotated[str, _ORDER_OPTIONS["account"]],
    venue: Annotated[str, _ORDER_OPTIONS["venue"]],
    symbol: Annotated[str, _ORDER_OPTIONS["symbol"]],
    side: Annotated[str, typer.Option(help="BUY or SELL.")],
    size: Annotated[str, typer.Option(help="Size in base units (exact decimal).")],
    price: Annotated[str | None, typer.Option(help="Limit price (exact decimal); leave out for MARKET.")] = None,
    order_type: Annotated[str, typer.Option("--type", help="LIMIT or MARKET.")] = "LIMIT",
    tif: Annotated[str, typer.Option(help="GTC, IOC, FOK or POST_ONLY.")] = "GTC",
    reduce_only: Annotated[bool, typer.Option(help="Derivatives: never increase the position.")] = False,
    order_id: Annotated[str | None, typer.Option(help="The order's id (default: a new one).")] = None,
    wait: WaitOption = 30.0,
    as_json: JsonOption = False,
    commands_topic: CommandsTopic = "tickflow.orders.commands",
    events_topic: EventsTopic = "tickflow.orders.events",
    config: ConfigOption = None,
) -> None:
    """Place an order; prints what happened (ACCEPTED, FILLED, REJECTED with its rule...)."""
    from decimal import Decimal, InvalidOperation

    from processors.router.client import new_id
    from tickflow.events import CreateOrder, OrderType, Side, TimeInForce

    try:
        command = CreateOrder(command_id=new_id("cli"), account=account, order_id=order_id or new_id("order"),
                              venue=venue, market=_market(venue), symbol=symbol, issued_ts=_now_us(),  # type: ignore[arg-type]
                              side=Side(side.upper()), order_type=OrderType(order_type.upper()),
                              time_in_force=TimeInForce(tif.upper()), size=Decimal(size),
                              price=Decimal(price) if price is not None else None, reduce_only=reduce_only)  # fmt: skip
    except (ValueError, InvalidOperation) as exc:
        raise TickflowError(f"invalid order: {exc}") from None
    _send_and_wait(command, config, wait, as_json, (commands_topic, events_topic))


@order_app.command("cancel")
def order_cancel_cmd(
    account: Annotated[str, _ORDER_OPTIONS["account"]],
    venue: Annotated[str, _ORDER_OPTIONS["venue"]],
    symbol: Annotated[str, _ORDER_OPTIONS["symbol"]],
    order_id: Annotated[str, typer.Option(help="The order to cancel.")],
    wait: WaitOption = 30.0,
    as_json: JsonOption = False,
    commands_topic: CommandsTopic = "tickflow.orders.commands",
    events_topic: EventsTopic = "tickflow.orders.events",
    config: ConfigOption = None,
) -> None:
    """Cancel an order."""
    from processors.router.client import new_id
    from tickflow.events import CancelOrder

    command = CancelOrder(command_id=new_id("cli"), account=account, order_id=order_id, venue=venue,
                          market=_market(venue), symbol=symbol, issued_ts=_now_us())  # type: ignore[arg-type]  # fmt: skip
    _send_and_wait(command, config, wait, as_json, (commands_topic, events_topic))


@order_app.command("amend")
def order_amend_cmd(
    account: Annotated[str, _ORDER_OPTIONS["account"]],
    venue: Annotated[str, _ORDER_OPTIONS["venue"]],
    symbol: Annotated[str, _ORDER_OPTIONS["symbol"]],
    order_id: Annotated[str, typer.Option(help="The order to change.")],
    price: Annotated[str | None, typer.Option(help="New limit price.")] = None,
    size: Annotated[str | None, typer.Option(help="New total size.")] = None,
    wait: WaitOption = 30.0,
    as_json: JsonOption = False,
    commands_topic: CommandsTopic = "tickflow.orders.commands",
    events_topic: EventsTopic = "tickflow.orders.events",
    config: ConfigOption = None,
) -> None:
    """Change an order's price and/or size (native amend, or cancel-replace where the venue has none)."""
    from decimal import Decimal, InvalidOperation

    from processors.router.client import new_id
    from tickflow.events import AmendOrder

    try:
        command = AmendOrder(command_id=new_id("cli"), account=account, order_id=order_id, venue=venue,
                             market=_market(venue), symbol=symbol, issued_ts=_now_us(),  # type: ignore[arg-type]
                             new_price=Decimal(price) if price is not None else None,
                             new_size=Decimal(size) if size is not None else None)  # fmt: skip
    except InvalidOperation as exc:
        raise TickflowError(f"invalid amend: {exc}") from None
    _send_and_wait(command, config, wait, as_json, (commands_topic, events_topic))


@order_app.command("kill-switch")
def order_kill_switch_cmd(
    scope: Annotated[str, typer.Option(help="An account, or '*' for every account.")],
    engage: Annotated[bool, typer.Option("--engage/--release", help="Stop new orders, or allow them again.")],
    reason: Annotated[str, typer.Option(help="Why (shown in every rejection).")] = "",
    control_topic: Annotated[str, typer.Option(help="The router's control topic.")] = "tickflow.orders.control",
    config: ConfigOption = None,
) -> None:
    """Engage or release the kill switch (a compacted topic: the latest setting per scope stays)."""
    import getpass

    from processors.router.client import OrderClient
    from tickflow.codec import AvroCodec
    from tickflow.events import KillSwitch
    from tickflow.registry import SchemaRegistry

    settings = _settings(config)
    switch = KillSwitch(scope=scope, engaged=engage, reason=reason, set_by=getpass.getuser(), ts=_now_us())
    with OrderClient(settings.kafka, AvroCodec(SchemaRegistry(settings.registry)), control_topic=control_topic) as c:
        c.set_kill_switch(switch)
    err.print(f"[green]✓[/] kill switch for {scope!r} {'ENGAGED' if engage else 'released'}")


@app.command("simulate")
def simulate_cmd(
    venue: Annotated[str, typer.Argument(help="binance-spot, binance-usdm or coinbase")],
    recording: Annotated[
        Path | None, typer.Option(help="Replay this folder (ws.log, http.log: shared/recordings layout).")
    ] = None,
    synthetic: Annotated[bool, typer.Option("--synthetic", help="Serve the seeded synthetic market.")] = False,
    symbols: Annotated[int, typer.Option(help="Synthetic: number of symbols.")] = 10,
    rate: Annotated[float, typer.Option(help="Synthetic: market events per second; 0 = as fast as possible.")] = 100.0,
    seed: Annotated[int, typer.Option(help="Synthetic: the seed (same seed, same market).")] = 0,
    frames: Annotated[int | None, typer.Option(help="Synthetic: stop after this many messages.")] = None,
    duration: Annotated[float | None, typer.Option(help="Synthetic: stop after this many market seconds.")] = None,
    port: Annotated[int, typer.Option(help="Loopback port for WebSocket and REST.")] = 18765,
    speed: Annotated[float, typer.Option(help="Replay / paced speed factor.")] = 1.0,
    symbols_file: Annotated[
        Path | None, typer.Option(help="Once serving, write the venue's symbols here, one a line.")
    ] = None,
    trading_port: Annotated[
        int | None, typer.Option(help="Synthetic: also serve the private order API on this port (0 = any free one).")
    ] = None,
    accounts: Annotated[
        Path | None, typer.Option(help="Synthetic trading: accounts and API keys (YAML; simulator.trading.accounts).")
    ] = None,
    order_limit: Annotated[
        str | None, typer.Option(help="Synthetic trading: orders per account as ORDERS/SECONDS (Binance: 100/10).")
    ] = None,
    weight_limit: Annotated[int | None, typer.Option(help="Binance: REQUEST_WEIGHT per minute (spot 6000).")] = None,
) -> None:
    """Serve a venue's protocol on 127.0.0.1 (recorded or synthetic market) until SIGTERM/SIGINT.

    Full speed (--rate 0) renders every message before serving (default bound: 200000 messages)
    and prints "ready" only then, so a benchmark can start its clients on that line."""
    import asyncio
    import signal

    from simulator.binance import BinanceReplay, BinanceSynthetic
    from simulator.coinbase import CoinbaseSynthetic

    if venue not in ("binance-spot", "binance-usdm", "coinbase"):
        raise TickflowError(f"the simulator speaks binance-spot, binance-usdm and coinbase, not {venue!r}")
    if synthetic == (recording is not None):
        raise TickflowError("give exactly one of --synthetic and --recording DIR")
    if recording is not None and venue == "coinbase":
        raise TickflowError("there are no Coinbase recordings: use --synthetic")
    if synthetic and rate == 0 and frames is None and duration is None:
        frames = 200_000

    trading = None
    if trading_port is not None or accounts is not None:
        from simulator.trading import TradingConfig, load_accounts

        if recording is not None:
            raise TickflowError("the trading API needs the synthetic market: use --synthetic")
        try:
            registry = load_accounts(accounts) if accounts is not None else None
        except (OSError, ValueError) as exc:
            raise TickflowError(f"cannot load accounts from {accounts}: {exc}") from exc
        limits = None
        if order_limit is not None:
            count, _, seconds = order_limit.partition("/")
            if not (count.isdigit() and seconds.isdigit()):
                raise TickflowError(f"--order-limit takes ORDERS/SECONDS (like 100/10), not {order_limit!r}")
            limits = ((int(count), int(seconds)),)
        trading = TradingConfig(registry or [], port=trading_port or 0, order_limits=limits)

    def build() -> object:
        if recording is not None:
            return BinanceReplay(recording, speed=speed, port=port)
        options = dict(seed=seed, rate=rate, frames=frames, duration=duration, speed=speed, port=port, trading=trading)
        if venue == "coinbase":
            return CoinbaseSynthetic(symbols, **options)  # type: ignore[arg-type]
        return BinanceSynthetic(symbols, usdm=venue == "binance-usdm", weight_limit=weight_limit,
                                **options)  # type: ignore[arg-type]  # fmt: skip

    async def serve() -> None:
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            asyncio.get_running_loop().add_signal_handler(sig, stop.set)
        async with build() as sim:  # type: ignore[attr-defined]
            source = f"recording {recording}" if recording else f"synthetic, {symbols} symbols, seed {seed}"
            orders = f"; orders on {sim.trading_url}" if trading is not None else ""
            err.print(f"[green]✓[/] {venue} simulator ready on {sim.ws_url} (WebSocket and REST; {source}){orders}")
            if symbols_file is not None:  # written whole, then renamed: a reader never sees half of it
                partial = symbols_file.with_suffix(".partial")
                partial.write_text("".join(f"{symbol}\n" for symbol in sim.symbols))  # type: ignore[attr-defined]
                partial.rename(symbols_file)
            await stop.wait()

    asyncio.run(serve())


capture_app = typer.Typer(no_args_is_help=True, help="Capture files (the shared/recordings layout).")
app.add_typer(capture_app, name="capture")


@capture_app.command("check")
def capture_check_cmd(
    directory: Annotated[Path, typer.Argument(help="Folder with ws.log (and http.log).")],
    venue: Annotated[str, typer.Option(help="Venue id, e.g. binance-spot.")],
) -> None:
    """Run a capture through the normalizer and book logic offline; a JSON summary is the last line."""
    import json

    from producers.capture_check import check_capture

    summary = check_capture(venue, directory)
    for symbol, book in summary["books"].items():
        err.print(f"{symbol}: {book}")
    print(json.dumps(summary, separators=(",", ":")))


def _reparse(
    settings: Settings, codec: AvroCodec, first: EventConsumer, prefix: str, advance: Callable[[int], None]
) -> None:
    """``tickflow replay --reparse``: ``first`` (an ``EventConsumer`` of the range) is read, then
    a second one like it (producers/reparse.py)."""
    import json

    from producers.reparse import reparse
    from tickflow import replay
    from tickflow.admin import admin_client
    from tickflow.producer import EventProducer

    consumers = [first]

    def open_range() -> EventConsumer:
        return consumers.pop() if consumers else first.again()

    metadata = admin_client(settings.kafka).list_topics(timeout=30).topics

    def ensure(original: str, target: str) -> None:
        partitions = len(metadata[original].partitions) if original in metadata else 6
        if replay.ensure_target(settings.kafka, target, partitions):
            err.print(f"created {target} ({partitions} partitions)")

    with EventProducer(settings.kafka, codec) as producer:
        result = reparse(open_range, producer, prefix, ensure, advance)
    for target, count in sorted(result.published.items()):
        err.print(f"{target}: {count:,} events")
    for venue, waiting in result.waiting_for_snapshot.items():
        err.print(f"[yellow]![/] {venue}: {waiting:,} book deltas not re-published: its books start from REST "
                  "snapshots, which a raw-frame topic does not hold")  # fmt: skip
    summary = {"frames": result.frames, "published": dict(result.published), "symbols": result.symbols,
               "waiting_for_snapshot": dict(result.waiting_for_snapshot),
               "malformed_frames": result.malformed_frames}  # fmt: skip
    print(json.dumps(summary, separators=(",", ":")))


def _position(text: str, *, end: bool) -> object:
    """A ``--from``/``--to`` value: a word, an offset, ``partition:offset,...``, or an ISO time."""
    from datetime import UTC, datetime

    words = {"beginning", "end"} if not end else {"now", "never"}
    if text in words:
        return None if text == "never" else text
    if text.lstrip("-").isdigit():
        return int(text)
    if ":" in text and all(part.count(":") == 1 and part.replace(":", "").isdigit() for part in text.split(",")):
        return {int(p): int(o) for p, o in (part.split(":") for part in text.split(","))}
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise typer.BadParameter(
            f"{text!r}: give {' or '.join(sorted(words))}, an offset, partition:offset,... or an ISO time "
            "(2026-11-22T09:30:00Z)"
        ) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


@app.command("replay")
def replay_cmd(
    topics: Annotated[list[str], typer.Argument(help="Topic(s) to read.")],
    start: Annotated[str, typer.Option("--from", help="beginning, end, an offset, p:o,..., or an ISO time.")] = (
        "beginning"
    ),
    end: Annotated[str, typer.Option("--to", help="now, never, an offset, p:o,..., or an ISO time (excluded).")] = (
        "now"
    ),
    symbols: Annotated[
        list[str] | None, typer.Option("--symbol", "-s", help="Only this instrument (BTC-USDT or venue:BTC-USDT).")
    ] = None,
    parquet: Annotated[Path | None, typer.Option(help="Write the range here: one <EventType>.parquet each.")] = None,
    reparse: Annotated[
        str | None,
        typer.Option(help="A raw-frame topic's range through the current normalizers, into topics with this prefix."),
    ] = None,
    to_topic: Annotated[str | None, typer.Option("--to-topic", help="Re-publish the range into this topic.")] = None,
    speed: Annotated[
        str, typer.Option(help="Re-publishing pace: 1 (original), 10 (ten times faster)..., or max.")
    ] = "max",
    skip_bad: Annotated[bool, typer.Option("--skip-bad", help="Count and skip undecodable records.")] = False,
    config: ConfigOption = None,
) -> None:
    """Replay a topic range: to Parquet files (--parquet DIR) or into another topic (--to-topic)."""
    import json

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from tickflow import replay
    from tickflow.codec import AvroCodec
    from tickflow.consumer import EventConsumer
    from tickflow.producer import EventProducer
    from tickflow.reading import end_at, start_at
    from tickflow.registry import SchemaRegistry

    if sum(x is not None for x in (parquet, to_topic, reparse)) != 1:
        raise typer.BadParameter("give one of --parquet DIR, --to-topic TOPIC or --reparse PREFIX")
    pace = None if speed == "max" else float(speed)
    if pace is not None and pace <= 0:
        raise typer.BadParameter(f"--speed {speed}: give a positive factor or max")
    settings = _settings(config)
    with SchemaRegistry(settings.registry) as registry:
        codec = AvroCodec(registry)
        range_end = end_at(_position(end, end=True))  # type: ignore[arg-type]
        if parquet is not None and not range_end.bounded:
            raise typer.BadParameter("--to never: a Parquet export needs an end")
        range_start = start_at(_position(start, end=False))  # type: ignore[arg-type]
        on_error = "skip" if skip_bad else "raise"
        with EventConsumer(
            settings.kafka, codec, topics, range_start, end=range_end, symbols=symbols, on_error=on_error
        ) as consumer:
            total = replay.range_size(consumer)
            columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn()]
            with Progress(*columns, console=err, transient=True) as progress:
                task = progress.add_task(f"replaying {', '.join(topics)}", total=total)

                def advance(read: int) -> None:
                    progress.update(task, completed=read)

                if reparse is not None:
                    _reparse(settings, codec, consumer, reparse, advance)
                    return
                if parquet is not None:
                    result = replay.export_parquet(consumer, parquet, advance)
                else:
                    assert to_topic is not None
                    partitions = max(tp.partition for tp in consumer.assignment) + 1
                    if replay.ensure_target(settings.kafka, to_topic, partitions):
                        err.print(f"created {to_topic} ({partitions} partitions)")
                    with EventProducer(settings.kafka, codec) as producer:
                        result = replay.republish(consumer, producer, codec, to_topic, pace, advance)
    for name, (path, rows) in result.files.items():
        err.print(f"{name}: {rows:,} rows -> {path}")
    rate = result.read / result.seconds if result.seconds else 0.0
    err.print(f"read {result.read:,} records in {result.seconds:.1f} s ({rate:,.0f}/s), wrote {result.written:,}, "
              f"skipped {result.skipped:,}")  # fmt: skip
    summary = {"read": result.read, "written": result.written, "skipped": result.skipped,
               "files": {name: [str(path), rows] for name, (path, rows) in result.files.items()}}  # fmt: skip
    print(json.dumps(summary, separators=(",", ":")))


@app.command("up")
def up(
    config: ConfigOption = None,
    pipeline: Annotated[
        Path | None, typer.Option(help="YAML: venues, symbols, rates, workers (tickflow/pipeline.py).")
    ] = None,
    duration: Annotated[
        float | None, typer.Option("--for", help="Stop after this many seconds (default: Ctrl-C).")
    ] = None,
    json_lines: Annotated[
        bool, typer.Option("--json", help="A JSON status line a second instead of the live view.")
    ] = False,
    infra_only: Annotated[bool, typer.Option("--infra-only", help="Only the local Kafka and registry.")] = False,
) -> None:
    """The whole pipeline: Kafka and the registry, the exchange simulators, the producer and the
    workers, with a live view until Ctrl-C (or `tickflow down` from another shell)."""
    import json
    import signal
    import threading
    import time

    from rich.live import Live

    from tickflow.live_view import LiveView
    from tickflow.pipeline import Pipeline, load_pipeline_config

    if infra_only:
        infra_up(config=config, brokers=1)
        return
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    plan = load_pipeline_config(pipeline)
    with err.status("starting the pipeline") as spinner:

        def progress(message: str) -> None:
            err.print(f"[cyan]•[/] {message}")
            spinner.update(message)

        pipe = Pipeline(_settings(config, 1), plan, progress=progress)
        try:
            pipe.up()
        except BaseException:
            err.print("[red]the pipeline did not start[/]; what was started is stopped")
            raise
    err.print(f"[green]✓[/] pipeline up: {len(pipe.children)} processes, logs in {pipe.state_dir}")
    err.print(f"[green]✓[/] dashboard: {pipe.dashboard_url}")
    deadline = time.monotonic() + duration if duration is not None else None
    view = LiveView()
    try:
        if json_lines:
            while not stop.is_set() and (deadline is None or time.monotonic() < deadline):
                pipe.supervise()
                print(json.dumps(pipe.status(), separators=(",", ":")), flush=True)
                stop.wait(1.0)
        else:
            with Live(view.render(pipe.status()), console=console, refresh_per_second=2) as live:
                while not stop.is_set() and (deadline is None or time.monotonic() < deadline):
                    stop.wait(1.0)
                    pipe.supervise()
                    live.update(view.render(pipe.status()))
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C does not cut the shutdown short
        stopped = pipe.down()
        err.print(f"[green]✓[/] stopped: {', '.join(stopped) if stopped else 'nothing was running'}")


@app.command("down")
def down(config: ConfigOption = None) -> None:
    """Stop a pipeline `tickflow up` runs (from any shell) and the stack it started; with no
    pipeline running, the local stack."""
    from tickflow.pipeline import Pipeline, PipelineConfig, down_from_state

    settings = _settings(config)
    state = Pipeline(settings, PipelineConfig()).state_file
    stopped = down_from_state(state, progress=lambda message: err.print(f"[cyan]•[/] {message}"))
    if not stopped:  # no pipeline: the stack alone, as `tickflow up --infra-only` or `infra up` left it
        stopped = _stack(_settings(config, _recorded_brokers(settings.stack.state_dir))).down()
    err.print(f"[green]✓[/] stopped: {', '.join(stopped) if stopped else 'nothing was running'}")


def _recorded_brokers(state_dir: Path) -> int:
    import json

    layout = state_dir / "stack.json"
    if layout.is_file():
        return int(json.loads(layout.read_text()).get("brokers", 1))
    return 1


def _print_status(settings: Settings) -> None:
    from confluent_kafka import KafkaException

    from tickflow.admin import admin_client
    from tickflow.registry import SchemaRegistry

    stack = _stack(settings)
    table = Table(title=f"local stack ({stack.state_dir})")
    for col in ("process", "pid", "port", "log"):
        table.add_column(col)
    for proc in stack.processes():
        table.add_row(proc.name, str(proc.pid) if proc.pid else "[red]not running[/]", str(proc.port), str(proc.log))
    console.print(table)
    console.print("versions: " + ", ".join(f"{k} {v}" for k, v in stack.versions().items()))
    kafka = stack.client_settings().kafka
    console.print(f"kafka: {kafka.bootstrap_servers}   registry: {stack.registry_url}")
    if not stack.running:
        return
    try:
        metadata = admin_client(kafka).list_topics(timeout=5)
    except KafkaException as exc:
        console.print(f"[red]kafka not answering:[/] {exc}")
        return
    topics = Table(title="topics")
    for col in ("topic", "partitions", "replicas"):
        topics.add_column(col)
    for name in sorted(t for t in metadata.topics if not t.startswith("_")):
        parts = metadata.topics[name].partitions
        replicas = len(next(iter(parts.values())).replicas) if parts else 0
        topics.add_row(name, str(len(parts)), str(replicas))
    console.print(topics)
    with SchemaRegistry(stack.client_settings().registry) as registry:
        console.print(f"schema subjects: {len(registry.subjects())} (compatibility {registry.compatibility()})")


@app.callback()
def _options(
    log_format: Annotated[
        str | None, typer.Option("--log-format", help="text or json (also TICKFLOW_LOG_FORMAT; children inherit it).")
    ] = None,
) -> None:
    """tickflow: crypto market data and orders on Kafka."""
    import os

    from tickflow.logs import configure_logging, log_level

    if log_format is not None:
        if log_format not in ("text", "json"):
            raise typer.BadParameter(f"--log-format {log_format}: text or json")
        os.environ["TICKFLOW_LOG_FORMAT"] = log_format  # the processes `tickflow up` starts too
        configure_logging(log_level(), log_format, _secrets())


def _secrets() -> list[str]:
    from tickflow.logs import settings_secrets

    try:
        return settings_secrets(load_settings())
    except TickflowError:  # a bad config: the command says so; the environment's secrets still count
        return settings_secrets(None)


def main() -> None:
    from tickflow.logs import configure_logging, log_level

    try:
        configure_logging(log_level(), secrets=_secrets())
        app()
    except TickflowError as exc:
        # A typed error is an answer, not a crash: print its message, not a traceback.
        err.print(f"[red]error:[/] {exc}")
        sys.exit(1)


if __name__ == "__main__":
    main()
