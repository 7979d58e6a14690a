"""The local stack: idempotent set-up, topics as declared, schemas that survive a restart."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import pytest
from confluent_kafka.admin import ConfigResource

from tickflow.admin import admin_client
from tickflow.codec import AvroCodec, subject_name
from tickflow.config import REPO_ROOT, Settings
from tickflow.consumer import EventConsumer, StartAt
from tickflow.errors import PortInUse
from tickflow.events import MarketType, Side, Trade
from tickflow.producer import EventProducer
from tickflow.registry import SchemaRegistry
from tickflow.schemas import load_contract
from tickflow.topics import load_topics

TICKFLOW = str(Path(sys.executable).parent / "tickflow")


def _trade(i: int) -> Trade:
    now = int(time.time() * 1e6)
    return Trade(
        venue="binance-spot",
        market=MarketType.SPOT,
        symbol="ETH-BTC",
        venue_symbol="ETHBTC",
        exchange_ts=now,
        receive_ts=now + 7,
        trade_id=str(i),
        price=Decimal("0.05312000") + Decimal(i) / Decimal(10**8),
        size=Decimal("1.25"),
        side=Side.SELL,
    )


def test_topics_exist_as_declared(settings: Settings) -> None:
    admin = admin_client(settings.kafka)
    metadata = admin.list_topics(timeout=10)
    specs = load_topics()
    for spec in specs.values():
        assert spec.name in metadata.topics, spec.name
        assert len(metadata.topics[spec.name].partitions) == spec.partitions, spec.name
    resources = [ConfigResource(ConfigResource.Type.TOPIC, name) for name in specs]
    configs = {res.name: fut.result() for res, fut in admin.describe_configs(resources).items()}
    for spec in specs.values():
        for key, value in spec.config.items():
            assert configs[spec.name][key].value == value, f"{spec.name} {key}"
    assert configs["tickflow.orders.control"]["cleanup.policy"].value == "compact"
    assert configs["tickflow.raw.binance-spot"]["compression.type"].value == "zstd"


def test_every_schema_is_registered_with_backward_compatibility(settings: Settings) -> None:
    contract = load_contract()
    with SchemaRegistry(settings.registry) as registry:
        subjects = set(registry.subjects())
        assert registry.compatibility() == "BACKWARD"
        for spec in load_topics().values():
            for record in spec.records:
                subject = subject_name(spec.name, record)
                assert subject in subjects
                assert registry.compatibility(subject) == "BACKWARD"
                # Registering the same schema again answers the same id (idempotent).
                first = registry.register(subject, contract[record].schema_str)
                fresh = SchemaRegistry(settings.registry)
                assert fresh.register(subject, contract[record].schema_str) == first
                fresh.close()


def test_up_again_changes_nothing(stack: object) -> None:
    report = stack.up()  # type: ignore[attr-defined]
    assert not report.topics.changed
    assert report.topics.warnings == []
    assert stack.running  # type: ignore[attr-defined]


def test_schemas_survive_a_registry_restart(stack: object, settings: Settings) -> None:
    """Records written before a registry restart still decode after it: ids are persistent."""
    topic = "tickflow.trades"
    with SchemaRegistry(settings.registry) as registry:
        codec = AvroCodec(registry)
        schema_id = codec.register(topic, Trade)
        with EventProducer(settings.kafka, codec) as producer:
            for i in range(20):
                producer.send(topic, _trade(i), key="restart-test")
    old_pid = stack.registry.pid()  # type: ignore[attr-defined]
    stack.restart_registry()  # type: ignore[attr-defined]
    assert stack.registry.pid() not in (None, old_pid)  # type: ignore[attr-defined]

    with SchemaRegistry(settings.registry) as registry:  # a fresh client: nothing cached
        codec = AvroCodec(registry)
        assert codec.register(topic, Trade) == schema_id
        with EventConsumer(settings.kafka, codec, [topic], StartAt.beginning()) as consumer:
            decoded = [m.event for m in consumer.read_to_end() if m.key == b"restart-test"]
    assert [t.trade_id for t in decoded] == [str(i) for i in range(20)]
    assert decoded[3].price == Decimal("0.05312003")


def test_a_taken_port_is_a_clear_error(tmp_path: Path) -> None:
    from infra.stack import LocalStack
    from tests.conftest import local_stack_settings

    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        stack = LocalStack(local_stack_settings(tmp_path / "state", kafka_port=port, registry_port=port + 500))
        with pytest.raises(PortInUse, match=f"port {port} .*already in use"):
            stack.up()
    assert stack.processes()[0].pid is None


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [TICKFLOW, *args], capture_output=True, text=True, env=env or os.environ.copy(), cwd=REPO_ROOT, timeout=120
    )


def test_status_shows_processes_versions_and_topics(stack: object) -> None:
    env = {
        **os.environ,
        "TICKFLOW_STACK__STATE_DIR": str(stack.state_dir),  # type: ignore[attr-defined]
        "TICKFLOW_STACK__KAFKA_PORT": str(stack.settings.kafka_port),  # type: ignore[attr-defined]
        "TICKFLOW_STACK__REGISTRY_PORT": str(stack.settings.registry_port),  # type: ignore[attr-defined]
    }
    result = _cli("infra", "status", env=env)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "kafka-1" in out and "registry" in out and "not running" not in out
    assert "kafka 4.1.1" in out and "apicurio-registry 3.0.9" in out
    assert "tickflow.book" in out and "tickflow.orders.control" in out
    assert "compatibility BACKWARD" in out


def test_missing_java_is_a_message_not_a_traceback(tmp_path: Path) -> None:
    env = {**os.environ, "PATH": str(tmp_path), "TICKFLOW_STACK__STATE_DIR": str(tmp_path / "state")}
    result = _cli("infra", "up", env=env)
    assert result.returncode == 1
    assert "'java' was not found on PATH" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def _path_with(tmp_path: Path, tools: dict[str, str]) -> str:
    """A PATH holding only ``java`` (the real one) and the given fake tools."""
    import shutil

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "java").symlink_to(shutil.which("java") or "/usr/bin/java")
    for name, script in tools.items():
        (bin_dir / name).write_text(f"#!/bin/sh\n{script}\n")
        (bin_dir / name).chmod(0o755)
    return str(bin_dir)


def test_missing_maven_on_first_use_is_a_clear_error(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "PATH": _path_with(tmp_path, {}),
        "TICKFLOW_STACK__CACHE_DIR": str(tmp_path / "empty-cache"),
        "TICKFLOW_STACK__STATE_DIR": str(tmp_path / "state"),
    }
    result = _cli("infra", "up", env=env)
    assert result.returncode == 1
    assert "'mvn' was not found on PATH" in result.stderr and "Apache Kafka" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_failed_download_says_what_maven_said(tmp_path: Path) -> None:
    failing_mvn = 'echo "[ERROR] Could not transfer artifact org.apache.kafka:kafka_2.13: connection refused"; exit 1'
    env = {
        **os.environ,
        "PATH": _path_with(tmp_path, {"mvn": failing_mvn}),
        "TICKFLOW_STACK__CACHE_DIR": str(tmp_path / "empty-cache"),
        "TICKFLOW_STACK__STATE_DIR": str(tmp_path / "state"),
    }
    result = _cli("infra", "up", env=env)
    assert result.returncode == 1
    assert "Maven could not download Apache Kafka" in result.stderr
    assert "Could not transfer artifact" in result.stderr
    assert "Traceback" not in result.stderr
    # Nothing half-downloaded is left looking like a finished download.
    assert not list((tmp_path / "empty-cache").glob("kafka-*/libs"))


def test_storage_is_formatted_with_a_cluster_id_that_starts_with_a_dash(tmp_path: Path) -> None:
    """A base64url cluster id starts with "-" once in 64: passed as a separate argument, Kafka's
    StorageTool took it for an option and the cluster did not start (a CI run failed on it)."""
    from infra import artifacts
    from infra.kafka import cluster_nodes, format_storage
    from tickflow.config import StackSettings

    libs = artifacts.kafka_libs(StackSettings().cache_dir, lambda _: None)
    nodes = cluster_nodes(tmp_path, 19999, 1)
    java = artifacts.require_tool("java", "format Kafka storage")
    format_storage(nodes[0], nodes, libs, java, "-bCdEfGhIjKlMnOpQrStUv")
    (meta,) = tmp_path.rglob("meta.properties")
    assert "cluster.id=-bCdEfGhIjKlMnOpQrStUv" in meta.read_text()
