"""The router's book of orders: the state of every order it placed, and the events telling what
happened to them.

The state (``OrderState``) is the router's memory across restarts: it goes to a compacted topic
in the same transaction as the events it explains, and a starting router reads it back. It
records which commands of an order were answered, so a command consumed again after a crash is
recognised and not executed twice.
"""

from __future__ import annotations

import itertools
import os
import time
from collections import deque
from dataclasses import dataclass, field
from decimal import Context, Decimal

import msgspec

from processors.router.checks import Exposure
from producers.venues.trading import VenueOrder
from producers.venues.user_stream import Fill
from tickflow.events import (
    CreateOrder,
    OrderCommand,
    OrderEvent,
    OrderState,
    OrderStatus,
    OrderType,
    RejectReason,
    Side,
    TimeInForce,
)

#: Answered command ids kept per order: an order's commands are few; a repeat comes soon.
ANSWERED_KEPT = 64

_event_ids = itertools.count(1)
_event_prefix = f"{os.getpid():x}-{time.time_ns():x}"


def now_us() -> int:
    return time.time_ns() // 1000


def event_id() -> str:
    return f"{_event_prefix}-{next(_event_ids)}"


@dataclass
class _AccountBook:
    open_orders: int = 0
    position: dict[tuple[str, str], Decimal] = field(default_factory=dict)
    open_size: dict[tuple[str, str, Side], Decimal] = field(default_factory=dict)


class OrderBook:
    """Every order's state, by order id, and each account's exposure kept current as states
    change (a check costs the same with ten orders or a million).

    Closed orders leave memory once older than ``forget_after`` seconds (``forget_closed``): by
    then any repeat of their commands is refused as stale (``max_command_age``), so nothing can be
    executed twice; their fills stay counted in the account's position."""

    def __init__(self) -> None:
        self.orders: dict[str, OrderState] = {}
        self._accounts: dict[str, _AccountBook] = {}
        self._closed: deque[tuple[float, str]] = deque()
        #: (account, venue, client order id) -> order id: the private streams name orders so.
        self._by_client: dict[tuple[str, str, str], str] = {}

    def get(self, order_id: str) -> OrderState | None:
        return self.orders.get(order_id)

    def put(self, state: OrderState) -> None:
        old = self.orders.get(state.order_id)
        if old is not None:
            self._count(old, -1)
        self.orders[state.order_id] = state
        self._count(state, 1)
        if state.client_order_id:
            self._by_client[(state.account, state.venue, state.client_order_id)] = state.order_id
        if not state.open:
            self._closed.append((time.monotonic(), state.order_id))

    def _count(self, state: OrderState, sign: int) -> None:
        account = self._accounts.setdefault(state.account, _AccountBook())
        key = (state.venue, state.symbol)
        direction = 1 if state.side is Side.BUY else -1
        if state.filled_size:
            account.position[key] = account.position.get(key, Decimal(0)) + sign * direction * state.filled_size
        if state.open:
            account.open_orders += sign
            side_key = (*key, state.side)
            account.open_size[side_key] = account.open_size.get(side_key, Decimal(0)) + sign * (
                state.size - state.filled_size
            )

    def forget_closed(self, forget_after: float) -> int:
        """Drop closed orders older than ``forget_after`` seconds from memory; how many."""
        cutoff, forgotten = time.monotonic() - forget_after, 0
        while self._closed and self._closed[0][0] < cutoff:
            _, order_id = self._closed.popleft()
            state = self.orders.get(order_id)
            if state is not None and not state.open:
                del self.orders[order_id]  # its fills stay in the position: not uncounted
                self._by_client.pop((state.account, state.venue, state.client_order_id), None)
                forgotten += 1
        return forgotten

    def by_client_id(self, account: str, venue: str, client_order_id: str) -> OrderState | None:
        order_id = self._by_client.get((account, venue, client_order_id))
        return self.orders.get(order_id) if order_id is not None else None

    def answered(self, command: OrderCommand) -> bool:
        state = self.orders.get(command.order_id)
        return state is not None and command.command_id in state.answered

    def open_orders(self) -> list[OrderState]:
        return [s for s in self.orders.values() if s.open]

    def exposure(self, account: str) -> Exposure:
        book = self._accounts.get(account) or _AccountBook()
        return Exposure(open_orders=book.open_orders, position=book.position, open_size=book.open_size)


