"""What the pre-trade checks read: instrument rules, the best bid/offer, the kill switches.

- Instrument rules (tick, lot, minimum size and notional) come from each venue's REST API at
  start, through the same parser the feeds use.
- The best bid/offer comes from a book-top topic (the order-book agent's validated tops by
  default): a thread follows it from ``bbo_max_age`` ago, so a quiet market still has a quote.
- Kill switches come from the compacted control topic, read from its beginning, then followed:
  the latest record per scope wins. ``*`` stops every account.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from decimal import Decimal

import httpx
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition

from producers.rate_limit import WeightedRateLimiter
from producers.rest import RestClient
from producers.venues import VENUES
from tickflow.codec import AvroCodec
from tickflow.config import KafkaSettings
from tickflow.errors import CodecError, ConfigError
from tickflow.events import BestBidOffer, BookHealth, BookTop, Instrument, KillSwitch

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Quote:
    bid: Decimal | None
    ask: Decimal | None
    #: When we received it (monotonic seconds).
    at: float


class MarketView:
    def __init__(self) -> None:
        self._instruments: dict[tuple[str, str], Instrument] = {}
        self._quotes: dict[tuple[str, str], Quote] = {}
        self._switches: dict[str, KillSwitch] = {}
        self._follower: threading.Thread | None = None
        self._stop = threading.Event()
        #: Set once the control topic was read to its end: no command is checked before that.
        self.switches_loaded = threading.Event()
        #: Records read from the book-top topic (the status shows the follower is alive).
        self.quotes_read = 0

    # --- reading ------------------------------------------------------------------------------

    def instrument(self, venue: str, symbol: str) -> Instrument | None:
        return self._instruments.get((venue, symbol))

    def quote(self, venue: str, symbol: str, max_age: float) -> Quote | None:
        quote = self._quotes.get((venue, symbol))
        if quote is None or time.monotonic() - quote.at > max_age:
            return None
        return quote

    def quote_age(self, venue: str, symbol: str) -> float | None:
        """Seconds since the last quote of ``symbol`` (None: none ever), for rejection messages."""
        quote = self._quotes.get((venue, symbol))
        return None if quote is None else time.monotonic() - quote.at

    def kill_switch(self, account: str) -> KillSwitch | None:
        """The engaged switch that stops ``account`` (its own or the global one), if any."""
        for scope in (account, "*"):
            switch = self._switches.get(scope)
            if switch is not None and switch.engaged:
                return switch
        return None

    # --- feeding ------------------------------------------------------------------------------

    def add_instruments(self, instruments: list[Instrument]) -> None:
        for instrument in instruments:
            self._instruments[(instrument.venue, instrument.symbol)] = instrument

    def set_quote(self, venue: str, symbol: str, bid: Decimal | None, ask: Decimal | None) -> None:
        self._quotes[(venue, symbol)] = Quote(bid, ask, time.monotonic())

    def apply(self, event: object) -> None:
        """One record of the followed topics."""
        if isinstance(event, BookTop | BestBidOffer):
            self.quotes_read += 1
        if isinstance(event, BookTop):
            if event.health is BookHealth.LIVE:
                self.set_quote(event.venue, event.symbol, event.bid_price, event.ask_price)
            else:  # a book that is not LIVE has no price to trust
                self._quotes.pop((event.venue, event.symbol), None)
        elif isinstance(event, BestBidOffer):
            self.set_quote(event.venue, event.symbol, event.bid_price, event.ask_price)
        elif isinstance(event, KillSwitch):
            self._switches[event.scope] = event
            log.warning("kill switch %s for %r: %s (set by %s)", "ENGAGED" if event.engaged else "released",
                        event.scope, event.reason, event.set_by)  # fmt: skip

    def engaged_switches(self) -> list[KillSwitch]:
        return [s for s in self._switches.values() if s.engaged]

    async def load_instruments(self, venue: str, rest_url: str) -> int:
        spec = VENUES.get(venue)
        if spec is None:
            raise ConfigError(f"unknown venue {venue!r}; known: {', '.join(VENUES)}")
        market_data = spec.market_data()
        async with httpx.AsyncClient(timeout=10.0) as http:
            rest = RestClient(http, rest_url, WeightedRateLimiter(market_data.weight_per_minute),
                              used_weight_header=market_data.used_weight_header)  # fmt: skip
            instruments = await market_data.instruments(rest)  # retried until the venue answers
        self.add_instruments(instruments)
        return len(instruments)

    def follow(self, kafka: KafkaSettings, codec: AvroCodec, bbo_topic: str, control_topic: str,
               bbo_lookback: float) -> None:  # fmt: skip
        """Follow the book-top and control topics in a thread until ``close``."""
        consumer = Consumer({**kafka.client_config(), "group.id": "tickflow-router-market", "enable.auto.commit": False,
                             "isolation.level": "read_committed", "enable.partition.eof": True})  # fmt: skip
        assignment: list[TopicPartition] = []
        since = int((time.time() - bbo_lookback) * 1000)
        metadata = consumer.list_topics(timeout=10)
        control_parts = [TopicPartition(control_topic, p, OFFSET_BEGINNING)
                         for p in metadata.topics[control_topic].partitions]  # fmt: skip
        assignment += control_parts
        if bbo_topic in metadata.topics and not metadata.topics[bbo_topic].error:
            by_time = [TopicPartition(bbo_topic, p, since) for p in metadata.topics[bbo_topic].partitions]
            assignment += consumer.offsets_for_times(by_time, timeout=10)
        consumer.assign(assignment)
        control_left = {tp.partition for tp in control_parts}
        if not control_left:
            self.switches_loaded.set()

        def run() -> None:
            try:
                while not self._stop.is_set():
                    msg = consumer.poll(0.2)
                    if msg is None:
                        continue
                    if msg.error():
                        if msg.topic() == control_topic and msg.error().code() == -191:  # _PARTITION_EOF
                            control_left.discard(msg.partition())
                            if not control_left:
                                self.switches_loaded.set()
                        continue
                    try:
                        self.apply(codec.decode(msg.value()))
                    except CodecError as exc:
                        log.warning("skipped an unreadable record of %s: %s", msg.topic(), exc)
            except KafkaException:
                log.exception("the market follower stopped")
            finally:
                consumer.close()

        self._follower = threading.Thread(target=run, name="router-market", daemon=True)
        self._follower.start()

    def close(self) -> None:
        self._stop.set()
        if self._follower is not None:
            self._follower.join(timeout=5)
