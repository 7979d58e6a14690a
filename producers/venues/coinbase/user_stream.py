"""Coinbase Advanced Trade's ``user`` channel as a ``UserStream``.

As documented: subscribe ``{"type": "subscribe", "channel": "user", "product_ids": [..], "jwt": ..}``
on the WebSocket, with a fresh JWT per subscribe (the REST token without the ``uri`` claim: it
names no request), plus ``heartbeats`` so the connection never sits silent (channels without
updates are closed after a minute or so). The stream is live once the ``snapshot`` of open orders
arrives; ``update`` events follow, one order each.

The channel reports orders, not fills: a fill is an increase of an order's
``cumulative_quantity``, so this keeps each open order's last cumulative quantity and fees and
reports the difference (no per-fill price: ``avg_price`` is the whole order's). A snapshot after a
reconnect reports, for the orders it already knew, what filled in between, as one fill.
``sequence_num`` counts every message of a connection: a jump is a lost message (``gaps``).
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import msgspec

from producers.connection import Backoff
from producers.venues import ws1
from producers.venues.coinbase.parsing import micros
from producers.venues.coinbase.signing import CoinbaseJwtSigner
from producers.venues.coinbase.trading import _STATUS
from producers.venues.trading import VenueOrder
from producers.venues.user_stream import Fill, OrderUpdate, Parsed, VenueUserStream, decimal_or_none
from tickflow.events import OrderStatus


class CoinbaseUserStream(VenueUserStream):
    venue = "coinbase"

    def __init__(self, ws_url: str, signer: CoinbaseJwtSigner, product_ids: list[str], *,
                 backoff: Backoff | None = None) -> None:  # fmt: skip
        super().__init__(backoff=backoff)
        self.ws_url = ws_url
        self.signer = signer
        self.product_ids = list(product_ids)
        #: Open orders' last (cumulative quantity, total fees), by venue order id.
        self._last: dict[str, tuple[Decimal, Decimal]] = {}
        self._sequence: int | None = None

    async def prepare(self) -> str:
        return self.ws_url

    async def opened(self, ws: ws1.WsConnection) -> bool:
        for channel in ("user", "heartbeats"):
            await ws.send(json.dumps({"type": "subscribe", "channel": channel, "product_ids": self.product_ids,
                                      "jwt": self.signer.websocket_token()}))  # fmt: skip
        return False  # live with the snapshot

    def disconnected(self) -> None:
        self._sequence = None

    def parse(self, frame: str | bytes) -> Parsed:
        message = msgspec.json.decode(frame)
        if not isinstance(message, dict):
            raise ValueError("a message is a JSON object")
        if message.get("type") == "error":
            return Parsed(reconnect=f"venue error: {message.get('message')}")
        sequence = int(message["sequence_num"])
        if self._sequence is not None and sequence != self._sequence + 1:
            self.counters.gaps += 1
        self._sequence = sequence
        if message["channel"] != "user":
            return Parsed()
        ts = micros(message["timestamp"])
        parsed = Parsed()
        for event in message["events"]:
            snapshot = event["type"] == "snapshot"
            parsed.live = parsed.live or snapshot
            parsed.orders.extend(self._update(raw, ts, snapshot) for raw in event.get("orders") or [])
        return parsed

    def _update(self, raw: dict[str, Any], ts: int, snapshot: bool) -> OrderUpdate:
        venue_id = str(raw["order_id"])
        product = str(raw["product_id"])
        filled = Decimal(raw["cumulative_quantity"])
        fees = Decimal(raw.get("total_fees") or 0)
        status = _STATUS.get(str(raw["status"]), OrderStatus.ACCEPTED)
        if status is OrderStatus.ACCEPTED and filled > 0:
            status = OrderStatus.PARTIALLY_FILLED
        order = VenueOrder(client_order_id=str(raw.get("client_order_id") or ""), venue_order_id=venue_id,
                           status=status, size=filled + Decimal(raw.get("leaves_quantity") or 0), filled_size=filled,
                           price=decimal_or_none(raw.get("limit_price")),
                           avg_fill_price=decimal_or_none(raw.get("avg_price")) if filled else None,
                           exchange_ts=ts)  # fmt: skip
        fill = None
        last = self._last.get(venue_id)
        if last is None and not snapshot:
            # Every order starts at nothing filled; a snapshot shows orders from before we listened,
            # whose fills the caller's reconciliation accounts for.
            last = (Decimal(0), Decimal(0))
        if last is not None and filled > last[0]:
            fill = Fill(None, None, filled - last[0], fees - last[1], product.partition("-")[2] or None)
        if order.open:
            self._last[venue_id] = (filled, fees)
        else:
            self._last.pop(venue_id, None)
        return OrderUpdate(product, order, fill)


def coinbase_user_stream(ws_url: str, signer: CoinbaseJwtSigner, product_ids: list[str], *,
                         backoff: Backoff | None = None) -> CoinbaseUserStream:  # fmt: skip
    """The ``user`` channel of one CDP key; ``product_ids`` empty: every product."""
    return CoinbaseUserStream(ws_url, signer, product_ids, backoff=backoff)
