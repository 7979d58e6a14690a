"""Binance spot's WebSocket API (``/ws-api/v3``), as far as the User Data Stream needs it.

Binance retired the spot listenKey stream (``/api/v3/userDataStream`` and ``/ws/<listenKey>``) on
2026-02-20: a spot account's events now come only over the WebSocket API, so the simulator serves it
on its market-data port (Binance: ``wss://ws-api.binance.com:443/ws-api/v3``). As documented:

- requests are JSON text frames ``{"id": .., "method": .., "params": {..}}``; every answer echoes
  the id with an HTTP-like ``status``, then ``result`` or ``error`` ``{"code", "msg"}``, and the
  ``REQUEST_WEIGHT`` it used (the weight is the IP's, shared with REST). A frame that is not a JSON
  object with a string method is -1135, an unknown method -1020;
- ``userDataStream.subscribe.signature`` (``apiKey``, ``timestamp``, ``signature``, optional
  ``recvWindow``; weight 2) signs every other param, sorted by name, as ``name=value`` joined by
  ``&`` (``signature_payload``); checked in Binance's order: apiKey (-1102, then 401 -2015), timing
  as REST (-1021), signature (-1102, -1022), then -2035 for an account already subscribed on the
  connection. It answers ``{"subscriptionId": N}`` (from 0, per connection); from then on the
  account's events come as ``{"subscriptionId": N, "event": {..}}``. Several accounts may share a
  connection;
- ``userDataStream.unsubscribe`` (all, or one ``subscriptionId``; -2036 if that one is not active)
  sends each ended subscription ``eventStreamTerminated``, then answers ``{}``;
- ``session.subscriptions`` lists ``[{"subscriptionId": N}, ..]``;
- ``shutdown()`` sends every connection ``{"event": {"e": "serverShutdown", ..}}`` (no
  subscriptionId) and may close them later, as Binance does before a restart.

Responses and events share one writer per connection (``UserConnection``), written synchronously
as the engine and the requests happen: a subscription's response reaches the client before its
first event, and ``eventStreamTerminated`` comes after its last event and before the response.
Events are subject to the ``user_stream_drop_every`` fault; responses and connection events are not.
Not served: the other methods (orders, ``session.logon``...), SBE, the 1,000 / 65,535 subscription
limits.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import msgspec
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from simulator.binance.trading import BinanceError, BinanceTrading, interval_label, missing
from simulator.trading.accounts import Account
from simulator.trading.engine import Fill, Order
from simulator.trading.user_streams import UserConnection, UserStreamHub

WS_API_PATH = "/ws-api/v3"
#: Every method served here weighs 2 (documented).
WEIGHT = 2
INVALID_REQUEST = (-1135, "Invalid JSON Request")
UNSUPPORTED = (-1020, "This operation is not supported.")
SUBSCRIPTION_ACTIVE = (-2035, "User Data Stream subscription already active.")
SUBSCRIPTION_INACTIVE = (-2036, "User Data Stream subscription not active.")

#: An order change as a venue's events: (JSON body, event type, what it is about for the drop record).
Render = Callable[[Order, "Fill | None"], list[tuple[bytes, str, str]]]
Params = dict[str, object]


class JsonNumber(str):
    """A JSON number with a fraction or exponent, kept as the text sent: the client signed that text
    (``6000.50`` must not become ``6000.5``)."""


def param_text(value: object) -> str:
    """A parameter's value as it is signed: a JSON string as is (unquoted), anything else as its JSON text."""
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def signature_payload(params: Mapping[str, object]) -> bytes:
    """What a WebSocket API signature signs: every param but ``signature``, sorted by name, ``name=value``
    joined by ``&``, UTF-8."""
    pairs = (f"{name}={param_text(value)}" for name, value in sorted(params.items()) if name != "signature")
    return "&".join(pairs).encode()


@dataclass
class Subscription:
    account: str
    #: Stops the account's events reaching this subscription.
    stop: Callable[[], None]


class Session:
    """One WebSocket API connection: its writer and its User Data Stream subscriptions."""

    def __init__(self, stream: UserConnection) -> None:
        self.stream = stream
        self.subscriptions: dict[int, Subscription] = {}  # subscriptionId -> it, in subscription order
        self.ids = itertools.count()


