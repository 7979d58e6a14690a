"""Codec benchmark: AvroCodec encode/decode rates versus bare fastavro, one thread.

What it measures (records per second, median of ``--rounds`` rounds, variants interleaved in
chunks so load from other processes hits all of them alike):

* ``encode``: ``AvroCodec.encode(event, topic)`` (Confluent header included) with the compiled
  writer, and with the fastavro fallback (``compiled_writer=False``), versus bare
  ``fastavro.schemaless_writer`` given the same record as a ready-made dict and the same parsed
  schema. Target: codec >= 80% of bare. All three must produce the same bytes (checked).
* ``decode``: ``AvroCodec.decode(payload)`` into a typed event, versus bare
  ``fastavro.schemaless_reader`` on the same bytes (minus the 5-byte header).
* ``decimals``: the cost of the contract's decimal representation: the same Trade written and
  read by bare fastavro with prices and sizes as Avro ``decimal`` (bytes, 38, 18) versus as
  decimal strings.

Records: a Binance-like Trade, and a BookUpdate delta with ``--levels`` levels a side.

Reproduce (needs the local stack: ``make up``; TICKFLOW_* variables are honoured)::

    .venv/bin/python bench/codec_bench.py
    .venv/bin/python bench/codec_bench.py --records 50000 --rounds 7

The last line of output is one JSON object with every median, for scripts.
"""

from __future__ import annotations

import argparse
import copy
import gc
import io
import json
import statistics
import sys
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import fastavro
import msgspec

from tickflow.codec import AvroCodec
from tickflow.config import load_settings
from tickflow.errors import TickflowError
from tickflow.events import BookUpdate, BookUpdateKind, Event, MarketType, PriceLevel, Side, Trade
from tickflow.registry import SchemaRegistry
from tickflow.schemas import load_contract

T0 = 1_700_000_000_000_000


def trades(n: int) -> list[Trade]:
    return [
        Trade(
            venue="binance-spot",
            market=MarketType.SPOT,
            symbol="BTC-USDT",
            venue_symbol="BTCUSDT",
            exchange_ts=T0 + i * 350,
            receive_ts=T0 + i * 350 + 1200,
            trade_id=str(3_456_789_012 + i),
            price=Decimal(f"{65000 + (i % 997) / 100:.8f}"),
            size=Decimal(f"{0.00012 * (1 + i % 13):.8f}"),
            side=Side.BUY if i % 2 else Side.SELL,
        )
        for i in range(n)
    ]


def book_deltas(n: int, levels: int) -> list[BookUpdate]:
    return [
        BookUpdate(
            venue="binance-spot",
            market=MarketType.SPOT,
            symbol="SHIB-USDT",
            venue_symbol="SHIBUSDT",
            exchange_ts=T0 + i * 100_000,
            receive_ts=T0 + i * 100_000 + 900,
            kind=BookUpdateKind.DELTA,
            bids=[
                PriceLevel(Decimal(f"0.0000{1234 - j:04d}"), Decimal(f"{(i + j) % 50000}.00")) for j in range(levels)
            ],
            asks=[
                PriceLevel(Decimal(f"0.0000{1235 + j:04d}"), Decimal(f"{(i * j) % 70000}.00")) for j in range(levels)
            ],
            first_update_id=1000 + i * 5,
            last_update_id=1004 + i * 5,
        )
        for i in range(n)
    ]


def as_avro_data(event: Event) -> dict[str, Any]:
    return msgspec.to_builtins(event, builtin_types=(Decimal, bytes))


def timed(fn: Callable[[Any], Any], items: list[Any]) -> float:
    start = time.perf_counter()
    for item in items:
        fn(item)
    return time.perf_counter() - start


def interleave(variants: dict[str, tuple[Callable[[Any], Any], list[Any]]], rounds: int, chunk: int) -> dict:
    """Rates per variant: each round walks all items in chunks, variants alternating per chunk."""
    rates: dict[str, list[float]] = {name: [] for name in variants}
    for r in range(rounds):
        spent = dict.fromkeys(variants, 0.0)
        size = len(next(iter(variants.values()))[1])
        names = list(variants)
        names = names[r % len(names) :] + names[: r % len(names)]
        gc.collect()
        for lo in range(0, size, chunk):
            for name in names:
                fn, items = variants[name]
                spent[name] += timed(fn, items[lo : lo + chunk])
        for name in names:
            rates[name].append(size / spent[name])
    return rates


