"""docker-compose.yml and the Dockerfile, checked structurally: no Docker engine needed.

What a broken compose file would cost a user: an image tag that drifted from infra/versions.py
(a different Kafka or registry than `tickflow infra up` runs), a registry that forgets every
schema on restart, a broker that creates topics by accident, or `provision` pointed at a
listener or URL that does not exist inside the compose network.
"""

from __future__ import annotations

import os
import re
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from infra.versions import APICURIO_VERSION, KAFKA_VERSION

REPO_ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
DOCKERFILE = REPO_ROOT / "Dockerfile"
CCOMPAT_PATH = "/apis/ccompat/v7"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    doc = yaml.safe_load(COMPOSE_FILE.read_text())
    assert isinstance(doc, dict), "docker-compose.yml must hold a mapping"
    assert isinstance(doc.get("services"), dict), "docker-compose.yml must define services"
    return doc


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


def env(service: dict[str, Any]) -> dict[str, Any]:
    """A service's environment, in either compose form (mapping or list of KEY=VALUE)."""
    raw = service.get("environment") or {}
    if isinstance(raw, list):
        return dict(item.split("=", 1) if "=" in item else (item, None) for item in raw)
    return dict(raw)


def depends_on(service: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A service's dependencies, in either compose form (list of names or mapping)."""
    raw = service.get("depends_on") or {}
    if isinstance(raw, list):
        return {name: {} for name in raw}
    return {name: body or {} for name, body in raw.items()}


def volume_mounts(service: dict[str, Any]) -> list[tuple[str | None, str]]:
    """``(named volume or None for a bind mount or anonymous volume, target path)`` per mount."""
    mounts: list[tuple[str | None, str]] = []
    for entry in service.get("volumes") or []:
        if isinstance(entry, dict):
            named = entry.get("source") if entry.get("type", "volume") == "volume" else None
            mounts.append((named, entry["target"]))
            continue
        parts = entry.split(":")
        if len(parts) == 1:
            mounts.append((None, parts[0]))
        else:
            source, target = parts[0], parts[1]
            is_path = source.startswith(("/", ".", "~", "$"))
            mounts.append((None if is_path else source, target))
    return mounts


def image_tag(service: dict[str, Any]) -> tuple[str, str]:
    image = service["image"]
    name, _, tag = image.rpartition(":")
    assert name and "/" not in tag, f"image {image!r} has no explicit tag"
    return name, tag


def published_ports(service: dict[str, Any]) -> dict[int, int]:
    """``{container port: host port}`` of a service's short-syntax or long-syntax ports."""
    published: dict[int, int] = {}
    for entry in service.get("ports") or []:
        if isinstance(entry, dict):
            published[int(entry["target"])] = int(entry["published"])
            continue
        *host, container = str(entry).split(":")
        if host:
            published[int(container.split("/")[0])] = int(host[-1])
    return published


def listeners(value: str) -> dict[str, tuple[str, int]]:
    """``{listener name: (host, port)}`` of a Kafka listener list such as ``A://host:1,B://:2``."""
    parsed: dict[str, tuple[str, int]] = {}
    for item in value.split(","):
        name, _, address = item.strip().partition("://")
        host, _, port = address.rpartition(":")
        parsed[name] = (host, int(port))
    return parsed


def dockerfile_instructions() -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` of the Dockerfile, comments dropped, continuations joined."""
    logical: list[str] = []
    pending = ""
    for line in DOCKERFILE.read_text().splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        logical.append(pending + stripped)
        pending = ""
    if pending:
        logical.append(pending)
    return [(parts[0].upper(), parts[1] if len(parts) > 1 else "") for parts in (x.split(None, 1) for x in logical)]


# --- the file and its services -------------------------------------------------------------


@pytest.mark.parametrize("name", ["kafka", "registry", "provision"])
def test_service_is_defined(services: dict[str, dict[str, Any]], name: str) -> None:
    assert name in services


def test_kafka_image_is_the_version_the_local_stack_runs(services: dict[str, dict[str, Any]]) -> None:
    assert image_tag(services["kafka"]) == ("apache/kafka", KAFKA_VERSION)


def test_registry_image_is_the_version_the_local_stack_runs(services: dict[str, dict[str, Any]]) -> None:
    assert image_tag(services["registry"]) == ("apicurio/apicurio-registry", APICURIO_VERSION)


def test_every_image_is_pinned(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        if "image" in service and "build" not in service:
            _, tag = image_tag(service)
            assert tag != "latest", f"{name} runs :latest"


def test_environment_values_are_strings_not_yaml_booleans(services: dict[str, dict[str, Any]]) -> None:
    # Compose rejects `KEY: true` / `KEY: false` (a YAML boolean) in an environment mapping.
    for name, service in services.items():
        for key, value in env(service).items():
            assert not isinstance(value, bool), f"{name}: {key} is a YAML boolean; quote it"


# --- the registry keeps its schemas ----------------------------------------------------------


def test_registry_storage_is_not_in_memory(services: dict[str, dict[str, Any]]) -> None:
    registry = env(services["registry"])
    assert registry.get("APICURIO_STORAGE_KIND") == "sql"
    url = registry.get("APICURIO_DATASOURCE_URL", "")
    assert url.startswith(("jdbc:h2:file:", "jdbc:postgresql:")), f"not persistent storage: {url!r}"
    assert ":mem:" not in url


def test_registry_h2_database_lives_on_a_named_volume(services: dict[str, dict[str, Any]]) -> None:
    # A file-backed H2 database outside a volume would still vanish when the container is recreated.
    registry = services["registry"]
    url = env(registry)["APICURIO_DATASOURCE_URL"]
    if not url.startswith("jdbc:h2:file:"):
        pytest.skip("the registry uses an external database")
    assert env(registry).get("APICURIO_STORAGE_SQL_KIND") == "h2"
    db_file = PurePosixPath(url.removeprefix("jdbc:h2:file:").split(";")[0])
    targets = [PurePosixPath(target) for named, target in volume_mounts(registry) if named]
    assert any(db_file.is_relative_to(t) for t in targets), f"{db_file} is on no named volume of registry"


def test_registry_publishes_its_api_on_host_port_8081(services: dict[str, dict[str, Any]]) -> None:
    # 8081 is where tickflow's default TICKFLOW_REGISTRY__URL (and `tickflow infra up`) expect it.
    assert published_ports(services["registry"]).get(8080) == 8081


# --- Kafka: KRaft, single node, no accidental topics -----------------------------------------


def test_kafka_runs_kraft_combined_mode(services: dict[str, dict[str, Any]]) -> None:
    kafka = env(services["kafka"])
    roles = {role.strip() for role in str(kafka["KAFKA_PROCESS_ROLES"]).split(",")}
    assert roles == {"broker", "controller"}
    node_id = str(kafka["KAFKA_NODE_ID"])
    voters = str(kafka.get("KAFKA_CONTROLLER_QUORUM_VOTERS", ""))
    assert re.fullmatch(r"\d+@[\w.-]+:\d+(,\d+@[\w.-]+:\d+)*", voters), f"bad quorum voters {voters!r}"
    assert node_id in {v.split("@")[0] for v in voters.split(",")}, "the node is not one of its own voters"
    controller = str(kafka["KAFKA_CONTROLLER_LISTENER_NAMES"])
    assert controller in listeners(str(kafka["KAFKA_LISTENERS"]))
    voter_port = int(voters.split(",")[0].rsplit(":", 1)[1])
    assert listeners(str(kafka["KAFKA_LISTENERS"]))[controller][1] == voter_port


def test_kafka_does_not_create_topics_by_accident(services: dict[str, dict[str, Any]]) -> None:
    assert str(env(services["kafka"]).get("KAFKA_AUTO_CREATE_TOPICS_ENABLE")).lower() == "false"


def test_kafka_internal_topics_fit_one_broker(services: dict[str, dict[str, Any]]) -> None:
    kafka = env(services["kafka"])
    for key in ("KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR", "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"):
        assert str(kafka.get(key)) == "1", f"{key} must be 1 on a single broker"


def test_kafka_listeners_are_consistent(services: dict[str, dict[str, Any]]) -> None:
    kafka = env(services["kafka"])
    bound = listeners(str(kafka["KAFKA_LISTENERS"]))
    advertised = listeners(str(kafka["KAFKA_ADVERTISED_LISTENERS"]))
    protocols = dict(item.split(":") for item in str(kafka["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"]).split(","))
    assert set(bound) <= set(protocols), "a listener has no security protocol"
    for name, (_, port) in advertised.items():
        assert name in bound and bound[name][1] == port, f"advertised listener {name} is not bound on {port}"
    assert kafka["KAFKA_INTER_BROKER_LISTENER_NAME"] in advertised
    # Host clients use the listener advertised as localhost:9092, so that port must be published.
    external = [port for host, port in advertised.values() if host in ("localhost", "127.0.0.1")]
    assert external == [9092]
    assert published_ports(services["kafka"]).get(9092) == 9092


def test_kafka_data_lives_on_a_named_volume(services: dict[str, dict[str, Any]]) -> None:
    kafka = services["kafka"]
    log_dirs = str(env(kafka).get("KAFKA_LOG_DIRS", ""))
    assert log_dirs, "KAFKA_LOG_DIRS unset: the image would write to its /tmp default"
    targets = [PurePosixPath(target) for named, target in volume_mounts(kafka) if named]
    for log_dir in log_dirs.split(","):
        assert any(PurePosixPath(log_dir).is_relative_to(t) for t in targets), f"{log_dir} is on no named volume"


# --- wiring between services ------------------------------------------------------------------


def test_every_dependency_exists(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        for target in depends_on(service):
            assert target in services, f"{name} depends on undefined service {target}"


@pytest.mark.parametrize("name", ["kafka", "registry"])
def test_infrastructure_has_a_healthcheck(services: dict[str, dict[str, Any]], name: str) -> None:
    check = services[name].get("healthcheck") or {}
    assert not check.get("disable", False)
    assert check.get("test"), f"{name} has no healthcheck test"


def test_registry_healthcheck_probes_the_ccompat_api(services: dict[str, dict[str, Any]]) -> None:
    test = services["registry"]["healthcheck"]["test"]
    command = " ".join(test) if isinstance(test, list) else test
    assert f"{CCOMPAT_PATH}/subjects" in command


def test_every_named_volume_is_declared(compose: dict[str, Any], services: dict[str, dict[str, Any]]) -> None:
    declared = set(compose.get("volumes") or {})
    for name, service in services.items():
        for named, _ in volume_mounts(service):
            if named:
                assert named in declared, f"{name} mounts undeclared volume {named}"


def test_provision_waits_for_healthy_kafka_and_registry(services: dict[str, dict[str, Any]]) -> None:
    deps = depends_on(services["provision"])
    for target in ("kafka", "registry"):
        assert deps.get(target, {}).get("condition") == "service_healthy", f"provision must wait for {target}"


def test_provision_is_a_one_shot_tickflow_provision(services: dict[str, dict[str, Any]]) -> None:
    from tickflow.cli import app

    provision = services["provision"]
    assert "build" in provision, "provision must be built from the Dockerfile"
    build = provision["build"]
    context = build if isinstance(build, str) else build.get("context", ".")
    dockerfile = "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
    assert (REPO_ROOT / context / dockerfile).resolve() == DOCKERFILE
    command = provision["command"]
    assert (command.split() if isinstance(command, str) else command) == ["provision"]
    assert "provision" in {c.name for c in app.registered_commands}
    assert str(provision.get("restart", "no")) == "no"


def test_provision_uses_the_ccompat_url_of_the_registry_service(services: dict[str, dict[str, Any]]) -> None:
    url = str(env(services["provision"])["TICKFLOW_REGISTRY__URL"])
    assert url.endswith(CCOMPAT_PATH)
    parts = urlsplit(url)
    assert parts.hostname == "registry" and parts.hostname in services
    # Inside the network the registry answers on its container port, not the published 8081.
    assert parts.port in published_ports(services["registry"])


def test_provision_bootstraps_from_the_internal_listener(services: dict[str, dict[str, Any]]) -> None:
    kafka = env(services["kafka"])
    internal = listeners(str(kafka["KAFKA_ADVERTISED_LISTENERS"]))[kafka["KAFKA_INTER_BROKER_LISTENER_NAME"]]
    assert internal[0] in services, "the internal listener must advertise a compose service name"
    bootstrap = str(env(services["provision"])["TICKFLOW_KAFKA__BOOTSTRAP_SERVERS"])
    assert bootstrap == f"{internal[0]}:{internal[1]}"


def test_provision_environment_reaches_tickflow_settings(
    services: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    from tickflow.config import Settings

    provision = env(services["provision"])
    for key in [k for k in os.environ if k.startswith("TICKFLOW_")]:
        monkeypatch.delenv(key)
    for key, value in provision.items():
        monkeypatch.setenv(key, str(value))
    settings = Settings()
    assert settings.kafka.bootstrap_servers == provision["TICKFLOW_KAFKA__BOOTSTRAP_SERVERS"]
    assert settings.registry.url == provision["TICKFLOW_REGISTRY__URL"]


# --- the Dockerfile ------------------------------------------------------------------------------


def test_dockerfile_builds_on_python_311() -> None:
    assert DOCKERFILE.is_file()
    instructions = dockerfile_instructions()
    froms = [args for op, args in instructions if op == "FROM"]
    assert froms, "the Dockerfile has no FROM"
    base = froms[-1].split()[0]
    assert re.fullmatch(r"python:3\.11([.-].*)?", base), f"base image {base!r} is not python:3.11*"


def test_dockerfile_ships_what_tickflow_reads_at_run_time() -> None:
    import tomllib

    instructions = dockerfile_instructions()
    copied = {
        PurePosixPath(source.rstrip("*")).parts[0]
        for op, args in instructions
        if op == "COPY"
        for source in args.split()[:-1]
        if not source.startswith("--")
    }
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    packages = {p.rstrip("*") for p in project["tool"]["setuptools"]["packages"]["find"]["include"]}
    assert packages | {"pyproject.toml", "schemas"} <= copied
    for source in copied - {"README.md"}:
        assert (REPO_ROOT / source).exists(), f"the Dockerfile copies {source}, which does not exist"
    # schemas/ is not a package: the installed code finds it only through TICKFLOW_SCHEMAS_DIR.
    env_lines = " ".join(args for op, args in instructions if op == "ENV")
    match = re.search(r"TICKFLOW_SCHEMAS_DIR[= ](\S+)", env_lines)
    assert match, "the Dockerfile does not set TICKFLOW_SCHEMAS_DIR"
    workdir = [args for op, args in instructions if op == "WORKDIR"]
    assert workdir and PurePosixPath(match.group(1)) == PurePosixPath(workdir[-1]) / "schemas"
    # infra/topics.yaml reaches site-packages only as package data of the infra package.
    assert "*.yaml" in project["tool"]["setuptools"]["package-data"]["infra"]


def test_dockerfile_entrypoint_is_the_tickflow_command() -> None:
    entrypoints = [args for op, args in dockerfile_instructions() if op == "ENTRYPOINT"]
    assert entrypoints and yaml.safe_load(entrypoints[-1]) == ["tickflow"]
