"""The frames of a Binance venue -> events: the hot path of the Binance feed.

Frames -> ``BinanceParser`` -> trades, best bid/offer and klines straight to their topics;
depth diffs -> the symbol's ``BookSync`` -> ``BookUpdate``/``BookReset`` on the book topic.
Subscription replies (``{"result": null, "id": 7}``, ``{"error": {...}, "id": 7}``) come back
as ``Control`` values for the connection's subscription manager.

The stream knows nothing about sockets or HTTP: the live feed and ``tickflow capture check``
feed it the same way (frames, and snapshot bodies when they arrive), so captures are checked by
exactly the code that runs live.
"""

from __future__ import annotations

from collections.abc import Callable

from producers.book_events import BookEvents
from producers.book_sync import BookSync, NeedSnapshot, Output
from producers.stream import Control, EventSink, StreamCounters
from producers.venues.binance.book_rules import SpotBridgeRule, UsdmBridgeRule
from producers.venues.binance.parsing import BinanceParser, SymbolDiff
from producers.venues.binance.symbols import normalize_symbol
from producers.venues.binance.venue import BinanceVenue
from tickflow import topics
from tickflow.errors import MalformedFrame
from tickflow.events import BestBidOffer, BookResetReason, Kline, Trade

_TOPIC_OF = {Trade: topics.TRADES, BestBidOffer: topics.BBO, Kline: topics.KLINES}


class BinanceStream:
    """Turns one Binance venue's frames into events, keeping one book per symbol."""

    def __init__(
        self,
        venue: BinanceVenue,
        symbols: list[str],
        sink: EventSink,
        *,
        request_snapshot: Callable[[str], None],
        symbol_names: dict[str, str] | None = None,
    ) -> None:
        self.venue = venue
        self.sink = sink
        self.request_snapshot = request_snapshot
        self.counters = StreamCounters()
        names = symbol_names or {}
        self.parser = BinanceParser(venue.name, venue.market, names)
        rule = SpotBridgeRule() if venue.spot else UsdmBridgeRule()
        self.syncs = {s: BookSync(rule) for s in symbols}
        self.books = {
            s: BookEvents(venue.name, venue.market, names.get(s) or normalize_symbol(s), s, rule) for s in symbols
        }

    def on_frame(self, frame: str | bytes, receive_ts: int) -> str | Control | None:
        """Handle one frame. Returns the stream it belongs to (for the traffic watchdog), a
        ``Control`` for a reply to a subscribe request, or None for a malformed frame (counted)."""
        self.counters.frames += 1
        try:
            parsed = self.parser.parse(frame, receive_ts)
        except MalformedFrame as exc:
            self.counters.malformed(str(exc))
            return None
        if isinstance(parsed, Control):
            return parsed
        stream, items = parsed
        for item in items:
            if isinstance(item, SymbolDiff):
                sync = self.syncs.get(item.venue_symbol)
                if sync is not None:
                    self._handle(item.venue_symbol, sync.on_diff(item.diff), receive_ts)
            else:
                self.sink.send(_TOPIC_OF[type(item)], item)
                self.counters.events += 1
        return stream

    def on_snapshot(self, symbol: str, body: str | bytes, receive_ts: int) -> None:
        """A REST depth snapshot of ``symbol`` arrived: bridge the buffered diffs onto it.
        Raises ``MalformedFrame`` for a body that is not a snapshot (the caller fetches again)."""
        snapshot = self.parser.snapshot(body, receive_ts)
        self._handle(symbol, self.syncs[symbol].on_snapshot(snapshot), receive_ts)

    def invalidate(self, reason: BookResetReason, detail: str, now_us: int) -> None:
        """Every book restarts from a fresh snapshot (the socket reconnected: data was missed)."""
        for symbol, sync in self.syncs.items():
            self._handle(symbol, sync.invalidate(reason, detail), now_us)

    def _handle(self, symbol: str, outputs: list[Output], now_us: int) -> None:
        for event in self.books[symbol].events(outputs, now_us):
            self.sink.send(topics.BOOK, event)
            self.counters.events += 1
        if any(isinstance(o, NeedSnapshot) for o in outputs):
            self.request_snapshot(symbol)