def strings_instead_of_decimals(schema: dict[str, Any]) -> dict[str, Any]:
    schema = copy.deepcopy(schema)
    for field in schema["fields"]:
        if isinstance(field["type"], dict) and field["type"].get("logicalType") == "decimal":
            field["type"] = "string"
    return schema


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog="See the module docstring.")
    parser.add_argument("--records", type=int, default=20_000, help="trades per variant per round (default 20000)")
    parser.add_argument("--levels", type=int, default=10, help="levels per side in a book delta (default 10)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds; medians are reported (default 5)")
    parser.add_argument("--chunk", type=int, default=1000, help="records per interleaving chunk (default 1000)")
    args = parser.parse_args()

    settings = load_settings()
    registry = SchemaRegistry(settings.registry.model_copy(update={"retry_seconds": 3.0}))
    try:
        codec = AvroCodec(registry)
        fallback = AvroCodec(registry, compiled_writer=False)
        codec.register("tickflow.trades", Trade)
    except TickflowError as exc:
        print(f"error: {exc} (start the local stack with `make up`)", file=sys.stderr)
        return 2
    contract = load_contract()
    results: dict[str, float] = {}
    print(f"{'measurement':<36}{'records/s':>12}{'us/record':>11}   ratio")

    for label, topic, events in (
        ("trade", "tickflow.trades", trades(args.records)),
        ("book", "tickflow.book", book_deltas(max(args.records // 10, 100), args.levels)),
    ):
        schema = contract[events[0].avro_name].parsed
        data = [as_avro_data(e) for e in events]
        payloads = [codec.encode(e, topic) for e in events]
        for event, payload in zip(events[:200], payloads, strict=False):  # the same bytes, three ways
            bare = io.BytesIO()
            fastavro.schemaless_writer(bare, schema, as_avro_data(event))
            assert payload[5:] == bare.getvalue() == fallback.encode(event, topic)[5:], "encodings differ"

        def bare_write(record: dict[str, Any], schema: dict[str, Any] = schema) -> bytes:
            out = io.BytesIO()
            fastavro.schemaless_writer(out, schema, record)
            return out.getvalue()

        def bare_read(payload: bytes, schema: dict[str, Any] = schema) -> Any:
            return fastavro.schemaless_reader(io.BytesIO(payload[5:]), schema, None)

        enc = interleave(
            {
                "codec": (lambda e, t=topic: codec.encode(e, t), events),
                "codec[fastavro fallback]": (lambda e, t=topic: fallback.encode(e, t), events),
                "bare fastavro": (bare_write, data),
            },
            args.rounds,
            args.chunk,
        )
        dec = interleave({"codec": (codec.decode, payloads), "bare fastavro": (bare_read, payloads)}, args.rounds,
                         args.chunk)  # fmt: skip
        for kind, rates, base in (("encode", enc, "bare fastavro"), ("decode", dec, "bare fastavro")):
            for name, values in rates.items():
                median = statistics.median(values)
                results[f"{label}.{kind}.{name}"] = median
                ratio = "" if name == base else f"{name}/bare = {median / statistics.median(rates[base]):.3f}"
                print(f"{label + '.' + kind + ' ' + name:<36}{median:>12,.0f}{1e6 / median:>11.2f}   {ratio}")

    # The decimal representation, measured on bare fastavro (the codec's compiled writer has no
    # string variant: the contract is decimals).
    events = trades(args.records)
    as_decimal = contract["tickflow.Trade"].parsed
    as_string = fastavro.parse_schema(strings_instead_of_decimals(contract["tickflow.Trade"].schema))
    dec_data = [as_avro_data(e) for e in events]
    str_data = [{**d, "price": str(d["price"]), "size": str(d["size"])} for d in dec_data]

    def writer(schema: dict[str, Any]) -> Callable[[dict[str, Any]], bytes]:
        def write(record: dict[str, Any]) -> bytes:
            out = io.BytesIO()
            fastavro.schemaless_writer(out, schema, record)
            return out.getvalue()

        return write

    dec_bytes = [writer(as_decimal)(d) for d in dec_data]
    str_bytes = [writer(as_string)(d) for d in str_data]
    rep = interleave(
        {
            "encode decimal": (writer(as_decimal), dec_data),
            "encode string": (writer(as_string), str_data),
            "decode decimal": (lambda b: fastavro.schemaless_reader(io.BytesIO(b), as_decimal, None), dec_bytes),
            "decode string": (lambda b: fastavro.schemaless_reader(io.BytesIO(b), as_string, None), str_bytes),
        },
        args.rounds,
        args.chunk,
    )
    for name, values in rep.items():
        results[f"decimals.{name}"] = statistics.median(values)
        print(f"{'decimals ' + name:<36}{statistics.median(values):>12,.0f}{1e6 / statistics.median(values):>11.2f}")

    ratios = {
        "trade.encode codec/bare": results["trade.encode.codec"] / results["trade.encode.bare fastavro"],
        "book.encode codec/bare": results["book.encode.codec"] / results["book.encode.bare fastavro"],
        "trade.decode codec/bare": results["trade.decode.codec"] / results["trade.decode.bare fastavro"],
        "book.decode codec/bare": results["book.decode.codec"] / results["book.decode.bare fastavro"],
        "fastavro decimal/string encode": results["decimals.encode decimal"] / results["decimals.encode string"],
        "fastavro decimal/string decode": results["decimals.decode decimal"] / results["decimals.decode string"],
    }
    print()
    for name, value in ratios.items():
        print(f"{name:<36}{value:>8.3f}")
    met = min(ratios["trade.encode codec/bare"], ratios["book.encode codec/bare"]) >= 0.8
    print(f"encode target codec >= 80% of bare fastavro: {'MET' if met else 'NOT MET'}")
    print(json.dumps({"bench": "codec", "records": args.records, "rounds": args.rounds,
                      "rates": {k: round(v) for k, v in results.items()},
                      "ratios": {k: round(v, 4) for k, v in ratios.items()}, "encode_target_met": met}))  # fmt: skip
    registry.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
