"""``select``: the records of a consumed batch that lie within their partitions' ranges
(``EventConsumer.batches``). Per record it is the part of a bulk read that is neither
librdkafka's nor the decoder's; as plain Python it cost about as much again as fetching the
record (bench/replay_bench.py), so ``setup.py`` compiles this very file with Cython where it
can: the same code, no second copy to keep in step; without a compiler it runs as it is."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

#: A partition no longer pending (at its end), told apart from one whose end is ``None``.
_DONE: Any = object()


def select(
    messages: list, pending: dict[tuple[str, int], Any], keep: Callable[[bytes | None], bool] | None
) -> tuple[list, list[tuple[str, int]], list]:
    """``(records, finished, errors)``: the records of ``messages`` in range (and kept by
    ``keep(key)``, if given), the partitions that reached their end in this batch (removed from
    ``pending``, which maps ``(topic, partition)`` to its end: an offset, excluded, ``("ts", ms)``
    or ``None`` for none), and the messages that are errors (partition ends, client errors)."""
    records: list = []
    finished: list[tuple[str, int]] = []
    errors: list = []
    for message in messages:
        if message.error() is not None:
            errors.append(message)
            continue
        tp = (message.topic(), message.partition())
        end = pending.get(tp, _DONE)
        if end is _DONE:
            continue  # a partition already at its end (fetched before it was paused)
        if end is not None:
            if isinstance(end, tuple):
                if message.timestamp()[1] >= end[1]:
                    del pending[tp]
                    finished.append(tp)
                    continue
            elif message.offset() >= end:
                del pending[tp]
                finished.append(tp)
                continue
            elif message.offset() + 1 >= end:
                del pending[tp]
                finished.append(tp)
        if keep is None or keep(message.key()):
            records.append(message)
    return records, finished, errors
