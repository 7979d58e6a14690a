"""The compiled Binance path (``BinanceFastPath``, ``Book``) against the generic Python path.

The generic path is the reference: ``BinanceParser`` -> ``BookSync`` (with the ``Decimal``
``OrderBook``) -> events -> the fastavro encoder. The compiled path must give the same records
(topic, key and Avro bytes, in the same order), the same books, counters and snapshot requests,
on real recorded traffic and on random frames built to hit every branch: odd decimal spellings
it must leave to the generic path, gaps, duplicates, crossed books, resyncs.
"""

from __future__ import annotations

import random
from decimal import Context, Decimal
from typing import Any

import msgspec
import pytest

from producers.book_sync import BookSync, OrderBook, SyncState
from producers.recordings import read_http_log, read_ws_log
from producers.venues.binance.stream import BinanceStream
from producers.venues.binance.venue import BINANCE_SPOT, BINANCE_USDM, BinanceVenue
from tests.unit.test_binance_recordings import RECORDINGS
from tickflow import avro_plan
from tickflow.codec import AvroCodec
from tickflow.config import KafkaSettings
from tickflow.events import Event
from tickflow.producer import EventProducer

compiled = avro_plan.compiled
pytestmark = pytest.mark.skipif(compiled is None, reason="the compiled module is not built")

VENUES = {"binance-spot": BINANCE_SPOT, "binance-usdm": BINANCE_USDM}


class FakeRegistry:
    """Schema ids by subject, as a registry would hand them out (no registry needed)."""

    def __init__(self) -> None:
        self.ids: dict[str, int] = {}

    def register(self, subject: str, schema: str) -> int:
        return self.ids.setdefault(subject, 100 + len(self.ids))


class CaptureClient:
    """Stands in for ``confluent_kafka.Producer``: keeps what would have been produced."""

    def __init__(self) -> None:
        self.records: list[tuple[str, bytes, bytes]] = []

    def produce(self, topic: str, value: bytes, key: Any = None, **_: Any) -> None:
        self.records.append((topic, value, key.encode() if isinstance(key, str) else key))

    def poll(self, timeout: float = 0.0) -> int:
        return 0

    def flush(self, timeout: float = 0.0) -> int:
        return 0

    def __len__(self) -> int:
        return 0


class ReferenceSink:
    """The generic path's events, encoded by the reference encoder: fastavro, or the compiled
    plan writer (which also takes decimals with zeros past the scale, e.g. ``1.0000000000000000000``,
    that fastavro refuses)."""

    def __init__(self, registry: FakeRegistry, writer: str = "fastavro") -> None:
        self.codec = AvroCodec(registry, compiled_writer=writer == "compiled")  # type: ignore[arg-type]
        self.records: list[tuple[str, bytes, bytes]] = []

    def send(self, topic: str, event: Event) -> None:
        key, value = self.codec.encode_keyed(event, topic)
        self.records.append((topic, value, key.encode()))


def streams(
    venue: BinanceVenue, symbols: list[str], writer: str = "fastavro"
) -> tuple[BinanceStream, CaptureClient, BinanceStream, Any]:
    """(compiled stream, what it produced, generic stream, its reference sink), same registry."""
    registry = FakeRegistry()
    producer = EventProducer(KafkaSettings(bootstrap_servers="127.0.0.1:1"), AvroCodec(registry))  # type: ignore[arg-type]
    client = CaptureClient()
    producer._producer = client  # type: ignore[assignment]
    fast_requests: list[str] = []
    fast = BinanceStream(venue, symbols, producer, request_snapshot=fast_requests.append)
    assert fast.fast is not None, "the compiled path should be on for an EventProducer sink"
    reference = ReferenceSink(registry, writer)
    generic_requests: list[str] = []
    generic = BinanceStream(venue, symbols, reference, request_snapshot=generic_requests.append)
    assert generic.fast is None
    for s in generic.syncs:  # the reference keeps Decimal books, as before the compiled book
        generic.syncs[s] = BookSync(generic.syncs[s].rule, decode_levels=generic.parser.decode_levels)
    fast.requests, generic.requests = fast_requests, generic_requests  # type: ignore[attr-defined]
    return fast, client, generic, reference


