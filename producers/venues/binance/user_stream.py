"""Binance's user data streams (spot and USD-M) as a ``UserStream``.

Spot: the WebSocket API. Binance retired spot listenKeys on 2026-02-20; a spot account's events
now come only over a WebSocket API connection (``wss://ws-api.binance.com:443/ws-api/v3``) on
which ``userDataStream.subscribe.signature`` was accepted. The request is signed like every
WebSocket API request (``signing.ws_api_payload``: the parameters sorted by name, HMAC hex or
Ed25519 base64), with ``timestamp`` and ``recvWindow``. The stream is live from the reply that
gives the ``subscriptionId``; a refusal (a bad key or signature, a clock outside recvWindow)
replaces the connection, after the usual backoff, and says why. Events come wrapped,
``{"subscriptionId": N, "event": {...}}``. ``eventStreamTerminated`` (the subscription ended)
and ``serverShutdown`` (the server is going away) replace the connection at once; so does the
24-hour limit of a connection, as any close does. The server pings every 20 s and ws1 answers.

USD-M: listenKeys, as documented. ``POST`` the listenKey endpoint with the API key header (no
signature) before every connection (an account's active key comes back, extended, or a new one
once it lapsed), connect to ``<stream host>/ws/<listenKey>``, ``PUT`` every 30 minutes (a key
lives 60), and ``DELETE`` it when done. A ``-1125`` on the keepalive or a ``listenKeyExpired``
event means the key is gone: the connection is replaced with a new key.

Events read:

- spot ``executionReport`` (the order after it: ``X``, ``z``, ``Z``/``z``; a fill when ``x`` is
  ``TRADE``: ``t``, ``L``, ``l``, ``n``, ``N``; a cancel names the canceled order in ``C``) and
  ``outboundAccountPosition`` (``B``: free and locked per asset);
- USD-M ``ORDER_TRADE_UPDATE`` (``o``, the same letters; average price ``ap``) and
  ``ACCOUNT_UPDATE`` (``a.B``: the wallet balance ``wb`` is reported as free; futures lock margin,
  not assets).

Anything else (``balanceUpdate``, ``listStatus``, ``externalLockUpdate``, USD-M margin calls...)
is read and ignored.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, TypeVar, get_args

import httpx
import msgspec
from msgspec import UNSET, UnsetType

from producers.connection import Backoff
from producers.venues import ws1
from producers.venues.binance.signing import BinanceSigner, ws_api_payload
from producers.venues.binance.trading import _STATUS
from producers.venues.trading import VenueOrder
from producers.venues.user_stream import BalanceUpdate, Fill, OrderUpdate, Parsed, VenueUserStream, decimal_or_none
from tickflow.events import OrderStatus

#: Seconds between keepalives: the docs recommend about every 30 minutes (a key lives 60).
KEEPALIVE_INTERVAL = 1800.0
#: After a failed keepalive (not a -1125), try again this much sooner.
KEEPALIVE_RETRY = 60.0
NO_SUCH_KEY = -1125
SUBSCRIBE = "userDataStream.subscribe.signature"


@dataclass(frozen=True)
class BinanceUserStreamPaths:
    venue: str
    #: The listenKey endpoint (USD-M); None where the stream is the WebSocket API's (spot).
    listen_key: str | None


SPOT_USER_STREAM = BinanceUserStreamPaths("binance-spot", None)
USDM_USER_STREAM = BinanceUserStreamPaths("binance-usdm", "/fapi/v1/listenKey")
PATHS = {p.venue: p for p in (SPOT_USER_STREAM, USDM_USER_STREAM)}


class ListenKeyGone(Exception):
    """The venue says the listenKey does not exist (-1125)."""


class BinanceUserStream(VenueUserStream):
    """What both ways share: the events."""

    def _event(self, event: _Event | None) -> Parsed:
        if isinstance(event, _ExecutionReport):
            return Parsed(orders=[_execution_report(event)])
        if isinstance(event, _AccountPosition):
            ts = _us(event.u or event.E)
            return Parsed(balances=[BalanceUpdate(b.a, b.f, b.locked, ts) for b in event.B])
        if isinstance(event, _OrderTradeUpdate):
            return Parsed(orders=[_order_trade_update(event)])
        if isinstance(event, _AccountUpdate):
            ts = _us(event.T or event.E)
            return Parsed(balances=[BalanceUpdate(b.a, b.wb, _ZERO, ts) for b in event.a.B])
        if isinstance(event, _Ending):
            return Parsed(reconnect=event.why)
        return Parsed()


class WsApiUserStream(BinanceUserStream):
    """Spot: the account's events over the WebSocket API, by a signed subscription."""

    def __init__(self, venue: str, ws_api_url: str, api_key: str, signer: BinanceSigner, *,
                 recv_window_ms: int = 5000, backoff: Backoff | None = None) -> None:  # fmt: skip
        super().__init__(backoff=backoff)
        self.venue = venue
        self.ws_api_url = ws_api_url
        self._api_key = api_key
        self._signer = signer
        self.recv_window_ms = recv_window_ms
        self._requests = itertools.count(1)
        #: The id of this connection's subscribe request, and the subscription it gave.
        self._request_id = ""
        self.subscription_id: int | None = None

    def __repr__(self) -> str:  # never the key
        return f"WsApiUserStream({self.venue}, {self.ws_api_url})"

    async def prepare(self) -> str:
        return self.ws_api_url

    async def opened(self, ws: ws1.WsConnection) -> bool:
        """Ask for the account's events; live once the venue says yes (``parse``)."""
        self._request_id = f"user-stream-{next(self._requests)}"
        params: dict[str, object] = {"apiKey": self._api_key, "recvWindow": self.recv_window_ms,
                                     "timestamp": int(time.time() * 1000)}  # fmt: skip
        params["signature"] = self._signer.signature(ws_api_payload(params))
        await ws.send(msgspec.json.encode({"id": self._request_id, "method": SUBSCRIBE, "params": params}))
        return False

    def disconnected(self) -> None:
        self.subscription_id = None

    def parse(self, frame: str | bytes) -> Parsed:
        message = _ws_api_message.decode(frame)
        if message.event is not _ABSENT:
            if message.subscriptionId is not None and message.subscriptionId != self.subscription_id:
                return Parsed()  # not this stream's (only one subscription is made per connection)
            return self._event(_decode(message.event))
        if message.id != self._request_id:
            return Parsed()  # an answer to nothing this stream asked
        if message.status == 200:
            self.subscription_id = _subscribed.decode(message.result).subscriptionId
            return Parsed(live=True)
        error = message.error
        said = f"{error.code} {error.msg}" if error is not None else f"status {message.status}"
        return Parsed(reconnect=f"{SUBSCRIBE} refused: {said}")


