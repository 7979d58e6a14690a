"""Starting, finding and stopping the local stack's background processes, by pid file.

Each process is started in its own session (it outlives the command that started it) with a
marker system property naming the process and its state directory, so that ``down`` stops
exactly what ``up`` started and never an unrelated process that reused the pid.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tickflow.errors import PortInUse, StartupFailed

# Processes started by this Python process, by pid: polling them reaps them when they exit and
# tells their exit status (a process started by an earlier command is known by its pid file only).
_children: dict[int, subprocess.Popen[bytes]] = {}


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    """True if something accepts connections on ``host:port``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.3)
        return sock.connect_ex((host, port)) == 0


def free_port(start: int, stop: int, host: str = "127.0.0.1") -> int:
    """The first port in ``[start, stop)`` that can be bound now. Give ranges below the kernel's
    ephemeral range (32768-60999 here), which outgoing connections take ports from."""
    for port in range(start, stop):
        with socket.socket() as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
            return port
    raise PortInUse(f"no free port in {start}..{stop - 1}")


def ensure_port_free(port: int, what: str) -> None:
    if port_open(port):
        raise PortInUse(
            f"port {port} (wanted by {what}) is already in use by another process. Stop that process, "
            f"or choose other ports (TICKFLOW_STACK__KAFKA_PORT / TICKFLOW_STACK__REGISTRY_PORT)."
        )


@dataclass(frozen=True)
class ManagedProcess:
    """One background process of the stack, known by its name and the stack's state directory."""

    name: str
    state_dir: Path

    @property
    def pid_file(self) -> Path:
        return self.state_dir / "run" / f"{self.name}.pid"

    @property
    def log_file(self) -> Path:
        return self.state_dir / "logs" / f"{self.name}.out"

    @property
    def marker(self) -> str:
        """A JVM system property that identifies this process on its command line."""
        return f"-Dtickflow.process={self.name}@{self.state_dir}"

    def pid(self) -> int | None:
        """The pid of the running process, or ``None`` if it is not running (or not ours)."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        child = _children.get(pid)
        if child is not None:
            # Started by us: poll() is exact, and reaps it. (Reading /proc right after the start
            # can catch the java launcher re-executing itself, with an empty command line.)
            return pid if child.poll() is None else None
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError, IndexError):
            return None
        if state == "Z":
            return None
        # A pid from an earlier command: ours only if its command line carries our marker.
        return pid if self.marker.encode() in cmdline else None

    def start(self, argv: list[str], env: dict[str, str] | None = None) -> int:
        """Start ``argv`` in the background, logging to ``log_file``; returns the pid."""
        self.pid_file.parent.mkdir(parents=True, exist_ok=True)
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_file, "ab") as log:
            process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env={**os.environ, **(env or {})},
            )
        _children[process.pid] = process
        self.pid_file.write_text(f"{process.pid}\n")
        return process.pid

    def exit_status(self) -> str:
        """How the last process this Python process started under this name ended, if known."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return "unknown"
        child = _children.get(pid)
        if child is None or child.returncode is None:
            return "unknown"
        code = child.returncode
        return f"killed by signal {-code}" if code < 0 else f"exit code {code}"

    def terminate(self) -> int | None:
        """Send SIGTERM without waiting; returns the pid signalled, if any."""
        pid = self.pid()
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        return pid

    def stop(self, timeout: float = 30.0) -> bool:
        """SIGTERM, then SIGKILL after ``timeout`` seconds. True if a process was stopped."""
        pid = self.terminate()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        deadline = time.monotonic() + timeout
        while self.pid() is not None and time.monotonic() < deadline:
            time.sleep(0.1)
        if self.pid() is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            while self.pid() is not None:
                time.sleep(0.05)
        self.pid_file.unlink(missing_ok=True)
        return True

    def kill(self) -> None:
        """SIGKILL at once (for crash tests)."""
        pid = self.pid()
        if pid is not None:
            os.kill(pid, signal.SIGKILL)
            while self.pid() is not None:
                time.sleep(0.05)
        self.pid_file.unlink(missing_ok=True)

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"

    def wait_until(self, ready: Callable[[], bool], what: str, timeout: float) -> None:
        """Poll ``ready`` until true; fail early, with the log's tail, if the process dies."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if ready():
                return
            if self.pid() is None:
                raise StartupFailed(
                    f"{self.name} exited during start-up ({self.exit_status()}). "
                    f"Last lines of {self.log_file}:\n{self.log_tail()}"
                )
            time.sleep(0.25)
        raise StartupFailed(
            f"{self.name} did not become ready ({what}) within {timeout:.0f}s. "
            f"Last lines of {self.log_file}:\n{self.log_tail()}"
        )
