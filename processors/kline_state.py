"""The kline agent's state in Faust tables, and the in-memory windows it works on.

Two tables, changelogged to compacted topics and partitioned like the trade topic (Faust writes
a change to the partition of the record being processed):

- ``kline-heads``: one entry per instrument -> ``InstrumentKlines``: its open windows of every
  interval, watermark, trade ids counted, last offsets applied (per source partition, the
  highest of these is where a restart resumes: ``resume.py``), counters. Written once per record
  applied, whatever the number of intervals: the changelog grows with the trades.
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

from processors.kline import InstrumentKlines, InstrumentWindows, KlineConfig, Outcome, Window
from processors.resume import SourcePositions

log = logging.getLogger(__name__)

_encoder = msgspec.json.Encoder()
_head_decoder = msgspec.json.Decoder(InstrumentKlines)
_window_decoder = msgspec.json.Decoder(Window)


def closed_key(instrument: str, interval: str, open_time: int) -> bytes:
    return f"{instrument}|{interval}|{open_time}".encode()


class KlineState:
    def __init__(self, app: Any, store: str, partitions: int, config: KlineConfig, sources: dict[str, str]) -> None:
        """``sources``: the name of each source (``trades``, ``klines``) -> its topic."""
        options = {"partitions": partitions, "store": store, "key_type": bytes, "value_type": bytes}
        self.heads = app.Table("kline-heads", help="klines: instrument -> InstrumentKlines (JSON)", **options)
        self.closed = app.Table("kline-closed", help="closed klines: instrument|interval|open_time -> Window",
                                **options)  # fmt: skip
        self.config = config
        self.instruments: dict[str, InstrumentWindows] = {}
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
        """Write what one record changed (inside the agent: Faust needs the current record)."""
        for interval, window in outcome.closed_put:
            self.closed[closed_key(instrument, interval, window.open_time)] = _encoder.encode(window)
        for interval, open_time in outcome.closed_del:
            try:
                del self.closed[closed_key(instrument, interval, open_time)]
            except KeyError:
                log.warning("%s: closed kline %s %d was not in the table", instrument, interval, open_time)
        if outcome.head_changed:
            self.heads[instrument.encode()] = _encoder.encode(windows.head)

    async def reload(self) -> None:
        """Rebuild the in-memory windows from the tables (Faust calls this once they are recovered)."""
        instruments = {
            _text(key): InstrumentWindows(_head_decoder.decode(value), self.config) for key, value in self.heads.items()
        }
        closed = 0
        for key, value in self.closed.items():
            instrument, interval, _ = _text(key).rsplit("|", 2)
            windows = instruments.get(instrument)
            if windows is not None:
                windows.load_closed(interval, _window_decoder.decode(value))
                closed += 1
        self.instruments = instruments
        self.positions.load(source_positions(instruments.values(), self.sources))
        self.recovered = True
        log.info("kline state loaded from the tables: %d instruments, %d closed klines", len(instruments), closed)


def source_positions(instruments: Iterable[InstrumentWindows], sources: dict[str, str]) -> dict[TP, int]:
    """Per source partition, the highest offset an instrument's head records as applied: the
    heads are written in the order of the records, to the records' partition, so every record
    up to it is in the tables (``sources``: source name -> topic)."""
    positions: dict[TP, int] = {}
    for windows in instruments:
        head = windows.head
        for source, offset in head.offsets.items():
            tp = TP(sources[source], head.partition)
            positions[tp] = max(offset, positions.get(tp, -1))
    return positions


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
