"""The Java artifacts of the local stack, resolved from Maven Central into a cache outside the repo.

Kafka: ``infra/maven/kafka-pom.xml`` resolved with ``dependency:copy-dependencies`` (the broker
and its runtime jars plus log4j2). Apicurio Registry: its ``tar.gz:all`` distribution, unpacked.
Each lands in a temporary folder first and is renamed into place when complete, so an
interrupted download is never mistaken for a finished one.
"""

from __future__ import annotations

import shutil
import subprocess
import tarfile
from collections.abc import Callable
from pathlib import Path

from infra.versions import APICURIO_ARTIFACT, APICURIO_VERSION, KAFKA_VERSION, LOG4J_VERSION
from tickflow.errors import DownloadFailed, ToolMissing

INFRA_DIR = Path(__file__).resolve().parent
KAFKA_POM = INFRA_DIR / "maven" / "kafka-pom.xml"

Progress = Callable[[str], None]


def require_tool(name: str, purpose: str) -> str:
    path = shutil.which(name)
    if path is None:
        hint = {
            "java": "Install a Java 17+ runtime (Debian/Ubuntu: apt-get install openjdk-17-jre-headless).",
            "mvn": "Install Apache Maven (Debian/Ubuntu: apt-get install maven).",
        }.get(name, "")
        raise ToolMissing(f"'{name}' was not found on PATH; it is needed to {purpose}. {hint}".strip())
    return path


def java_major_version(java: str) -> int:
    out = subprocess.run([java, "-version"], capture_output=True, text=True, check=False).stderr
    # e.g. 'openjdk version "17.0.15" 2025-04-15'
    try:
        version = out.split('"')[1]
    except IndexError:
        return 0
    major = version.split(".")[0]
    return int(major) if major.isdigit() else 0


def _run_maven(args: list[str], what: str, cwd: Path) -> None:
    mvn = require_tool("mvn", f"download {what} from Maven Central")
    result = subprocess.run([mvn, "-B", "-q", *args], cwd=cwd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        output = (result.stdout + result.stderr).strip().splitlines()
        errors = [line for line in output if "ERROR" in line] or output
        raise DownloadFailed(
            f"Maven could not download {what} (exit {result.returncode}). Check that Maven Central is reachable "
            f"(proxy settings in ~/.m2/settings.xml). Maven said:\n" + "\n".join(errors[-12:])
        )


def kafka_libs(cache_dir: Path, progress: Progress = lambda _: None) -> Path:
    """The folder of Kafka's jars, downloading them on first use."""
    target = cache_dir / f"kafka-{KAFKA_VERSION}-log4j-{LOG4J_VERSION}" / "libs"
    if target.is_dir() and any(target.glob("kafka_2.13-*.jar")):
        return target
    progress(f"Downloading Apache Kafka {KAFKA_VERSION} from Maven Central (about 45 MB, once)")
    staging = target.with_name("libs.partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    _run_maven(
        [
            "-f",
            str(KAFKA_POM),
            "dependency:copy-dependencies",
            f"-DoutputDirectory={staging}",
            "-DincludeScope=runtime",
            f"-Dkafka.version={KAFKA_VERSION}",
            f"-Dlog4j.version={LOG4J_VERSION}",
        ],
        f"Apache Kafka {KAFKA_VERSION}",
        cwd=staging,
    )
    staging.rename(target)
    return target


def apicurio_jar(cache_dir: Path, progress: Progress = lambda _: None) -> Path:
    """The Apicurio Registry runner jar, downloading and unpacking it on first use."""
    home = cache_dir / f"apicurio-registry-{APICURIO_VERSION}"
    jar = home / f"apicurio-registry-app-{APICURIO_VERSION}-runner.jar"
    if jar.is_file():
        return jar
    progress(f"Downloading Apicurio Registry {APICURIO_VERSION} from Maven Central (about 110 MB, once)")
    staging = home.with_name(home.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    _run_maven(
        ["dependency:copy", f"-Dartifact={APICURIO_ARTIFACT}", f"-DoutputDirectory={staging}"],
        f"Apicurio Registry {APICURIO_VERSION}",
        cwd=staging,
    )
    archives = list(staging.glob("*.tar.gz"))
    if not archives:
        raise DownloadFailed(f"Maven reported success but no Apicurio archive is in {staging}")
    progress("Unpacking Apicurio Registry")
    with tarfile.open(archives[0]) as archive:
        archive.extractall(staging, filter="data")
    archives[0].unlink()
    shutil.rmtree(home, ignore_errors=True)
    staging.rename(home)
    if not jar.is_file():
        raise DownloadFailed(f"the Apicurio archive did not contain {jar.name}")
    return jar
