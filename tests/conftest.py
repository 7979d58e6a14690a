"""Test fixtures.

Integration tests (``tests/integration``) run against a real Kafka broker and a real Apicurio
Registry: the session starts a dedicated local stack (its own state directory and ports, wiped
at the start, so a developer's own stack is never touched) and stops it at the end, whatever
happens. Nothing here mocks Kafka or the registry.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tickflow.config import REPO_ROOT, Settings, StackSettings

TEST_STATE_DIR = Path(os.environ.get("TICKFLOW_TEST_STATE_DIR", REPO_ROOT / ".tickflow" / "test-state"))
TEST_KAFKA_PORT = int(os.environ.get("TICKFLOW_TEST_KAFKA_PORT", "19092"))
TEST_REGISTRY_PORT = int(os.environ.get("TICKFLOW_TEST_REGISTRY_PORT", "18081"))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "/integration/" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


def local_stack_settings(state_dir: Path = TEST_STATE_DIR, **overrides: object) -> StackSettings:
    return StackSettings(
        state_dir=state_dir,
        kafka_port=overrides.pop("kafka_port", TEST_KAFKA_PORT),  # type: ignore[arg-type]
        registry_port=overrides.pop("registry_port", TEST_REGISTRY_PORT),  # type: ignore[arg-type]
        **overrides,  # type: ignore[arg-type]
    )


@pytest.fixture(scope="session")
def stack() -> Iterator[object]:
    """The session's local stack: one Kafka node and Apicurio, topics created, schemas registered."""
    from infra.stack import LocalStack

    local = LocalStack(local_stack_settings(), progress=lambda msg: print(f"[stack] {msg}"))
    local.down()  # leftovers of an interrupted run
    shutil.rmtree(TEST_STATE_DIR, ignore_errors=True)
    try:
        local.up()
        yield local
    finally:
        local.down()


@pytest.fixture(scope="session")
def settings(stack: object) -> Settings:
    return stack.client_settings()  # type: ignore[attr-defined]


@pytest.fixture
def registry(settings: Settings) -> Iterator[object]:
    from tickflow.registry import SchemaRegistry

    with SchemaRegistry(settings.registry) as client:
        yield client


@pytest.fixture
def codec(registry: object) -> object:
    from tickflow.codec import AvroCodec

    return AvroCodec(registry)  # type: ignore[arg-type]


@pytest.fixture
def new_topic(settings: Settings) -> Iterator[Callable[..., str]]:
    """Creates uniquely named topics for one test and deletes them afterwards."""
    from tickflow.admin import admin_client, ensure_topics
    from tickflow.topics import TopicSpec

    created: list[str] = []

    def make(prefix: str = "test", partitions: int = 3, **config: str) -> str:
        name = f"{prefix}.{uuid.uuid4().hex[:10]}"
        ensure_topics(settings.kafka, {name: TopicSpec(name, partitions, None, config)})
        created.append(name)
        return name

    yield make
    if created:
        admin = admin_client(settings.kafka)  # keep a reference until the futures resolve
        for future in admin.delete_topics(created, operation_timeout=30).values():
            future.result()
