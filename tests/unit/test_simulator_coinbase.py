"""Simulated Coinbase Advanced Trade (synthetic market) against a plain WebSocket / HTTP client."""

from __future__ import annotations

import asyncio
import json
import re
from decimal import Decimal

import httpx
import pytest
from websockets.asyncio.client import connect

from simulator.coinbase import CoinbaseSynthetic
from simulator.faults import Faults
from tests.unit.simulator_helpers import collect, collect_for

pytestmark = pytest.mark.timeout(60)

START = 1_700_000_000_000
RFC3339_NANOS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z$")


def subscribe(channel: str, products: list[str] | None = None) -> str:
    message: dict = {"type": "subscribe", "channel": channel, "jwt": "ignored-for-public-channels"}
    if products is not None:
        message["product_ids"] = products
    return json.dumps(message)


def rebuild(messages: list[dict], product: str) -> dict[str, dict[str, str]]:
    book: dict[str, dict[str, str]] = {"bid": {}, "offer": {}}
    for message in messages:
        if message.get("channel") != "l2_data":
            continue
        for event in message["events"]:
            if event["product_id"] != product:
                continue
            if event["type"] == "snapshot":
                book = {"bid": {}, "offer": {}}
            for update in event["updates"]:
                if Decimal(update["new_quantity"]) == 0:
                    book[update["side"]].pop(update["price_level"], None)
                else:
                    book[update["side"]][update["price_level"]] = update["new_quantity"]
    return {"bids": book["bid"], "asks": book["offer"]}


def test_channels_shapes_sequence_and_a_book_equal_to_the_venues() -> None:
    async def scenario() -> tuple[list[dict], dict, str]:
        sim = CoinbaseSynthetic(3, seed=4, rate=2000, duration=1.0, start_ms=START, heartbeat_interval=0.2)
        async with sim, connect(sim.ws_url) as ws:
            product = sim.symbols[0]
            for channel in ("level2", "market_trades", "ticker", "candles"):
                await ws.send(subscribe(channel, [product]))
            await ws.send(subscribe("heartbeats"))
            frames = await collect_for(ws, 1.8)  # the feed's 1 s, and heartbeats after it
            return [json.loads(f) for f in frames], sim.true_book(product), product

    messages, truth, product = asyncio.run(scenario())
    assert [m["sequence_num"] for m in messages] == list(range(len(messages)))  # every message, every channel
    channels = {m["channel"] for m in messages}
    assert channels == {"l2_data", "market_trades", "ticker", "candles", "heartbeats", "subscriptions"}
    for m in messages:
        assert list(m) == ["channel", "client_id", "timestamp", "sequence_num", "events"]
        assert RFC3339_NANOS.match(m["timestamp"]), m["timestamp"]
    first = messages[0]
    assert first["channel"] == "l2_data" and first["events"][0]["type"] == "snapshot"
    assert len(first["events"][0]["updates"]) > 80  # the whole book
    update = next(m for m in messages if m["channel"] == "l2_data" and m["events"][0]["type"] == "update")
    level = update["events"][0]["updates"][0]
    assert list(level) == ["side", "event_time", "price_level", "new_quantity"] and level["side"] in ("bid", "offer")
    last_confirmation = [m for m in messages if m["channel"] == "subscriptions"][-1]
    assert last_confirmation["events"] == [{"subscriptions": {"level2": [product], "market_trades": [product],
                                                              "ticker": [product], "candles": [product],
                                                              "heartbeats": ["heartbeats"]}}]  # fmt: skip
    trade = next(m for m in messages if m["channel"] == "market_trades" and m["events"][0]["type"] == "update")
    assert list(trade["events"][0]["trades"][0]) == ["trade_id", "product_id", "price", "size", "side", "time"]
    ticker = next(m for m in messages if m["channel"] == "ticker")["events"][0]["tickers"][0]
    assert {"best_bid", "best_bid_quantity", "best_ask", "best_ask_quantity", "price", "volume_24_h"} <= set(ticker)
    candle = next(m for m in messages if m["channel"] == "candles")["events"][0]["candles"][0]
    assert int(candle["start"]) % 300 == 0 and list(candle)[-1] == "product_id"
    beats = [m["events"][0]["heartbeat_counter"] for m in messages if m["channel"] == "heartbeats"]
    assert beats[:3] == [1, 2, 3]
    assert rebuild(messages, product) == truth
    prices = list(truth["bids"]) + list(truth["asks"])
    assert all(not p.endswith("0") or "." not in p for p in prices)  # plain decimals, no padding