def assert_same(fast: BinanceStream, client: CaptureClient, generic: BinanceStream, reference: ReferenceSink) -> None:
    assert len(client.records) == len(reference.records)
    for i, (mine, theirs) in enumerate(zip(client.records, reference.records, strict=True)):
        assert mine == theirs, f"record {i} differs"
    assert fast.counters == generic.counters
    assert fast.requests == generic.requests  # type: ignore[attr-defined]
    for symbol, sync in fast.syncs.items():
        ref = generic.syncs[symbol]
        assert isinstance(ref.book, OrderBook) and isinstance(sync.book, compiled.Book)
        assert sync.state is ref.state and sync.counters == ref.counters, symbol
        assert sync.book.bids == ref.book.bids and sync.book.asks == ref.book.asks, symbol
        assert sync.book.best_bid() == ref.book.best_bid() and sync.book.best_ask() == ref.book.best_ask()
        assert sync.book.crossed() == ref.book.crossed()
        assert (sync._previous is None) == (ref._previous is None)
        if ref._previous is not None:
            assert (sync._previous.first_id, sync._previous.last_id, sync._previous.prev_id) == (
                ref._previous.first_id, ref._previous.last_id, ref._previous.prev_id)  # fmt: skip


# --- recorded traffic ----------------------------------------------------------------------------


@pytest.mark.skipif(not RECORDINGS.is_dir(), reason=f"no recordings at {RECORDINGS}")
@pytest.mark.parametrize("venue", VENUES)
def test_recorded_traffic_gives_the_same_records_and_books(venue: str) -> None:
    ws = read_ws_log(RECORDINGS / venue / "ws.log")
    http = read_http_log(RECORDINGS / venue / "http.log")
    timeline: list[tuple[int, int, Any]] = [(f.receive_ts, 0, f.text) for f in ws.frames]
    timeline += [(r.receive_ts, 1, r) for r in http.responses]
    timeline.sort(key=lambda item: (item[0], item[1]))
    symbols = sorted({r.url.split("symbol=")[1].split("&")[0] for r in http.responses})
    fast, client, generic, reference = streams(VENUES[venue], symbols)
    for ts, kind, item in timeline:
        for stream in (fast, generic):
            if kind == 0:
                stream.on_frame(item.encode(), ts)
            else:
                stream.on_snapshot(item.url.split("symbol=")[1].split("&")[0], item.body, ts)
    assert_same(fast, client, generic, reference)
    assert all(s.state is SyncState.LIVE and s.counters.resets == 0 for s in fast.syncs.values())
    # Most frames took the compiled path (the rest: klines, buffered and bridging diffs).
    assert fast.fast.handled > 0.6 * len(ws.frames), (fast.fast.handled, len(ws.frames))


# --- random traffic ------------------------------------------------------------------------------


LONG_ZEROS = False  # whether ``spelled`` writes zeros past 18 fractional digits (fastavro refuses those)


def spelled(rng: random.Random, value: Decimal) -> Any:
    """``value`` as a venue might write it: mostly plain strings, sometimes odd ones that the
    compiled path must leave to the generic path (which reads them all the same)."""
    roll = rng.random()
    text = f"{value:f}"
    if roll < 0.8:
        return text
    if roll < 0.85:
        return f"{value:.18f}" + "0" * (rng.randint(0, 3) if LONG_ZEROS else 0)  # 18 fractional digits or more
    if roll < 0.88:
        return "00" + text  # leading zeros
    if roll < 0.91:
        return float(text) if "." in text and len(text) < 12 else text  # a JSON number
    if roll < 0.93:
        return f"{value:E}"  # exponent
    if roll < 0.95:
        return " " + text  # whitespace: Decimal strips it
    if roll < 0.97:
        return text.rstrip("0").rstrip(".") if "." in text else text
    return text + "." if "." not in text else text


def random_value(rng: random.Random, big: bool = False) -> Decimal:
    digits = rng.choice([0, 1, 2, 4, 8, 8, 8, 12, 18])
    whole = rng.choice([0, rng.randint(0, 9), rng.randint(0, 10**6), rng.randint(0, 10**12)])
    if big:
        whole = rng.randint(10**18, 10**20 - 1)
    fraction = rng.randint(0, 10**digits - 1) if digits else 0
    return Decimal(f"{whole}.{fraction:0{digits}d}") if digits else Decimal(whole)


