"""The order path's HTTP/1.1 client (``producers/venues/http1.py``) over real sockets on 127.0.0.1:
against aiohttp's server (a real HTTP implementation) and against raw asyncio servers that send
the odd framings, closes and silences a venue may, and through ``TradingHttp``'s error mapping."""

from __future__ import annotations

import asyncio
import json
import random
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest
from aiohttp import web

from producers.venues.http1 import (
    ConnectFailed,
    ConnectionBroken,
    Headers,
    Http1Pool,
    ProtocolError,
    ReadTimeout,
)
from producers.venues.trading import Prepared, TradingHttp
from tickflow.errors import UnknownOutcome, VenueUnavailable

pytestmark = pytest.mark.timeout(30)

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def run(coro: Awaitable[None]) -> None:
    asyncio.run(coro)  # type: ignore[arg-type]


@asynccontextmanager
async def aiohttp_server() -> AsyncIterator[str]:
    """An aiohttp server: ``/echo`` answers the request as JSON (after ``delay`` seconds)."""

    async def echo(request: web.Request) -> web.Response:
        body = await request.read()
        delay = float(request.query.get("delay", "0"))
        if delay:
            await asyncio.sleep(delay)
        answer = {"method": request.method, "path": request.path_qs, "body": body.decode(),
                  "host": request.headers.get("Host"), "key": request.headers.get("X-Key"),
                  "type": request.headers.get("Content-Type"), "peer": request.transport.get_extra_info("peername")[1]}  # type: ignore[union-attr]  # fmt: skip
        return web.json_response(answer, headers={"X-Used-Weight": "7"})

    app = web.Application()
    app.router.add_route("*", "/echo", echo)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@asynccontextmanager
