"""Binance combined-stream frames -> normalized events (and depth diffs for the book sync).

Frames are decoded with typed ``msgspec`` structs: one pass, no intermediate dicts, and a frame
that does not fit raises ``MalformedFrame`` (the caller counts it and skips it). Prices and sizes
stay the venue's strings until they become ``Decimal``: exact, never a float.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

import msgspec

from producers.book_sync import DepthDiff, DepthSnapshot
from producers.stream import Control
from producers.venues.binance.symbols import normalize_symbol
from tickflow.errors import MalformedFrame
from tickflow.events import BestBidOffer, Event, Kline, MarketType, Side, Trade

# msgspec decodes the venue's decimal strings straight into Decimals, in C.
Level = tuple[Decimal, Decimal]


class _Envelope(msgspec.Struct):
    # Market data: ``{"stream": ..., "data": ...}``; a reply to a request: ``{"result": null,
    # "id": 7}`` or ``{"error": {"code": 2, "msg": ...}, "id": 7}``.
    stream: str | None = None
    data: msgspec.Raw = msgspec.Raw()  # empty when absent (msgspec has no optional Raw)
    id: int | None = None
    error: msgspec.Raw = msgspec.Raw()


class _Depth(msgspec.Struct):
    E: int
    s: str
    U: int
    u: int
    b: list[Level]
    a: list[Level]
    pu: int | None = None
    T: int | None = None


class _DepthText(msgspec.Struct):
    """``_Depth`` with the levels left as JSON text, for the compiled path (which parses them
    itself, straight from the venue's strings); every other field is validated alike."""

    E: int
    s: str
    U: int
    u: int
    b: msgspec.Raw
    a: msgspec.Raw
    pu: int | None = None
    T: int | None = None


class _AggTrade(msgspec.Struct):
    E: int
    s: str
    a: int
    p: str
    q: str
    T: int
    m: bool


class _Trade(msgspec.Struct):
    E: int
    s: str
    t: int
    p: str
    q: str
    T: int
    m: bool


class _BookTicker(msgspec.Struct):
    s: str
    u: int
    b: str
    B: str
    a: str
    A: str
    E: int | None = None
    T: int | None = None


class _KlineBody(msgspec.Struct):
    t: int
    T: int
    i: str
    o: str
    c: str
    h: str
    low: str = msgspec.field(name="l")
    v: str = "0"
    n: int | None = None
    x: bool = False
    q: str | None = None


class _Kline(msgspec.Struct):
    E: int
    s: str
    k: _KlineBody


class _Snapshot(msgspec.Struct):
    lastUpdateId: int
    bids: list[Level]
    asks: list[Level]


class SymbolDiff(msgspec.Struct, frozen=True):
    """A depth diff of one symbol, for that symbol's ``BookSync``."""

    venue_symbol: str
    diff: DepthDiff


_envelope = msgspec.json.Decoder(_Envelope)
_decoders = {
    "depth": msgspec.json.Decoder(_Depth),
    "aggTrade": msgspec.json.Decoder(_AggTrade),
    "trade": msgspec.json.Decoder(_Trade),
    "bookTicker": msgspec.json.Decoder(_BookTicker),
    "kline": msgspec.json.Decoder(_Kline),
}
_snapshot = msgspec.json.Decoder(_Snapshot)

#: The decoders the compiled path (``tickflow._hotpath.BinanceFastPath``) uses: the same
#: structs as the generic path's, except depth levels kept as text.
_depth_undecoded = msgspec.json.Decoder(_DepthText)
FAST_DECODERS = {**_decoders, "envelope": _envelope, "depth": msgspec.json.Decoder(_DepthText)}
DECODE_ERRORS = (msgspec.DecodeError, msgspec.ValidationError)


def channel(stream: str) -> str:
    """``btcusdt@depth@100ms`` -> ``depth``; ``btcusdt@kline_1m`` -> ``kline``."""
    channel = stream.partition("@")[2].partition("@")[0]
    return channel.partition("_")[0]


class BinanceParser:
    """Parses the frames of one Binance venue (spot or USD-M)."""

    def __init__(self, venue: str, market: MarketType, symbol_names: dict[str, str] | None = None) -> None:
        self.venue = venue
        self.market = market
        #: Venue symbol -> normalized symbol, from the venue's instrument metadata where loaded.
        self.symbol_names = symbol_names or {}
        self._static: dict[str, dict] = {}

    def parse(
        self, frame: str | bytes, receive_ts: int, buffering: Callable[[str], bool] | None = None
    ) -> tuple[str, list[Event | SymbolDiff]] | Control:
        """A data frame -> (its stream name, its events); a reply to a request -> ``Control``.
        A depth diff of a stream for which ``buffering(stream)`` is true (its book waits for a
        snapshot) keeps its levels undecoded: most such diffs end up stale, never applied."""
        try:
            envelope = _envelope.decode(frame)
            if envelope.stream is None or not envelope.data:
                if envelope.id is None:
                    raise MalformedFrame(f"{self.venue}: neither market data nor a reply: {frame[:200]!r}")
                return Control(envelope.id, bytes(envelope.error).decode() if envelope.error else None)
            kind = channel(envelope.stream)
            if kind == "depth" and buffering is not None and buffering(envelope.stream):
                ids = _depth_undecoded.decode(envelope.data)
                diff = DepthDiff(ids.U, ids.u, ids.pu, [], [], (ids.T or ids.E) * 1000, receive_ts,
                                 undecoded=envelope.data)  # fmt: skip
                return envelope.stream, [SymbolDiff(ids.s, diff)]
            decoder = _decoders.get(kind)
            if decoder is None:
                raise MalformedFrame(f"unknown stream {envelope.stream!r}")
            return envelope.stream, [self._normalize(decoder.decode(envelope.data), receive_ts)]
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise MalformedFrame(f"{self.venue}: {exc}") from None

    def decode_levels(self, diff: DepthDiff) -> DepthDiff:
        """The levels of a diff parsed with ``buffering``, decoded exactly as ``parse`` would."""
        try:
            full = _decoders["depth"].decode(diff.undecoded)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise MalformedFrame(f"{self.venue}: {exc}") from None
        return DepthDiff(diff.first_id, diff.last_id, diff.prev_id, full.b, full.a, diff.exchange_ts, diff.receive_ts)

    def snapshot(self, body: str | bytes, receive_ts: int) -> DepthSnapshot:
        try:
            snap = _snapshot.decode(body)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise MalformedFrame(f"{self.venue} depth snapshot: {exc}") from None
        return DepthSnapshot(snap.lastUpdateId, snap.bids, snap.asks, receive_ts)

    def static(self, venue_symbol: str) -> dict:
        """The fields every event of ``venue_symbol`` starts with: venue, market, normalized
        and venue symbol (the compiled path pre-encodes the same)."""
        static = self._static.get(venue_symbol)
        if static is None:  # once per symbol
            static = self._static[venue_symbol] = {
                "venue": self.venue,
                "market": self.market,
                "symbol": self.symbol_names.get(venue_symbol) or normalize_symbol(venue_symbol),
                "venue_symbol": venue_symbol,
            }
        return static

    def _header(self, venue_symbol: str, exchange_ms: int | None, receive_ts: int) -> dict:
        static = self._static.get(venue_symbol) or self.static(venue_symbol)
        return {**static, "exchange_ts": None if exchange_ms is None else exchange_ms * 1000, "receive_ts": receive_ts}

    def _normalize(self, msg: msgspec.Struct, receive_ts: int) -> Event | SymbolDiff:
        if isinstance(msg, _Depth):
            # USD-M sends the matching-engine time T; spot only the event time E.
            ts = (msg.T or msg.E) * 1000
            return SymbolDiff(msg.s, DepthDiff(msg.U, msg.u, msg.pu, msg.b, msg.a, ts, receive_ts))
        if isinstance(msg, (_AggTrade, _Trade)):
            trade_id = msg.a if isinstance(msg, _AggTrade) else msg.t
            return Trade(
                **self._header(msg.s, msg.T, receive_ts),
                trade_id=str(trade_id),
                price=Decimal(msg.p),
                size=Decimal(msg.q),
                # m: the buyer was the maker, so the aggressor sold.
                side=Side.SELL if msg.m else Side.BUY,
            )
        if isinstance(msg, _BookTicker):
            return BestBidOffer(
                **self._header(msg.s, msg.T or msg.E, receive_ts),
                bid_price=Decimal(msg.b),
                bid_size=Decimal(msg.B),
                ask_price=Decimal(msg.a),
                ask_size=Decimal(msg.A),
                update_id=msg.u,
            )
        assert isinstance(msg, _Kline)
        k = msg.k
        return Kline(
            **self._header(msg.s, msg.E, receive_ts),
            interval=k.i,
            open_time=k.t * 1000,
            close_time=(k.T + 1) * 1000,  # Binance's T is the last millisecond; ours is exclusive
            open=Decimal(k.o),
            high=Decimal(k.h),
            low=Decimal(k.low),
            close=Decimal(k.c),
            volume=Decimal(k.v),
            quote_volume=None if k.q is None else Decimal(k.q),
            trade_count=k.n,
            closed=k.x,
        )
