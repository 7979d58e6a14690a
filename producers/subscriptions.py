"""The subscriptions of one WebSocket connection: requested within the venue's limits, matched
with the venue's replies, and never lost silently.

Each subscription is a key a venue's protocol understands (Binance: the stream name
``btcusdt@depth@100ms``; Coinbase: ``level2:BTC-USD``). The manager queues subscribe and
unsubscribe requests, hands them out no faster than the venue accepts requests on one
connection, gives each an id, and matches every reply to its request: by the echoed id where
the venue echoes one, else in request order (Coinbase answers each request in turn). A refused
subscription is reported (``on_refused``), never a silent hole; a request left without a reply
for ``reply_timeout`` counts as refused too.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Protocol

from producers.stream import Control


@dataclass(frozen=True)
class ConnectionLimits:
    #: Subscriptions one connection may carry (more are spread over more connections).
    max_subscriptions: int
    #: Subscriptions one request may carry.
    max_per_request: int
    #: Requests we send per second on one connection (below the venue's incoming-message limit).
    requests_per_second: float
    #: Requests per second over all connections to the venue, where it counts per IP.
    requests_per_second_per_ip: float | None = None


class WsProtocol(Protocol):
    """A venue's WebSocket subscription protocol."""

    #: True if replies echo the request id; False if they come in request order.
    echoes_ids: bool
    limits: ConnectionLimits

    def url(self, base_url: str) -> str: ...

    def keys(self, symbol: str) -> list[str]:
        """The subscriptions of one symbol, for the configured channels."""

    def book_key(self, symbol: str) -> str | None:
        """The subscription that carries the symbol's book, if any."""

    def symbol_of(self, key: str) -> str: ...

    def channel_of(self, key: str) -> str: ...

    def connection_keys(self) -> list[str]:
        """Subscriptions of the connection itself, not of a symbol (Coinbase's heartbeats)."""

    def group(self, keys: list[str]) -> list[list[str]]:
        """Split keys into those that may share one request (Coinbase: one channel each)."""

    def subscribe(self, keys: list[str], request_id: int) -> str:
        """The message that requests ``keys``."""

    def unsubscribe(self, keys: list[str], request_id: int) -> str: ...


class SubState(Enum):
    PENDING = "pending"
    ACTIVE = "active"
    REFUSED = "refused"


@dataclass
class _Request:
    request_id: int
    subscribe: bool
    keys: list[str]
    sent_at: float = 0.0


@dataclass
class SubscriptionCounters:
    requests_sent: int = 0
    refused: int = 0
    resubscribed: int = 0
    #: Refused requests asked again in halves, to find the subscriptions the venue refused.
    split: int = 0


