# cython: language_level=3, boundscheck=False, wraparound=False
"""``select``: the records of a consumed batch that lie within their partitions' ranges, in C
(``EventConsumer.batches``; ``consumer._select`` is the same in Python, used where this is not
built). Per record it is the part of a bulk read that is not librdkafka's or the decoder's: in
Python it cost about as much again as fetching the record (bench/replay_bench.py)."""

from libc.stdint cimport int64_t

cdef object _DONE = object()


def select(list messages, dict pending, object keep):
    """``(records, finished, errors)``: the records of ``messages`` in range (and kept by
    ``keep(key)``, if given), the partitions that reached their end in this batch (removed from
    ``pending``, which maps ``(topic, partition)`` to its end: an offset, excluded, ``("ts", ms)``
    or ``None`` for none), and the messages that are errors (partition ends, client errors)."""
    cdef list records = [], finished = [], errors = []
    cdef int64_t offset, end_offset
    for message in messages:
        if message.error() is not None:
            errors.append(message)
            continue
        tp = (message.topic(), message.partition())
        end = pending.get(tp, _DONE)
        if end is _DONE:
            continue  # a partition already at its end (fetched before it was paused)
        if end is not None:
            if type(end) is tuple:
                if message.timestamp()[1] >= (<tuple>end)[1]:
                    del pending[tp]
                    finished.append(tp)
                    continue
            else:
                offset, end_offset = message.offset(), end
                if offset >= end_offset:
                    del pending[tp]
                    finished.append(tp)
                    continue
                if offset + 1 >= end_offset:
                    del pending[tp]
                    finished.append(tp)
        if keep is None or keep(message.key()):
            records.append(message)
    return records, finished, errors
