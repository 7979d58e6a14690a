"""Coinbase Advanced Trade's WebSocket subscription protocol.

One request subscribes one channel for a list of products
(``{"type": "subscribe", "channel": "level2", "product_ids": [...]}``); requests carry no id, so
the venue's answers are matched by content: its ``subscriptions`` message lists every active
subscription, and an ``error`` message refuses the oldest request still waiting. The
``heartbeats`` channel (one per connection) keeps quiet subscriptions open and numbers every
second, so a silent connection is noticed at once.

Subscription keys are ``<channel>:<product>``, and ``heartbeats`` for the connection's own.
"""

from __future__ import annotations

import msgspec

from producers.subscriptions import ConnectionLimits

HEARTBEATS = "heartbeats"

#: Coinbase counts unauthenticated messages per second per IP (8 at the time of writing); we
#: stay under it. Products per connection are ours to choose: level2 snapshots of many products
#: arrive at once on a fresh connection, so books are spread over several.
LIMITS = ConnectionLimits(
    max_subscriptions=120, max_per_request=100, requests_per_second=4.0, requests_per_second_per_ip=6.0
)


class CoinbaseProtocol:
    echoes_ids = False

    def __init__(self, channels: tuple[str, ...]) -> None:
        self.limits = LIMITS
        self.channels = channels

    def url(self, base_url: str) -> str:
        return base_url.rstrip("/")

    def connection_keys(self) -> list[str]:
        return [HEARTBEATS]

    def keys(self, symbol: str) -> list[str]:
        return [f"{channel}:{symbol}" for channel in self.channels]

    def book_key(self, symbol: str) -> str | None:
        return f"level2:{symbol}" if "level2" in self.channels else None

    @staticmethod
    def symbol_of(key: str) -> str:
        return key.partition(":")[2]

    @staticmethod
    def channel_of(key: str) -> str:
        return key.partition(":")[0]

    @staticmethod
    def group(keys: list[str]) -> list[list[str]]:
        """One request per channel: the keys of each channel, in the order they first appear."""
        by_channel: dict[str, list[str]] = {}
        for key in keys:
            by_channel.setdefault(key.partition(":")[0], []).append(key)
        return list(by_channel.values())

    def subscribe(self, keys: list[str], request_id: int) -> str:
        return self._request("subscribe", keys)

    def unsubscribe(self, keys: list[str], request_id: int) -> str:
        return self._request("unsubscribe", keys)

    @staticmethod
    def _request(kind: str, keys: list[str]) -> str:
        channel = keys[0].partition(":")[0]
        products = [k.partition(":")[2] for k in keys if k.partition(":")[2]]
        body: dict[str, object] = {"type": kind, "channel": channel}
        if products:
            body["product_ids"] = products
        return msgspec.json.encode(body).decode()
