"""Book synchronisation outputs -> the book topic's events (``BookUpdate``, ``BookReset``).

Each record carries the venue's own sequence fields as they came (first/last/previous update
id), so a consumer can verify continuity without trusting tickflow; a reset marker precedes the
snapshot that follows it, on the same key, so it arrives first.
"""

from __future__ import annotations

from producers.book_sync import BridgeRule, Level, NeedSnapshot, Output, PublishDiff, PublishSnapshot, Reset
from tickflow.events import BookReset, BookUpdate, BookUpdateKind, Event, MarketType, PriceLevel


def _levels(levels: list[Level]) -> list[PriceLevel]:
    return [PriceLevel(price, size) for price, size in levels]


class BookEvents:
    """Builds the book events of one instrument."""

    def __init__(self, venue: str, market: MarketType, symbol: str, venue_symbol: str, rule: BridgeRule) -> None:
        self.header = {"venue": venue, "market": market, "symbol": symbol, "venue_symbol": venue_symbol}
        #: Whether ids count updates of this instrument alone (so a gap's size is known).
        self.countable = rule.ids_per_instrument

    def events(self, outputs: list[Output], now_us: int) -> list[Event]:
        events: list[Event] = []
        for out in outputs:
            if isinstance(out, PublishDiff):
                d = out.diff
                events.append(
                    BookUpdate(**self.header, exchange_ts=d.exchange_ts, receive_ts=d.receive_ts,
                               kind=BookUpdateKind.DELTA, bids=_levels(d.bids), asks=_levels(d.asks),
                               first_update_id=d.first_id, last_update_id=d.last_id, prev_update_id=d.prev_id)
                )  # fmt: skip
            elif isinstance(out, PublishSnapshot):
                s = out.snapshot
                events.append(
                    BookUpdate(**self.header, exchange_ts=None, receive_ts=s.receive_ts,
                               kind=BookUpdateKind.SNAPSHOT, bids=_levels(s.bids), asks=_levels(s.asks),
                               last_update_id=s.last_id)
                )  # fmt: skip
            elif isinstance(out, Reset):
                missed = None
                if self.countable and out.expected is not None and out.received is not None:
                    missed = max(out.received - out.expected, 0)
                events.append(
                    BookReset(**self.header, exchange_ts=None, receive_ts=now_us, reason=out.reason,
                              expected_update_id=out.expected, received_update_id=out.received,
                              missed_updates=missed, detail=out.detail)
                )  # fmt: skip
            else:
                assert isinstance(out, NeedSnapshot)  # an action for the feed, not an event
        return events
