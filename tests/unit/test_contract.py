"""The Python event types and the Avro schemas must say the same thing, field by field."""

from __future__ import annotations

import enum
import json
import types
import typing
from decimal import Decimal
from typing import Any

import msgspec
import pytest

from tickflow.events import EVENT_TYPES, MarketEvent
from tickflow.schemas import SCHEMAS_DIR, _expand, load_contract
from tickflow.topics import (
    BBO,
    BOOK,
    DEAD_LETTER,
    KLINES,
    KLINES_DERIVED,
    ORDER_COMMANDS,
    ORDER_EVENTS,
    STATUS,
    TRADES,
    load_topics,
)

CONTRACT = load_contract()
DECIMAL = {"type": "bytes", "logicalType": "decimal", "precision": 38, "scale": 18}


def _named_types(schema: Any, out: dict[str, Any]) -> dict[str, Any]:
    """Full name -> definition of every named type inside an expanded schema."""
    if isinstance(schema, list):
        for branch in schema:
            _named_types(branch, out)
    elif isinstance(schema, dict):
        if schema.get("type") in ("record", "enum", "fixed"):
            ns = schema.get("namespace", "tickflow")
            out.setdefault(f"{ns}.{schema['name']}" if "." not in schema["name"] else schema["name"], schema)
        for value in schema.values():
            _named_types(value, out)
    return out


def _check_type(py: Any, avro: Any, named: dict[str, Any], where: str) -> None:
    """Assert that Python annotation ``py`` matches Avro type ``avro``."""
    origin = typing.get_origin(py)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(py) if a is not type(None)]
        assert isinstance(avro, list) and avro[0] == "null", f"{where}: Optional in Python, not nullable in Avro"
        assert len(args) == 1 and len(avro) == 2, f"{where}: only ['null', T] unions are used"
        _check_type(args[0], avro[1], named, where)
        return
    assert not (isinstance(avro, list)), f"{where}: nullable in Avro ({avro}) but not Optional in Python ({py})"
    if isinstance(avro, str) and avro in named:
        avro = named[avro]
    if py is Decimal:
        assert avro == DECIMAL, f"{where}: a decimal must be bytes/decimal(38,18), got {avro}"
    elif py is str:
        assert avro == "string", f"{where}: str vs {avro}"
    elif py is bool:
        assert avro == "boolean", f"{where}: bool vs {avro}"
    elif py is bytes:
        assert avro == "bytes", f"{where}: bytes vs {avro}"
    elif py is int:
        kind = avro["type"] if isinstance(avro, dict) else avro
        assert kind in ("int", "long"), f"{where}: int vs {avro}"
    elif isinstance(py, type) and issubclass(py, enum.Enum):
        assert isinstance(avro, dict) and avro["type"] == "enum", f"{where}: enum vs {avro}"
        assert [m.value for m in py] == avro["symbols"], f"{where}: enum symbols differ"
    elif origin is list:
        assert isinstance(avro, dict) and avro["type"] == "array", f"{where}: list vs {avro}"
        _check_type(typing.get_args(py)[0], avro["items"], named, f"{where}[]")
    elif isinstance(py, type) and issubclass(py, msgspec.Struct):
        _check_record(py, avro, named, where)
    else:
        pytest.fail(f"{where}: no rule for Python type {py}")


def _check_record(cls: type[msgspec.Struct], schema: dict[str, Any], named: dict[str, Any], where: str) -> None:
    assert schema["type"] == "record", where
    fields = {f.name: f for f in msgspec.structs.fields(cls)}
    avro_fields = {f["name"]: f for f in schema["fields"]}
    assert set(fields) == set(avro_fields), (
        f"{where}: only in Python {sorted(set(fields) - set(avro_fields))}, "
        f"only in Avro {sorted(set(avro_fields) - set(fields))}"
    )
    hints = typing.get_type_hints(cls)
    for name, avro_field in avro_fields.items():
        _check_type(hints[name], avro_field["type"], named, f"{where}.{name}")
        field = fields[name]
        py_default = field.default_factory() if field.default_factory is not msgspec.NODEFAULT else field.default
        if "default" in avro_field:
            expected = avro_field["default"]
            actual = py_default.value if isinstance(py_default, enum.Enum) else py_default
            assert actual == expected, f"{where}.{name}: default {actual!r} in Python, {expected!r} in Avro"
        else:
            assert py_default is msgspec.NODEFAULT, f"{where}.{name}: Python has a default, Avro has none"