def random_frames(venue: BinanceVenue, symbols: list[str], count: int, seed: int) -> list[tuple[int, Any]]:
    """Frames (and snapshot bodies, kind 1) with gaps, duplicates, crossings and odd spellings."""
    rng = random.Random(seed)
    spot = venue.spot
    next_id = dict.fromkeys(symbols, 1_000)
    last_u = dict.fromkeys(symbols, 0)
    out: list[tuple[int, Any]] = []
    for s in symbols:
        out.append((1, (s, msgspec.json.encode({"lastUpdateId": next_id[s] - 1, "bids": [["100.0", "1"]],
                                                 "asks": [["101.0", "1"]]}))))  # fmt: skip
    for n in range(count):
        s = rng.choice(symbols)
        roll = rng.random()
        if roll < 0.55:
            first = next_id[s]
            if rng.random() < 0.01:
                first += rng.randint(1, 3)  # a gap
            last = first + rng.randint(0, 3)
            prev = last_u[s] if rng.random() > 0.01 else last_u[s] - 1
            if rng.random() < 0.01 and last_u[s]:  # a duplicate of the previous diff
                first, last = next_id[s] - 1, last_u[s]
            else:
                next_id[s], last_u[s] = last + 1, last
            mid = Decimal(100) if rng.random() > 0.005 else Decimal(105)  # sometimes a crossing
            bids = [[spelled(rng, mid - random_value(rng) % 50 - Decimal("0.01")),
                     spelled(rng, random_value(rng) if rng.random() > 0.3 else Decimal("0E-8"))]
                    for _ in range(rng.randint(0, 6))]  # fmt: skip
            asks = [[spelled(rng, mid + 1 + random_value(rng) % 50),
                     spelled(rng, random_value(rng) if rng.random() > 0.3 else Decimal(0))]
                    for _ in range(rng.randint(0, 6))]  # fmt: skip
            data: dict[str, Any] = {"e": "depthUpdate", "E": 1_700_000_000_000 + n, "s": s, "U": first, "u": last,
                                    "b": bids, "a": asks}  # fmt: skip
            if not spot:
                data.update(pu=prev, T=1_700_000_000_000 + n - 1)
            stream = f"{s.lower()}@depth@100ms"
        elif roll < 0.8:
            data = {"e": "aggTrade", "E": 1_700_000_000_000 + n, "s": s, "a": rng.randint(0, 10**12),
                    "p": spelled(rng, random_value(rng, big=rng.random() < 0.05)), "q": spelled(rng, random_value(rng)),
                    "f": 1, "l": 2, "T": 1_700_000_000_000 + n, "m": rng.random() < 0.5}  # fmt: skip
            stream = f"{s.lower()}@aggTrade"
        elif roll < 0.85:
            data = {"e": "trade", "E": 1_700_000_000_000 + n, "s": s, "t": rng.randint(0, 10**12),
                    "p": spelled(rng, random_value(rng)), "q": spelled(rng, random_value(rng)),
                    "T": 1_700_000_000_000 + n, "m": rng.random() < 0.5}  # fmt: skip
            stream = f"{s.lower()}@trade"
        elif roll < 0.97:
            data = {"u": rng.randint(0, 10**9), "s": s, "b": spelled(rng, random_value(rng)),
                    "B": spelled(rng, random_value(rng)), "a": spelled(rng, random_value(rng)),
                    "A": spelled(rng, random_value(rng))}  # fmt: skip
            if rng.random() < 0.5:
                data["E"] = 1_700_000_000_000 + n
            if rng.random() < 0.3:
                data["T"] = rng.choice([0, 1_700_000_000_000 + n])
            stream = f"{s.lower()}@bookTicker"
        elif roll < 0.98:
            out.append((0, b'{"result": null, "id": 7}'))
            continue
        elif roll < 0.99:
            out.append((0, b'{"stream": "x@depth", "data": {"s": 1}}'))  # malformed
            continue
        else:  # a resync: a fresh snapshot of the book, sometimes ahead of the diffs still to come
            book_id = next_id[s] - 1 + rng.choice([0, 0, 2, 6])
            body = {"lastUpdateId": book_id, "bids": [["99.5", "2"]], "asks": [["100.5", "3"]]}
            out.append((1, (s, msgspec.json.encode(body))))
            continue
        frame = msgspec.json.encode({"stream": stream, "data": data})
        if rng.random() < 0.02:
            frame = frame.replace(b'":', b'" : ').replace(b",", b" ,\n")  # JSON whitespace
        out.append((0, frame))
    return out


