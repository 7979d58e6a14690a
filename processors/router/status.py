"""The router's status server: ``/health``, ``/status`` (JSON) and ``/metrics`` (Prometheus).

What ``tickflow up``'s live view, the dashboard and a monitoring system read: commands and their
outcomes, rejections by rule, unknown outcomes and their resolutions, the overhead from a command
consumed to its request sent, the venues' clients and private streams, the kill switches. No
secret is ever part of it (clients and streams expose counters only). ``/status`` and
``/health`` allow any origin, so the dashboard served by a worker on another port can read them.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from aiohttp import web

from processors.router.router import OrderRouter

_CORS = {"Access-Control-Allow-Origin": "*"}


def _percentile(ordered: list[float], q: float) -> float | None:
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else None


def _milliseconds(samples: Iterable[float], *, extremes: bool = False) -> dict[str, float | int | None]:
    """p50 and p99 of samples in seconds, in milliseconds (``extremes``: also the max and the count)."""
    ordered = sorted(samples)
    summary = {name: _percentile(ordered, q) for name, q in (("p50", 0.5), ("p99", 0.99))}
    if extremes:
        summary["max"] = ordered[-1] if ordered else None
    result: dict[str, float | int | None] = {k: (round(v * 1000, 3) if v is not None else None)
                                             for k, v in summary.items()}  # fmt: skip
    if extremes:
        result["samples"] = len(ordered)
    return result


def status(router: OrderRouter) -> dict[str, Any]:
    stats = router.stats
    venues = []
    for (account, venue), client in router.clients.items():
        http = getattr(client, "http", None)
        counters = http.counters if http is not None else None
        stream = router.streams.get((account, venue))
        stream_counters = getattr(stream, "counters", None)
        venues.append({
            "account": account, "venue": venue,
            "requests": counters.requests if counters else None, "errors": counters.errors if counters else None,
            "timeouts": counters.timeouts if counters else None,
            "rate_limited": counters.rate_limited if counters else None,
            "last_error": counters.last_error if counters else None,
            "stream": {**vars(stream_counters), "live": getattr(stream, "live", None)} if stream_counters else None,
        })  # fmt: skip
    return {
        "now": time.time(),
        "instance": router.settings.instance_id,
        "commands": stats.commands,
        "in_flight": stats.in_flight,
        "outcomes": dict(stats.outcomes),
        "rejected_by_rule": dict(stats.rejected_by_rule),
        "repeats_skipped": stats.repeats_skipped,
        "unknown_outcomes": stats.unknown_outcomes,
        "found_by_query": stats.recovered_by_query,
        "recovery_queries": stats.recovery_queries,
        "dead_letters": stats.dead_letters,
        "internal_errors": stats.internal_errors,
        "transactions": stats.transactions,
        "reconciled": stats.reconciled,
        "stream_fills": stats.stream_fills,
        "open_orders": len(router.book.open_orders()),
        "quotes_read": router.market.quotes_read,
        "overhead_ms": _milliseconds(stats.send_latency, extremes=True),
        "queued_ms": _milliseconds(stats.queued),
        "venue_wait_ms": _milliseconds(stats.venue_wait),
        "delivery_ms": _milliseconds(stats.delivery),
        "kill_switches": [
            {"scope": s.scope, "reason": s.reason, "set_by": s.set_by} for s in router.market.engaged_switches()
        ],
        "venues": venues,
    }


def health(router: OrderRouter) -> tuple[bool, list[str]]:
    problems = []
    if router.consumer is None:
        problems.append("not consuming commands yet")
    if router.stats.internal_errors:
        problems.append(f"{router.stats.internal_errors} internal errors (see the log)")
    for (account, venue), stream in router.streams.items():
        counters = getattr(stream, "counters", None)
        if counters is not None and not getattr(stream, "live", True):
            problems.append(f"private stream of {account} at {venue} is down ({counters.last_error})")
    return not problems, problems


def metrics(router: OrderRouter) -> str:
    s = status(router)
    lines = [
        "# TYPE tickflow_router_commands_total counter",
        f"tickflow_router_commands_total {s['commands']}",
        "# TYPE tickflow_router_outcomes_total counter",
        *[f'tickflow_router_outcomes_total{{status="{k}"}} {v}' for k, v in s["outcomes"].items()],
        "# TYPE tickflow_router_rejections_total counter",
        *[f'tickflow_router_rejections_total{{rule="{k}"}} {v}' for k, v in s["rejected_by_rule"].items()],
        "# TYPE tickflow_router_unknown_outcomes_total counter",
        f"tickflow_router_unknown_outcomes_total {s['unknown_outcomes']}",
        "# TYPE tickflow_router_in_flight gauge",
        f"tickflow_router_in_flight {s['in_flight']}",
        "# TYPE tickflow_router_open_orders gauge",
        f"tickflow_router_open_orders {s['open_orders']}",
        "# TYPE tickflow_router_kill_switches_engaged gauge",
        f"tickflow_router_kill_switches_engaged {len(s['kill_switches'])}",
        "# TYPE tickflow_router_overhead_seconds summary",
    ]
    for q, key in (("0.5", "p50"), ("0.99", "p99")):
        value = s["overhead_ms"][key]
        if value is not None:
            lines.append(f'tickflow_router_overhead_seconds{{quantile="{q}"}} {value / 1000}')
    for venue in s["venues"]:
        labels = f'account="{venue["account"]}",venue="{venue["venue"]}"'
        for field in ("requests", "errors", "timeouts", "rate_limited"):
            if venue[field] is not None:
                lines.append(f"tickflow_router_venue_{field}_total{{{labels}}} {venue[field]}")
    return "\n".join(lines) + "\n"


async def start_status_server(router: OrderRouter, host: str, port: int) -> web.AppRunner:
    async def get_status(_: web.Request) -> web.Response:
        return web.json_response(status(router), headers=_CORS)

    async def get_health(_: web.Request) -> web.Response:
        healthy, problems = health(router)
        return web.json_response({"healthy": healthy, "problems": problems}, status=200 if healthy else 503,
                                 headers=_CORS)  # fmt: skip

    async def get_metrics(_: web.Request) -> web.Response:
        return web.Response(text=metrics(router), content_type="text/plain")

    app = web.Application()
    app.router.add_get("/status", get_status)
    app.router.add_get("/health", get_health)
    app.router.add_get("/metrics", get_metrics)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
