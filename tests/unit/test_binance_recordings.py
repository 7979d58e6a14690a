"""Binance parsing and book synchronisation, on real traffic recorded from Binance."""

from __future__ import annotations

import itertools
import os
from collections import Counter, defaultdict
from decimal import Decimal
from pathlib import Path

import msgspec
import pytest

from producers.book_sync import BookSync, NeedSnapshot, PublishDiff, PublishSnapshot, Reset, SyncState
from producers.recordings import read_http_log, read_ws_log
from producers.venues.binance.book_rules import SpotBridgeRule, UsdmBridgeRule
from producers.venues.binance.parsing import BinanceParser, SymbolDiff
from tickflow.config import REPO_ROOT
from tickflow.errors import MalformedFrame
from tickflow.events import BestBidOffer, BookResetReason, Kline, MarketType, Side, Trade

RECORDINGS = Path(os.environ.get("TICKFLOW_RECORDINGS", REPO_ROOT.parent / "shared" / "recordings"))
VENUES = {
    "binance-spot": (MarketType.SPOT, SpotBridgeRule()),
    "binance-usdm": (MarketType.PERPETUAL, UsdmBridgeRule()),
}

pytestmark = pytest.mark.skipif(not RECORDINGS.is_dir(), reason=f"no recordings at {RECORDINGS}")


def replay(venue: str, drop: tuple[str, int] | None = None) -> dict:
    """Frames and snapshots in receive order through the parser and one BookSync per symbol.

    ``drop=(symbol, n)`` leaves out that symbol's n-th depth diff (a gap on the wire).
    """
    market, rule = VENUES[venue]
    parser = BinanceParser(venue, market)
    ws = read_ws_log(RECORDINGS / venue / "ws.log")
    http = read_http_log(RECORDINGS / venue / "http.log")
    timeline = [(f.receive_ts, 0, f.text) for f in ws.frames]
    timeline += [(r.receive_ts, 1, r) for r in http.responses]
    timeline.sort(key=lambda item: (item[0], item[1]))
    syncs: dict[str, BookSync] = defaultdict(lambda: BookSync(rule))
    outputs: dict[str, list] = defaultdict(list)
    events: list = []
    seen: Counter = Counter()
    for ts, kind, item in timeline:
        if kind == 1:
            symbol = item.url.split("symbol=")[1].split("&")[0]
            outputs[symbol] += syncs[symbol].on_snapshot(parser.snapshot(item.body, ts))
            continue
        for parsed in parser.parse(item, ts)[1]:
            if isinstance(parsed, SymbolDiff):
                seen[parsed.venue_symbol] += 1
                if drop == (parsed.venue_symbol, seen[parsed.venue_symbol]):
                    continue
                outputs[parsed.venue_symbol] += syncs[parsed.venue_symbol].on_diff(parsed.diff)
            else:
                events.append(parsed)
    return {"syncs": syncs, "outputs": outputs, "events": events, "ws": ws, "http": http}


def recorded_diffs(venue: str, symbol: str) -> list:
    """One symbol's depth diffs from a recording, in order."""
    parser = BinanceParser(venue, VENUES[venue][0])
    return [
        p.diff
        for f in read_ws_log(RECORDINGS / venue / "ws.log").frames
        for p in parser.parse(f.text, f.receive_ts)[1]
        if isinstance(p, SymbolDiff) and p.venue_symbol == symbol
    ]


def empty_snapshot(last_update_id: int) -> str:
    return f'{{"lastUpdateId": {last_update_id}, "bids": [], "asks": []}}'