class ListenKeyUserStream(BinanceUserStream):
    """USD-M: the account's events on ``/ws/<listenKey>``, the key kept alive over REST."""

    def __init__(self, paths: BinanceUserStreamPaths, rest_url: str, ws_url: str, api_key: str, *,
                 keepalive_interval: float = KEEPALIVE_INTERVAL, backoff: Backoff | None = None,
                 http: httpx.AsyncClient | None = None) -> None:  # fmt: skip
        super().__init__(backoff=backoff)
        if paths.listen_key is None:
            raise ValueError(f"{paths.venue} has no listenKey stream")
        self.venue = paths.venue
        self.path = paths.listen_key
        self.ws_url = ws_url.rstrip("/")
        self.keepalive_interval = keepalive_interval
        self.http = http or httpx.AsyncClient(base_url=rest_url.rstrip("/"), timeout=httpx.Timeout(5.0, connect=2.0))
        self._headers = {"X-MBX-APIKEY": api_key}
        #: The key of the current (or last) connection.
        self.listen_key: str | None = None
        self.keepalives = 0

    # --- the listenKey ------------------------------------------------------------------------

    async def _call(self, method: str) -> dict[str, Any]:
        # USD-M's keepalive and close go by the API key alone: no parameter.
        response = await self.http.request(method, self.path, headers=self._headers)
        try:
            body = response.json()
        except ValueError:
            body = {}
        if response.status_code == 200:
            return body if isinstance(body, dict) else {}
        code = body.get("code") if isinstance(body, dict) else None
        message = f"{method} {self.path}: HTTP {response.status_code} {response.text[:200]}"
        raise ListenKeyGone(message) if code == NO_SUCH_KEY else RuntimeError(message)

    async def prepare(self) -> str:
        body = await self._call("POST")
        key = body.get("listenKey")
        if not isinstance(key, str) or not key:
            raise RuntimeError(f"POST {self.path}: no listenKey in {body!r}")
        self.listen_key = key
        return f"{self.ws_url}/ws/{key}"

    async def maintain(self) -> str:
        delay = self.keepalive_interval
        while True:
            await asyncio.sleep(delay)
            try:
                await self._call("PUT")
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
                await self._call("DELETE")
        except (httpx.HTTPError, RuntimeError, ListenKeyGone):
            pass
        finally:
            await self.http.aclose()

    def parse(self, frame: str | bytes) -> Parsed:
        return self._event(_decode(frame))


