"""``tickflow capture check``: run a capture folder through the normalizer and book logic offline.

The same parser, bridge rules and book synchronisation as the live producer, fed from
``ws.log``/``http.log`` (the ``shared/recordings`` layout) in receive order. The summary says
what a producer would have published and whether every book stayed provably right.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from producers.book_sync import BookSync, PublishDiff, PublishSnapshot, Reset, SyncState
from producers.recordings import read_http_log, read_ws_log
from producers.venues import VENUES
from tickflow.errors import ConfigError, MalformedFrame


def check_capture(venue: str, directory: Path) -> dict[str, Any]:
    spec = VENUES.get(venue)
    if spec is None:
        raise ConfigError(f"unknown venue {venue!r}; known: {sorted(VENUES)}")
    if not (directory / "ws.log").is_file():
        raise ConfigError(f"{directory} has no ws.log (expected the shared/recordings layout)")
    parser, rule = spec.make_offline()
    ws = read_ws_log(directory / "ws.log")
    http = read_http_log(directory / "http.log") if (directory / "http.log").is_file() else None
    timeline: list[tuple[int, int, Any]] = [(f.receive_ts, 0, f.text) for f in ws.frames]
    timeline += [(r.receive_ts, 1, r) for r in (http.responses if http else [])]
    timeline.sort(key=lambda item: (item[0], item[1]))

    syncs: dict[str, BookSync] = {}
    events: Counter[str] = Counter()
    parse_errors = 0
    resets: Counter[str] = Counter()
    for ts, kind, item in timeline:
        try:
            if kind == 1:
                symbol = parser.snapshot_symbol(item.url)
                outputs = syncs.setdefault(symbol, BookSync(rule)).on_snapshot(parser.snapshot(item.body, ts))
            else:
                outputs = []
                for parsed in parser.parse(item, ts):
                    if hasattr(parsed, "diff"):
                        sync = syncs.setdefault(parsed.venue_symbol, BookSync(rule))
                        outputs += sync.on_diff(parsed.diff)
                    else:
                        events[type(parsed).__name__] += 1
        except MalformedFrame:
            parse_errors += 1
            continue
        for out in outputs:
            if isinstance(out, PublishSnapshot):
                events["BookSnapshot"] += 1
            elif isinstance(out, PublishDiff):
                events["BookDelta"] += 1
            elif isinstance(out, Reset):
                resets[out.reason.value] += 1
    books = {
        symbol: {
            "state": sync.state.value,
            "snapshots": sync.counters.snapshots,
            "diffs": sync.counters.diffs,
            "stale_dropped": sync.counters.stale_dropped,
            "resets": sync.counters.resets,
            "crossed": sync.book.crossed(),
        }
        for symbol, sync in sorted(syncs.items())
    }
    return {
        "venue": venue,
        "messages": len(ws.frames),
        "rest_responses": len(http.responses) if http else 0,
        "malformed_lines": len(ws.malformed_lines) + (len(http.malformed_lines) if http else 0),
        "parse_errors": parse_errors,
        "events_by_type": dict(sorted(events.items())),
        "trades": events["Trade"],
        "book_updates": events["BookDelta"],
        "snapshots": events["BookSnapshot"],
        "checksum_passes": 0,  # Binance sends no book checksum
        "checksum_failures": 0,
        "gaps": resets.get("SEQUENCE_GAP", 0),
        "resyncs": sum(resets.values()),
        "books_bridged": sum(1 for s in syncs.values() if s.state is SyncState.LIVE and s.counters.resets == 0),
        "books": books,
    }
