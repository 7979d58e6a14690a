"""The cross-check: derived klines against the venue's own for the same instrument, interval and
open time (Binance ``kline_1m``, Coinbase's 5-minute candles), counted per instrument.

What is compared, and why only that: open, high, low, close and base volume, exactly. They are
functions of the trades alone, which we receive too. Not compared: the trade count (Binance
counts individual trades, we receive its aggregate trades; Coinbase sends none) and the quote
volume (the venue rounds it to its display precision; Coinbase sends none).

When: once both sides are final: the venue's kline closed, ours closed (the watermark passed its
close time). A window we never published (no trades) compares as empty: it matches a venue kline
of zero volume. Windows that opened before the first trade we counted for the instrument are
skipped (we may have started mid-window), not called mismatches; so are venue klines older than
the correction horizon (ours is forgotten by then). A correction of a window already
compared compares it again and moves it between matches and mismatches if its verdict changes.

Venue klines waiting for ours and recent verdicts are kept in memory (bounded): after a restart
the windows in flight at that moment are not compared; the counters themselves are in the table.
"""

from __future__ import annotations

from collections import OrderedDict

from processors.kline import InstrumentWindows
from processors.scaled import units
from tickflow.events import Kline

#: Venue klines kept per instrument waiting for ours, and verdicts kept for re-comparison.
MAX_KEPT = 256

Ohlcv = tuple[int, int, int, int, int]
Key = tuple[str, int]  # (interval, open_time)


def venue_ohlcv(kline: Kline) -> Ohlcv:
    return units(kline.open), units(kline.high), units(kline.low), units(kline.close), units(kline.volume)


def same(ours: Ohlcv | None, venue: Ohlcv) -> bool:
    return venue[4] == 0 if ours is None else ours == venue


class CrossCheck:
    def __init__(self) -> None:
        self._waiting: dict[str, OrderedDict[Key, Ohlcv]] = {}
        self._verdicts: dict[str, OrderedDict[Key, tuple[Ohlcv, bool]]] = {}

    def venue(self, instrument: str, windows: InstrumentWindows, kline: Kline) -> bool:
        """A kline from the venue's topic; True if the instrument's counters changed."""
        if not kline.closed or windows.config.interval_us(kline.interval) is None:
            return False
        key = (kline.interval, kline.open_time)
        values = venue_ohlcv(kline)
        if key in self._verdicts.get(instrument, {}):  # the venue sent it again: compare again
            return self._compare(instrument, windows, key, values)
        waiting = self._waiting.setdefault(instrument, OrderedDict())
        waiting[key] = values
        if len(waiting) > MAX_KEPT:
            waiting.popitem(last=False)
        return self.settle(instrument, windows)

    def settle(self, instrument: str, windows: InstrumentWindows, corrected: list[Key] | None = None) -> bool:
        """Compare what is final on both sides now; ``corrected``: our windows published again."""
        changed = False
        verdicts = self._verdicts.get(instrument, {})
        for key in corrected or ():
            if key in verdicts:
                changed |= self._compare(instrument, windows, key, verdicts[key][0])
        waiting = self._waiting.get(instrument)
        if not waiting:
            return changed
        watermark = windows.head.watermark
        for key in [k for k in waiting if k[1] + (windows.config.interval_us(k[0]) or 0) <= watermark]:
            changed |= self._compare(instrument, windows, key, waiting.pop(key))
        return changed

    def _compare(self, instrument: str, windows: InstrumentWindows, key: Key, venue: Ohlcv) -> bool:
        counters = windows.head.counters
        first, head = windows.head.first_ts, windows.head
        # Ours may be partial (we started mid-window), or forgotten (past the correction horizon).
        if first is None or key[1] <= first or key[1] < head.watermark - windows.config.horizon_us:
            counters.crosscheck_skipped += 1
            return True
        window = windows.closed.get(key)
        verdict = same(None if window is None else window.ohlcv(), venue)
        verdicts = self._verdicts.setdefault(instrument, OrderedDict())
        before = verdicts.get(key)
        if before is not None:
            if before[1] == verdict:
                return False
            if before[1]:
                counters.crosscheck_matches -= 1
            else:
                counters.crosscheck_mismatches -= 1
        if verdict:
            counters.crosscheck_matches += 1
        else:
            counters.crosscheck_mismatches += 1
        verdicts[key] = (venue, verdict)
        verdicts.move_to_end(key)
        if len(verdicts) > MAX_KEPT:
            verdicts.popitem(last=False)
        return True

    def mismatches(self, instrument: str) -> list[Key]:
        """The windows currently judged mismatched (for ``/klines``)."""
        return [key for key, (_, ok) in self._verdicts.get(instrument, {}).items() if not ok]