class SubscriptionManager:
    def __init__(
        self,
        protocol: WsProtocol,
        keys: list[str],
        *,
        on_active: Callable[[list[str]], None],
        on_refused: Callable[[list[str], str], None],
        reply_timeout: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.protocol = protocol
        self.keys = list(keys)
        self.states: dict[str, SubState] = dict.fromkeys(self.keys, SubState.PENDING)
        self.on_active = on_active
        self.on_refused = on_refused
        self.reply_timeout = reply_timeout
        self.counters = SubscriptionCounters()
        self._clock = clock
        self._next_id = 1
        self._outbox: deque[_Request] = deque()
        self._in_flight: dict[int, _Request] = {}
        self._in_order: deque[_Request] = deque()  # for venues whose replies carry no id

    # --- what to send --------------------------------------------------------------------------

    def start(self) -> None:
        """A new connection: nothing is subscribed yet; request everything again."""
        self._outbox.clear()
        self._in_flight.clear()
        self._in_order.clear()
        for key in self.keys:
            self.states[key] = SubState.PENDING
        self._queue(self.keys, subscribe=True)

    def resubscribe(self, keys: list[str]) -> None:
        """Unsubscribe and subscribe again (a stalled channel, or a book that needs a new
        in-stream snapshot)."""
        keys = [k for k in keys if self.states.get(k) is SubState.ACTIVE]
        if not keys:
            return
        self.counters.resubscribed += len(keys)
        for key in keys:
            self.states[key] = SubState.PENDING
        self._queue(keys, subscribe=False)
        self._queue(keys, subscribe=True)

    def _queue(self, keys: list[str], *, subscribe: bool) -> None:
        size = self.protocol.limits.max_per_request
        for group in self.protocol.group(keys):
            for i in range(0, len(group), size):
                self._outbox.append(_Request(0, subscribe, group[i : i + size]))

    def next_message(self) -> str | None:
        """The next request to send, or None; the caller paces them (``limits``)."""
        if not self._outbox:
            return None
        request = self._outbox.popleft()
        request.request_id, self._next_id = self._next_id, self._next_id + 1
        request.sent_at = self._clock()
        build = self.protocol.subscribe if request.subscribe else self.protocol.unsubscribe
        if self.protocol.echoes_ids:
            self._in_flight[request.request_id] = request
        elif request.subscribe:  # without ids, only subscriptions are tracked (by content)
            self._in_order.append(request)
        self.counters.requests_sent += 1
        return build(request.keys, request.request_id)

    # --- what came back ------------------------------------------------------------------------

    def on_control(self, control: Control) -> None:
        if not self.protocol.echoes_ids:
            self._on_unnumbered(control)
            return
        request = self._in_flight.pop(control.request_id, None) if control.request_id is not None else None
        if request is None:
            return  # a reply to a request of an earlier connection, or unsolicited
        if not request.subscribe:
            return
        if control.error is not None:
            self._refused_request(request.keys, control.error)
            return
        accepted = request.keys
        if control.active is not None:  # the venue lists what it actually subscribed
            refused = [k for k in request.keys if k not in control.active]
            accepted = [k for k in request.keys if k in control.active]
            if refused:
                self._refuse(refused, "not in the venue's list of active subscriptions")
        for key in accepted:
            self.states[key] = SubState.ACTIVE
        if accepted:
            self.on_active(accepted)

    def _on_unnumbered(self, control: Control) -> None:
        """Replies without ids (Coinbase): the venue's list of active subscriptions marks what
        it took, from any request waiting; an error refuses the oldest request still waiting.
        (The venue may answer a refused request with both an error and a list: the list then
        activates nothing, and refuses nothing either.)"""
        if control.active is not None:
            accepted = []
            for request in self._in_order:
                taken = [k for k in request.keys if k in control.active]
                if taken:
                    request.keys = [k for k in request.keys if k not in control.active]
                    accepted += taken
            self._in_order = deque(r for r in self._in_order if r.keys)
            for key in accepted:
                self.states[key] = SubState.ACTIVE
            if accepted:
                self.on_active(accepted)
        if control.error is not None and self._in_order:
            self._refused_request(self._in_order.popleft().keys, control.error)

    def expire(self) -> None:
        """Requests left without a reply for ``reply_timeout`` count as refused."""
        deadline = self._clock() - self.reply_timeout
        late = [r for r in self._in_flight.values() if r.sent_at < deadline]
        for request in late:
            del self._in_flight[request.request_id]
        while self._in_order and self._in_order[0].sent_at < deadline:
            late.append(self._in_order.popleft())
        for request in late:
            if request.subscribe:
                self._refuse(request.keys, f"no reply within {self.reply_timeout:.0f}s")

    def _refused_request(self, keys: list[str], reason: str) -> None:
        """Venues refuse a whole request for one bad subscription in it (Binance does), without
        saying which: ask again in halves until the bad ones stand alone, so one unknown symbol
        costs only its own subscriptions, never a whole batch."""
        if len(keys) == 1:
            self._refuse(keys, reason)
            return
        self.counters.split += 1
        half = len(keys) // 2
        self._outbox.appendleft(_Request(0, True, keys[half:]))
        self._outbox.appendleft(_Request(0, True, keys[:half]))

    def _refuse(self, keys: list[str], reason: str) -> None:
        for key in keys:
            self.states[key] = SubState.REFUSED
        self.counters.refused += len(keys)
        self.on_refused(keys, reason)

    @property
    def active(self) -> list[str]:
        return [k for k, s in self.states.items() if s is SubState.ACTIVE]

    @property
    def all_active(self) -> bool:
        return all(s is SubState.ACTIVE for s in self.states.values())