@pytest.mark.parametrize("venue", VENUES)
@pytest.mark.parametrize(("seed", "writer"), [(1, "fastavro"), (2, "fastavro"), (3, "compiled"), (4, "compiled")])
def test_random_traffic_gives_the_same_records_and_books(
    venue: str, seed: int, writer: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(f"{__name__}.LONG_ZEROS", writer == "compiled")
    symbols = ["AAAUSDT", "BBBBTC", "CCCETH"]
    fast, client, generic, reference = streams(VENUES[venue], symbols, writer)
    frames = random_frames(VENUES[venue], symbols, 6000, seed)
    for n, (kind, item) in enumerate(frames):
        ts = 1_700_000_000_000_000 + n
        results = []
        for stream in (fast, generic):
            try:
                results.append(stream.on_frame(item, ts) if kind == 0 else stream.on_snapshot(*item, ts))
            except Exception as exc:  # values outside decimal(38, 18): both must refuse alike
                results.append(type(exc).__name__)
        assert results[0] == results[1], n
        if kind == 1:  # a snapshot arrived: both books went live on it, or both did not
            assert fast.syncs[item[0]].state is generic.syncs[item[0]].state
    assert_same(fast, client, generic, reference)
    assert fast.fast.handled > len(frames) * 0.25, fast.fast.handled  # the rest: odd spellings, resyncs
    resets = sum(s.counters.resets for s in fast.syncs.values())
    assert resets > 0  # gaps and crossings happened, and matched


def test_decimals_from_text_are_exact() -> None:
    rng = random.Random(5)
    for _ in range(20_000):
        digits = rng.randint(0, 18)
        whole = rng.choice([0, rng.randint(0, 10 ** rng.randint(1, 20) - 1)])
        text = f"{whole}.{rng.randint(0, 10**digits - 1):0{digits}d}" if digits else str(whole)
        assert compiled.scaled_text(text) == int(Decimal(text).scaleb(18, Context(prec=60))), text
    for text in ["1e5", "-1", "+1", " 1", "1.", ".5", "1_0", "0x10", "", "1.0000000000000000001", "NaN",
                 "100000000000000000000", "1" * 39]:  # fmt: skip
        assert compiled.scaled_text(text) is None, text
    assert compiled.scaled_text("1.0000000000000000000") is None  # left to the encoder in use (fastavro refuses)
    assert compiled.scaled_text("1.000000000000000000") == 10**18
    assert compiled.scaled_text("99999999999999999999.999999999999999999") == 10**38 - 1


def test_the_compiled_book_equals_the_decimal_book_under_random_updates() -> None:
    rng = random.Random(9)
    mine, ref = compiled.Book(), OrderBook()
    for _ in range(5000):
        levels = [[Decimal(rng.randint(1, 400)) / 4, Decimal(rng.choice([0, 0, rng.randint(1, 10**6)])) / 100]
                  for _ in range(rng.randint(0, 8))]  # fmt: skip
        split = rng.randint(0, len(levels))
        bids = [(p, s) for p, s in levels[:split]]
        asks = [(p + 100, s) for p, s in levels[split:]]
        mine.apply(bids, asks)
        ref.apply(bids, asks)
        assert mine.best_bid() == ref.best_bid() and mine.best_ask() == ref.best_ask()
        assert mine.crossed() == ref.crossed()
        if rng.random() < 0.001:
            mine.clear()
            ref.clear()
    assert mine.bids == ref.bids and mine.asks == ref.asks


def test_the_compiled_book_refuses_what_decimal_38_18_cannot_hold_and_changes_nothing() -> None:
    book = compiled.Book()
    book.apply([(Decimal("1.5"), Decimal(2))], [])
    for bad in [Decimal("1E-19"), Decimal("1E+20"), Decimal("NaN")]:
        with pytest.raises(ValueError):
            book.apply([(Decimal(3), Decimal(1)), (bad, Decimal(1))], [])
    assert book.bids == {Decimal("1.5"): Decimal(2)}


def test_other_sinks_get_the_generic_path() -> None:
    stream = BinanceStream(BINANCE_SPOT, ["BTCUSDT"], ReferenceSink(FakeRegistry()), request_snapshot=lambda s: None)
    assert stream.fast is None and "on_frame" not in vars(stream)
