"""Avro codec in the Confluent wire format: magic byte 0, 4-byte big-endian schema id, Avro binary.

Any standard Confluent deserializer reads what this writes, and this reads what any Confluent
serializer writes (for records of the contract). Subjects follow TopicRecordNameStrategy,
``<topic>-<record full name>``, so one topic can carry several record types.

Hot-path notes: the schema id and fastavro's parsed schema are looked up once per (topic,
event type); encoding is ``msgspec.to_builtins`` plus ``fastavro.schemaless_writer``. Decoding
reads timestamps as plain integers (microseconds): the ``timestamp-micros`` logical type is
kept on the wire for other consumers, but turning every timestamp into a ``datetime`` and
back would cost more than the rest of the record.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import Decimal
from io import BytesIO
from typing import Any

import fastavro
import msgspec

from tickflow.errors import MalformedPayload, RecordMismatch, TickflowError, UnknownEventType
from tickflow.events import EVENT_TYPES, Event
from tickflow.registry import SchemaRegistry
from tickflow.schemas import RecordSchema, load_contract

MAGIC = 0
HEADER_SIZE = 5

# Values fastavro takes as they are; msgspec would otherwise turn them into strings.
_PASS_THROUGH = (Decimal, bytes)

_TIME_LOGICAL_TYPES = {"timestamp-micros", "timestamp-millis", "local-timestamp-micros", "local-timestamp-millis"}


def subject_name(topic: str, record_fullname: str) -> str:
    """TopicRecordNameStrategy: the subject of ``record_fullname`` records on ``topic``."""
    return f"{topic}-{record_fullname}"


def _without_time_logical_types(node: Any) -> Any:
    """The same schema with timestamps as plain ``long`` (identical bytes on the wire)."""
    if isinstance(node, list):
        return [_without_time_logical_types(n) for n in node]
    if isinstance(node, dict):
        if node.get("logicalType") in _TIME_LOGICAL_TYPES:
            return node["type"]
        return {k: _without_time_logical_types(v) for k, v in node.items()}
    return node


def _fullname(schema: dict[str, Any]) -> str:
    name = schema["name"]
    return name if "." in name else f"{schema.get('namespace', '')}.{name}".lstrip(".")


@dataclass(frozen=True)
class _Writer:
    header: bytes
    parsed: dict[str, Any]


@dataclass(frozen=True)
class _Reader:
    event_type: type[Event]
    writer: dict[str, Any]
    reader: dict[str, Any] | None


class AvroCodec:
    """Encodes events to Confluent-framed Avro and decodes them back into typed events."""

    def __init__(
        self,
        registry: SchemaRegistry,
        contract: dict[str, RecordSchema] | None = None,
        event_types: dict[str, type[Event]] | None = None,
    ) -> None:
        self.registry = registry
        self.contract = contract if contract is not None else load_contract()
        self.event_types = event_types if event_types is not None else EVENT_TYPES
        self._writers: dict[tuple[str, type[Event]], _Writer] = {}
        self._readers: dict[int, _Reader] = {}
        self._plain_local = {
            name: fastavro.parse_schema(_without_time_logical_types(rec.schema)) for name, rec in self.contract.items()
        }

    # --- encoding ------------------------------------------------------------------------------

    def register(self, topic: str, event_type: type[Event]) -> int:
        """Register ``event_type``'s schema for ``topic`` (idempotent) and return the schema id."""
        return int.from_bytes(self._writer(topic, event_type).header[1:], "big")

    def _writer(self, topic: str, event_type: type[Event]) -> _Writer:
        writer = self._writers.get((topic, event_type))
        if writer is None:
            record = self.contract.get(event_type.avro_name)
            if record is None:
                raise UnknownEventType(f"{event_type.__name__} has no schema {event_type.avro_name}.avsc")
            schema_id = self.registry.register(subject_name(topic, record.fullname), record.schema_str)
            writer = _Writer(bytes([MAGIC]) + schema_id.to_bytes(4, "big"), record.parsed)
            self._writers[(topic, event_type)] = writer
        return writer

    def encode(self, event: Event, topic: str) -> bytes:
        """The Confluent-framed Avro bytes of ``event`` for ``topic``."""
        writer = self._writers.get((topic, type(event))) or self._writer(topic, type(event))
        buffer = BytesIO()
        buffer.write(writer.header)
        try:
            fastavro.schemaless_writer(buffer, writer.parsed, msgspec.to_builtins(event, builtin_types=_PASS_THROUGH))
        except (ValueError, TypeError, AttributeError, KeyError, OverflowError) as exc:
            raise RecordMismatch(f"{type(event).__name__} does not match {event.avro_name}: {exc}") from exc
        return buffer.getvalue()

    # --- decoding ------------------------------------------------------------------------------

    @staticmethod
    def schema_id(payload: bytes) -> int:
        """The schema id in a Confluent-framed payload."""
        if len(payload) < HEADER_SIZE:
            raise MalformedPayload(f"payload of {len(payload)} bytes is shorter than the 5-byte Confluent header")
        if payload[0] != MAGIC:
            raise MalformedPayload(f"payload starts with byte {payload[0]}, not the Confluent magic byte 0")
        return int.from_bytes(payload[1:HEADER_SIZE], "big")

    def _reader(self, schema_id: int) -> _Reader:
        reader = self._readers.get(schema_id)
        if reader is None:
            writer_schema = json.loads(self.registry.schema(schema_id))
            name = _fullname(writer_schema)
            event_type = self.event_types.get(name)
            if event_type is None or name not in self._plain_local:
                raise UnknownEventType(f"schema id {schema_id} is {name}, which is not an event type of tickflow")
            writer = fastavro.parse_schema(_without_time_logical_types(writer_schema))
            local = self._plain_local[name]
            # Same schema as ours: skip fastavro's schema resolution.
            same = fastavro.schema.to_parsing_canonical_form(writer) == fastavro.schema.to_parsing_canonical_form(local)
            reader = _Reader(event_type, writer, None if same else local)
            self._readers[schema_id] = reader
        return reader

    def decode_data(self, payload: bytes) -> tuple[type[Event], dict[str, Any]]:
        """Decode to the event type and its Avro data (a dict), without building the event."""
        reader = self._reader(self.schema_id(payload))
        buffer = BytesIO(payload)
        buffer.seek(HEADER_SIZE)
        try:
            data = fastavro.schemaless_reader(buffer, reader.writer, reader.reader)
        except TickflowError:
            raise
        except Exception as exc:  # fastavro raises EOFError, ValueError, IndexError... on bad bytes
            raise MalformedPayload(
                f"payload is not a valid {reader.event_type.avro_name} record: {type(exc).__name__}: {exc}"
            ) from exc
        if buffer.tell() != len(payload):
            raise MalformedPayload(
                f"payload has {len(payload) - buffer.tell()} bytes after the end of its "
                f"{reader.event_type.avro_name} record"
            )
        return reader.event_type, data

    def decode(self, payload: bytes) -> Event:
        """The typed event in a Confluent-framed Avro payload."""
        event_type, data = self.decode_data(payload)
        try:
            return msgspec.convert(data, event_type)
        except msgspec.ValidationError as exc:
            raise RecordMismatch(f"record does not fit {event_type.__name__}: {exc}") from exc
