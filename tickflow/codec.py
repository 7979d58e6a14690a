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
from typing import Any, Literal, Protocol

import fastavro
import msgspec

from tickflow import avro_plan
from tickflow.errors import MalformedPayload, RecordMismatch, TickflowError, UnknownEventType
from tickflow.events import EVENT_TYPES, Event
from tickflow.registry import SchemaRegistry
from tickflow.schemas import RecordSchema, load_contract

try:
    from tickflow import _avro_reader
except ImportError:  # not built (no C compiler at install): decode with fastavro only
    _avro_reader = None  # type: ignore[assignment]

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


class _FastavroEncoder:
    """Encodes with fastavro: where the compiled writer is not built, or for schemas it skips."""

    def __init__(self, header: bytes, parsed: dict[str, Any], avro_name: str) -> None:
        self.header = header
        self.parsed = parsed
        self.avro_name = avro_name

    def __call__(self, event: Event) -> bytes:
        buffer = BytesIO()
        buffer.write(self.header)
        try:
            fastavro.schemaless_writer(buffer, self.parsed, msgspec.to_builtins(event, builtin_types=_PASS_THROUGH))
        except (ValueError, TypeError, AttributeError, KeyError, OverflowError) as exc:
            raise RecordMismatch(f"{type(event).__name__} does not match {self.avro_name}: {exc}") from exc
        return buffer.getvalue()

    def keyed(self, event: Event) -> tuple[str, bytes]:
        return event.key, self(event)


