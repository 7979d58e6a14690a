"""Plain-client helpers for the simulator tests: read until quiet, rebuild books by the venues' rules."""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal

from websockets.asyncio.client import ClientConnection


async def collect(ws: ClientConnection, idle: float = 0.5, limit: int | None = None) -> list[str]:
    """Every frame until the connection has been quiet for ``idle`` seconds (or ``limit`` frames)."""
    frames: list[str] = []
    while limit is None or len(frames) < limit:
        try:
            frames.append(await asyncio.wait_for(ws.recv(), idle))  # type: ignore[arg-type]
        except TimeoutError:
            break
    return frames


def apply(book: dict[str, dict[str, str]], side: str, levels: list[list[str]]) -> None:
    for price, size in levels:
        if Decimal(size) == 0:
            book[side].pop(price, None)
        else:
            book[side][price] = size


def binance_book(snapshot: dict, diffs: list[dict], usdm: bool) -> dict[str, dict[str, str]]:
    """The book from a REST snapshot and the diffs received, by Binance's documented procedure;
    asserts every bridging and continuity rule on the way."""
    book = {"bids": dict(map(tuple, snapshot["bids"])), "asks": dict(map(tuple, snapshot["asks"]))}
    last = snapshot["lastUpdateId"]
    pending = [d for d in diffs if d["u"] >= (last if usdm else last + 1)]
    assert pending, "no diff after the snapshot"
    first = pending[0]
    if usdm:
        assert first["U"] <= last <= first["u"], (first["U"], last, first["u"])
    else:
        assert first["U"] <= last + 1 <= first["u"], (first["U"], last, first["u"])
    previous = None
    for diff in pending:
        if previous is not None:
            if usdm:
                assert diff["pu"] == previous, "USD-M continuity: pu == previous u"
            else:
                assert diff["U"] == previous + 1, "spot continuity: U == previous u + 1"
        apply(book, "bids", diff["b"])
        apply(book, "asks", diff["a"])
        previous = diff["u"]
    return book


def data(frames: list[str], suffix: str) -> list[dict]:
    """The payloads of the combined-stream frames whose stream name ends with ``suffix``."""
    out = []
    for frame in frames:
        message = json.loads(frame)
        if message.get("stream", "").endswith(suffix):
            out.append(message["data"])
    return out
