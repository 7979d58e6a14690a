"""Binance's listenKey user data streams (spot and USD-M) as a ``UserStream``.

As documented: ``POST`` the listenKey endpoint with the API key header (no signature) before every
connection (an account's active key comes back, extended, or a new one once it lapsed), connect to
``<stream host>/ws/<listenKey>``, ``PUT`` every 30 minutes (a key lives 60), and ``DELETE`` it when
done. A ``-1125`` on the keepalive or a ``listenKeyExpired`` event means the key is gone: the
connection is replaced with a new key. Events read:

- spot ``executionReport`` (the order after it: ``X``, ``z``, ``Z``/``z``; a fill when ``x`` is
  ``TRADE``: ``t``, ``L``, ``l``, ``n``, ``N``; a cancel names the canceled order in ``C``) and
  ``outboundAccountPosition`` (``B``: free and locked per asset);
- USD-M ``ORDER_TRADE_UPDATE`` (``o``, the same letters; average price ``ap``) and
  ``ACCOUNT_UPDATE`` (``a.B``: the wallet balance ``wb`` is reported as free; futures lock margin,
  not assets).

Anything else (``balanceUpdate``, ``listStatus``, USD-M margin calls...) is read and ignored.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import httpx
import msgspec

from producers.connection import Backoff
from producers.venues.binance.trading import _STATUS
from producers.venues.trading import VenueOrder
from producers.venues.user_stream import BalanceUpdate, Fill, OrderUpdate, Parsed, VenueUserStream, decimal_or_none
from tickflow.events import OrderStatus

#: Seconds between keepalives: the docs recommend about every 30 minutes (a key lives 60).
KEEPALIVE_INTERVAL = 1800.0
#: After a failed keepalive (not a -1125), try again this much sooner.
KEEPALIVE_RETRY = 60.0
NO_SUCH_KEY = -1125


@dataclass(frozen=True)
class BinanceUserStreamPaths:
    venue: str
    listen_key: str
    #: Spot names the key in PUT / DELETE; USD-M's go by the API key alone.
    key_param: bool
    spot: bool


SPOT_USER_STREAM = BinanceUserStreamPaths("binance-spot", "/api/v3/userDataStream", key_param=True, spot=True)
USDM_USER_STREAM = BinanceUserStreamPaths("binance-usdm", "/fapi/v1/listenKey", key_param=False, spot=False)
PATHS = {p.venue: p for p in (SPOT_USER_STREAM, USDM_USER_STREAM)}


class ListenKeyGone(Exception):
    """The venue says the listenKey does not exist (-1125)."""


class BinanceUserStream(VenueUserStream):
    def __init__(self, paths: BinanceUserStreamPaths, rest_url: str, ws_url: str, api_key: str, *,
                 keepalive_interval: float = KEEPALIVE_INTERVAL, backoff: Backoff | None = None,
                 http: httpx.AsyncClient | None = None) -> None:  # fmt: skip
        super().__init__(backoff=backoff)
        self.venue = paths.venue
        self.paths = paths
        self.ws_url = ws_url.rstrip("/")
        self.keepalive_interval = keepalive_interval
        self.http = http or httpx.AsyncClient(base_url=rest_url.rstrip("/"), timeout=httpx.Timeout(5.0, connect=2.0))
        self._headers = {"X-MBX-APIKEY": api_key}
        #: The key of the current (or last) connection.
        self.listen_key: str | None = None
        self.keepalives = 0

    # --- the listenKey ------------------------------------------------------------------------

    async def _call(self, method: str, params: dict[str, str] | None = None) -> dict[str, Any]:
        response = await self.http.request(method, self.paths.listen_key, params=params, headers=self._headers)
        try:
            body = response.json()
        except ValueError:
            body = {}
        if response.status_code == 200:
            return body if isinstance(body, dict) else {}
        code = body.get("code") if isinstance(body, dict) else None
        message = f"{method} {self.paths.listen_key}: HTTP {response.status_code} {response.text[:200]}"
        raise ListenKeyGone(message) if code == NO_SUCH_KEY else RuntimeError(message)

    def _key_params(self) -> dict[str, str] | None:
        return {"listenKey": self.listen_key or ""} if self.paths.key_param else None

    async def prepare(self) -> str:
        body = await self._call("POST")
        key = body.get("listenKey")
        if not isinstance(key, str) or not key:
            raise RuntimeError(f"POST {self.paths.listen_key}: no listenKey in {body!r}")
        self.listen_key = key
        return f"{self.ws_url}/ws/{key}"

    async def maintain(self) -> str:
        delay = self.keepalive_interval
        while True:
            await asyncio.sleep(delay)
            try:
                await self._call("PUT", self._key_params())
            except ListenKeyGone as exc:
                return f"listenKey gone: {exc}"
            except (httpx.HTTPError, RuntimeError) as exc:  # the key lives on for a while: retry soon
                self.counters.last_error = f"keepalive failed: {exc}"
                delay = min(KEEPALIVE_RETRY, self.keepalive_interval)
                continue
            self.keepalives += 1
            delay = self.keepalive_interval

    async def aclose(self) -> None:
        """Close the key (its streams end) and the HTTP client."""
        try:
            if self.listen_key is not None:
                await self._call("DELETE", self._key_params())
        except (httpx.HTTPError, RuntimeError, ListenKeyGone):
            pass
        finally:
            await self.http.aclose()

    # --- events -------------------------------------------------------------------------------

    def parse(self, frame: str | bytes) -> Parsed:
        event = msgspec.json.decode(frame)
        if not isinstance(event, dict):
            raise ValueError("an event is a JSON object")
        kind = event["e"]
        if kind == "executionReport":
            return Parsed(orders=[_execution_report(event)])
        if kind == "outboundAccountPosition":
            ts = _us(event.get("u") or event.get("E"))
            return Parsed(balances=[BalanceUpdate(b["a"], Decimal(b["f"]), Decimal(b["l"]), ts) for b in event["B"]])
        if kind == "ORDER_TRADE_UPDATE":
            return Parsed(orders=[_order_trade_update(event)])
        if kind == "ACCOUNT_UPDATE":
            ts = _us(event.get("T") or event.get("E"))
            balances = [BalanceUpdate(b["a"], Decimal(b["wb"]), Decimal(0), ts) for b in event["a"]["B"]]
            return Parsed(balances=balances)
        if kind == "listenKeyExpired":
            return Parsed(reconnect="listenKeyExpired")
        return Parsed()


def _us(ms: object) -> int | None:
    """Binance's millisecond times (USD-M sends some as strings) in microseconds."""
    return int(str(ms)) * 1000 if ms not in (None, "") else None


