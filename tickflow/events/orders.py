"""Order commands (what users send the router) and order events (what happened)."""

from __future__ import annotations

from decimal import Decimal

import msgspec

from tickflow.events.base import Event
from tickflow.events.enums import MarketType, OrderStatus, OrderType, RejectReason, Side, TimeInForce


class OrderCommand(Event, kw_only=True):
    """Fields every command carries; keyed by ``order_id`` so one order's commands stay ordered."""

    key_fields = ("order_id",)
    command_id: str
    account: str
    order_id: str
    venue: str
    market: MarketType
    symbol: str
    issued_ts: int


class CreateOrder(OrderCommand, kw_only=True):
    avro_name = "tickflow.CreateOrder"
    side: Side
    order_type: OrderType
    time_in_force: TimeInForce = TimeInForce.GTC
    price: Decimal | None = None
    size: Decimal
    reduce_only: bool = False


class CancelOrder(OrderCommand, kw_only=True):
    avro_name = "tickflow.CancelOrder"


class AmendOrder(OrderCommand, kw_only=True):
    avro_name = "tickflow.AmendOrder"
    new_price: Decimal | None = None
    new_size: Decimal | None = None


class OrderEvent(Event, kw_only=True):
    avro_name = "tickflow.OrderEvent"
    key_fields = ("order_id",)
    event_id: str
    command_id: str | None = None
    account: str
    order_id: str
    client_order_id: str
    venue_order_id: str | None = None
    venue: str
    market: MarketType
    symbol: str
    status: OrderStatus
    reason: RejectReason | None = None
    rule: str | None = None
    venue_message: str | None = None
    side: Side
    price: Decimal | None = None
    size: Decimal
    filled_size: Decimal
    avg_fill_price: Decimal | None = None
    last_fill_price: Decimal | None = None
    last_fill_size: Decimal | None = None
    fee: Decimal | None = None
    fee_asset: str | None = None
    trade_id: str | None = None
    exchange_ts: int | None = None
    event_ts: int


class KillSwitch(Event, kw_only=True):
    avro_name = "tickflow.KillSwitch"
    key_fields = ("scope",)
    scope: str
    engaged: bool
    reason: str = ""
    set_by: str = ""
    ts: int


class OrderState(Event, kw_only=True):
    """The router's state of one order (``tickflow.orders.state``, compacted, keyed by order id)."""

    avro_name = "tickflow.OrderState"
    key_fields = ("order_id",)
    order_id: str
    account: str
    venue: str
    market: MarketType
    symbol: str
    side: Side
    order_type: OrderType
    time_in_force: TimeInForce = TimeInForce.GTC
    client_order_id: str
    venue_order_id: str | None = None
    status: OrderStatus
    price: Decimal | None = None
    size: Decimal
    filled_size: Decimal
    avg_fill_price: Decimal | None = None
    answered: list[str] = msgspec.field(default_factory=list)
    updated_ts: int

    @property
    def open(self) -> bool:
        return self.status in (OrderStatus.ACCEPTED, OrderStatus.PARTIALLY_FILLED, OrderStatus.AMENDED)


class Balance(Event, kw_only=True):
    """An account's balance of one asset at a venue (``tickflow.balances``, compacted)."""

    avro_name = "tickflow.Balance"
    key_fields = ("account", "venue", "asset")
    account: str
    venue: str
    asset: str
    free: Decimal
    locked: Decimal
    exchange_ts: int | None = None
    event_ts: int
