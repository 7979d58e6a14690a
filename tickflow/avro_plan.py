"""Write plans for the compiled Avro writer (``tickflow/_hotpath.pyx``).

The compiled writer is optional: where it was not built (no C compiler when installing), or
for a schema shape it does not handle, the codec writes with fastavro instead. Both produce the
same bytes.
"""

from __future__ import annotations

import logging
import typing
from typing import Any

import msgspec

log = logging.getLogger(__name__)

try:
    from tickflow import _hotpath as compiled
except ImportError:  # not built: fastavro does all the writing
    compiled = None
    log.info("compiled Avro writer not available; encoding with fastavro")


class Unsupported(Exception):
    """The schema uses a shape the compiled writer does not handle."""


def _fullname(schema: dict[str, Any], namespace: str) -> str:
    name = schema["name"]
    return name if "." in name else f"{schema.get('namespace', namespace)}.{name}".lstrip(".")


def _struct_positions(struct_type: Any, names: list[str]) -> tuple[int, ...] | None:
    """Where each Avro field sits in ``msgspec.structs.astuple`` of ``struct_type``."""
    if struct_type is None:
        return None
    order = [f.name for f in msgspec.structs.fields(struct_type)]
    if not set(names) <= set(order):
        return None
    return tuple(order.index(n) for n in names)


def _nested_struct(struct_type: Any, field_name: str) -> Any:
    """The msgspec struct type of a record field (or of a list's items), if there is one."""
    if struct_type is None:
        return None
    hint = typing.get_type_hints(struct_type).get(field_name)
    for candidate in (hint, *typing.get_args(hint)):
        if isinstance(candidate, type) and issubclass(candidate, msgspec.Struct):
            return candidate
    return None


def _field(
    name: str, schema: Any, named: dict[str, Any], namespace: str, struct_type: Any, string_arrays: bool = False
) -> tuple[str, int, bool, Any]:
    assert compiled is not None
    nullable = False
    if isinstance(schema, list):
        branches = [b for b in schema if b != "null"]
        if schema[0] != "null" or len(schema) != 2 or len(branches) != 1:
            raise Unsupported(f"union {schema} (only ['null', T] is compiled)")
        nullable, schema = True, branches[0]
    if isinstance(schema, str) and schema in named:
        schema = named[schema]
    kind = schema if isinstance(schema, str) else schema["type"]
    logical = schema.get("logicalType") if isinstance(schema, dict) else None
    if kind == "bytes" and logical == "decimal":
        precision, scale = int(schema["precision"]), int(schema.get("scale", 0))
        if not 0 <= scale <= precision <= 38:
            raise Unsupported(f"decimal({precision}, {scale}) (the compiled writer handles precision <= 38)")
        return name, compiled.KIND_DECIMAL, nullable, (scale, precision)
    simple = {
        "string": compiled.KIND_STRING,
        "bytes": compiled.KIND_BYTES,
        "long": compiled.KIND_LONG,
        "int": compiled.KIND_LONG,  # same zigzag varint on the wire
        "boolean": compiled.KIND_BOOLEAN,
    }
    if kind in simple and logical in (None, "timestamp-micros", "timestamp-millis"):
        return name, simple[kind], nullable, None
    if kind == "enum":
        named[_fullname(schema, namespace)] = schema
        return name, compiled.KIND_ENUM, nullable, {symbol: i for i, symbol in enumerate(schema["symbols"])}
    if kind == "array":
        items = schema["items"]
        if isinstance(items, str) and items in named:
            items = named[items]
        if items == "string" and string_arrays:  # the writer's only (an item plan of None)
            return name, compiled.KIND_ARRAY, nullable, None
        if not (isinstance(items, dict) and items.get("type") == "record"):
            raise Unsupported(f"array of {items} (only arrays of records are compiled)")
        nested = _nested_struct(struct_type, name)
        return name, compiled.KIND_ARRAY, nullable, _record_plan(items, named, namespace, nested, string_arrays)
    if kind == "record":
        nested = _nested_struct(struct_type, name)
        return name, compiled.KIND_RECORD, nullable, _record_plan(schema, named, namespace, nested, string_arrays)
    raise Unsupported(f"field {name}: type {schema}")


def _record_plan(schema: dict[str, Any], named: dict[str, Any], namespace: str, struct_type: Any,
                 string_arrays: bool = False) -> Any:  # fmt: skip
    assert compiled is not None
    fullname = _fullname(schema, namespace)
    named[fullname] = schema
    ns = fullname.rpartition(".")[0]
    fields = [_field(f["name"], f["type"], named, ns, struct_type, string_arrays) for f in schema["fields"]]
    positions = _struct_positions(struct_type, [f[0] for f in fields])
    return compiled.Plan(fullname, fields, struct_type if positions else None, positions)


def key_positions(struct_type: Any) -> tuple[int, ...] | None:
    """Where the event type's ``key_fields`` sit in ``msgspec.structs.astuple`` of it."""
    return _struct_positions(struct_type, list(getattr(struct_type, "key_fields", ()))) or None


def build_plan(schema: dict[str, Any], struct_type: Any = None, *, string_arrays: bool = False) -> Any | None:
    """A compiled write plan for a self-contained record schema, or ``None`` to use fastavro.

    With ``struct_type`` (the msgspec struct the events are), fields are read in one call per
    record instead of one attribute lookup each. ``string_arrays``: arrays of strings too, which
    only the writer handles (the compiled readers plan without it, and leave those to fastavro).
    """
    if compiled is None:
        return None
    try:
        return _record_plan(schema, {}, "", struct_type, string_arrays)
    except Unsupported as exc:
        log.info("schema %s written with fastavro: %s", schema.get("name"), exc)
        return None
