"""The live view draws what the status says: rates between two looks, book health, best levels,
processes that exited, lag."""

from __future__ import annotations

import copy

from rich.console import Console

from tickflow.live_view import LiveView


def status(now: float, events: int, diffs: int, running: bool = True) -> dict:
    return {
        "now": now, "uptime": now - 100, "kafka": "127.0.0.1:9092",
        "processes": [{"name": "producer", "pid": 11, "running": True, "log": "/x/producer.log"},
                      {"name": "worker 1", "pid": 12, "running": running, "log": "/x/worker-1.log"}],
        "producer": {"feeds": [{"venue": "binance-spot", "connections": [{"id": "c0", "state": "SUBSCRIBED"}],
                                "counters": {"events": events, "malformed_frames": 2, "snapshot_failures": 0},
                                "symbols": {"BTCUSDT": {"book": "live", "diffs": diffs, "resets": 1}}}],
                     "kafka": {"sent": events, "failed": 0}},
        "books": {"binance-spot:BTC-USDT": {"venue": "binance-spot", "symbol": "BTC-USDT", "venue_symbol": "BTCUSDT",
                                            "health": "LIVE", "receive_ts": int((now - 0.5) * 1e6),
                                            "counters": {"invalidations": 0},
                                            "best_bid": ["65000.01", "0.5"], "best_ask": ["65000.02", "1.25"]}},
        "workers": [{"worker": "worker 1", "healthy": True, "problems": []}],
        "lag": {"tickflow.book": 42, "tickflow.trades": 7},
    }  # fmt: skip


def text(view: LiveView, s: dict) -> str:
    console = Console(record=True, width=200)
    console.print(view.render(s))
    return console.export_text()


def test_rates_health_levels_and_lag() -> None:
    view = LiveView()
    first = text(view, status(1000.0, 5_000, 300))
    assert "binance-spot BTCUSDT" in first and "LIVE" in first and "65000.01 x 0.5" in first
    second = text(view, status(1002.0, 9_000, 700))
    assert " 2,000 " in second  # (9,000 - 5,000) events over 2 s
    assert " 200 " in second  # book updates a second
    assert "0.5 s" in second  # the last event's age
    assert "42" in second and "7" in second


def test_an_exited_process_and_an_unhealthy_worker_show() -> None:
    view = LiveView()
    s = status(1000.0, 1, 1, running=False)
    s["workers"] = [{"worker": "worker 1", "healthy": False, "problems": ["book binance-spot:BTC-USDT invalid: gap"]}]
    s["books"] = copy.deepcopy(s["books"])
    s["books"]["binance-spot:BTC-USDT"]["health"] = "INVALID"
    out = text(view, s)
    assert "EXITED" in out and "INVALID" in out and "invalid: gap" in out
