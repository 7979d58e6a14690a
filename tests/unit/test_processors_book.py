"""The order-book agent's book logic, without Kafka: each venue's continuity, duplicates, gap
markers, crossed books, checksums, and the level changes that go to the changelog."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal

import pytest

from processors.book import Book
from processors.book_records import BookRecord, implausible
from processors.continuity import Continuity, rule_for
from processors.levels import Change
from processors.scaled import UNIT, parse_plain, plain, to_decimal, units
from tickflow.events import BookHealth, BookReset, BookResetReason, BookUpdate, BookUpdateKind, MarketType, PriceLevel

D = Decimal


def levels(*pairs: tuple[str, str]) -> list[PriceLevel]:
    return [PriceLevel(D(p), D(s)) for p, s in pairs]


SNAP_BIDS, SNAP_ASKS = (("100", "1"), ("99", "2")), (("101", "1"), ("102", "3"))


def snapshot(venue: str, last_id: int, bids=SNAP_BIDS, asks=SNAP_ASKS) -> BookUpdate:
    return BookUpdate(venue=venue, market=MarketType.SPOT, symbol="BTC-USDT", venue_symbol="BTCUSDT",
                      exchange_ts=None, receive_ts=1, kind=BookUpdateKind.SNAPSHOT, bids=levels(*bids),
                      asks=levels(*asks), last_update_id=last_id)  # fmt: skip


def delta(venue: str, first: int | None, last: int | None, prev: int | None = None, bids=(), asks=(), checksum=None):
    return BookUpdate(venue=venue, market=MarketType.SPOT, symbol="BTC-USDT", venue_symbol="BTCUSDT",
                      exchange_ts=5, receive_ts=6, kind=BookUpdateKind.DELTA, bids=levels(*bids), asks=levels(*asks),
                      first_update_id=first, last_update_id=last, prev_update_id=prev, checksum=checksum)  # fmt: skip


def marker(venue: str) -> BookReset:
    return BookReset(venue=venue, market=MarketType.SPOT, symbol="BTC-USDT", venue_symbol="BTCUSDT", exchange_ts=None,
                     receive_ts=9, reason=BookResetReason.SEQUENCE_GAP, expected_update_id=7, received_update_id=9,
                     detail="lost")  # fmt: skip


def book_for(venue: str, rule: Continuity | None = None) -> Book:
    book = Book.of(snapshot(venue, 0))
    if rule is not None:
        book.rule = rule
    return book


def sides(book: Book) -> dict[str, dict[Decimal, Decimal]]:
    return {side: {to_decimal(p): to_decimal(s) for p, s in getattr(book, side).levels.items()}
            for side in ("bids", "asks")}  # fmt: skip


def size_at(book: Book, side: str, price: str) -> Decimal | None:
    size = getattr(book, side).levels.get(units(D(price)))
    return None if size is None else to_decimal(size)


def top(book: Book) -> tuple[BookHealth, tuple[Decimal, Decimal] | None, tuple[Decimal, Decimal] | None]:
    """``book.top()`` as ``Decimal``s."""
    health, bid, ask = book.top()
    return health, *(None if level is None else (to_decimal(level[0]), to_decimal(level[1])) for level in (bid, ask))


def depth(book: Book, n: int | None = None) -> tuple[list[tuple[Decimal, Decimal]], ...]:
    """``book.depth(n)`` as ``Decimal``s."""
    return tuple([(to_decimal(p), to_decimal(s)) for p, s in side] for side in book.depth(n))


def changed(changes: list[Change]) -> list[tuple[Decimal, Decimal | None]]:
    return sorted((to_decimal(p), None if s is None else to_decimal(s)) for p, s in changes)


# --- continuity per venue -----------------------------------------------------------------------

SPOT, USDM, COINBASE = "binance-spot", "binance-usdm", "coinbase"


def test_binance_spot_bridges_then_needs_u_plus_one() -> None:
    book = book_for(SPOT)
    book.apply(snapshot(SPOT, 100))
    assert book.head.health is BookHealth.LIVE and book.head.after_snapshot
    book.apply(delta(SPOT, 95, 105, bids=[("100", "4")]))  # U <= 101 <= u
    book.apply(delta(SPOT, 106, 110, asks=[("101", "0")]))
    assert book.live and book.head.last_id == 110
    assert sides(book) == {"bids": {D(100): D(4), D(99): D(2)}, "asks": {D(102): D(3)}}
    book.apply(delta(SPOT, 112, 115, bids=[("98", "1")]))  # 111 lost
    assert book.head.health is BookHealth.INVALID
    assert "SEQUENCE_GAP" in book.head.detail and "U=112" in book.head.detail
    assert D(98) not in book.bids.levels  # the breaking delta is not applied


def test_binance_spot_first_delta_must_bridge_the_snapshot() -> None:
    book = book_for(SPOT)
    book.apply(snapshot(SPOT, 100))
    book.apply(delta(SPOT, 102, 105))  # 101 missing
    assert book.head.health is BookHealth.INVALID and "does not bridge snapshot 100" in book.head.detail


def test_binance_usdm_bridges_with_u_at_the_snapshot_then_follows_pu() -> None:
    book = book_for(USDM)
    book.apply(snapshot(USDM, 100))
    book.apply(delta(USDM, 90, 100, prev=80, bids=[("100", "5")]))  # u == snapshot id: applies, not a duplicate
    assert book.live and size_at(book, "bids", "100") == D(5)
    book.apply(delta(USDM, 130, 140, prev=100))  # U jumps (ids shared by all symbols), pu chains
    book.apply(delta(USDM, 150, 160, prev=140))
    assert book.live and book.head.last_id == 160
    book.apply(delta(USDM, 180, 190, prev=170))
    assert book.head.health is BookHealth.INVALID and "pu=170" in book.head.detail


def test_binance_usdm_first_delta_past_the_snapshot_is_a_gap() -> None:
    book = book_for(USDM)
    book.apply(snapshot(USDM, 100))
    book.apply(delta(USDM, 101, 110, prev=95))
    assert book.head.health is BookHealth.INVALID and "does not bridge snapshot 100" in book.head.detail


def test_binance_usdm_delta_right_after_the_snapshot_bridges_by_pu() -> None:
    book = book_for(USDM)
    book.apply(snapshot(USDM, 100))  # taken exactly at the end of the delta that ended at 100
    book.apply(delta(USDM, 104, 110, prev=100))
    assert book.live and book.head.last_id == 110


def test_coinbase_every_delta_names_the_previous_record() -> None:
    book = book_for(COINBASE)
    book.apply(snapshot(COINBASE, 40))
    book.apply(delta(COINBASE, 43, 43, prev=40, asks=[("101", "2")]))
    book.apply(delta(COINBASE, 47, 47, prev=43))
    assert book.live and size_at(book, "asks", "101") == D(2)
    book.apply(delta(COINBASE, 52, 52, prev=49))  # the record numbered 49 never came
    assert book.head.health is BookHealth.INVALID and "49" in book.head.detail


@pytest.mark.parametrize(
    ("venue", "replayed"),
    [(SPOT, delta(SPOT, 101, 105)), (USDM, delta(USDM, 95, 100, prev=90)), (COINBASE, delta(COINBASE, 41, 41, 40))],
)
def test_a_record_read_again_is_skipped_not_a_gap(venue: str, replayed: BookUpdate) -> None:
    book = book_for(venue)
    book.apply(snapshot(venue, 100 if venue != COINBASE else 40))
    nxt = {SPOT: delta(SPOT, 101, 105), USDM: delta(USDM, 95, 105, prev=90), COINBASE: delta(COINBASE, 41, 41, 40)}
    book.apply(nxt[venue])
    before = sides(book)
    out = book.apply(replayed)
    assert out.skipped and "duplicate" in out.skipped and not out.head_changed
    assert book.live and sides(book) == before and book.counters.duplicates == 1


def test_unknown_venue_is_applied_unchecked() -> None:
    book = book_for("kraken")
    assert not book.rule.checked
    book.apply(snapshot("kraken", 1))
    book.apply(delta("kraken", None, None, bids=[("100", "7")]))
    assert book.live and size_at(book, "bids", "100") == D(7)


# --- markers, crossed books, checksums ----------------------------------------------------------


def test_gap_marker_invalidates_until_the_next_snapshot() -> None:
    book = book_for(SPOT)
    book.apply(snapshot(SPOT, 100))
    book.apply(delta(SPOT, 101, 101))
    out = book.apply(marker(SPOT))
    assert out.head_changed and book.head.health is BookHealth.INVALID
    assert book.head.detail == "gap marker SEQUENCE_GAP (expected 7, received 9): lost"
    assert top(book) == (BookHealth.INVALID, None, None) and depth(book, 5) == ([], [])
    ignored = book.apply(delta(SPOT, 102, 102, bids=[("100", "9")]))  # continues, but the book waits
    assert ignored.skipped and book.head.health is BookHealth.INVALID and book.counters.ignored == 1
    book.apply(snapshot(SPOT, 200, bids=[("98", "1")], asks=[("103", "1")]))
    assert book.live and book.head.detail == "" and book.head.snapshot_id == 200
    assert sides(book) == {"bids": {D(98): D(1)}, "asks": {D(103): D(1)}}
    assert top(book) == (BookHealth.LIVE, (D(98), D(1)), (D(103), D(1)))


def test_a_book_never_snapshotted_ignores_deltas() -> None:
    book = book_for(SPOT)
    assert book.head.health is BookHealth.AWAITING_SNAPSHOT
    book.apply(delta(SPOT, 1, 2, bids=[("1", "1")]))
    assert book.head.health is BookHealth.AWAITING_SNAPSHOT and not book.bids.levels


def test_crossed_book_is_invalid() -> None:
    book = book_for(SPOT)
    book.apply(snapshot(SPOT, 100))
    out = book.apply(delta(SPOT, 101, 101, bids=[("101.5", "1")]))  # bid above the best ask 101
    assert book.head.health is BookHealth.INVALID and "CROSSED_BOOK" in book.head.detail
    assert changed(out.bids) == [(D("101.5"), D(1))]  # applied (and written): the next snapshot replaces it
    assert top(book) == (BookHealth.INVALID, None, None)


def test_records_applied_again_over_levels_ahead_of_them_are_not_judged_crossed() -> None:
    """After a crash between a batch's levels and its head, the batch's records are applied again
    over levels that already hold them: a bid since removed meets an ask added later. Not a
    crossed book of the venue's: the state passes once the replay is through."""
    book = book_for(SPOT)
    book.apply(snapshot(SPOT, 100))
    book.apply(delta(SPOT, 101, 101, asks=[("101", "0"), ("100.7", "1")]))  # the levels as they landed
    book.head.last_id = 100  # ...the head as it landed, one record behind
    book.replaying = True
    book.apply(delta(SPOT, 101, 101, bids=[("100.8", "1")], asks=[("101", "0"), ("100.7", "1")]))
    book.apply(delta(SPOT, 102, 102, bids=[("100.8", "0")]))
    book.replaying = False
    assert book.head.health is BookHealth.LIVE and book.head.last_id == 102
    book.apply(delta(SPOT, 103, 103, bids=[("100.9", "1")]))  # checked again once through
    assert book.head.health is BookHealth.INVALID and "CROSSED_BOOK" in book.head.detail


