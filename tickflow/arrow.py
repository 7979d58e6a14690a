"""Topic records as Arrow tables: for analytics jobs (``Reading.to_arrow``, ``to_pandas``) and
Parquet export (``tickflow replay``).

One table per event type, one column per Avro field, typed from the contract: decimals as
``decimal128(38, 18)`` (exact: the unscaled integers as they are on the wire), timestamps as
``timestamp[us, UTC]``, enums as dictionary-encoded strings, price levels as
``list<struct<price, size>>``; plus where each record came from: ``topic``, ``partition``,
``offset`` and ``timestamp`` (the Kafka record's, ms), prefixed ``kafka_`` so that no field of
an event can clash with them.

Records are read by the compiled column reader (``_avro_columns.pyx``) straight into Arrow's
buffers, no Python object a value; records of another version of the schema are decoded with
schema resolution and written again in ours first (same columns, slower); without the compiled
extensions every record goes through typed events (same table, much slower).
"""

from __future__ import annotations

from array import array
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import msgspec
import pyarrow as pa

from tickflow import avro_plan
from tickflow.codec import HEADER_SIZE, AvroCodec
from tickflow.consumer import EventConsumer, gc_paused
from tickflow.errors import CodecError
from tickflow.events import Event
from tickflow.schemas import RecordSchema

if TYPE_CHECKING:
    from confluent_kafka import Message

try:
    from tickflow import _avro_columns
except ImportError:  # not built: typed events, converted
    _avro_columns = None  # type: ignore[assignment]

#: Records a type accumulates before they become a record batch (bounded memory per batch, and
#: a string column's 32-bit offsets never near their limit).
BATCH_RECORDS = 65_536

_KAFKA_FIELDS = [
    pa.field("kafka_topic", pa.dictionary(pa.int32(), pa.string()), nullable=False),
    pa.field("kafka_partition", pa.int32(), nullable=False),
    pa.field("kafka_offset", pa.int64(), nullable=False),
    pa.field("kafka_timestamp", pa.timestamp("ms", tz="UTC"), nullable=False),
]
_TIMESTAMPS = {"timestamp-micros": "us", "timestamp-millis": "ms"}


def _arrow_type(node: Any, named: dict[str, Any]) -> tuple[pa.DataType, bool]:
    """The Arrow type of an Avro schema node, and whether it is nullable (``["null", T]``)."""
    nullable = False
    if isinstance(node, list):
        branches = [b for b in node if b != "null"]
        if len(branches) != 1:
            raise TypeError(f"union {node}: only [null, T] maps to one Arrow type")
        nullable, node = len(branches) < len(node), branches[0]
    if isinstance(node, str) and node in named:
        node = named[node]
    kind = node if isinstance(node, str) else node["type"]
    logical = node.get("logicalType") if isinstance(node, dict) else None
    if kind == "bytes" and logical == "decimal":
        return pa.decimal128(int(node["precision"]), int(node.get("scale", 0))), nullable
    if kind in ("long", "int") and logical in _TIMESTAMPS:
        return pa.timestamp(_TIMESTAMPS[logical], tz="UTC"), nullable
    simple = {"string": pa.string(), "bytes": pa.binary(), "long": pa.int64(), "int": pa.int64(), "boolean": pa.bool_()}
    if kind in simple:
        return simple[kind], nullable
    if kind == "enum":
        named.setdefault(node["name"], node)
        named.setdefault(f"{node.get('namespace', 'tickflow')}.{node['name']}", node)
        return pa.dictionary(pa.int32(), pa.string()), nullable
    if kind == "array":
        item, _ = _arrow_type(node["items"], named)
        return pa.list_(pa.field("item", item, nullable=False)), nullable
    if kind == "record":
        named.setdefault(node["name"], node)
        named.setdefault(f"{node.get('namespace', 'tickflow')}.{node['name']}", node)
        return pa.struct(_fields(node, named)), nullable
    raise TypeError(f"Avro type {node} has no Arrow mapping here")


def _fields(record: dict[str, Any], named: dict[str, Any]) -> list[pa.Field]:
    out = []
    for field in record["fields"]:
        arrow, nullable = _arrow_type(field["type"], named)
        out.append(pa.field(field["name"], arrow, nullable=nullable))
    return out


def arrow_schema(record: RecordSchema) -> pa.Schema:
    """The Arrow schema of an event record of the contract, with the ``kafka_`` columns."""
    return pa.schema([*_fields(record.schema, {}), *_KAFKA_FIELDS], metadata={"avro_name": record.fullname})


# --- from the column reader's buffers ------------------------------------------------------------


def _strings(values: list[str]) -> pa.Array:
    """A string array of a few values (enum symbols, topic names), from its buffers: ``pa.array``
    on a Python list imports pandas the first time (0.6 s, within a read) to check for it."""
    data = [value.encode() for value in values]
    offsets, end = array("i", [0]), 0
    for item in data:
        end += len(item)
        offsets.append(end)
    return pa.Array.from_buffers(pa.string(), len(values), [None, pa.py_buffer(offsets), pa.py_buffer(b"".join(data))])


