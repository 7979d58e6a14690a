"""Faults a simulated venue injects, each switchable, and the exact record of what it injected.

Tests assert on behaviour downstream ("every injected gap became a marker"), so every fault is
counted and, where a client could notice it, recorded with the venue's own ids: the symbol and
update ids of a lost Binance diff, the product and ``sequence_num`` of a lost Coinbase message.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Faults:
    """Every field off by default. "Book message" = a Binance depth diff / a Coinbase l2 update;
    counts are per connection (every n-th book message *on that connection*)."""

    #: Every n-th book message is lost on the wire (its ids are used up: a gap).
    drop_depth_every: int | None = None
    #: Every n-th book message is sent twice.
    duplicate_depth_every: int | None = None
    #: Every n-th book message is held back and sent after the next one of the same symbol.
    reorder_depth_every: int | None = None
    #: Every n-th frame is preceded by a malformed (truncated) frame.
    malformed_every: int | None = None
    #: Every connection is cut abruptly every this many seconds (``drop_connections()`` anytime).
    drop_connections_every: float | None = None
    #: A connection goes silent (open, sending nothing) this many seconds after it opened.
    stall_after: float | None = None
    #: These streams go silent (Binance ``btcusdt@depth@100ms``, Coinbase ``level2:BTC-USD``)
    #: ``stall_streams_after`` seconds after the connection opened, while the others go on.
    stall_streams: tuple[str, ...] = ()
    stall_streams_after: float = 0.0
    #: Subscriptions to these streams / products are refused with the venue's error reply.
    refuse: tuple[str, ...] = ()
    #: Every n-th REST request is answered 429 / 418 with ``Retry-After: rest_retry_after``.
    rest_429_every: int | None = None
    rest_418_every: int | None = None
    rest_retry_after: int = 1
    #: Added REST latency in seconds, for every request or every n-th one.
    rest_latency: float = 0.0
    rest_latency_every: int | None = None
    #: Message faults stop this many seconds after a connection opened: a run can end with a
    #: clean tail (a message lost at the very end is detectable only by the next one).
    quiet_after: float | None = None
    #: Trading API (order endpoints; "create" = a request that places an order). Latency in
    #: seconds added to every trading request, or to every n-th one.
    order_latency: float = 0.0
    order_latency_every: int | None = None
    #: Every n-th create is executed (the order exists) but its answer is held ``order_timeout_hold``
    #: seconds, longer than a client waits: an unknown outcome for the client.
    order_timeout_every: int | None = None
    order_timeout_hold: float = 30.0
    #: Every n-th create is executed, then answered 5xx (the venue's "status unknown" reply).
    order_5xx_after_accept_every: int | None = None
    #: Every n-th create is answered 5xx and not executed.
    order_5xx_before_accept_every: int | None = None
    #: Every n-th create is answered 429 (the venue's headers and body) and not executed.
    order_429_every: int | None = None
    #: Private user streams (Binance's user data streams, the Coinbase ``user`` channel): every n-th
    #: message on a connection is not sent, so a client must reconcile to learn what it said.
    #: Counted per connection; Coinbase's snapshots are not counted (its updates are).
    user_stream_drop_every: int | None = None

    def message_faults(self) -> bool:
        return any((self.drop_depth_every, self.duplicate_depth_every, self.reorder_depth_every,
                    self.malformed_every, self.stall_after is not None, self.stall_streams))  # fmt: skip


@dataclass(frozen=True)
class Injected:
    """One injected message fault, with what a client can see of it."""

    connection: int
    kind: str  # "drop", "duplicate", "reorder", "stall"
    key: str  # stream key: "btcusdt@depth", "level2:BTC-USD", or "*" for a whole connection
    symbol: str = ""
    first_id: int = 0
    last_id: int = 0
    #: Coinbase: the connection's sequence_num of the message (-1: none).
    sequence: int = -1
    #: Reorder: the last id of the message it was swapped with.
    swapped_with: int = 0


@dataclass
class SimStats:
    connections: int = 0
    frames_sent: int = 0
    snapshots_served: int = 0
    subscribe_requests: int = 0
    rest_requests: int = 0
    #: REST answers 429 (over the limit or injected) and 418 (banned).
    rate_limited: int = 0
    banned: int = 0
    slowed_requests: int = 0
    dropped_depth: int = 0
    #: (symbol, last update id / sequence_num) of every dropped book message.
    dropped: list[tuple[str, int]] = field(default_factory=list)
    duplicated_depth: int = 0
    reordered_depth: int = 0
    malformed_sent: int = 0
    connections_dropped: int = 0
    #: Connections closed for breaking a venue limit (message rate, stream count, no subscribe).
    limit_closes: int = 0
    refused: list[str] = field(default_factory=list)
    #: Every message fault, in order.
    injected: list[Injected] = field(default_factory=list)
    #: Trading API: requests, order creates, and what was injected into them (client order ids).
    trading_requests: int = 0
    order_creates: int = 0
    slowed_orders: int = 0
    #: Executed, answered only after ``order_timeout_hold``: a client must recover each of these.
    orders_timed_out: list[str] = field(default_factory=list)
    #: Executed, answered 5xx.
    orders_5xx_after_accept: list[str] = field(default_factory=list)
    #: Answered 5xx or 429 and not executed (the client order id sent, "" if none).
    orders_5xx_before_accept: list[str] = field(default_factory=list)
    orders_throttled: list[str] = field(default_factory=list)
    #: Order-rate limit (not injected) answers: 429 for too many new orders.
    order_rate_limited: int = 0
    #: Private user-stream messages (sent or dropped), and every dropped one as (account, event
    #: type, what it was about: a client order id or the assets of a balance message).
    user_stream_messages: int = 0
    user_stream_dropped: list[tuple[str, str, str]] = field(default_factory=list)

    def of_kind(self, kind: str) -> list[Injected]:
        return [i for i in self.injected if i.kind == kind]


#: The name the Binance replay used for its stats.
ReplayStats = SimStats


class MessageFaults:
    """One connection's fault decisions, in the order its messages go out."""

    def __init__(self, faults: Faults, stats: SimStats, connection: int, stall_keys: frozenset[str]) -> None:
        self.faults = faults
        self.stats = stats
        self.connection = connection
        self.opened = time.monotonic()
        self.stall_keys = stall_keys
        self.frames = 0
        self.books = 0
        self.held: dict[str, tuple[str, int, int]] = {}  # key -> (text, last id, sequence_num)
        self.stalled: set[str] = set()

    def connection_stalled(self) -> bool:
        after = self.faults.stall_after
        if after is None or time.monotonic() - self.opened < after:
            return False
        if "*" not in self.stalled:
            self.stalled.add("*")
            self.stats.injected.append(Injected(self.connection, "stall", "*"))
        return True

    def stream_stalled(self, key: str) -> bool:
        if key not in self.stall_keys or time.monotonic() - self.opened < self.faults.stall_streams_after:
            return False
        if key not in self.stalled:
            self.stalled.add(key)
            self.stats.injected.append(Injected(self.connection, "stall", key))
        return True

    def emit(self, out: list[str], text: str, key: str, symbol: str, first_id: int, last_id: int,
             book: bool, sequence: int = -1) -> None:  # fmt: skip
        """Append what goes on the wire for one message (maybe nothing, maybe more)."""
        faults, stats = self.faults, self.stats
        if faults.quiet_after is not None and time.monotonic() - self.opened >= faults.quiet_after:
            out.append(text)
            self._release_held(out, key, symbol, last_id)  # a message held back goes out before the quiet tail
            return
        self.frames += 1
        if faults.malformed_every and self.frames % faults.malformed_every == 0:
            out.append(text[: max(1, len(text) // 2)])
            stats.malformed_sent += 1
        if not book:
            out.append(text)
            return
        self.books += 1
        n = self.books
        record = (self.connection, key, symbol, first_id, last_id, sequence)
        if faults.drop_depth_every and n % faults.drop_depth_every == 0:
            stats.dropped_depth += 1
            stats.dropped.append((symbol, last_id if sequence < 0 else sequence))
            stats.injected.append(Injected(record[0], "drop", *record[1:]))
            return
        if faults.reorder_depth_every and n % faults.reorder_depth_every == 0 and key not in self.held:
            self.held[key] = (text, last_id, sequence)
            return
        out.append(text)
        if faults.duplicate_depth_every and n % faults.duplicate_depth_every == 0:
            out.append(text)
            stats.duplicated_depth += 1
            stats.injected.append(Injected(record[0], "duplicate", *record[1:]))
        self._release_held(out, key, symbol, last_id)

    def _release_held(self, out: list[str], key: str, symbol: str, last_id: int) -> None:
        """The message held back on ``key`` goes out after the one that overtook it (``last_id``)."""
        held = self.held.pop(key, None)
        if held is not None:
            out.append(held[0])
            self.stats.reordered_depth += 1
            # Recorded as the held message (its ids), swapped with the one that overtook it.
            self.stats.injected.append(Injected(self.connection, "reorder", key, symbol, 0, held[1], held[2], last_id))
