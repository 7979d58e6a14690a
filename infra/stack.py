"""The local stack: Kafka (1 or 3 KRaft nodes) and Apicurio Registry, started by the project.

``up`` resolves the Java artifacts (cached), starts what is not running, waits until both
answer, then provisions topics and schemas; it is idempotent. ``down`` stops exactly the
processes ``up`` started, by pid file. Data and logs live under ``StackSettings.state_dir`` and
survive ``down``/``up``, so history stays available for replay.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from infra import artifacts
from infra.kafka import KafkaNode, cluster_nodes, format_storage, new_cluster_id, start_node
from infra.processes import ManagedProcess, ensure_port_free, port_open
from infra.registry import registry_process, registry_url, start_registry
from infra.versions import APICURIO_VERSION, KAFKA_VERSION
from tickflow.admin import wait_for_cluster
from tickflow.config import KafkaSettings, RegistrySettings, Settings, StackSettings
from tickflow.errors import InfraError, ToolMissing
from tickflow.provision import ProvisionReport, provision
from tickflow.registry import SchemaRegistry

Progress = Callable[[str], None]


@dataclass
class ProcessStatus:
    name: str
    pid: int | None
    port: int
    log: Path


class LocalStack:
    """One local stack, identified by its state directory."""

    def __init__(self, stack: StackSettings, progress: Progress = lambda _: None) -> None:
        self.settings = stack
        self.state_dir = stack.state_dir.resolve()
        self.progress = progress
        self.nodes: list[KafkaNode] = cluster_nodes(self.state_dir, stack.kafka_port, stack.brokers)

    # --- addresses -----------------------------------------------------------------------------

    @property
    def bootstrap_servers(self) -> str:
        return ",".join(node.bootstrap for node in self.nodes)

    @property
    def registry_url(self) -> str:
        return registry_url(self.settings.registry_port)

    def client_settings(self) -> Settings:
        """Settings that point every client at this stack."""
        return Settings(
            kafka=KafkaSettings(bootstrap_servers=self.bootstrap_servers),
            registry=RegistrySettings(url=self.registry_url),
            stack=self.settings,
        )

    @property
    def registry(self) -> ManagedProcess:
        return registry_process(self.state_dir)

    @property
    def _layout_file(self) -> Path:
        return self.state_dir / "stack.json"

    # --- lifecycle -----------------------------------------------------------------------------

    def _check_layout(self) -> str:
        """The cluster id of this state directory; refuses to reuse it with another broker count."""
        if self._layout_file.is_file():
            layout = json.loads(self._layout_file.read_text())
            if layout["brokers"] != len(self.nodes):
                raise InfraError(
                    f"{self.state_dir} holds a {layout['brokers']}-broker cluster; it cannot be started with "
                    f"{len(self.nodes)} brokers. Use another state directory (TICKFLOW_STACK__STATE_DIR) "
                    f"or remove this one (tickflow infra down --wipe)."
                )
            return str(layout["cluster_id"])
        self.state_dir.mkdir(parents=True, exist_ok=True)
        cluster_id = new_cluster_id()
        self._layout_file.write_text(
            json.dumps({"brokers": len(self.nodes), "cluster_id": cluster_id, "kafka_port": self.settings.kafka_port})
        )
        return cluster_id

    def up(self, provision_topics: bool = True) -> ProvisionReport | None:
        java = artifacts.require_tool("java", "run Kafka and the schema registry")
        if artifacts.java_major_version(java) < 17:
            raise ToolMissing("Java 17 or newer is needed to run Kafka 4 (java -version reports an older one)")
        libs = artifacts.kafka_libs(self.settings.cache_dir, self.progress)
        jar = artifacts.apicurio_jar(self.settings.cache_dir, self.progress)
        cluster_id = self._check_layout()

        self._warn_about_ephemeral_ports()
        to_start = [node for node in self.nodes if node.process.pid() is None]
        for node in to_start:
            ensure_port_free(node.client_port, f"Kafka node {node.node_id}")
            ensure_port_free(node.controller_port, f"Kafka node {node.node_id} (controller)")
        start_registry_too = self.registry.pid() is None
        if start_registry_too:
            ensure_port_free(self.settings.registry_port, "the schema registry")

        for node in to_start:
            format_storage(node, self.nodes, libs, java, cluster_id)
        for node in to_start:
            self.progress(f"Starting Kafka node {node.node_id} on {node.bootstrap}")
            start_node(node, libs, java, self.settings.kafka_heap)
        if start_registry_too:
            self.progress(f"Starting Apicurio Registry on port {self.settings.registry_port}")
            start_registry(self.state_dir, jar, java, self.settings.registry_port, self.settings.registry_heap)

        self.wait_ready()
        if not provision_topics:
            return None
        self.progress("Creating topics and registering schemas")
        return provision(self.client_settings())

    def _warn_about_ephemeral_ports(self) -> None:
        """Ports in the kernel's ephemeral range can be taken by any client's outgoing connection."""
        try:
            low, high = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
        except (OSError, ValueError):
            return
        ports = [p for n in self.nodes for p in (n.client_port, n.controller_port)] + [self.settings.registry_port]
        clashing = [p for p in ports if low <= p <= high]
        if clashing:
            self.progress(
                f"warning: ports {clashing} lie in the ephemeral range {low}-{high}; an outgoing connection "
                f"may take one before the stack binds it. Prefer ports below {low}."
            )

    def wait_ready(self, timeout: float = 90.0) -> None:
        """Block until every broker and the registry answer."""
        self.progress("Waiting for Kafka and the schema registry to answer")
        for node in self.nodes:
            node.process.wait_until(lambda n=node: _broker_answers(n), f"broker answering on {node.bootstrap}", timeout)
        wait_for_cluster(KafkaSettings(bootstrap_servers=self.bootstrap_servers), timeout, brokers=len(self.nodes))
        with SchemaRegistry(RegistrySettings(url=self.registry_url)) as client:
            self.registry.wait_until(client.is_reachable, f"answering on {self.registry_url}", timeout)

    def down(self) -> list[str]:
        """Stop the registry and the brokers this stack started; returns what was stopped."""
        stopped = []
        if self.registry.stop():
            stopped.append("registry")
        # Signal every broker at once: stopped one by one, the last ones would wait for a
        # controller quorum that is already gone and only end at the SIGKILL timeout.
        signalled = [node.process for node in self.nodes if node.process.terminate() is not None]
        for process in signalled:
            process.stop(timeout=30)
            stopped.append(process.name)
        return stopped

    def restart_registry(self) -> None:
        self.registry.stop()
        jar = artifacts.apicurio_jar(self.settings.cache_dir, self.progress)
        java = artifacts.require_tool("java", "run the schema registry")
        start_registry(self.state_dir, jar, java, self.settings.registry_port, self.settings.registry_heap)
        with SchemaRegistry(RegistrySettings(url=self.registry_url)) as client:
            self.registry.wait_until(client.is_reachable, f"answering on {self.registry_url}", 90)

    def start_node(self, node: KafkaNode) -> None:
        """(Re)start one broker of this stack, e.g. after a crash test killed it."""
        java = artifacts.require_tool("java", "run Kafka")
        libs = artifacts.kafka_libs(self.settings.cache_dir, self.progress)
        start_node(node, libs, java, self.settings.kafka_heap)
        node.process.wait_until(lambda: _broker_answers(node), f"broker answering on {node.bootstrap}", 60)

    def processes(self) -> list[ProcessStatus]:
        rows = [ProcessStatus(n.process.name, n.process.pid(), n.client_port, n.process.log_file) for n in self.nodes]
        rows.append(ProcessStatus("registry", self.registry.pid(), self.settings.registry_port, self.registry.log_file))
        return rows

    @property
    def running(self) -> bool:
        return all(p.pid is not None for p in self.processes())

    @staticmethod
    def versions() -> dict[str, str]:
        return {"kafka": KAFKA_VERSION, "apicurio-registry": APICURIO_VERSION}


def _broker_answers(node: KafkaNode) -> bool:
    return port_open(node.client_port)
