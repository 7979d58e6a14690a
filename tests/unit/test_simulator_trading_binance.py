"""Simulated Binance order API (spot and USD-M) against a plain HTTP client signing as the docs say."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import time
from decimal import Decimal
from urllib.parse import urlencode

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from simulator.binance import BinanceSynthetic
from simulator.faults import Faults
from simulator.trading import Account, BinanceKey, TradingConfig

pytestmark = pytest.mark.timeout(60)

#: Binance's documented example key pair (SIGNED endpoint examples, HMAC keys).
API_KEY = "vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A"
SECRET = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j"
ED_PRIVATE = ed25519.Ed25519PrivateKey.generate()
ED_PUBLIC = ED_PRIVATE.public_key().public_bytes(serialization.Encoding.PEM,
                                                 serialization.PublicFormat.SubjectPublicKeyInfo).decode()  # fmt: skip
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def accounts(usdt: str = "1000000") -> list[Account]:
    return [
        Account("alice", {"USDT": usdt, "BTC": "100"}, binance=BinanceKey(API_KEY, hmac_secret=SECRET)),
        Account("bob", {"USDT": "1000000"}, binance=BinanceKey("bob-key", ed25519_public_key=ED_PUBLIC)),
    ]


def sim(usdm: bool = False, rate: float = 50.0, usdt: str = "1000000", **kwargs: object) -> BinanceSynthetic:
    return BinanceSynthetic(2, usdm=usdm, seed=3, rate=rate, trading=TradingConfig(accounts(usdt)), **kwargs)  # type: ignore[arg-type]


def sign(params: dict, secret: str = SECRET, stamp: int | None = None, ed: bool = False) -> str:
    """The signed totalParams, as Binance documents: HMAC-SHA256 hex, or Ed25519 base64 (url-encoded)."""
    query = urlencode({**params, "timestamp": stamp if stamp is not None else int(time.time() * 1000)})
    if ed:
        signature = base64.b64encode(ED_PRIVATE.sign(query.encode())).decode()
    else:
        signature = hmac.new(secret.encode(), query.encode(), hashlib.sha256).hexdigest()
    return f"{query}&{urlencode({'signature': signature})}"


class Client:
    def __init__(self, http: httpx.AsyncClient, prefix: str, key: str = API_KEY) -> None:
        self.http, self.prefix, self.key = http, prefix, key

    async def call(self, method: str, path: str, params: dict, **sign_options: object) -> httpx.Response:
        text = sign(params, **sign_options)  # type: ignore[arg-type]
        headers = {"X-MBX-APIKEY": self.key}
        url = f"{self.prefix}{path}"
        if method in ("POST", "PUT"):  # parameters in the form body
            return await self.http.request(method, url, content=text, headers={**headers, **FORM})
        return await self.http.request(method, f"{url}?{text}", headers=headers)


def best(sim: BinanceSynthetic, symbol: str) -> tuple[Decimal, Decimal, Decimal, Decimal]:
    """(best bid, best ask, tick, step) now."""
    book = sim.true_book(symbol)
    bid = max(Decimal(p) for p in book["bids"])
    ask = min(Decimal(p) for p in book["asks"])
    instrument = sim.source.instruments[symbol]
    return bid, ask, instrument.tick_size, instrument.step_size


def size_for(price: Decimal, step: Decimal, notional: Decimal = Decimal(20)) -> Decimal:
    return max(step, (notional / price / step).to_integral_value(rounding="ROUND_CEILING") * step)


def run(scenario) -> object:  # type: ignore[no-untyped-def]
    return asyncio.run(scenario())


def test_documented_hmac_example_verifies() -> None:
    payload = (
        b"symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=0.1&recvWindow=5000"
        b"&timestamp=1499827319559"
    )
    key = BinanceKey(API_KEY, hmac_secret=SECRET)
    signature = "c8db56825ae71d6d79447849e617115f4a920fa2acdcab2b053c4b2838bd6b71"
    assert key.verify(payload, signature) and key.verify(payload, signature.upper())
    assert not key.verify(payload + b"0", signature)


def test_signature_key_and_timestamp_rejections() -> None:
    async def scenario() -> None:
        async with sim() as s, httpx.AsyncClient(base_url=s.trading_url) as http:
            symbol = s.symbols[0]
            client = Client(http, "/api/v3")
            ok = await client.call("GET", "/openOrders", {"symbol": symbol})
            assert ok.status_code == 200 and ok.json() == [] and "X-MBX-USED-WEIGHT-1M" in ok.headers
            bad = await client.call("GET", "/openOrders", {"symbol": symbol}, secret="wrong")
            assert bad.status_code == 400 and bad.json() == {
                "code": -1022,
                "msg": "Signature for this request is not valid.",
            }
            stale = await client.call("GET", "/openOrders", {"symbol": symbol}, stamp=int(time.time() * 1000) - 6000)
            assert stale.json() == {"code": -1021, "msg": "Timestamp for this request is outside of the recvWindow."}
            ahead = await client.call("GET", "/openOrders", {"symbol": symbol}, stamp=int(time.time() * 1000) + 5000)
            assert ahead.json()["code"] == -1021
            wide = await client.call("GET", "/openOrders", {"symbol": symbol, "recvWindow": 20000},
                                     stamp=int(time.time() * 1000) - 6000)  # fmt: skip
            assert wide.status_code == 200
            unknown = await Client(http, "/api/v3", key="nobody").call("GET", "/openOrders", {"symbol": symbol})
            assert unknown.status_code == 401
            assert unknown.json() == {"code": -2015, "msg": "Invalid API-key, IP, or permissions for action."}
            ed = await Client(http, "/api/v3", key="bob-key").call("GET", "/openOrders", {"symbol": symbol}, ed=True)
            assert ed.status_code == 200
            ed_bad = await Client(http, "/api/v3", key="bob-key").call("GET", "/openOrders", {"symbol": symbol})
            assert ed_bad.json()["code"] == -1022  # an HMAC signature for an Ed25519 key
            server_time = (await http.get("/api/v3/time")).json()["serverTime"]
            assert abs(server_time - time.time() * 1000) < 5000
            info = (await http.get("/api/v3/exchangeInfo", params={"symbol": symbol})).json()
            assert [i["symbol"] for i in info["symbols"]] == [symbol]

    run(scenario)


def test_filters_balance_and_duplicate_client_ids() -> None:
    async def scenario() -> None:
        async with sim(usdt="100") as s, httpx.AsyncClient(base_url=s.trading_url) as http:
            symbol = s.symbols[0]
            bid, _ask, tick, step = best(s, symbol)
            client = Client(http, "/api/v3")
            low = bid - 50 * tick
            base = {"symbol": symbol, "side": "BUY", "type": "LIMIT", "timeInForce": "GTC"}

            async def order(**params: object) -> httpx.Response:
                return await client.call("POST", "/order", {**base, **params})

            off_tick = await order(quantity=str(size_for(low, step)), price=str(low + tick / 2))
            assert off_tick.json() == {"code": -1013, "msg": "Filter failure: PRICE_FILTER"}
            off_step = await order(quantity=str(size_for(low, step) + step / 2), price=str(low))
            assert off_step.json() == {"code": -1013, "msg": "Filter failure: LOT_SIZE"}
            tiny = await order(quantity=str(step), price=str(low)) if low * step < 5 else None
            if tiny is not None:
                assert tiny.json() == {"code": -1013, "msg": "Filter failure: NOTIONAL"}
            poor = await order(quantity=str(size_for(low, step, Decimal(500))), price=str(low))
            assert poor.json() == {"code": -2010, "msg": "Account has insufficient balance for requested action."}
            first = await order(quantity=str(size_for(low, step)), price=str(low), newClientOrderId="dup-1")
            assert first.status_code == 200 and first.json()["status"] == "NEW"
            assert (
                "X-MBX-ORDER-COUNT-10S" in first.headers and "X-MBX-ORDER-COUNT-1D" in first.headers
            )  # case-insensitive
            open_orders = (await client.call("GET", "/openOrders", {})).json()
            assert [(o["orderId"], o["clientOrderId"], o["status"]) for o in open_orders] == [
                (first.json()["orderId"], "dup-1", "NEW")
            ]
            again = await order(quantity=str(size_for(low, step)), price=str(low), newClientOrderId="dup-1")
            assert again.json() == {"code": -2010, "msg": "Duplicate order sent."}
            assert len(s.engine.all_by_client_id("alice", "dup-1")) == 1
            cancel = await client.call("DELETE", "/order", {"symbol": symbol, "origClientOrderId": "dup-1"})
            assert cancel.json()["status"] == "CANCELED" and cancel.json()["origClientOrderId"] == "dup-1"
            reuse = await order(quantity=str(size_for(low, step)), price=str(low), newClientOrderId="dup-1")
            assert reuse.status_code == 200  # reusable once the first order is closed (documented)
            unknown = await client.call("GET", "/order", {"symbol": symbol, "origClientOrderId": "nope"})
            assert unknown.status_code == 400 and unknown.json() == {"code": -2013, "msg": "Order does not exist."}
            gone = await client.call("DELETE", "/order", {"symbol": symbol, "orderId": 1})
            assert gone.json() == {"code": -2011, "msg": "Unknown order sent."}

    run(scenario)


def test_market_ioc_fok_post_only_and_rest_then_fill() -> None:
    async def scenario() -> None:
        async with sim(rate=4000.0) as s, httpx.AsyncClient(base_url=s.trading_url) as http:
            symbol = s.symbols[1]
            client = Client(http, "/api/v3")
            bid, ask, tick, step = best(s, symbol)
            qty = size_for(ask, step)
            market = await client.call("POST", "/order", {"symbol": symbol, "side": "BUY", "type": "MARKET",
                                                          "quantity": str(qty)})  # fmt: skip
            body = market.json()
            assert body["status"] == "FILLED" and Decimal(body["executedQty"]) == qty and body["fills"]
            assert all(Decimal(f["price"]) >= ask - 10 * tick for f in body["fills"])
            assert Decimal(body["fills"][0]["commission"]) > 0 and body["fills"][0]["commissionAsset"] != "USDT"
            bid, ask, tick, step = best(s, symbol)
            # Far enough through the ask that the market (4,000 updates a second) cannot move out of its way.
            through = str(ask + 50 * tick)
            maker = await client.call("POST", "/order", {"symbol": symbol, "side": "BUY", "type": "LIMIT_MAKER",
                                                         "quantity": str(qty), "price": through})  # fmt: skip
            assert maker.json() == {"code": -2010, "msg": "Order would immediately match and take."}
            huge = str(size_for(ask, step, Decimal(50_000)))  # more than the best ask level holds
            fok = await client.call("POST", "/order", {"symbol": symbol, "side": "BUY", "type": "LIMIT",
                                                       "timeInForce": "FOK", "quantity": huge, "price": str(ask),
                                                       "newOrderRespType": "RESULT"})  # fmt: skip
            assert fok.json()["status"] == "EXPIRED" and Decimal(fok.json()["executedQty"]) == 0
            assert "fills" not in fok.json()
            ioc = await client.call("POST", "/order", {"symbol": symbol, "side": "BUY", "type": "LIMIT",
                                                       "timeInForce": "IOC", "quantity": str(qty),
                                                       "price": str(bid - 100 * tick)})  # fmt: skip
            assert ioc.json()["status"] == "EXPIRED"
            # A resting buy just under the best bid fills when the (moving) market comes down to it. (At
            # the bid itself, a market that moved down since it was read could fill it at once, as a taker.)
            bid, ask, tick, step = best(s, symbol)
            price = bid - 2 * tick
            rest = await client.call("POST", "/order", {"symbol": symbol, "side": "BUY", "type": "LIMIT",
                                                        "timeInForce": "GTC", "quantity": str(qty),
                                                        "price": str(price), "newOrderRespType": "ACK"})  # fmt: skip
            assert set(rest.json()) == {"symbol", "orderId", "orderListId", "clientOrderId", "transactTime"}
            order_id = rest.json()["orderId"]
            status = "NEW"
            for _ in range(200):
                await asyncio.sleep(0.05)
                status = (await client.call("GET", "/order", {"symbol": symbol, "orderId": order_id})).json()["status"]
                if status == "FILLED":
                    break
            assert status == "FILLED"
            order = s.engine.get(order_id)
            assert order is not None and all(f.maker and f.price == price for f in order.fills)

    run(scenario)


def test_cancel_replace_and_amend_keep_priority() -> None:
    async def scenario() -> None:
        async with sim() as s, httpx.AsyncClient(base_url=s.trading_url) as http:
            symbol = s.symbols[0]
            client = Client(http, "/api/v3")
            bid, ask, tick, step = best(s, symbol)
            low, qty = bid - 40 * tick, size_for(bid, step) * 3
            placed = await client.call("POST", "/order", {"symbol": symbol, "side": "BUY", "type": "LIMIT",
                                                          "timeInForce": "GTC", "quantity": str(qty),
                                                          "price": str(low), "newClientOrderId": "a1"})  # fmt: skip
            assert placed.status_code == 200
            replace = {"symbol": symbol, "side": "BUY", "type": "LIMIT", "timeInForce": "GTC", "quantity": str(qty),
                       "price": str(low - tick), "cancelReplaceMode": "STOP_ON_FAILURE"}  # fmt: skip
            ok = await client.call("POST", "/order/cancelReplace", {**replace, "cancelOrigClientOrderId": "a1",
                                                                    "newClientOrderId": "a2"})  # fmt: skip
            body = ok.json()
            assert ok.status_code == 200 and body["cancelResult"] == "SUCCESS" and body["newOrderResult"] == "SUCCESS"
            assert body["cancelResponse"]["status"] == "CANCELED" and body["newOrderResponse"]["clientOrderId"] == "a2"
            failed = await client.call("POST", "/order/cancelReplace", {**replace, "cancelOrigClientOrderId": "a1"})
            assert failed.status_code == 400 and failed.json() == {
                "code": -2022, "msg": "Order cancel-replace failed.",
                "data": {"cancelResult": "FAILURE", "newOrderResult": "NOT_ATTEMPTED",
                         "cancelResponse": {"code": -2011, "msg": "Unknown order sent."},
                         "newOrderResponse": None}}  # fmt: skip
            partial = await client.call("POST", "/order/cancelReplace", {
                **replace, "type": "LIMIT_MAKER", "timeInForce": "", "price": str(ask + 20 * tick),
                "cancelOrigClientOrderId": "a2"})  # fmt: skip
            assert partial.status_code == 409 and partial.json()["code"] == -2021
            assert partial.json()["data"]["newOrderResponse"] == {
                "code": -2010,
                "msg": "Order would immediately match and take.",
            }
            placed = await client.call("POST", "/order", {"symbol": symbol, "side": "BUY", "type": "LIMIT",
                                                          "timeInForce": "GTC", "quantity": str(qty),
                                                          "price": str(low), "newClientOrderId": "b1"})  # fmt: skip
            bigger = await client.call("PUT", "/order/amend/keepPriority", {"symbol": symbol, "origClientOrderId": "b1",
                                                                            "newQty": str(qty + step)})  # fmt: skip
            assert bigger.json() == {"code": -2038, "msg": "Order amend (quantity increase) is not supported."}
            smaller = await client.call(
                "PUT",
                "/order/amend/keepPriority",
                {"symbol": symbol, "origClientOrderId": "b1", "newQty": str(qty - step), "newClientOrderId": "b2"},
            )
            amended = smaller.json()["amendedOrder"]
            assert Decimal(amended["qty"]) == qty - step and amended["origClientOrderId"] == "b1"
            query = await client.call("GET", "/order", {"symbol": symbol, "origClientOrderId": "b2"})
            assert (
                query.json()["orderId"] == placed.json()["orderId"] and Decimal(query.json()["origQty"]) == qty - step
            )

    run(scenario)


def test_usdm_orders_modify_reduce_only_and_margin() -> None:
    async def scenario() -> None:
        async with sim(usdm=True, usdt="1000") as s, httpx.AsyncClient(base_url=s.trading_url) as http:
            symbol = s.symbols[0]
            client = Client(http, "/fapi/v1")
            bid, ask, tick, step = best(s, symbol)
            low, qty = bid - 30 * tick, size_for(bid, step)
            base = {"symbol": symbol, "side": "BUY", "type": "LIMIT", "timeInForce": "GTC"}
            reduce = await client.call("POST", "/order", {**base, "side": "SELL", "quantity": str(qty),
                                                          "price": str(ask + 30 * tick),
                                                          "reduceOnly": "true"})  # fmt: skip
            assert reduce.json() == {"code": -2022, "msg": "ReduceOnly Order is rejected."}
            margin = await client.call("POST", "/order", {**base, "quantity": str(size_for(low, step, Decimal(50_000))),
                                                          "price": str(low)})  # fmt: skip
            assert margin.json() == {"code": -2019, "msg": "Margin is insufficient."}
            gtx = await client.call("POST", "/order", {**base, "timeInForce": "GTX", "quantity": str(qty),
                                                       "price": str(ask + 20 * tick)})  # fmt: skip
            assert gtx.json()["code"] == -5022
            placed = await client.call("POST", "/order", {**base, "quantity": str(qty), "price": str(low),
                                                          "newClientOrderId": "f1"})  # fmt: skip
            assert placed.status_code == 200 and placed.json()["status"] == "NEW"
            assert {"X-MBX-ORDER-COUNT-10S", "X-MBX-ORDER-COUNT-1M"} <= {h.upper() for h in placed.headers}
            dup = await client.call("POST", "/order", {**base, "quantity": str(qty), "price": str(low),
                                                       "newClientOrderId": "f1"})  # fmt: skip
            assert dup.json() == {"code": -4116, "msg": "clientOrderId is duplicated."}
            modify = {"symbol": symbol, "side": "BUY", "origClientOrderId": "f1"}
            same = await client.call("PUT", "/order", {**modify, "quantity": str(qty), "price": str(low)})
            assert same.json() == {"code": -5027, "msg": "No need to modify the order."}
            moved = await client.call("PUT", "/order", {**modify, "quantity": str(qty * 2), "price": str(low - tick)})
            assert Decimal(moved.json()["price"]) == low - tick and Decimal(moved.json()["origQty"]) == qty * 2
            bought = await client.call("POST", "/order", {**base, "type": "MARKET", "timeInForce": "",
                                                          "quantity": str(qty)})  # fmt: skip
            assert bought.json()["status"] == "FILLED"
            assert s.engine.position("alice", symbol).size == qty
            closing = await client.call("POST", "/order", {"symbol": symbol, "side": "SELL", "type": "MARKET",
                                                           "quantity": str(qty), "reduceOnly": "true"})  # fmt: skip
            assert closing.json()["status"] == "FILLED" and s.engine.position("alice", symbol).size == 0
            gone = await client.call("GET", "/order", {"symbol": symbol, "origClientOrderId": "nope"})
            assert gone.json() == {"code": -2013, "msg": "Order does not exist."}

    run(scenario)


def test_injected_order_faults() -> None:
    async def scenario() -> None:
        async with sim() as s, httpx.AsyncClient(base_url=s.trading_url) as http:
            symbol = s.symbols[0]
            client = Client(http, "/api/v3")
            bid, _ask, tick, step = best(s, symbol)
            low, qty = bid - 40 * tick, size_for(bid, step)

            async def create(cid: str, timeout: float = 5.0) -> httpx.Response:
                params = {"symbol": symbol, "side": "BUY", "type": "LIMIT", "timeInForce": "GTC",
                          "quantity": str(qty), "price": str(low), "newClientOrderId": cid}  # fmt: skip
                text = sign(params)
                return await http.post("/api/v3/order", content=text, timeout=timeout,
                                       headers={"X-MBX-APIKEY": API_KEY, **FORM})  # fmt: skip

            assert s.trading is not None
            s.trading.faults = Faults(order_timeout_every=1, order_timeout_hold=2.0)
            with pytest.raises(httpx.ReadTimeout):
                await create("t1", timeout=0.3)
            found = await client.call("GET", "/order", {"symbol": symbol, "origClientOrderId": "t1"})
            assert found.json()["status"] == "NEW" and s.stats.orders_timed_out == ["t1"]
            s.trading.faults = Faults(order_429_every=1)
            throttled = await create("r1")
            assert throttled.status_code == 429 and throttled.json()["code"] == -1015
            assert "Retry-After" in throttled.headers and "X-MBX-USED-WEIGHT-1M" in throttled.headers
            assert s.engine.by_client_id("alice", "r1") is None
            s.trading.faults = Faults(order_5xx_before_accept_every=1)
            assert (await create("b1")).status_code == 503 and s.engine.by_client_id("alice", "b1") is None
            s.trading.faults = Faults(order_5xx_after_accept_every=1)
            after = await create("a1")
            assert after.status_code == 503 and after.json()["code"] == -1007
            assert s.engine.by_client_id("alice", "a1") is not None and s.stats.orders_5xx_after_accept == ["a1"]
            s.trading.faults = Faults(order_latency=0.3)
            started = time.monotonic()
            assert (await create("l1")).status_code == 200 and time.monotonic() - started >= 0.3
            debug = (await http.get("/_sim/orders")).json()["orders"]
            assert {o["client_order_id"] for o in debug} == {"t1", "a1", "l1"}
            stats = (await http.get("/_sim/stats")).json()
            assert stats["orders_timed_out"] == ["t1"] and stats["orders_throttled"] == ["r1"]

    run(scenario)


def test_order_rate_limit_answers_429() -> None:
    async def scenario() -> None:
        config = TradingConfig(accounts(), order_limits=((2, 10),))
        async with BinanceSynthetic(1, seed=3, rate=50, trading=config) as s, \
                httpx.AsyncClient(base_url=s.trading_url) as http:  # fmt: skip
            symbol = s.symbols[0]
            client = Client(http, "/api/v3")
            bid, _, tick, step = best(s, symbol)
            params = {"symbol": symbol, "side": "BUY", "type": "LIMIT", "timeInForce": "GTC",
                      "quantity": str(size_for(bid, step)), "price": str(bid - 40 * tick)}  # fmt: skip
            answers = [await client.call("POST", "/order", params) for _ in range(3)]
            assert [a.status_code for a in answers] == [200, 200, 429]
            assert answers[1].headers["X-MBX-ORDER-COUNT-10S"] == "2"
            assert answers[2].json() == {"code": -1015, "msg": "Too many new orders; current limit is 2 orders per "
                                                               "10 SECOND."}  # fmt: skip
            assert int(answers[2].headers["Retry-After"]) >= 1

    run(scenario)
