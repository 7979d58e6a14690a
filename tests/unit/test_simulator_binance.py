"""Simulated Binance (synthetic market) against a plain WebSocket / HTTP client."""

from __future__ import annotations

import asyncio
import itertools
import json
import time

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from simulator.binance import BinanceSynthetic
from tests.unit.simulator_helpers import binance_book, collect, data

START = 1_700_000_000_000
pytestmark = pytest.mark.timeout(60)
STREAMS = ("depth@100ms", "aggTrade", "trade", "bookTicker", "kline_1m")


def url(sim: BinanceSynthetic, streams: tuple[str, ...] = STREAMS, symbols: list[str] | None = None) -> str:
    names = [f"{s.lower()}@{c}" for s in (symbols or sim.symbols) for c in streams]
    return f"{sim.ws_url}/stream?streams={'/'.join(names)}"


def full_speed(usdm: bool = False, frames: int = 6000, **kwargs: object) -> BinanceSynthetic:
    return BinanceSynthetic(4, usdm=usdm, seed=2, rate=0, frames=frames, start_ms=START, **kwargs)  # type: ignore[arg-type]


def test_spot_frames_have_binances_shapes() -> None:
    async def scenario() -> list[str]:
        async with full_speed() as sim, connect(url(sim)) as ws:
            return await collect(ws)

    frames = asyncio.run(scenario())
    assert len(frames) == 6000
    keys = {
        "depth@100ms": ["e", "E", "s", "U", "u", "b", "a"],
        "aggTrade": ["e", "E", "s", "a", "p", "q", "f", "l", "T", "m", "M"],
        "trade": ["e", "E", "s", "t", "p", "q", "T", "m", "M"],
        "bookTicker": ["u", "s", "b", "B", "a", "A"],
        "kline_1m": ["e", "E", "s", "k"],
    }
    for stream, fields in keys.items():
        payloads = data(frames, "@" + stream)
        assert payloads, stream
        assert all(list(p) == fields for p in payloads), stream
    depth = data(frames, "@depth@100ms")[0]
    assert depth["e"] == "depthUpdate" and depth["s"] == depth["s"].upper()
    price, size = (depth["b"] or depth["a"])[0]
    assert len(price.split(".")[1]) == 8 and len(size.split(".")[1]) == 8  # "0.01000000"-style
    kline = data(frames, "@kline_1m")[0]["k"]
    assert kline["i"] == "1m" and kline["T"] - kline["t"] == 59_999
    assert list(kline) == ["t", "T", "s", "i", "f", "L", "o", "c", "h", "l", "v", "n", "x", "q", "V", "Q", "B"]


def test_usdm_frames_have_binances_shapes_and_shared_ids() -> None:
    async def scenario() -> list[str]:
        async with full_speed(usdm=True) as sim, connect(url(sim, ("depth@100ms", "aggTrade", "bookTicker"))) as ws:
            return await collect(ws)

    frames = asyncio.run(scenario())
    depth = data(frames, "@depth@100ms")
    assert all(list(d) == ["e", "E", "T", "s", "U", "u", "pu", "b", "a"] for d in depth)
    assert all(list(d) == ["e", "u", "s", "b", "B", "a", "A", "T", "E"] for d in data(frames, "@bookTicker"))
    assert all(list(d) == ["e", "E", "a", "s", "p", "q", "f", "l", "T", "m"] for d in data(frames, "@aggTrade"))
    us = [d["u"] for d in depth]
    assert us == sorted(us) and len(set(us)) == len(us)  # one counter for every symbol
    for symbol in {d["s"] for d in depth}:
        mine = [d for d in depth if d["s"] == symbol]
        assert all(b["pu"] == a["u"] for a, b in itertools.pairwise(mine))
        assert any(b["U"] > a["u"] + 1 for a, b in itertools.pairwise(mine))  # ids jump between symbols


@pytest.mark.parametrize("usdm", [False, True], ids=["spot", "usdm"])
def test_snapshot_bridges_and_updates_rebuild_the_true_book(usdm: bool) -> None:
    prefix = "/fapi/v1" if usdm else "/api/v3"

    async def scenario() -> tuple[list[str], dict, dict, dict]:
        paced = BinanceSynthetic(4, usdm=usdm, seed=2, rate=3000, duration=1.5, start_ms=START)
        async with paced as sim, httpx.AsyncClient() as http:
            symbol = sim.symbols[1]
            async with connect(url(sim, ("depth@100ms",), [symbol])) as ws:
                frames = await collect(ws, limit=50)  # the stream runs: fetch the snapshot mid-way
                response = await http.get(f"{sim.rest_url}{prefix}/depth", params={"symbol": symbol, "limit": 1000})
                frames += await collect(ws)
            return frames, response.json(), sim.true_book(symbol), dict(response.headers)

    frames, snapshot, truth, headers = asyncio.run(scenario())
    assert int(headers["x-mbx-used-weight-1m"]) == (20 if usdm else 50)
    if usdm:
        assert list(snapshot) == ["lastUpdateId", "E", "T", "bids", "asks"]
    book = binance_book(snapshot, data(frames, "@depth@100ms"), usdm)
    assert book == truth
    assert 40 <= len(truth["bids"]) <= 250 and len(truth["asks"]) >= 40