@pytest.mark.parametrize("venue", VENUES)
def test_every_recorded_frame_parses_into_exact_events(venue: str) -> None:
    result = replay(venue)
    assert result["ws"].malformed_lines == [] and result["http"].malformed_lines == []
    kinds = Counter(type(e).__name__ for e in result["events"])
    assert kinds["Trade"] > 0 and kinds["BestBidOffer"] > 0 and kinds["Kline"] > 0, kinds
    # Exact decimals: every trade's price is the venue's string, digit for digit.
    frames = [msgspec.json.decode(f.text) for f in result["ws"].frames]
    agg = [f["data"] for f in frames if f["stream"].endswith("@aggTrade")]
    trades = [e for e in result["events"] if isinstance(e, Trade)]
    assert [(t.trade_id, t.price, t.size) for t in trades] == [
        (str(a["a"]), Decimal(a["p"]), Decimal(a["q"])) for a in agg
    ]
    assert {t.side for t in trades} <= {Side.BUY, Side.SELL}
    for event in result["events"]:
        assert event.venue == venue and event.receive_ts > 0
        assert event.symbol.count("-") == 1 and event.symbol.replace("-", "") == event.venue_symbol
        if isinstance(event, (Trade, Kline)):
            assert event.exchange_ts is not None
        if isinstance(event, BestBidOffer):
            assert event.bid_price < event.ask_price


def test_symbols_are_normalized() -> None:
    spot = {e.symbol for e in replay("binance-spot")["events"]}
    assert spot == {"NKN-USDT", "BLZ-ETH", "LRC-BTC"}  # RUNEEUR only moved its book in those 30 s
    usdm = {e.symbol for e in replay("binance-usdm")["events"]}
    assert usdm == {"SUSHI-USDT", "AKRO-USDT", "KEEP-USDT", "CTK-USDT"}


@pytest.mark.parametrize("venue", VENUES)
def test_every_book_bridges_its_snapshot_and_never_gaps(venue: str) -> None:
    result = replay(venue)
    assert len(result["syncs"]) == 4
    total_applied = 0
    for symbol, sync in result["syncs"].items():
        outs = result["outputs"][symbol]
        assert sync.state is SyncState.LIVE, symbol
        assert sync.counters.resets == 0, (symbol, [o for o in outs if isinstance(o, Reset)])
        assert isinstance(outs[0], PublishSnapshot), symbol
        applied = [o for o in outs if isinstance(o, PublishDiff)]
        assert applied, symbol
        total_applied += len(applied)
        assert not sync.book.crossed()
        assert sync.book.best_bid() is not None and sync.book.best_ask() is not None
    assert total_applied > 100


def test_usdm_continuity_follows_pu_not_consecutive_ids() -> None:
    """USD-M ids are shared across symbols: U jumps, yet nothing is a gap."""
    result = replay("binance-usdm")
    applied = [o.diff for o in result["outputs"]["SUSHIUSDT"] if isinstance(o, PublishDiff)]
    assert any(later.first_id != earlier.last_id + 1 for earlier, later in itertools.pairwise(applied))
    assert all(later.prev_id == earlier.last_id for earlier, later in itertools.pairwise(applied))


@pytest.mark.parametrize(("venue", "symbol"), [("binance-spot", "NKNUSDT"), ("binance-usdm", "CTKUSDT")])
def test_a_missing_diff_resets_that_symbol_only(venue: str, symbol: str) -> None:
    clean = replay(venue)
    lost = 8  # well after the bridge
    result = replay(venue, drop=(symbol, lost))
    outs = result["outputs"][symbol]
    resets = [o for o in outs if isinstance(o, Reset)]
    assert len(resets) == 1
    reset = resets[0]
    assert reset.reason is BookResetReason.SEQUENCE_GAP
    # The marker says what was expected and what came instead.
    applied = [o.diff for o in clean["outputs"][symbol] if isinstance(o, PublishDiff)]
    index = next(i for i, d in enumerate(applied) if d == [o.diff for o in outs if isinstance(o, PublishDiff)][-1])
    rule = VENUES[venue][1]
    assert reset.expected == rule.expected(applied[index])
    assert reset.received == rule.received(applied[index + 2])
    assert isinstance(outs[outs.index(reset) + 1], NeedSnapshot)
    assert result["syncs"][symbol].state is SyncState.AWAITING_SNAPSHOT
    assert result["syncs"][symbol].book.best_bid() is None  # the invalid book is dropped
    for other, sync in result["syncs"].items():
        if other != symbol:
            assert sync.counters.resets == 0 and sync.state is SyncState.LIVE


