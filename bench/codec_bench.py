"""Codec benchmark: AvroCodec encode/decode rate versus bare fastavro, single thread.

What it measures (records per second, one thread, the median of ``--rounds`` rounds). Within a
round every variant runs over the same ``--records`` records, interleaved chunk by chunk
(``--chunk`` records, order reversed every other chunk), so that load bursts from other
processes on a noisy machine hit all variants alike; ratios are computed per round (same run,
same records), and the median ratio is reported with the range over rounds:

* ``trade.encode`` / ``book.encode``: ``AvroCodec.encode(event, topic)`` (msgspec.to_builtins +
  fastavro.schemaless_writer + the 5-byte Confluent header) versus bare
  ``fastavro.schemaless_writer`` given the already-built plain dict (Decimal values) and the very
  same parsed schema object the codec writes with. Target: codec/bare >= 0.80.
* ``trade.decode`` / ``book.decode``: ``AvroCodec.decode_data(payload)`` (the dict, like bare) and
  ``AvroCodec.decode(payload)`` (the typed event, + msgspec.convert) versus bare
  ``fastavro.schemaless_reader`` given the payload minus the 5-byte header and the same parsed
  schema object the codec reads with (timestamps as plain longs, no reader schema).
* ``repr.encode`` / ``repr.decode``: the cost of the decimal representation: the same Trade data
  written/read bare with the contract schema (Avro ``bytes`` decimal, precision 38, scale 18)
  versus a variant whose decimal fields are Avro ``string`` (decimal strings such as "65000.01").
* Diagnostics, printed beside the above: ``bare[hinted]`` is bare fastavro given a schema parsed
  with fastavro's default ``parse_schema`` (which marks it ``__fastavro_parsed`` so that
  ``schemaless_writer``/``schemaless_reader`` do not parse it again on every call), and
  ``sketch[hinted]`` is a bench-local copy of the codec's encode path using that schema (what
  the codec would do after the first fix suggested in the report); ``sketch[hinted+dec]`` also
  converts the Decimals to Avro bytes-decimal itself (exact, same bytes) and writes with the
  decimal fields as plain ``bytes``, skipping fastavro's slow per-value decimal conversion. Both
  sketches are checked to produce exactly the codec's bytes. A per-record cost breakdown of the
  encode path is printed at the end; ``--profile`` adds a cProfile of ``AvroCodec.encode``.

Records are realistic and varied: Binance-like trades over many instruments (prices from
0.00001234 to 65000.01, sent as 8-decimal strings like Binance does) and BookUpdate deltas with
10 bid + 10 ask levels (some of size 0, i.e. removals). The schemas are registered once, before
any timing, in the real schema registry.

Reproduce (needs the local stack: ``tickflow infra up``; TICKFLOW_* variables are honoured)::

    .venv/bin/python bench/codec_bench.py                      # 5 rounds of 20k trades / 4k books
    .venv/bin/python bench/codec_bench.py --records 50000 --rounds 7 --profile

The last line of output is one JSON object with every median, for scripts.
"""

from __future__ import annotations

import argparse
import cProfile
import decimal
import gc
import json
import pstats
import random
import statistics
import sys
import time
from collections.abc import Callable
from decimal import Decimal
from io import BytesIO
from typing import Any

import fastavro
import msgspec

from tickflow.codec import HEADER_SIZE, AvroCodec
from tickflow.config import load_settings
from tickflow.errors import RegistryError, TickflowError
from tickflow.events import BookUpdate, BookUpdateKind, MarketType, PriceLevel, Side, Trade
from tickflow.registry import SchemaRegistry

T0_MICROS = 1_718_000_000_000_000

