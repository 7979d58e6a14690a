"""VWAP per instrument over a time range of the trade topic: an analytics job on tickflow.

    .venv/bin/python examples/vwap.py --from 2026-11-22T09:00:00Z --to 2026-11-22T10:00:00Z
    .venv/bin/python examples/vwap.py --symbol BTC-USDT          # everything there is now

Reads the range as one Arrow table (``tickflow.consume(...).to_arrow``), then sums price x size
and size per instrument in exact decimals: the VWAP is rounded once, at the end, to 18 places.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal

import pyarrow as pa

import tickflow

SCALE = Decimal("1e-18")


@dataclass
class Vwap:
    trades: int
    volume: Decimal
    notional: Decimal

    @property
    def vwap(self) -> Decimal:
        return (self.notional / self.volume).quantize(SCALE, ROUND_HALF_EVEN)


def vwap_by_instrument(trades: pa.Table) -> dict[str, Vwap]:
    """``venue:symbol`` -> its VWAP, volume and trade count over the table's trades."""
    out: dict[str, Vwap] = {}
    columns = trades.select(["venue", "symbol", "price", "size"]).to_pydict()
    for venue, symbol, price, size in zip(*columns.values(), strict=True):
        key = f"{venue}:{symbol}"
        entry = out.setdefault(key, Vwap(0, Decimal(0), Decimal(0)))
        entry.trades += 1
        entry.volume += size
        entry.notional += price * size
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--topic", default="tickflow.trades")
    parser.add_argument("--from", dest="start", type=datetime.fromisoformat, help="ISO time (default: the beginning)")
    parser.add_argument("--to", dest="end", type=datetime.fromisoformat, help="ISO time (default: now)")
    parser.add_argument("--symbol", action="append", help="BTC-USDT or venue:BTC-USDT (repeatable)")
    args = parser.parse_args()
    with tickflow.consume(args.topic, start=args.start or "beginning", end=args.end or "now",
                          symbols=args.symbol) as trades:  # fmt: skip
        table = trades.to_arrow("Trade")
    print(f"{table.num_rows:,} trades")
    for key, v in sorted(vwap_by_instrument(table).items()):
        print(f"{key:32s} {v.trades:>8,} trades  volume {v.volume:>24}  VWAP {v.vwap}")


if __name__ == "__main__":
    main()