def _status(text: str, filled: Decimal) -> OrderStatus:
    status = _STATUS[text]
    return OrderStatus.PARTIALLY_FILLED if status is OrderStatus.ACCEPTED and filled > 0 else status


def _execution_report(e: dict[str, Any]) -> OrderUpdate:
    filled = Decimal(e["z"])
    # A cancel's c is the cancel request's own id; the canceled order is C.
    client_id = e["C"] if e["x"] == "CANCELED" and e.get("C") else e["c"]
    quote = Decimal(e["Z"])
    order = VenueOrder(client_order_id=client_id, venue_order_id=str(e["i"]), status=_status(e["X"], filled),
                       size=Decimal(e["q"]), filled_size=filled, price=decimal_or_none(e["p"]),
                       avg_fill_price=quote / filled if filled else None,
                       exchange_ts=_us(e.get("T") or e["E"]))  # fmt: skip
    fill = None
    if e["x"] == "TRADE":
        fee_asset = e.get("N")
        fill = Fill(str(e["t"]), Decimal(e["L"]), Decimal(e["l"]), Decimal(e["n"]), fee_asset or None)
    return OrderUpdate(e["s"], order, fill)


def _order_trade_update(event: dict[str, Any]) -> OrderUpdate:
    o = event["o"]
    filled = Decimal(o["z"])
    order = VenueOrder(client_order_id=o["c"], venue_order_id=str(o["i"]), status=_status(o["X"], filled),
                       size=Decimal(o["q"]), filled_size=filled, price=decimal_or_none(o["p"]),
                       avg_fill_price=decimal_or_none(o["ap"]) if filled else None,
                       exchange_ts=_us(o.get("T") or event.get("T") or event["E"]))  # fmt: skip
    fill = None
    if o["x"] == "TRADE":
        fee = Decimal(o["n"]) if o.get("n") is not None else None  # "will not push if no commission"
        fill = Fill(str(o["t"]), Decimal(o["L"]), Decimal(o["l"]), fee, o.get("N") or None)
    return OrderUpdate(o["s"], order, fill)


def binance_user_stream(paths_or_market: BinanceUserStreamPaths | str, rest_url: str, ws_url: str, api_key: str,
                        *, keepalive_interval: float = KEEPALIVE_INTERVAL,
                        backoff: Backoff | None = None) -> BinanceUserStream:  # fmt: skip
    """The user stream of one API key: ``paths_or_market`` is ``"binance-spot"`` / ``"binance-usdm"``
    (or paths); ``rest_url`` the API host (the listenKey endpoints), ``ws_url`` the stream host."""
    paths = PATHS[paths_or_market] if isinstance(paths_or_market, str) else paths_or_market
    return BinanceUserStream(paths, rest_url, ws_url, api_key, keepalive_interval=keepalive_interval,
                             backoff=backoff)  # fmt: skip
