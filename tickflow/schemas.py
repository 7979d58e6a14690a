"""The event contract: loads the Avro schemas in ``schemas/``.

``schemas/tickflow.<Name>.avsc`` holds one top-level record each; ``schemas/types/`` holds the
named types they share (enums, ``PriceLevel``), referenced by full name. Loading expands each
record into one self-contained schema (every named type defined at its first use), which is
what gets registered: any Confluent deserializer and any Avro library reads it with no
tickflow code and no schema references.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import fastavro

from tickflow.errors import SchemaError

SCHEMAS_DIR = Path(os.environ.get("TICKFLOW_SCHEMAS_DIR", Path(__file__).resolve().parent.parent / "schemas"))

_PRIMITIVES = {"null", "boolean", "int", "long", "float", "double", "bytes", "string"}


@dataclass(frozen=True)
class RecordSchema:
    """One top-level event record of the contract."""

    fullname: str
    #: Self-contained schema as JSON-ready data (what is registered).
    schema: dict[str, Any]
    #: ``schema`` parsed by fastavro, for encoding and decoding.
    parsed: dict[str, Any]
    path: Path

    @property
    def schema_str(self) -> str:
        return json.dumps(self.schema, separators=(",", ":"))


def _load_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise SchemaError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict) or "name" not in data:
        raise SchemaError(f"{path} must hold one named Avro type")
    return data


def _fullname(schema: dict[str, Any]) -> str:
    name = schema["name"]
    return name if "." in name else f"{schema.get('namespace', '')}.{name}".lstrip(".")


def _expand(node: Any, named: dict[str, dict[str, Any]], defined: set[str], where: Path) -> Any:
    """Inline the shared named types, each defined once (at first use) and referenced after."""
    if isinstance(node, str):
        if node in _PRIMITIVES or node in defined:
            return node
        if node not in named:
            raise SchemaError(f"{where}: unknown type {node!r} (not a primitive, not in schemas/types/)")
        defined.add(node)
        return _expand(named[node], named, defined, where)
    if isinstance(node, list):
        return [_expand(branch, named, defined, where) for branch in node]
    if isinstance(node, dict):
        out = dict(node)
        kind = node.get("type")
        if kind in ("record", "enum", "fixed"):
            defined.add(_fullname(node))
        if kind == "record":
            out["fields"] = [
                {**field, "type": _expand(field["type"], named, defined, where)} for field in node["fields"]
            ]
        elif kind == "array":
            out["items"] = _expand(node["items"], named, defined, where)
        elif kind == "map":
            out["values"] = _expand(node["values"], named, defined, where)
        elif isinstance(kind, (dict, list)) or (isinstance(kind, str) and kind not in _PRIMITIVES | {"enum", "fixed"}):
            out["type"] = _expand(kind, named, defined, where)
        return out
    raise SchemaError(f"{where}: unexpected schema node {node!r}")


@cache
def load_contract(directory: Path = SCHEMAS_DIR) -> dict[str, RecordSchema]:
    """Every top-level record in ``directory``, by full name (``tickflow.Trade``)."""
    if not directory.is_dir():
        raise SchemaError(f"schema directory not found: {directory}")
    named = {}
    for path in sorted((directory / "types").glob("*.avsc")):
        data = _load_json(path)
        named[_fullname(data)] = data
    records: dict[str, RecordSchema] = {}
    for path in sorted(directory.glob("*.avsc")):
        data = _load_json(path)
        fullname = _fullname(data)
        if path.name != f"{fullname}.avsc":
            raise SchemaError(f"{path} defines {fullname}; name the file {fullname}.avsc")
        expanded = _expand(data, named, set(), path)
        try:
            parsed = fastavro.parse_schema(expanded)
        except Exception as exc:  # fastavro raises several unrelated types for bad schemas
            raise SchemaError(f"{path}: invalid Avro schema: {exc}") from exc
        records[fullname] = RecordSchema(fullname, expanded, parsed, path)
    return records


def record_schema(fullname: str) -> RecordSchema:
    try:
        return load_contract()[fullname]
    except KeyError:
        raise SchemaError(f"no schema {fullname!r} in {SCHEMAS_DIR}") from None