# (venue, venue symbol, symbol, market, start price, price decimals, typical size, size decimals)
INSTRUMENTS: list[tuple[str, str, str, MarketType, float, int, float, int]] = [
    ("binance-spot", "BTCUSDT", "BTC-USDT", MarketType.SPOT, 65000.01, 2, 0.01, 5),
    ("binance-spot", "ETHUSDT", "ETH-USDT", MarketType.SPOT, 3456.78, 2, 0.5, 4),
    ("binance-spot", "SOLUSDT", "SOL-USDT", MarketType.SPOT, 145.123, 3, 12.0, 3),
    ("binance-spot", "DOGEUSDT", "DOGE-USDT", MarketType.SPOT, 0.12345, 5, 5000.0, 0),
    ("binance-spot", "PEPEUSDT", "PEPE-USDT", MarketType.SPOT, 0.00001234, 8, 12_345_678.0, 0),
    ("binance-spot", "SHIBUSDT", "SHIB-USDT", MarketType.SPOT, 0.00002345, 8, 3_000_000.0, 0),
    ("binance-spot", "XRPUSDT", "XRP-USDT", MarketType.SPOT, 0.5123, 4, 800.0, 0),
    ("binance-spot", "ETHBTC", "ETH-BTC", MarketType.SPOT, 0.05312, 5, 0.3, 4),
    ("binance-usdm", "BTCUSDT", "BTC-USDT", MarketType.PERPETUAL, 65010.1, 1, 0.05, 3),
    ("binance-usdm", "ETHUSDT", "ETH-USDT", MarketType.PERPETUAL, 3457.12, 2, 1.2, 3),
    ("binance-usdm", "1000PEPEUSDT", "1000PEPE-USDT", MarketType.PERPETUAL, 0.0123456, 7, 20000.0, 0),
]


# --- realistic records -------------------------------------------------------------------------


def _binance_decimal(value: float, decimals: int) -> Decimal:
    """A price or size as the normalizer gets it: Binance sends 8-decimal strings ("0.00123000")."""
    return Decimal(f"{round(value, decimals):.8f}")


def make_trades(n: int, seed: int = 1) -> list[Trade]:
    rng = random.Random(seed)
    prices = [inst[4] for inst in INSTRUMENTS]
    trades = []
    for i in range(n):
        k = rng.randrange(len(INSTRUMENTS))
        venue, venue_symbol, symbol, market, _, pdec, size, sdec = INSTRUMENTS[k]
        prices[k] *= 1 + rng.gauss(0, 0.0002)
        ts = T0_MICROS + i * 350
        trades.append(
            Trade(
                venue=venue,
                market=market,
                symbol=symbol,
                venue_symbol=venue_symbol,
                exchange_ts=ts,
                receive_ts=ts + rng.randrange(800, 4000),
                trade_id=str(3_456_789_012 + i),
                price=_binance_decimal(prices[k], pdec),
                size=_binance_decimal(size * rng.uniform(0.01, 3.0), sdec),
                side=Side.BUY if rng.random() < 0.5 else Side.SELL,
            )
        )
    return trades


def _book_side(
    rng: random.Random, mid: float, sign: int, levels: int, pdec: int, size: float, sdec: int
) -> list[PriceLevel]:
    tick = 10.0**-pdec
    out = []
    for j in range(levels):
        px = mid + sign * (j + 1) * tick * rng.randrange(1, 4)
        qty = 0.0 if rng.random() < 0.2 else size * rng.uniform(0.01, 5.0)  # size 0 removes the level
        out.append(PriceLevel(price=_binance_decimal(px, pdec), size=_binance_decimal(qty, sdec)))
    return out


def make_book_deltas(n: int, levels: int = 10, seed: int = 2) -> list[BookUpdate]:
    rng = random.Random(seed)
    updates = []
    update_id = 40_000_000_000
    for i in range(n):
        venue, venue_symbol, symbol, market, price, pdec, size, sdec = INSTRUMENTS[rng.randrange(len(INSTRUMENTS))]
        mid = price * (1 + rng.gauss(0, 0.001))
        first = update_id + 1
        update_id += rng.randrange(1, 40)
        ts = T0_MICROS + i * 100_000
        updates.append(
            BookUpdate(
                venue=venue,
                market=market,
                symbol=symbol,
                venue_symbol=venue_symbol,
                exchange_ts=ts,
                receive_ts=ts + rng.randrange(800, 4000),
                kind=BookUpdateKind.DELTA,
                bids=_book_side(rng, mid, -1, levels, pdec, size, sdec),
                asks=_book_side(rng, mid, +1, levels, pdec, size, sdec),
                first_update_id=first,
                last_update_id=update_id,
            )
        )
    return updates


