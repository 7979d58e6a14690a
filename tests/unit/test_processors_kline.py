"""The kline agent's window logic (``processors/kline.py``) and cross-check, without Kafka:
boundaries, grace, late trades and corrections, duplicates, VWAP, intervals, what is written."""

from __future__ import annotations

import random
from decimal import Decimal
from fractions import Fraction

import msgspec
import pytest
from faust.types import TP

from processors.crosscheck import CrossCheck
from processors.kline import (
    MAX_RANGES,
    Emitted,
    InstrumentKlines,
    InstrumentWindows,
    KlineConfig,
    Outcome,
    Tick,
    TradeIds,
    parse_interval,
)
from processors.kline_records import TradeRecord, derived_kline, implausible_kline, implausible_trade, tick
from processors.kline_state import source_positions
from processors.scaled import units
from tickflow.events import Kline, MarketType, Side, Trade

S = 1_000_000  # microseconds
T0 = 1_700_002_800 * S  # an hour boundary (so every interval's)


def config(intervals: list[str] | None = None, grace: float = 2, idle: float = 30, horizon: float = 600,
           updates: float | None = None) -> KlineConfig:  # fmt: skip
    return KlineConfig.of(intervals or ["1s", "1m", "5m", "1h"], grace, idle, horizon, updates)


def windows(cfg: KlineConfig | None = None) -> InstrumentWindows:
    head = InstrumentKlines(venue="binance-spot", market=MarketType.SPOT, symbol="BTC-USDT", venue_symbol="BTCUSDT")
    return InstrumentWindows(head, cfg or config())


def t(trade_id: int | str, ts: int, price: str, size: str = "1") -> Tick:
    return Tick(str(trade_id), ts, ts + 500, units(Decimal(price)), units(Decimal(size)))


def klines(w: InstrumentWindows, out: Outcome) -> list[Kline]:
    return [derived_kline(w.head, e) for e in out.emitted]


def closed(out: Outcome, interval: str) -> list[Emitted]:
    return [e for e in out.emitted if e.closed and e.interval == interval]


def test_intervals_parse_and_order() -> None:
    assert [parse_interval(x) for x in ("1s", "1m", "5m", "1h", "1d")] == [S, 60 * S, 300 * S, 3600 * S, 86400 * S]
    for bad in ("", "0s", "1", "m1", "1w", "1.5m", "-1s"):
        with pytest.raises(ValueError, match="kline interval"):
            parse_interval(bad)
    assert [label for label, _ in config(["1h", "1s", "5m", "1s"]).intervals] == ["1s", "5m", "1h"]


def test_a_window_closes_once_when_the_watermark_passes_its_close_and_not_before() -> None:
    w = windows(config(["1s", "1m"], grace=2))
    assert w.trade(t(1, T0, "10")).emitted == []
    assert w.trade(t(2, T0 + S - 1, "11")).emitted == []  # the last microsecond of [T0, T0+1s)
    # 1s window [T0, T0+1s) closes when max exchange time - grace >= T0 + 1s.
    assert w.trade(t(3, T0 + 3 * S - 1, "12")).emitted == []
    out = w.trade(t(4, T0 + 3 * S, "13"))
    (first,) = klines(w, out)
    assert (first.interval, first.open_time, first.close_time, first.closed, first.revision) == (
        "1s", T0, T0 + S, True, 0)  # fmt: skip
    assert (first.open, first.high, first.low, first.close, first.volume, first.trade_count) == (
        Decimal(10), Decimal(11), Decimal(10), Decimal(11), Decimal(2), 2)  # fmt: skip
    assert first.exchange_ts == T0 + S - 1 and first.receive_ts == T0 + S - 1 + 500
    # Empty windows [T0+1s, T0+2s) publish nothing; [T0+2s, T0+3s) closes at T0+5s.
    assert closed(w.trade(t(5, T0 + 5 * S, "14")), "1s")[0].window.open_time == T0 + 2 * S
    assert w.head.counters.klines == 2
    # The minute closes at T0 + 62 s, with every trade of it.
    out = w.trade(t(6, T0 + 62 * S, "9"))
    (minute,) = klines(w, Outcome(emitted=closed(out, "1m")))
    assert (minute.open, minute.high, minute.low, minute.close, minute.volume, minute.trade_count) == (
        Decimal(10), Decimal(14), Decimal(10), Decimal(14), Decimal(5), 5)  # fmt: skip
    assert [e.interval for e in out.emitted] == ["1s", "1s", "1m"]  # 1s windows of T0+3s and T0+5s, the minute


