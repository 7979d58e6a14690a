"""The kline agent's counters over Faust's web server.

``GET /klines``: per instrument on this worker, its counters (trades counted, klines published,
late trades, corrections, expired and duplicate trades, cross-check matches, mismatches and
skipped windows), watermark and open windows, and the windows the cross-check currently finds
different from the venue's; the agent's own counters and its source positions' (``resume.py``);
``recovered`` is false until the tables are recovered after the worker starts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import faust
import msgspec
from faust.web import Request, Response, View

if TYPE_CHECKING:
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


def register_kline_views(app: faust.App, agent: KlineAgent) -> None:
    @app.page("/klines")
    class Klines(View):
        async def get(self, request: Request) -> Response:
            instruments = [instrument_json(agent, i) for i in sorted(agent.state.instruments)]
            return self.json({"recovered": agent.state.recovered, "counters": agent.counters,
                              "positions": agent.state.positions.counters, "times": agent.commit.times,
                              "intervals": [label for label, _ in agent.config.intervals],
                              "instruments": instruments})  # fmt: skip