def _array(column: dict[str, Any], arrow: pa.DataType) -> pa.Array:
    n, nulls = column["length"], column["null_count"]
    validity = pa.py_buffer(column["validity"]) if nulls else None
    if pa.types.is_dictionary(arrow):  # an enum: its indexes over its symbols
        indices = pa.Array.from_buffers(pa.int32(), n, [validity, pa.py_buffer(column["values"])], nulls)
        return pa.DictionaryArray.from_arrays(indices, _strings(list(column["symbols"])))
    if pa.types.is_string(arrow) or pa.types.is_binary(arrow):
        out = pa.Array.from_buffers(
            arrow, n, [validity, pa.py_buffer(column["offsets"]), pa.py_buffer(column["values"])], nulls
        )
        if pa.types.is_string(arrow):
            out.validate(full=True)  # the wire's bytes, copied: text that is not UTF-8 stops here
        return out
    if pa.types.is_struct(arrow):
        return _struct(column["children"], arrow, n, validity, nulls)
    if pa.types.is_list(arrow):
        items = _struct(column["children"], arrow.value_type, column["children"][0]["length"], None, 0)
        return pa.Array.from_buffers(arrow, n, [validity, pa.py_buffer(column["offsets"])], nulls, children=[items])
    # Fixed width (longs, timestamps, decimals) and booleans (a bitmap).
    return pa.Array.from_buffers(arrow, n, [validity, pa.py_buffer(column["values"])], nulls)


def _struct(
    children: list[dict[str, Any]], arrow: pa.StructType, n: int, validity: pa.Buffer | None, nulls: int
) -> pa.Array:
    arrays = [_array(child, arrow.field(i).type) for i, child in enumerate(children)]
    return pa.StructArray.from_buffers(arrow, n, [validity], nulls, children=arrays)


class _PyCoordinates:
    """``_avro_columns.Coordinates`` for when the extension is not built."""

    def __init__(self) -> None:
        self.topics: list[str] = []
        self._index: dict[str, int] = {}
        self.topic_ids, self.partitions, self.offsets, self.timestamps = array("i"), array("i"), array("q"), array("q")

    @property
    def length(self) -> int:
        return len(self.offsets)

    def append(self, topic: str, partition: int, offset: int, timestamp_ms: int) -> None:
        self.topic_ids.append(self._index.setdefault(topic, len(self._index)))
        if len(self._index) > len(self.topics):
            self.topics.append(topic)
        self.partitions.append(partition)
        self.offsets.append(offset)
        self.timestamps.append(timestamp_ms)

    def take(self) -> tuple[list[str], bytes, bytes, bytes, bytes]:
        out = (list(self.topics), *(a.tobytes() for a in (self.topic_ids, self.partitions, self.offsets,
                                                           self.timestamps)))  # fmt: skip
        self.topic_ids, self.partitions, self.offsets, self.timestamps = array("i"), array("i"), array("q"), array("q")
        return out  # type: ignore[return-value]


def _kafka_columns(coordinates: tuple[list[str], bytes, bytes, bytes, bytes], n: int) -> list[pa.Array]:
    topics, topic_ids, partitions, offsets, timestamps = coordinates
    fixed = lambda arrow, data: pa.Array.from_buffers(arrow, n, [None, pa.py_buffer(data)])  # noqa: E731
    return [
        pa.DictionaryArray.from_arrays(fixed(pa.int32(), topic_ids), _strings(topics)),
        fixed(pa.int32(), partitions),
        fixed(pa.int64(), offsets),
        fixed(pa.timestamp("ms", tz="UTC"), timestamps),
    ]


