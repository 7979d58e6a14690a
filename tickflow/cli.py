"""The ``tickflow`` command."""

from __future__ import annotations

import logging
import shutil
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from tickflow.config import Settings, load_settings
from tickflow.errors import TickflowError

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
) -> None:
    """Run market-data feeds into Kafka until SIGTERM/SIGINT; then flush and exit."""
    import asyncio

    from producers.runner import load_produce_config, produce

    asyncio.run(produce(_settings(config), load_produce_config(feeds)))


@app.command("simulate")
def simulate_cmd(
    venue: Annotated[str, typer.Argument(help="binance-spot or binance-usdm")],
    recording: Annotated[Path, typer.Option(help="Folder with ws.log and http.log (shared/recordings layout).")],
    port: Annotated[int, typer.Option(help="Loopback port for WebSocket and REST.")] = 18765,
    speed: Annotated[float, typer.Option(help="Replay speed factor.")] = 1.0,
) -> None:
    """Serve a venue's protocol on 127.0.0.1, replaying recorded traffic, until SIGTERM/SIGINT."""
    import asyncio
    import signal

    from simulator.binance import BinanceReplay

    if venue not in ("binance-spot", "binance-usdm"):
        raise TickflowError(f"the simulator speaks binance-spot and binance-usdm so far, not {venue!r}")

    async def serve() -> None:
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            asyncio.get_running_loop().add_signal_handler(sig, stop.set)
        async with BinanceReplay(recording, speed=speed, port=port) as sim:
            err.print(f"[green]✓[/] {venue} simulator on {sim.ws_url} (WebSocket /stream, REST depth)")
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


@app.command("up")
def up(config: ConfigOption = None) -> None:
    """Bring up the pipeline. For now: the local stack, then its status (producers and agents come next)."""
    infra_up(config=config, brokers=1)


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


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        app()
    except TickflowError as exc:
        # A typed error is an answer, not a crash: print its message, not a traceback.
        err.print(f"[red]error:[/] {exc}")
        sys.exit(1)


if __name__ == "__main__":
    main()
