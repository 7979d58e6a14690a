"""The order-book agent's output records, built from a ``Book``: best bid/offer, top-N depth,
dead letters."""

from __future__ import annotations

import time
from decimal import Decimal

from processors.book import Book, Top
from processors.levels import Level
from processors.scaled import to_decimal
from tickflow.events import BookDepth, BookTop, DeadLetter, PriceLevel

CONSUMER = "processors.books"


def now_us() -> int:
    return time.time_ns() // 1000


def _header(book: Book) -> dict:
    h = book.head
    return {"venue": h.venue, "market": h.market, "symbol": h.symbol, "venue_symbol": h.venue_symbol,
            "exchange_ts": h.exchange_ts, "receive_ts": h.receive_ts, "health": h.health, "detail": h.detail,
            "update_id": h.last_id}  # fmt: skip


def book_top(book: Book, top: Top) -> BookTop:
    """The best bid/offer record of ``top`` (``Book.top``)."""
    _, bid, ask = top
    bid_price, bid_size = _decimals(bid) if bid else (None, None)
    ask_price, ask_size = _decimals(ask) if ask else (None, None)
    return BookTop(**_header(book), processed_ts=now_us(), bid_price=bid_price, bid_size=bid_size,
                   ask_price=ask_price, ask_size=ask_size)  # fmt: skip


def _decimals(level: Level) -> tuple[Decimal, Decimal]:
    return to_decimal(level[0]), to_decimal(level[1])


def _levels(levels: list[Level]) -> list[PriceLevel]:
    return [PriceLevel(to_decimal(price), to_decimal(size)) for price, size in levels]


def book_depth(book: Book, depth: int) -> BookDepth:
    bids, asks = book.depth(depth)
    return BookDepth(**_header(book), processed_ts=now_us(), depth=depth, bids=_levels(bids), asks=_levels(asks))


def dead_letter(
    topic: str, partition: int, offset: int, key: bytes | None, value: bytes | None, error_type: str, reason: str,
    consumer: str = CONSUMER,
) -> DeadLetter:  # fmt: skip
    return DeadLetter(source_topic=topic, source_partition=partition, source_offset=offset, source_key=key,
                      source_value=value, error_type=error_type, reason=reason, consumer=consumer,
                      ts=now_us())  # fmt: skip
