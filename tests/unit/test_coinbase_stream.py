"""Coinbase Advanced Trade frames -> events: books per connection sequence, trades once, candles."""

from __future__ import annotations

import json
from decimal import Decimal

from producers.book_sync import SyncState
from producers.stream import Control
from producers.venues.coinbase.instruments import parse_products
from producers.venues.coinbase.parsing import micros
from producers.venues.coinbase.stream import CoinbaseStream
from tickflow.events import BookReset, BookResetReason, BookUpdate, Kline, Side, Trade


class Sink:
    def __init__(self) -> None:
        self.sent: list = []

    def send(self, topic: str, event: object) -> None:
        self.sent.append((topic, event))

    def of(self, kind: type) -> list:
        return [e for _, e in self.sent if isinstance(e, kind)]


class Connection:
    """Frames as one Coinbase connection numbers them."""

    def __init__(self) -> None:
        self.seq = -1

    def frame(self, channel: str, events: list, skip: int = 0) -> bytes:
        self.seq += 1 + skip
        return json.dumps({"channel": channel, "client_id": "", "timestamp": "2023-02-09T20:32:50.714964855Z",
                           "sequence_num": self.seq, "events": events}).encode()  # fmt: skip


def l2(kind: str, product: str, bids: list, asks: list) -> list:
    updates = [{"side": "bid", "event_time": "2023-02-09T20:32:50.7Z", "price_level": p, "new_quantity": q}
               for p, q in bids]  # fmt: skip
    updates += [{"side": "offer", "event_time": "2023-02-09T20:32:50.7Z", "price_level": p, "new_quantity": q}
                for p, q in asks]  # fmt: skip
    return [{"type": kind, "product_id": product, "updates": updates}]


def stream(products: tuple[str, ...] = ("BTC-USD", "ETH-USD")) -> tuple[CoinbaseStream, Sink, list[str]]:
    sink, asked = Sink(), []
    s = CoinbaseStream(list(products), sink, request_snapshot=asked.append)
    s.invalidate(BookResetReason.RECONNECT, "first connection", 0)
    asked.clear()
    return s, sink, asked


def test_snapshot_then_updates_keep_an_exact_book_and_records_carry_the_sequence() -> None:
    s, sink, _ = stream()
    c = Connection()
    assert s.on_frame(c.frame("l2_data", l2("snapshot", "BTC-USD", [("100.5", "1")], [("101", "2")])), 1) == (
        "level2:BTC-USD"
    )
    s.on_frame(c.frame("l2_data", l2("update", "BTC-USD", [("100.5", "0"), ("100.25", "3.10")], [])), 2)
    book = s.syncs["BTC-USD"].book
    assert book.bids == {Decimal("100.25"): Decimal("3.10")} and book.asks == {Decimal("101"): Decimal("2")}
    snapshot, delta = sink.of(BookUpdate)
    assert snapshot.kind.value == "SNAPSHOT" and snapshot.last_update_id == 0
    assert (delta.first_update_id, delta.last_update_id, delta.prev_update_id) == (1, 1, 0)


def test_a_sequence_gap_resets_every_book_of_the_connection_with_a_marker_and_asks_for_snapshots() -> None:
    s, sink, asked = stream()
    c = Connection()
    s.on_frame(c.frame("l2_data", l2("snapshot", "BTC-USD", [("100", "1")], [("101", "1")])), 1)
    s.on_frame(c.frame("l2_data", l2("snapshot", "ETH-USD", [("10", "1")], [("11", "1")])), 2)
    s.on_frame(c.frame("l2_data", l2("update", "BTC-USD", [("99", "1")], []), skip=2), 3)  # 2 lost
    markers = sink.of(BookReset)
    assert [(m.venue_symbol, m.reason) for m in markers] == [
        ("BTC-USD", BookResetReason.SEQUENCE_GAP), ("ETH-USD", BookResetReason.SEQUENCE_GAP)
    ]  # fmt: skip
    assert (markers[0].expected_update_id, markers[0].received_update_id) == (2, 4)
    assert asked == ["BTC-USD", "ETH-USD"] and s.gaps == 1
    assert all(sync.state is SyncState.AWAITING_SNAPSHOT for sync in s.syncs.values())
    # The renewed subscription's snapshot brings the book back; older updates were stale.
    s.on_frame(c.frame("l2_data", l2("snapshot", "BTC-USD", [("98", "2")], [("101", "1")])), 4)
    assert s.syncs["BTC-USD"].state is SyncState.LIVE
    assert s.syncs["BTC-USD"].book.bids == {Decimal("98"): Decimal("2")}


