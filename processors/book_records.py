"""The book topic's records as the order-book agent reads them.

``BookRecord`` is a ``BookUpdate`` with its levels as ``(price, size)`` integers at scale 18
(``scaled.py``), the form the agent's book keeps, read straight from the payload by the compiled
reader (``codec.ScaledReader``: no ``Decimal``, no dict, about a tenth of ``AvroCodec.decode``'s
cost for a book delta).
"""

from __future__ import annotations

import msgspec

from processors.codec import ScaledReader
from processors.levels import Level
from processors.scaled import plain, units
from tickflow.codec import AvroCodec
from tickflow.events import BookUpdate


class BookRecord(msgspec.Struct):
    """A ``BookUpdate``, levels at scale 18, enums as their symbols. Its fields are the Avro
    record's, in its order (``codec.ScaledReader`` checks it)."""

    venue: str
    market: str
    symbol: str
    venue_symbol: str
    exchange_ts: int | None
    receive_ts: int
    kind: str
    bids: list[Level]
    asks: list[Level]
    first_update_id: int | None = None
    last_update_id: int | None = None
    prev_update_id: int | None = None
    sequence: int | None = None
    prev_sequence: int | None = None
    checksum: int | None = None

    @property
    def key(self) -> str:
        """The Kafka key of the instrument, as ``BookUpdate.key``."""
        return f"{self.venue}:{self.symbol}"

    @classmethod
    def of(cls, event: BookUpdate) -> BookRecord:
        """The same record from a typed event (decoded by fastavro, or built in a test)."""
        fields = msgspec.structs.asdict(event)
        fields["market"], fields["kind"] = event.market.value, event.kind.value
        fields["bids"] = [(units(level.price), units(level.size)) for level in event.bids]
        fields["asks"] = [(units(level.price), units(level.size)) for level in event.asks]
        return cls(**fields)


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