def test_full_speed_snapshot_and_updates_equal_the_true_book() -> None:
    async def scenario() -> tuple[list[dict], dict, dict, str]:
        sim = CoinbaseSynthetic(4, seed=4, rate=0, frames=20_000, start_ms=START)
        async with sim, connect(sim.ws_url) as ws:
            product = sim.symbols[2]
            await ws.send(subscribe("level2", [product]))
            frames = await collect(ws)
            return [json.loads(f) for f in frames], sim.true_book(product), sim.stats.__dict__, product

    messages, truth, _, product = asyncio.run(scenario())
    assert rebuild(messages, product) == truth and len(messages) > 1000
    assert [m["sequence_num"] for m in messages] == list(range(len(messages)))


def test_errors_for_unknown_products_and_channels_and_unsubscribe() -> None:
    async def scenario() -> list[dict]:
        async with CoinbaseSynthetic(2, seed=1, rate=0, frames=10) as sim, connect(sim.ws_url) as ws:
            product = sim.symbols[0]
            unsubscribe = json.dumps({"type": "unsubscribe", "channel": "ticker", "product_ids": [product]})
            for message in (subscribe("level2", ["NOPE-USD"]), subscribe("level9", [product]), "{oops",
                            subscribe("ticker", [product]), unsubscribe):  # fmt: skip
                await ws.send(message)
            return [json.loads(f) for f in await collect(ws)]

    messages = asyncio.run(scenario())
    errors = [m for m in messages if m.get("type") == "error"]
    assert len(errors) == 3 and all(set(e) == {"type", "message"} for e in errors)
    assert "NOPE-USD" in errors[0]["message"] and "level9" in errors[1]["message"]
    confirmations = [m["events"][0]["subscriptions"] for m in messages if m.get("channel") == "subscriptions"]
    assert confirmations[0] == {"ticker": ["BTC-USD"]} and confirmations[-1] == {}


def test_no_subscribe_in_time_closes_the_connection() -> None:
    async def scenario() -> tuple[int | None, int]:
        sim = CoinbaseSynthetic(1, seed=1, rate=0, frames=10, subscribe_timeout=0.3)
        async with sim, connect(sim.ws_url) as ws:
            await ws.wait_closed()
            return ws.close_code, sim.stats.limit_closes

    assert asyncio.run(scenario()) == (1000, 1)


def test_dropped_l2_messages_leave_sequence_gaps_that_are_recorded() -> None:
    async def scenario() -> tuple[list[dict], CoinbaseSynthetic]:
        sim = CoinbaseSynthetic(3, seed=2, rate=0, frames=6000, faults=Faults(drop_depth_every=9, refuse=("ETH-USD",)))
        async with sim, connect(sim.ws_url) as ws:
            await ws.send(subscribe("level2", ["BTC-USD", "BNB-USD"]))
            await ws.send(subscribe("level2", ["ETH-USD"]))
            return [json.loads(f) for f in await collect(ws)], sim

    messages, sim = asyncio.run(scenario())
    seen = {m["sequence_num"] for m in messages if "sequence_num" in m}
    missing = set(range(max(seen) + 1)) - seen
    drops = sim.stats.of_kind("drop")
    assert missing == {d.sequence for d in drops} and len(drops) > 50
    assert sim.stats.refused == ["ETH-USD"]
    assert any(m.get("type") == "error" and "ETH-USD" in m["message"] for m in messages)


def test_rest_products_book_and_public_rate_limit() -> None:
    async def scenario() -> list[httpx.Response]:
        sim = CoinbaseSynthetic(3, seed=1, rate=0, frames=100, public_rate=5)
        async with sim, httpx.AsyncClient(base_url=f"{sim.rest_url}/api/v3/brokerage/market") as http:
            return [
                await http.get("/products"),
                await http.get("/products/BTC-USD"),
                await http.get("/product_book", params={"product_id": "BTC-USD", "limit": 5}),
                await http.get("/products/NOPE-USD"),
                await http.get("/products"),
                await http.get("/products"),
            ]

    r = asyncio.run(scenario())
    assert [x.status_code for x in r] == [200, 200, 200, 404, 200, 429]
    products = r[0].json()
    assert products["num_products"] == 3 and r[1].json() == products["products"][0]
    product = r[1].json()
    for field in ("product_id", "base_increment", "quote_increment", "price_increment", "base_min_size",
                  "quote_min_size", "status", "base_currency_id", "quote_currency_id", "product_type"):  # fmt: skip
        assert field in product
    assert product["status"] == "online" and product["product_type"] == "SPOT"
    book = r[2].json()["pricebook"]
    assert len(book["bids"]) == len(book["asks"]) == 5
    assert Decimal(book["bids"][0]["price"]) < Decimal(book["asks"][0]["price"])
    assert r[3].json()["error"] == "NOT_FOUND"
    assert r[5].json()["error"] == "RATE_LIMIT_EXCEEDED" and r[5].headers["retry-after"] == "1"
