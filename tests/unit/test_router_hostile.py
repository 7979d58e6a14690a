"""Property-based: malformed and hostile commands are all answered, none crashes the router, and
nothing that breaks a rule reaches the venue. Every answer can be written with the contract."""

from __future__ import annotations

import asyncio
from decimal import Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from processors.router.router import OrderRouter
from tests.unit.test_router_checks import VENUE, RecordingClient, make_router, now
from tickflow.codec import _FastavroEncoder
from tickflow.events import (
    AmendOrder,
    CancelOrder,
    CreateOrder,
    MarketType,
    OrderEvent,
    OrderState,
    OrderStatus,
    OrderType,
    Side,
    TimeInForce,
)
from tickflow.schemas import load_contract

CONTRACT = load_contract()
WRITE = {name: _FastavroEncoder(b"\0\0\0\0\1", CONTRACT[name].parsed, name) for name in
         ("tickflow.OrderEvent", "tickflow.OrderState")}  # fmt: skip

hostile_text = st.one_of(
    st.just(""), st.text(max_size=300), st.text(alphabet=st.characters(codec="utf-8"), min_size=1, max_size=40),
    st.sampled_from(["\x00", "../../etc/passwd", "'; DROP TABLE orders;--", "\u202e", "a" * 10_000]),
)  # fmt: skip
ids = st.one_of(hostile_text, st.sampled_from(["c1", "o1"]))
accounts = st.one_of(hostile_text, st.sampled_from(["alice", "bob"]))
venues = st.one_of(hostile_text, st.sampled_from([VENUE, "coinbase", "binance-usdm"]))
symbols = st.one_of(hostile_text, st.sampled_from(["BTC-USDT", "ETH-USDT", "HALT-USDT", "btc-usdt"]))
decimals = st.one_of(
    st.decimals(allow_nan=True, allow_infinity=True),
    st.decimals(min_value=Decimal("-1e30"), max_value=Decimal("1e30"), places=20),
    st.sampled_from([Decimal(0), Decimal("-0"), Decimal("1E+400"), Decimal("1E-400"), Decimal("100.5"),
                     Decimal("0.0000001"), Decimal("NaN"), Decimal("sNaN"), Decimal("-Infinity")]),
)  # fmt: skip
timestamps = st.one_of(st.integers(min_value=-(2**63), max_value=2**63 - 1), st.builds(now))
common = {"command_id": ids, "account": accounts, "order_id": ids, "venue": venues,
          "market": st.sampled_from(MarketType), "symbol": symbols, "issued_ts": timestamps}  # fmt: skip

creates = st.builds(CreateOrder, side=st.sampled_from(Side), order_type=st.sampled_from(OrderType),
                    time_in_force=st.sampled_from(TimeInForce), price=st.one_of(st.none(), decimals), size=decimals,
                    reduce_only=st.booleans(), **common)  # fmt: skip
amends = st.builds(AmendOrder, new_price=st.one_of(st.none(), decimals), new_size=st.one_of(st.none(), decimals),
                   **common)  # fmt: skip
cancels = st.builds(CancelOrder, **common)


def obviously_invalid(command: object) -> bool:
    """What no rule may let through to a venue (an oracle independent of the checks' code)."""
    c = command
    if c.account not in ("alice", "bob") or c.venue != VENUE or c.symbol not in ("BTC-USDT", "ETH-USDT"):  # type: ignore[attr-defined]
        return True
    if not c.command_id or not c.order_id or len(c.command_id) > 128 or len(c.order_id) > 128:  # type: ignore[attr-defined]
        return True
    if c.market is not MarketType.SPOT or abs(c.issued_ts - now()) > 290 * 10**6:  # type: ignore[attr-defined]
        return True
    if isinstance(c, CreateOrder):
        if c.side is Side.UNKNOWN or c.reduce_only or not c.size.is_finite() or c.size <= 0:
            return True
        if c.price is not None and (not c.price.is_finite() or c.price <= 0):
            return True
    return False


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(creates, amends, cancels), min_size=1, max_size=8))
def test_hostile_commands_are_answered_with_a_reason_and_never_reach_the_venue(commands: list) -> None:
    router, client = make_router(commands_per_second=None)
    for command in commands:
        answered_before = router.book.answered(command)
        calls = len(client.calls)
        asyncio.run(router.handle(command))  # never raises
        outbox = router.take_outbox()
        events = [item for _, item in outbox if isinstance(item, OrderEvent)]
        for _, item in outbox:  # every answer and state fits the contract, whatever the command held
            WRITE[item.avro_name](item)
        if answered_before:
            assert events == []
            continue
        assert len(events) == 1 and events[0].command_id == command.command_id
        if events[0].status is OrderStatus.REJECTED:
            assert events[0].reason is not None and (events[0].rule or events[0].venue_message)
            assert client.calls[calls:] in ([], ["query"])
        if obviously_invalid(command):
            assert events[0].status is OrderStatus.REJECTED, (command, events[0])
            assert client.calls[calls:] == [], "an invalid command reached the venue"
    assert router.stats.internal_errors == 0
    assert isinstance(client, RecordingClient) and isinstance(router, OrderRouter)
    assert all(isinstance(s, OrderState) for s in router.book.orders.values())
