"""The venues' private user streams behind one interface: order updates, fills and balances as
they happen, for the order router.

A stream is a hint, never the truth: messages are lost while a connection is down (and a venue
may drop one without a disconnect). So ``run`` calls ``on_connected`` after every (re)connect,
once the stream is live, and the caller reconciles with REST from there; everything the stream
says after that is newer than what the caller's REST reads will see.

``VenueUserStream`` is the loop every venue shares: connect (a venue's ``prepare`` gets the URL:
Binance USD-M a listenKey, the others their endpoint), subscribe (``opened``: Binance spot's
signed WebSocket API subscription, Coinbase's JWT), read, keep alive beside it (``maintain``:
Binance USD-M's PUT every 30 minutes), reconnect with capped jittered backoff. A venue
module only turns its frames into ``Parsed``; a frame it cannot read is counted and skipped.
The connection is ``producers/venues/ws1.py``'s: each frame is parsed and delivered as it
arrives, inside the connection's ``data_received`` (no task, queue or await per frame).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol

import msgspec

from producers.connection import Backoff
from producers.venues import ws1
from producers.venues.trading import VenueOrder
from tickflow.errors import MalformedFrame

log = logging.getLogger(__name__)


class Fill(msgspec.Struct, frozen=True, gc=False):
    trade_id: str | None
    price: Decimal | None  # Coinbase's user channel gives no per-fill price: None there
    size: Decimal
    fee: Decimal | None
    fee_asset: str | None


class OrderUpdate(msgspec.Struct, frozen=True, gc=False):
    symbol: str  # venue symbol
    order: VenueOrder  # the order after this update: status, cumulative filled, avg price, exchange_ts (µs)
    fill: Fill | None  # the fill this update reports, if any


class BalanceUpdate(msgspec.Struct, frozen=True, gc=False):
    asset: str
    free: Decimal
    locked: Decimal
    exchange_ts: int | None  # µs


OnOrder = Callable[[OrderUpdate], None]
OnBalance = Callable[[BalanceUpdate], None]


class UserStream(Protocol):
    async def run(self, on_order: OnOrder, on_balance: OnBalance, on_connected: Callable[[], None],
                  stop: asyncio.Event) -> None:  # fmt: skip
        """Keep the private stream up until stop is set: connect and subscribe (a signed subscription, a
        listenKey, a JWT), keep it alive (Binance USD-M: PUT the listenKey every 30 min), replace the
        connection when the venue ends the stream (listenKeyExpired, eventStreamTerminated, serverShutdown),
        reconnect with capped jittered backoff, call on_connected after every (re)connect (the caller then
        reconciles with REST, since messages may have been missed while down). Malformed messages are counted
        and skipped, never raised."""
        ...


@dataclass
class UserStreamCounters:
    #: Frames received, and those that could not be read (skipped).
    messages: int = 0
    malformed: int = 0
    #: Connections that went live, and reconnects after one ended or failed.
    connections: int = 0
    reconnects: int = 0
    #: Gaps in a venue's message sequence (Coinbase ``sequence_num``): messages lost in between.
    gaps: int = 0
    #: A caller's callback raised (logged; the stream carries on).
    callback_errors: int = 0
    last_error: str | None = None


class Parsed(msgspec.Struct, gc=False):
    """What one frame said."""

    orders: list[OrderUpdate] = msgspec.field(default_factory=list)
    balances: list[BalanceUpdate] = msgspec.field(default_factory=list)
    #: The stream is live from this frame on (Coinbase: the snapshot arrived).
    live: bool = False
    #: Why this connection must be replaced (Binance ``listenKeyExpired``, a refused subscription...).
    reconnect: str | None = None


#: What a frame that is not what the venue documents raises while being read.
MALFORMED = (ValueError, KeyError, TypeError, IndexError, AttributeError, ArithmeticError, MalformedFrame)


class VenueUserStream:
    """The reconnect loop; a venue subclasses it with ``prepare``, ``opened``, ``parse`` (and maybe
    ``maintain`` and ``aclose``)."""

    venue = ""

    def __init__(self, *, backoff: Backoff | None = None, open_timeout: float = 10.0,
                 ping_interval: float | None = 20.0) -> None:  # fmt: skip
        self.backoff = backoff or Backoff(initial=0.5, maximum=30.0)
        self.open_timeout = open_timeout
        #: Our own pings: a half-open connection is noticed within two intervals even when the
        #: account is quiet and the venue has nothing to send.
        self.ping_interval = ping_interval
        self.counters = UserStreamCounters()
        #: Whether the stream is live now (its status shows a stream that is down).
        self.live = False

    # --- venue hooks ------------------------------------------------------------------------

    async def prepare(self) -> str:
        """What must happen before connecting; the URL to connect to."""
        raise NotImplementedError

    async def opened(self, ws: ws1.WsConnection) -> bool:
        """Just connected: subscribe if the venue needs it. True if the stream is live already."""
        return True

    def parse(self, frame: str | bytes) -> Parsed:
        """One frame; raises one of ``MALFORMED`` when it is not what the venue documents."""
        raise NotImplementedError

    async def maintain(self) -> str:
        """Runs while a connection is open; returning a reason replaces the connection."""
        await asyncio.Event().wait()
        return ""

    def disconnected(self) -> None:
        """A connection ended (per-connection state is stale now)."""

    async def aclose(self) -> None:
        """``run`` is over: release what the stream holds at the venue."""

    # --- the loop ---------------------------------------------------------------------------

    async def run(self, on_order: OnOrder, on_balance: OnBalance, on_connected: Callable[[], None],
                  stop: asyncio.Event) -> None:  # fmt: skip
        attempt = 0
        try:
            while not stop.is_set():
                live_before = self.counters.connections
                reason = await self._session(on_order, on_balance, on_connected, stop)
                self.live = False
                self.disconnected()
                if stop.is_set():
                    break
                attempt = 1 if self.counters.connections > live_before else attempt + 1
                self.counters.reconnects += 1
                self.counters.last_error = reason
                delay = self.backoff.delay(attempt)
                log.warning("%s user stream: %s; reconnecting in %.1fs", self.venue, reason, delay)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
        finally:
            await self.aclose()

    async def _session(self, on_order: OnOrder, on_balance: OnBalance, on_connected: Callable[[], None],
                       stop: asyncio.Event) -> str:  # fmt: skip
        """One connection, until it ends; why it ended."""
        try:
            url = await self.prepare()
            ws = await ws1.connect(url, open_timeout=self.open_timeout, ping_interval=self.ping_interval,
                                   ping_timeout=self.ping_interval, max_size=2**22)  # fmt: skip
            try:
                live = await self.opened(ws)
                if live:
                    self._went_live(on_connected)
                # Frames reach ``parse`` from inside the connection's ``data_received`` from here on;
                # ``ended`` is resolved by the frame that ends the session (or the parser's failure).
                ended: asyncio.Future[str] = asyncio.get_running_loop().create_future()
                ws.start(self._reader(ended, on_order, on_balance, on_connected, live))
                watchers = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(self.maintain())]
                reader = asyncio.ensure_future(self._read(ws, ended))
                try:
                    done, _ = await asyncio.wait([reader, *watchers], return_when=asyncio.FIRST_COMPLETED)
                finally:
                    if not ended.done():
                        ended.cancel()  # nothing is delivered any more, as when the reader stopped
                    elif not ended.cancelled():
                        ended.exception()  # retrieved here if the reader did not get to it
                    for task in (reader, *watchers):
                        task.cancel()
                    await asyncio.gather(reader, *watchers, return_exceptions=True)
                if reader in done and not reader.cancelled() and reader.exception() is None:
                    return reader.result()
                if watchers[1] in done and not watchers[1].cancelled():
                    if watchers[1].exception() is not None:
                        return f"keepalive failed: {watchers[1].exception()!r}"
                    return watchers[1].result()
                if reader in done and reader.exception() is not None:
                    return f"reader failed: {reader.exception()!r}"
                return "stopped"
            finally:
                await ws.close()
        except (OSError, TimeoutError) as exc:  # ws1's errors are OSErrors: connect, TLS, handshake, send
            return f"{type(exc).__name__}: {exc}"
        except Exception as exc:  # a venue's REST step (listenKey) failed: back off and try again
            return f"{type(exc).__name__}: {exc}"

    def _reader(self, ended: asyncio.Future[str], on_order: OnOrder, on_balance: OnBalance,
                on_connected: Callable[[], None], live: bool) -> Callable[[bytes], None]:  # fmt: skip
        """The connection's ``on_message``: each frame parsed and delivered as it comes, in
        ``data_received`` (no task or queue per frame)."""

        def on_frame(frame: bytes) -> None:
            nonlocal live
            if ended.done():  # the session is ending: what still comes belongs to no one
                return
            self.counters.messages += 1
            try:
                parsed = self.parse(frame)
            except MALFORMED as exc:
                self.counters.malformed += 1
                log.warning("%s user stream: unreadable frame skipped (%s): %r", self.venue, exc, frame[:200])
                return
            except Exception as exc:  # a parser's bug: this connection ends ("reader failed")
                ended.set_exception(exc)
                return
            if parsed.live and not live:
                live = True
                self._went_live(on_connected)
            self._deliver(parsed, on_order, on_balance)
            if parsed.reconnect is not None:
                ended.set_result(parsed.reconnect)

        return on_frame

    @staticmethod
    async def _read(ws: ws1.WsConnection, ended: asyncio.Future[str]) -> str:
        """Until a frame ends the session or the connection ends; why."""
        closing = asyncio.ensure_future(ws.closed())
        try:
            await asyncio.wait([closing, ended], return_when=asyncio.FIRST_COMPLETED)
        finally:
            closing.cancel()
        if ended.done():
            return ended.result()  # raises the parser's failure
        return f"connection closed ({ws.close_code or 'no close frame'})"

    def _went_live(self, on_connected: Callable[[], None]) -> None:
        self.live = True
        self.counters.connections += 1
        self._callback(on_connected)

    def _deliver(self, parsed: Parsed, on_order: OnOrder, on_balance: OnBalance) -> None:
        for update in parsed.orders:
            self._callback(on_order, update)
        for balance in parsed.balances:
            self._callback(on_balance, balance)

    def _callback(self, callback: Callable[..., None], *args: object) -> None:
        try:
            callback(*args)
        except Exception:  # the caller's bug must not cost the stream its connection
            self.counters.callback_errors += 1
            log.exception("%s user stream: callback %r failed", self.venue, callback)


def decimal_or_none(text: object) -> Decimal | None:
    """A venue's decimal string; None when absent or zero (the venues' "no value")."""
    if text is None or text == "":
        return None
    value = Decimal(str(text))
    return value if value else None
