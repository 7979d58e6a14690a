"""The recording replay through the shared Binance layer, and ``tickflow simulate`` as a process."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import connect

from simulator.binance import BinanceReplay
from tests.unit.simulator_helpers import binance_book, collect, data

RECORDINGS = Path(__file__).resolve().parents[2].parent / "shared" / "recordings"
RECORDINGS = Path(os.environ.get("TICKFLOW_RECORDINGS", RECORDINGS))
pytestmark = pytest.mark.timeout(60)


@pytest.mark.skipif(not (RECORDINGS / "binance-usdm").is_dir(), reason="no recordings")
def test_replay_sends_the_recorded_frames_byte_for_byte_and_its_books_bridge() -> None:
    directory = RECORDINGS / "binance-usdm"
    lines = [line for line in (directory / "ws.log").read_text().splitlines()[1:] if line.strip()]
    query = (directory / "ws.log").read_text().splitlines()[0].split(" <-> ")[0].split("?", 1)[1]

    async def scenario() -> tuple[list[str], dict, dict, dict]:
        async with BinanceReplay(directory, speed=20) as sim, httpx.AsyncClient() as http:
            async with connect(f"{sim.ws_url}/stream?{query}") as ws:
                frames = await collect(ws, limit=30)
                snapshot = (
                    await http.get(f"{sim.rest_url}/fapi/v1/depth", params={"symbol": "SUSHIUSDT", "limit": 1000})
                ).json()
                frames += await collect(ws, idle=1.0)
            info = (await http.get(f"{sim.rest_url}/fapi/v1/exchangeInfo")).json()
            return frames, snapshot, sim.true_book("SUSHIUSDT"), info

    frames, snapshot, truth, info = asyncio.run(scenario())
    assert frames == [line.split(": ", 1)[1] for line in lines]
    diffs = [d for d in data(frames, "@depth@100ms") if d["s"] == "SUSHIUSDT"]
    book = binance_book(snapshot, diffs, usdm=True)
    assert book == truth and len(book["bids"]) > 100
    sushi = next(s for s in info["symbols"] if s["symbol"] == "SUSHIUSDT")
    filters = {f["filterType"]: f for f in sushi["filters"]}
    assert (sushi["baseAsset"], sushi["quoteAsset"]) == ("SUSHI", "USDT")
    assert filters["PRICE_FILTER"]["tickSize"] == "0.001" and filters["LOT_SIZE"]["stepSize"] == "1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("venue", ["binance-spot", "coinbase"])
def test_tickflow_simulate_synthetic_starts_and_serves(venue: str) -> None:
    port = free_port()
    tickflow = str(Path(sys.executable).parent / "tickflow")
    command = [tickflow, "simulate", venue, "--synthetic", "--symbols", "5", "--rate", "0", "--frames", "3000",
               "--seed", "3", "--port", str(port)]  # fmt: skip
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stderr is not None
        line = process.stderr.readline()
        assert "ready" in line and str(port) in line, line

        async def client() -> list[str]:
            async with connect(f"ws://127.0.0.1:{port}" + ("/stream?streams=btcusdt@depth" if venue != "coinbase"
                                                           else "")) as ws:  # fmt: skip
                if venue == "coinbase":
                    await ws.send(json.dumps({"type": "subscribe", "channel": "level2", "product_ids": ["BTC-USD"]}))
                return await collect(ws)

        frames = asyncio.run(client())
        assert len(frames) > 100
    finally:
        process.terminate()
        assert process.wait(10) == 0
