"""Every pre-trade rule, through the router's own command path: a command that breaks a rule gets
one REJECTED event naming it, and nothing reaches the venue."""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal

import pytest

from processors.router.market import MarketView
from processors.router.router import OrderRouter
from processors.router.settings import RouterSettings
from producers.venues.trading import Amend, OrderRequest, VenueOrder
from tickflow.config import KafkaSettings
from tickflow.events import (
    AmendOrder,
    CancelOrder,
    CreateOrder,
    Instrument,
    KillSwitch,
    MarketType,
    OrderEvent,
    OrderStatus,
    OrderType,
    RejectReason,
    Side,
    TimeInForce,
)

VENUE = "binance-spot"


class RecordingClient:
    """A venue that accepts everything and records every call (the tests want none for rejects)."""

    venue = VENUE

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.ids = 0

    async def create(self, request: OrderRequest) -> VenueOrder:
        self.calls.append("create")
        self.ids += 1
        return VenueOrder(request.client_order_id, str(self.ids), OrderStatus.ACCEPTED, request.size, Decimal(0),
                          request.price)  # fmt: skip

    async def cancel(self, symbol: str, client_order_id: str, venue_order_id: str | None = None) -> VenueOrder:
        self.calls.append("cancel")
        return VenueOrder(client_order_id, venue_order_id or "?", OrderStatus.CANCELED, Decimal(1), Decimal(0))

    async def amend(self, amend: Amend) -> VenueOrder:
        self.calls.append("amend")
        return VenueOrder(amend.client_order_id, "1", OrderStatus.ACCEPTED, amend.size, Decimal(0), amend.price)

    async def query(self, symbol: str, client_order_id: str) -> VenueOrder | None:
        self.calls.append("query")
        return None

    async def open_orders(self, symbol: str | None = None) -> list[VenueOrder]:
        return []

    async def aclose(self) -> None:
        pass


def instrument(symbol: str, *, trading: bool = True, market: MarketType = MarketType.SPOT) -> Instrument:
    base, quote = symbol.split("-")
    return Instrument(venue=VENUE, market=market, symbol=symbol, venue_symbol=base + quote, base=base, quote=quote,
                      status="TRADING" if trading else "BREAK", trading=trading, tick_size=Decimal("0.01"),
                      lot_size=Decimal("0.0001"), min_size=Decimal("0.001"), max_size=Decimal("100"),
                      min_notional=Decimal("5"), ts=0)  # fmt: skip


def make_router(**limits: object) -> tuple[OrderRouter, RecordingClient]:
    limit_values = {"max_order_notional": "10000", "max_open_orders": 2, "max_position": "50",
                    "commands_per_second": 1000, "price_band": "0.05", **limits}  # fmt: skip
    credentials = {"api_key": {"env": "UNUSED_KEY"}, "secret": {"env": "UNUSED_SECRET"}}
    settings = RouterSettings(accounts={"alice": {"venues": {VENUE: credentials}, "limits": limit_values},
                                        "bob": {"venues": {VENUE: credentials}}})  # fmt: skip
    market = MarketView()
    market.add_instruments([instrument("BTC-USDT"), instrument("ETH-USDT"), instrument("HALT-USDT", trading=False)])
    market.set_quote(VENUE, "BTC-USDT", Decimal("100"), Decimal("101"))
    client = RecordingClient()
    router = OrderRouter(settings, KafkaSettings(), None, {("alice", VENUE): client, ("bob", VENUE): client}, market)  # type: ignore[arg-type]
    return router, client


_ids = iter(range(1, 10**9))


def create(**fields: object) -> CreateOrder:
    n = next(_ids)
    values: dict[str, object] = {
        "command_id": f"c{n}", "account": "alice", "order_id": f"o{n}", "venue": VENUE, "market": MarketType.SPOT,
        "symbol": "BTC-USDT", "issued_ts": time.time_ns() // 1000, "side": Side.BUY, "order_type": OrderType.LIMIT,
        "price": Decimal("100.5"), "size": Decimal("1"),
    }  # fmt: skip
    return CreateOrder(**{**values, **fields})  # type: ignore[arg-type]


