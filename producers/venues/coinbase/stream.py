"""The frames of one Coinbase Advanced Trade connection -> events.

- ``sequence_num`` counts every message of the connection, all channels together. A jump means
  messages were lost, and nothing says which: every book of this connection is reset (a
  ``SEQUENCE_GAP`` marker each) and resynced by subscribing its ``level2`` channel again, which
  makes Coinbase send a fresh snapshot. A number already seen is a duplicate: dropped. Books of
  other connections are never touched.
- ``l2_data``: a ``snapshot`` event, then ``update`` events with the new size of each level.
  Book records carry the connection's ``sequence_num`` as their update id, and the previous
  record's as ``prev_update_id``, so a consumer can check that none went missing on the way.
- ``market_trades``: each trade once. A (re)subscription starts with a snapshot of recent trades:
  after a reconnect, the ones newer than the last trade published fill the gap; on the first
  connection they are history from before we started and are skipped.
- ``ticker`` -> best bid/offer; ``candles`` (5 minutes, updated as trades happen) -> klines, each
  update in progress, then the last state again with ``closed`` once the next candle starts.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

import msgspec

from producers.book_events import BookEvents
from producers.book_sync import BookSync, DepthDiff, DepthSnapshot, NeedSnapshot, Output, Reset
from producers.stream import Control, EventSink, StreamCounters
from producers.venues.coinbase import parsing
from producers.venues.coinbase.book_rules import CoinbaseBookRule
from producers.venues.coinbase.venue import HEARTBEATS
from tickflow import topics
from tickflow.errors import MalformedFrame
from tickflow.events import BestBidOffer, BookResetReason, Kline, MarketType, Side, Trade

VENUE = "coinbase"
CANDLE_SECONDS = 300


class CoinbaseStream:
    def __init__(
        self,
        symbols: list[str],
        sink: EventSink,
        *,
        request_snapshot: Callable[[str], None],
        symbol_names: dict[str, str] | None = None,
        market: MarketType = MarketType.SPOT,
    ) -> None:
        self.sink = sink
        self.request_snapshot = request_snapshot
        self.counters = StreamCounters()
        self.duplicates_dropped = 0
        self.gaps = 0
        names = symbol_names or {}
        rule = CoinbaseBookRule()
        self.syncs = {p: BookSync(rule) for p in symbols}
        self.books = {p: BookEvents(VENUE, market, names.get(p) or p, p, rule) for p in symbols}
        self._headers = {p: {"venue": VENUE, "market": market, "symbol": names.get(p) or p, "venue_symbol": p}
                         for p in symbols}  # fmt: skip
        self._sequence = -1  # the last sequence_num of this connection
        self._last_l2: dict[str, int] = {}  # product -> sequence_num of its last book message
        self._last_trade: dict[str, int] = {}  # product -> highest numeric trade id published
        self._candles: dict[str, Kline] = {}  # product -> its candle in progress

    # --- frames --------------------------------------------------------------------------------

    def on_frame(self, frame: str | bytes, receive_ts: int) -> str | Control | None:
        self.counters.frames += 1
        try:
            message = parsing.envelope.decode(frame)
            if message.type == "error":
                reason = message.message or "error"
                return Control(error=f"{reason}: {message.reason}" if message.reason else reason)
            if message.channel is None or message.sequence_num is None or not message.events:
                raise MalformedFrame(f"coinbase: not a market-data message: {frame[:200]!r}")
            if not self._in_sequence(message.sequence_num, receive_ts):
                return None
            return self._dispatch(message, receive_ts)
        except (msgspec.DecodeError, msgspec.ValidationError, MalformedFrame) as exc:
            self.counters.malformed(f"coinbase: {exc}")
            return None

    def _in_sequence(self, sequence: int, receive_ts: int) -> bool:
        previous = self._sequence
        if previous >= 0 and sequence != previous + 1:
            if sequence <= previous:
                self.duplicates_dropped += 1  # sent twice, or overtaken by a later one
                return False
            self.gaps += 1
            self._reset_books(BookResetReason.SEQUENCE_GAP, previous + 1, sequence,
                              f"sequence_num {sequence} after {previous}: messages lost on this connection",
                              receive_ts)  # fmt: skip
        self._sequence = sequence
        return True

    def _dispatch(self, message: parsing.Envelope, receive_ts: int) -> str | Control | None:
        channel = message.channel
        decoder = parsing.EVENT_DECODERS.get(channel)  # type: ignore[arg-type]
        if channel == "heartbeats":
            return HEARTBEATS
        if decoder is None:
            return None  # a channel we did not ask for (status, ...): nothing to publish
        events = decoder.decode(message.events)
        exchange_ts = parsing.micros(message.timestamp) if message.timestamp else None
        product = None
        if channel == "l2_data":
            for event in events:
                product = event.product_id
                self._on_book(event, message.sequence_num, exchange_ts, receive_ts)
        elif channel == "market_trades":
            for event in events:
                product = self._on_trades(event, receive_ts) or product
        elif channel in ("ticker", "ticker_batch"):
            for event in events:
                for ticker in event.tickers:
                    product = ticker.product_id
                    self._on_ticker(ticker, message.sequence_num, exchange_ts, receive_ts)
        elif channel == "candles":
            for event in events:
                for candle in event.candles:
                    product = candle.product_id
                    self._on_candle(candle, exchange_ts, receive_ts)
        else:  # subscriptions: the venue's list of what this connection is subscribed to
            active = frozenset(
                HEARTBEATS if ch == HEARTBEATS else f"{ch}:{p}"
                for event in events
                for ch, products in event.subscriptions.items()
                for p in (products or [""])
            )
            return Control(active=active)
        if product is None:
            return None
        return f"{parsing.SUBSCRIBED_AS.get(channel, channel)}:{product}"  # type: ignore[arg-type]

    # --- books ---------------------------------------------------------------------------------

    def _on_book(self, event: parsing.L2Event, sequence: int, exchange_ts: int | None, receive_ts: int) -> None:
        sync = self.syncs.get(event.product_id)
        if sync is None:
            return
        bids = [(u.price_level, u.new_quantity) for u in event.updates if u.side == "bid"]
        asks = [(u.price_level, u.new_quantity) for u in event.updates if u.side != "bid"]
        if event.type == "snapshot":
            outputs = sync.on_snapshot(DepthSnapshot(sequence, bids, asks, receive_ts))
        else:
            previous = self._last_l2.get(event.product_id)
            outputs = sync.on_diff(DepthDiff(sequence, sequence, previous, bids, asks, exchange_ts, receive_ts))
        self._last_l2[event.product_id] = sequence
        self._handle(event.product_id, outputs, receive_ts)

    def on_snapshot(self, symbol: str, body: str | bytes, receive_ts: int) -> None:
        raise MalformedFrame("coinbase books come in the stream, not over REST")

    def invalidate(self, reason: BookResetReason, detail: str, now_us: int) -> None:
        """A new connection: its sequence starts again, every book needs a new snapshot."""
        self._sequence = -1
        self._last_l2.clear()
        for product, sync in self.syncs.items():
            self._handle(product, sync.invalidate(reason, detail), now_us)

    def _reset_books(self, reason: BookResetReason, expected: int, received: int, detail: str, now: int) -> None:
        """Every book of the connection: the lost message may have been any of theirs (even a
        snapshot still awaited)."""
        marker = Reset(reason, expected, received, detail)
        for product, sync in self.syncs.items():
            # A marker for every book, live or still waiting for its snapshot: every gap shows on
            # the book topic, with the sequence numbers missed.
            outputs = [marker, *(o for o in sync.invalidate(reason, detail) if not isinstance(o, Reset))]
            self._handle(product, outputs, now)

    def _handle(self, product: str, outputs: list[Output], now_us: int) -> None:
        for event in self.books[product].events(outputs, now_us):
            self.sink.send(topics.BOOK, event)
            self.counters.events += 1
        if any(isinstance(o, NeedSnapshot) for o in outputs):
            self.request_snapshot(product)

    # --- trades, tickers, candles --------------------------------------------------------------

    def _on_trades(self, event: parsing.TradesEvent, receive_ts: int) -> str | None:
        product = None
        trades = sorted(event.trades, key=lambda t: int(t.trade_id) if t.trade_id.isdigit() else 0)
        # A snapshot for a product we have published nothing of yet is history from before we started.
        history = (
            {t.product_id for t in trades if t.product_id not in self._last_trade}
            if event.type == "snapshot"
            else set()
        )
        for trade in trades:
            product = trade.product_id
            header = self._headers.get(product)
            if header is None:
                continue
            if trade.trade_id.isdigit():
                trade_id, last = int(trade.trade_id), self._last_trade.get(product)
                if last is not None and trade_id <= last:
                    continue  # published already (a resubscription's snapshot repeats recent trades)
                self._last_trade[product] = trade_id
            if product in history:
                continue
            self.sink.send(
                topics.TRADES,
                Trade(**header, exchange_ts=parsing.micros(trade.time), receive_ts=receive_ts,
                      trade_id=trade.trade_id, price=Decimal(trade.price), size=Decimal(trade.size),
                      side=Side.BUY if trade.side == "BUY" else Side.SELL if trade.side == "SELL" else Side.UNKNOWN),
            )  # fmt: skip
            self.counters.events += 1
        return product

    def _on_ticker(self, ticker: parsing.Ticker, sequence: int, exchange_ts: int | None, receive_ts: int) -> None:
        header = self._headers.get(ticker.product_id)
        if header is None:
            return
        self.sink.send(
            topics.BBO,
            BestBidOffer(**header, exchange_ts=exchange_ts, receive_ts=receive_ts,
                         bid_price=Decimal(ticker.best_bid), bid_size=Decimal(ticker.best_bid_quantity),
                         ask_price=Decimal(ticker.best_ask), ask_size=Decimal(ticker.best_ask_quantity),
                         update_id=sequence),
        )  # fmt: skip
        self.counters.events += 1

    def _on_candle(self, candle: parsing.Candle, exchange_ts: int | None, receive_ts: int) -> None:
        header = self._headers.get(candle.product_id)
        if header is None:
            return
        start = int(candle.start) * 1_000_000
        previous = self._candles.get(candle.product_id)
        if previous is not None and previous.open_time < start:
            closed = msgspec.structs.replace(previous, closed=True, receive_ts=receive_ts)
            self.sink.send(topics.KLINES, closed)
            self.counters.events += 1
        elif previous is not None and previous.open_time > start:
            return  # an update of a candle already closed
        kline = Kline(**header, exchange_ts=exchange_ts or receive_ts, receive_ts=receive_ts, interval="5m",
                      open_time=start, close_time=start + CANDLE_SECONDS * 1_000_000, open=Decimal(candle.open),
                      high=Decimal(candle.high), low=Decimal(candle.low), close=Decimal(candle.close),
                      volume=Decimal(candle.volume), closed=False)  # fmt: skip
        self._candles[candle.product_id] = kline
        self.sink.send(topics.KLINES, kline)
        self.counters.events += 1
