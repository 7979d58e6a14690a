"""The kline agent's state in Faust tables, and the in-memory windows it works on.

Two tables, changelogged to compacted topics and partitioned like the trade topic (a change
goes to the partition of the instrument's records, as Faust's own writes would):

- ``kline-heads``: one entry per instrument -> ``InstrumentKlines``: its open windows of every
  interval, watermark, trade ids counted, last offsets applied, counters; written once per batch
  of records that changed it (``changelog.TableWriter``), whatever the number of intervals. Plus
  one entry per source partition, ``@applied|topic|partition`` -> the last offset applied,
  written after the batch's heads (``resume.py``: a restart resumes there; a head that landed
  past it is protected by its trade ids, a trade counted twice being recognised).
- ``kline-closed``: one entry per closed window (``instrument|interval|open_time``) -> ``Window``,
  written when it closes and when a correction changes it, deleted (a tombstone) once past the
  correction horizon: so per kline published, not per trade.

As for the books, the agent reads and changes objects in memory; the tables are only written,
and read back in one pass when Faust has recovered them (start, rebalance). Values are JSON, not
msgpack: msgpack has no integers past 64 bits, and sums of price times size at scale 36 need them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import msgspec
from faust.types import TP

from processors.changelog import LatestPerBatch, TableWriter
from processors.kline import InstrumentKlines, InstrumentWindows, KlineConfig, Outcome, Window
from processors.resume import SourcePositions, position_key, split_positions

log = logging.getLogger(__name__)

_encoder = msgspec.json.Encoder()
_head_decoder = msgspec.json.Decoder(InstrumentKlines)
_window_decoder = msgspec.json.Decoder(Window)


def closed_key(instrument: str, interval: str, open_time: int) -> bytes:
    return f"{instrument}|{interval}|{open_time}".encode()


class KlineState:
    def __init__(self, app: Any, store: str, partitions: int, config: KlineConfig, sources: dict[str, str],
                 writer: TableWriter) -> None:  # fmt: skip
        """``sources``: the name of each source (``trades``, ``klines``) -> its topic."""
        options = {"partitions": partitions, "store": store, "key_type": bytes, "value_type": bytes}
        self.heads = app.Table("kline-heads", help="klines: instrument -> InstrumentKlines (JSON)", **options)
        self.closed = app.Table("kline-closed", help="closed klines: instrument|interval|open_time -> Window",
                                **options)  # fmt: skip
        self.writer = writer
        # A head (and the position after it) never lands without the closed windows it counts on.
        writer.order(self.closed, self.heads)
        self.config = config
        self.instruments: dict[str, InstrumentWindows] = {}
        #: The heads changed since the last flush, encoded once each when it is written: the head
        #: of every open window is the largest value the agent writes.
        self._heads = LatestPerBatch[InstrumentWindows](writer, self.heads, lambda w: _encoder.encode(w.head))
        self.sources = sources
        #: Per source partition, the last offset applied (``source_positions``).
        self.positions = SourcePositions(app, "klines")
        self.recovered = False
        # As in BookState: reloading after each table's recovery means the last reload sees both.
        self.heads.on_recover(self.reload)
        self.closed.on_recover(self.reload)

    def get(self, instrument: str) -> InstrumentWindows | None:
        return self.instruments.get(instrument)

    def add(self, instrument: str, windows: InstrumentWindows) -> None:
        self.instruments[instrument] = windows

    def write(self, instrument: str, windows: InstrumentWindows, outcome: Outcome) -> None:
        """Write what one record changed (sent with the batch's ``writer.flush()``, to the
        partition of the instrument's records)."""
        partition = windows.head.partition
        if outcome.closed_put or outcome.closed_del:
            closed = self.writer.changes(self.closed, partition)
            for interval, window in outcome.closed_put:
                closed[closed_key(instrument, interval, window.open_time)] = _encoder.encode(window)
            for interval, open_time in outcome.closed_del:
                closed[closed_key(instrument, interval, open_time)] = None
        if outcome.head_changed:
            self._heads.changed(partition, instrument, windows)

    def write_heads(self) -> None:
        """Hand the heads changed since the last call to the writer (before each flush)."""
        self._heads.write()

    def write_positions(self, tps: set[TP]) -> None:
        """Write the last offset applied of each of ``tps``, after the batch's heads in their
        changelog partition: a restart resumes there (``resume.py``)."""
        applied = self.positions.applied
        for tp in tps:
            self.writer.set(self.heads, tp.partition, position_key(tp), str(applied[tp]).encode())

    async def reload(self) -> None:
        """Rebuild the in-memory windows from the tables (Faust calls this once they are recovered)."""
        written, heads = split_positions(self.heads.items())
        instruments = {key: InstrumentWindows(_head_decoder.decode(value), self.config) for key, value in heads}
        closed = 0
        for key, value in split_positions(self.closed.items())[1]:
            instrument, interval, _ = key.rsplit("|", 2)
            windows = instruments.get(instrument)
            if windows is not None:
                windows.load_closed(interval, _window_decoder.decode(value))
                closed += 1
        self.instruments = instruments
        # The positions written last in each batch; the heads' own offsets where there are none
        # (tables written before there were: each head was then written with its record).
        self._heads.clear()
        self.positions.load({**source_positions(instruments.values(), self.sources), **written})
        self.recovered = True
        log.info("kline state loaded from the tables: %d instruments, %d closed klines", len(instruments), closed)


def source_positions(instruments: Iterable[InstrumentWindows], sources: dict[str, str]) -> dict[TP, int]:
    """Per source partition, the highest offset an instrument's head records as applied. Only for
    tables written before the explicit positions (each head was then written with its record, in
    order, so every record up to it was in the tables); ``sources``: source name -> topic."""
    positions: dict[TP, int] = {}
    for windows in instruments:
        head = windows.head
        for source, offset in head.offsets.items():
            tp = TP(sources[source], head.partition)
            positions[tp] = max(offset, positions.get(tp, -1))
    return positions