# --- the events, as decoded -----------------------------------------------------------------------
#
# One typed decode per frame: msgspec picks the struct by ``e`` and builds only the fields declared
# (the other ~25 of an order event are skipped). Binance's letters are case-sensitive (``c``/``C``,
# ``l``/``L``, ``t``/``T`` are different fields), and so are struct attributes. Fields are declared
# in the order Binance sends them (kw_only allows it): msgspec then finds each key's field first try.
#
# A declared field must have its documented type, even in an event that does not read it. Null is
# accepted where it was before: as "no value" (times, ``p``/``ap``, ``C``, ``N``, USD-M ``n``), and
# in a fill's fields outside a ``TRADE``. A field required only sometimes (a fill's, on a ``TRADE``;
# an order event's ``E`` when it has no ``T``; ``c`` unless a cancel names ``C``; ``ap`` once
# something filled) is UNSET when absent and checked where it is read (``_needed``): absent there,
# the frame is malformed, as when it was read from a dict. A fill's decimals stay text until read:
# msgspec makes a Decimal no faster than Decimal(text), and NEW or CANCELED reports would pay for
# three unused ones.

#: Binance's millisecond times: USD-M sends some as strings.
Ms = int | str | None


class _Event(msgspec.Struct, tag_field="e", gc=False):
    """A user-stream event. (gc=False: decoded events hold no reference cycles, and the collector
    need not track the four of every order.)"""


class _ExecutionReport(_Event, tag="executionReport", kw_only=True):
    """Spot: an order changed; a fill when ``x`` is ``TRADE``."""

    E: Ms | UnsetType = UNSET
    s: str
    c: str | UnsetType = UNSET  # the order's client id; a cancel's: the cancel request's own
    q: Decimal
    p: str | None  # by decimal_or_none: zero (a market order's) is no price
    C: str | None = None  # a cancel's: the canceled order's ("" otherwise)
    x: str  # execution type: NEW, TRADE, CANCELED, REPLACED, EXPIRED...
    X: str  # order status
    i: int | str
    last_qty: str | UnsetType | None = msgspec.field(default=UNSET, name="l")
    z: Decimal  # cumulative filled
    L: str | UnsetType | None = UNSET
    n: str | UnsetType | None = UNSET
    N: str | None = None
    T: Ms = None
    t: int | str | UnsetType = UNSET
    Z: Decimal  # cumulative quote


class _Balance(msgspec.Struct, gc=False):
    a: str
    f: Decimal
    locked: Decimal = msgspec.field(name="l")


