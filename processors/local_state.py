"""Local table state (RocksDB) that can be trusted after a crash.

Faust writes a table change to its local store (RocksDB) at once, and to the changelog topic
through the producer. A worker killed in between (``kill -9``, a lost machine, an OOM kill)
leaves local changes the changelog never got: under exactly-once their transaction is aborted,
and the records behind them are read again from the last committed offset; under
at-least-once the changelog simply lacks them. Started again on that store, a worker would
take the local changes for done: a book would skip the records it must apply again (their ids
look applied), a kline would count as published though its record was never committed, and a
worker that later takes the partition over would rebuild a different state from the changelog.

So, as Kafka Streams does under exactly-once: a worker marks its data directory while it runs
and removes the mark only after a clean stop (every commit done, the stores closed). Finding
the mark at start means the last run did not stop cleanly: the local tables are discarded and
Faust rebuilds them from the changelog, which holds exactly what was committed.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

log = logging.getLogger(__name__)

MARK = "RUNNING"


class LocalStateGuard:
    """The running mark of one worker's data directory."""

    def __init__(self, datadir: Path, tabledir: Path) -> None:
        self.mark = datadir / MARK
        self.tabledir = tabledir

    def open(self) -> bool:
        """Before Faust opens its stores: discard them if the last run did not stop cleanly,
        then mark the directory. Returns whether the local state was discarded."""
        discarded = False
        if self.mark.exists():
            previous = self.mark.read_text(errors="replace").strip() or "?"
            if self.tabledir.exists():
                log.warning(
                    "the last worker on %s (pid %s) did not stop cleanly: discarding its local tables in %s; "
                    "they are rebuilt from the changelog topics",
                    self.mark.parent, previous, self.tabledir,
                )  # fmt: skip
                shutil.rmtree(self.tabledir)
                discarded = True
        self.mark.parent.mkdir(parents=True, exist_ok=True)
        self.mark.write_text(f"{os.getpid()}\n")
        return discarded

    def close(self) -> None:
        """After a clean stop: the local tables match what the changelog holds."""
        self.mark.unlink(missing_ok=True)