def to_plain(event: Any) -> dict[str, Any]:
    """What the codec hands fastavro: msgspec builtins with Decimal values kept."""
    return msgspec.to_builtins(event, builtin_types=(Decimal,))


def string_decimal_schema(node: Any) -> Any:
    """The same schema with every bytes-decimal replaced by Avro ``string``."""
    if isinstance(node, list):
        return [string_decimal_schema(n) for n in node]
    if isinstance(node, dict):
        if node.get("logicalType") == "decimal":
            return "string"
        return {k: string_decimal_schema(v) for k, v in node.items()}
    return node


def bytes_decimal_schema(node: Any) -> Any:
    """The same schema with every bytes-decimal as plain Avro ``bytes`` (identical wire bytes)."""
    if isinstance(node, list):
        return [bytes_decimal_schema(n) for n in node]
    if isinstance(node, dict):
        if node.get("logicalType") == "decimal":
            return "bytes"
        return {k: bytes_decimal_schema(v) for k, v in node.items()}
    return node


# Exact: any rounding (more than 38 digits) or a fractional part left after scaling raises.
_DEC_CONTEXT = decimal.Context(
    prec=38, traps=[decimal.Inexact, decimal.Rounded, decimal.InvalidOperation, decimal.Overflow]
)
_SCALE = 18


