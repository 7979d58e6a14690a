"""The simulator's private user streams against plain clients reading the venues' documented shapes:
Binance spot's WebSocket API subscriptions (the listenKey stream was retired on 2026-02-20), USD-M's
listenKey endpoints and ``/ws/<listenKey>`` events, Coinbase's ``user`` channel behind a WebSocket
JWT, each account seeing only its own orders, and the drop fault."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Awaitable, Callable
from decimal import ROUND_CEILING, Decimal

import httpx
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from simulator.binance import BinanceSynthetic
from simulator.binance.ws_api import signature_payload
from simulator.coinbase import CoinbaseSynthetic
from simulator.faults import Faults
from simulator.trading import Account, BinanceKey, CoinbaseKey, TradingConfig
from simulator.trading.engine import GTC, IOC, LIMIT
from tests.unit.simulator_helpers import collect

pytestmark = pytest.mark.timeout(60)

KEY = ec.generate_private_key(ec.SECP256R1())
OTHER_KEY = ec.generate_private_key(ec.SECP256R1())
NAME = "organizations/org-1/apiKeys/alice"
PUBLIC = KEY.public_key().public_bytes(serialization.Encoding.PEM,
                                       serialization.PublicFormat.SubjectPublicKeyInfo).decode()  # fmt: skip
#: Every field the docs list for an executionReport / a USD-M order update (conditional ones aside).
EXECUTION_REPORT = {"e", "E", "s", "c", "S", "o", "f", "q", "p", "P", "F", "g", "C", "x", "X", "r", "i", "l", "z",
                    "L", "n", "N", "T", "t", "I", "w", "m", "M", "O", "Z", "Y", "Q", "V"}  # fmt: skip
ORDER_TRADE_UPDATE = {"s", "c", "S", "o", "f", "q", "p", "ap", "sp", "x", "X", "i", "l", "z", "L", "T", "t", "b", "a",
                      "m", "R", "wt", "ot", "ps", "cp", "rp", "pP", "si", "ss", "V", "pm", "gtd"}  # fmt: skip
#: Spot's user data stream: Binance's WebSocket API, on the simulator's market-data port.
WS_API = "/ws-api/v3"
SUBSCRIBE = "userDataStream.subscribe.signature"
#: The accounts' HMAC secrets (``accounts()``), as their clients hold them.
SECRETS = {"alice-key": "x", "bob-key": "y"}
USER_ORDER = {"order_id", "client_order_id", "cumulative_quantity", "leaves_quantity", "avg_price", "total_fees",
              "status", "product_id", "creation_time", "order_side", "order_type", "time_in_force",
              "limit_price", "number_of_fills", "filled_value", "outstanding_hold_amount"}  # fmt: skip


def accounts() -> list[Account]:
    balances = {"USDT": "1000000", "USD": "1000000", "BTC": "1000", "ETH": "1000"}
    return [Account("alice", balances, binance=BinanceKey("alice-key", hmac_secret="x"),
                    coinbase=CoinbaseKey(NAME, PUBLIC)),
            Account("bob", balances, binance=BinanceKey("bob-key", hmac_secret="y"))]  # fmt: skip


def b64(data: bytes) -> str:
    import base64

    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def ws_jwt(key: ec.EllipticCurvePrivateKey = KEY) -> str:
    """The WebSocket JWT as the CDP docs build it: the REST claims without ``uri``."""
    now = int(time.time())
    head = {"alg": "ES256", "kid": NAME, "nonce": secrets.token_hex(), "typ": "JWT"}
    claims = {"sub": NAME, "iss": "cdp", "nbf": now, "exp": now + 120}
    signing_input = f"{b64(json.dumps(head).encode())}.{b64(json.dumps(claims).encode())}"
    r, s = decode_dss_signature(key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
    return f"{signing_input}.{b64(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"


def first(sim: BinanceSynthetic | CoinbaseSynthetic) -> tuple[str, Decimal, Decimal, Decimal, Decimal]:
    """(symbol, best bid, best ask, tick, a size worth about 20 quote) of the first instrument."""
    instrument, book = sim.synthetic.instruments[0], sim.synthetic.books[0]
    bid, ask = instrument.price.value(book.best_bid), instrument.price.value(book.best_ask)
    step = instrument.step_size
    size = max(step, (Decimal(20) / ask / step).to_integral_value(rounding=ROUND_CEILING) * step)
    symbol = engine_symbol(sim)
    return symbol, bid, ask, instrument.tick_size, size


def engine_symbol(sim: BinanceSynthetic | CoinbaseSynthetic) -> str:
    return next(iter(sim.engine.instruments))


def events(frames: list[str]) -> list[dict]:
    return [json.loads(f) for f in frames]


def run_binance(usdm: bool, scenario: Callable[[BinanceSynthetic, httpx.AsyncClient], Awaitable[None]],
                faults: Faults | None = None) -> None:  # fmt: skip
    async def main() -> None:
        sim = BinanceSynthetic(2, usdm=usdm, seed=11, rate=50.0, trading=TradingConfig(accounts()), faults=faults)
        async with sim, httpx.AsyncClient(base_url=sim.trading_url) as http:
            await scenario(sim, http)

    asyncio.run(main())


def now_ms() -> int:
    return int(time.time() * 1000)


def sign(payload: str, secret: str) -> str:
    return hmac.new(secret.encode(), payload.encode(), hashlib.sha256).hexdigest()


def subscription(api_key: str, secret: str | None = None, **params: object) -> dict:
    """Subscription params signed as the docs tell a client: every param but the signature, sorted
    by name, ``name=value`` joined by ``&``."""
    signed = {"apiKey": api_key, "timestamp": now_ms(), **params}
    payload = "&".join(f"{name}={value}" for name, value in sorted(signed.items()))
    return signed | {"signature": sign(payload, secret or SECRETS[api_key])}


async def call(ws: ClientConnection, method: str, params: dict | None = None, request_id: object = "r") -> dict:
    """One request and its response (the next frame: called while no event is due)."""
    await ws.send(json.dumps({"id": request_id, "method": method, "params": params or {}}))
    return json.loads(await asyncio.wait_for(ws.recv(), 2))


def failure(reply: dict) -> tuple[object, int, int]:
    """(id, status, error code) of a failed response."""
    assert "result" not in reply and reply["rateLimits"][0]["rateLimitType"] == "REQUEST_WEIGHT"
    return reply["id"], reply["status"], reply["error"]["code"]


def test_ws_api_signature_payload_reproduces_the_documented_hmac_example() -> None:
    api_key = "vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A"
    secret = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j"
    params = {"symbol": "BTCUSDT", "side": "SELL", "type": "LIMIT", "timeInForce": "GTC", "quantity": "0.01000000",
              "price": "52000.00", "recvWindow": 100, "timestamp": 1645423376532, "apiKey": api_key,
              "signature": "------ FILL ME ------"}  # fmt: skip
    payload = signature_payload(params)
    assert payload == (f"apiKey={api_key}&price=52000.00&quantity=0.01000000&recvWindow=100&side=SELL&symbol=BTCUSDT"
                       "&timeInForce=GTC&timestamp=1645423376532&type=LIMIT").encode()  # fmt: skip
    signature = "aa1b5712c094bc4e57c05a1a5c1fd8d88dcd628338ea863fec7b88e59fe2db24"
    assert sign(payload.decode(), secret) == signature
    assert BinanceKey(api_key, hmac_secret=secret).verify(payload, signature.upper())  # HMAC: any case
    assert signature_payload({"b": True, "a": 6000.5, "c": "café"}) == "a=6000.5&b=true&c=café".encode()


def test_binance_spot_ws_api_subscription_as_documented() -> None:
    async def scenario(sim: BinanceSynthetic, http: httpx.AsyncClient) -> None:
        retired = await http.post("/api/v3/userDataStream", headers={"X-MBX-APIKEY": "alice-key"})
        assert retired.status_code == 404  # the spot listenKey endpoint, retired on 2026-02-20
        async with connect(sim.ws_url + WS_API) as ws:
            await ws.send("{not json")
            assert failure(json.loads(await ws.recv())) == (None, 400, -1135)
            await ws.send(json.dumps({"id": 7, "params": {}}))  # no method
            assert failure(json.loads(await ws.recv())) == (7, 400, -1135)
            unknown = await call(ws, "userDataStream.start", request_id=8)  # the retired listenKey method
            assert unknown["error"] == {"code": -1020, "msg": "This operation is not supported."}
            no_key = await call(ws, SUBSCRIBE, {"timestamp": now_ms()})
            assert failure(no_key) == ("r", 400, -1102) and "'apiKey'" in no_key["error"]["msg"]
            assert failure(await call(ws, SUBSCRIBE, subscription("nobody", "x"))) == ("r", 401, -2015)
            stale = subscription("alice-key", timestamp=now_ms() - 10_000, recvWindow=5000)
            assert failure(await call(ws, SUBSCRIBE, stale)) == ("r", 400, -1021)
            unsigned = await call(ws, SUBSCRIBE, {"apiKey": "alice-key", "timestamp": now_ms()})
            assert failure(unsigned) == ("r", 400, -1102) and "'signature'" in unsigned["error"]["msg"]
            forged = await call(ws, SUBSCRIBE, subscription("alice-key", SECRETS["bob-key"]))
            assert forged["error"] == {"code": -1022, "msg": "Signature for this request is not valid."}
            first = await call(ws, SUBSCRIBE, subscription("alice-key"), request_id="a1")
            assert (first["id"], first["status"], first["result"]) == ("a1", 200, {"subscriptionId": 0})
            [limits] = first["rateLimits"]
            assert limits == {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1,
                              "limit": 6000, "count": limits["count"]}  # fmt: skip
            again = await call(ws, SUBSCRIBE, subscription("alice-key"))
            assert again["error"] == {"code": -2035, "msg": "User Data Stream subscription already active."}
            assert again["rateLimits"][0]["count"] == limits["count"] + 2  # weight 2
            # A JSON number is signed as its text: recvWindow=6000.50, not 6000.5.
            stamp = now_ms()
            signature = sign(f"apiKey=bob-key&recvWindow=6000.50&timestamp={stamp}", SECRETS["bob-key"])
            params = {"apiKey": "bob-key", "recvWindow": 0, "timestamp": stamp, "signature": signature}
            text = json.dumps({"id": "b", "method": SUBSCRIBE, "params": params})
            await ws.send(text.replace('"recvWindow": 0', '"recvWindow": 6000.50'))  # as a client may write it
            assert json.loads(await ws.recv())["result"] == {"subscriptionId": 1}
            listed = await call(ws, "session.subscriptions")
            assert listed["result"] == [{"subscriptionId": 0}, {"subscriptionId": 1}]
            inactive = await call(ws, "userDataStream.unsubscribe", {"subscriptionId": 5})
            assert inactive["error"] == {"code": -2036, "msg": "User Data Stream subscription not active."}
        async with connect(sim.ws_url + WS_API) as ws:  # numbered per connection
            assert (await call(ws, SUBSCRIBE, subscription("alice-key")))["result"] == {"subscriptionId": 0}

    run_binance(False, scenario)


def test_binance_spot_execution_reports_and_balances() -> None:
    async def scenario(sim: BinanceSynthetic, http: httpx.AsyncClient) -> None:
        alice, bob = sim.engine.accounts.all
        symbol, bid, ask, tick, size = first(sim)
        async with connect(sim.ws_url + WS_API) as ws:
            assert (await call(ws, SUBSCRIBE, subscription("alice-key")))["result"] == {"subscriptionId": 0}
            sim.engine.place(bob, symbol, "BUY", LIMIT, size=size, price=bid - 20 * tick)  # another account's
            resting = sim.engine.place(alice, symbol, "BUY", LIMIT, size=size, price=bid - 20 * tick, client_id="r1")
            taker = sim.engine.place(alice, symbol, "BUY", LIMIT, size=size * 3, price=ask + 5 * tick, tif=IOC,
                                     client_id="t1")  # fmt: skip
            sim.engine.cancel(resting)
            wrapped = events(await collect(ws, idle=0.3))
            late = sim.engine.place(alice, symbol, "BUY", LIMIT, size=size, price=bid - 20 * tick)
            await ws.send(json.dumps({"id": "u", "method": "userDataStream.unsubscribe"}))  # no params: all
            ended = events(await collect(ws, idle=0.3))
            sim.engine.cancel(late)
            after = await collect(ws, idle=0.3)
        assert all(set(w) == {"subscriptionId", "event"} and w["subscriptionId"] == 0 for w in wrapped)
        got = [w["event"] for w in wrapped]
        reports = [e for e in got if e["e"] == "executionReport"]
        positions = [e for e in got if e["e"] == "outboundAccountPosition"]
        assert len(reports) == len(positions) == 2 + len(taker.fills) + (1 if taker.status == "EXPIRED" else 0) + 1
        assert [e["e"] for e in got[:2]] == ["executionReport", "outboundAccountPosition"]  # each change, then balances
        assert all(set(r) >= EXECUTION_REPORT for r in reports)
        assert {r["c"] for r in reports} >= {"r1", "t1"} and all(r["i"] != 0 for r in reports)
        new = reports[0]
        assert (new["x"], new["X"], new["c"], new["q"], new["t"], new["N"]) == ("NEW", "NEW", "r1", f"{size:.8f}", -1,
                                                                                 None)  # fmt: skip
        trades = [r for r in reports if r["x"] == "TRADE"]
        assert [(r["t"], Decimal(r["L"]), Decimal(r["l"]), Decimal(r["n"]), r["N"]) for r in trades] == [
            (f.trade_id, f.price, f.size, f.fee.quantize(Decimal("1e-8")), f.fee_asset) for f in taker.fills
        ]
        assert Decimal(trades[-1]["z"]) == taker.executed and Decimal(trades[-1]["Z"]) == taker.cumulative_quote
        canceled = reports[-1]
        assert (canceled["x"], canceled["X"], canceled["C"]) == ("CANCELED", "CANCELED", "r1")
        assert canceled["c"] != "r1"  # the cancel's own client order id
        last = {b["a"]: (Decimal(b["f"]), Decimal(b["l"])) for b in positions[-1]["B"]}
        instrument = sim.engine.instruments[symbol]
        assert last == {a: sim.engine.balance(alice, a) for a in (instrument.base, instrument.quote)}
        # Unsubscribing: the subscription's earlier events, eventStreamTerminated, the response, then nothing.
        assert [(f["subscriptionId"], f["event"]["e"]) for f in ended[:3]] == [
            (0, "executionReport"), (0, "outboundAccountPosition"), (0, "eventStreamTerminated")]  # fmt: skip
        assert set(ended[2]["event"]) == {"e", "E"}
        assert len(ended) == 4 and (ended[3]["id"], ended[3]["status"], ended[3]["result"]) == ("u", 200, {})
        assert after == []

    run_binance(False, scenario)


def test_binance_ws_api_two_accounts_on_one_connection_and_server_shutdown() -> None:
    async def scenario(sim: BinanceSynthetic, http: httpx.AsyncClient) -> None:
        alice, bob = sim.engine.accounts.all
        symbol, bid, _, tick, size = first(sim)
        async with connect(sim.ws_url + WS_API) as ws, connect(sim.ws_url + WS_API) as quiet:
            assert (await call(ws, SUBSCRIBE, subscription("alice-key")))["result"] == {"subscriptionId": 0}
            assert (await call(ws, SUBSCRIBE, subscription("bob-key")))["result"] == {"subscriptionId": 1}
            sim.engine.place(bob, symbol, "BUY", LIMIT, size=size, price=bid - 20 * tick, client_id="b1")
            sim.engine.place(alice, symbol, "BUY", LIMIT, size=size, price=bid - 20 * tick, client_id="a1")
            got = events(await collect(ws, idle=0.3))
            assert [(f["subscriptionId"], f["event"]["e"], f["event"].get("c")) for f in got] == [
                (1, "executionReport", "b1"), (1, "outboundAccountPosition", None),
                (0, "executionReport", "a1"), (0, "outboundAccountPosition", None)]  # fmt: skip
            await ws.send(json.dumps({"id": 3, "method": "userDataStream.unsubscribe", "params": {}}))
            ended = events(await collect(ws, idle=0.3))
            assert [(f.get("subscriptionId"), f.get("event", {}).get("e")) for f in ended] == [
                (0, "eventStreamTerminated"), (1, "eventStreamTerminated"), (None, None)]  # fmt: skip
            assert (ended[2]["id"], ended[2]["result"]) == (3, {})
            assert (await call(ws, "session.subscriptions"))["result"] == []
            assert sim.trading is not None
            sim.trading.user_streams.shutdown_ws_api(close_after=0.2)
            for connection in (ws, quiet):  # every connection, subscribed or not
                shutdown = json.loads(await asyncio.wait_for(connection.recv(), 2))
                assert shutdown == {"event": {"e": "serverShutdown", "E": shutdown["event"]["E"]}}
                with pytest.raises(ConnectionClosed):  # then closed
                    await asyncio.wait_for(connection.recv(), 2)

    run_binance(False, scenario)


def test_binance_usdm_serves_no_ws_api() -> None:
    async def scenario(sim: BinanceSynthetic, http: httpx.AsyncClient) -> None:
        with pytest.raises(InvalidStatus):
            async with connect(sim.ws_url + WS_API):
                pass

    run_binance(True, scenario)


def test_binance_usdm_order_trade_updates_account_updates_and_expiry() -> None:
    async def scenario(sim: BinanceSynthetic, http: httpx.AsyncClient) -> None:
        key = (await http.post("/fapi/v1/listenKey", headers={"X-MBX-APIKEY": "alice-key"})).json()["listenKey"]
        put = await http.put("/fapi/v1/listenKey", headers={"X-MBX-APIKEY": "alice-key"})  # by API key, no param
        assert put.status_code == 200 and put.json() == {"listenKey": key}
        alice = sim.engine.accounts.all[0]
        symbol, bid, ask, tick, size = first(sim)
        async with connect(f"{sim.ws_url}/ws/{key}") as ws:
            resting = sim.engine.place(alice, symbol, "BUY", LIMIT, size=size, price=bid - 20 * tick, tif=GTC)
            sim.engine.cancel(resting)
            quiet = events(await collect(ws, idle=0.3))
            taker = sim.engine.place(alice, symbol, "BUY", LIMIT, size=size, price=ask + 5 * tick, tif=IOC)
            filled = events(await collect(ws, idle=0.3))
            assert sim.trading is not None
            sim.trading.user_streams.expire(key)
            expired = events(await collect(ws, idle=0.3))
            sim.engine.place(alice, symbol, "BUY", LIMIT, size=size, price=bid - 20 * tick)
            assert await collect(ws, idle=0.3) == []  # nothing after listenKeyExpired
        # Unfilled and canceled orders push no ACCOUNT_UPDATE (documented).
        assert [(e["e"], e["o"]["x"]) for e in quiet] == [("ORDER_TRADE_UPDATE", "NEW"), ("ORDER_TRADE_UPDATE",
                                                                                          "CANCELED")]  # fmt: skip
        assert all(set(e["o"]) >= ORDER_TRADE_UPDATE and "N" not in e["o"] for e in quiet)
        trades = [e["o"] for e in filled if e["e"] == "ORDER_TRADE_UPDATE" and e["o"]["x"] == "TRADE"]
        assert [(o["t"], Decimal(o["L"]), Decimal(o["l"]), o["N"]) for o in trades] == [
            (f.trade_id, f.price, f.size, "USDT") for f in taker.fills
        ]
        updates = [e for e in filled if e["e"] == "ACCOUNT_UPDATE"]
        assert len(updates) == len(taker.fills) and updates[0]["a"]["m"] == "ORDER"
        balance, position = updates[-1]["a"]["B"][0], updates[-1]["a"]["P"][0]
        assert set(balance) == {"a", "wb", "cw", "bc"} and balance["a"] == "USDT"
        assert Decimal(position["pa"]) == taker.executed and position["ps"] == "BOTH"
        assert expired == [{"e": "listenKeyExpired", "E": expired[0]["E"], "listenKey": key}]
        assert isinstance(expired[0]["E"], str)  # as the USD-M docs show it
        refused = await http.put("/fapi/v1/listenKey", headers={"X-MBX-APIKEY": "alice-key"})
        assert refused.json()["code"] == -1125

    run_binance(True, scenario)


def test_binance_user_stream_drop_fault_is_recorded() -> None:
    async def scenario(sim: BinanceSynthetic, http: httpx.AsyncClient) -> None:
        alice = sim.engine.accounts.all[0]
        symbol, bid, _, tick, size = first(sim)
        async with connect(sim.ws_url + WS_API) as ws:
            assert (await call(ws, SUBSCRIBE, subscription("alice-key")))["result"] == {"subscriptionId": 0}
            order = sim.engine.place(alice, symbol, "BUY", LIMIT, size=size, price=bid - 20 * tick, client_id="d1")
            sim.engine.cancel(order)
            got = events(await collect(ws, idle=0.3))
        # Every second event is lost (responses are not events): each executionReport arrives, its
        # balance message does not; the record names the account although the connection has several.
        assert [f["event"]["e"] for f in got] == ["executionReport", "executionReport"]
        instrument = sim.engine.instruments[symbol]
        assets = f"{instrument.base},{instrument.quote}"
        assert sim.stats.user_stream_dropped == [("alice", "outboundAccountPosition", assets)] * 2
        assert sim.stats.user_stream_messages == 4

    run_binance(False, scenario, Faults(user_stream_drop_every=2))


def test_coinbase_user_channel_needs_a_jwt_then_snapshots_and_updates() -> None:
    async def subscribe(ws: ClientConnection, **extra: object) -> list[dict]:
        await ws.send(json.dumps({"type": "subscribe", "channel": "user", **extra}))
        return events(await collect(ws, idle=0.3))

    async def main() -> None:
        sim = CoinbaseSynthetic(2, seed=5, rate=50.0, trading=TradingConfig(accounts()))
        async with sim:
            alice = sim.engine.accounts.all[0]
            symbol, bid, ask, tick, size = first(sim)
            other = list(sim.engine.instruments)[1]
            before = sim.engine.place(alice, symbol, "BUY", LIMIT, size=size, price=bid - 20 * tick, client_id="b1")
            async with connect(sim.ws_url) as ws:
                assert await subscribe(ws, product_ids=[symbol]) == [
                    {"type": "error", "message": "authentication failure"}
                ]
                assert await subscribe(ws, product_ids=[symbol], jwt=ws_jwt(OTHER_KEY)) == [
                    {"type": "error", "message": "authentication failure"}
                ]  # signed by another key
                opened = await subscribe(ws, product_ids=[symbol], jwt=ws_jwt())
                theirs = sim.synthetic.instruments[1]
                low = theirs.price.value(sim.synthetic.books[1].best_bid) - 20 * theirs.tick_size
                steps = (Decimal(20) / low / theirs.step_size).to_integral_value(rounding=ROUND_CEILING)
                sim.engine.place(alice, other, "BUY", LIMIT, size=steps * theirs.step_size, price=low)  # not subscribed
                taker = sim.engine.place(alice, symbol, "BUY", LIMIT, size=size, price=ask + 5 * tick, tif=IOC,
                                         client_id="t1")  # fmt: skip
                sim.engine.cancel(before)
                later = events(await collect(ws, idle=0.3))
        snapshot, confirmation = opened
        assert snapshot["channel"] == "user" and snapshot["events"][0]["type"] == "snapshot"
        assert [o["client_order_id"] for o in snapshot["events"][0]["orders"]] == ["b1"]
        assert confirmation["channel"] == "subscriptions" and confirmation["events"][0]["subscriptions"]["user"] == [
            symbol
        ]
        sequence = [m["sequence_num"] for m in opened + later]
        assert sequence == list(range(sequence[0], sequence[0] + len(sequence)))
        orders = [m["events"][0]["orders"][0] for m in later]
        assert all(
            m["events"][0]["type"] == "update" and set(o) >= USER_ORDER for m, o in zip(later, orders, strict=True)
        )
        assert all(o["product_id"] == symbol for o in orders)
        mine = [o for o in orders if o["client_order_id"] == "t1"]
        assert mine[0]["status"] == "OPEN" and mine[0]["cumulative_quantity"] == "0"
        assert Decimal(mine[-1]["cumulative_quantity"]) == taker.executed and mine[-1]["order_id"] == taker.uuid
        assert Decimal(mine[-1]["total_fees"]) == taker.fees and len(mine) == 1 + len(taker.fills) + (
            taker.status == "EXPIRED")  # fmt: skip
        assert (orders[-1]["client_order_id"], orders[-1]["status"]) == ("b1", "CANCELLED")

    asyncio.run(main())
