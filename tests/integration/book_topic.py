"""What tests read back from the topics, as a consumer would: records of a venue, books rebuilt."""

from __future__ import annotations

from decimal import Decimal

from tickflow.codec import AvroCodec
from tickflow.config import Settings
from tickflow.consumer import EventConsumer, StartAt
from tickflow.events import BookReset, BookUpdate


def read(settings: Settings, codec: AvroCodec, venue: str, topic: str, since_us: int) -> list:
    """One venue's records on ``topic`` since ``since_us`` (receive time, or ``ts``)."""
    with EventConsumer(settings.kafka, codec, [topic], StartAt.beginning()) as consumer:
        return [
            m.event
            for m in consumer.read_to_end()
            if getattr(m.event, "venue", None) == venue
            and getattr(m.event, "receive_ts", getattr(m.event, "ts", 0)) >= since_us
        ]


def rebuild(records: list) -> dict[str, dict[Decimal, Decimal]]:
    """A consumer's book from the topic alone: the last snapshot, then every delta after it."""
    start = max(i for i, r in enumerate(records) if isinstance(r, BookUpdate) and r.kind.value == "SNAPSHOT")
    assert not any(isinstance(r, BookReset) for r in records[start:]), "ended without a live book"
    book: dict[str, dict[Decimal, Decimal]] = {"bids": {}, "asks": {}}
    for record in records[start:]:
        for side in ("bids", "asks"):
            for level in getattr(record, side):
                if level.size:
                    book[side][level.price] = level.size
                else:
                    book[side].pop(level.price, None)
    return book