class _TypeColumns:
    """The records of one event type read so far: its columns, and the ``kafka_`` columns."""

    def __init__(self, codec: AvroCodec, event_type: type[Event], plan: Any) -> None:
        self.event_type = event_type
        self.schema = arrow_schema(codec.contract[event_type.avro_name])
        compiled = _avro_columns is not None and plan is not None
        self.reader = _avro_columns.ColumnReader(plan) if compiled else None
        self.coordinates = _avro_columns.Coordinates() if compiled else _PyCoordinates()
        # Records of another schema version, decoded then written again in ours: the body only.
        self.rewrite = avro_plan.compiled.Encoder(b"", plan, None) if compiled else None
        self.events: list[Event] = []  # without the compiled reader
        self.batches: list[pa.RecordBatch] = []

    def __len__(self) -> int:
        return self.coordinates.length

    def add(self, payload: bytes, exact: bool, codec: AvroCodec, topic: str, partition: int, offset: int,
            timestamp_ms: int) -> None:  # fmt: skip
        if self.reader is not None:
            if exact:
                self.reader.append(payload, HEADER_SIZE)
            else:
                self.reader.append(self.rewrite(codec.decode(payload)), 0)
        else:
            self.events.append(codec.decode(payload))
        self.coordinates.append(topic, partition, offset, timestamp_ms)

    def flush(self) -> None:
        n = self.coordinates.length
        if not n:
            return
        fields = list(self.schema)[: -len(_KAFKA_FIELDS)]
        if self.reader is not None:
            columns = self.reader.take()
            arrays = [_array(column, field.type) for column, field in zip(columns, fields, strict=True)]
        else:
            rows = [msgspec.to_builtins(e, builtin_types=(Decimal,)) for e in self.events]
            arrays = [pa.array([row[f.name] for row in rows], f.type) for f in fields]
            self.events.clear()
        arrays += _kafka_columns(self.coordinates.take(), n)
        self.batches.append(pa.RecordBatch.from_arrays(arrays, schema=self.schema))

    def table(self) -> pa.Table:
        self.flush()
        return pa.Table.from_batches(self.batches, schema=self.schema)


class ArrowBuilder:
    """Collects records (Confluent-framed Avro payloads with their Kafka coordinates) into one
    Arrow table per event type. A payload that cannot be decoded raises its ``CodecError``
    (nothing of it is kept); the caller decides whether to skip it."""

    def __init__(self, codec: AvroCodec) -> None:
        self.codec = codec
        self._by_schema: dict[int, tuple[_TypeColumns, bool]] = {}
        self._by_type: dict[type[Event], _TypeColumns] = {}
        #: Reads the records of the schema ids it knows (exactly ours) a list at a time, in C.
        self._messages = _avro_columns.MessageReader() if _avro_columns is not None else None

    def read(self, consumer: EventConsumer) -> Iterator[int]:
        """Reads ``consumer``'s range into the tables, a batch at a time, yielding the records each
        batch held (for progress, and for writers that ``drain`` as they read). Undecodable
        records go to ``consumer.skip`` (raised, or counted); the rest count as consumed. The
        cyclic GC is paused meanwhile (``consumer.gc_paused``)."""
        stats = consumer.stats
        with gc_paused():
            for batch in consumer.batches():
                skipped = stats.skipped
                self.add_messages(batch, consumer.skip)
                stats.consumed += len(batch) - (stats.skipped - skipped)
                yield len(batch)

    def add_messages(self, messages: list[Message], on_error: Callable[[Message, CodecError], None]) -> None:
        """Every record of ``messages`` (confluent-kafka's); ``on_error(message, error)`` for
        each one that cannot be decoded (which raises, or counts it: ``EventConsumer.skip``)."""
        i, n = 0, len(messages)
        while i < n:
            if self._messages is not None:
                i = self._messages.add(messages, i)
                if i == n:
                    break
            # A schema id seen for the first time, another version of the schema, or a record
            # that does not parse: the Python path sets up, converts, or raises.
            msg = messages[i]
            try:
                self.add(msg.value(), msg.topic(), msg.partition(), msg.offset(), msg.timestamp()[1])
            except CodecError as exc:
                on_error(msg, exc)
            i += 1
        for columns in self._by_type.values():
            if len(columns) >= BATCH_RECORDS:
                columns.flush()

    def add(self, payload: bytes | None, topic: str, partition: int, offset: int, timestamp_ms: int) -> None:
        if payload is None:
            raise CodecError("record has no value (a tombstone)")
        schema_id = self.codec.schema_id(payload)
        entry = self._by_schema.get(schema_id)
        if entry is None:
            event_type, plan = self.codec.exact_plan(schema_id)
            columns = self._by_type.get(event_type)
            if columns is None:
                own = plan or avro_plan.build_plan(self.codec.contract[event_type.avro_name].schema)
                columns = self._by_type[event_type] = _TypeColumns(self.codec, event_type, own)
            entry = self._by_schema[schema_id] = (columns, plan is not None)
            if self._messages is not None and plan is not None and columns.reader is not None:
                self._messages.use(schema_id, columns.reader, columns.coordinates)
        columns, exact = entry
        columns.add(payload, exact, self.codec, topic, partition, offset, timestamp_ms)
        if len(columns) >= BATCH_RECORDS:
            columns.flush()

    def drain(self, final: bool = False) -> list[tuple[type[Event], pa.RecordBatch]]:
        """The record batches completed so far (``final``: with the records not yet in one),
        handed over: for writers that write as they read (``replay.export_parquet``)."""
        out = []
        for event_type, columns in self._by_type.items():
            if final:
                columns.flush()
            out.extend((event_type, batch) for batch in columns.batches)
            columns.batches.clear()
        return out

    def tables(self) -> dict[type[Event], pa.Table]:
        """Every event type read, with its table."""
        return {event_type: columns.table() for event_type, columns in self._by_type.items()}
