"""The worker's Kafka consumer: Faust's aiokafka consumer, with three changes (the base of
``consumer.LeanConsumer``, which adds batch delivery and a leaner per-record path).

**Streams resume where the tables are.** After a rebalance or a start Faust seeks each source
partition to its committed offset, once the tables are recovered (``perform_seek``). Then this
seeks each partition an agent's tables have a position for (``resume.py``) to the record after
it: the committed offset can be ahead of the tables (records lost) or behind (read again).
``SourcePositions.admit_batch`` catches a gap on a record; this also covers a partition with no new
record to come, which no record-time check would see.

**The agents settle before Faust waits for acknowledgements.** On a rebalance (and at a stop)
Faust suspends the streams, clears their queues, then waits until every record it handed over
is acknowledged (``wait_empty``). Two ways that wait never ended in the rebalance test (the
worker hung in it; the group waited on it for over a minute, the joining worker had nothing):
the book agent acknowledges a batch at a time, and when its last record came while more were
queued, it waits for a next record the cleared queue will never give it; and records cleared
from a queue, or skipped by a stream while the flow is suspended (never acknowledged by a manual
stream), stay on Faust's list of unacknowledged records (4,747 of them there). So
``wait_empty`` first has each agent settle (``ProcessorsApp.agent_settlers``: each agent
writes and acknowledges what it applied, ``GroupCommit.settle``); whatever is
still unacknowledged then was never applied, so it is dropped from the list (its offset is
not acknowledged either: the commit stops before it) and Faust's wait commits and returns.

**No per-partition pause on a full stream buffer.** When an agent's queue is under pressure,
Faust's conductor calls ``on_buffer_full(tp)``, which takes the partition out of the set it
fetches, and relies on a pressure-drop callback of that queue to put it back
(``on_buffer_drop``). In the crash test that callback never came for some partitions: after a
restart, two of three book partitions were never fetched again (two minutes, no record
delivered, their books stale), a known class of Faust bug ("Consumers slowly die over time",
faust-streaming #175, open). Without the pause, back-pressure still holds: a full queue makes
the conductor await ``put`` (Faust's own fallback for a full queue), which holds up the fetch
loop until the agent has taken records. The cost Faust's pause avoided: one slow agent holds up
the others' topics too; in this app every agent must keep up anyway.
"""

from __future__ import annotations

import logging

from faust.transport.drivers.aiokafka import Consumer as AIOKafkaConsumer
from faust.types import TP

log = logging.getLogger(__name__)


class SteadyConsumer(AIOKafkaConsumer):
    """Resumes where the tables are; settles the agents before waiting for acknowledgements;
    never stops fetching an assigned partition because a stream buffer is full."""

    async def perform_seek(self) -> None:
        await super().perform_seek()  # to the committed offsets
        assigned = self.assignment()
        wanted: dict[TP, int] = {}
        for positions in getattr(self.app, "source_positions", ()):
            wanted.update({tp: applied + 1 for tp, applied in positions.applied.items() if tp in assigned})
        moves = {tp: offset for tp, offset in wanted.items() if self._read_offset.get(tp) != offset}
        if moves:
            log.info("resuming where the tables are, not at the committed offsets: %s",
                     ", ".join(f"{tp.topic}[{tp.partition}] {self._read_offset.get(tp)} -> {offset}"
                               for tp, offset in sorted(moves.items())))  # fmt: skip
            await self.seek_wait(moves)

    async def wait_empty(self) -> None:
        for settle in getattr(self.app, "agent_settlers", ()):
            try:
                await settle()
            except Exception:  # the records are read again by whoever holds the partition next
                log.exception("an agent did not settle before a rebalance or stop")
        never_applied = len(self._unacked_messages)
        if never_applied:
            log.info("%d records fetched were not applied before the rebalance or stop: read again later",
                     never_applied)  # fmt: skip
            self._unacked_messages.clear()
        await super().wait_empty()

    def on_buffer_full(self, tp: TP) -> None:
        return None
