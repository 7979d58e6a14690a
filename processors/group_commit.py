"""How both agents take their stream and write what it changed: batches applied as they come,
written with one write in flight (group commit), the records acknowledged once written.

An agent's stream delivers a partition's fetched records at a time (a ``RecordBatch``,
``consumer.py``). ``GroupCommit.run`` admits each one's records the tables do not hold yet
(``resume.SourcePositions``) and has the agent apply them (``apply``); when nothing more is
waiting in the stream it writes what the records applied since the last write changed, once
the previous write is acknowledged (so the batch grows with the rate and the agent never waits
a broker round trip per batch) and the batch is ``linger`` old (from its first records, as a
Kafka producer's linger), or at once past ``batch_max`` records. A write:

1. ``prepare(touched)`` (the agent's): deliver what must be in Kafka before the tables (dead
   letters, the kline agent's klines) and stage the tables' last changes (heads, and the
   positions of the source partitions with records applied since the last write, ``touched``);
2. waits for the previous write to be acknowledged (a table's later changes never overtake its
   earlier ones);
3. hands the tables to Kafka (``TableWriter.flush``) and, while the agent applies the next
   records, waits for their acknowledgement, then acknowledges the written records (Faust
   commits them).

``settle`` writes and waits for everything applied: the consumer calls it before a rebalance or
a stop (``flow.py``), when the agent may be blocked waiting for a record that will not come.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from faust.types import TP

from processors.changelog import TableWriter
from processors.consumer import RecordBatch, acknowledge
from processors.resume import SourcePositions

log = logging.getLogger(__name__)


class GroupCommit:
    def __init__(
        self,
        name: str,
        writer: TableWriter,
        positions: SourcePositions,
        apply: Callable[[TP, list[Any]], Awaitable[None]],
        prepare: Callable[[set[TP]], Awaitable[None]],
        batch_max: int,
        linger: float,
    ) -> None:
        self.name = name
        self.writer = writer
        self.positions = positions
        self._apply = apply
        self._prepare = prepare
        self._touched: set[TP] = set()  # source partitions with records applied since the last write
        self.batch_max = batch_max
        self.linger = linger
        self._pending: list[Any] = []  # events (``RecordBatch``) applied, acknowledged once written
        self._records = 0  # records in ``_pending``
        self._applying = asyncio.Lock()  # a write from ``settle`` waits: positions run ahead while applying
        self._writing: asyncio.Future[None] | None = None  # the write in flight
        self._stream: Any = None
        #: Wall-clock times (epoch seconds) of the first batch taken and the last one applied:
        #: ``GET /books`` and ``/klines`` show them (the throughput bench times the agent by them).
        self.times: dict[str, float | None] = {"first_batch_at": None, "last_applied_at": None}

    async def run(self, stream: Any) -> None:
        """The agent's body: take ``stream``'s batches until it ends."""
        manual = self._stream = stream.noack()  # acknowledged by ``_finish``, once written
        events = manual.events().__aiter__()
        queue_empty = manual.channel.empty  # the stream's queue: is more already there?
        clock = asyncio.get_running_loop().time
        started: set[Any] = set()
        first_at = 0.0  # when the pending records' first came
        coming: asyncio.Future[Any] | None = None  # the next records, asked for while waiting to write
        try:
            while True:
                if coming is None and self._pending and queue_empty():
                    # Nothing queued. While the previous write is in flight, gather more;
                    # otherwise write once the batch is ``linger`` old.
                    coming = asyncio.ensure_future(events.__anext__())
                    while not coming.done():
                        writing = self._writing
                        if writing is not None and not writing.done():
                            await asyncio.wait({coming, writing}, return_when=asyncio.FIRST_COMPLETED)
                        elif (remaining := first_at + self.linger - clock()) > 0:
                            await asyncio.wait({coming}, timeout=remaining)
                        else:
                            await self.flush()
                            break
                try:
                    event = await (coming if coming is not None else events.__anext__())
                except StopAsyncIteration:
                    break
                coming = None
                records: RecordBatch = event.value
                if records.tp not in started:  # where each partition resumed: says what a restart re-reads
                    started.add(records.tp)
                    log.info("%s: first record of %s[%d] at offset %d", self.name, records.tp.topic,
                             records.tp.partition, records.records[0].offset)  # fmt: skip
                if self.times["first_batch_at"] is None:
                    self.times["first_batch_at"] = time.time()
                if not self._pending:
                    first_at = clock()
                self._pending.append(event)
                self._records += len(records.records)
                async with self._applying:
                    admitted = await self.positions.admit_batch(records.tp, records.records)
                    if admitted:
                        self._touched.add(records.tp)
                        await self._apply(records.tp, admitted)
                self.times["last_applied_at"] = time.time()
                if self._records >= self.batch_max:
                    await self.flush()
        finally:
            if coming is not None and not coming.done():
                coming.cancel()

    async def flush(self) -> None:
        """Write what the pending records changed (the acknowledgements follow in the background)."""
        async with self._applying:
            pending, self._pending, self._records = self._pending, [], 0
            if not pending:
                return
            touched, self._touched = self._touched, set()
            await self._prepare(touched)
            await self.written()
            rest = await self.writer.flush()
            self._writing = asyncio.ensure_future(self._finish(rest, pending))

    async def _finish(self, rest: Awaitable[None], pending: list[Any]) -> None:
        await rest
        for event in pending:
            await acknowledge(self._stream, event)

    async def written(self) -> None:
        """Wait for the write in flight, if any, to be done."""
        writing, self._writing = self._writing, None
        if writing is not None:
            await writing

    async def settle(self) -> None:
        """Write and acknowledge everything applied."""
        await self.flush()
        async with self._applying:
            await self.written()