class _AccountPosition(_Event, tag="outboundAccountPosition", kw_only=True):
    """Spot: the free and locked balances of the assets an account change touched."""

    E: Ms = None
    u: Ms = None
    B: list[_Balance]


class _FuturesOrder(msgspec.Struct, kw_only=True, gc=False):
    """USD-M ``ORDER_TRADE_UPDATE.o``: the spot report's letters, less ``C`` and ``Z``, plus ``ap``."""

    s: str
    c: str
    q: Decimal
    p: str | None
    ap: str | UnsetType | None = UNSET  # average price
    x: str
    X: str
    i: int | str
    last_qty: str | UnsetType | None = msgspec.field(default=UNSET, name="l")
    z: Decimal
    L: str | UnsetType | None = UNSET
    N: str | None = None
    n: str | None = None  # "will not push if no commission"
    T: Ms = None
    t: int | str | UnsetType = UNSET


class _OrderTradeUpdate(_Event, tag="ORDER_TRADE_UPDATE", kw_only=True):
    E: Ms | UnsetType = UNSET
    T: Ms = None
    o: _FuturesOrder


class _WalletBalance(msgspec.Struct, gc=False):
    a: str
    wb: Decimal


class _AccountBalances(msgspec.Struct, gc=False):
    B: list[_WalletBalance]


class _AccountUpdate(_Event, tag="ACCOUNT_UPDATE", kw_only=True):
    """USD-M: wallet balances (``a.B``) after a fill, funding, a transfer..."""

    E: Ms = None
    T: Ms = None
    a: _AccountBalances


class _Ending(_Event):
    """An event after which this connection carries nothing more: it is replaced."""

    why = ""


class _ListenKeyExpired(_Ending, tag="listenKeyExpired"):
    why = "listenKeyExpired"


class _StreamTerminated(_Ending, tag="eventStreamTerminated"):
    why = "eventStreamTerminated: the venue ended the subscription"


class _ServerShutdown(_Ending, tag="serverShutdown"):
    why = "serverShutdown: the venue is taking this server down"


class _Subscribed(msgspec.Struct, gc=False):
    subscriptionId: int


class _Error(msgspec.Struct, gc=False):
    code: int | None = None
    msg: str = ""


_ABSENT = msgspec.Raw(b"")


class _WsApiMessage(msgspec.Struct, gc=False):
    """A WebSocket API frame: an answer (``id``, ``status``, ``result`` or ``error``), or an event
    (``event``, with the ``subscriptionId`` it belongs to; none on connection events). The event
    and the result are kept raw: an event is decoded into its own struct by ``_decode``, a result
    only when it answers this stream's request."""

    id: str | int | None = None
    status: int | None = None
    result: msgspec.Raw = _ABSENT
    error: _Error | None = None
    subscriptionId: int | None = None
    event: msgspec.Raw = _ABSENT


class _Kind(msgspec.Struct):
    """Any event's ``e`` alone, for a frame the union refused. (Any: a non-string ``e`` is no kind
    read here, not a malformed frame.)"""

    e: Any


_AnyEvent = (_ExecutionReport | _AccountPosition | _OrderTradeUpdate | _AccountUpdate | _ListenKeyExpired
             | _StreamTerminated | _ServerShutdown)  # fmt: skip
_events = msgspec.json.Decoder(_AnyEvent)
_ws_api_message = msgspec.json.Decoder(_WsApiMessage)
_subscribed = msgspec.json.Decoder(_Subscribed)
_kind = msgspec.json.Decoder(_Kind)
_KINDS = frozenset(event.__struct_config__.tag for event in get_args(_AnyEvent))
_ZERO = Decimal(0)
# Once: an Enum member's lookup on its class costs about as much as the rest of _status.
_ACCEPTED, _PARTIALLY_FILLED = OrderStatus.ACCEPTED, OrderStatus.PARTIALLY_FILLED
_T = TypeVar("_T")


