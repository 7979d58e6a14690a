"""Receive-loop benchmark: what the WebSocket read loop costs per frame, before any parsing.

Measures CPU-µs per frame (this process, all threads) and frames per second for reading
``--frames`` messages from ``tickflow simulate binance-spot --synthetic --rate 0`` (full speed,
``--symbols`` symbols, all four Binance streams), with the frame handler doing nothing but count:

* ``session``: ``producers.connection.WebSocketSession``, the producer's read loop as it is (frames
  split straight from the socket's bytes once the handshake is done; 57.9 CPU-µs per frame when
  it made a task for ``ws.recv()`` and an ``asyncio.wait`` per frame);
* ``recv``: a plain ``await ws.recv()`` loop on the same ``websockets`` client, for reference: the
  library's own cost per frame (2026-11-22: 10.7 µs, against 2.3 for ``session``).

A fresh simulator serves each round; the variants alternate and the median per variant is printed.
Found while measuring ``bench/vs_cryptofeed.py``: the end-to-end CPU per event is about three
times the feed hot path's (``bench/feed_bench.py``), and this loop is much of the difference.

Reproduce (needs no Kafka)::

    .venv/bin/python bench/recv_loop_bench.py
    .venv/bin/python bench/recv_loop_bench.py --frames 200000 --rounds 5
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time

from harness import Simulator, median
from websockets.asyncio.client import connect

from producers.connection import WebSocketSession


async def read_session(url: str, frames: int) -> int:
    stop = asyncio.Event()
    count = 0

    def on_frame(frame: str | bytes, receive_ts: int) -> None:
        nonlocal count
        count += 1
        if count >= frames:
            stop.set()

    await WebSocketSession(url, on_frame, lambda *_: None).run(stop)
    return count


async def read_recv(url: str, frames: int) -> int:
    count = 0
    async with asyncio.timeout(600), connect(url, max_size=2**24) as ws:  # one timer for the run, not per frame
        while count < frames:
            await ws.recv()
            count += 1
    return count


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog="See the module docstring.")
    parser.add_argument("--frames", type=int, default=100_000, help="messages per round (default 100000)")
    parser.add_argument("--symbols", type=int, default=50, help="symbols (default 50)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per variant (default 3)")
    args = parser.parse_args()
    variants = {"session": read_session, "recv": read_recv}
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in variants}
    for r in range(args.rounds):
        for name in list(variants) if r % 2 == 0 else list(variants)[::-1]:
            # The simulator is asked for more than is read: its --frames counts market messages, of
            # which a client receives somewhat fewer (about 82% here).
            with Simulator(symbols=args.symbols, frames=args.frames * 3 // 2, seed=7) as sim:
                symbols = [s for s, _, _ in (sim.exchange_info() or [])][: args.symbols]
                streams = "/".join(f"{s.lower()}@{x}" for s in symbols
                                   for x in ("depth@100ms", "aggTrade", "bookTicker", "kline_1m"))  # fmt: skip
                url = f"ws://{sim.address}/stream?streams={streams}"
                wall, cpu = time.perf_counter(), time.process_time()
                count = asyncio.run(variants[name](url, args.frames))
                wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            results[name].append((cpu / count * 1e6, count / wall))
            print(f"round {r + 1} {name:8s}: {count} frames, {cpu / count * 1e6:5.1f} CPU-us/frame, "
                  f"{count / wall:,.0f} frames/s", flush=True)  # fmt: skip
    summary = {"bench": "recv_loop", "frames": args.frames, "symbols": args.symbols}
    for name, rows in results.items():
        cpu_us, rate = median([c for c, _ in rows]), median([f for _, f in rows])
        print(f"median {name:8s}: {cpu_us:5.1f} CPU-us/frame, {rate:,.0f} frames/s")
        summary[name] = {"cpu_us_per_frame": round(cpu_us, 1), "frames_per_s": round(rate)}
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