def test_subscribe_unsubscribe_list_and_binances_error_replies() -> None:
    async def scenario() -> list[dict]:
        async with full_speed(frames=200) as sim, connect(f"{sim.ws_url}/ws") as ws:
            s = sim.symbols[0].lower()
            replies = []
            for request in (
                {"method": "SUBSCRIBE", "params": [f"{s}@aggTrade", f"{s}@depth"], "id": 1},
                {"method": "LIST_SUBSCRIPTIONS", "id": 2},
                {"method": "UNSUBSCRIBE", "params": [f"{s}@depth"], "id": 3},
                {"method": "LIST_SUBSCRIPTIONS", "id": 4},
                {"method": "SUBSCRIBE", "params": [f"{s}@nonsense"], "id": 5},
                {"method": "SUBSCRIBE", "params": ["zzzusdt@aggTrade"], "id": 6},
                {"method": "FOO", "id": 7},
            ):
                await ws.send(json.dumps(request))
                await asyncio.sleep(0.21)  # under 5 messages per second
            await ws.send("{not json")
            await asyncio.sleep(0.21)
            await ws.send(json.dumps({"method": "GET_PROPERTY", "params": ["combined"], "id": 8}))
            for frame in await collect(ws, idle=0.5):
                message = json.loads(frame)
                if "id" in message or "error" in message:
                    replies.append(message)
            return replies

    replies = asyncio.run(scenario())
    assert replies[0] == {"result": None, "id": 1}
    assert replies[1]["id"] == 2 and sorted(replies[1]["result"]) == sorted(
        [r for r in replies[1]["result"] if r.endswith(("@aggTrade", "@depth"))]
    )
    assert len(replies[1]["result"]) == 2 and replies[2] == {"result": None, "id": 3}
    assert replies[3]["result"] == [replies[1]["result"][0]]
    assert replies[4] == {"error": {"code": 2, "msg": "Invalid request: invalid stream"}, "id": 5}
    assert replies[5]["error"]["code"] == 2 and replies[5]["id"] == 6
    assert replies[6]["error"]["code"] == 2 and "unknown variant `FOO`" in replies[6]["error"]["msg"]
    assert replies[7]["error"]["code"] == 3 and replies[7]["error"]["msg"].startswith("Invalid JSON")
    assert replies[8] == {"result": False, "id": 8}  # /ws: raw payloads, not combined


def test_raw_stream_sends_bare_payloads() -> None:
    async def scenario() -> list[str]:
        async with full_speed(frames=3000) as sim, connect(f"{sim.ws_url}/ws/btcusdt@aggTrade") as ws:
            return await collect(ws)

    frames = [json.loads(f) for f in asyncio.run(scenario())]
    assert frames and all(f["e"] == "aggTrade" and "stream" not in f for f in frames)


