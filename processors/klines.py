"""The kline agent: ``tickflow.trades`` in, klines per interval in event time out on
``tickflow.klines.derived``; the venues' klines (``tickflow.klines``) in for the cross-check.

One agent reads both topics, so Faust assigns their partitions together (same key, same
partition count: an instrument's trades and venue klines reach the same worker) and every table
write belongs to the instrument's partition. Records are applied in partition order by
``InstrumentWindows`` (``kline.py``), a partition's fetched records at a time (a ``RecordBatch``,
``consumer.py``; trades read as ``TradeRecord``, ``kline_records.py``); what they changed is
written to the tables (``kline_state.py``, through a ``changelog.TableWriter``: each head once
per write) by group commit (``group_commit.py``: one write in flight while the next records are
applied, as the book agent). Outputs:

- ``Kline`` with ``closed=True`` once per window when the watermark passes its close time;
  again with ``revision`` n > 0 after a late trade (a correction); with ``closed=False`` at most
  every ``kline_updates`` seconds of event time per window if that is set;
- ``DeadLetter`` for a record that cannot be decoded, is of the wrong type, is impossible (price
  or size not above zero), or is a trade older than the correction horizon.

Exactly once across a crash (``kill -9``; Faust at-least-once, the records since the tables'
position read again): a batch's klines are published, and their delivery awaited, *before* the
table writes that say they were published; so a crash leaves either a kline published but not recorded (read
again, the trades emit it again) or neither, never a window recorded as published but lost.
The first case is recognised: after the tables are recovered, the agent reads back what the
derived topic received in the last ``kline_published_lookback`` seconds, and a closed kline
already there (same instrument, interval, open time and revision) is not published again.

A quiet instrument's windows close on its partition's time: the latest exchange time of any
trade on that partition, less ``kline_idle_close``, swept when that time enters a new second.
Not a wall-clock timer, by choice: Faust tables can be written only while a record of their
partition is processed, and a kline published by a timer without its state written would be
published again after a restart. The cost: if a whole partition goes quiet, its last windows
close with its next trade.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from typing import Any

import faust
from faust.types import TP

from processors.changelog import TableWriter
from processors.codec import AvroSerializer, Undecodable
from processors.crosscheck import CrossCheck
from processors.group_commit import GroupCommit
from processors.kline import InstrumentKlines, InstrumentWindows, KlineConfig, Outcome
from processors.kline_records import (
    CONSUMER,
    TradeRecord,
    derived_kline,
    implausible_kline,
    implausible_trade,
    tick,
    trade_reader,
)
from processors.kline_state import KlineState
from processors.outputs import dead_letter
from processors.settings import ProcessorSettings
from tickflow.codec import AvroCodec
from tickflow.config import KafkaSettings
from tickflow.consumer import EventConsumer, StartAt
from tickflow.events import Event, Kline, MarketEvent, MarketType

log = logging.getLogger(__name__)
_SECOND = 1_000_000


class KlineAgent:
    """Declares the agent, its tables, topics and web view on a Faust app."""

    def __init__(self, app: faust.App, codec: AvroCodec, settings: ProcessorSettings, kafka: KafkaSettings) -> None:
        self.app = app
        self.settings = settings
        self.codec = codec
        self.read = trade_reader(codec)  # trades as TradeRecord, the venue klines as Kline
        self.kafka = kafka
        #: Closed klines the derived topic already holds (read back after recovery): not again.
        self.published: set[tuple[str, str, int, int]] = set()
        self.config = KlineConfig.of(settings.kline_intervals, settings.kline_grace, settings.kline_idle_close,
                                     settings.kline_correction_horizon, settings.kline_updates)  # fmt: skip
        sources = {"trades": settings.trade_topic, "klines": settings.kline_topic}
        self.writer = TableWriter(app)
        self.state = KlineState(app, settings.store, settings.changelog_partitions(), self.config, sources,
                                self.writer)  # fmt: skip
        # Delivered a partition's fetched records at a time, undecoded (``consumer.RecordBatch``).
        self.source = app.topic(settings.trade_topic, settings.kline_topic, key_serializer="raw",
                                value_serializer="raw")  # fmt: skip
        app.batch_topics.update((settings.trade_topic, settings.kline_topic))  # type: ignore[attr-defined]
        #: Deliveries of the batch's dead letters: awaited before its tables are written.
        self._sent: list[Any] = []
        self.derived = self._output(codec, settings.derived_kline_topic)  # written through ``writer.send``
        self.dead_letters = self._output(codec, settings.dead_letter_topic)
        self.crosscheck = CrossCheck()
        #: Per partition: its time swept last (whole seconds), for closing quiet instruments.
        self._swept: dict[int, int] = defaultdict(int)
        self.counters = {"records": 0, "dead_letters": 0, "klines": 0, "corrections": 0, "updates": 0,
                         "already_published": 0}  # fmt: skip
        self.state.heads.on_recover(self.read_published)
        self.commit = GroupCommit("klines", self.writer, self.state.positions, self.apply, self.prepare_write,
                                  settings.batch_max, settings.batch_wait)  # fmt: skip
        app.agent_settlers.append(self.commit.settle)  # type: ignore[attr-defined]
        app.source_positions.append(self.state.positions)  # type: ignore[attr-defined]
        app.agent(self.source, name="klines")(self.commit.run)
        from processors.kline_web import register_kline_views

        register_kline_views(app, self)

    def _output(self, codec: AvroCodec, topic: str) -> Any:
        return self.app.topic(topic, key_serializer="raw", value_serializer=AvroSerializer(codec, topic))

    async def apply(self, tp: TP, records: list[Any]) -> None:
        """Apply records of ``tp`` the tables do not hold yet (``GroupCommit`` admits them); what
        they did is written by ``prepare_write`` and the group commit (``group_commit.py``)."""
        read = self.read
        for record in records:
            await self.on_record(record, read(record.value))

    async def prepare_write(self, touched: set[TP]) -> None:
        """A write's first half: the klines and dead letters of the records applied since the
        last write delivered, *then* their tables staged (closed windows, heads, the positions of
        ``touched``): the tables never say a kline was published that is not in its topic (see
        the module's docstring). Klines go a batch at a time (``TableWriter``)."""
        sent, self._sent = self._sent, []
        if sent:
            await asyncio.gather(*sent)
        await self.writer.deliver_outputs()
        self.state.write_heads()
        self.state.write_positions(touched)

    async def on_record(self, record: Any, value: object) -> None:
        """Apply one record (aiokafka's: ``topic``, ``partition``, ``offset``, ``key``, ``value``)."""
        self.counters["records"] += 1
        trades = record.topic == self.settings.trade_topic
        if isinstance(value, Undecodable):
            await self._dead_letter(record, value.error_type, value.reason)
            return
        expected = TradeRecord if trades else Kline
        if not isinstance(value, expected):
            kind = type(value).__name__ if isinstance(value, Event) else repr(type(value))
            await self._dead_letter(record, "UnexpectedRecord", f"{kind} on {record.topic}")
            return
        problem = implausible_trade(value) if isinstance(value, TradeRecord) else implausible_kline(value)
        if problem is not None:
            await self._dead_letter(record, "ImplausibleRecord", problem)
            return
        instrument = value.key
        windows = self._windows(instrument, value)
        windows.mark("trades" if trades else "klines", record.partition, record.offset)
        if isinstance(value, TradeRecord):
            outcome = windows.trade(tick(value))
            if outcome.skipped == "expired":
                await self._dead_letter(record, "LateTrade", "older than the correction horizon "
                                        f"({self.settings.kline_correction_horizon} s past the watermark)")  # fmt: skip
            await self._apply(instrument, windows, outcome)
            await self._sweep(record.partition, windows.head.max_ts)
        else:
            self.crosscheck.venue(instrument, windows, value)
            self.state.write(instrument, windows, Outcome(head_changed=True))

    def _windows(self, instrument: str, event: TradeRecord | MarketEvent) -> InstrumentWindows:
        windows = self.state.get(instrument)
        if windows is None:
            head = InstrumentKlines(venue=event.venue, market=MarketType(event.market), symbol=event.symbol,
                                    venue_symbol=event.venue_symbol)  # fmt: skip
            windows = InstrumentWindows(head, self.config)
            self.state.add(instrument, windows)
        return windows

    async def _apply(self, instrument: str, windows: InstrumentWindows, outcome: Outcome) -> None:
        """Publish what ``outcome`` emitted, settle the cross-check, write the tables."""
        corrected = []
        for emitted in outcome.emitted:
            kline = derived_kline(windows.head, emitted)
            identity = (instrument, kline.interval, kline.open_time, kline.revision)
            if kline.closed and identity in self.published:
                self.counters["already_published"] += 1  # published before a crash, recorded only now
                continue
            topic = self.settings.derived_kline_topic
            self.writer.send(topic, instrument.encode(), self.codec.encode(kline, topic))
            if not emitted.closed:
                self.counters["updates"] += 1
            elif kline.revision:
                self.counters["corrections"] += 1
                corrected.append((kline.interval, kline.open_time))
            else:
                self.counters["klines"] += 1
        if outcome.emitted or corrected:
            outcome.head_changed |= self.crosscheck.settle(instrument, windows, corrected)
        self.state.write(instrument, windows, outcome)

    async def read_published(self) -> None:
        """Read back the closed klines the derived topic received lately (after table recovery)."""
        lookback_ms = int(self.settings.kline_published_lookback * 1000)
        since = int(time.time() * 1000) - lookback_ms
        try:
            self.published = await asyncio.to_thread(self._published_since, since)
        except Exception:
            log.exception("could not read back the derived klines: a kline published just before a crash "
                          "may be published again")  # fmt: skip
            return
        log.info("%d closed klines published in the last %ss read back", len(self.published),
                 self.settings.kline_published_lookback)  # fmt: skip

    def _published_since(self, since_ms: int) -> set[tuple[str, str, int, int]]:
        topic = self.settings.derived_kline_topic
        with EventConsumer(self.kafka, self.codec, [topic], StartAt.at_timestamp(since_ms), on_error="skip") as reader:
            return {(k.key, k.interval, k.open_time, k.revision) for m in reader.read_to_end()
                    if isinstance(k := m.event, Kline) and k.closed}  # fmt: skip

    async def _sweep(self, partition: int, max_ts: int) -> None:
        """Close the windows of the partition's quiet instruments, once per second of its time."""
        second = max_ts // _SECOND
        if second <= self._swept[partition]:
            return
        self._swept[partition] = second
        watermark = max_ts - self.config.idle_us
        for instrument, windows in list(self.state.instruments.items()):
            head = windows.head
            if head.partition == partition and head.watermark < watermark and head.max_ts < watermark:
                await self._apply(instrument, windows, windows.advance(watermark))

    async def _dead_letter(self, message: Any, error_type: str, reason: str) -> None:
        self.counters["dead_letters"] += 1
        where = f"{message.topic}[{message.partition}]@{message.offset}"
        log.warning("dead letter %s: %s: %s", where, error_type, reason)
        record = dead_letter(message.topic, message.partition, message.offset, message.key, message.value,
                             error_type, reason, CONSUMER)  # fmt: skip
        self._sent.append(await self.dead_letters.send(key=message.topic.encode(), value=record))
