"""The kline agent's counters and klines over Faust's web server.

``GET /klines``: per instrument on this worker, its counters (trades counted, klines published,
late trades, corrections, expired and duplicate trades, cross-check matches, mismatches and
skipped windows), watermark and open windows, and the windows the cross-check currently finds
different from the venue's; the agent's own counters and its source positions' (``resume.py``);
``recovered`` is false until the tables are recovered after the worker starts.

``GET /klines/{venue}/{symbol}?interval=1s&limit=120``: the instrument's recent klines of one
interval, closed (kept for corrections) then open, oldest first (the dashboard's candles).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import faust
import msgspec
from faust.web import Request, Response, View

from processors.scaled import plain

if TYPE_CHECKING:
    from processors.kline import InstrumentWindows
    from processors.klines import KlineAgent


def instrument_json(agent: KlineAgent, instrument: str) -> dict[str, Any]:
    windows = agent.state.instruments[instrument]
    head = windows.head
    return {
        "venue": head.venue,
        "market": head.market.value,
        "symbol": head.symbol,
        "venue_symbol": head.venue_symbol,
        "watermark": head.watermark,
        "max_exchange_ts": head.max_ts,
        "open": {label: [w.open_time for w in ws] for label, ws in head.open.items() if ws},
        "counters": msgspec.structs.asdict(head.counters),
        "mismatched": [list(key) for key in agent.crosscheck.mismatches(instrument)],
    }


def candles_json(windows: InstrumentWindows, interval: str, limit: int) -> list[dict[str, Any]]:
    """The instrument's last ``limit`` klines of ``interval``, oldest first: those closed and
    still kept for corrections, then those open (``closed`` false), as exact decimal strings."""
    closed = sorted((w for (label, _), w in windows.closed.items() if label == interval), key=lambda w: w.open_time)
    rows = [(w, True) for w in closed] + [(w, False) for w in windows.head.open.get(interval, [])]
    return [{"open_time": w.open_time, "open": plain(w.open), "high": plain(w.high), "low": plain(w.low),
             "close": plain(w.close), "volume": plain(w.volume), "trades": w.count, "closed": done}
            for w, done in rows[-limit:]]  # fmt: skip


def register_kline_views(app: faust.App, agent: KlineAgent) -> None:
    @app.page("/klines/{venue}/{symbol}")
    class Candles(View):
        async def get(self, request: Request, venue: str, symbol: str) -> Response:
            interval = request.query.get("interval", agent.config.intervals[0][0])
            if agent.config.interval_us(interval) is None:
                known = [label for label, _ in agent.config.intervals]
                return self.json({"error": f"interval {interval!r} is not kept; there are {known}"}, status=400)
            try:
                limit = int(request.query.get("limit", "120"))
            except ValueError:
                limit = 0
            if not 1 <= limit <= 10_000:
                return self.json({"error": "limit must be an integer from 1 to 10000"}, status=400)
            windows = agent.state.get(f"{venue}:{symbol}") or next(
                (w for w in agent.state.instruments.values()
                 if w.head.venue == venue and w.head.venue_symbol == symbol), None)  # fmt: skip
            if windows is None:
                return self.json({"error": f"no klines of {venue}:{symbol} on this worker"}, status=404)
            return self.json({"venue": windows.head.venue, "symbol": windows.head.symbol, "interval": interval,
                              "klines": candles_json(windows, interval, limit)})  # fmt: skip

    @app.page("/klines")
    class Klines(View):
        async def get(self, request: Request) -> Response:
            instruments = [instrument_json(agent, i) for i in sorted(agent.state.instruments)]
            return self.json({"recovered": agent.state.recovered, "counters": agent.counters,
                              "positions": agent.state.positions.counters, "times": agent.commit.times,
                              "intervals": [label for label, _ in agent.config.intervals],
                              "instruments": instruments})  # fmt: skip