def _decode(frame: str | bytes) -> _Event | None:
    """The event; None for a kind not read here (the union refuses those too: told apart by a second,
    cheap decode of ``e`` alone, on that rare path only)."""
    try:
        return _events.decode(frame)
    except msgspec.ValidationError:
        kind = _kind.decode(frame).e  # raises too when the frame is no object, or has no e
        if isinstance(kind, str) and kind in _KINDS:
            raise  # a kind read here, malformed
        return None


def _us(ms: Ms) -> int | None:
    """Binance's millisecond times (USD-M sends some as strings) in microseconds."""
    if type(ms) is int:  # most are
        return ms * 1000
    return int(ms) * 1000 if ms else None  # a string; "" (or null) is no time


def _needed(value: _T | UnsetType, letter: str) -> _T:
    """A field read only sometimes, read here: absent, the frame is malformed (see above)."""
    if value is UNSET:
        raise KeyError(letter)
    return value


def _status(text: str, filled: Decimal) -> OrderStatus:
    status = _STATUS[text]
    return _PARTIALLY_FILLED if status is _ACCEPTED and filled > 0 else status


def _execution_report(e: _ExecutionReport) -> OrderUpdate:
    filled = e.z
    # A cancel's c is the cancel request's own id; the canceled order is C.
    client_id = e.C if e.x == "CANCELED" and e.C else _needed(e.c, "c")
    order = VenueOrder(client_order_id=client_id, venue_order_id=str(e.i), status=_status(e.X, filled),
                       size=e.q, filled_size=filled, price=decimal_or_none(e.p),
                       avg_fill_price=e.Z / filled if filled else None,
                       exchange_ts=_us(e.T or _needed(e.E, "E")))  # fmt: skip
    fill = None
    if e.x == "TRADE":
        fill = Fill(str(_needed(e.t, "t")), Decimal(_needed(e.L, "L")), Decimal(_needed(e.last_qty, "l")),
                    Decimal(_needed(e.n, "n")), e.N or None)  # fmt: skip
    return OrderUpdate(e.s, order, fill)


def _order_trade_update(event: _OrderTradeUpdate) -> OrderUpdate:
    o = event.o
    filled = o.z
    order = VenueOrder(client_order_id=o.c, venue_order_id=str(o.i), status=_status(o.X, filled),
                       size=o.q, filled_size=filled, price=decimal_or_none(o.p),
                       avg_fill_price=decimal_or_none(_needed(o.ap, "ap")) if filled else None,
                       exchange_ts=_us(o.T or event.T or _needed(event.E, "E")))  # fmt: skip
    fill = None
    if o.x == "TRADE":
        fee = Decimal(o.n) if o.n is not None else None
        fill = Fill(str(_needed(o.t, "t")), Decimal(_needed(o.L, "L")), Decimal(_needed(o.last_qty, "l")), fee,
                    o.N or None)  # fmt: skip
    return OrderUpdate(o.s, order, fill)


def binance_user_stream(venue: str, rest_url: str, ws_url: str, api_key: str, signer: BinanceSigner, *,
                        recv_window_ms: int = 5000, keepalive_interval: float = KEEPALIVE_INTERVAL,
                        backoff: Backoff | None = None) -> BinanceUserStream:  # fmt: skip
    """The user stream of one API key: ``venue`` is ``"binance-spot"`` (``ws_url``: the WebSocket
    API's, ``wss://ws-api.binance.com:443/ws-api/v3``) or ``"binance-usdm"`` (``ws_url``: the stream
    host; ``rest_url``: the API host, for the listenKey endpoint)."""
    paths = PATHS[venue]
    if paths.listen_key is None:
        return WsApiUserStream(venue, ws_url, api_key, signer, recv_window_ms=recv_window_ms, backoff=backoff)
    return ListenKeyUserStream(paths, rest_url, ws_url, api_key, keepalive_interval=keepalive_interval,
                               backoff=backoff)  # fmt: skip
