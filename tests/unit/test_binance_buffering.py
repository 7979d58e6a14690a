"""Diffs buffered while a book waits for its snapshot keep their levels undecoded until applied."""

from __future__ import annotations

import json
from decimal import Decimal

from producers.book_sync import SyncState
from producers.venues.binance.stream import BinanceStream
from producers.venues.binance.venue import BINANCE_SPOT
from tickflow.events import BookReset, BookResetReason, BookUpdate


class Sink:
    def __init__(self) -> None:
        self.events: list = []

    def send(self, topic: str, event: object) -> None:
        self.events.append(event)


def diff(first: int, last: int, bids: list) -> bytes:
    data = {"e": "depthUpdate", "E": 1, "s": "BTCUSDT", "U": first, "u": last, "b": bids, "a": []}
    return json.dumps({"stream": "btcusdt@depth@100ms", "data": data}).encode()


def stream() -> tuple[BinanceStream, Sink, list[str]]:
    sink, asked = Sink(), []
    s = BinanceStream(BINANCE_SPOT, ["BTCUSDT"], sink, request_snapshot=asked.append)
    s.invalidate(BookResetReason.RECONNECT, "first connection", 0)
    return s, sink, asked


def test_buffered_diffs_are_decoded_only_when_applied_and_give_the_exact_book() -> None:
    s, sink, _ = stream()
    s.on_frame(diff(10, 12, [["100.10", "1.0"]]), 1)  # stale once the snapshot (id 12) comes
    s.on_frame(diff(13, 14, [["100.20", "2.50000000"], ["100.10", "0"]]), 2)
    buffered = list(s.syncs["BTCUSDT"]._buffer)
    assert all(d.undecoded is not None and d.bids == [] for d in buffered)
    s.on_snapshot("BTCUSDT", b'{"lastUpdateId": 12, "bids": [["100.10", "1"]], "asks": [["101", "1"]]}', 3)
    assert s.syncs["BTCUSDT"].state is SyncState.LIVE
    assert dict(s.syncs["BTCUSDT"].book.bids) == {Decimal("100.20"): Decimal("2.5")}
    delta = [e for e in sink.events if isinstance(e, BookUpdate) and e.kind.value == "DELTA"]
    assert [(lv.price, lv.size) for lv in delta[0].bids] == [
        (Decimal("100.20"), Decimal("2.5")),
        (Decimal("100.10"), 0),
    ]


def test_a_buffered_diff_with_unusable_levels_is_a_marked_hole_not_a_crash() -> None:
    s, sink, asked = stream()
    s.on_frame(diff(13, 14, [["not-a-price", "1"]]), 1)  # ids fine, levels not
    s.on_snapshot("BTCUSDT", b'{"lastUpdateId": 12, "bids": [], "asks": []}', 2)
    markers = [e for e in sink.events if isinstance(e, BookReset)]
    assert markers and markers[-1].reason is BookResetReason.SEQUENCE_GAP and "unusable levels" in markers[-1].detail
    assert s.syncs["BTCUSDT"].state is SyncState.AWAITING_SNAPSHOT and asked[-1] == "BTCUSDT"