def test_crossed_snapshot_is_invalid() -> None:
    book = book_for(SPOT)
    book.apply(snapshot(SPOT, 100, bids=[("101", "1")], asks=[("101", "1")]))
    assert book.head.health is BookHealth.INVALID


class SumChecksum(Continuity):
    """A stand-in for a venue checksum: the sum of the top bid and ask sizes."""

    def check(self, last_id, after_snapshot, delta):  # type: ignore[no-untyped-def]
        return None

    def checksum(self, bids: Mapping[int, int], asks: Mapping[int, int]) -> int | None:
        return (bids[max(bids)] + asks[min(asks)]) // UNIT  # sizes at scale 18


def test_checksum_carried_is_verified() -> None:
    book = book_for("okx", SumChecksum())
    book.apply(snapshot("okx", 1))
    book.apply(delta("okx", 2, 2, bids=[("100", "5")], checksum=6))  # 5 + 1
    assert book.live
    book.apply(delta("okx", 3, 3, bids=[("100", "6")], checksum=6))  # book gives 7
    assert book.head.health is BookHealth.INVALID and "CHECKSUM_MISMATCH" in book.head.detail


def test_checksum_is_not_required_where_the_venue_has_none() -> None:
    book = book_for(SPOT)
    book.apply(snapshot(SPOT, 100))
    book.apply(delta(SPOT, 101, 101, checksum=12345))
    assert book.live