def answer(router: OrderRouter, command: object) -> list[OrderEvent]:
    asyncio.run(router.handle(command))  # type: ignore[arg-type]
    events = [item for _, item in router.take_outbox() if isinstance(item, OrderEvent)]
    assert all(e.command_id == command.command_id for e in events)  # type: ignore[attr-defined]
    return events


def rejected(router: OrderRouter, client: RecordingClient, command: object, rule: str,
             reason: RejectReason = RejectReason.INVALID_COMMAND) -> OrderEvent:  # fmt: skip
    calls = len(client.calls)
    events = answer(router, command)
    assert [(e.status, e.rule, e.reason) for e in events] == [(OrderStatus.REJECTED, rule, reason)], events
    assert client.calls[calls:] == [], "a rejected command reached the venue"
    return events[0]


def now() -> int:
    """Microseconds now (commands are checked against the time they are handled: never a
    module-level constant, which a long test session would make stale)."""
    return time.time_ns() // 1000


COMMAND_RULES = [
    ("command_id", {"command_id": ""}),
    ("order_id", {"order_id": "x" * 200}),
    ("account", {"account": "mallory"}),
    ("venue", {"venue": "coinbase"}),
    ("symbol", {"symbol": "NOPE-USDT"}),
    ("market", {"market": MarketType.PERPETUAL}),
    ("stale_command", {"issued_ts": 1_000_000}),  # 1970
    ("instrument_status", {"symbol": "HALT-USDT"}),
    ("side", {"side": Side.UNKNOWN}),
    ("price_required", {"price": None}),
    ("market_price", {"order_type": OrderType.MARKET}),
    ("reduce_only_spot", {"reduce_only": True}),
    ("size_positive", {"size": Decimal("0")}),
    ("size_positive", {"size": Decimal("-1")}),
    ("price_positive", {"price": Decimal("-100")}),
    ("tick_size", {"price": Decimal("100.005")}),
    ("lot_size", {"size": Decimal("1.00001")}),
    ("min_size", {"size": Decimal("0.0005")}),
    ("max_size", {"size": Decimal("101")}),
    ("min_notional", {"size": Decimal("0.01"), "price": Decimal("100")}),
]


@pytest.mark.parametrize(("rule", "fields"), COMMAND_RULES, ids=[f"{r}-{i}" for i, (r, _) in enumerate(COMMAND_RULES)])
def test_an_invalid_command_is_rejected_naming_its_rule(rule: str, fields: dict[str, object]) -> None:
    router, client = make_router()
    rejected(router, client, create(**fields), rule)


RISK_RULES = [
    ("price_band", {"price": Decimal("106.06")}, {}),  # buy more than 5 % above the ask (101)
    ("price_band", {"side": Side.SELL, "price": Decimal("94.99")}, {}),  # sell more than 5 % below the bid
    ("bbo_unavailable", {"symbol": "ETH-USDT"}, {}),  # no quote for ETH
    ("max_order_notional", {"size": Decimal("99.9")}, {}),
    ("max_position", {"size": Decimal("60")}, {"max_order_notional": None}),
]


@pytest.mark.parametrize(("rule", "fields", "limits"), RISK_RULES, ids=[r for r, _, _ in RISK_RULES])
def test_a_command_over_a_limit_is_rejected_naming_its_rule(rule: str, fields: dict, limits: dict) -> None:
    router, client = make_router(**limits)
    rejected(router, client, create(**fields), rule, RejectReason.RISK_CHECK_FAILED)


def test_a_valid_order_reaches_the_venue_once_and_is_answered_once() -> None:
    router, client = make_router()
    command = create()
    events = answer(router, command)
    assert [e.status for e in events] == [OrderStatus.ACCEPTED]
    assert events[0].client_order_id.startswith("tf") and events[0].venue_order_id == "1"
    assert client.calls == ["create"]
    assert answer(router, command) == []  # the same command again: recognised, not executed, not answered
    assert client.calls == ["create"] and router.stats.repeats_skipped == 1


