"""Where an agent's tables say each source partition is applied up to, and its reading kept
contiguous with that, whatever offsets Faust committed.

Why. Faust (at-least-once) commits the offsets of acknowledged records, and the agents
acknowledge a record only once its table changes are in Kafka; so a restart should resume at
or before the first record the tables lack. The crash test found otherwise: after a ``kill -9``
some partitions resumed thousands of records past their tables (Faust's consumer can drop a
message it was handing over when flow is suspended, and its commit logic fills "gaps" it never
delivered). Rather than trust every path of Faust's consumer, each agent writes, with its table
changes, the last offset it applied of each source partition (the same changelog partition,
after the changes it covers), and reads that back with its tables. Once they are recovered,
the consumer seeks each partition to the record after its position (``flow.py``,
``SteadyConsumer.perform_seek``). Then for every record:

- offset = applied + 1: the next one, applied;
- offset <= applied: read again (Faust committed less than the tables hold): skipped;
- offset > applied + 1: records between never reached the agent (a resume past the tables, or a
  record lost on the way in): the consumer is sought back to applied + 1 and whatever was
  already queued past it is skipped until the sought record arrives. If the topic no longer
  holds applied + 1 (retention), the loss is counted and logged as an error; the books say so
  anyway (their sequence check turns them ``INVALID`` until the venue's next snapshot).

A partition without an entry (first start) is applied from wherever Faust starts it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from faust.types import TP

log = logging.getLogger(__name__)

#: Keys of the source positions in an agent's tables (an instrument never starts with ``@``).
_APPLIED = "@applied|"


def position_key(tp: TP) -> bytes:
    """The table key of ``tp``'s position: ``@applied|topic|partition``."""
    return f"{_APPLIED}{tp.topic}|{tp.partition}".encode()


def position_of(key: str) -> TP | None:
    """The source partition whose position ``key`` holds, ``None`` for any other key."""
    if not key.startswith(_APPLIED):
        return None
    topic, partition = key[len(_APPLIED) :].rsplit("|", 1)
    return TP(topic, int(partition))


def split_positions(entries: Iterable[tuple[bytes | str, Any]]) -> tuple[dict[TP, int], list[tuple[str, Any]]]:
    """A table's entries (read back after recovery) split: the source positions among them
    (``position_key``), and the others, their keys as text."""
    positions: dict[TP, int] = {}
    others: list[tuple[str, Any]] = []
    for key, value in entries:
        text = key.decode() if isinstance(key, bytes) else key
        tp = position_of(text)
        if tp is None:
            others.append((text, value))
        else:
            positions[tp] = int(value)
    return positions, others


class SourcePositions:
    """Per source partition, the last offset applied: kept by the agent, written with its
    tables, loaded back with them (``load``), and checked for every fetched batch (``admit_batch``)."""

    def __init__(self, app: Any, agent: str) -> None:
        self.app = app
        self.agent = agent
        self.applied: dict[TP, int] = {}
        #: Partitions sought back, to the offset sought: records queued before the seek are skipped.
        self._seeking: dict[TP, int] = {}
        self.counters = {"replayed": 0, "rewinds": 0, "skipped_while_rewinding": 0, "lost": 0}

    def load(self, applied: dict[TP, int]) -> None:
        """The positions the tables hold (after their recovery: start, rebalance)."""
        self.applied = dict(applied)
        self._seeking.clear()

    async def admit_batch(self, tp: TP, records: list[Any]) -> list[Any]:
        """Of one partition's ``records`` (in offset order), those to apply; they count as applied."""
        applied = self.applied.get(tp)
        first, last = records[0].offset, records[-1].offset
        if (applied is None or first == applied + 1) and last == first + len(records) - 1:
            self.applied[tp] = last  # the common case: the next records, contiguous
            self._seeking.pop(tp, None)
            return records
        return [record for record in records if await self.admit_offset(tp, record.offset)]

    async def admit_offset(self, tp: TP, offset: int) -> bool:
        """Whether to apply the record at ``offset`` of ``tp``; if so, it counts as applied."""
        applied = self.applied.get(tp)
        if applied is None or offset == applied + 1:
            self.applied[tp] = offset
            self._seeking.pop(tp, None)
            return True
        if offset <= applied:
            self.counters["replayed"] += 1
            return False
        wanted = applied + 1
        if self._seeking.get(tp) == wanted:
            self.counters["skipped_while_rewinding"] += 1
            return False
        earliest = (await self.app.consumer.earliest_offsets(tp)).get(tp, 0)
        if earliest > wanted:
            self.counters["lost"] += offset - wanted
            log.error("%s: %s[%d] records %d..%d are no longer in the topic (it starts at %d): not applied",
                      self.agent, tp.topic, tp.partition, wanted, offset - 1, earliest)  # fmt: skip
            self.applied[tp] = offset
            return True
        self.counters["rewinds"] += 1
        log.warning("%s: %s[%d] resumed at offset %d but the tables are applied up to %d: reading again from %d",
                    self.agent, tp.topic, tp.partition, offset, applied, wanted)  # fmt: skip
        self._seeking[tp] = wanted
        await self.app.consumer.seek_wait({tp: wanted})
        return False