def test_duplicated_and_overtaken_messages_are_dropped_not_applied_twice() -> None:
    s, sink, _ = stream()
    c = Connection()
    s.on_frame(c.frame("l2_data", l2("snapshot", "BTC-USD", [("100", "1")], [("101", "1")])), 1)
    update = c.frame("l2_data", l2("update", "BTC-USD", [("100", "5")], []))
    s.on_frame(update, 2)
    s.on_frame(update, 3)
    assert s.duplicates_dropped == 1 and len(sink.of(BookUpdate)) == 2 and not sink.of(BookReset)


def test_trades_once_each_history_skipped_and_a_reconnect_fills_the_gap() -> None:
    s, sink, _ = stream()
    c = Connection()

    def trades(kind: str, ids: list[int]) -> bytes:
        return c.frame("market_trades", [{"type": kind, "trades": [
            {"trade_id": str(i), "product_id": "BTC-USD", "price": "100.1", "size": "0.5", "side": "SELL",
             "time": "2023-02-09T20:32:50.1Z"} for i in ids]}])  # fmt: skip

    s.on_frame(trades("snapshot", [7, 8, 9]), 1)  # history from before we started
    s.on_frame(trades("update", [11, 10]), 2)  # batched, newest first
    s.on_frame(trades("update", [11]), 3)
    s.invalidate(BookResetReason.RECONNECT, "reconnected", 4)
    c.seq = -1
    s.on_frame(trades("snapshot", [10, 11, 12, 13]), 5)  # the new subscription's recent trades
    published = sink.of(Trade)
    assert [t.trade_id for t in published] == ["10", "11", "12", "13"]
    assert published[0].side is Side.SELL and published[0].price == Decimal("100.1")
    assert published[0].exchange_ts == micros("2023-02-09T20:32:50.1Z")


def test_candles_in_progress_then_closed_once_the_next_starts() -> None:
    s, sink, _ = stream()
    c = Connection()

    def candle(start: int, close: str) -> bytes:
        return c.frame("candles", [{"type": "update", "candles": [
            {"start": str(start), "high": "105", "low": "99", "open": "100", "close": close, "volume": "3.5",
             "product_id": "ETH-USD"}]}])  # fmt: skip

    s.on_frame(candle(1_688_998_200, "101"), 1)
    s.on_frame(candle(1_688_998_200, "102"), 2)
    s.on_frame(candle(1_688_998_500, "103"), 3)
    klines = sink.of(Kline)
    assert [(k.close, k.closed) for k in klines] == [
        (Decimal("101"), False), (Decimal("102"), False), (Decimal("102"), True), (Decimal("103"), False)
    ]  # fmt: skip
    assert klines[2].open_time == 1_688_998_200_000_000 and klines[2].close_time == 1_688_998_500_000_000


def test_replies_errors_and_malformed_frames() -> None:
    s, _, _ = stream()
    c = Connection()
    reply = s.on_frame(
        c.frame("subscriptions", [{"subscriptions": {"level2": ["BTC-USD"], "heartbeats": ["heartbeats"]}}]), 1
    )
    assert reply == Control(active=frozenset({"level2:BTC-USD", "heartbeats"}))
    error = s.on_frame(b'{"type":"error","message":"Failed to subscribe","reason":"XX-USD is not a valid product"}', 2)
    assert error == Control(error="Failed to subscribe: XX-USD is not a valid product")
    assert s.on_frame(b'{"channel": "l2_data", "sequence_num": ', 3) is None
    assert (
        s.on_frame(c.frame("l2_data", [{"type": "update", "product_id": "BTC-USD", "updates": [{"side": "bid"}]}]), 4)
        is None
    )
    assert s.counters.malformed_frames == 2


def test_products_become_instruments_with_the_venues_rules() -> None:
    body = json.dumps({"products": [{
        "product_id": "BTC-USD", "base_currency_id": "BTC", "quote_currency_id": "USD", "base_increment": "0.00000001",
        "quote_increment": "0.01", "price_increment": "0.01", "base_min_size": "0.00000001", "base_max_size": "3400",
        "quote_min_size": "1", "status": "online", "trading_disabled": False, "product_type": "SPOT"}],
        "num_products": 1}).encode()  # fmt: skip
    (btc,) = parse_products(body)
    assert (btc.symbol, btc.venue_symbol, btc.trading) == ("BTC-USD", "BTC-USD", True)
    assert btc.tick_size == Decimal("0.01") and btc.lot_size == Decimal("1E-8") and btc.min_notional == Decimal(1)