# --- what goes to the changelog ------------------------------------------------------------------


def test_only_levels_that_really_change_are_written() -> None:
    book = book_for(SPOT)
    first = book.apply(snapshot(SPOT, 100))
    assert len(first.bids) == 2 and len(first.asks) == 2
    out = book.apply(delta(SPOT, 101, 101, bids=[("100", "1"), ("50", "0"), ("99", "0"), ("97", "4")]))
    # 100 unchanged, 50 was not there, 99 removed, 97 new: two writes, one of them a removal
    assert changed(out.bids) == [(D(97), D(4)), (D(99), None)] and out.asks == []
    again = book.apply(snapshot(SPOT, 200, bids=[("100", "1"), ("97", "5")], asks=[("101", "1"), ("102", "3")]))
    assert changed(again.bids) == [(D(97), D(5))] and again.asks == []  # a snapshot writes only what differs


def test_depth_is_best_first_and_bounded() -> None:
    book = book_for(SPOT)
    book.apply(snapshot(SPOT, 1, bids=[("99", "1"), ("100", "2"), ("98", "3")], asks=[("103", "1"), ("101", "2")]))
    assert depth(book, 2) == ([(D(100), D(2)), (D(99), D(1))], [(D(101), D(2)), (D(103), D(1))])
    assert depth(book) == ([(D(100), D(2)), (D(99), D(1)), (D(98), D(3))], [(D(101), D(2)), (D(103), D(1))])