async def raw_server(handler: Handler) -> AsyncIterator[tuple[str, list[int]]]:
    """A bare TCP server running ``handler`` per connection; also yields the list of connections
    accepted (their count tells reuse from reconnects)."""
    accepted: list[int] = []

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(len(accepted))
        try:
            await handler(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", accepted
    finally:
        server.close()


async def read_request(reader: asyncio.StreamReader) -> tuple[str, bytes]:
    """One request: its head (text) and body (by Content-Length)."""
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
    length = 0
    for line in head.split("\r\n"):
        if line.lower().startswith("content-length:"):
            length = int(line.split(":", 1)[1])
    return head, await reader.readexactly(length) if length else b""


async def dribble(writer: asyncio.StreamWriter, data: bytes) -> None:
    """Send ``data`` a byte at a time, each its own segment (NODELAY, a pause between)."""
    writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    for i in range(len(data)):
        writer.write(data[i : i + 1])
        await writer.drain()
        await asyncio.sleep(0.0005)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# Against aiohttp's server


def test_keep_alive_reuses_one_connection_for_sequential_requests() -> None:
    async def main() -> None:
        async with aiohttp_server() as url:
            pool = Http1Pool.from_url(url, max_connections=4)
            try:
                peers = set()
                for i in range(30):
                    body = json.dumps({"i": i})
                    headers = {"X-Key": "k", "Content-Type": "application/json"}
                    response = await pool.request("POST", f"/echo?i={i}", headers, body)
                    assert response.status == 200
                    answer = json.loads(response.body)
                    assert answer["path"] == f"/echo?i={i}" and answer["body"] == body and answer["key"] == "k"
                    assert answer["host"] == url.removeprefix("http://") and answer["type"] == "application/json"
                    assert response.headers.get("x-used-weight") == response.headers["X-USED-WEIGHT"] == "7"
                    assert "Content-Type" in response.headers
                    peers.add(answer["peer"])
                assert pool.opened == 1 and len(peers) == 1
                get = await pool.request("GET", "/echo")
                assert json.loads(get.body)["method"] == "GET" and pool.opened == 1
            finally:
                await pool.close()

    run(main())


def test_concurrent_requests_are_matched_to_their_own_responses() -> None:
    async def main() -> None:
        async with aiohttp_server() as url:
            pool = Http1Pool.from_url(url, max_connections=8)
            rng = random.Random(7)

            async def one(i: int) -> None:
                delay = rng.choice([0, 0.001, 0.005, 0.02])
                response = await pool.request("POST", f"/echo?delay={delay}&i={i}", None, f"body-{i}")
                answer = json.loads(response.body)
                assert answer["body"] == f"body-{i}" and answer["path"].endswith(f"&i={i}")

            try:
                await asyncio.gather(*(one(i) for i in range(50)))
                assert pool.opened <= 8
                await asyncio.gather(*(one(i) for i in range(50, 100)))
                assert pool.opened <= 8
            finally:
                await pool.close()

    run(main())


# Framings, against a raw server


def test_content_length_and_chunked_bodies_split_byte_by_byte() -> None:
    body = b'{"status":"NEW","orderId":1}'
    chunked = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\nX-A: 1\r\nx-a: 2\r\n\r\n"
    chunked += b"5\r\n" + body[:5] + b"\r\n" + b"a;ext=1\r\n" + body[5:15] + b"\r\n"
    chunked += b"%x\r\n" % (len(body) - 15) + body[15:] + b"\r\n0\r\nX-Trailer: t\r\n\r\n"
    answers = [
        b"HTTP/1.1 201 Created\r\nContent-Length: %d\r\nContent-Type: application/json\r\n\r\n" % len(body) + body,
        chunked,
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"HTTP/1.1 204 No Content\r\n\r\n",
    ]

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for answer in answers:
            await read_request(reader)
            await dribble(writer, answer)
        await reader.read()

    async def main() -> None:
        async with raw_server(handler) as (url, accepted):
            pool = Http1Pool.from_url(url)
            try:
                first = await pool.request("POST", "/o", None, b"x")
                assert (first.status, first.reason, first.body) == (201, "Created", body)
                second = await pool.request("GET", "/o")
                assert second.status == 200 and second.body == body
                assert second.headers["x-a"] == "1, 2"  # repeated fields joined
                third = await pool.request("GET", "/o")
                assert third.body == b""
                fourth = await pool.request("DELETE", "/o")
                assert fourth.status == 204 and fourth.body == b""
                assert len(accepted) == 1  # all four on one connection
            finally:
                await pool.close()

    run(main())


def test_read_until_close_when_neither_length_nor_chunked() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nall of ")
        await writer.drain()
        await asyncio.sleep(0.01)
        writer.write(b"it")
        await writer.drain()

    async def main() -> None:
        async with raw_server(handler) as (url, accepted):
            pool = Http1Pool.from_url(url)
            try:
                for _ in range(2):
                    response = await pool.request("GET", "/")
                    assert response.body == b"all of it" and response.version == "HTTP/1.0"
                assert len(accepted) == 2  # such a connection is never reused
            finally:
                await pool.close()

    run(main())


def test_connection_close_from_the_server_is_honoured() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # Says close but leaves the socket open: the client must still not reuse it.
        while True:
            await read_request(reader)
            writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok")
            await writer.drain()

    async def main() -> None:
        async with raw_server(handler) as (url, accepted):
            pool = Http1Pool.from_url(url)
            try:
                for _ in range(3):
                    assert (await pool.request("GET", "/")).body == b"ok"
                assert len(accepted) == 3 and pool.idle_connections == 0
            finally:
                await pool.close()

    run(main())


def test_an_idle_connection_closed_by_the_server_is_replaced_not_an_error() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        await asyncio.sleep(0.05)  # then the server's idle timeout: closed, no Connection: close said

    async def main() -> None:
        async with raw_server(handler) as (url, accepted):
            pool = Http1Pool.from_url(url)
            try:
                assert (await pool.request("POST", "/", None, b"1")).body == b"ok"
                await asyncio.sleep(0.2)
                assert pool.idle_connections == 0  # dropped from the pool as it closed
                assert (await pool.request("POST", "/", None, b"2")).body == b"ok"  # a mutating one, too
                assert len(accepted) == 2
            finally:
                await pool.close()

    run(main())


def test_a_close_racing_the_next_request_is_retried_only_when_asked() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        # Closed at once: the next request is written on it either before the client saw the FIN
        # (a broken reused connection, nothing received) or after (skipped when picked).

    async def main() -> None:
        async with raw_server(handler) as (url, accepted):
            pool = Http1Pool.from_url(url)
            try:
                for _ in range(10):
                    assert (await pool.request("GET", "/")).body == b"ok"
                    # On the connection just closed (or skipped if its close was seen): succeeds.
                    assert (await pool.request("GET", "/", retry_stale=True)).body == b"ok"
                    try:
                        assert (await pool.request("GET", "/")).body == b"ok"
                    except ConnectionBroken as exc:  # lost the race: told apart from a mid-answer break
                        assert exc.sent and exc.reused and not exc.received
                assert len(accepted) >= 20  # each retried (or skipped) request took a new connection
            finally:
                await pool.close()

    run(main())


# Failures


def test_connect_refused_and_connect_timeout_are_connect_failed() -> None:
    async def main() -> None:
        pool = Http1Pool("http", "127.0.0.1", free_port())
        with pytest.raises(ConnectFailed):
            await pool.request("GET", "/")
        await pool.close()
        async with aiohttp_server() as url:
            pool = Http1Pool.from_url(url, connect_timeout=1e-6)
            with pytest.raises(ConnectFailed):
                await pool.request("GET", "/echo")
            await pool.close()

    run(main())


def test_a_server_that_never_answers_is_a_read_timeout() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await asyncio.sleep(0.3)
        # The late answer must not be taken for the next request's.
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nlate")
        await reader.read()

    async def main() -> None:
        async with raw_server(handler) as (url, accepted):
            pool = Http1Pool.from_url(url, read_timeout=0.1)
            try:
                started = asyncio.get_running_loop().time()
                with pytest.raises(ReadTimeout):
                    await pool.request("POST", "/", None, b"x")
                assert asyncio.get_running_loop().time() - started < 0.25
                await asyncio.sleep(0.3)
                with pytest.raises(ReadTimeout):
                    await pool.request("POST", "/", None, b"y")
                assert len(accepted) == 2  # the timed-out connection was dropped
            finally:
                await pool.close()

    run(main())


def test_a_server_closing_after_the_request_is_connection_broken_sent() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)  # read, then gone without a word

    async def half(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhalf")

    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"SSH-2.0-OpenSSH\r\n\r\n")
        await reader.read()

    async def main() -> None:
        for script, received in ((handler, False), (half, True)):
            async with raw_server(script) as (url, _):
                pool = Http1Pool.from_url(url)
                with pytest.raises(ConnectionBroken) as broken:
                    await pool.request("POST", "/", None, b"x")
                assert broken.value.sent and not broken.value.reused and broken.value.received is received
                await pool.close()
        async with raw_server(garbage) as (url, _):
            pool = Http1Pool.from_url(url)
            with pytest.raises(ProtocolError) as bad:
                await pool.request("GET", "/")
            assert bad.value.sent
            await pool.close()

    run(main())


