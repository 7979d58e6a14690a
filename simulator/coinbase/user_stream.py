"""Coinbase Advanced Trade's ``user`` channel on the market-data WebSocket.

Subscribe as documented: ``{"type": "subscribe", "channel": "user", "product_ids": [..] (optional:
all products), "jwt": ..}``; the JWT is the REST one without the ``uri`` claim, checked against the
account's key exactly like the REST side checks it (``verify_jwt``). Without a valid JWT the answer
is the venue's ``{"type": "error", "message": "authentication failure"}``.

Then, in the connection's own ``sequence_num`` order like every other channel: a ``snapshot`` event
with the account's open orders (batched by 50, as the docs say, at least one message) and an empty
``positions`` object (spot only here), then one ``update`` event per order change. The channel
reports orders, not fills: a fill shows as a higher ``cumulative_quantity``, with ``avg_price`` and
``total_fees`` of the whole order. ``leaves_quantity`` is what was never filled (0 once FILLED).
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import TYPE_CHECKING

from websockets.asyncio.server import ServerConnection

from simulator.coinbase.render import head, tail
from simulator.coinbase.trading import STATUS, TIF, CoinbaseTrading, verify_jwt
from simulator.trading.engine import FILLED, MARKET, POST_ONLY, Fill, Order
from simulator.trading.user_streams import UserConnection, UserStreamHub

if TYPE_CHECKING:
    from simulator.coinbase.server import Connection

AUTH_FAILURE = "authentication failure"
SNAPSHOT_BATCH = 50
NO_TIME = "0001-01-01T00:00:00Z"


class _Subscription:
    """One connection's ``user`` subscription: its account's stream, its products (empty: all)."""

    def __init__(self, stream: UserConnection, products: list[str]) -> None:
        self.stream = stream
        self.products = products
        self.unsubscribe: Callable[[], None] = lambda: None


class CoinbaseUserStreams:
    def __init__(self, trading: CoinbaseTrading) -> None:
        self.trading = trading
        self.hub = UserStreamHub(trading.engine)
        self._subscriptions: dict[int, _Subscription] = {}  # by the connection state's id()

    def handle(self, connection: ServerConnection, state: Connection, request: dict) -> list[str] | str:
        """A subscribe / unsubscribe on ``user``: the messages it starts with, or an error message."""
        if request.get("type") == "unsubscribe":
            self.disconnect(state)
            state.subscribed.pop("user", None)
            return []
        token = request.get("jwt")
        account = verify_jwt(self.trading.engine.accounts, token, None) if isinstance(token, str) else None
        if account is None:
            return AUTH_FAILURE
        products = [str(p) for p in request.get("product_ids") or []]
        self.disconnect(state)  # a second subscribe replaces the first
        stream = UserConnection(connection, state.connection_id, account.name, lambda: self.trading.faults,
                                self.trading.stats)  # fmt: skip
        subscription = _Subscription(stream, products)
        subscription.unsubscribe = self.hub.subscribe(
            account.name, lambda order, fill: self._changed(state, subscription, order, fill)
        )
        self._subscriptions[id(state)] = subscription
        listed = state.subscribed.setdefault("user", [])
        listed.extend(p for p in products if p not in listed)
        opened = [o for o in self.trading.engine.open_orders(account) if self._wanted(subscription, o)]
        batches = [opened[i : i + SNAPSHOT_BATCH] for i in range(0, len(opened), SNAPSHOT_BATCH)] or [[]]
        out = []
        for batch in batches:
            event = {"type": "snapshot", "orders": [self._order(o) for o in batch],
                     "positions": {"perpetual_futures_positions": [], "expiring_futures_positions": []}}  # fmt: skip
            out.append(state.message(head("user", self._now()), tail([event])))
        self.trading.stats.user_stream_messages += len(out)
        return out

    def disconnect(self, state: Connection) -> None:
        subscription = self._subscriptions.pop(id(state), None)
        if subscription is not None:
            subscription.unsubscribe()

    def _wanted(self, subscription: _Subscription, order: Order) -> bool:
        return not subscription.products or order.symbol in subscription.products

    def _changed(self, state: Connection, subscription: _Subscription, order: Order, fill: Fill | None) -> None:
        if not self._wanted(subscription, order):
            return
        # The sequence number is taken even when the message is dropped: the client sees the gap.
        text = state.message(head("user", self._now()), tail([{"type": "update", "orders": [self._order(order)]}]))
        subscription.stream.send(text, "update", order.client_id)

    def _now(self) -> str:
        return self.trading._clock(self.trading.engine.now_ms())

    def _order(self, order: Order) -> dict:
        fees = order.fees
        completion = order.executed / order.size * 100 if order.size else Decimal(0)
        after_fees = order.cumulative_quote + fees if order.side == "BUY" else order.cumulative_quote - fees
        return {
            "avg_price": _plain(order.average_price), "cancel_reason": "", "client_order_id": order.client_id,
            "completion_percentage": f"{completion:.2f}", "contract_expiry_type": "UNKNOWN_CONTRACT_EXPIRY_TYPE",
            "cumulative_quantity": _plain(order.executed), "filled_value": _plain(order.cumulative_quote),
            "leaves_quantity": _plain(Decimal(0) if order.status == FILLED else order.remaining),
            "limit_price": _plain(order.price) if order.price is not None else "",
            "number_of_fills": str(len(order.fills)), "order_id": order.uuid, "order_side": order.side,
            "order_type": "Market" if order.type == MARKET else "Limit",
            "outstanding_hold_amount": _plain(order.locked), "post_only": "true" if order.tif == POST_ONLY else "false",
            "product_id": order.symbol, "product_type": "SPOT", "reject_reason": "", "retail_portfolio_id": "",
            "risk_managed_by": "UNKNOWN_RISK_MANAGEMENT_TYPE", "status": STATUS[order.status], "stop_price": "",
            "time_in_force": TIF[order.tif], "total_fees": _plain(fees), "total_value_after_fees": _plain(after_fees),
            "trigger_status": "INVALID_ORDER_TYPE", "creation_time": self.trading._clock(order.created_ms),
            "end_time": NO_TIME, "start_time": NO_TIME,
        }  # fmt: skip


def _plain(value: Decimal) -> str:
    return f"{value.normalize():f}" if value else "0"
