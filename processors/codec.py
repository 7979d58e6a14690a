"""Faust serializers built on tickflow's ``AvroCodec``: Confluent framing, the schema registry,
typed events in and out (never JSON).

Faust hands a codec only the value, never the topic, but the subject a record is registered
under is ``<topic>-<record>`` (TopicRecordNameStrategy). So encoding takes one ``AvroSerializer``
per output topic, passed as that topic's ``value_serializer``; decoding needs no topic (the
schema id in the payload names the writer's schema).

Decoding never raises. Faust turns a codec error into an exception thrown into the agent's
stream, which stops the agent; here a payload that cannot be decoded becomes an
``Undecodable`` value instead, which the agent sends to the dead-letter topic before going on.
Only the record's own faults are caught (``CodecError``): a registry that cannot be reached
(after the registry client's retries) still raises, since the record itself may well be good.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from enum import Enum
from typing import Any, Generic, Self, TypeVar

import msgspec
from faust.serializers.codecs import Codec

from processors.scaled import units
from tickflow.codec import AvroCodec
from tickflow.errors import CodecError
from tickflow.events import Event


@dataclass(frozen=True)
class Undecodable:
    """A payload that is not a tickflow event (malformed, unknown schema, not in the contract)."""

    payload: bytes
    error_type: str
    reason: str

    @classmethod
    def of(cls, payload: bytes | None, error: CodecError) -> Undecodable:
        return cls(bytes(payload or b""), type(error).__name__, str(error))


class AvroSerializer(Codec):
    """Typed tickflow events <-> Confluent-framed Avro; encodes for one topic (``None``: decode only)."""

    def __init__(self, codec: AvroCodec, topic: str | None = None, **kwargs: Any) -> None:
        super().__init__(codec=codec, topic=topic, **kwargs)
        self.codec = codec
        self.topic = topic

    def _dumps(self, event: Event) -> bytes:
        if self.topic is None:
            raise TypeError("this AvroSerializer only decodes: give it the topic it encodes for")
        return self.codec.encode(event, self.topic)

    def _loads(self, payload: bytes) -> Event | Undecodable:
        return decode_value(self.codec, payload)


def decode_value(codec: AvroCodec, payload: bytes | None) -> Event | Undecodable:
    """The event in ``payload``, or ``Undecodable`` with the reason (the record's own fault)."""
    try:
        return codec.decode(payload or b"")
    except CodecError as exc:
        return Undecodable.of(payload, exc)


class MarketRecord(msgspec.Struct):
    """An agent's form of a market event type: the Avro record's fields in its order (the
    compiled reader's tuple is its arguments: ``ScaledReader`` checks the order), decimals as
    integers at scale 18 (``scaled.py``), enums as their symbols, nested records as tuples."""

    venue: str
    market: str
    symbol: str
    venue_symbol: str
    exchange_ts: int | None
    receive_ts: int

    @property
    def key(self) -> str:
        """The Kafka key of the instrument, as the event's ``key``."""
        return f"{self.venue}:{self.symbol}"

    @classmethod
    def of(cls, event: Event) -> Self:
        """The same record from a typed event (decoded by fastavro, or built in a test)."""
        return cls(*[_scaled(getattr(event, name)) for name in cls.__struct_fields__])


def _scaled(value: Any) -> Any:
    if isinstance(value, Decimal):
        return units(value)
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, msgspec.Struct):
        return tuple(_scaled(v) for v in msgspec.structs.astuple(value))
    if isinstance(value, list):
        return [_scaled(v) for v in value]
    return value


R = TypeVar("R", bound=MarketRecord)


class ScaledReader(Generic[R]):
    """``reader(payload)``: an ``event_type`` record as ``record_type`` (read straight from the
    payload by the compiled reader, ``AvroCodec.decode_fields``: no ``Decimal``, no dict), the
    typed event of any other record of the contract, or ``Undecodable`` with the reason. As
    ``decode_value``, it never raises for the record's own faults; a registry that cannot be
    reached still raises. Records the compiled reader does not apply to (a writer's schema
    other than ours, say) are decoded by fastavro and converted: the same result, slower."""

    def __init__(self, codec: AvroCodec, event_type: type[Event], record_type: type[R]) -> None:
        self.codec = codec
        self.event_type = event_type
        self.record_type = record_type
        fields = tuple(field["name"] for field in codec.contract[event_type.avro_name].schema["fields"])
        if fields != record_type.__struct_fields__:
            raise RuntimeError(f"{record_type.__name__}'s fields {record_type.__struct_fields__} are not those of "
                               f"{event_type.avro_name} {fields}: the contract changed, change them too")  # fmt: skip

    def __call__(self, payload: bytes | None) -> R | Event | Undecodable:
        try:
            fast = self.codec.decode_fields(payload or b"")
        except CodecError as exc:
            return Undecodable.of(payload, exc)
        if fast is not None and fast[0] is self.event_type:
            return self.record_type(*fast[1])
        event = decode_value(self.codec, payload)
        return self.record_type.of(event) if isinstance(event, self.event_type) else event