def test_more_than_five_messages_a_second_closes_a_spot_connection() -> None:
    async def scenario() -> tuple[int | None, int]:
        async with full_speed(frames=100) as sim, connect(f"{sim.ws_url}/ws") as ws:
            try:
                for n in range(10):
                    await ws.send(json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": n}))
                await collect(ws, idle=1.0)
            except ConnectionClosed:
                pass
            await ws.wait_closed()
            return ws.close_code, sim.stats.limit_closes

    code, closes = asyncio.run(scenario())
    assert code == 1008 and closes == 1


def test_more_than_1024_streams_are_refused() -> None:
    async def scenario() -> tuple[dict, int | None]:
        async with BinanceSynthetic(300, seed=1, rate=0, frames=10, start_ms=START) as sim:
            names = [f"{s.lower()}@{c}" for s in sim.symbols for c in STREAMS][:1025]
            async with connect(f"{sim.ws_url}/ws") as ws:
                await ws.send(json.dumps({"method": "SUBSCRIBE", "params": names, "id": 1}))
                reply = json.loads(await ws.recv())
            async with connect(f"{sim.ws_url}/stream?streams={'/'.join(names)}") as ws:
                await ws.wait_closed()
                return reply, ws.close_code

    reply, code = asyncio.run(scenario())
    assert reply["error"]["code"] == 2 and reply["id"] == 1
    assert code == 1008


def test_request_weight_429_with_retry_after_then_418_when_the_client_keeps_going() -> None:
    async def scenario() -> list[httpx.Response]:
        async with full_speed(frames=100, weight_limit=100, weight_window=30.0) as sim, httpx.AsyncClient() as http:
            symbol = sim.symbols[0]
            return [
                await http.get(f"{sim.rest_url}/api/v3/depth", params={"symbol": symbol, "limit": 1000})
                for _ in range(8)
            ]

    responses = asyncio.run(scenario())
    assert [r.status_code for r in responses] == [200, 200, 429, 429, 429, 429, 418, 418]
    assert [r.headers["x-mbx-used-weight-1m"] for r in responses[:2]] == ["50", "100"]
    throttled, banned = responses[2], responses[6]
    assert throttled.json()["code"] == -1003 and "current limit is 100" in throttled.json()["msg"]
    assert 1 <= int(throttled.headers["retry-after"]) <= 30
    assert banned.json()["code"] == -1003 and "IP banned until" in banned.json()["msg"]
    assert int(banned.headers["retry-after"]) == 120


def test_exchange_info_has_the_filters_clients_read() -> None:
    async def scenario() -> tuple[dict, dict, int]:
        async with full_speed(frames=10) as spot, full_speed(usdm=True, frames=10) as usdm, httpx.AsyncClient() as h:
            a = (await h.get(f"{spot.rest_url}/api/v3/exchangeInfo")).json()
            b = (await h.get(f"{usdm.rest_url}/fapi/v1/exchangeInfo")).json()
            missing = (await h.get(f"{spot.rest_url}/api/v3/depth", params={"symbol": "NOPE"})).json()
            return a, b, missing["code"]

    spot, usdm, code = asyncio.run(scenario())
    assert code == -1121
    assert spot["rateLimits"][0] == {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1,
                                     "limit": 6000}  # fmt: skip
    assert usdm["rateLimits"][0]["limit"] == 2400 and usdm["futuresType"] == "U_MARGINED"
    for info, notional in ((spot, ("NOTIONAL", "minNotional")), (usdm, ("MIN_NOTIONAL", "notional"))):
        assert len(info["symbols"]) == 4
        for symbol in info["symbols"]:
            assert symbol["status"] == "TRADING" and symbol["symbol"] == symbol["baseAsset"] + symbol["quoteAsset"]
            filters = {f["filterType"]: f for f in symbol["filters"]}
            assert {"tickSize", "minPrice"} <= set(filters["PRICE_FILTER"])
            assert {"stepSize", "minQty"} <= set(filters["LOT_SIZE"])
            assert notional[1] in filters[notional[0]]
    tick = spot["symbols"][0]["filters"][0]["tickSize"]
    assert len(tick.split(".")[1]) == 8


def test_same_seed_same_frames() -> None:
    async def scenario() -> list[str]:
        async with full_speed(frames=3000) as sim, connect(url(sim)) as ws:
            return await collect(ws)

    assert asyncio.run(scenario()) == asyncio.run(scenario())


def test_paced_rate_is_kept() -> None:
    async def scenario() -> tuple[int, float]:
        async with BinanceSynthetic(3, seed=1, rate=200) as sim, connect(url(sim, ("depth@100ms",))) as ws:
            started = time.monotonic()
            frames = await collect(ws, idle=0.3, limit=200)
            return len(frames), time.monotonic() - started

    count, seconds = asyncio.run(scenario())
    assert count == 200 and 0.5 < seconds < 2.5  # 200 diffs at ~200 events/s (most events change the book)


def test_wall_clock_pins_event_times_to_when_frames_fall_due() -> None:
    """Pinned, a diff's ``E`` is when it was sent (give or take the clock's whole milliseconds);
    not pinned, the market's clock starts at construction and runs from the first client, so
    ``E`` trails the wall clock by the time the server waited for that client."""

    async def lateness(wall_clock: bool) -> list[float]:
        """Receive time minus ``E`` (ms) of every diff for half a second."""
        async with BinanceSynthetic(3, seed=2, rate=2000, duration=60, wall_clock=wall_clock) as sim:
            await asyncio.sleep(0.5)  # a server up for a while before its first client
            async with connect(url(sim, ("depth@100ms",))) as ws:
                out: list[float] = []
                deadline = time.monotonic() + 0.5
                while time.monotonic() < deadline:
                    event = json.loads(await ws.recv())["data"]["E"]
                    out.append(time.time() * 1000 - event)
                return out

    pinned, unpinned = asyncio.run(lateness(True)), asyncio.run(lateness(False))
    assert len(pinned) > 300
    assert min(pinned) > -5  # never from the future: E is at most ~1.5 ms after its due time
    assert sorted(pinned)[len(pinned) // 2] < 100  # a loaded machine delays some frames, not most
    assert min(unpinned) > 400


def test_wall_clock_needs_a_paced_feed_at_speed_one() -> None:
    with pytest.raises(ValueError, match="paced"):
        BinanceSynthetic(2, seed=1, rate=0, frames=100, wall_clock=True)
    with pytest.raises(ValueError, match="speed 1"):
        BinanceSynthetic(2, seed=1, rate=100, speed=2.0, wall_clock=True)