class Encoder(Protocol):
    """Encodes events of one type for one topic (see ``AvroCodec.encoder``)."""

    header: bytes

    def __call__(self, event: Event) -> bytes: ...

    def keyed(self, event: Event) -> tuple[str, bytes]:
        """The event's Kafka key and its encoded bytes."""
        ...


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
        *,
        compiled_writer: bool = True,
    ) -> None:
        self.registry = registry
        #: Write with the compiled writer where it is built (same bytes as fastavro, faster).
        self.compiled_writer = compiled_writer and avro_plan.compiled is not None
        self.contract = contract if contract is not None else load_contract()
        self.event_types = event_types if event_types is not None else EVENT_TYPES
        self._encoders: dict[tuple[str, type[Event]], Encoder] = {}
        self._readers: dict[int, _Reader] = {}
        self._field_readers: dict[int, tuple[type[Event], Any] | Literal[False]] = {}
        self._builders: dict[type[Event], Any] = {}
        self._plain_local = {
            name: fastavro.parse_schema(_without_time_logical_types(rec.schema)) for name, rec in self.contract.items()
        }

    # --- encoding ------------------------------------------------------------------------------

    def register(self, topic: str, event_type: type[Event]) -> int:
        """Register ``event_type``'s schema for ``topic`` (idempotent) and return the schema id."""
        return int.from_bytes(self.encoder(topic, event_type).header[1:], "big")  # type: ignore[attr-defined]

    def encoder(self, topic: str, event_type: type[Event]) -> Encoder:
        """The function that encodes ``event_type`` events for ``topic`` (registers on first use)."""
        encoder = self._encoders.get((topic, event_type))
        if encoder is None:
            record = self.contract.get(event_type.avro_name)
            if record is None:
                raise UnknownEventType(f"{event_type.__name__} has no schema {event_type.avro_name}.avsc")
            schema_id = self.registry.register(subject_name(topic, record.fullname), record.schema_str)
            header = bytes([MAGIC]) + schema_id.to_bytes(4, "big")
            plan = avro_plan.build_plan(record.schema, event_type, string_arrays=True) if self.compiled_writer else None
            if plan is not None:
                positions = avro_plan.key_positions(event_type)
                encoder = avro_plan.compiled.Encoder(header, plan, positions)  # type: ignore[union-attr]
            else:
                encoder = _FastavroEncoder(header, record.parsed, record.fullname)
            self._encoders[(topic, event_type)] = encoder
        return encoder

    def encode(self, event: Event, topic: str) -> bytes:
        """The Confluent-framed Avro bytes of ``event`` for ``topic``."""
        encoder = self._encoders.get((topic, type(event))) or self.encoder(topic, type(event))
        return encoder(event)

    def encode_keyed(self, event: Event, topic: str) -> tuple[str, bytes]:
        """``(event.key, encode(event, topic))``, reading the event's fields once."""
        encoder = self._encoders.get((topic, type(event))) or self.encoder(topic, type(event))
        return encoder.keyed(event)

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

    def decode_fields(self, payload: bytes) -> tuple[type[Event], tuple[Any, ...]] | None:
        """The event type and its fields as a tuple in schema order, read by the compiled reader
        (``tickflow/_avro_reader.pyx``: enums as their symbols, decimals as their unscaled
        integers, nested records as tuples, no ``Decimal`` and no dict); ``None`` where that
        reader does not apply (not built, a schema shape it does not handle, or a writer's
        schema other than ours, which needs fastavro's resolution): then use ``decode``.
        Raises ``MalformedPayload`` as ``decode`` does."""
        schema_id = self.schema_id(payload)
        fast = self._field_readers.get(schema_id)
        if fast is None:
            fast = self._field_readers[schema_id] = self._field_reader(schema_id)
        if fast is False:
            return None
        event_type, read = fast
        return event_type, read(payload, HEADER_SIZE)

    def exact_plan(self, schema_id: int) -> tuple[type[Event], Any]:
        """The event type of records written with ``schema_id``, and the compiled plan of its
        schema (``avro_plan``) if that schema is exactly ours (its decimals' scale too), which
        is when the compiled readers may read them; else ``None`` (not built, a shape they do
        not handle, or another version of the schema: ``decode`` resolves it)."""
        reader = self._reader(schema_id)
        if reader.writer != self._plain_local[reader.event_type.avro_name]:
            return reader.event_type, None
        return reader.event_type, avro_plan.build_plan(self.contract[reader.event_type.avro_name].schema)

    def _field_reader(self, schema_id: int) -> tuple[type[Event], Any] | Literal[False]:
        event_type, plan = self.exact_plan(schema_id)
        if _avro_reader is None or plan is None:
            return False
        return event_type, _avro_reader.Reader(plan)

    def decode_typed(self, payload: bytes) -> Event:
        """``decode``, through the compiled reader where it applies: the same event, built from
        the field tuple (decimals scaled, enums typed) without fastavro's dict; a few times
        faster for flat records (the order router's commands). Anything else goes to ``decode``."""
        fields = self.decode_fields(payload)
        if fields is None:
            return self.decode(payload)
        event_type, values = fields
        build = self._builders.get(event_type)
        if build is None:
            build = self._builders[event_type] = _builder(event_type, self.contract[event_type.avro_name].schema)
        return build(values) if build is not False else self.decode(payload)

    def decode(self, payload: bytes) -> Event:
        """The typed event in a Confluent-framed Avro payload."""
        event_type, data = self.decode_data(payload)
        try:
            return msgspec.convert(data, event_type)
        except msgspec.ValidationError as exc:
            raise RecordMismatch(f"record does not fit {event_type.__name__}: {exc}") from exc


def _builder(event_type: type[Event], schema: dict[str, Any]) -> Any:
    """A function from ``decode_fields``' tuple to the typed event, for a record of scalars,
    decimals and enums; ``False`` for one with nested records or arrays (``decode`` builds those)."""
    import typing
    from enum import Enum

    hints = typing.get_type_hints(event_type)
    names, converters = [], []
    for field in schema["fields"]:
        branches = field["type"] if isinstance(field["type"], list) else [field["type"]]
        kind = next((b for b in branches if b != "null"), "null")
        if isinstance(kind, dict) and kind.get("type") in ("record", "array"):
            return False
        names.append(field["name"])
        if isinstance(kind, dict) and kind.get("logicalType") == "decimal":
            exponent = -int(kind.get("scale", 0))
            converters.append(lambda v, e=exponent: None if v is None else Decimal(v).scaleb(e))
            continue
        enum = next((t for t in (hints[field["name"]], *typing.get_args(hints[field["name"]]))
                     if isinstance(t, type) and issubclass(t, Enum)), None)  # fmt: skip
        converters.append((lambda v, e=enum: None if v is None else e(v)) if enum is not None else None)
    plan = tuple(zip(names, converters, strict=True))

    def build(values: tuple[Any, ...]) -> Event:
        return event_type(**{name: (convert(v) if convert is not None else v)
                             for (name, convert), v in zip(plan, values, strict=True)})  # fmt: skip

    return build
