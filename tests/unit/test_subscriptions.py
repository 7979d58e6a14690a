"""Subscriptions by request: paced batches, replies matched, refusals reported, never silent."""

from __future__ import annotations

import json

from producers.stream import Control
from producers.subscriptions import SubscriptionManager, SubState
from producers.venues.binance.venue import BINANCE_SPOT, BinanceProtocol
from producers.venues.coinbase.venue import CoinbaseProtocol
from producers.watchdog import TrafficWatchdog


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def manager(protocol, keys, clock=None):  # type: ignore[no-untyped-def]
    activated: list[str] = []
    refused: list[tuple[str, str]] = []
    m = SubscriptionManager(
        protocol, keys, on_active=activated.extend, on_refused=lambda ks, why: refused.extend((k, why) for k in ks),
        clock=clock or Clock(),
    )  # fmt: skip
    return m, activated, refused


def drain(m: SubscriptionManager) -> list[dict]:
    out = []
    while (message := m.next_message()) is not None:
        out.append(json.loads(message))
    return out


def test_binance_requests_are_batched_within_the_limit_and_matched_by_id() -> None:
    protocol = BinanceProtocol(BINANCE_SPOT, ("depth@100ms", "aggTrade"))
    keys = [k for i in range(150) for k in protocol.keys(f"SYM{i}USDT")]  # 300 streams
    m, activated, refused = manager(protocol, keys)
    m.start()
    sent = drain(m)
    assert [len(r["params"]) for r in sent] == [200, 100]  # at most 200 streams a request
    assert {r["method"] for r in sent} == {"SUBSCRIBE"} and [r["id"] for r in sent] == [1, 2]
    m.on_control(Control(request_id=2))  # replies may come in any order: ids say which
    assert activated == sent[1]["params"] and not m.all_active
    m.on_control(Control(request_id=1))
    assert m.all_active and refused == []


def test_a_refused_request_is_split_until_the_refused_streams_stand_alone() -> None:
    """Binance refuses a whole request for one bad stream in it, without saying which."""
    protocol = BinanceProtocol(BINANCE_SPOT, ("depth@100ms",))
    keys = [f"s{i}usdt@depth@100ms" for i in range(8)]
    m, activated, refused = manager(protocol, keys)
    m.start()
    bad = "s5usdt@depth@100ms"
    while (message := m.next_message()) is not None:
        request = json.loads(message)
        error = '{"code":2,"msg":"Invalid request"}' if bad in request["params"] else None
        m.on_control(Control(request_id=request["id"], error=error))
    assert refused == [(bad, '{"code":2,"msg":"Invalid request"}')] and m.states[bad] is SubState.REFUSED
    assert sorted(activated) == sorted(k for k in keys if k != bad)
    assert m.counters.split == 3  # 8 -> 4 -> 2 -> 1: a binary search, not one request per stream


def test_a_request_without_reply_counts_as_refused_after_the_timeout() -> None:
    clock = Clock()
    protocol = BinanceProtocol(BINANCE_SPOT, ("aggTrade",))
    m, _, refused = manager(protocol, ["btcusdt@aggTrade"], clock)
    m.start()
    drain(m)
    clock.now = 5.0
    m.expire()
    assert refused == []
    clock.now = 10.5
    m.expire()
    assert refused == [("btcusdt@aggTrade", "no reply within 10s")]
    m.on_control(Control(request_id=1))  # a late reply changes nothing
    assert m.states["btcusdt@aggTrade"] is SubState.REFUSED


def test_resubscribe_sends_unsubscribe_then_subscribe_for_active_keys_only() -> None:
    protocol = BinanceProtocol(BINANCE_SPOT, ("depth@100ms", "aggTrade"))
    m, _, _ = manager(protocol, protocol.keys("BTCUSDT"))
    m.start()
    drain(m)
    m.on_control(Control(request_id=1))
    m.resubscribe(["btcusdt@depth@100ms", "nosuch@depth"])
    assert [(r["method"], r["params"]) for r in drain(m)] == [
        ("UNSUBSCRIBE", ["btcusdt@depth@100ms"]),
        ("SUBSCRIBE", ["btcusdt@depth@100ms"]),
    ]
    assert m.states["btcusdt@depth@100ms"] is SubState.PENDING and m.counters.resubscribed == 1


def test_coinbase_requests_are_one_channel_each_and_matched_by_the_venues_list() -> None:
    protocol = CoinbaseProtocol(("level2", "market_trades"))
    keys = protocol.connection_keys() + [k for p in ("BTC-USD", "ETH-USD", "NOPE-USD") for k in protocol.keys(p)]
    m, activated, refused = manager(protocol, keys)
    m.start()
    first = [json.loads(m.next_message() or "") for _ in range(3)]
    assert first == [
        {"type": "subscribe", "channel": "heartbeats"},
        {"type": "subscribe", "channel": "level2", "product_ids": ["BTC-USD", "ETH-USD", "NOPE-USD"]},
        {"type": "subscribe", "channel": "market_trades", "product_ids": ["BTC-USD", "ETH-USD", "NOPE-USD"]},
    ]
    active: set[str] = set()

    def venue(request: dict) -> None:
        """Coinbase: a request with an unknown product is refused whole (an error, then its
        unchanged list); else its subscriptions are added and the list sent."""
        if "NOPE-USD" in request.get("product_ids", []):
            m.on_control(Control(error="Failed to subscribe: NOPE-USD is not a valid product"))
        elif "product_ids" in request:
            active.update(f"{request['channel']}:{p}" for p in request["product_ids"])
        else:
            active.add(request["channel"])
        m.on_control(Control(active=frozenset(active)))

    for request in first:
        venue(request)
    while (message := m.next_message()) is not None:  # refused requests come back in halves
        venue(json.loads(message))
    assert sorted(activated) == sorted(k for k in keys if "NOPE" not in k)
    assert sorted(k for k, _ in refused) == ["level2:NOPE-USD", "market_trades:NOPE-USD"]
    assert "not a valid product" in refused[0][1] and m.counters.split == 4


def test_watchdog_resubscribes_a_silent_channel_then_reconnects() -> None:
    dog = TrafficWatchdog(lambda key: 10.0 if key.endswith("kline_1m") else None)
    s = 1_000_000
    dog.activated(["btcusdt@kline_1m", "btcusdt@aggTrade"], 0)
    dog.last_seen["btcusdt@kline_1m"] = 5 * s
    assert dog.check(14 * s).resubscribe == []
    verdict = dog.check(16 * s)
    assert verdict.resubscribe == ["btcusdt@kline_1m"] and not verdict.reconnect  # trades: not watched
    dog.activated(["btcusdt@kline_1m"], 17 * s)  # the venue confirmed the new subscription
    assert not dog.check(20 * s).reconnect and dog.check(20 * s).resubscribe == []
    verdict = dog.check(27 * s)
    assert verdict.reconnect and "even after subscribing again" in verdict.reason


def test_watchdog_calms_down_when_data_comes_back() -> None:
    dog = TrafficWatchdog(lambda key: 10.0)
    s = 1_000_000
    dog.activated(["a"], 0)
    assert dog.check(11 * s).resubscribe == ["a"]
    dog.last_seen["a"] = 12 * s
    assert not dog.check(25 * s).reconnect
    assert dog.check(25 * s).resubscribe == ["a"]  # silent again for a full timeout: the cycle restarts