class BinanceWsApi:
    """The WebSocket API's User Data Stream methods over the trading server's accounts and weights."""

    def __init__(self, trading: BinanceTrading, hub: UserStreamHub, render: Render) -> None:
        self.trading = trading
        self.hub = hub
        self.render = render
        self._sessions: set[Session] = set()
        self._tasks: set[asyncio.Task] = set()
        self._methods: dict[str, Callable[[Session, Params], object]] = {
            "userDataStream.subscribe.signature": self._subscribe,
            "userDataStream.unsubscribe": self._unsubscribe,
            "session.subscriptions": self._subscriptions,
        }

    async def serve(self, connection: ServerConnection, connection_id: int) -> None:
        trading = self.trading
        # The connection's account is none: each message names its own (``send(account=...)``).
        session = Session(UserConnection(connection, connection_id, "", lambda: trading.faults, trading.stats))
        self._sessions.add(session)
        try:
            async for message in connection:
                self.handle(session, message)
        except ConnectionClosed:
            pass
        finally:
            self._sessions.discard(session)
            for subscription in session.subscriptions.values():
                subscription.stop()

    def handle(self, session: Session, message: str | bytes) -> None:
        """Answer one request. Synchronous: nothing else is written between what it does and its answer."""
        request_id: object = None
        reply: dict[str, object]
        try:
            request = _request(message)
            request_id = _id(request)
            method, params = _method(request)
            action = self._methods.get(method.removeprefix("v3/"))  # "may be prefixed with explicit version"
            if action is None:
                raise BinanceError(400, *UNSUPPORTED)
            self.trading._charge(WEIGHT)
            reply = {"id": request_id, "status": 200, "result": action(session, params)}
        except BinanceError as exc:
            reply = {"id": request_id, "status": exc.status, "error": exc.body()}
        reply["rateLimits"] = self._rate_limits()
        session.stream.write(msgspec.json.encode(reply))

    def shutdown(self, close_after: float | None = None) -> None:
        """Send every connection ``serverShutdown``; with ``close_after``, close them that many seconds
        later. Call it on the simulator's event loop."""
        text = msgspec.json.encode({"event": {"e": "serverShutdown", "E": self.trading.engine.now_ms()}})
        sessions = list(self._sessions)
        for session in sessions:
            session.stream.send(text, "serverShutdown", "", faultable=False)
        if close_after is not None:
            task = asyncio.ensure_future(_close_later(sessions, close_after))
            self._tasks.add(task)  # held until done: the loop keeps only weak references to tasks
            task.add_done_callback(self._tasks.discard)

    # --- methods ------------------------------------------------------------------------------

    def _subscribe(self, session: Session, params: Params) -> dict:
        account = self._authenticate(params)
        if any(s.account == account.name for s in session.subscriptions.values()):
            raise BinanceError(400, *SUBSCRIPTION_ACTIVE)
        number = next(session.ids)
        stop = self.hub.subscribe(account.name, lambda order, fill: self._changed(session, number, order, fill))
        session.subscriptions[number] = Subscription(account.name, stop)
        return {"subscriptionId": number}

    def _unsubscribe(self, session: Session, params: Params) -> dict:
        wanted = params.get("subscriptionId")
        if wanted is None:  # "When called with no parameter, this will close all subscriptions."
            ended = list(session.subscriptions)
        elif type(wanted) is int and wanted in session.subscriptions:
            ended = [wanted]
        else:
            raise BinanceError(400, *SUBSCRIPTION_INACTIVE)
        for number in ended:
            self._terminate(session, number)
        return {}

    def _subscriptions(self, session: Session, params: Params) -> list[dict]:
        return [{"subscriptionId": number} for number in session.subscriptions]

    # --- helpers ------------------------------------------------------------------------------

    def _authenticate(self, params: Params) -> Account:
        api_key = params.get("apiKey")
        if not isinstance(api_key, str) or not api_key:
            raise missing("apiKey")
        account = self.trading.account_for(api_key)
        # null is "not sent" (-1102), as REST's empty value; other values are checked as their text.
        self.trading.check_timing({name: param_text(value) for name, value in params.items() if value is not None})
        signature = params.get("signature")
        text = signature if isinstance(signature, str) else None
        self.trading.check_signature(account, signature_payload(params), text)
        return account

    def _changed(self, session: Session, number: int, order: Order, fill: Fill | None) -> None:
        for body, event, about in self.render(order, fill):
            session.stream.send(_wrap(number, body), event, about, account=order.account.name)

    def _terminate(self, session: Session, number: int) -> None:
        subscription = session.subscriptions.pop(number)
        subscription.stop()
        ended = msgspec.json.encode({"e": "eventStreamTerminated", "E": self.trading.engine.now_ms()})
        session.stream.send(_wrap(number, ended), "eventStreamTerminated", str(number), faultable=False,
                            account=subscription.account)  # fmt: skip

    def _rate_limits(self) -> list[dict]:
        weights = self.trading.weights
        count, unit = interval_label(max(1, round(weights.window)))[1].split()  # "1 MINUTE"
        return [{"rateLimitType": "REQUEST_WEIGHT", "interval": unit, "intervalNum": int(count),
                 "limit": weights.limit, "count": weights.used}]  # fmt: skip


def _request(message: str | bytes) -> dict:
    """The request object of a frame; -1135 (its id unknown) if it is none."""
    try:
        request = json.loads(message, parse_float=JsonNumber)
    except ValueError:  # not JSON, or not UTF-8
        raise BinanceError(400, *INVALID_REQUEST) from None
    if not isinstance(request, dict):
        raise BinanceError(400, *INVALID_REQUEST)
    return request


def _id(request: dict) -> object:
    """The request's id: INT / STRING / null as documented, else -1135 (and the answer's id is null)."""
    request_id = request.get("id")
    if request_id is not None and type(request_id) not in (int, str):  # not a bool, nor a fraction
        raise BinanceError(400, *INVALID_REQUEST)
    return request_id


def _method(request: dict) -> tuple[str, Params]:
    """The request's method and params (omitted: none); -1135 if either is not what the docs say."""
    method, params = request.get("method"), request.get("params", {})
    if not isinstance(method, str) or not isinstance(params, dict):
        raise BinanceError(400, *INVALID_REQUEST)
    return method, params


def _wrap(number: int, event: bytes) -> bytes:
    """An event of subscription ``number`` as the WebSocket API sends it (the body is already JSON)."""
    return b'{"subscriptionId":%d,"event":%s}' % (number, event)


async def _close_later(sessions: list[Session], delay: float) -> None:
    await asyncio.sleep(delay)
    # 1001 "going away": the server is shutting down.
    await asyncio.gather(*(s.stream.close(1001, "server shutdown") for s in sessions), return_exceptions=True)
