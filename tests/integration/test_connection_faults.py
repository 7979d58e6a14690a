"""The connection layer against a misbehaving venue: refused subscriptions, silent streams,
silent connections, throttled and slow REST. Each must be reported and recovered from, never a
silent hole. (Events go to an in-memory sink: these tests are about the feed, not Kafka.)"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from producers.book_sync import SyncState
from producers.connection import Backoff
from producers.feed import VenueFeed
from producers.venues import VENUES
from simulator.binance import BinanceSynthetic
from simulator.faults import Faults
from tickflow.events import BookUpdate, ConnectorState, ConnectorStatus, Event

FAST = Backoff(initial=0.2, maximum=1.0)


class Sink:
    def __init__(self) -> None:
        self.events: list[Event] = []

    def send(self, topic: str, event: Event) -> None:
        self.events.append(event)

    def statuses(self, state: ConnectorState | None = None) -> list[ConnectorStatus]:
        return [e for e in self.events if isinstance(e, ConnectorStatus) and (state is None or e.state is state)]


def run(
    faults: Faults,
    seconds: float,
    check: Callable[[VenueFeed, BinanceSynthetic, Sink], None],
    weight_window: float = 60.0,
    **options: object,
) -> None:
    async def scenario() -> None:
        async with BinanceSynthetic(symbols=3, seed=5, rate=150, faults=faults, weight_window=weight_window) as sim:
            sink = Sink()
            feed = VENUES["binance-spot"].make_feed(
                sim.symbols, sink, ws_url=sim.ws_url, rest_url=sim.rest_url, backoff=FAST, **options
            )
            stop = asyncio.Event()
            task = asyncio.create_task(feed.run(stop))
            await asyncio.sleep(seconds)
            stop.set()
            await asyncio.wait_for(task, 10)
            check(feed, sim, sink)

    asyncio.run(scenario())


def test_a_refused_subscription_is_an_error_event_naming_it_and_the_rest_goes_on() -> None:
    def check(feed: VenueFeed, sim: BinanceSynthetic, sink: Sink) -> None:
        errors = sink.statuses(ConnectorState.ERROR)
        assert [(e.channel, e.symbol) for e in errors] == [("aggTrade", "ETHUSDT")], errors
        assert "refused" in (errors[0].reason or "")
        assert feed.counters.refused_subscriptions == 1
        assert all(s.state is SyncState.LIVE for s in feed.syncs.values())  # the books were not refused

    run(Faults(refuse=("ethusdt@aggTrade",)), 3.0, check)


def test_a_silent_stream_is_subscribed_again_then_its_connection_reconnected() -> None:
    def check(feed: VenueFeed, sim: BinanceSynthetic, sink: Sink) -> None:
        resyncing = sink.statuses(ConnectorState.RESYNCING)
        assert ("depth@100ms", "BTCUSDT") in [(e.channel, e.symbol) for e in resyncing]
        reasons = [e.reason or "" for e in sink.statuses(ConnectorState.DISCONNECTED)]
        assert any("btcusdt@depth@100ms" in r and "even after subscribing again" in r for r in reasons), reasons
        assert len(sink.statuses(ConnectorState.CONNECTED)) >= 2 and feed.counters.resubscribed >= 1
        # The other books kept updating on the same connection meanwhile.
        eth = [e for e in sink.events if isinstance(e, BookUpdate) and e.venue_symbol == "ETHUSDT"]
        assert len(eth) > 50

    faults = Faults(stall_streams=("btcusdt@depth@100ms",), stall_streams_after=1.0)
    run(faults, 7.0, check, watchdog={"depth": 1.5})


def test_a_silent_connection_is_dropped_and_reconnected() -> None:
    def check(feed: VenueFeed, sim: BinanceSynthetic, sink: Sink) -> None:
        reasons = [e.reason for e in sink.statuses(ConnectorState.DISCONNECTED)]
        assert "no data for 2s" in reasons, reasons
        assert sim.stats.connections >= 2 and len(sink.statuses(ConnectorState.RECONNECTING)) >= 1

    run(Faults(stall_after=1.5), 6.0, check, silence_timeout=2.0)


def test_throttled_and_slow_rest_still_gets_every_book_live() -> None:
    """Every third REST call is answered 429 (the venue saying its whole window's weight is
    used), every call is slow: the feed waits as told, none is lost, every book goes live."""
    from producers.rate_limit import WeightedRateLimiter

    def check(feed: VenueFeed, sim: BinanceSynthetic, sink: Sink) -> None:
        assert sim.stats.rate_limited >= 1 and sim.stats.slowed_requests >= 4 and sim.stats.banned == 0
        assert feed.counters.rate_limited >= 1 and feed.limiter is not None and feed.limiter.back_offs >= 1
        assert all(s.state is SyncState.LIVE for s in feed.syncs.values())

    faults = Faults(rest_429_every=3, rest_retry_after=1, rest_latency=0.3)
    # A 3-second weight window on both sides, so waiting for the next one fits in a test.
    run(faults, 7.0, check, weight_window=3.0, limiter=WeightedRateLimiter(6000, 3.0))


def test_symbols_are_spread_over_connections_each_with_its_own_subscriptions() -> None:
    def check(feed: VenueFeed, sim: BinanceSynthetic, sink: Sink) -> None:
        assert [c.symbols for c in feed.connections] == [["BTCUSDT", "ETHUSDT"], ["BNBUSDT"]]
        assert sim.stats.connections == 2 and all(c.subscriptions.all_active for c in feed.connections)
        subscribed = sink.statuses(ConnectorState.SUBSCRIBED)
        assert sorted(e.connection_id for e in subscribed) == ["binance-spot-0", "binance-spot-1"]
        assert all(s.state is SyncState.LIVE for s in feed.syncs.values())

    run(Faults(), 3.0, check, symbols_per_connection=2)
