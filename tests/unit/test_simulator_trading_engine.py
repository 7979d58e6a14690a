"""The venue-neutral matching engine against a book the test controls."""

from __future__ import annotations

from decimal import Decimal

import pytest

from simulator.decimals import Grid
from simulator.instruments import Instrument
from simulator.trading import Account, Accounts, Engine, Rejection
from simulator.trading.accounts import accounts_from_dict

BTC = Instrument("BTC", "USDT", Grid("0.01"), Grid("0.001"), 1, Decimal(5), 10_000_000)


def engine(bids: dict[int, int], asks: dict[int, int], derivatives: bool = False) -> tuple[Engine, Account, dict]:
    book = {"bids": bids, "asks": asks}
    alice = Account("alice", {"USDT": "1000000", "BTC": "1"})
    e = Engine({"BTCUSDT": BTC}, lambda s: (book["bids"], book["asks"]), Accounts([alice]), derivatives=derivatives)
    return e, alice, book


def test_taker_walks_the_book_and_liquidity_is_taken_once() -> None:
    e, alice, book = engine({9_999_000: 1000}, {10_000_000: 500, 10_000_100: 2000})
    order = e.place(alice, "BTCUSDT", "BUY", "MARKET", size=Decimal("0.8"))
    assert [(f.price, f.size) for f in order.fills] == [(Decimal("100000.00"), Decimal("0.5")),
                                                       (Decimal("100001.00"), Decimal("0.3"))]  # fmt: skip
    assert order.status == "FILLED" and e.balance(alice, "BTC")[0] == Decimal("1.8") - Decimal("0.0008")
    again = e.place(alice, "BTCUSDT", "BUY", "LIMIT", size=Decimal("1"), price=Decimal("100000.00"), tif="IOC")
    assert again.status == "EXPIRED" and again.executed == 0  # the 0.5 at 100000 was already taken
    book["asks"] = {10_000_000: 700, 10_000_100: 2000}  # the feed changed the level: fresh liquidity
    third = e.place(alice, "BTCUSDT", "BUY", "LIMIT", size=Decimal("1"), price=Decimal("100000.00"), tif="IOC")
    assert third.executed == Decimal("0.7")


def test_resting_order_fills_when_the_market_moves_and_balances_follow() -> None:
    e, alice, book = engine({9_999_000: 1000}, {10_000_000: 500})
    seen = []
    e.add_listener(lambda order, fill: seen.append((order.status, fill is not None)))
    order = e.place(alice, "BTCUSDT", "BUY", "LIMIT", size=Decimal("0.5"), price=Decimal("99995.00"),
                    client_id="x")  # fmt: skip
    assert order.status == "NEW" and e.balance(alice, "USDT") == (Decimal("950002.500"), Decimal("49997.500"))
    assert e.match_resting() == 0
    book["asks"] = {9_999_000: 200}  # the ask came down through the order
    assert e.match_resting() == 1 and order.status == "PARTIALLY_FILLED" and order.fills[0].maker
    book["asks"] = {9_999_000: 900}
    e.match_resting()
    assert order.status == "FILLED" and order.fills[-1].price == Decimal("99995.00")
    assert e.balance(alice, "USDT") == (Decimal("950002.500"), Decimal(0))
    assert seen[0] == ("NEW", False) and seen[-1] == ("FILLED", True)
    assert e.by_client_id(alice, "x") is order and e.get(order.id) is order


def test_rejections_duplicates_fok_post_only_and_amend() -> None:
    e, alice, _ = engine({9_999_000: 1000}, {10_000_000: 500})
    with pytest.raises(Rejection) as info:
        e.place(alice, "BTCUSDT", "BUY", "LIMIT", size=Decimal("0.5"), price=Decimal("99995.001"))
    assert info.value.reason == Rejection.PRICE_FILTER
    with pytest.raises(Rejection) as info:
        e.place(alice, "BTCUSDT", "BUY", "LIMIT", size=Decimal("0.00001"), price=Decimal("99995"))
    assert info.value.reason == Rejection.LOT_SIZE
    with pytest.raises(Rejection) as info:
        e.place(alice, "BTCUSDT", "BUY", "LIMIT", size=Decimal("0.001"), price=Decimal("10"))
    assert info.value.reason == Rejection.NOTIONAL
    with pytest.raises(Rejection) as info:
        e.place(alice, "BTCUSDT", "BUY", "LIMIT", size=Decimal("50"), price=Decimal("99995"))
    assert info.value.reason == Rejection.INSUFFICIENT_BALANCE
    with pytest.raises(Rejection) as info:
        e.place(alice, "BTCUSDT", "BUY", "LIMIT", size=Decimal("0.1"), price=Decimal("100000"), tif="POST_ONLY")
    assert info.value.reason == Rejection.WOULD_TAKE
    fok = e.place(alice, "BTCUSDT", "BUY", "LIMIT", size=Decimal("0.6"), price=Decimal("100000"), tif="FOK")
    assert fok.status == "EXPIRED" and fok.executed == 0
    order = e.place(alice, "BTCUSDT", "SELL", "LIMIT", size=Decimal("0.2"), price=Decimal("100010"), client_id="s")
    with pytest.raises(Rejection) as info:
        e.place(alice, "BTCUSDT", "SELL", "LIMIT", size=Decimal("0.2"), price=Decimal("100010"), client_id="s")
    assert info.value.reason == Rejection.DUPLICATE_CLIENT_ID
    e.amend(order, price=Decimal("100020"), size=Decimal("0.3"))
    assert order.size == Decimal("0.3") and e.balance(alice, "BTC")[1] == Decimal("0.3")
    with pytest.raises(Rejection):
        e.amend(order, size=Decimal("0.4"), keep_priority=True)
    e.cancel(order)
    assert order.status == "CANCELED" and e.balance(alice, "BTC") == (Decimal("1"), Decimal(0))
    with pytest.raises(Rejection) as info:
        e.cancel(order)
    assert info.value.reason == Rejection.NOT_OPEN


def test_derivatives_margin_positions_and_reduce_only() -> None:
    e, alice, _ = engine({9_999_000: 100_000}, {10_000_000: 100_000}, derivatives=True)
    with pytest.raises(Rejection) as info:
        e.place(alice, "BTCUSDT", "SELL", "MARKET", size=Decimal("0.1"), reduce_only=True)
    assert info.value.reason == Rejection.REDUCE_ONLY
    e.place(alice, "BTCUSDT", "BUY", "MARKET", size=Decimal("1"))
    position = e.position(alice, "BTCUSDT")
    assert position.size == 1 and position.margin == Decimal("5000")  # 100000 / 20
    e.place(alice, "BTCUSDT", "SELL", "MARKET", size=Decimal("1"), reduce_only=True)
    assert position.size == 0 and position.realized == Decimal("-10.00")
    with pytest.raises(Rejection) as info:
        e.place(alice, "BTCUSDT", "BUY", "LIMIT", size=Decimal("300"), price=Decimal("99000"))
    assert info.value.reason == Rejection.INSUFFICIENT_MARGIN


def test_accounts_from_yaml_structure() -> None:
    accounts = accounts_from_dict({"accounts": [{"name": "a", "balances": {"USD": "5"},
                                                 "binance": {"api_key": "k", "hmac_secret": "s"}}]})  # fmt: skip
    assert accounts.by_binance_key["k"].balances == {"USD": Decimal(5)}
    with pytest.raises(ValueError):
        accounts_from_dict({"accounts": [{"name": "a", "binance": {"api_key": "k"}}]})
