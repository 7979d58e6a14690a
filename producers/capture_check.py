"""``tickflow capture check``: run a capture folder through the normalizer and book logic offline.

The same parser, bridge rules and book synchronisation as the live producer, fed from
``ws.log``/``http.log`` (the ``shared/recordings`` layout) in receive order. The summary says
what a producer would have published and whether every book stayed provably right.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from producers.book_sync import SyncState
from producers.recordings import read_http_log, read_ws_log
from producers.venues import VENUES
from tickflow.errors import ConfigError, MalformedFrame
from tickflow.events import BookReset, BookUpdate, Event


class _CountingSink:
    """Counts what a producer would have published, by kind."""

    def __init__(self) -> None:
        self.events: Counter[str] = Counter()
        self.resets: Counter[str] = Counter()
        self.checksum_passes = 0
        self.checksum_failures = 0

    def send(self, topic: str, event: Event) -> None:
        if isinstance(event, BookUpdate):
            self.events["BookSnapshot" if event.kind.value == "SNAPSHOT" else "BookDelta"] += 1
            if event.checksum is not None:
                self.checksum_passes += 1  # a book that failed its checksum is reset, not published
        elif isinstance(event, BookReset):
            self.resets[event.reason.value] += 1
            self.checksum_failures += event.reason.value == "CHECKSUM_MISMATCH"
        else:
            self.events[type(event).__name__] += 1


def check_capture(venue: str, directory: Path) -> dict[str, Any]:
    spec = VENUES.get(venue)
    if spec is None:
        raise ConfigError(f"unknown venue {venue!r}; known: {sorted(VENUES)}")
    if not (directory / "ws.log").is_file():
        raise ConfigError(f"{directory} has no ws.log (expected the shared/recordings layout)")
    market_data = spec.market_data()
    ws = read_ws_log(directory / "ws.log")
    http = read_http_log(directory / "http.log") if (directory / "http.log").is_file() else None
    symbols = market_data.capture_symbols(ws.url, [f.text for f in ws.frames])
    sink = _CountingSink()
    stream = market_data.make_stream(symbols, sink, lambda symbol: None, {})
    timeline: list[tuple[int, int, Any]] = [(f.receive_ts, 0, f.text) for f in ws.frames]
    timeline += [(r.receive_ts, 1, r) for r in (http.responses if http else [])]
    timeline.sort(key=lambda item: (item[0], item[1]))

    parse_errors = 0
    for ts, kind, item in timeline:
        if kind == 0:
            stream.on_frame(item.encode(), ts)
            continue
        symbol = market_data.snapshot_symbol(item.url)
        if symbol in stream.syncs:
            try:
                stream.on_snapshot(symbol, item.body, ts)
            except MalformedFrame:
                parse_errors += 1
    syncs = stream.syncs
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
    events = sink.events
    return {
        "venue": venue,
        "messages": len(ws.frames),
        "rest_responses": len(http.responses) if http else 0,
        "malformed_lines": len(ws.malformed_lines) + (len(http.malformed_lines) if http else 0),
        "parse_errors": parse_errors + stream.counters.malformed_frames,
        "events_by_type": dict(sorted(events.items())),
        "trades": events["Trade"],
        "book_updates": events["BookDelta"],
        "snapshots": events["BookSnapshot"],
        "checksum_passes": sink.checksum_passes,
        "checksum_failures": sink.checksum_failures,
        "gaps": sink.resets.get("SEQUENCE_GAP", 0),
        "resyncs": sum(sink.resets.values()),
        "books_bridged": sum(1 for s in syncs.values() if s.state is SyncState.LIVE and s.counters.resets == 0),
        "books": books,
    }
