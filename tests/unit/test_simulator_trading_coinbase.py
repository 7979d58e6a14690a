"""Simulated Coinbase Advanced Trade order API against a plain HTTP client building CDP JWTs itself."""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import time
from decimal import Decimal

import httpx
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from simulator.coinbase import CoinbaseSynthetic
from simulator.faults import Faults
from simulator.trading import Account, CoinbaseKey, TradingConfig

pytestmark = pytest.mark.timeout(60)
KEY_NAME = "organizations/org-1/apiKeys/key-1"
PRIVATE = ec.generate_private_key(ec.SECP256R1())
OTHER = ec.generate_private_key(ec.SECP256R1())
PUBLIC = PRIVATE.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo).decode()  # fmt: skip
P = "/api/v3/brokerage"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def jwt(uri: str, key: ec.EllipticCurvePrivateKey = PRIVATE, nbf: int | None = None, kid: str = KEY_NAME) -> str:
    """A CDP JWT as documented: ES256 over header.claims, the signature raw r || s."""
    now = int(time.time()) if nbf is None else nbf
    head = {"alg": "ES256", "kid": kid, "nonce": secrets.token_hex(), "typ": "JWT"}
    claims = {"sub": kid, "iss": "cdp", "nbf": now, "exp": now + 120, "uri": uri}
    signing_input = f"{b64(json.dumps(head).encode())}.{b64(json.dumps(claims).encode())}"
    r, s = decode_dss_signature(key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
    return f"{signing_input}.{b64(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"


class Client:
    def __init__(self, http: httpx.AsyncClient, host: str) -> None:
        self.http, self.host = http, host

    async def call(self, method: str, path: str, body: dict | None = None, params: dict | None = None,
                   **jwt_options: object) -> httpx.Response:  # fmt: skip
        token = jwt(f"{method} {self.host}{P}{path}", **jwt_options)  # type: ignore[arg-type]
        return await self.http.request(method, f"{P}{path}", json=body, params=params,
                                       headers={"Authorization": f"Bearer {token}"})  # fmt: skip


def sim(rate: float = 50.0, usd: str = "1000000") -> CoinbaseSynthetic:
    account = Account("alice", {"USD": usd, "BTC": "100"}, coinbase=CoinbaseKey(KEY_NAME, PUBLIC))
    return CoinbaseSynthetic(2, seed=5, rate=rate, trading=TradingConfig([account]))


def best(s: CoinbaseSynthetic, product: str) -> tuple[Decimal, Decimal, Decimal, Decimal]:
    book = s.true_book(product)
    instrument = s.synthetic.instruments[s.products[product]]
    return (max(map(Decimal, book["bids"])), min(map(Decimal, book["asks"])), instrument.tick_size,
            instrument.step_size)  # fmt: skip


def size_for(price: Decimal, step: Decimal, notional: Decimal = Decimal(20)) -> Decimal:
    return max(step, (notional / price / step).to_integral_value(rounding="ROUND_CEILING") * step)


def limit(product: str, size: Decimal, price: Decimal, cid: str, side: str = "BUY", post_only: bool = False) -> dict:
    return {"client_order_id": cid, "product_id": product, "side": side,
            "order_configuration": {"limit_limit_gtc": {"base_size": str(size), "limit_price": str(price),
                                                        "post_only": post_only}}}  # fmt: skip


def test_jwt_acceptance_and_rejections() -> None:
    async def scenario() -> None:
        async with sim() as s, httpx.AsyncClient(base_url=s.trading_url) as http:
            host = s.trading_url.removeprefix("http://")
            client = Client(http, host)
            ok = await client.call("GET", "/orders/historical/batch")
            assert ok.status_code == 200 and ok.json()["orders"] == []
            expired = await client.call("GET", "/orders/historical/batch", nbf=int(time.time()) - 600)
            assert expired.status_code == 401 and expired.text.strip() == "Unauthorized"
            wrong_key = await client.call("GET", "/orders/historical/batch", key=OTHER)
            assert wrong_key.status_code == 401
            unknown = await client.call("GET", "/orders/historical/batch", kid="organizations/x/apiKeys/y")
            assert unknown.status_code == 401
            token = jwt(f"GET api.coinbase.com{P}/orders/historical/batch")  # the production host, not this one
            wrong_uri = await http.get(f"{P}/orders/historical/batch", headers={"Authorization": f"Bearer {token}"})
            assert wrong_uri.status_code == 401
            token = jwt(f"POST {host}{P}/orders/historical/batch")  # another method
            assert (await http.get(f"{P}/orders/historical/batch",
                                   headers={"Authorization": f"Bearer {token}"})).status_code == 401  # fmt: skip
            assert (await http.get(f"{P}/orders/historical/batch")).status_code == 401

    asyncio.run(scenario())


def test_create_repeat_client_id_edit_cancel_and_list() -> None:
    async def scenario() -> None:
        async with sim(usd="1000") as s, httpx.AsyncClient(base_url=s.trading_url) as http:
            client = Client(http, s.trading_url.removeprefix("http://"))
            product = s.symbols[0]
            bid, ask, tick, step = best(s, product)
            low, qty = bid - 40 * tick, size_for(bid, step)
            created = (await client.call("POST", "/orders", limit(product, qty, low, "c-1"))).json()
            assert created["success"] is True and created["success_response"]["client_order_id"] == "c-1"
            order_id = created["success_response"]["order_id"]
            again = (await client.call("POST", "/orders", limit(product, qty * 2, low - tick, "c-1"))).json()
            assert again["success"] is True and again["success_response"]["order_id"] == order_id
            assert len(s.engine.all_by_client_id("alice", "c-1")) == 1 and len(s.engine.orders) == 1
            poor = (await client.call("POST", "/orders", limit(product, size_for(low, step, Decimal(5000)), low,
                                                               "c-2"))).json()  # fmt: skip
            assert poor["success"] is False and poor["error_response"]["error"] == "INSUFFICIENT_FUND"
            assert poor["error_response"]["preview_failure_reason"] == "PREVIEW_INSUFFICIENT_FUND"
            cross = (
                await client.call("POST", "/orders", limit(product, qty, ask + 20 * tick, "c-3", post_only=True))
            ).json()
            assert cross["error_response"]["error"] == "INVALID_LIMIT_PRICE_POST_ONLY"
            off = (await client.call("POST", "/orders", limit(product, qty, low + tick / 3, "c-4"))).json()
            assert off["error_response"]["error"] == "INVALID_PRICE_PRECISION"
            got = (await client.call("GET", f"/orders/historical/{order_id}")).json()["order"]
            assert got["status"] == "OPEN" and got["client_order_id"] == "c-1" and got["filled_size"] == "0"
            assert got["order_configuration"]["limit_limit_gtc"]["limit_price"] == f"{low.normalize():f}"
            edit = (await client.call("POST", "/orders/edit", {"order_id": order_id, "price": str(low - tick),
                                                               "size": str(qty * 2)})).json()  # fmt: skip
            assert edit == {"success": True, "errors": []}
            got = (await client.call("GET", f"/orders/historical/{order_id}")).json()["order"]
            assert Decimal(got["order_configuration"]["limit_limit_gtc"]["base_size"]) == qty * 2
            assert len(got["edit_history"]) == 1
            same = (await client.call("POST", "/orders/edit", {"order_id": order_id, "price": str(low - tick),
                                                               "size": str(qty * 2)})).json()  # fmt: skip
            assert same["errors"][0]["edit_failure_reason"] == "EDIT_REQUEST_EQUAL_TO_ORIGINAL_REQUEST"
            market = (await client.call("POST", "/orders", {
                "client_order_id": "m-1", "product_id": product, "side": "BUY",
                "order_configuration": {"market_market_ioc": {"quote_size": "50"}}})).json()  # fmt: skip
            assert market["success"] is True
            filled = (await client.call("GET", f"/orders/historical/{market['order_id']}")).json()["order"]
            assert filled["status"] == "FILLED" and Decimal(filled["filled_value"]) <= 50
            assert Decimal(filled["total_fees"]) > 0 and filled["size_in_quote"] is True
            listed = (await client.call("GET", "/orders/historical/batch", params={"order_status": "OPEN"})).json()
            assert [o["order_id"] for o in listed["orders"]] == [order_id]
            page = (await client.call("GET", "/orders/historical/batch", params={"limit": 1})).json()
            assert page["has_next"] is True and page["cursor"]
            cancel = (await client.call("POST", "/orders/batch_cancel", {"order_ids": [order_id, "nope"]})).json()
            assert cancel["results"] == [
                {"success": True, "failure_reason": "UNKNOWN_CANCEL_FAILURE_REASON", "order_id": order_id},
                {"success": False, "failure_reason": "UNKNOWN_CANCEL_ORDER", "order_id": "nope"},
            ]
            late = (await client.call("POST", "/orders/edit", {"order_id": order_id, "price": str(low),
                                                               "size": str(qty)})).json()  # fmt: skip
            assert late["errors"][0]["edit_failure_reason"] == "ONLY_OPEN_ORDERS_CAN_BE_EDITED"
            missing = await client.call("GET", "/orders/historical/not-an-order")
            assert missing.status_code == 404

    asyncio.run(scenario())


def test_resting_order_fills_and_faults() -> None:
    async def scenario() -> None:
        async with sim(rate=4000.0) as s, httpx.AsyncClient(base_url=s.trading_url) as http:
            client = Client(http, s.trading_url.removeprefix("http://"))
            product = s.symbols[1]
            bid, _ask, tick, step = best(s, product)
            created = (await client.call("POST", "/orders", limit(product, size_for(bid, step), bid, "r-1"))).json()
            order_id = created["success_response"]["order_id"]
            status = "OPEN"
            for _ in range(200):
                await asyncio.sleep(0.05)
                status = (await client.call("GET", f"/orders/historical/{order_id}")).json()["order"]["status"]
                if status == "FILLED":
                    break
            assert status == "FILLED"
            assert s.trading is not None
            s.trading.faults = Faults(order_timeout_every=1, order_timeout_hold=2.0)
            token = jwt(f"POST {s.trading_url.removeprefix('http://')}{P}/orders")
            with pytest.raises(httpx.ReadTimeout):
                await http.post(f"{P}/orders", json=limit(product, size_for(bid, step), bid - 50 * tick, "t-1"),
                                headers={"Authorization": f"Bearer {token}"}, timeout=0.3)  # fmt: skip
            s.trading.faults = Faults()
            # The client recovers by re-sending the same client_order_id: it gets the original back.
            again = (await client.call("POST", "/orders", limit(product, size_for(bid, step), bid - 50 * tick,
                                                                "t-1"))).json()  # fmt: skip
            original = s.engine.by_client_id("alice", "t-1")
            assert original is not None and again["success_response"]["order_id"] == original.uuid
            assert s.stats.orders_timed_out == ["t-1"] and len(s.engine.all_by_client_id("alice", "t-1")) == 1
            s.trading.faults = Faults(order_429_every=1)
            throttled = await client.call("POST", "/orders", limit(product, size_for(bid, step), bid - 50 * tick, "x"))
            assert throttled.status_code == 429 and throttled.json()["error"] == "RATE_LIMIT_EXCEEDED"
            s.trading.faults = Faults(order_5xx_before_accept_every=1)
            before = await client.call("POST", "/orders", limit(product, size_for(bid, step), bid - 50 * tick, "y"))
            assert before.status_code == 503 and s.engine.by_client_id("alice", "y") is None
            s.trading.faults = Faults(order_5xx_after_accept_every=1)
            after = await client.call("POST", "/orders", limit(product, size_for(bid, step), bid - 50 * tick, "z"))
            assert after.status_code == 500 and s.engine.by_client_id("alice", "z") is not None
            assert (await http.get("/_sim/stats")).json()["orders_5xx_after_accept"] == ["z"]

    asyncio.run(scenario())
