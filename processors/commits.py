"""Commits that hold exactly the records they commit.

A Faust commit (every ``broker_commit_interval``, before a rebalance, at stop) takes the offsets
of the records the agents have acknowledged, publishes the output records attached to them,
and commits the offsets. Under exactly-once it commits them in the partitions' transactions,
with whatever the transactional producers were given since the last commit. Two things in
faust-streaming 0.15.3 break the "exactly" (seen here as books that skip records after a
``kill -9``, the kind of loss reported upstream in faust-streaming #517):

- Table changes go to the changelog through the producer's buffer (``send_soon``), and the
  transactional commit does not flush that buffer first (the at-least-once commit does). The
  changes of records whose offsets a transaction commits can land in the *next* transaction;
  killed before that one commits, they are lost while their offsets stay committed.
- The commit awaits the broker while the agents go on processing: records processed meanwhile
  send their changes into the transaction being committed, but their offsets are not in it.
  Killed then, those records are read again on top of state that already has them (a book
  skips them as applied, and their outputs, published only with their offsets, are lost).

``CommitGuard`` closes both: each agent processes a record and acknowledges it while holding
the guard, and a commit holds it from start to end, flushing the producer's buffer before it
commits. So a commit contains the table changes and outputs of exactly the records whose
offsets it commits. The cost: processing pauses for the length of a commit (a few ms every
few seconds).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any


class CommitGuard:
    """One per app: agents hold it around each record; commits hold it throughout."""

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.installed = False

    def install(self, app: Any) -> None:
        """Wrap ``app.consumer.commit`` (the one entry of every commit). Once per app, when its
        consumer exists (the app's ``on_start``)."""
        if self.installed:
            return
        consumer = app.consumer
        commit: Callable[..., Awaitable[bool]] = consumer.commit
        lock = self.lock

        async def guarded_commit(*args: Any, **kwargs: Any) -> bool:
            async with lock:
                # The table changes of every acknowledged record, into the open transactions
                # (under at-least-once Faust flushes here too; a no-op then).
                await app.producer.buffer.flush()
                return await commit(*args, **kwargs)

        consumer.commit = guarded_commit
        self.installed = True

    async def process(self, event: Any, handle: Callable[[Any, Any], Awaitable[None]]) -> None:
        """Handle one stream event and acknowledge it, with no commit in between."""
        async with self.lock:
            await handle(event.message, event.value)
            event.ack()  # the stream's own ack, when it fetches the next event, is then a no-op


def commit_guard(app: Any) -> CommitGuard:
    """The app's guard (made on first use: the agents and the app share it)."""
    guard = getattr(app, "tickflow_commit_guard", None)
    if guard is None:
        guard = CommitGuard()
        app.tickflow_commit_guard = guard
    return guard