def decimal_to_bytes(value: Decimal) -> bytes:
    """Avro bytes-decimal (scale 18) of ``value``: the bytes fastavro writes, computed faster."""
    scaled = value.scaleb(_SCALE, _DEC_CONTEXT)
    unscaled = int(scaled)
    if unscaled != scaled:
        raise ValueError(f"{value} has more than {_SCALE} fractional digits")
    return unscaled.to_bytes((unscaled.bit_length() + 8) // 8, "big", signed=True)


def decimals_to_bytes(node: Any) -> Any:
    """Replace, in place, every Decimal in msgspec builtins by its Avro bytes-decimal."""
    if isinstance(node, dict):
        for key, value in node.items():
            if isinstance(value, Decimal):
                node[key] = decimal_to_bytes(value)
            elif isinstance(value, (dict, list)):
                decimals_to_bytes(value)
    elif isinstance(node, list):
        for value in node:
            decimals_to_bytes(value)
    return node


def all_decimals(node: Any) -> list[Decimal]:
    if isinstance(node, Decimal):
        return [node]
    if isinstance(node, dict):
        return [d for v in node.values() for d in all_decimals(v)]
    if isinstance(node, list):
        return [d for v in node for d in all_decimals(v)]
    return []


# --- timed loops (one call = one pass over the records; returns seconds) ------------------------


def codec_encode(codec: AvroCodec, topic: str, events: list[Any]) -> float:
    encode = codec.encode
    start = time.perf_counter()
    for event in events:
        encode(event, topic)
    return time.perf_counter() - start


def bare_encode(schema: dict[str, Any], records: list[dict[str, Any]]) -> float:
    writer = fastavro.schemaless_writer
    start = time.perf_counter()
    for record in records:
        buffer = BytesIO()
        writer(buffer, schema, record)
        buffer.getvalue()
    return time.perf_counter() - start


def sketch_encode(header: bytes, schema: dict[str, Any], events: list[Any]) -> float:
    """The codec's encode path, bench-local, with a schema fastavro does not re-parse."""
    writer = fastavro.schemaless_writer
    to_builtins = msgspec.to_builtins
    start = time.perf_counter()
    for event in events:
        buffer = BytesIO()
        buffer.write(header)
        writer(buffer, schema, to_builtins(event, builtin_types=(Decimal,)))
        buffer.getvalue()
    return time.perf_counter() - start


def sketch_fast_encode(header: bytes, schema: dict[str, Any], events: list[Any]) -> float:
    """As ``sketch_encode``, and decimals converted to bytes here (schema: decimals as plain bytes)."""
    writer = fastavro.schemaless_writer
    to_builtins = msgspec.to_builtins
    start = time.perf_counter()
    for event in events:
        buffer = BytesIO()
        buffer.write(header)
        writer(buffer, schema, decimals_to_bytes(to_builtins(event, builtin_types=(Decimal,))))
        buffer.getvalue()
    return time.perf_counter() - start


def codec_decode(decode: Callable[[bytes], Any], payloads: list[bytes]) -> float:
    start = time.perf_counter()
    for payload in payloads:
        decode(payload)
    return time.perf_counter() - start


def bare_decode(schema: dict[str, Any], bodies: list[bytes]) -> float:
    reader = fastavro.schemaless_reader
    start = time.perf_counter()
    for body in bodies:
        reader(BytesIO(body), schema, None)
    return time.perf_counter() - start


def encode_all(schema: dict[str, Any], records: list[dict[str, Any]]) -> list[bytes]:
    out = []
    for record in records:
        buffer = BytesIO()
        fastavro.schemaless_writer(buffer, schema, record)
        out.append(buffer.getvalue())
    return out


# --- running -----------------------------------------------------------------------------------


class Group:
    """Variants compared within each round, interleaved chunk by chunk; per-round ratios, then the median.

    Each round walks the records in chunks; for every chunk each variant runs once over that
    chunk, in an order that alternates from chunk to chunk (and round to round), so that a burst
    of load from other processes hits all variants alike instead of one variant's whole pass.
    """

    def __init__(
        self, name: str, chunk: int, variants: dict[str, tuple[Callable[[list[Any]], float], list[Any]]]
    ) -> None:
        self.name = name
        self.variants = variants
        self.count = len(next(iter(variants.values()))[1])
        if any(len(data) != self.count for _, data in variants.values()):
            raise ValueError(f"{name}: every variant must get the same number of records")
        self.chunk = max(1, min(chunk, self.count))
        self.rates: dict[str, list[float]] = {v: [] for v in variants}

    def warm_up(self) -> None:
        for fn, data in self.variants.values():
            fn(data[: self.chunk])

    def run_round(self, round_no: int) -> None:
        gc.collect()
        totals = dict.fromkeys(self.variants, 0.0)
        names = list(self.variants)
        for c, lo in enumerate(range(0, self.count, self.chunk)):
            order = names if (c + round_no) % 2 == 0 else names[::-1]
            for name in order:
                fn, data = self.variants[name]
                totals[name] += fn(data[lo : lo + self.chunk])
        for name, seconds in totals.items():
            self.rates[name].append(self.count / seconds)

    def median(self, variant: str) -> float:
        return statistics.median(self.rates[variant])

    def ratios(self, a: str, b: str) -> list[float]:
        return [x / y for x, y in zip(self.rates[a], self.rates[b], strict=True)]

    def ratio(self, a: str, b: str) -> float:
        return statistics.median(self.ratios(a, b))

    def ratio_text(self, a: str, b: str) -> str:
        """``median [min-max]`` of the per-round ratios."""
        values = self.ratios(a, b)
        return f"{statistics.median(values):.3f} [{min(values):.2f}-{max(values):.2f}]"


def interleaved_us(steps: dict[str, Callable[[], object]], n: int, repeat: int = 9) -> dict[str, float]:
    """Median microseconds per call of each step; steps alternate, ``repeat`` times ``n`` calls each."""
    samples: dict[str, list[float]] = {name: [] for name in steps}
    for r in range(repeat):
        order = list(steps) if r % 2 == 0 else list(reversed(steps))
        for name in order:
            fn = steps[name]
            start = time.perf_counter()
            for _ in range(n):
                fn()
            samples[name].append((time.perf_counter() - start) / n * 1e6)
    return {name: statistics.median(values) for name, values in samples.items()}


def breakdown(
    codec: AvroCodec, topic: str, event: Any, hinted: dict[str, Any], raw_hinted: dict[str, Any], n: int
) -> dict[str, float]:
    """Per-record cost of each step of ``AvroCodec.encode`` (and of the proposed path) for one event."""
    writer = codec._writers[(topic, type(event))]  # the codec's cached (header, parsed schema)
    plain = to_plain(event)
    plain_bytes = decimals_to_bytes(to_plain(event))
    decimals = all_decimals(plain)
    decimal_schema = {"type": "bytes", "logicalType": "decimal", "precision": 38, "scale": _SCALE}
    prepare = fastavro._logical_writers.prepare_bytes_decimal

    def full() -> None:
        codec.encode(event, topic)

    def to_builtins() -> None:
        msgspec.to_builtins(event, builtin_types=(Decimal,))

    def reparse() -> None:  # what schemaless_writer does first with a schema lacking the parse marker
        fastavro.parse_schema(writer.parsed)

    def write_hinted() -> None:
        buffer = BytesIO()
        fastavro.schemaless_writer(buffer, hinted, plain)
        buffer.getvalue()

    def fastavro_decimals() -> None:
        for value in decimals:
            prepare(value, decimal_schema)

    def buffer_only() -> None:
        buffer = BytesIO()
        buffer.write(writer.header)
        buffer.getvalue()

    def own_decimals() -> None:
        decimals_to_bytes(msgspec.to_builtins(event, builtin_types=(Decimal,)))

    def write_raw() -> None:
        buffer = BytesIO()
        fastavro.schemaless_writer(buffer, raw_hinted, plain_bytes)
        buffer.getvalue()

    return interleaved_us(
        {
            "codec.encode total (today)": full,
            "  msgspec.to_builtins": to_builtins,
            "  fastavro re-parse of the schema": reparse,
            "  schemaless_writer, schema pre-parsed": write_hinted,
            "    of which its decimals -> bytes": fastavro_decimals,
            "  BytesIO + header + getvalue": buffer_only,
            "proposed: to_builtins + own decimals": own_decimals,
            "proposed: writer, pre-parsed, no dec.": write_raw,
        },
        n,
    )


def fail(message: str) -> None:
    print(f"codec_bench: error: {message}", file=sys.stderr)
    sys.exit(2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog="See the module docstring.")
    parser.add_argument("--records", type=int, default=20_000, help="trades per variant per round (default 20000)")
    parser.add_argument(
        "--book-records", type=int, default=None, help="book deltas per variant per round (default: records/5)"
    )
    parser.add_argument("--levels", type=int, default=10, help="levels per side in a book delta (default 10)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds; medians are reported (default 5)")
    parser.add_argument(
        "--chunk", type=int, default=1000, help="trades per interleaving chunk (book deltas: chunk/5; default 1000)"
    )
    parser.add_argument("--trade-topic", default="tickflow.trades", help="topic whose subject Trade registers under")
    parser.add_argument("--book-topic", default="tickflow.book", help="topic whose subject BookUpdate registers under")
    parser.add_argument("--profile", action="store_true", help="also print a cProfile of AvroCodec.encode")
    args = parser.parse_args(argv)
    if min(args.records, args.rounds, args.levels, args.chunk) < 1:
        parser.error("--records, --rounds, --levels and --chunk must be positive")
    book_n = args.book_records or max(1, args.records // 5)
    book_chunk = max(1, args.chunk // 5)

    try:
        settings = load_settings()
    except TickflowError as exc:
        fail(str(exc))
    registry = SchemaRegistry(settings.registry.model_copy(update={"retry_seconds": 3.0}))
    if not registry.is_reachable():
        fail(f"schema registry at {settings.registry.url} is not reachable; start it with `tickflow infra up`")
    codec = AvroCodec(registry)
    try:  # registered once, before any timing
        trade_id = codec.register(args.trade_topic, Trade)
        book_id = codec.register(args.book_topic, BookUpdate)
    except RegistryError as exc:
        fail(f"registering the schemas failed: {exc}")

    print(f"building {args.records} trades and {book_n} book deltas ({args.levels}+{args.levels} levels)...")
    trades = make_trades(args.records)
    books = make_book_deltas(book_n, args.levels)
    trade_plain = [to_plain(t) for t in trades]
    book_plain = [to_plain(b) for b in books]
    trade_payloads = [codec.encode(t, args.trade_topic) for t in trades]
    book_payloads = [codec.encode(b, args.book_topic) for b in books]
    trade_bodies = [p[HEADER_SIZE:] for p in trade_payloads]
    book_bodies = [p[HEADER_SIZE:] for p in book_payloads]

    # The exact schema objects the codec uses: the cached writer schema, and (after one decode,
    # which fetches the writer schema by id) the schema it reads with.
    trade_w = codec._writers[(args.trade_topic, Trade)].parsed
    book_w = codec._writers[(args.book_topic, BookUpdate)].parsed
    codec.decode(trade_payloads[0])
    codec.decode(book_payloads[0])
    trade_r = codec._readers[trade_id].writer
    book_r = codec._readers[book_id].writer
    # The same schemas parsed the fastavro default way (carry the __fastavro_parsed marker).
    trade_w_h, book_w_h = fastavro.parse_schema(trade_w), fastavro.parse_schema(book_w)
    # ... and with decimals as plain bytes, for the sketch that converts decimals itself.
    trade_raw_h = fastavro.parse_schema(bytes_decimal_schema(codec.contract["tickflow.Trade"].schema))
    book_raw_h = fastavro.parse_schema(bytes_decimal_schema(codec.contract["tickflow.BookUpdate"].schema))
    trade_r_h, book_r_h = fastavro.parse_schema(trade_r), fastavro.parse_schema(book_r)
    header_t = trade_payloads[0][:HEADER_SIZE]
    header_b = book_payloads[0][:HEADER_SIZE]

    # Same bytes both ways, or the comparison is meaningless.
    if (
        encode_all(trade_w, trade_plain[:100]) != trade_bodies[:100]
        or encode_all(book_w, book_plain[:20]) != (book_bodies[:20])
    ):
        fail("bare fastavro and AvroCodec produce different bytes for the same records")
    for schema, header, events, payloads in (
        (trade_raw_h, header_t, trades[:100], trade_payloads[:100]),
        (book_raw_h, header_b, books[:20], book_payloads[:20]),
    ):
        sketched = [header + b for b in encode_all(schema, [decimals_to_bytes(to_plain(e)) for e in events])]
        if sketched != payloads:
            fail("the sketch with its own decimal conversion does not produce the codec's bytes")
    if codec.decode(trade_payloads[0]) != trades[0] or codec.decode(book_payloads[0]) != books[0]:
        fail("AvroCodec does not round-trip the benchmark records")

    # Decimal representation: the same Trade records, decimal fields as Avro strings.
    trade_schema = codec.contract["tickflow.Trade"].schema
    str_schema_dict = string_decimal_schema(trade_schema)
    str_w = fastavro.parse_schema(str_schema_dict, _write_hint=False)  # parsed like the codec's
    str_w_h = fastavro.parse_schema(str_schema_dict)
    str_records = [{k: str(v) if isinstance(v, Decimal) else v for k, v in r.items()} for r in trade_plain]
    str_bodies = encode_all(str_w, str_records)
    dec_r = fastavro.parse_schema(trade_schema, _write_hint=False)
    dec_r_h = fastavro.parse_schema(trade_schema)

    groups = [
        Group(
            "trade.encode",
            args.chunk,
            {
                "codec": (lambda d: codec_encode(codec, args.trade_topic, d), trades),
                "bare": (lambda d: bare_encode(trade_w, d), trade_plain),
                "bare[hinted]": (lambda d: bare_encode(trade_w_h, d), trade_plain),
                "sketch[hinted]": (lambda d: sketch_encode(header_t, trade_w_h, d), trades),
                "sketch[hinted+dec]": (lambda d: sketch_fast_encode(header_t, trade_raw_h, d), trades),
            },
        ),
        Group(
            "trade.decode",
            args.chunk,
            {
                "codec.decode_data": (lambda d: codec_decode(codec.decode_data, d), trade_payloads),
                "codec.decode": (lambda d: codec_decode(codec.decode, d), trade_payloads),
                "bare": (lambda d: bare_decode(trade_r, d), trade_bodies),
                "bare[hinted]": (lambda d: bare_decode(trade_r_h, d), trade_bodies),
            },
        ),
        Group(
            "book.encode",
            book_chunk,
            {
                "codec": (lambda d: codec_encode(codec, args.book_topic, d), books),
                "bare": (lambda d: bare_encode(book_w, d), book_plain),
                "bare[hinted]": (lambda d: bare_encode(book_w_h, d), book_plain),
                "sketch[hinted]": (lambda d: sketch_encode(header_b, book_w_h, d), books),
                "sketch[hinted+dec]": (lambda d: sketch_fast_encode(header_b, book_raw_h, d), books),
            },
        ),
        Group(
            "book.decode",
            book_chunk,
            {
                "codec.decode_data": (lambda d: codec_decode(codec.decode_data, d), book_payloads),
                "codec.decode": (lambda d: codec_decode(codec.decode, d), book_payloads),
                "bare": (lambda d: bare_decode(book_r, d), book_bodies),
                "bare[hinted]": (lambda d: bare_decode(book_r_h, d), book_bodies),
            },
        ),
        Group(
            "repr.encode",
            args.chunk,
            {
                "decimal": (lambda d: bare_encode(trade_w, d), trade_plain),
                "string": (lambda d: bare_encode(str_w, d), str_records),
                "decimal[hinted]": (lambda d: bare_encode(trade_w_h, d), trade_plain),
                "string[hinted]": (lambda d: bare_encode(str_w_h, d), str_records),
            },
        ),
        Group(
            "repr.decode",
            args.chunk,
            {
                "decimal": (lambda d: bare_decode(dec_r, d), trade_bodies),
                "string": (lambda d: bare_decode(str_w, d), str_bodies),
                "decimal[hinted]": (lambda d: bare_decode(dec_r_h, d), trade_bodies),
                "string[hinted]": (lambda d: bare_decode(str_w_h, d), str_bodies),
            },
        ),
    ]

    # Warm-up (caches, allocator), untimed.
    for group in groups:
        group.warm_up()
    for r in range(args.rounds):
        for group in groups:
            group.run_round(r)
        print(f"round {r + 1}/{args.rounds} done", flush=True)

    g = {group.name: group for group in groups}
    print()
    print(f"fastavro {fastavro.__version__}, msgspec {msgspec.__version__}, Python {sys.version.split()[0]}")
    print(
        f"median of {args.rounds} rounds; trades/round={len(trades)}, book deltas/round={len(books)} "
        f"({args.levels}+{args.levels} levels); ratios: median [min-max] of per-round ratios"
    )
    print(f"{'measurement':<34}{'records/s':>12}{'us/record':>11}   ratio")
    for group in groups:
        base = "string" if group.name.startswith("repr") else "bare"
        for variant in group.variants:
            rate = group.median(variant)
            ratio = ""
            if group.name.startswith("repr"):
                if variant.startswith("decimal"):
                    other = variant.replace("decimal", "string")
                    ratio = f"decimal/string = {group.ratio_text(variant, other)}"
            elif variant != base and not variant.startswith("bare["):
                target = " (target >= 0.80)" if group.name.endswith("encode") and variant == "codec" else ""
                ratio = f"{variant}/bare = {group.ratio_text(variant, base)}{target}"
            elif variant == "bare[hinted]":
                ratio = f"bare[hinted]/bare = {group.ratio_text(variant, base)}"
            print(f"{group.name + ' ' + variant:<34}{rate:>12,.0f}{1e6 / rate:>11.2f}   {ratio}")
        print()

    enc_ok = g["trade.encode"].ratio("codec", "bare") >= 0.8 and g["book.encode"].ratio("codec", "bare") >= 0.8
    print(f"encode target codec/bare >= 0.80: {'MET' if enc_ok else 'NOT MET'}")

    n_dec_t, n_dec_b = len(all_decimals(to_plain(trades[0]))), len(all_decimals(to_plain(books[0])))
    print(
        "\nper-record cost of AvroCodec.encode steps (us; steps interleaved, median of 9 x 1000 (Trade) / 200 "
        f"(BookUpdate) calls on one record; {n_dec_t} and {n_dec_b} decimals):"
    )
    bd_trade = breakdown(codec, args.trade_topic, trades[0], trade_w_h, trade_raw_h, 1000)
    bd_book = breakdown(codec, args.book_topic, books[0], book_w_h, book_raw_h, 200)
    print(f"{'step':<38}{'Trade':>9}{'BookUpdate':>12}")
    for step in bd_trade:
        print(f"{step:<38}{bd_trade[step]:>9.2f}{bd_book[step]:>12.2f}")

    if args.profile:
        print("\ncProfile of AvroCodec.encode over the trades (top 12 by internal time):")
        profiler = cProfile.Profile()
        profiler.enable()
        codec_encode(codec, args.trade_topic, trades)
        profiler.disable()
        pstats.Stats(profiler, stream=sys.stdout).sort_stats("tottime").print_stats(12)

    result: dict[str, Any] = {
        "bench": "codec",
        "records": len(trades),
        "book_records": len(books),
        "levels": args.levels,
        "rounds": args.rounds,
        "rates": {f"{grp.name}.{v}": round(grp.median(v)) for grp in groups for v in grp.variants},
        "ratios": {
            "trade.encode.codec/bare": round(g["trade.encode"].ratio("codec", "bare"), 4),
            "trade.decode.codec_data/bare": round(g["trade.decode"].ratio("codec.decode_data", "bare"), 4),
            "trade.decode.codec/bare": round(g["trade.decode"].ratio("codec.decode", "bare"), 4),
            "book.encode.codec/bare": round(g["book.encode"].ratio("codec", "bare"), 4),
            "book.decode.codec_data/bare": round(g["book.decode"].ratio("codec.decode_data", "bare"), 4),
            "book.decode.codec/bare": round(g["book.decode"].ratio("codec.decode", "bare"), 4),
            "trade.encode.sketch_hinted/bare": round(g["trade.encode"].ratio("sketch[hinted]", "bare"), 4),
            "book.encode.sketch_hinted/bare": round(g["book.encode"].ratio("sketch[hinted]", "bare"), 4),
            "trade.encode.sketch_hinted_dec/bare": round(g["trade.encode"].ratio("sketch[hinted+dec]", "bare"), 4),
            "book.encode.sketch_hinted_dec/bare": round(g["book.encode"].ratio("sketch[hinted+dec]", "bare"), 4),
            "repr.encode.decimal/string": round(g["repr.encode"].ratio("decimal", "string"), 4),
            "repr.decode.decimal/string": round(g["repr.decode"].ratio("decimal", "string"), 4),
            "repr.encode.decimal/string[hinted]": round(g["repr.encode"].ratio("decimal[hinted]", "string[hinted]"), 4),
            "repr.decode.decimal/string[hinted]": round(g["repr.decode"].ratio("decimal[hinted]", "string[hinted]"), 4),
        },
        "encode_target_met": enc_ok,
        "breakdown_us": {
            "trade": {k.strip(): round(v, 3) for k, v in bd_trade.items()},
            "book": {k.strip(): round(v, 3) for k, v in bd_book.items()},
        },
    }
    print(json.dumps(result, separators=(",", ":")))
    registry.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
