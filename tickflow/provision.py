"""Make a Kafka cluster and a schema registry ready for tickflow: topics, schemas, rules.

Used by ``tickflow infra up`` on the local stack and by ``tickflow provision`` on an external
cluster and registry. Idempotent: running it again changes nothing that is already right.
"""

from __future__ import annotations

from dataclasses import dataclass

from tickflow.admin import TopicChanges, ensure_topics
from tickflow.codec import subject_name
from tickflow.config import Settings
from tickflow.errors import SchemaError
from tickflow.registry import SchemaRegistry
from tickflow.schemas import load_contract
from tickflow.topics import TopicSpec, load_topics

#: New schema versions must read data written with the previous one.
COMPATIBILITY = "BACKWARD"


@dataclass
class ProvisionReport:
    topics: TopicChanges
    subjects: dict[str, int]


def register_schemas(registry: SchemaRegistry, specs: dict[str, TopicSpec]) -> dict[str, int]:
    """Register every record of every topic under its subject, with BACKWARD compatibility."""
    contract = load_contract()
    registry.set_compatibility(COMPATIBILITY)
    ids: dict[str, int] = {}
    for spec in specs.values():
        for record in spec.records:
            if record not in contract:
                raise SchemaError(f"topics.yaml: topic {spec.name} carries {record}, which has no schema in schemas/")
            subject = subject_name(spec.name, record)
            ids[subject] = registry.register(subject, contract[record].schema_str)
            # Set per subject too: a registry whose global default differs still enforces it.
            registry.set_compatibility(COMPATIBILITY, subject)
    return ids


def provision(settings: Settings, specs: dict[str, TopicSpec] | None = None) -> ProvisionReport:
    specs = specs if specs is not None else load_topics()
    changes = ensure_topics(settings.kafka, specs)
    with SchemaRegistry(settings.registry) as registry:
        subjects = register_schemas(registry, specs)
    return ProvisionReport(changes, subjects)
