"""The order path's HTTP client against aiohttp's and httpx's: requests a second and client CPU a request.

One aiohttp web server in a process of its own answers ``POST /order`` with a small JSON body
(framed by ``Content-Length``) and ``POST /chunked`` with the same body sent chunked. In this
process, each client sends signed-looking order requests (a query string, an API key header, a
form body) at 1 and at 16 in flight; the figure that matters is this process's CPU
(``time.process_time``: user and system, so the syscalls count) divided by the requests, since
the router's event loop pays it per command. The server's CPU is not counted.

    .venv/bin/python bench/http_client_bench.py --requests 4000 --repeats 3
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import parse_or_serve, server_process
from producers.venues.http1 import Http1Pool

ANSWER = json.dumps({
    "symbol": "BTCUSDT", "orderId": 28457, "orderListId": -1, "clientOrderId": "tf" + "0" * 32,
    "transactTime": 1_700_000_000_000, "price": "43000.10", "origQty": "0.00100", "executedQty": "0.00000",
    "status": "EXPIRED", "timeInForce": "IOC", "type": "LIMIT", "side": "BUY",
}).encode()  # fmt: skip
QUERY = "symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=IOC&quantity=0.001&price=43000.1&timestamp=1700000000000"
BODY = QUERY + "&signature=" + "ab" * 32
HEADERS = {"X-MBX-APIKEY": "k" * 64, "Content-Type": "application/x-www-form-urlencoded"}


def serve(port: int) -> None:
    """The server process: answers like a venue's order endpoint, with the used-weight header."""
    from aiohttp import web

    async def order(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(body=ANSWER, content_type="application/json", headers={"X-MBX-USED-WEIGHT-1M": "3"})

    async def chunked(request: web.Request) -> web.StreamResponse:
        await request.read()
        reply = web.StreamResponse(headers={"Content-Type": "application/json", "X-MBX-USED-WEIGHT-1M": "3"})
        reply.enable_chunked_encoding()
        await reply.prepare(request)
        await reply.write(ANSWER[:100])
        await reply.write(ANSWER[100:])
        await reply.write_eof()
        return reply

    app = web.Application()
    app.router.add_post("/order", order)
    app.router.add_post("/chunked", chunked)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None, handle_signals=True)


Send = Callable[[str], Awaitable[bytes]]


async def ours(base: str, connections: int) -> tuple[Send, Callable[[], Awaitable[None]]]:
    pool = Http1Pool.from_url(base, max_connections=connections, connect_timeout=2.0, read_timeout=3.0)

    async def send(path: str) -> bytes:
        response = await pool.request("POST", path, HEADERS, BODY)
        assert response.status == 200 and response.headers.get("x-mbx-used-weight-1m") == "3"
        return response.body

    return send, pool.close


async def aiohttp_client(base: str, connections: int) -> tuple[Send, Callable[[], Awaitable[None]]]:
    """Configured as ``TradingHttp`` had it before ``producers/venues/http1.py``."""
    import aiohttp

    session = aiohttp.ClientSession(
        base, connector=aiohttp.TCPConnector(limit=connections, keepalive_timeout=30),
        timeout=aiohttp.ClientTimeout(sock_connect=2.0, sock_read=3.0, total=5.0),
        auto_decompress=True, skip_auto_headers=("User-Agent",),
    )  # fmt: skip

    async def send(path: str) -> bytes:
        async with session.request("POST", path, data=BODY, headers=HEADERS) as reply:
            body = await reply.read()
            assert reply.status == 200 and reply.headers.get("X-MBX-USED-WEIGHT-1M") == "3"
            return body

    return send, session.close


async def httpx_client(base: str, connections: int) -> tuple[Send, Callable[[], Awaitable[None]]]:
    import httpx

    client = httpx.AsyncClient(base_url=base, limits=httpx.Limits(max_connections=connections),
                               timeout=httpx.Timeout(3.0, connect=2.0))  # fmt: skip

    async def send(path: str) -> bytes:
        reply = await client.post(path, content=BODY, headers=HEADERS)
        assert reply.status_code == 200 and reply.headers.get("X-MBX-USED-WEIGHT-1M") == "3"
        return reply.content

    return send, client.aclose


CLIENTS = {"http1": ours, "aiohttp": aiohttp_client, "httpx": httpx_client}


async def measure(make: Callable[..., Awaitable[tuple[Send, Callable[[], Awaitable[None]]]]], base: str,
                  path: str, concurrency: int, requests: int) -> tuple[float, float]:  # fmt: skip
    """(requests a second, client CPU µs a request) of ``requests`` sent ``concurrency`` at a time."""
    send, close = await make(base, max(concurrency, 1))
    try:
        per_task = requests // concurrency

        async def worker(count: int) -> None:
            for _ in range(count):
                body = await send(path)
                assert body == ANSWER

        await asyncio.gather(*(worker(max(per_task // 10, 5)) for _ in range(concurrency)))  # warm: connections open
        cpu, wall = time.process_time(), time.perf_counter()
        await asyncio.gather(*(worker(per_task) for _ in range(concurrency)))
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        done = per_task * concurrency
        return done / wall, cpu / done * 1e6
    finally:
        await close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=4000, help="requests a run")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each case; the median is shown")
    parser.add_argument("--clients", default=",".join(CLIENTS))
    parser.add_argument("--concurrency", default="1,16")
    args = parse_or_serve(parser, serve)
    if args is None:
        return
    with server_process(__file__) as port:
        base = f"http://127.0.0.1:{port}"
        header = f"{'client':8} {'framing':8} {'in flight':>9} {'req/s':>8} {'CPU µs/req':>11}"
        print(f"{header}   (median of {args.repeats})")
        for framing, path in (("length", "/order"), ("chunked", "/chunked")):
            for concurrency in (int(c) for c in args.concurrency.split(",")):
                for name in args.clients.split(","):
                    runs = [asyncio.run(measure(CLIENTS[name], base, path, concurrency, args.requests))
                            for _ in range(args.repeats)]  # fmt: skip
                    rate = statistics.median(r for r, _ in runs)
                    cpu = statistics.median(c for _, c in runs)
                    print(f"{name:8} {framing:8} {concurrency:>9} {rate:>8.0f} {cpu:>11.0f}", flush=True)


if __name__ == "__main__":
    main()
