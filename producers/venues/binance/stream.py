"""The frames of a Binance venue -> events: the hot path of the Binance feed.

Frames -> ``BinanceParser`` -> trades, best bid/offer and klines straight to their topics;
depth diffs -> the symbol's ``BookSync`` -> ``BookUpdate``/``BookReset`` on the book topic.
Subscription replies (``{"result": null, "id": 7}``, ``{"error": {...}, "id": 7}``) come back
as ``Control`` values for the connection's subscription manager.

The stream knows nothing about sockets or HTTP: the live feed and ``tickflow capture check``
feed it the same way (frames, and snapshot bodies when they arrive), so captures are checked by
exactly the code that runs live.

Hot path: where the compiled module is built, books are ``tickflow._hotpath.Book`` (exact
integers at scale 18), and when the sink is an ``EventProducer`` with the compiled writer,
``on_frame`` is ``BinanceFastPath.on_frame``: depth diffs that continue a live book, trades and
book tickers go from the frame to Avro bytes in C, parsing prices and sizes exactly from the
venue's text. Any other frame, or anything unusual in one, is declined before anything changes
and handled by the generic Python path below, which stays the reference (and what other sinks,
e.g. ``tickflow capture check``, use).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from producers.book_events import BookEvents
from producers.book_sync import BookSync, DepthDiff, NeedSnapshot, Output, SyncState
from producers.stream import Control, EventSink, StreamCounters
from producers.venues.binance.book_rules import SpotBridgeRule, UsdmBridgeRule
from producers.venues.binance.parsing import DECODE_ERRORS, FAST_DECODERS, BinanceParser, SymbolDiff, channel
from producers.venues.binance.symbols import normalize_symbol
from producers.venues.binance.venue import BinanceVenue
from tickflow import avro_plan, topics
from tickflow.errors import MalformedFrame
from tickflow.events import BestBidOffer, BookResetReason, BookUpdate, Kline, MarketEvent, Trade
from tickflow.producer import EventProducer

_TOPIC_OF = {Trade: topics.TRADES, BestBidOffer: topics.BBO, Kline: topics.KLINES}

compiled = avro_plan.compiled
if compiled is not None:
    _FRAME_KINDS = {"depth": compiled.FRAME_DEPTH, "aggTrade": compiled.FRAME_AGG_TRADE,
                    "trade": compiled.FRAME_TRADE, "bookTicker": compiled.FRAME_TICKER}  # fmt: skip
    # Which event the compiled path writes for each kind of frame, and the enum symbols it needs.
    _FAST_EVENTS = {
        compiled.FRAME_DEPTH: (BookUpdate, topics.BOOK, "kind", ("DELTA",)),
        compiled.FRAME_AGG_TRADE: (Trade, topics.TRADES, "side", ("BUY", "SELL")),
        compiled.FRAME_TRADE: (Trade, topics.TRADES, "side", ("BUY", "SELL")),
        compiled.FRAME_TICKER: (BestBidOffer, topics.BBO, None, ()),
    }


def _frame_kind(stream: str) -> int:
    return _FRAME_KINDS.get(channel(stream), 0)


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
        self.syncs = {
            s: BookSync(rule, book=compiled.Book() if compiled else None, decode_levels=self.parser.decode_levels)
            for s in symbols
        }
        # Streams whose book waits for a snapshot: their diffs are buffered with levels undecoded.
        self._book_of_stream: dict[str, BookSync] = {}
        self.books = {
            s: BookEvents(venue.name, venue.market, names.get(s) or normalize_symbol(s), s, rule) for s in symbols
        }
        #: The compiled path, where it is built and the sink is an ``EventProducer`` writing
        #: with the compiled writer (it produces bytes through that producer's senders).
        self.fast: Any = None
        self._market_indices: dict[str, int] | None = None
        if compiled is not None and isinstance(sink, EventProducer) and sink.codec and sink.codec.compiled_writer:
            trade_plan = avro_plan.build_plan(sink.codec.contract[Trade.avro_name].schema)
            if trade_plan is not None and compiled.layout_matches(trade_plan):
                self._market_indices = trade_plan.args[trade_plan.names.index("market")]
                self.fast = compiled.BinanceFastPath(
                    generic=self.on_frame, counters=self.counters, decoders=FAST_DECODERS,
                    decode_errors=DECODE_ERRORS, channel_kind=_frame_kind, make_symbol=self._symbol_path,
                    resolve=self._resolve, live=SyncState.LIVE,
                    awaiting=SyncState.AWAITING_SNAPSHOT, depth_diff=DepthDiff, on_crossed=self._on_crossed,
                )  # fmt: skip
                self.on_frame = self.fast.on_frame  # type: ignore[method-assign]

    def on_frame(self, frame: str | bytes, receive_ts: int) -> str | Control | None:
        """Handle one frame. Returns the stream it belongs to (for the traffic watchdog), a
        ``Control`` for a reply to a subscribe request, or None for a malformed frame (counted)."""
        self.counters.frames += 1
        try:
            parsed = self.parser.parse(frame, receive_ts, self._buffering)
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

    def _buffering(self, stream: str) -> bool:
        sync = self._book_of_stream.get(stream)
        if sync is None:
            sync = self.syncs.get(stream.partition("@")[0].upper())
            if sync is None:
                return False
            self._book_of_stream[stream] = sync
        return sync.state is SyncState.AWAITING_SNAPSHOT

    def on_snapshot(self, symbol: str, body: str | bytes, receive_ts: int) -> None:
        """A REST depth snapshot of ``symbol`` arrived: bridge the buffered diffs onto it.
        Raises ``MalformedFrame`` for a body that is not a snapshot (the caller fetches again)."""
        snapshot = self.parser.snapshot(body, receive_ts)
        self._handle(symbol, self.syncs[symbol].on_snapshot(snapshot), receive_ts)

    def invalidate(self, reason: BookResetReason, detail: str, now_us: int) -> None:
        """Every book restarts from a fresh snapshot (the socket reconnected: data was missed)."""
        for symbol, sync in self.syncs.items():
            self._handle(symbol, sync.invalidate(reason, detail), now_us)

    # --- the compiled path's hooks ----------------------------------------------------------------

    def _symbol_path(self, venue_symbol: str) -> Any:
        """What the compiled path needs of a symbol (once per symbol): the Kafka key, the Avro of
        the static fields, and the book if this stream keeps one for it."""
        assert compiled is not None and self._market_indices is not None
        static = self.parser.static(venue_symbol)
        head = (compiled.avro_string(static["venue"]) + compiled.avro_long(self._market_indices[static["market"]])
                + compiled.avro_string(static["symbol"]) + compiled.avro_string(venue_symbol))  # fmt: skip
        key = ":".join(str(static[f]) for f in MarketEvent.key_fields).encode()  # what Event.key gives
        sync = self.syncs.get(venue_symbol)
        book = sync.book if sync is not None and isinstance(sync.book, compiled.Book) else None
        rule = 0
        if sync is not None:
            rule = 1 if type(sync.rule) is SpotBridgeRule else 2 if type(sync.rule) is UsdmBridgeRule else 0
        return compiled.SymbolPath(venue_symbol, key, head, sync, book, rule)

    def _resolve(self, kind: int) -> tuple[Any, bytes | None, dict[str, int] | None]:
        """The sender for a kind of frame's events (registering the schema, as the first generic
        send would), its Confluent header and the enum indices the compiled writer needs; or
        (None, None, None) if the contract's record is not the layout the compiled writer writes."""
        assert compiled is not None and isinstance(self.sink, EventProducer)
        event_type, topic, enum_field, symbols = _FAST_EVENTS[kind]
        sender = self.sink.sender(topic, event_type)
        if type(sender) is not compiled.Sender or event_type.key_fields != MarketEvent.key_fields:
            return None, None, None
        plan = sender.encoder.plan
        if not compiled.layout_matches(plan) or plan.args[plan.names.index("market")] != self._market_indices:
            return None, None, None
        indices = plan.args[plan.names.index(enum_field)] if enum_field else {}
        return sender, sender.encoder.header, {s: indices[s] for s in symbols}

    def _on_crossed(self, symbol: str, sync: BookSync, diff: DepthDiff, receive_ts: int) -> None:
        """The compiled path applied a diff that crossed the book: the generic outcome (a reset)."""
        self._handle(symbol, sync.applied(diff), receive_ts)

    def _handle(self, symbol: str, outputs: list[Output], now_us: int) -> None:
        for event in self.books[symbol].events(outputs, now_us):
            self.sink.send(topics.BOOK, event)
            self.counters.events += 1
        if any(isinstance(o, NeedSnapshot) for o in outputs):
            self.request_snapshot(symbol)
