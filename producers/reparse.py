"""Re-parsing a raw-frame topic through the current normalizers (``tickflow replay --reparse``).

A producer run with ``capture_raw`` writes every WebSocket frame, unchanged, to its venue's raw
topic (``tickflow.raw.<venue>``: ``RawFrame``, with the time it was received). Reading a range of
it back through today's parser, bridge rules and book synchronisation publishes what today's
producer would have published then, into fresh topics: each normalized topic under a prefix
(``tickflow.book`` -> ``<prefix>tickflow.book``), created like the original if missing. Events
keep the frames' receive times, so a re-parse with unchanged normalizers reproduces the
original topics' books, trades, best bid/offer and klines record for record. Each connection
is re-parsed on its own, as live, and a reconnect (a new ``connection_number`` in the frames)
resets its books as it did live; those resets are timed at the new connection's first frame,
and the producer's status changes are not reproduced.

What a raw-frame topic cannot give back: REST responses. Venues whose books start from a REST
snapshot (Binance) have no snapshot to start from, so their books are not re-published (their
deltas are counted as ``waiting_for_snapshot``); their trades, best bid/offer and klines are.
Venues whose snapshots come in the stream (Coinbase) are re-parsed whole. Capturing REST
responses in the raw topic too (a ``RawFrame`` field saying which request it answers) would
lift this.

Two passes over the range: the first finds each venue's symbols in the frames (as ``tickflow
capture check`` does), the second parses.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from producers.stream import reconnect_detail
from producers.venues import VENUES
from tickflow.consumer import EventConsumer
from tickflow.errors import ConfigError
from tickflow.events import BookResetReason, Event, RawFrame
from tickflow.producer import EventProducer

#: A fresh consumer of the same range (the re-parse reads it twice).
OpenRange = Callable[[], EventConsumer]


@dataclass
class ReparseResult:
    frames: int = 0
    #: Events published, by target topic.
    published: Counter[str] = field(default_factory=Counter)
    #: Per venue: its symbols, and book deltas left waiting for a snapshot the topic cannot give
    #: (those held at the end: a book that was live before a reconnect counts only what came after).
    symbols: dict[str, list[str]] = field(default_factory=dict)
    waiting_for_snapshot: Counter[str] = field(default_factory=Counter)
    malformed_frames: int = 0
    seconds: float = 0.0


class _PrefixSink:
    """The feed's sink: every event to ``prefix + topic``, except raw frames (not copied again)."""

    def __init__(self, producer: EventProducer, prefix: str, result: ReparseResult,
                 ensure: Callable[[str, str], None]) -> None:  # fmt: skip
        self.producer, self.prefix, self.result, self.ensure = producer, prefix, result, ensure
        self._targets: dict[str, str] = {}

    def send(self, topic: str, event: Event) -> None:
        if isinstance(event, RawFrame):
            return
        target = self._targets.get(topic)
        if target is None:
            target = self._targets[topic] = self.prefix + topic
            self.ensure(topic, target)
        self.producer.send(target, event)
        self.result.published[target] += 1


@dataclass
class _Connection:
    """A connection's stream, and the number of the WebSocket whose frames it reads."""

    stream: Any
    number: int = 0


def find_symbols(open_range: OpenRange) -> dict[tuple[str, str], list[str]]:
    """Each connection's symbols (by venue and connection id), from its frames in the range."""
    found: dict[tuple[str, str], set[str]] = {}
    with open_range() as consumer:
        for batch in consumer.batches():
            texts: dict[tuple[str, str], list[str]] = {}
            for message in batch:
                event = consumer.codec.decode(message.value())
                if isinstance(event, RawFrame):
                    texts.setdefault((event.venue, event.connection_id), []).append(event.payload)
            for (venue, connection), frames in texts.items():
                if venue not in VENUES:
                    raise ConfigError(f"frames of venue {venue!r}, which has no normalizer; known: {sorted(VENUES)}")
                symbols = _market_data(venue).capture_symbols("", frames)
                found.setdefault((venue, connection), set()).update(symbols)
    return {where: sorted(symbols) for where, symbols in found.items()}


@cache
def _market_data(venue: str) -> Any:
    return VENUES[venue].market_data()


def reparse(
    open_range: OpenRange,
    producer: EventProducer,
    prefix: str,
    ensure: Callable[[str, str], None],
    progress: Callable[[int], None] | None = None,
) -> ReparseResult:
    """The range's frames through the current normalizers into ``prefix``-ed topics;
    ``ensure(original, target)`` makes sure a target topic exists before its first event."""
    if not prefix:
        raise ConfigError("a re-parse needs a prefix for its topics (they must not be the originals)")
    result = ReparseResult()
    started = time.monotonic()
    symbols = find_symbols(open_range)
    for (venue, _), names in symbols.items():
        result.symbols[venue] = sorted({*result.symbols.get(venue, []), *names})
    sink = _PrefixSink(producer, prefix, result, ensure)
    # One stream per connection, as live: each numbers its messages itself (Coinbase's
    # ``sequence_num``), and a reconnect (a new ``connection_number``) restarts its books.
    streams: dict[tuple[str, str], _Connection] = {}
    for (venue, connection), names in symbols.items():
        stream = _market_data(venue).make_stream(names, sink, lambda symbol: None, {})
        streams[(venue, connection)] = _Connection(stream)
    with open_range() as consumer:
        for record in consumer:
            frame = record.event
            if not isinstance(frame, RawFrame):
                continue
            connection = streams[(frame.venue, frame.connection_id)]
            if frame.connection_number != connection.number:
                connection.number = frame.connection_number
                connection.stream.invalidate(BookResetReason.RECONNECT, reconnect_detail(frame.connection_number),
                                             frame.receive_ts)  # fmt: skip
            connection.stream.on_frame(frame.payload.encode(), frame.receive_ts)
            result.frames += 1
            if progress is not None and result.frames % 1000 == 0:
                progress(result.frames)
    for (venue, _), connection in streams.items():
        result.malformed_frames += connection.stream.counters.malformed_frames
        for sync in connection.stream.syncs.values():
            if sync.state.value != "live" and sync.buffered:  # deltas the topic has no snapshot for
                result.waiting_for_snapshot[venue] += sync.buffered
    producer.flush(60)
    result.seconds = time.monotonic() - started
    return result