def test_requests_beyond_the_limit_wait_for_a_connection() -> None:
    async def main() -> None:
        async with aiohttp_server() as url:
            pool = Http1Pool.from_url(url, max_connections=2)
            try:
                answers = await asyncio.gather(*(pool.request("GET", f"/echo?delay=0.02&i={i}") for i in range(6)))
                assert [json.loads(a.body)["path"] for a in answers] == [f"/echo?delay=0.02&i={i}" for i in range(6)]
                assert pool.opened == 2
                # A waiter cancelled while waiting leaves the pool whole.
                slow = [asyncio.create_task(pool.request("GET", "/echo?delay=0.05")) for _ in range(3)]
                await asyncio.sleep(0.01)
                slow[2].cancel()
                await asyncio.gather(*slow, return_exceptions=True)
                assert (await pool.request("GET", "/echo")).status == 200
            finally:
                await pool.close()

    run(main())


def test_header_injection_is_refused_and_headers_are_case_insensitive() -> None:
    async def main() -> None:
        pool = Http1Pool("http", "127.0.0.1", free_port())
        with pytest.raises(ValueError):
            await pool.request("GET", "/", {"X-Key": "a\r\nX-Evil: 1"})
        with pytest.raises(ValueError):
            await pool.request("GET", "/ HTTP/1.1\r\nX-Evil: 1")
        await pool.close()

    run(main())
    headers = Headers({"x-mbx-used-weight-1m": "3"})
    assert headers.get("X-MBX-USED-WEIGHT-1M") == "3" and "X-Mbx-Used-Weight-1m" in headers
    assert headers.get("missing", "d") == "d"


# Through TradingHttp


def test_trading_http_maps_the_failures() -> None:
    def prepare() -> Prepared:
        return Prepared(params="a=1", content="b=2", headers={"Content-Type": "application/x-www-form-urlencoded"})

    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)

    async def main() -> None:
        http = TradingHttp(f"http://127.0.0.1:{free_port()}", venue="test")
        with pytest.raises(VenueUnavailable):
            await http.send("POST", "/order", prepare, mutating=True)
        await http.aclose()
        async with raw_server(hang_up) as (url, _):
            http = TradingHttp(url, venue="test")
            with pytest.raises(UnknownOutcome):
                await http.send("POST", "/order", prepare, mutating=True)
            with pytest.raises(VenueUnavailable):
                await http.send("GET", "/order", prepare, mutating=False)
            assert http.counters.errors == 2 and http.counters.requests == 2
            await http.aclose()
        async with aiohttp_server() as url:
            http = TradingHttp(url, venue="test", max_connections=2)
            response = await http.send("POST", "/echo", prepare, mutating=True)
            answer = response.json()
            assert answer["path"] == "/echo?a=1" and answer["body"] == "b=2" and answer["host"] == http.host
            assert response.headers.get("X-Used-Weight") == "7" and http.counters.by_status == {200: 1}
            await http.aclose()

    run(main())
