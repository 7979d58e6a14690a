"""What every venue's private user stream shares: who listens to which account, and the wire.

The engine calls its listeners synchronously on every order change (``Engine.add_listener``), so a
venue renders its message right there, from the order as it is at that moment (a later fill
mutates the same object), and writes it at once: the order of events on the wire is the order
they happened in. User streams carry a few messages per order, so writing without waiting for
the client to drain costs nothing and keeps the engine's call path synchronous. The frames of one
pass of the event loop go out in one write (an order's acceptance and its fill, with their balance
messages, are four frames): one system call instead of four, still in the order they happened.

``UserConnection.send`` is the one place the ``user_stream_drop_every`` fault is applied and
recorded, so both venues drop and count alike. Binance's WebSocket API answers requests on the
connection that carries the events, so its responses go through the same writer (``write``: not
faultable, not counted as messages): one writer keeps one order on the wire.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from websockets.asyncio.server import ServerConnection

from simulator.faults import Faults, SimStats
from simulator.trading.engine import Engine, Fill, Order
from simulator.wire import frame, is_open

#: Called with every change of one account's orders.
OrderListener = Callable[[Order, "Fill | None"], None]


class UserStreamHub:
    """Fans the engine's order changes out to the listeners of each account."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._listeners: dict[str, list[OrderListener]] = {}
        engine.add_listener(self._changed)

    def subscribe(self, account: str, listener: OrderListener) -> Callable[[], None]:
        """Listen to ``account``'s orders; returns the function that stops it."""
        self._listeners.setdefault(account, []).append(listener)

        def unsubscribe() -> None:
            listeners = self._listeners.get(account, [])
            if listener in listeners:
                listeners.remove(listener)

        return unsubscribe

    def _changed(self, order: Order, fill: Fill | None) -> None:
        for listener in list(self._listeners.get(order.account.name, ())):
            listener(order, fill)


class UserConnection:
    """One client connection of a private stream: where its messages go, and its drop fault.

    ``faults`` is read on every message, so a test may switch the fault on and off at runtime."""

    def __init__(self, connection: ServerConnection, connection_id: int, account: str,
                 faults: Callable[[], Faults], stats: SimStats) -> None:  # fmt: skip
        self.connection = connection
        self.id = connection_id
        self.account = account
        self.faults = faults
        self.stats = stats
        self.counted = 0
        #: Frames written since the loop last flushed (``_flush``, scheduled by the first of them).
        self._pending: list[bytes] = []

    @property
    def open(self) -> bool:
        return is_open(self.connection)

    def send(self, text: str | bytes, event: str, about: str, *, faultable: bool = True,
             account: str | None = None) -> bool:  # fmt: skip
        """Write one message now; False if the drop fault ate it (recorded) or the connection is gone.

        ``account`` names whose message it is in the drop record when one connection carries several
        accounts' messages (Binance's WebSocket API); by default the connection's own account."""
        self.stats.user_stream_messages += 1
        if faultable:
            self.counted += 1
            every = self.faults().user_stream_drop_every
            if every and self.counted % every == 0:
                self.stats.user_stream_dropped.append((account or self.account, event, about))
                return False
        return self.write(text)

    def write(self, text: str | bytes) -> bool:
        """Write one frame now, in order with the messages, neither counted nor faultable (a request's
        response); False if the connection is gone."""
        if not self.open:
            return False
        if not self._pending:
            self._schedule_flush()
        self._pending.append(frame(text))
        self.stats.frames_sent += 1
        return True

    async def close(self, code: int, reason: str) -> None:
        """Close after every frame written so far (they are sent first, then the close frame)."""
        self._flush()
        await self.connection.close(code, reason)

    def _schedule_flush(self) -> None:
        loop = self.connection.loop
        try:
            here = asyncio.get_running_loop() is loop
        except RuntimeError:  # a test thread (expiring a key, say): the loop's own thread flushes
            here = False
        if here:
            loop.call_soon(self._flush)
        else:
            loop.call_soon_threadsafe(self._flush)

    def _flush(self) -> None:
        pending, self._pending = self._pending, []
        if self.open:
            self.connection.transport.write(b"".join(pending))
