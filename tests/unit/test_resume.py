"""``SourcePositions``: an agent reads each source partition on from exactly what its tables hold."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from faust.types import TP

from processors.resume import SourcePositions, position_key, split_positions

TP0 = TP("tickflow.book", 0)


@dataclass
class Message:
    """A record as ``admit_batch`` reads it: its offset."""

    offset: int


@dataclass
class RecordingConsumer:
    """Stands in for Faust's consumer: the two calls ``SourcePositions`` makes."""

    earliest: int = 0
    seeks: list[tuple[TP, int]] = field(default_factory=list)

    async def earliest_offsets(self, *tps: TP) -> dict[TP, int]:
        return dict.fromkeys(tps, self.earliest)

    async def seek_wait(self, partitions: dict[TP, int]) -> None:
        self.seeks += partitions.items()


@dataclass
class App:
    consumer: RecordingConsumer


def admitted(positions: SourcePositions, offsets: list[int]) -> list[int]:
    async def run() -> list[int]:
        return [o for o in offsets if await positions.admit_offset(TP0, o)]

    return asyncio.run(run())


def test_a_partition_without_a_position_is_applied_from_wherever_it_starts() -> None:
    positions = SourcePositions(App(RecordingConsumer()), "books")
    assert admitted(positions, [40, 41, 42]) == [40, 41, 42]
    assert positions.applied == {TP0: 42}


def test_records_the_tables_already_hold_are_skipped() -> None:
    positions = SourcePositions(App(RecordingConsumer()), "books")
    positions.load({TP0: 10})
    assert admitted(positions, [8, 9, 10, 11, 12]) == [11, 12]
    assert positions.counters["replayed"] == 3


def test_a_resume_past_the_tables_seeks_back_and_skips_what_was_queued_past_it() -> None:
    consumer = RecordingConsumer()
    positions = SourcePositions(App(consumer), "books")
    positions.load({TP0: 10})
    # Faust resumed at 500; 501-502 were already queued; after the seek, 11 onwards arrive.
    assert admitted(positions, [500, 501, 502, 11, 12, 13]) == [11, 12, 13]
    assert consumer.seeks == [(TP0, 11)]
    assert positions.counters["rewinds"] == 1 and positions.counters["skipped_while_rewinding"] == 2
    assert positions.applied[TP0] == 13


def test_a_record_lost_on_the_way_in_is_read_again() -> None:
    consumer = RecordingConsumer()
    positions = SourcePositions(App(consumer), "books")
    assert admitted(positions, [1, 2, 4, 5, 3, 4, 5]) == [1, 2, 3, 4, 5]
    assert consumer.seeks == [(TP0, 3)]


def test_records_gone_from_the_topic_are_counted_as_lost_and_reading_goes_on() -> None:
    consumer = RecordingConsumer(earliest=100)
    positions = SourcePositions(App(consumer), "books")
    positions.load({TP0: 10})
    assert admitted(positions, [100, 101]) == [100, 101]
    assert consumer.seeks == [] and positions.counters["lost"] == 89


def test_partitions_are_independent() -> None:
    consumer = RecordingConsumer()
    positions = SourcePositions(App(consumer), "books")
    other = TP("tickflow.book", 1)
    positions.load({TP0: 5, other: 70})

    async def run() -> list[Any]:
        return [await positions.admit_offset(TP0, 6), await positions.admit_offset(other, 71),
                await positions.admit_offset(other, 70)]  # fmt: skip

    assert asyncio.run(run()) == [True, True, False]


def test_a_batch_is_admitted_whole_when_it_continues_the_tables_and_record_by_record_otherwise() -> None:
    async def run() -> None:
        positions = SourcePositions(App(RecordingConsumer()), "books")
        tp = TP0
        records = [Message(o) for o in (5, 6, 7)]
        assert await positions.admit_batch(tp, records) == records  # no position yet: from wherever it starts
        assert positions.applied[tp] == 7
        again = [Message(o) for o in (6, 7, 8, 9)]
        assert [r.offset for r in await positions.admit_batch(tp, again)] == [8, 9]  # 6, 7 applied already
        assert positions.applied[tp] == 9 and positions.counters["replayed"] == 2

    asyncio.run(run())


def test_a_tables_entries_split_into_the_positions_and_the_rest() -> None:
    other = TP("tickflow.trades", 2)
    entries = [(position_key(TP0), b"41"), (b"binance-spot:BTC-USDT", b"head"), (position_key(other).decode(), "7"),
               ("binance-spot:BTC-USDT|b|65000.01", b"0.5")]  # fmt: skip
    positions, others = split_positions(entries)
    assert positions == {TP0: 41, other: 7}
    assert others == [("binance-spot:BTC-USDT", b"head"), ("binance-spot:BTC-USDT|b|65000.01", b"0.5")]
