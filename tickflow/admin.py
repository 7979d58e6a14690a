"""Cluster administration: reachability, and bringing topics in line with ``infra/topics.yaml``."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from confluent_kafka import KafkaException
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewPartitions,
    NewTopic,
)

from tickflow.config import KafkaSettings
from tickflow.errors import BrokerUnavailable, KafkaError
from tickflow.topics import TopicSpec

log = logging.getLogger(__name__)


def admin_client(settings: KafkaSettings) -> AdminClient:
    return AdminClient({**settings.client_config(), "socket.connection.setup.timeout.ms": 3000})


def wait_for_cluster(settings: KafkaSettings, timeout: float = 30.0, brokers: int = 1) -> int:
    """Block until at least ``brokers`` brokers answer; returns how many did."""
    admin = admin_client(settings)
    deadline = time.monotonic() + timeout
    problem = "no answer"
    while True:
        try:
            metadata = admin.list_topics(timeout=2)
            if len(metadata.brokers) >= brokers:
                return len(metadata.brokers)
            problem = f"{len(metadata.brokers)} of {brokers} brokers up"
        except KafkaException as exc:
            problem = str(exc.args[0]) if exc.args else repr(exc)
        if time.monotonic() > deadline:
            raise BrokerUnavailable(
                f"Kafka at {settings.bootstrap_servers} not reachable within {timeout:.0f}s ({problem})"
            )
        time.sleep(0.25)


@dataclass
class TopicChanges:
    created: list[str] = field(default_factory=list)
    grown: list[str] = field(default_factory=list)
    reconfigured: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.created or self.grown or self.reconfigured)


def ensure_topics(settings: KafkaSettings, specs: dict[str, TopicSpec], timeout: float = 30.0) -> TopicChanges:
    """Create missing topics and bring existing ones in line (idempotent)."""
    admin = admin_client(settings)
    changes = TopicChanges()
    try:
        existing = admin.list_topics(timeout=timeout).topics
    except KafkaException as exc:
        raise BrokerUnavailable(f"cannot list topics on {settings.bootstrap_servers}: {exc}") from exc

    missing = [
        NewTopic(
            spec.name,
            num_partitions=spec.partitions,
            replication_factor=spec.replication_factor or -1,
            config=spec.config,
        )
        for spec in specs.values()
        if spec.name not in existing
    ]
    if missing:
        for name, future in admin.create_topics(missing, operation_timeout=timeout).items():
            try:
                future.result()
                changes.created.append(name)
            except KafkaException as exc:
                if exc.args[0].name() != "TOPIC_ALREADY_EXISTS":  # a concurrent `up` created it
                    raise KafkaError(f"creating topic {name} failed: {exc.args[0].str()}") from exc

    grow = []
    for spec in specs.values():
        meta = existing.get(spec.name)
        if meta is None:
            continue
        have = len(meta.partitions)
        if have < spec.partitions:
            grow.append(NewPartitions(spec.name, spec.partitions))
        elif have > spec.partitions:
            changes.warnings.append(
                f"{spec.name} has {have} partitions, more than the {spec.partitions} declared (Kafka cannot shrink)"
            )
    if grow:
        for name, future in admin.create_partitions(grow, operation_timeout=timeout).items():
            future.result()
            changes.grown.append(name)

    # Bring declared configs in line on topics that existed already.
    resources = [ConfigResource(ConfigResource.Type.TOPIC, s.name) for s in specs.values() if s.name in existing]
    if resources:
        current = {res.name: fut.result() for res, fut in admin.describe_configs(resources).items()}
        alter = []
        for spec in specs.values():
            entries = current.get(spec.name)
            if entries is None:
                continue
            differing = [
                ConfigEntry(key, value, incremental_operation=AlterConfigOpType.SET)
                for key, value in spec.config.items()
                if key not in entries or entries[key].value != value
            ]
            if differing:
                alter.append(ConfigResource(ConfigResource.Type.TOPIC, spec.name, incremental_configs=differing))
        if alter:
            for res, future in admin.incremental_alter_configs(alter).items():
                future.result()
                changes.reconfigured.append(res.name)
    for name in changes.created + changes.grown + changes.reconfigured:
        log.info("topic %s brought in line with topics.yaml", name)
    return changes