def test_best_price_survives_many_levels_coming_and_going() -> None:
    book = book_for(SPOT)
    book.apply(snapshot(SPOT, 0, bids=[("1", "1")], asks=[("1000", "1")]))
    for i in range(1, 500):
        price = str(2 + i % 7)
        book.apply(delta(SPOT, i, i, bids=[(price, "1" if i % 2 else "0")]))
    expected = max(book.bids.levels)
    assert book.top()[1] == (expected, book.bids.levels[expected]) and len(book.bids.heap) < 100


def test_impossible_levels_are_named() -> None:
    def record(**sides: list[tuple[str, str]]) -> BookRecord:
        return BookRecord.of(delta(SPOT, 1, 1, **sides))

    assert implausible(record(bids=[("100.5", "-1")])) == "impossible level price=100.5 size=-1"
    assert implausible(record(asks=[("0", "1")])) is not None
    assert implausible(record(bids=[("100", "0")])) is None


def test_every_venue_the_producers_publish_has_a_checked_rule() -> None:
    from producers.venues import VENUES

    assert all(rule_for(venue).checked for venue in VENUES)


def test_plain_gives_one_text_per_number_whatever_its_scale() -> None:
    cases = [("65000.01000000", "65000.01"), ("100.00000000", "100"), ("100", "100"), ("1E+2", "100"),
             ("0E-8", "0"), ("0.00000012", "0.00000012"), ("1.2E-7", "0.00000012"), ("0.00123000", "0.00123"),
             ("123456789012345678901234", "123456789012345678901234"), ("-0.5", "-0.5"),
             ("0.000000000000000001", "0.000000000000000001")]  # fmt: skip
    for text, want in cases:
        assert plain(units(Decimal(text))) == want, text
        assert parse_plain(want) == units(Decimal(text)), text
        assert Decimal(plain(units(Decimal(text)))) == Decimal(text)


def test_scale_18_conversions_are_exact_past_28_digits() -> None:
    """Decimal arithmetic rounds to 28 digits (``scaleb`` too); a quote volume at scale 18 has more."""
    big = "12345678901234.567890123456789012"  # 32 digits
    n = units(D(big))
    assert n == 12345678901234567890123456789012 and str(to_decimal(n)) == "12345678901234.567890123456789012"
    assert plain(n) == big and parse_plain(big) == n and units(D("-" + big)) == -n
    with pytest.raises(ValueError, match="more than 18 decimal places"):
        units(D("0.0000000000000000001"))
