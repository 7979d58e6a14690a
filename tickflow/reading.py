"""``tickflow.consume``: the topics' events for analytics jobs, as typed events or as Arrow and
pandas tables.

    import tickflow
    from datetime import datetime, UTC

    with tickflow.consume("tickflow.trades", start=datetime(2026, 11, 22, 9, tzinfo=UTC),
                          end=datetime(2026, 11, 22, 10, tzinfo=UTC), symbols=["BTC-USDT"]) as trades:
        table = trades.to_arrow()          # or: for record in trades: record.event ...

It reads any Kafka cluster with a Confluent-compatible schema registry (settings as for every
tickflow process: ``TICKFLOW_KAFKA__BOOTSTRAP_SERVERS``, ``TICKFLOW_REGISTRY__URL``, a config file,
or the arguments here), from any position to any end; see ``tickflow/consumer.py`` for how
offsets and timestamps delimit a range.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from tickflow.codec import AvroCodec
from tickflow.config import Settings, load_settings
from tickflow.consumer import ConsumedEvent, EndAt, EventConsumer, StartAt
from tickflow.errors import TickflowError
from tickflow.events import EVENT_TYPES, Event
from tickflow.registry import SchemaRegistry

if TYPE_CHECKING:
    import pandas
    import pyarrow

#: Where to start: ``"beginning"``, ``"end"``, an offset (every partition) or a mapping
#: partition -> offset, a ``datetime`` (aware, or taken as UTC), or a ``StartAt``.
Start = StartAt | Literal["beginning", "end"] | int | dict[int, int] | datetime
#: Where to stop (excluded): ``"now"`` (the end offsets when reading starts), ``None`` (never),
#: an offset or a mapping partition -> offset, a ``datetime``, or an ``EndAt``.
End = EndAt | Literal["now"] | int | dict[int, int] | datetime | None


class UnboundedRead(TickflowError):
    """A table was asked for a read that never ends: give ``end``."""


def _ms(moment: datetime) -> int:
    if moment.tzinfo is None:
        raise ValueError(f"{moment} has no time zone: give an aware datetime (e.g. tzinfo=UTC)")
    return int(moment.timestamp() * 1000)


def start_at(start: Start) -> StartAt:
    if isinstance(start, StartAt):
        return start
    if start == "beginning":
        return StartAt.beginning()
    if start == "end":
        return StartAt.end()
    if isinstance(start, datetime):
        return StartAt.at_timestamp(_ms(start))
    if isinstance(start, int | dict):
        return StartAt.at_offset(start)
    raise ValueError(f"start={start!r}: give 'beginning', 'end', an offset, a datetime or a StartAt")


def end_at(end: End) -> EndAt:
    if isinstance(end, EndAt):
        return end
    if end is None:
        return EndAt.never()
    if end == "now":
        return EndAt.now()
    if isinstance(end, datetime):
        return EndAt.at_timestamp(_ms(end))
    if isinstance(end, int | dict):
        return EndAt.at_offset(end)
    raise ValueError(f"end={end!r}: give 'now', None, an offset, a datetime or an EndAt")


class Reading:
    """An open read of one or more topics (``consume``): iterate it for ``ConsumedEvent``s, or
    take the range as tables. Close it (or use ``with``) when done."""

    def __init__(self, consumer: EventConsumer, registry: SchemaRegistry) -> None:
        self.consumer = consumer
        self._registry = registry

    def __iter__(self) -> Iterator[ConsumedEvent]:
        return iter(self.consumer)

    def events(self) -> Iterator[Event]:
        """The events alone."""
        for record in self.consumer:
            yield record.event

    def tables(self) -> dict[str, pyarrow.Table]:
        """The whole range as Arrow tables, one per event type read (keyed by its name, e.g.
        ``"Trade"``): a column per field, typed from the schemas (``tickflow/arrow.py``), and the
        records' ``kafka_topic``, ``kafka_partition``, ``kafka_offset``, ``kafka_timestamp``."""
        from tickflow.arrow import ArrowBuilder

        if not self.consumer.bounded:
            raise UnboundedRead("this read has no end (end=None): give end='now', an offset or a datetime")
        builder = ArrowBuilder(self.consumer.codec)
        for _ in builder.read(self.consumer):
            pass
        return {event_type.__name__: table for event_type, table in builder.tables().items()}

    def to_arrow(self, event_type: str | type[Event] | None = None) -> pyarrow.Table:
        """The range as one Arrow table: of ``event_type`` (a name such as ``"Trade"``, or the
        class), or of the one event type the range holds (more than one: say which)."""
        import pyarrow as pa

        from tickflow.arrow import arrow_schema

        tables = self.tables()
        name = event_type if isinstance(event_type, str | None) else event_type.__name__
        if name is None:
            if len(tables) > 1:
                raise TickflowError(f"the range holds {sorted(tables)}: say which (event_type=...)")
            if not tables:
                raise TickflowError("the range holds no records: name the event type for an empty table")
            return next(iter(tables.values()))
        if name not in tables:
            known = {t.__name__: t for t in EVENT_TYPES.values()}
            if name not in known:
                raise TickflowError(f"no event type {name!r}; there are {sorted(known)}")
            schema = arrow_schema(self.consumer.codec.contract[known[name].avro_name])
            return pa.Table.from_batches([], schema=schema)
        return tables[name]

    def to_pandas(self, event_type: str | type[Event] | None = None) -> pandas.DataFrame:
        """``to_arrow`` as a DataFrame: decimals stay ``Decimal`` (exact), timestamps are UTC."""
        return self.to_arrow(event_type).to_pandas()

    def close(self) -> None:
        self.consumer.close()
        self._registry.close()

    def __enter__(self) -> Reading:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def consume(
    topics: str | list[str],
    *,
    start: Start = "beginning",
    end: End = "now",
    symbols: list[str] | None = None,
    partitions: list[int] | None = None,
    on_error: Literal["raise", "skip"] = "raise",
    bootstrap_servers: str | None = None,
    registry_url: str | None = None,
    settings: Settings | None = None,
    config: str | Path | None = None,
    consumer_config: dict[str, Any] | None = None,
) -> Reading:
    """Open a read of ``topics`` from ``start`` to ``end`` (default: everything there is now).

    ``symbols``: only those instruments (``"BTC-USDT"``, or ``"binance-spot:BTC-USDT"`` for one
    venue). ``on_error="skip"``: records that cannot be decoded are counted
    (``reading.consumer.stats``) and skipped instead of raising. The cluster and registry come
    from ``settings``, else the config file ``config`` and the environment, with
    ``bootstrap_servers`` and ``registry_url`` over them. Raises ``UnknownTopic`` (naming the
    topics there are), ``OffsetOutOfRange`` (saying what the topic holds), ``BrokerUnavailable``.
    """
    settings = settings or load_settings(config)
    kafka, registry_settings = settings.kafka, settings.registry
    if bootstrap_servers is not None:
        kafka = kafka.model_copy(update={"bootstrap_servers": bootstrap_servers})
    if registry_url is not None:
        registry_settings = registry_settings.model_copy(update={"url": registry_url})
    registry = SchemaRegistry(registry_settings)
    try:
        consumer = EventConsumer(
            kafka,
            AvroCodec(registry),
            [topics] if isinstance(topics, str) else list(topics),
            start_at(start),
            end=end_at(end),
            partitions=partitions,
            symbols=symbols,
            on_error=on_error,
            config=consumer_config,
        )
    except BaseException:
        registry.close()
        raise
    return Reading(consumer, registry)
