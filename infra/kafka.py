"""Local Apache Kafka in KRaft mode: one node, or three on one host for reliability tests.

Each node is a combined broker and controller with a static quorum
(``controller.quorum.voters``). Node ``i`` (0-based) listens for clients on
``kafka_port + 2*i`` and for the controller quorum on ``kafka_port + 2*i + 1``: 9092/9093 for
a single node, 9092-9097 for three.
"""

from __future__ import annotations

import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

from infra.artifacts import INFRA_DIR
from infra.processes import ManagedProcess
from tickflow.errors import StartupFailed

LOG4J_CONFIG = INFRA_DIR / "log4j2.properties"


@dataclass(frozen=True)
class KafkaNode:
    node_id: int  # 1-based, as Kafka wants
    client_port: int
    controller_port: int
    state_dir: Path

    @property
    def process(self) -> ManagedProcess:
        return ManagedProcess(f"kafka-{self.node_id}", self.state_dir)

    @property
    def data_dir(self) -> Path:
        return self.state_dir / "kafka" / f"node-{self.node_id}"

    @property
    def logs_dir(self) -> Path:
        return self.state_dir / "logs" / f"kafka-{self.node_id}"

    @property
    def config_file(self) -> Path:
        return self.state_dir / "kafka" / f"node-{self.node_id}.properties"

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.client_port}"


def cluster_nodes(state_dir: Path, kafka_port: int, brokers: int) -> list[KafkaNode]:
    return [KafkaNode(i + 1, kafka_port + 2 * i, kafka_port + 2 * i + 1, state_dir) for i in range(brokers)]


def render_config(node: KafkaNode, nodes: list[KafkaNode]) -> str:
    replicas = len(nodes)
    min_isr = 2 if replicas >= 3 else 1
    voters = ",".join(f"{n.node_id}@127.0.0.1:{n.controller_port}" for n in nodes)
    settings = {
        "process.roles": "broker,controller",
        "node.id": node.node_id,
        "controller.quorum.voters": voters,
        "listeners": f"PLAINTEXT://127.0.0.1:{node.client_port},CONTROLLER://127.0.0.1:{node.controller_port}",
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{node.client_port}",
        "controller.listener.names": "CONTROLLER",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "inter.broker.listener.name": "PLAINTEXT",
        "log.dirs": node.data_dir,
        "num.partitions": 6,
        "default.replication.factor": replicas,
        "min.insync.replicas": min_isr,
        "offsets.topic.replication.factor": replicas,
        "transaction.state.log.replication.factor": replicas,
        "transaction.state.log.min.isr": min_isr,
        "share.coordinator.state.topic.replication.factor": replicas,
        "share.coordinator.state.topic.min.isr": min_isr,
        # A consumer group starts consuming at once instead of waiting 3 s for more members.
        "group.initial.rebalance.delay.ms": 0,
        # Never create topics by accident: every topic comes from infra/topics.yaml.
        "auto.create.topics.enable": "false",
        "num.network.threads": 2,
        "num.io.threads": 4,
        "log.retention.check.interval.ms": 60000,
    }
    return "".join(f"{key}={value}\n" for key, value in settings.items())


def _java_classpath(libs: Path) -> str:
    return f"{libs}/*"


def format_storage(node: KafkaNode, nodes: list[KafkaNode], libs: Path, java: str, cluster_id: str) -> None:
    """Write the node's config and, on first use only, format its metadata directory."""
    node.config_file.parent.mkdir(parents=True, exist_ok=True)
    node.config_file.write_text(render_config(node, nodes))
    if (node.data_dir / "meta.properties").is_file():
        return
    result = subprocess.run(
        [
            java,
            "-cp",
            _java_classpath(libs),
            f"-Dlog4j2.configurationFile={LOG4J_CONFIG}",
            f"-Dkafka.logs.dir={node.logs_dir}",
            "kafka.tools.StorageTool",
            "format",
            # One argument: an id may start with "-" (base64url), which a separate one would pass for an option.
            f"--cluster-id={cluster_id}",
            "-c",
            str(node.config_file),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise StartupFailed(f"formatting Kafka storage of node {node.node_id} failed:\n{result.stdout}{result.stderr}")


def new_cluster_id() -> str:
    """A Kafka cluster id: 16 random bytes, URL-safe base64 without padding (what StorageTool makes)."""
    import base64

    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


def start_node(node: KafkaNode, libs: Path, java: str, heap: str) -> int:
    return node.process.start(
        [
            java,
            f"-Xmx{heap}",
            f"-Xms{heap}",
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-Djava.awt.headless=true",
            node.process.marker,
            f"-Dlog4j2.configurationFile={LOG4J_CONFIG}",
            f"-Dkafka.logs.dir={node.logs_dir}",
            "-cp",
            _java_classpath(libs),
            "kafka.Kafka",
            str(node.config_file),
        ]
    )
