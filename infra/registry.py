"""Local Apicurio Registry, used only through its Confluent-compatible API.

Apicurio keeps its data in an in-memory database by default, which would make every record
already in Kafka unreadable after a restart (the ids it names would be gone). We point its
SQL storage at a file-backed H2 database under the state directory instead: schemas, ids and
compatibility rules survive restarts, and there is no extra process to run.
"""

from __future__ import annotations

from pathlib import Path

from infra.processes import ManagedProcess

CCOMPAT_PATH = "/apis/ccompat/v7"


def registry_process(state_dir: Path) -> ManagedProcess:
    return ManagedProcess("registry", state_dir)


def registry_url(port: int) -> str:
    return f"http://127.0.0.1:{port}{CCOMPAT_PATH}"


def start_registry(state_dir: Path, jar: Path, java: str, port: int, heap: str) -> int:
    db = state_dir / "registry" / "registry"
    db.parent.mkdir(parents=True, exist_ok=True)
    process = registry_process(state_dir)
    return process.start(
        [
            java,
            f"-Xmx{heap}",
            "-XX:+UseSerialGC",
            process.marker,
            f"-Dquarkus.http.port={port}",
            "-Dquarkus.http.host=127.0.0.1",
            "-Dapicurio.storage.kind=sql",
            "-Dapicurio.storage.sql.kind=h2",
            f"-Dapicurio.datasource.url=jdbc:h2:file:{db}",
            # Subjects can be deleted through ccompat (a soft delete, as in Confluent).
            "-Dapicurio.rest.deletion.artifact.enabled=true",
            "-Dapicurio.rest.deletion.artifact-version.enabled=true",
            "-jar",
            str(jar),
        ]
    )