def test_max_open_orders_counts_the_accounts_open_orders() -> None:
    router, client = make_router()
    answer(router, create())
    answer(router, create())
    rejected(router, client, create(), "max_open_orders", RejectReason.RISK_CHECK_FAILED)
    answer(router, create(account="bob"))  # bob has no such limit
    assert client.calls.count("create") == 3


def test_max_position_counts_open_orders_on_the_same_side() -> None:
    router, client = make_router(max_order_notional=None, max_open_orders=None)
    answer(router, create(size=Decimal("30")))
    rejected(router, client, create(size=Decimal("30")), "max_position", RejectReason.RISK_CHECK_FAILED)
    answer(router, create(size=Decimal("30"), side=Side.SELL, price=Decimal("100")))  # the other way: fine


def test_command_rate_per_account() -> None:
    router, client = make_router(commands_per_second=2)
    for _ in range(2):
        answer(router, create())
    rejected(router, client, create(), "command_rate", RejectReason.RISK_CHECK_FAILED)


@pytest.mark.parametrize("scope", ["alice", "*"])
def test_kill_switch_stops_new_orders_but_not_cancels(scope: str) -> None:
    router, client = make_router()
    placed = create()
    answer(router, placed)
    router.market.apply(KillSwitch(scope=scope, engaged=True, reason="runaway strategy", set_by="ops", ts=now()))
    event = rejected(router, client, create(), "kill_switch", RejectReason.KILL_SWITCH)
    assert "runaway strategy" in (event.venue_message or "")
    cancel = CancelOrder(command_id="cx", account="alice", order_id=placed.order_id, venue=VENUE,
                         market=MarketType.SPOT, symbol="BTC-USDT", issued_ts=now())  # fmt: skip
    assert [e.status for e in answer(router, cancel)] == [OrderStatus.CANCELED]
    router.market.apply(KillSwitch(scope=scope, engaged=False, ts=now()))
    assert [e.status for e in answer(router, create())] == [OrderStatus.ACCEPTED]


def test_a_second_create_for_an_order_id_is_a_duplicate() -> None:
    router, client = make_router()
    first = create()
    answer(router, first)
    rejected(router, client, create(order_id=first.order_id), "order_id", RejectReason.DUPLICATE)


def test_a_create_rejected_before_the_venue_leaves_the_order_id_free() -> None:
    router, client = make_router()
    bad = create(price=Decimal("100.001"))
    rejected(router, client, bad, "tick_size")
    assert [e.status for e in answer(router, create(order_id=bad.order_id))] == [OrderStatus.ACCEPTED]
    assert answer(router, bad) == []  # the rejected command itself stays answered


def command(kind: type, order_id: str, **fields: object) -> object:
    n = next(_ids)
    return kind(command_id=f"k{n}", account=fields.pop("account", "alice"), order_id=order_id, venue=VENUE,
                market=MarketType.SPOT, symbol="BTC-USDT", issued_ts=now(), **fields)  # fmt: skip


def test_cancel_and_amend_rules() -> None:
    router, client = make_router()
    rejected(router, client, command(CancelOrder, "nobody"), "order_id", RejectReason.UNKNOWN_ORDER)
    placed = create(time_in_force=TimeInForce.GTC)
    answer(router, placed)
    rejected(router, client, command(CancelOrder, placed.order_id, account="bob"), "order_mismatch")
    rejected(router, client, command(AmendOrder, placed.order_id), "amend_empty")
    rejected(router, client, command(AmendOrder, placed.order_id, new_price=Decimal("100.001")), "tick_size")
    rejected(router, client, command(AmendOrder, placed.order_id, new_price=Decimal("200")), "price_band",
             RejectReason.RISK_CHECK_FAILED)  # fmt: skip
    amended = answer(router, command(AmendOrder, placed.order_id, new_price=Decimal("100.2")))
    assert [(e.status, e.price) for e in amended] == [(OrderStatus.AMENDED, Decimal("100.2"))]
    assert [e.status for e in answer(router, command(CancelOrder, placed.order_id))] == [OrderStatus.CANCELED]
    rejected(router, client, command(CancelOrder, placed.order_id), "order_closed", RejectReason.UNKNOWN_ORDER)
    assert client.calls == ["create", "amend", "cancel"]
