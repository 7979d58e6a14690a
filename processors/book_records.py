"""The book topic's records as the order-book agent reads them.

``BookRecord`` is a ``BookUpdate`` with its levels as ``(price, size)`` integers at scale 18
(``scaled.py``), the form the agent's book keeps, read straight from the payload by the compiled
reader (``codec.ScaledReader``: no ``Decimal``, no dict, about a tenth of ``AvroCodec.decode``'s
cost for a book delta).
"""

from __future__ import annotations

from processors.codec import MarketRecord, ScaledReader
from processors.levels import Level
from processors.scaled import plain
from tickflow.codec import AvroCodec
from tickflow.events import BookUpdate


class BookRecord(MarketRecord):
    """A ``BookUpdate``, levels as ``(price, size)`` at scale 18, enums as their symbols."""

    kind: str
    bids: list[Level]
    asks: list[Level]
    first_update_id: int | None = None
    last_update_id: int | None = None
    prev_update_id: int | None = None
    sequence: int | None = None
    prev_sequence: int | None = None
    checksum: int | None = None


def book_reader(codec: AvroCodec) -> ScaledReader[BookRecord]:
    """Reads the book topic: ``BookRecord``, or the typed event of any other record."""
    return ScaledReader(codec, BookUpdate, BookRecord)


def implausible(record: BookRecord) -> str | None:
    """Why a book record cannot be right (a price not above zero, a negative size), else ``None``.
    Such a record goes to the dead-letter topic; the book then misses it, so the next delta
    breaks continuity and the book waits for a snapshot, as after any lost record."""
    for side in (record.bids, record.asks):
        for price, size in side:
            if price <= 0 or size < 0:
                return f"impossible level price={plain(price)} size={plain(size)}"
    return None