def test_a_snapshot_older_than_the_buffered_stream_is_refused() -> None:
    market, rule = VENUES["binance-spot"]
    parser = BinanceParser("binance-spot", market)
    sync = BookSync(rule)
    diffs = recorded_diffs("binance-spot", "NKNUSDT")
    for diff in diffs[3:6]:
        sync.on_diff(diff)
    old = parser.snapshot(empty_snapshot(diffs[0].first_id - 10), 1)
    outs = sync.on_snapshot(old)
    assert isinstance(outs[0], Reset) and isinstance(outs[1], NeedSnapshot)
    assert sync.state is SyncState.AWAITING_SNAPSHOT
    # A fresh snapshot that the buffered diffs bridge brings the book live.
    fresh = parser.snapshot(empty_snapshot(diffs[3].last_id), 2)
    assert isinstance(sync.on_snapshot(fresh)[0], PublishSnapshot)
    assert sync.state is SyncState.LIVE


@pytest.mark.parametrize(
    "frame",
    [
        "not json",
        '{"stream": "btcusdt@unknownchannel", "data": {}}',
        '{"stream": "btcusdt@aggTrade", "data": {"e": "aggTrade", "s": "BTCUSDT"}}',
        '{"stream": "btcusdt@depth@100ms", "data": {"E": 1, "s": "X", "U": "one", "u": 2, "b": [], "a": []}}',
    ],
)
def test_malformed_frames_are_typed_errors(frame: str) -> None:
    with pytest.raises(MalformedFrame):
        BinanceParser("binance-spot", MarketType.SPOT).parse(frame, 0)


def test_capture_files_with_bad_lines_keep_the_good_ones(tmp_path: Path) -> None:
    log = tmp_path / "ws.log"
    log.write_text('wss://x/stream <-> 1633998511.5\n\n1633998512.25: {"a":1}\ngarbage line\n1633998513: {}\n')
    capture = read_ws_log(log)
    assert capture.opened_ts == 1_633_998_511_500_000
    assert [f.receive_ts for f in capture.frames] == [1_633_998_512_250_000, 1_633_998_513_000_000]
    assert capture.malformed_lines == [4]


def book_topic(venue: str, drop: tuple[str, int] | None = None) -> dict[str, list]:
    """What the book topic would carry per symbol, with the resyncing snapshot served after a reset."""
    from producers.book_events import BookEvents
    from producers.venues.binance.symbols import normalize_symbol

    market, rule = VENUES[venue]
    result = replay(venue, drop)
    topic: dict[str, list] = {}
    for symbol, outs in result["outputs"].items():
        builder = BookEvents(venue, market, normalize_symbol(symbol), symbol, rule)
        topic[symbol] = builder.events(outs, now_us=1)
    return topic


def consumer_side_check(records: list, spot: bool) -> list[str]:
    """What a consumer can verify from the records alone: snapshot first, then unbroken ids."""
    from tickflow.events import BookReset, BookUpdate, BookUpdateKind

    problems, last, bridged, snapshot_id = [], None, False, None
    for r in records:
        if isinstance(r, BookReset):
            last, bridged, snapshot_id = None, False, None
            continue
        assert isinstance(r, BookUpdate)
        if r.kind is BookUpdateKind.SNAPSHOT:
            snapshot_id, bridged, last = r.last_update_id, False, None
            continue
        if snapshot_id is None:
            problems.append(f"delta {r.first_update_id} before any snapshot")
        elif not bridged:
            ok = (r.first_update_id <= snapshot_id + 1 <= r.last_update_id) if spot else (
                r.first_update_id <= snapshot_id <= r.last_update_id or r.prev_update_id == snapshot_id)  # fmt: skip
            bridged = True
            if not ok:
                problems.append(f"delta {r.first_update_id}-{r.last_update_id} does not bridge {snapshot_id}")
        elif (r.first_update_id != last + 1) if spot else (r.prev_update_id != last):
            problems.append(f"gap after {last}")
        last = r.last_update_id
    return problems


