"""Topic definitions, read from the one declarative file ``infra/topics.yaml``."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from tickflow.errors import ConfigError

TOPICS_FILE = Path(__file__).resolve().parent.parent / "infra" / "topics.yaml"

# The topic names code refers to; topics.yaml must define each of them (a test checks).
TRADES = "tickflow.trades"
BOOK = "tickflow.book"
KLINES = "tickflow.klines"
BBO = "tickflow.bbo"
#: Derived by the order-book agent (processors/): its validated best bid/offer and top-N depth.
BOOK_BBO = "tickflow.book.bbo"
BOOK_DEPTH = "tickflow.book.depth"
#: Derived by the kline agent (processors/) from the trades; never mixed with the venues' klines.
KLINES_DERIVED = "tickflow.klines.derived"
STATUS = "tickflow.status"
INSTRUMENTS = "tickflow.instruments"
ORDER_COMMANDS = "tickflow.orders.commands"
ORDER_EVENTS = "tickflow.orders.events"
ORDER_CONTROL = "tickflow.orders.control"
ORDER_STATE = "tickflow.orders.state"
BALANCES = "tickflow.balances"
DEAD_LETTER = "tickflow.dead-letter"


def raw_topic(venue: str) -> str:
    """The raw-frame topic of one venue."""
    return f"tickflow.raw.{venue}"


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    #: ``None``: the cluster's ``default.replication.factor``.
    replication_factor: int | None
    config: dict[str, str] = field(default_factory=dict)
    #: Full names of the Avro records the topic carries.
    records: tuple[str, ...] = ()


@cache
def load_topics(path: Path = TOPICS_FILE) -> dict[str, TopicSpec]:
    try:
        doc: dict[str, Any] = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read topic definitions {path}: {exc}") from exc
    defaults = doc.get("defaults", {})
    specs: dict[str, TopicSpec] = {}
    for name, body in (doc.get("topics") or {}).items():
        body = body or {}
        unknown = set(body) - {"partitions", "replication_factor", "config", "records"}
        if unknown:
            raise ConfigError(f"{path}: topic {name} has unknown keys {sorted(unknown)}")
        config = {**defaults.get("config", {}), **body.get("config", {})}
        specs[name] = TopicSpec(
            name=name,
            partitions=int(body.get("partitions", defaults.get("partitions", 1))),
            replication_factor=body.get("replication_factor", defaults.get("replication_factor")),
            config={k: str(v) for k, v in config.items()},
            records=tuple(body.get("records", ())),
        )
    return specs
