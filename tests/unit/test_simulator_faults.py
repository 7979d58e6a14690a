"""Every injected fault does what it says on the wire and is recorded with the ids a client sees."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time

import httpx
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from simulator.binance import BinanceSynthetic, Faults
from tests.unit.simulator_helpers import collect, data

START = 1_700_000_000_000


def depth_frames(faults: Faults, frames: int = 8000) -> tuple[list[str], BinanceSynthetic]:
    async def scenario() -> tuple[list[str], BinanceSynthetic]:
        async with BinanceSynthetic(4, seed=9, rate=0, frames=frames, start_ms=START, faults=faults) as sim:
            names = "/".join(f"{s.lower()}@depth@100ms" for s in sim.symbols)
            async with connect(f"{sim.ws_url}/stream?streams={names}") as ws:
                return await collect(ws), sim

    return asyncio.run(scenario())


def test_dropped_diffs_are_gaps_and_every_gap_is_recorded() -> None:
    frames, sim = depth_frames(Faults(drop_depth_every=10))
    diffs = data(frames, "@depth@100ms")
    missing: set[tuple[str, int]] = set()  # every update id the client never saw, by symbol
    last: dict[str, int] = {}
    for diff in diffs:
        if diff["s"] in last:
            missing.update((diff["s"], i) for i in range(last[diff["s"]] + 1, diff["U"]))
        last[diff["s"]] = diff["u"]
    drops = sim.stats.of_kind("drop")
    assert len(drops) == sim.stats.dropped_depth == (len(diffs) + len(drops)) // 10 > 50
    injected = {(d.symbol, i) for d in drops if d.last_id < last[d.symbol] for i in range(d.first_id, d.last_id + 1)}
    assert missing == injected  # every gap on the wire was injected, every injected one shows (but a last one)
    assert [(d.symbol, d.last_id) for d in drops] == sim.stats.dropped


def test_duplicated_and_reordered_diffs_are_exactly_the_recorded_ones() -> None:
    frames, sim = depth_frames(Faults(duplicate_depth_every=7, reorder_depth_every=11))
    diffs = data(frames, "@depth@100ms")
    duplicates = [(b["s"], b["u"]) for a, b in itertools.pairwise(diffs) if a == b]
    assert duplicates == [(d.symbol, d.last_id) for d in sim.stats.of_kind("duplicate")]
    assert len(duplicates) == sim.stats.duplicated_depth > 50
    swapped, last = [], {}
    for diff in diffs:
        if diff["u"] < last.get(diff["s"], 0):
            swapped.append((diff["s"], diff["u"], last[diff["s"]]))
        last[diff["s"]] = max(diff["u"], last.get(diff["s"], 0))
    reorders = sim.stats.of_kind("reorder")
    assert swapped == [(r.symbol, r.last_id, r.swapped_with) for r in reorders]
    assert len(reorders) == sim.stats.reordered_depth > 30


def test_malformed_frames_are_counted() -> None:
    frames, sim = depth_frames(Faults(malformed_every=25), frames=3000)
    broken = 0
    for frame in frames:
        try:
            json.loads(frame)
        except json.JSONDecodeError:
            broken += 1
    assert broken == sim.stats.malformed_sent == len(frames) // 26


def test_a_stalled_connection_stays_open_and_silent() -> None:
    async def scenario() -> tuple[int, int, dict, BinanceSynthetic]:
        async with BinanceSynthetic(3, seed=1, rate=400, faults=Faults(stall_after=0.5)) as sim:
            names = "/".join(f"{s.lower()}@depth@100ms" for s in sim.symbols)
            async with connect(f"{sim.ws_url}/stream?streams={names}") as ws:
                before = await collect(ws, idle=0.3, limit=10**6)
                silent = await collect(ws, idle=1.0)
                await ws.send(json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": 1}))
                reply = json.loads(await ws.recv())  # still open: only the data stopped
                return len(before), len(silent), reply, sim

    before, silent, reply, sim = asyncio.run(scenario())
    assert before > 50 and silent == 0 and reply["id"] == 1
    assert [(i.kind, i.key) for i in sim.stats.injected] == [("stall", "*")]


def test_one_stalled_stream_while_the_others_go_on() -> None:
    async def scenario() -> tuple[list[str], float, BinanceSynthetic]:
        faults = Faults(stall_streams=("btcusdt@depth@100ms",), stall_streams_after=0.5)
        async with BinanceSynthetic(3, seed=1, rate=600, duration=2.0, faults=faults) as sim:
            names = "/".join(f"{s.lower()}@depth@100ms" for s in sim.symbols)
            async with connect(f"{sim.ws_url}/stream?streams={names}") as ws:
                started = time.monotonic()
                frames: list[str] = []
                while time.monotonic() - started < 1.5:
                    frames.append(await ws.recv())  # type: ignore[arg-type]
                return frames, started, sim

    frames, _, sim = asyncio.run(scenario())
    symbols = [json.loads(f)["data"]["s"] for f in frames]
    late = symbols[len(symbols) * 2 // 3 :]  # well after 0.5 s
    assert "BTCUSDT" in symbols[: len(symbols) // 4] and "BTCUSDT" not in late
    assert {"ETHUSDT", "BNBUSDT"} <= set(late)
    assert [(i.kind, i.key) for i in sim.stats.injected] == [("stall", "btcusdt@depth")]


def test_refused_subscriptions_get_binances_error() -> None:
    async def scenario() -> tuple[list[dict], list[str]]:
        faults = Faults(refuse=("btcusdt@aggTrade",))
        async with BinanceSynthetic(2, seed=1, rate=0, frames=10, faults=faults) as sim:
            async with connect(f"{sim.ws_url}/ws") as ws:
                replies = []
                for n, name in enumerate(("btcusdt@aggTrade", "ethusdt@aggTrade")):
                    await ws.send(json.dumps({"method": "SUBSCRIBE", "params": [name], "id": n}))
                    replies.append(json.loads(await ws.recv()))
            return replies, sim.stats.refused

    replies, refused = asyncio.run(scenario())
    assert replies == [{"error": {"code": 2, "msg": "Invalid request: invalid stream"}, "id": 0},
                       {"result": None, "id": 1}]  # fmt: skip
    assert refused == ["btcusdt@aggTrade"]


def test_rest_faults_429_418_and_latency() -> None:
    async def scenario() -> tuple[list[httpx.Response], float, BinanceSynthetic]:
        faults = Faults(rest_429_every=2, rest_418_every=3, rest_retry_after=7, rest_latency=0.3,
                        rest_latency_every=4)  # fmt: skip
        async with BinanceSynthetic(2, seed=1, rate=0, frames=10, faults=faults) as sim, httpx.AsyncClient() as h:
            responses, slow = [], 0.0
            for _ in range(4):
                started = time.monotonic()
                responses.append(await h.get(f"{sim.rest_url}/api/v3/depth", params={"symbol": "BTCUSDT"}))
                slow = time.monotonic() - started
            return responses, slow, sim

    responses, slow, sim = asyncio.run(scenario())
    assert [r.status_code for r in responses] == [200, 429, 418, 429]
    assert all(r.headers["retry-after"] == "7" and r.json()["code"] == -1003 for r in responses[1:])
    assert slow >= 0.3 and sim.stats.slowed_requests == 1
    assert (sim.stats.rate_limited, sim.stats.banned) == (2, 1)


def test_connections_are_cut_every_so_often_and_on_demand() -> None:
    async def scenario() -> tuple[int | None, int]:
        faults = Faults(drop_connections_every=0.4)
        async with (
            BinanceSynthetic(2, seed=1, rate=200, faults=faults) as sim,
            connect(f"{sim.ws_url}/ws/btcusdt@depth") as ws,
        ):
            with contextlib.suppress(ConnectionClosed):
                await collect(ws, idle=2.0, limit=10**6)
            return ws.close_code, sim.stats.connections_dropped

    code, dropped = asyncio.run(scenario())
    assert code == 1006 and dropped == 1  # abrupt: no close frame
