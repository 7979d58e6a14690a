"""The user streams' WebSocket client against the ``websockets`` library's: client CPU a message.

A raw WebSocket server in a process of its own sends ``--messages`` text frames of about 400
bytes (a Binance ``executionReport``) in bursts of ``--burst`` frames (one write each, as a venue
sends an order's few updates together), a burst every ``--interval-ms``, so each burst comes in a
read of its own, as on the router's user streams. In this process, on uvloop, each client reads
them doing nothing with a message but count it: ``websockets``' asyncio client (``await
ws.recv()``, as ``producers/venues/user_stream.py`` read before) and ``producers/venues/ws1.py``
(a callback inside ``data_received``). The figure is this process's CPU (``time.process_time``:
user and system, so the reads count) divided by the messages; the server's CPU is not counted.
Neither client pings (the server would not read them while it sends).

    .venv/bin/python bench/ws_client_bench.py --messages 50000
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import json
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import parse_or_serve, server_process
from producers.venues import ws1

REPORT = json.dumps({
    "e": "executionReport", "E": 1_700_000_000_000, "s": "BTCUSDT", "c": "tf" + "0" * 32, "S": "BUY",
    "o": "LIMIT", "f": "GTC", "q": "0.00100000", "p": "43000.10000000", "P": "0.00000000", "F": "0.00000000",
    "C": "", "x": "TRADE", "X": "PARTIALLY_FILLED", "r": "NONE", "i": 28457, "l": "0.00050000",
    "z": "0.00050000", "L": "43000.10000000", "n": "0.00000050", "N": "BTC", "T": 1_700_000_000_000,
    "t": 12345, "w": False, "m": False, "M": True, "Z": "21.50005000", "V": "EXPIRE_MAKER",
}, separators=(",", ":")).encode()  # fmt: skip
GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def server_frame(opcode: int, payload: bytes) -> bytes:
    size = len(payload)
    if size < 126:
        return bytes((0x80 | opcode, size)) + payload
    if size < 65536:
        return bytes((0x80 | opcode, 126)) + size.to_bytes(2, "big") + payload
    return bytes((0x80 | opcode, 127)) + size.to_bytes(8, "big") + payload


async def read_client_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    first, second = await reader.readexactly(2)
    size = second & 0x7F
    if size == 126:
        size = int.from_bytes(await reader.readexactly(2), "big")
    elif size == 127:
        size = int.from_bytes(await reader.readexactly(8), "big")
    mask = await reader.readexactly(4) if second & 0x80 else b"\0\0\0\0"
    data = await reader.readexactly(size)
    return first & 0x0F, bytes(b ^ mask[i % 4] for i, b in enumerate(data))


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """One client: the handshake, then ``go <messages> <burst> <interval ms>`` streams, ``close`` ends."""
    try:
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
    except (asyncio.IncompleteReadError, ConnectionError):  # the launcher's probe: not a client
        writer.close()
        return
    found = re.search(r"(?im)^sec-websocket-key: *(\S+)", head)
    assert found is not None
    accept = base64.b64encode(hashlib.sha1((found.group(1) + GUID).encode()).digest()).decode()
    writer.write(f"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 f"Sec-WebSocket-Accept: {accept}\r\n\r\n".encode())  # fmt: skip
    frame = server_frame(0x1, REPORT)
    try:
        while True:
            opcode, payload = await read_client_frame(reader)
            if opcode == 0x8:
                writer.write(server_frame(0x8, payload[:2]))
                await writer.drain()
                return
            if opcode == 0x9:
                writer.write(server_frame(0xA, payload))
                continue
            _, messages, burst, interval_ms = payload.decode().split()
            left, burst, interval = int(messages), int(burst), float(interval_ms) / 1000
            while left > 0:
                count = min(burst, left)
                writer.write(frame * count)
                left -= count
                await writer.drain()
                await asyncio.sleep(interval)
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


def serve(port: int) -> None:
    import uvloop

    async def main() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", port)
        async with server:
            await server.serve_forever()

    uvloop.run(main())


async def with_websockets(url: str, warmup: int, messages: int, burst: int, interval_ms: float) -> tuple[float, float]:
    from websockets.asyncio.client import connect

    async with connect(url, ping_interval=None, max_size=2**22, compression=None) as ws:

        async def take(count: int) -> None:
            await ws.send(f"go {count} {burst} {interval_ms}")
            for _ in range(count):
                await ws.recv()

        await take(warmup)
        cpu, wall = time.process_time(), time.perf_counter()
        await take(messages)
        return time.process_time() - cpu, time.perf_counter() - wall


async def with_ws1(url: str, warmup: int, messages: int, burst: int, interval_ms: float) -> tuple[float, float]:
    loop = asyncio.get_running_loop()
    left = 0
    done: asyncio.Future[None] = loop.create_future()

    def on_message(_: bytes) -> None:
        nonlocal left
        left -= 1
        if not left:
            done.set_result(None)

    ws = await ws1.connect(url, on_message, ping_interval=None, max_size=2**22)
    try:

        async def take(count: int) -> None:
            nonlocal left, done
            left, done = count, loop.create_future()
            await ws.send(f"go {count} {burst} {interval_ms}")
            await done

        await take(warmup)
        cpu, wall = time.process_time(), time.perf_counter()
        await take(messages)
        return time.process_time() - cpu, time.perf_counter() - wall
    finally:
        await ws.close()


CLIENTS = {"websockets": with_websockets, "ws1": with_ws1}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=50_000, help="messages a client reads (measured)")
    parser.add_argument("--warmup", type=int, default=2_000, help="messages read before measuring")
    parser.add_argument("--burst", type=int, default=4, help="frames a write (an order's updates)")
    parser.add_argument("--interval-ms", type=float, default=1.0, help="pause between bursts")
    parser.add_argument("--clients", default=",".join(CLIENTS))
    args = parse_or_serve(parser, serve)
    if args is None:
        return
    import uvloop

    with server_process(__file__) as port:
        url = f"ws://127.0.0.1:{port}/ws/bench"
        result: dict[str, object] = {
            "bench": "ws_client", "loop": "uvloop", "messages": args.messages, "message_bytes": len(REPORT),
            "burst": args.burst, "interval_ms": args.interval_ms,
        }  # fmt: skip
        for name in args.clients.split(","):
            cpu, wall = uvloop.run(CLIENTS[name](url, args.warmup, args.messages, args.burst, args.interval_ms))
            result[name] = {"cpu_us_per_message": round(cpu / args.messages * 1e6, 2),
                            "messages_per_s": round(args.messages / wall)}  # fmt: skip
        if "websockets" in result and "ws1" in result:
            ours, theirs = result["ws1"], result["websockets"]
            result["ratio"] = round(theirs["cpu_us_per_message"] / ours["cpu_us_per_message"], 2)  # type: ignore[index]
        print(json.dumps(result))


if __name__ == "__main__":
    main()