def new_state(command: CreateOrder, client_order_id: str, answered: list[str] | None = None) -> OrderState:
    """The state of an order about to be sent (REJECTED until the venue says otherwise)."""
    return OrderState(
        order_id=command.order_id, account=command.account, venue=command.venue, market=command.market,
        symbol=command.symbol, side=command.side, order_type=command.order_type,
        time_in_force=command.time_in_force, client_order_id=client_order_id, status=OrderStatus.REJECTED,
        price=command.price, size=command.size, filled_size=Decimal(0), answered=list(answered or []),
        updated_ts=now_us(),
    )  # fmt: skip


def rejected_state(command: OrderCommand) -> OrderState:
    """The state left by a command refused for an order that does not exist: what the command
    said, made safe to write (a hostile command's values may not fit the contract)."""
    side = getattr(command, "side", Side.UNKNOWN)
    size = getattr(command, "size", None) or getattr(command, "new_size", None)
    price = getattr(command, "price", None) or getattr(command, "new_price", None)
    return OrderState(
        order_id=command.order_id, account=command.account, venue=command.venue, market=command.market,
        symbol=command.symbol, side=side if isinstance(side, Side) else Side.UNKNOWN,
        order_type=getattr(command, "order_type", OrderType.LIMIT),
        time_in_force=getattr(command, "time_in_force", TimeInForce.GTC), client_order_id="",
        status=OrderStatus.REJECTED, price=_finite(price), size=_finite(size) or Decimal(0), filled_size=Decimal(0),
        updated_ts=now_us(),
    )  # fmt: skip


def with_venue(state: OrderState, order: VenueOrder, answered: str | None = None) -> OrderState:
    """``state`` updated to what the venue says of the order."""
    return _replace(
        state, client_order_id=order.client_order_id, venue_order_id=order.venue_order_id, status=order.status,
        price=order.price if order.price is not None else state.price, size=order.size,
        filled_size=order.filled_size, avg_fill_price=_finite(order.avg_fill_price), answered=_answer(state, answered),
    )  # fmt: skip


def merge(state: OrderState, order: VenueOrder) -> OrderState:
    """``state`` updated by a private-stream report, which never takes the fills back: a report
    older than the answer already applied leaves the filled size as it is."""
    if order.filled_size < state.filled_size:
        return state
    return with_venue(state, order)


def answered_by(state: OrderState, command_id: str, **changes: object) -> OrderState:
    return _replace(state, answered=_answer(state, command_id), **changes)


def _answer(state: OrderState, command_id: str | None) -> list[str]:
    if command_id is None or command_id in state.answered:
        return state.answered
    return [*state.answered[-(ANSWERED_KEPT - 1) :], command_id]


def _replace(state: OrderState, **changes: object) -> OrderState:
    return msgspec.structs.replace(state, updated_ts=now_us(), **changes)


def event(state: OrderState, status: OrderStatus, *, command_id: str | None, reason: RejectReason | None = None,
          rule: str | None = None, venue_message: str | None = None, exchange_ts: int | None = None,
          last_fill: tuple[Decimal, Decimal | None] | None = None, fill: Fill | None = None) -> OrderEvent:  # fmt: skip
    """An event about ``state``'s order; ``fill`` (from a private stream) or ``last_fill`` (size,
    price: what reconciliation saw filled) for a fill."""
    last_size, last_price = (fill.size, fill.price) if fill else last_fill if last_fill else (None, None)
    return OrderEvent(
        event_id=event_id(), command_id=command_id, account=state.account, order_id=state.order_id,
        client_order_id=state.client_order_id, venue_order_id=state.venue_order_id, venue=state.venue,
        market=state.market, symbol=state.symbol, status=status, reason=reason, rule=rule,
        venue_message=venue_message, side=state.side, price=state.price, size=state.size,
        filled_size=state.filled_size, avg_fill_price=state.avg_fill_price, last_fill_price=_finite(last_price),
        last_fill_size=_finite(last_size), fee=_finite(fill.fee) if fill else None,
        fee_asset=fill.fee_asset if fill else None, trade_id=fill.trade_id if fill else None,
        exchange_ts=exchange_ts, event_ts=now_us(),
    )  # fmt: skip


#: The contract's decimals: 38 digits, 18 of them after the point.
_PLACES = Decimal(1).scaleb(-18)
_WIDE = Context(prec=80)


def _finite(value: Decimal | None) -> Decimal | None:
    """A decimal the contract can carry, or None: a hostile command's NaN or 1E+400 must not stop
    its own rejection from being written."""
    if value is None or not value.is_finite() or abs(value) >= Decimal(10) ** 20:
        return None
    return value.quantize(_PLACES, context=_WIDE)
