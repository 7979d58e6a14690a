"""A spread monitor: follows the best bid/offer topic live and prints each instrument's spread
(in basis points of the mid) once a second, flagging crossed or one-sided books.

    .venv/bin/python examples/spread_monitor.py                      # from now on, until Ctrl-C
    .venv/bin/python examples/spread_monitor.py --topic tickflow.book.bbo --symbol BTC-USDT

Reads ``tickflow.bbo`` (the venues' own best bid/offer) by default; the order-book agent's
validated top of book is on ``tickflow.book.bbo`` (``BookTop``, with the book's health).
"""

from __future__ import annotations

import argparse
import contextlib
import time
from collections.abc import Iterable
from decimal import Decimal

import tickflow
from tickflow.consumer import ConsumedEvent

BPS = Decimal(10_000)


def spread_bps(bid: Decimal | None, ask: Decimal | None) -> Decimal | None:
    """The spread in basis points of the mid; None for a one-sided book."""
    if bid is None or ask is None:
        return None
    return ((ask - bid) / ((ask + bid) / 2) * BPS).quantize(Decimal("0.01"))


def spreads(
    records: Iterable[ConsumedEvent], report: float = 1.0, limit: int | None = None
) -> dict[str, Decimal | None]:
    """Follows ``records`` (best bid/offer events); prints the latest spreads every ``report``
    seconds; returns them when the records end (or after ``limit`` records)."""
    latest: dict[str, Decimal | None] = {}
    last_report = time.monotonic()
    for seen, record in enumerate(records, 1):
        event = record.event
        bid = getattr(event, "bid_price", None)
        ask = getattr(event, "ask_price", None)
        latest[f"{event.venue}:{event.symbol}"] = spread_bps(bid, ask)
        if time.monotonic() - last_report >= report:
            last_report = time.monotonic()
            for key, bps in sorted(latest.items()):
                flag = "one-sided" if bps is None else ("CROSSED" if bps < 0 else "")
                print(f"{key:32s} {bps if bps is not None else '-':>10} bps {flag}")
            print(flush=True)
        if limit is not None and seen >= limit:
            break
    return latest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--topic", default="tickflow.bbo")
    parser.add_argument("--symbol", action="append", help="BTC-USDT or venue:BTC-USDT (repeatable)")
    args = parser.parse_args()
    with (
        tickflow.consume(args.topic, start="end", end=None, symbols=args.symbol) as records,
        contextlib.suppress(KeyboardInterrupt),
    ):
        spreads(records)


if __name__ == "__main__":
    main()
