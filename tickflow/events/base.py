"""The base classes of every event type.

Events are ``msgspec`` structs: compact, fast to build on the hot path, and converted to and
from Avro data by the codec. Each concrete event names its Avro record in ``avro_name``; the
test suite fails if a struct and its ``.avsc`` drift apart.
"""

from __future__ import annotations

from decimal import Decimal
from typing import ClassVar

import msgspec

from tickflow.events.enums import MarketType


class Event(msgspec.Struct, kw_only=True):
    """An event of the contract. ``key`` is the Kafka key that keeps related events ordered."""

    #: Full name of the Avro record (``schemas/<avro_name>.avsc``).
    avro_name: ClassVar[str]
    #: The fields whose values, joined by ``:``, make the Kafka key (the codec's compiled
    #: writer builds the same key while it encodes).
    key_fields: ClassVar[tuple[str, ...]]

    @property
    def key(self) -> str:
        return ":".join([str(getattr(self, name)) for name in self.key_fields])


class MarketEvent(Event, kw_only=True):
    """An event about one instrument on one venue; keyed ``venue:symbol``."""

    key_fields = ("venue", "symbol")
    venue: str
    market: MarketType
    symbol: str
    venue_symbol: str
    #: Microseconds since the epoch (UTC); ``None`` only where the venue sends no time.
    exchange_ts: int | None
    receive_ts: int


class PriceLevel(msgspec.Struct, array_like=False):
    price: Decimal
    size: Decimal