@pytest.mark.parametrize("venue", VENUES)
def test_the_book_topic_is_verifiable_by_consumers_without_tickflow(venue: str) -> None:
    from tickflow.events import BookUpdate, BookUpdateKind

    for symbol, records in book_topic(venue).items():
        assert isinstance(records[0], BookUpdate) and records[0].kind is BookUpdateKind.SNAPSHOT, symbol
        assert consumer_side_check(records, spot=venue == "binance-spot") == [], symbol


def test_a_gap_puts_a_reset_marker_on_the_book_topic() -> None:
    from tickflow.events import BookReset

    records = book_topic("binance-spot", drop=("NKNUSDT", 8))["NKNUSDT"]
    resets = [r for r in records if isinstance(r, BookReset)]
    assert len(resets) == 1
    marker = resets[0]
    assert marker.reason is BookResetReason.SEQUENCE_GAP
    assert marker.missed_updates == marker.received_update_id - marker.expected_update_id > 0
    assert records[-1] is marker  # nothing for this book until a new snapshot
    assert consumer_side_check(records, spot=True) == []


@pytest.mark.parametrize("venue", VENUES)
def test_capture_check_bridges_all_recorded_symbols(venue: str) -> None:
    import json
    import subprocess
    import sys

    tickflow = str(Path(sys.executable).parent / "tickflow")
    result = subprocess.run(
        [tickflow, "capture", "check", "--venue", venue, str(RECORDINGS / venue)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout.strip().splitlines()[-1])  # the JSON summary is the last output
    assert summary["books_bridged"] == 4 and len(summary["books"]) == 4
    assert summary["gaps"] == summary["resyncs"] == summary["parse_errors"] == summary["malformed_lines"] == 0
    assert summary["snapshots"] == 4 and summary["book_updates"] > 100
    assert summary["messages"] == len(read_ws_log(RECORDINGS / venue / "ws.log").frames)
    assert summary["trades"] == sum('@aggTrade"' in f.text for f in read_ws_log(RECORDINGS / venue / "ws.log").frames)
    assert all(book["state"] == "live" and not book["crossed"] for book in summary["books"].values())


def test_capture_check_of_a_folder_without_a_capture_is_a_clear_error(tmp_path: Path) -> None:
    import subprocess
    import sys

    tickflow = str(Path(sys.executable).parent / "tickflow")
    result = subprocess.run(
        [tickflow, "capture", "check", "--venue", "binance-spot", str(tmp_path)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 1 and "has no ws.log" in result.stderr and "Traceback" not in result.stderr


def test_a_duplicated_diff_is_dropped_not_taken_for_a_gap() -> None:
    market, rule = VENUES["binance-usdm"]
    parser = BinanceParser("binance-usdm", market)
    sync = BookSync(rule)
    diffs = recorded_diffs("binance-usdm", "SUSHIUSDT")
    sync.on_diff(diffs[0])
    sync.on_diff(diffs[0])  # sent twice while buffering
    sync.on_snapshot(parser.snapshot(empty_snapshot(diffs[0].first_id), 1))
    for diff in diffs[1:6]:
        assert sync.on_diff(diff) == [PublishDiff(diff)]
        assert sync.on_diff(diff) == []  # sent twice while live
    assert sync.counters.duplicates_dropped == 6 and sync.counters.resets == 0
    assert sync.state is SyncState.LIVE


def test_usdm_a_diff_that_follows_the_snapshot_directly_bridges_it() -> None:
    """A snapshot taken right after a diff went out: the next diff's ``pu`` is its id."""
    from producers.book_sync import DepthDiff

    rule = UsdmBridgeRule()
    after = DepthDiff(first_id=120, last_id=125, prev_id=100, bids=[], asks=[], exchange_ts=None, receive_ts=0)
    assert rule.bridges(after, 100) and not rule.stale(after, 100)
    assert not rule.bridges(after, 99)  # a diff missing in between: no bridge
