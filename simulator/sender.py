"""One connection's outgoing stream: its position in the feed, its subscriptions, its faults.

The venue decides what a message looks like on this connection (``render``: a Binance stream
wrapper, a Coinbase ``sequence_num``) and whether it is subscribed; this loop paces, batches,
injects faults and writes. Shared by every venue so faults behave the same everywhere.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from websockets.asyncio.server import ServerConnection

from simulator.faults import Faults, MessageFaults, SimStats
from simulator.timeline import Feed, Item
from simulator.wire import is_open, write_frames

#: Per item: the texts to send on this connection (empty: not subscribed).
RenderForConnection = Callable[[Item], list[str]]


class Sender:
    BATCH = 2048

    def __init__(
        self,
        connection: ServerConnection,
        connection_id: int,
        feed: Feed,
        render: RenderForConnection,
        faults: Faults,
        stats: SimStats,
        stall_keys: frozenset[str] = frozenset(),
        sequence: Callable[[], int] | None = None,
    ) -> None:
        self.connection = connection
        self.id = connection_id
        self.feed = feed
        self.render = render
        self.stats = stats
        self.faults = MessageFaults(faults, stats, connection_id, stall_keys) if faults.message_faults() else None
        #: The connection's last sequence number (Coinbase), for fault records.
        self.sequence = sequence
        self.position = feed.join(connection_id)
        #: Set when the connection must catch up and stop (e.g. to send a snapshot in between).
        self.paused = asyncio.Event()
        self.paused.set()

    def take(self, end: int | None = None) -> list[str]:
        """The frames of every due item from this connection's position (up to ``end``)."""
        feed, render, faults = self.feed, self.render, self.faults
        stop = feed.due() if end is None else end
        stop = min(stop, self.position + self.BATCH) if end is None else stop
        out: list[str] = []
        if faults is not None and faults.connection_stalled():
            self.position = stop
            feed.moved(self.id, stop)
            return out
        for position in range(self.position, stop):
            item = feed.item(position)
            texts = render(item)
            if not texts:
                continue
            if faults is None:
                out.extend(texts)
                continue
            if faults.stream_stalled(item.key):
                continue
            sequence = self.sequence() if self.sequence is not None else -1
            book = item.symbol >= 0
            for text in texts:
                faults.emit(out, text, item.key, item.sym, item.first_id, item.last_id, book, sequence)
        self.position = stop
        feed.moved(self.id, stop)
        return out

    async def run(self) -> None:
        try:
            while is_open(self.connection):
                await self.paused.wait()
                if not await self.feed.wait(self.position):
                    await self.connection.wait_closed()  # the feed has ended: stay open, idle
                    return
                out = self.take()
                if out:
                    self.stats.frames_sent += len(out)
                    if not await write_frames(self.connection, out):
                        return
                else:
                    await asyncio.sleep(0)
        finally:
            self.feed.leave(self.id)
