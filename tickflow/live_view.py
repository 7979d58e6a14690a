"""The live terminal view of ``tickflow up``: one screen, redrawn every second from
``Pipeline.status()``. Rates are the differences between two looks."""

from __future__ import annotations

from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text

_FEED_COLUMNS = ("venue", "connections", "events/s", "malformed", "snapshot failures", "kafka sent/s", "undelivered")
_BOOK_COLUMNS = (
    "instrument",
    "producer book",
    "updates/s",
    "resyncs",
    "agent book",
    "last event",
    "invalidations",
    "best bid",
    "best ask",
)
_LEFT = {"venue", "instrument", "producer book", "agent book"}


def _table(title: str, columns: tuple[str, ...]) -> Table:
    table = Table(title=title, title_justify="left")
    for column in columns:
        table.add_column(column, justify="left" if column in _LEFT else "right")
    return table


class LiveView:
    def __init__(self) -> None:
        self._previous: dict[str, Any] | None = None

    def render(self, status: dict[str, Any]) -> Group:
        previous, self._previous = self._previous or {}, status
        elapsed = status["now"] - previous["now"] if previous else 0.0

        def rate(now: float, before: float | None) -> str:
            return f"{(now - before) / elapsed:,.0f}" if elapsed > 0 and before is not None else "-"

        head = Text.assemble(
            ("tickflow up", "bold"),
            f"  {status['uptime']:,.0f} s   kafka {status['kafka']}   ",
            ("Ctrl-C or `tickflow down` stops everything", "dim"),
        )
        processes = Table.grid(padding=(0, 2))
        for proc in status["processes"]:
            state = Text("running", "green") if proc["running"] else Text("EXITED", "bold red")
            restarts = Text(f"restarted {proc['restarts']}x", "yellow") if proc.get("restarts") else Text("")
            processes.add_row(proc["name"], str(proc["pid"]), state, restarts, Text(proc["log"], "dim"))

        producer, before = status.get("producer") or {}, previous.get("producer") or {}
        feeds_before = {f["venue"]: f for f in before.get("feeds", [])}
        kafka, kafka_before = producer.get("kafka") or {}, before.get("kafka") or {}
        feeds = _table("feeds", _FEED_COLUMNS)
        for feed in producer.get("feeds", []):
            counters, was = feed["counters"], feeds_before.get(feed["venue"], {}).get("counters", {})
            up = sum(c["state"] in ("CONNECTED", "SUBSCRIBED") for c in feed["connections"])
            feeds.add_row(
                feed["venue"],
                f"{up}/{len(feed['connections'])}",
                rate(counters["events"], was.get("events")),
                str(counters["malformed_frames"]),
                str(counters["snapshot_failures"]),
                rate(kafka.get("sent", 0), kafka_before.get("sent")),
                str(kafka.get("failed", "-")),
            )

        books = _table("books", _BOOK_COLUMNS)
        worker_books = status.get("books") or {}
        for feed in producer.get("feeds", []):
            was = feeds_before.get(feed["venue"], {}).get("symbols", {})
            for symbol, book in feed["symbols"].items():
                agent = _find(worker_books, feed["venue"], symbol)
                health = agent["health"] if agent else "-"
                style = {"LIVE": "green", "INVALID": "bold red"}.get(health, "yellow")
                age = f"{status['now'] - agent['receive_ts'] / 1e6:,.1f} s" if agent and agent["receive_ts"] else "-"
                updates = rate(book["diffs"], was.get(symbol, {}).get("diffs"))
                invalid = str(agent["counters"]["invalidations"]) if agent else "-"
                books.add_row(
                    f"{feed['venue']} {symbol}",
                    book["book"],
                    updates,
                    str(book["resets"]),
                    Text(health, style),
                    age,
                    invalid,
                    _level(agent, "best_bid"),
                    _level(agent, "best_ask"),
                )

        agents = _table("agents", ("worker", "healthy", "lag: book topic", "lag: trades"))
        lags = status.get("lag") or {}
        for worker in status.get("workers", []):
            problems = "; ".join(worker.get("problems", []))[:60]
            healthy = Text("yes", "green") if worker.get("healthy") else Text(problems or "no answer", "red")
            agents.add_row(
                worker["worker"], healthy, str(lags.get("tickflow.book", "-")), str(lags.get("tickflow.trades", "-"))
            )
        parts = [head, processes, feeds, books, agents]
        router = status.get("router")
        if router:
            parts.append(_orders(router, previous.get("router") or {}, rate))
        return Group(*parts)


def _find(books: dict[str, Any], venue: str, symbol: str) -> dict[str, Any] | None:
    return books.get(f"{venue}:{symbol}") or next(
        (b for b in books.values() if b["venue"] == venue and b["venue_symbol"] == symbol), None
    )


def _level(book: dict[str, Any] | None, side: str) -> str:
    level = book.get(side) if book else None
    return f"{level[0]} x {level[1]}" if level else "-"


_ORDER_COLUMNS = ("router", "commands", "commands/s", "accepted", "filled", "canceled", "rejected", "unknown outcome",
                  "overhead p99", "open orders", "private streams")  # fmt: skip


def _orders(router: dict[str, Any], before: dict[str, Any], rate: Any) -> Table:
    """The order router: commands and what became of them."""
    orders = _table("orders", _ORDER_COLUMNS)
    outcomes = router.get("outcomes", {})
    p99 = router.get("overhead_ms", {}).get("p99")
    streams = [v["stream"] for v in router.get("venues", []) if v.get("stream")]
    live = sum(1 for s in streams if s.get("live"))
    rules = router.get("rejected_by_rule", {})
    rejected = str(outcomes.get("REJECTED", 0)) + (f" ({', '.join(f'{k} {v}' for k, v in rules.items())})"[:60]
                                                   if rules else "")  # fmt: skip
    orders.add_row(
        router.get("instance", "router"),
        str(router.get("commands", 0)),
        rate(router.get("commands", 0), before.get("commands")),
        str(outcomes.get("ACCEPTED", 0)),
        str(outcomes.get("FILLED", 0) + outcomes.get("PARTIALLY_FILLED", 0)),
        str(outcomes.get("CANCELED", 0)),
        rejected,
        str(router.get("unknown_outcomes", 0)),
        f"{p99:.2f} ms" if p99 is not None else "-",
        str(router.get("open_orders", 0)),
        Text(f"{live}/{len(streams)} live", "green" if live == len(streams) else "bold red"),
    )
    switches = router.get("kill_switches") or []
    if switches:
        engaged = "; ".join(f"{s['scope']} ({s['reason']})" for s in switches)
        orders.caption = Text(f"KILL SWITCH: {engaged}", "bold red")
    return orders