@pytest.mark.parametrize("name", sorted(EVENT_TYPES))
def test_event_type_matches_its_schema(name: str) -> None:
    assert name in CONTRACT, f"{name} has a Python type but no schemas/{name}.avsc"
    schema = CONTRACT[name].schema
    _check_record(EVENT_TYPES[name], schema, _named_types(schema, {}), name)


def test_every_schema_has_a_python_type() -> None:
    assert set(CONTRACT) == set(EVENT_TYPES)


def test_every_market_record_carries_the_instrument_and_both_times() -> None:
    header = ["venue", "market", "symbol", "venue_symbol", "exchange_ts", "receive_ts"]
    market = [cls for cls in EVENT_TYPES.values() if issubclass(cls, MarketEvent)]
    assert len(market) == 7
    for cls in market:
        fields = [f["name"] for f in CONTRACT[cls.avro_name].schema["fields"]]
        assert fields[: len(header)] == header, cls.avro_name
        for ts in ("exchange_ts", "receive_ts"):
            field = next(f for f in CONTRACT[cls.avro_name].schema["fields"] if f["name"] == ts)
            t = field["type"][1] if isinstance(field["type"], list) else field["type"]
            assert t == {"type": "long", "logicalType": "timestamp-micros"}, f"{cls.avro_name}.{ts}"


def test_no_binary_floats_anywhere() -> None:
    for name, record in CONTRACT.items():
        text = json.dumps(record.schema)
        assert '"float"' not in text and '"double"' not in text, name


def test_every_topic_record_has_a_schema_and_every_schema_a_topic() -> None:
    topics = load_topics()
    carried = {record for spec in topics.values() for record in spec.records}
    assert carried <= set(CONTRACT), carried - set(CONTRACT)
    assert set(CONTRACT) <= carried, f"records no topic carries: {set(CONTRACT) - carried}"
    for name in (TRADES, BOOK, KLINES, KLINES_DERIVED, BBO, STATUS, ORDER_COMMANDS, ORDER_EVENTS, DEAD_LETTER):
        assert name in topics, f"code refers to {name}, topics.yaml does not define it"


def test_book_topic_carries_reset_markers_in_order_with_updates() -> None:
    assert load_topics()[BOOK].records == ("tickflow.BookUpdate", "tickflow.BookReset")


def test_expanded_schemas_define_each_named_type_once() -> None:
    for name, record in CONTRACT.items():
        definitions: list[str] = []

        def walk(node: Any, definitions: list[str] = definitions) -> None:
            if isinstance(node, dict):
                if node.get("type") in ("record", "enum", "fixed"):
                    definitions.append(node["name"])
                for value in node.values():
                    walk(value)
            elif isinstance(node, list):
                for value in node:
                    walk(value)

        walk(record.schema)
        assert len(definitions) == len(set(definitions)), f"{name} defines a type twice: {definitions}"


def test_unknown_type_reference_is_a_clear_error() -> None:
    from tickflow.errors import SchemaError

    with pytest.raises(SchemaError, match="unknown type 'tickflow.Nope'"):
        _expand(
            {"type": "record", "name": "X", "fields": [{"name": "a", "type": "tickflow.Nope"}]}, {}, set(), SCHEMAS_DIR
        )


def test_kline_revision_is_a_backward_compatible_addition() -> None:
    """Klines written before ``revision`` existed (the venues' on the topic) read as revision 0."""
    import io

    import fastavro

    new = CONTRACT["tickflow.Kline"].schema
    old = {**new, "fields": [f for f in new["fields"] if f["name"] != "revision"]}
    assert [f for f in new["fields"] if f["name"] == "revision"] == [
        {
            "name": "revision",
            "type": "long",
            "default": 0,
            "doc": next(f["doc"] for f in new["fields"] if f["name"] == "revision"),
        }
    ]
    record = {"venue": "binance-spot", "market": "SPOT", "symbol": "BTC-USDT", "venue_symbol": "BTCUSDT",
              "exchange_ts": 1, "receive_ts": 2, "interval": "1m", "open_time": 0, "close_time": 60_000_000,
              "open": Decimal("1"), "high": Decimal("2"), "low": Decimal("1"), "close": Decimal("2"),
              "volume": Decimal("3"), "closed": True}  # fmt: skip
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, fastavro.parse_schema(old), record)
    buffer.seek(0)
    read = fastavro.schemaless_reader(buffer, fastavro.parse_schema(old), fastavro.parse_schema(new))
    assert read["revision"] == 0 and read["volume"] == Decimal("3")