def test_a_trade_within_the_grace_period_is_counted_in_its_window() -> None:
    w = windows(config(["1s"], grace=2))
    w.trade(t(1, T0, "10"))
    w.trade(t(2, T0 + 2 * S + S // 2, "20"))  # watermark T0 + 0.5 s: [T0, T0+1s) still open
    assert w.trade(t(3, T0 + S // 2, "5")).emitted == []  # out of order but in time
    (k,) = klines(w, w.trade(t(4, T0 + 3 * S, "20")))
    assert (k.open, k.low, k.close, k.trade_count, k.revision) == (Decimal(10), Decimal(5), Decimal(5), 2, 0)
    assert w.head.counters.late == 0


def test_open_and_close_follow_exchange_time_then_arrival() -> None:
    w = windows(config(["1m"], grace=0))
    for n, (ts, price) in enumerate([(T0 + 5, "3"), (T0 + 1, "1"), (T0 + 1, "2"), (T0 + 9, "8"), (T0 + 9, "9")]):
        w.trade(t(n, ts, price))
    (k,) = klines(w, w.trade(t(99, T0 + 60 * S, "1")))
    assert (k.open, k.close, k.high, k.low) == (Decimal(1), Decimal(9), Decimal(9), Decimal(1))


def test_a_late_trade_makes_a_correction_of_its_closed_window_and_is_counted() -> None:
    w = windows(config(["1s", "1m"], grace=1))
    w.trade(t(1, T0 + 100, "10", "2"))
    out = w.trade(t(2, T0 + 5 * S, "11"))
    (original,) = klines(w, out)
    late = w.trade(t(3, T0 + 200, "7", "1"))  # the 1s window [T0, T0+1s) closed; the minute has not
    (correction,) = klines(w, late)
    assert (correction.interval, correction.open_time, correction.revision, correction.closed) == ("1s", T0, 1, True)
    assert (correction.low, correction.close, correction.volume, correction.trade_count) == (
        Decimal(7), Decimal(7), Decimal(3), 2)  # fmt: skip
    assert (original.volume, original.revision) == (Decimal(2), 0)  # what was published is not changed
    assert late.closed_put == [("1s", w.closed[("1s", T0)])]  # and the table gets the new window
    again = klines(w, w.trade(t(4, T0 + 300, "12")))
    assert [(k.revision, k.high, k.trade_count) for k in again] == [(2, Decimal(12), 3)]
    # A window that was empty when it closed was never published: revision 1, the late trade alone.
    (fresh,) = klines(w, w.trade(t(5, T0 + 2 * S, "8")))
    assert (fresh.open_time, fresh.revision, fresh.trade_count) == (T0 + 2 * S, 1, 1)
    c = w.head.counters
    assert (c.late, c.corrections, c.klines, c.trades) == (3, 3, 1, 5)
    # The minute, still open, has all five.
    (minute,) = klines(w, Outcome(emitted=closed(w.trade(t(6, T0 + 61 * S, "10")), "1m")))
    assert (minute.trade_count, minute.revision, minute.low) == (5, 0, Decimal(7))


def test_a_trade_older_than_the_correction_horizon_is_refused_and_old_windows_are_forgotten() -> None:
    w = windows(config(["1s"], grace=0, horizon=10))
    w.trade(t(1, T0, "10"))
    out = w.trade(t(2, T0 + 20 * S, "10"))
    # The window of T0 closed at T0 + 1 s and left the horizon at T0 + 11 s: deleted from the table.
    assert out.closed_del == [("1s", T0)] and ("1s", T0) not in w.closed
    expired = w.trade(t(3, T0 + 9 * S, "10"))
    assert expired.skipped == "expired" and expired.emitted == [] and w.head.counters.expired == 1
    assert not w.head.ids.seen("3")  # not counted, so not a duplicate if it comes again
    kept = w.trade(t(4, T0 + 10 * S, "10"))  # exactly at the horizon: corrected
    assert [(e.window.open_time, e.window.revision) for e in kept.emitted] == [(T0 + 10 * S, 1)]


def test_duplicate_trade_ids_are_counted_once() -> None:
    w = windows(config(["1m"], grace=0))
    for n in (5, 6, 6, 7, 5, 4):
        w.trade(t(n, T0 + n, "10"))
    assert w.head.counters.duplicates == 2 and w.head.counters.trades == 4
    assert w.head.ids.ranges == [[4, 7]]
    # A duplicate of a trade in a window that has closed is not a correction.
    w.trade(t(8, T0 + 60 * S, "10"))
    dup = w.trade(t(7, T0 + 7, "10"))
    assert dup.skipped == "duplicate" and dup.emitted == [] and w.head.counters.corrections == 0


def test_trade_ids_as_ranges_and_as_recent_strings() -> None:
    ids = TradeIds()
    rng = random.Random(3)
    # Nearly in order, as a venue sends them (neighbours swapped), with 40 ids missing.
    numbers = list(range(1000, 1400))
    for i in range(0, len(numbers) - 1, 2):
        if rng.random() < 0.5:
            numbers[i], numbers[i + 1] = numbers[i + 1], numbers[i]
    missing = set(rng.sample(numbers, 40))
    for n in numbers:
        if n not in missing:
            assert not ids.seen(str(n))
            ids.add(str(n))
    assert all(ids.seen(str(n)) != (n in missing) for n in numbers) and len(ids.ranges) <= 41
    for n in missing:
        ids.add(str(n))
    assert ids.ranges == [[1000, 1399]]
    # Many gaps: the oldest merge; never more than MAX_RANGES ranges.
    gappy = TradeIds()
    for n in range(0, 4 * MAX_RANGES, 2):
        gappy.add(str(n))
    assert len(gappy.ranges) == MAX_RANGES and gappy.seen(str(4 * MAX_RANGES - 2))
    assert not gappy.seen(str(4 * MAX_RANGES - 3))  # a recent gap is still a gap
    # Ids that are not plain numbers ("007", uuids) are kept as the latest ones.
    other = TradeIds()
    for x in ("007", "a-b", "7"):
        other.add(x)
    assert other.recent == ["007", "a-b"] and other.ranges == [[7, 7]] and other.seen("007") and not other.seen("08")


def test_vwap_and_quote_volume_are_exact_then_rounded_half_even_to_18_places() -> None:
    w = windows(config(["1m"], grace=0))
    trades = [("0.1", "3"), ("0.2", "3"), ("0.2", "0.000000000000000001"), ("123456.789", "0.5")]
    for n, (price, size) in enumerate(trades):
        w.trade(t(n, T0 + n, price, size))
    (k,) = klines(w, w.trade(t(99, T0 + 60 * S, "1")))
    notional = sum(Fraction(p) * Fraction(s) for p, s in trades)
    volume = sum(Fraction(s) for _, s in trades)
    assert k.volume == Decimal(volume.numerator) / volume.denominator
    # round() on a Fraction rounds half to even, independently of the agent's integer rule.
    assert k.quote_volume == Decimal(round(notional * 10**18)).scaleb(-18)
    assert k.vwap == Decimal(round(notional / volume * 10**18)).scaleb(-18)
    assert k.vwap != Decimal(notional.numerator) / Decimal(notional.denominator) / k.volume  # 28 digits would lose it
    # Halves go to the even neighbour: 1.5e-18 -> 2e-18 and 2.5e-18 -> 2e-18.
    for second in ("0.000000000000000002", "0.000000000000000004"):
        w2 = windows(config(["1m"], grace=0))
        w2.trade(t(1, T0, "0.000000000000000001", "1"))
        w2.trade(t(2, T0 + 1, second, "1"))
        (k2,) = klines(w2, w2.trade(t(9, T0 + 60 * S, "1")))
        assert k2.vwap == Decimal("2e-18") and k2.quote_volume == Decimal(1 + int(second[-1])).scaleb(-18)
    # Quote volume: 0.5e-18 * 1 rounds to 0 (even), 1.5e-18 to 2e-18.
    for price, quote in (("0.5", "0"), ("1.5", "2")):
        w3 = windows(config(["1m"], grace=0))
        w3.trade(t(1, T0, "0.000000000000000001", price))
        (k3,) = klines(w3, w3.trade(t(9, T0 + 60 * S, "1")))
        assert k3.quote_volume == Decimal(quote).scaleb(-18)


def test_in_progress_updates_at_most_every_setting_seconds_of_event_time() -> None:
    w = windows(config(["1m"], grace=0, updates=10))
    published = [klines(w, w.trade(t(n, T0 + n * S, "10"))) for n in range(25)]
    updates = [k for ks in published for k in ks if not k.closed]
    assert [k.trade_count for k in updates] == [1, 11, 21] and all(k.revision == 0 for k in updates)
    assert w.head.counters.updates == 3
    assert not any(k.closed for k in updates)
    off = windows(config(["1m"], grace=0))
    assert off.trade(t(1, T0, "1")).emitted == []


def test_advance_closes_a_quiet_instruments_windows_and_later_trades_correct_them() -> None:
    w = windows(config(["1s", "1m"], grace=2))
    w.trade(t(1, T0 + 10 * S, "10"))
    out = w.advance(T0 + 70 * S)
    assert [(e.interval, e.window.open_time) for e in out.emitted] == [("1s", T0 + 10 * S), ("1m", T0)]
    assert out.head_changed and w.head.watermark == T0 + 70 * S and w.advance(T0 + 60 * S).emitted == []
    assert w.head.open == {"1s": [], "1m": []}
    (k,) = klines(w, w.trade(t(2, T0 + 69 * S, "11")))  # the 1m window [T0+60, T0+120) is open
    assert k.interval == "1s" and k.revision == 1


def test_the_head_survives_json_and_reloaded_closed_windows_take_corrections() -> None:
    w = windows(config(["1s"], grace=0))
    w.trade(t(1, T0, "10"))
    out = w.trade(t(2, T0 + 5 * S, "10"))
    head = msgspec.json.decode(msgspec.json.encode(w.head), type=InstrumentKlines)
    back = InstrumentWindows(head, w.config)
    for label, window in out.closed_put:
        back.load_closed(label, msgspec.json.decode(msgspec.json.encode(window), type=type(window)))
    assert back.head == w.head and back.trade(t(2, T0 + 5 * S, "10")).skipped == "duplicate"
    (k,) = klines(back, back.trade(t(3, T0 + 1, "12")))
    assert (k.revision, k.trade_count, k.high) == (1, 2, Decimal(12))


def test_one_head_write_per_trade_and_closed_windows_written_once_each() -> None:
    w = windows()
    puts = heads = 0
    for n in range(2000):
        out = w.trade(t(n, T0 + n * 50_000, "10"))  # 20 trades a second for 100 s
        heads += out.head_changed
        puts += len(out.closed_put)
    assert heads == 2000
    # 1s windows opening T0 .. T0+96s (the last trade at T0+99.95s, grace 2 s), and the first minute.
    assert puts == w.head.counters.klines == 97 + 1


def test_source_positions_are_the_highest_offsets_the_heads_record_per_partition() -> None:
    a, b, c = windows(), windows(), windows()
    a.mark("trades", 2, 10)
    a.mark("klines", 2, 4)
    b.mark("trades", 2, 17)  # another instrument of the same partition, further on
    c.mark("trades", 1, 3)
    sources = {"trades": "tickflow.trades", "klines": "tickflow.klines"}
    assert source_positions([a, b, c], sources) == {
        TP("tickflow.trades", 2): 17,
        TP("tickflow.klines", 2): 4,
        TP("tickflow.trades", 1): 3,
    }


def trade(price: str, size: str, ts: int = T0) -> TradeRecord:
    return TradeRecord.of(Trade(venue="binance-spot", market=MarketType.SPOT, symbol="BTC-USDT",
                                venue_symbol="BTCUSDT", exchange_ts=ts, receive_ts=ts, trade_id="1",
                                price=Decimal(price), size=Decimal(size), side=Side.BUY))  # fmt: skip


def test_impossible_trades_and_klines_are_named() -> None:
    assert implausible_trade(trade("1", "1")) is None
    assert "price=0" in implausible_trade(trade("0", "1"))  # type: ignore[operator]
    assert "size=-1" in implausible_trade(trade("1", "-1"))  # type: ignore[operator]
    assert "size=0" in implausible_trade(trade("1", "0"))  # type: ignore[operator]
    assert "exchange time" in implausible_trade(trade("1", "1", ts=0))  # type: ignore[operator]
    assert tick(trade("1.5", "2")) == Tick("1", T0, T0, 15 * 10**17, 2 * 10**18)
    good = venue_kline(T0, ("1", "3", "1", "2", "5"))
    assert implausible_kline(good) is None
    assert implausible_kline(msgspec.structs.replace(good, low=Decimal("2.5"))) is not None
    assert implausible_kline(msgspec.structs.replace(good, volume=Decimal("-1"))) is not None


def venue_kline(open_time: int, ohlcv: tuple[str, ...], interval: str = "1m", closed: bool = True) -> Kline:
    o, h, low, c, v = (Decimal(x) for x in ohlcv)
    return Kline(venue="binance-spot", market=MarketType.SPOT, symbol="BTC-USDT", venue_symbol="BTCUSDT",
                 exchange_ts=open_time, receive_ts=open_time, interval=interval, open_time=open_time,
                 close_time=open_time + 60 * S, open=o, high=h, low=low, close=c, volume=v,
                 closed=closed)  # fmt: skip


def test_crosscheck_compares_final_windows_skips_partial_ones_and_follows_corrections() -> None:
    w, check, key = windows(config(["1s", "1m"], grace=1)), CrossCheck(), "binance-spot:BTC-USDT"
    w.trade(t(1, T0 + 30 * S, "10"))  # first trade mid-minute: the minute of T0 is partial
    for n, ts in enumerate(range(T0 + 60 * S, T0 + 120 * S, 10 * S)):
        w.trade(t(10 + n, ts + 1, str(20 + n)))
    assert check.venue(key, w, venue_kline(T0, ("9", "10", "9", "10", "7")))  # ours closed: compared (skipped)
    assert not check.venue(key, w, venue_kline(T0 + 60 * S, ("20", "25", "20", "25", "6"), closed=False))
    assert not check.venue(key, w, venue_kline(T0 + 60 * S, ("20", "25", "20", "25", "6")))
    assert not check.venue(key, w, venue_kline(T0 + 120 * S, ("30", "30", "30", "30", "0")))
    assert not check.venue(key, w, venue_kline(T0 + 180 * S, ("30", "30", "30", "30", "1")))
    assert not check.venue(key, w, venue_kline(T0, ("1", "1", "1", "1", "1"), interval="1h"))  # not ours
    out = w.trade(t(30, T0 + 242 * S, "30"))  # closes the minutes up to T0+180
    assert check.settle(key, w)
    c = w.head.counters
    # T0: skipped (partial); T0+60: the same; T0+120: both empty; T0+180: the venue has a trade, we none.
    assert (c.crosscheck_skipped, c.crosscheck_matches, c.crosscheck_mismatches) == (1, 2, 1)
    assert check.mismatches(key) == [("1m", T0 + 180 * S)] and out.emitted
    # A late trade completes ours: the window is compared again and now matches.
    late = w.trade(t(31, T0 + 181 * S, "30"))
    corrected = [(e.interval, e.window.open_time) for e in late.emitted if e.interval == "1m"]
    assert check.settle(key, w, corrected)
    assert (c.crosscheck_matches, c.crosscheck_mismatches) == (3, 0) and check.mismatches(key) == []
    # A venue kline sent again is not counted twice.
    assert not check.venue(key, w, venue_kline(T0 + 60 * S, ("20", "25", "20", "25", "6")))
    assert (c.crosscheck_matches, c.crosscheck_mismatches) == (3, 0)
