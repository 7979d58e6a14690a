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
from typing import Any

from faust.serializers.codecs import Codec

from tickflow.codec import AvroCodec
from tickflow.errors import CodecError
from tickflow.events import Event


@dataclass(frozen=True)
class Undecodable:
    """A payload that is not a tickflow event (malformed, unknown schema, not in the contract)."""

    payload: bytes
    error_type: str
    reason: str


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
        return Undecodable(bytes(payload or b""), type(exc).__name__, str(exc))
