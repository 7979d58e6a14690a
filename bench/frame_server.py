"""A stand-in Binance spot venue for the benchmarks: pre-rendered synthetic frames at full speed.

Used by ``bench/harness.py`` only while ``tickflow simulate binance-spot --synthetic`` (the project's
simulator, being extended on another branch) is not available in this checkout; with it, the
harness uses the simulator. Same protocol subset, on one loopback port:

* ``GET /api/v3/exchangeInfo``: the symbols (``SYM0USDT``...), TRADING, with a PRICE_FILTER.
* ``GET /api/v3/depth?symbol=X&limit=N``: a 20-level-a-side book around the symbol's fixed book
  mid, with ``lastUpdateId`` = the last update id already written to the client for that symbol,
  so the next diff bridges (``U <= lastUpdateId+1 <= u``) by Binance's rules.
* ``/stream?streams=...`` (combined streams): ``--frames`` frames rendered before the port opens
  (``--seed``: identical frames every run), 50% depth diffs (1-10 levels a side, continuous update
  ids per symbol, levels on a grid around a fixed book mid so no book ever crosses, 10% deletes),
  30% aggTrades, 15% bookTickers, 5% kline_1m updates, over ``--symbols`` symbols; written in
  batches of whole frames straight to the transport (one write per batch, no per-message
  ``send``), waiting only for the socket (drain). Frames of streams the client did not ask for are
  skipped. After the last frame the connection stays open and idle, or with ``--loop`` the frames
  start over, every diff's update ids shifted by the symbol's span so the books stay continuous.
  ``--rate`` paces the frames (frames per second) instead of full speed.

    .venv/bin/python bench/frame_server.py --port 18790 --symbols 50 --frames 200000 --seed 7
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import signal
import sys
from dataclasses import dataclass
from urllib.parse import parse_qs, urlparse

from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

T0_MS = 1_700_000_000_000
LEVELS = 20


def ws_frame(text: str) -> bytes:
    """An unmasked WebSocket text frame (server to client)."""
    payload = text.encode()
    n = len(payload)
    if n < 126:
        return bytes((0x81, n)) + payload
    if n < 65536:
        return b"\x81\x7e" + n.to_bytes(2, "big") + payload
    return b"\x81\x7f" + n.to_bytes(8, "big") + payload


@dataclass
class Market:
    symbols: list[str]
    book_mid: dict[str, float]
    first_id: dict[str, int]
    #: Update ids a symbol's diffs use in one pass over the frames (a loop shifts them by this).
    span: dict[str, int]
    #: Per frame: framed bytes, stream, symbol, first and last update id (-1: not a diff), and for
    #: diffs the text before and after the ``"U":..,"u":..`` pair (to shift the ids on a loop).
    frames: list[tuple[bytes, str, str, int, int, str, str]]


def render(count: int, n_symbols: int, seed: int) -> Market:
    rng = random.Random(seed)
    symbols = [f"SYM{i}USDT" for i in range(n_symbols)]
    mids = {s: rng.uniform(0.01, 60_000) for s in symbols}
    book_mid = dict(mids)
    next_id = dict.fromkeys(symbols, 1_000_000)
    first_id = dict(next_id)
    frames: list[tuple[bytes, str, str, int, int, str, str]] = []
    trade_id = 5_000_000
    for n in range(count):
        s = rng.choice(symbols)
        mid = mids[s] = mids[s] * (1 + rng.gauss(0, 0.0001))
        tick = mid / 10_000
        ts = T0_MS + n
        roll = rng.random()
        if roll < 0.5:
            first = next_id[s]
            last = first + rng.randint(0, 4)
            next_id[s] = last + 1
            centre, step = book_mid[s], book_mid[s] / 10_000

            def levels(sign: int, centre: float = centre, step: float = step) -> list[list[str]]:
                picks = rng.sample(range(LEVELS), rng.randint(1, 10))
                sizes = ["0.00000000" if rng.random() < 0.1 else f"{rng.uniform(0.01, 5):.8f}" for _ in picks]
                return [[f"{centre + sign * step * (i + 1):.8f}", size] for i, size in zip(picks, sizes, strict=True)]

            stream = f"{s.lower()}@depth@100ms"
            head = f'{{"stream":"{stream}","data":{{"e":"depthUpdate","E":{ts},"s":"{s}",'
            bids, asks = (json.dumps(levels(sign), separators=(",", ":")) for sign in (-1, 1))
            tail = f',"b":{bids},"a":{asks}}}}}'
            frames.append((ws_frame(f'{head}"U":{first},"u":{last}{tail}'), stream, s, first, last, head, tail))
            continue
        if roll < 0.8:
            trade_id += 1
            data: dict = {"e": "aggTrade", "E": ts, "s": s, "a": trade_id, "p": f"{mid:.8f}",
                          "q": f"{rng.uniform(0.001, 2):.8f}", "f": trade_id, "l": trade_id, "T": ts,
                          "m": rng.random() < 0.5, "M": True}  # fmt: skip
            stream = f"{s.lower()}@aggTrade"
        elif roll < 0.95:
            data = {"u": next_id[s], "s": s, "b": f"{mid - tick:.8f}", "B": f"{rng.uniform(0.1, 9):.8f}",
                    "a": f"{mid + tick:.8f}", "A": f"{rng.uniform(0.1, 9):.8f}"}  # fmt: skip
            stream = f"{s.lower()}@bookTicker"
        else:
            start = ts - ts % 60_000
            data = {"e": "kline", "E": ts, "s": s, "k": {
                "t": start, "T": start + 59_999, "s": s, "i": "1m", "f": trade_id - 10, "L": trade_id,
                "o": f"{mid:.8f}", "c": f"{mid + tick:.8f}", "h": f"{mid + 2 * tick:.8f}", "l": f"{mid - 2 * tick:.8f}",
                "v": f"{rng.uniform(1, 100):.8f}", "n": 11, "x": False, "q": f"{rng.uniform(100, 1e4):.8f}",
                "V": f"{rng.uniform(0, 50):.8f}", "Q": f"{rng.uniform(0, 5e3):.8f}", "B": "0"}}  # fmt: skip
            stream = f"{s.lower()}@kline_1m"
        text = json.dumps({"stream": stream, "data": data}, separators=(",", ":"))
        frames.append((ws_frame(text), stream, s, -1, -1, "", ""))
    span = {s: next_id[s] - first_id[s] for s in symbols}
    return Market(symbols, book_mid, first_id, span, frames)


class Venue:
    def __init__(self, market: Market, rate: float, loop: bool) -> None:
        self.market = market
        self.rate = rate
        self.loop = loop
        #: Per symbol, the last update id written to a client (the snapshot's lastUpdateId).
        self.last_sent = {s: i - 1 for s, i in market.first_id.items()}
        self.sent = 0

    async def http(self, connection: ServerConnection, request: Request) -> Response | None:
        url = urlparse(request.path)
        if url.path == "/stream":
            return None
        if url.path == "/api/v3/exchangeInfo":
            symbols = [{"symbol": s, "status": "TRADING", "baseAsset": s.removesuffix("USDT"), "quoteAsset": "USDT",
                        "filters": [{"filterType": "PRICE_FILTER", "minPrice": "0.00000001", "maxPrice": "1000000",
                                     "tickSize": "0.00000001"}]} for s in self.market.symbols]  # fmt: skip
            return _json(200, {"timezone": "UTC", "serverTime": T0_MS, "symbols": symbols})
        if url.path == "/api/v3/depth":
            symbol = parse_qs(url.query).get("symbol", [""])[0].upper()
            if symbol not in self.last_sent:
                return _json(400, {"code": -1121, "msg": "Invalid symbol."})
            centre = self.market.book_mid[symbol]
            step = centre / 10_000
            bids = [[f"{centre - step * (i + 1):.8f}", "1.00000000"] for i in range(LEVELS)]
            asks = [[f"{centre + step * (i + 1):.8f}", "1.00000000"] for i in range(LEVELS)]
            return _json(200, {"lastUpdateId": self.last_sent[symbol], "bids": bids, "asks": asks})
        return _json(404, {"code": -1, "msg": f"no such endpoint {url.path}"})

    async def session(self, connection: ServerConnection) -> None:
        query = parse_qs(urlparse(connection.request.path).query if connection.request else "")
        streams = {s for s in query.get("streams", [""])[0].split("/") if s}
        frames, last_sent, span = self.market.frames, self.last_sent, self.market.span
        batch = 1000 if not self.rate else max(1, int(self.rate / 20))
        loop = asyncio.get_running_loop()
        started, lap = loop.time(), 0
        while True:
            for start in range(0, len(frames), batch):
                out = []
                for framed, stream, symbol, first, last, head, tail in frames[start : start + batch]:
                    if stream not in streams:
                        continue
                    if last >= 0:
                        if lap:
                            shift = lap * span[symbol]
                            first, last = first + shift, last + shift
                            framed = ws_frame(f'{head}"U":{first},"u":{last}{tail}')
                        last_sent[symbol] = last
                    out.append(framed)
                connection.transport.write(b"".join(out))
                self.sent += batch
                try:
                    await connection.drain()
                except (ConnectionError, RuntimeError):
                    return
                if self.rate:
                    ahead = started + self.sent / self.rate - loop.time()
                    await asyncio.sleep(max(ahead, 0))
            if not self.loop:
                break
            lap += 1
        await connection.wait_closed()


def _json(status: int, body: dict) -> Response:
    reason = {200: "OK", 400: "Bad Request", 404: "Not Found"}.get(status, "Error")
    return Response(status, reason, Headers({"Content-Type": "application/json"}), json.dumps(body).encode())


async def serve_forever(args: argparse.Namespace) -> None:
    market = render(args.frames, args.symbols, args.seed)
    venue = Venue(market, args.rate, args.loop)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    async with serve(venue.session, "127.0.0.1", args.port, process_request=venue.http, compression=None,
                     max_size=None):  # fmt: skip
        print(f"frame_server: {len(market.frames)} frames over {len(market.symbols)} symbols on 127.0.0.1:{args.port}",
              file=sys.stderr, flush=True)  # fmt: skip
        await stop.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--symbols", type=int, default=50)
    parser.add_argument("--frames", type=int, default=200_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--rate", type=float, default=0, help="frames per second, 0 = as fast as the socket takes")
    parser.add_argument("--loop", action="store_true", help="start over after the last frame (ids shifted on)")
    asyncio.run(serve_forever(parser.parse_args()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
