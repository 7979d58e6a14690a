"""Produce benchmark: codec + EventProducer versus raw confluent_kafka, into the real local broker.

What it measures (records per second, median of ``--rounds`` rounds; each timing runs from the
first produce call to the end of flush, i.e. every record acknowledged by the broker):

* ``send``: ``EventProducer.send(topic, event)`` for a list of pre-built, already-normalized
  ``Trade`` events (``--events``, default 200k, over ``--instruments`` instruments so keys differ):
  AvroCodec encoding + keying + EventProducer's produce loop.
* ``raw``: a bare ``confluent_kafka.Producer`` with the same configuration
  (``tickflow.producer.DEFAULT_PRODUCER_CONFIG`` plus the bootstrap/security settings) producing
  the same pre-encoded value bytes and pre-encoded keys (``BufferError`` -> poll and retry, and
  ``poll(0)`` every 1000 records, as EventProducer does; no delivery callback).
  Target: send/raw >= 0.50.
* ``sender``: the same through ``EventProducer.sender(topic, Trade)``, the hot-path API that binds
  the encoder and the producer once per topic and event type.
* Diagnostics in the same rounds: ``produce``: ``EventProducer.produce(topic, bytes, key)`` with
  the same pre-encoded bytes (the wrapper's cost without the codec), and ``encode``:
  ``AvroCodec.encode`` alone over the same events, no Kafka at all.

Each variant has its own producer, warmed up (connected, idempotent producer id acquired) before
timing; the order of the variants rotates every round so drift on a noisy machine is shared.
By default the records go to a bench topic created for the run (6 partitions, like the
instrument topics) whose schema subject is registered for the run; both are deleted at the end.
``--topic tickflow.trades`` uses that existing topic instead (nothing is created or deleted).
At the end the topic's offsets are checked: every produced record must have landed.

Reproduce (needs the local stack: ``tickflow infra up``; TICKFLOW_* variables are honoured)::

    .venv/bin/python bench/produce_bench.py                    # 5 rounds of 200k trades
    .venv/bin/python bench/produce_bench.py --events 100000 --rounds 3

The last line of output is one JSON object with every median, for scripts.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import statistics
import sys
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import httpx
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import NewTopic

from tickflow.admin import admin_client, wait_for_cluster
from tickflow.codec import AvroCodec, subject_name
from tickflow.config import RegistrySettings, load_settings
from tickflow.errors import BrokerUnavailable, RegistryError, TickflowError
from tickflow.events import MarketType, Side, Trade
from tickflow.producer import _POLL_EVERY, DEFAULT_PRODUCER_CONFIG, EventProducer
from tickflow.registry import SchemaRegistry

T0_MICROS = 1_718_000_000_000_000
VENUES = [
    ("binance-spot", MarketType.SPOT),
    ("binance-usdm", MarketType.PERPETUAL),
    ("coinbase", MarketType.SPOT),
    ("kraken", MarketType.SPOT),
    ("okx", MarketType.SPOT),
    ("bybit", MarketType.PERPETUAL),
]


def fail(message: str) -> None:
    print(f"produce_bench: error: {message}", file=sys.stderr)
    sys.exit(2)


# --- realistic events ----------------------------------------------------------------------------


def make_instruments(count: int, seed: int = 3) -> list[dict[str, Any]]:
    """``count`` instruments over six venues, prices from 1e-5 (PEPE-like) to 1e5 (BTC-like)."""
    rng = random.Random(seed)
    out = []
    for i in range(count):
        venue, market = VENUES[i % len(VENUES)]
        base = f"C{i // len(VENUES):03d}"
        price = 10 ** rng.uniform(-5, 5)
        out.append(
            {
                "venue": venue,
                "market": market,
                "symbol": f"{base}-USDT",
                "venue_symbol": f"{base}USDT",
                "price": price,
                "pdec": max(0, min(8, 6 - int(f"{price:e}".split("e")[1]))),  # about 6 significant digits
                "size": 1000 / price,
                "sdec": max(0, min(8, int(f"{price:e}".split("e")[1]) + 2)),
            }
        )
    return out


def make_trades(n: int, instruments: list[dict[str, Any]], seed: int = 4) -> list[Trade]:
    rng = random.Random(seed)
    prices = [inst["price"] for inst in instruments]
    trades = []
    for i in range(n):
        k = rng.randrange(len(instruments))
        inst = instruments[k]
        prices[k] *= 1 + rng.gauss(0, 0.0002)
        ts = T0_MICROS + i * 350
        trades.append(
            Trade(
                venue=inst["venue"],
                market=inst["market"],
                symbol=inst["symbol"],
                venue_symbol=inst["venue_symbol"],
                exchange_ts=ts,
                receive_ts=ts + rng.randrange(800, 4000),
                trade_id=str(3_456_789_012 + i),
                # Binance sends 8-decimal strings; the normalizer makes Decimals of them.
                price=Decimal(f"{round(prices[k], inst['pdec']):.8f}"),
                size=Decimal(f"{round(inst['size'] * rng.uniform(0.01, 3.0), inst['sdec']):.8f}"),
                side=Side.BUY if rng.random() < 0.5 else Side.SELL,
            )
        )
    return trades


# --- timed loops (first produce -> flush complete; return seconds) -------------------------------


def run_send(producer: EventProducer, topic: str, events: list[Trade]) -> float:
    send = producer.send
    start = time.perf_counter()
    for event in events:
        send(topic, event)
    producer.flush(300)
    return time.perf_counter() - start


def run_sender(producer: EventProducer, topic: str, events: list[Trade]) -> float:
    send = producer.sender(topic, Trade)
    start = time.perf_counter()
    for event in events:
        send(event)
    producer.flush(300)
    return time.perf_counter() - start


def run_produce(producer: EventProducer, topic: str, values: list[bytes], keys: list[bytes]) -> float:
    produce = producer.produce
    start = time.perf_counter()
    for value, key in zip(values, keys, strict=True):
        produce(topic, value, key)
    producer.flush(300)
    return time.perf_counter() - start


def run_raw(producer: Producer, topic: str, values: list[bytes], keys: list[bytes]) -> float:
    produce = producer.produce
    poll = producer.poll
    since_poll = 0
    start = time.perf_counter()
    for value, key in zip(values, keys, strict=True):
        while True:
            try:
                produce(topic, value, key)
                break
            except BufferError:
                poll(0.05)
        since_poll += 1
        if since_poll >= _POLL_EVERY:
            since_poll = 0
            poll(0)
    remaining = producer.flush(300)
    elapsed = time.perf_counter() - start
    if remaining:
        raise BrokerUnavailable(f"raw producer: {remaining} records undelivered after flush")
    return elapsed


def run_encode(codec: AvroCodec, topic: str, events: list[Trade]) -> float:
    encode = codec.encode
    start = time.perf_counter()
    for event in events:
        encode(event, topic)
    return time.perf_counter() - start


# --- topic, subject and offsets ----------------------------------------------------------------


def create_topic(admin: Any, name: str, partitions: int) -> None:
    topic = NewTopic(name, num_partitions=partitions, replication_factor=-1, config={"compression.type": "producer"})
    admin.create_topics([topic], operation_timeout=30)[name].result(timeout=60)
    # Wait until the topic's partitions have leaders (metadata propagated).
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        meta = admin.list_topics(name, timeout=5).topics.get(name)
        ready = meta is not None and meta.error is None and len(meta.partitions) == partitions
        if ready and all(p.leader >= 0 for p in meta.partitions.values()):
            return
        time.sleep(0.2)
    raise BrokerUnavailable(f"topic {name} has no leaders 30s after creation")


def delete_topic(admin: Any, name: str) -> None:
    try:
        admin.delete_topics([name], operation_timeout=30)[name].result(timeout=60)
        print(f"deleted topic {name}")
    except KafkaException as exc:
        print(f"produce_bench: warning: could not delete topic {name}: {exc}", file=sys.stderr)


def delete_subject(settings: RegistrySettings, subject: str) -> None:
    """Soft then hard delete (the Confluent API; SchemaRegistry has no delete)."""
    auth = None
    if settings.basic_auth_user:
        password = settings.basic_auth_password.get_secret_value() if settings.basic_auth_password else ""
        auth = (settings.basic_auth_user, password)
    try:
        with httpx.Client(
            base_url=settings.url.rstrip("/"), auth=auth, verify=settings.ssl_ca_location or True, timeout=10
        ) as http:
            http.delete(f"/subjects/{subject}").raise_for_status()
            http.delete(f"/subjects/{subject}", params={"permanent": "true"}).raise_for_status()
        print(f"deleted schema subject {subject}")
    except httpx.HTTPError as exc:
        print(f"produce_bench: warning: could not delete subject {subject}: {exc}", file=sys.stderr)


def total_offsets(kafka_conf: dict[str, Any], topic: str, partitions: int) -> int:
    consumer = Consumer({**kafka_conf, "group.id": f"tickflow-bench-{os.getpid()}", "enable.auto.commit": False})
    try:
        return sum(consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in range(partitions))
    finally:
        consumer.close()


# --- main ----------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog="See the module docstring.")
    parser.add_argument("--events", type=int, default=200_000, help="trades per variant per round (default 200000)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds; medians are reported (default 5)")
    parser.add_argument("--instruments", type=int, default=600, help="distinct instruments/keys (default 600)")
    parser.add_argument("--partitions", type=int, default=6, help="partitions of the bench topic (default 6)")
    parser.add_argument(
        "--topic", default=None, help="produce to this existing topic instead of a bench topic created for the run"
    )
    parser.add_argument("--warmup", type=int, default=2000, help="records per producer before timing (default 2000)")
    args = parser.parse_args(argv)
    if min(args.events, args.rounds, args.instruments, args.partitions) < 1 or args.warmup < 0:
        parser.error("--events, --rounds, --instruments and --partitions must be positive")

    try:
        settings = load_settings()
    except TickflowError as exc:
        fail(str(exc))
    try:
        wait_for_cluster(settings.kafka, timeout=10)
    except BrokerUnavailable as exc:
        fail(f"{exc}; start the local stack with `tickflow infra up`")
    registry = SchemaRegistry(settings.registry.model_copy(update={"retry_seconds": 3.0}))
    if not registry.is_reachable():
        fail(f"schema registry at {settings.registry.url} is not reachable; start it with `tickflow infra up`")

    admin = admin_client(settings.kafka)
    own_topic = args.topic is None
    topic = args.topic or f"tickflow.bench.produce-{os.getpid()}"
    subject = subject_name(topic, Trade.avro_name)
    created_subject = created_topic = False
    try:
        if own_topic:
            create_topic(admin, topic, args.partitions)
            created_topic = True
            print(f"created topic {topic} ({args.partitions} partitions)")
            partitions = args.partitions
        else:
            meta = admin.list_topics(topic, timeout=10).topics.get(topic)
            if meta is None or meta.error is not None:
                fail(f"topic {topic} does not exist")
            partitions = len(meta.partitions)
        created_subject = own_topic and not registry.versions(subject)
        codec = AvroCodec(registry)
        codec.register(topic, Trade)  # once, before any timing
        return _run(args, settings, codec, topic, partitions)
    except (RegistryError, BrokerUnavailable) as exc:
        fail(str(exc))
    finally:
        if created_topic:
            delete_topic(admin, topic)
        if created_subject:
            delete_subject(settings.registry, subject)
        registry.close()
    return 1


def _run(args: argparse.Namespace, settings: Any, codec: AvroCodec, topic: str, partitions: int) -> int:
    kafka_conf = settings.kafka.client_config()
    start_offsets = total_offsets(kafka_conf, topic, partitions)

    print(f"building {args.events} trades over {args.instruments} instruments...")
    instruments = make_instruments(args.instruments)
    events = make_trades(args.events, instruments)
    values = [codec.encode(e, topic) for e in events]
    keys = [e.key.encode() for e in events]
    print(f"{len(set(keys))} distinct keys, mean value size {sum(map(len, values)) / len(values):.1f} bytes")

    send_producer = EventProducer(settings.kafka, codec)
    sender_producer = EventProducer(settings.kafka, codec)
    bytes_producer = EventProducer(settings.kafka, codec)
    raw_producer = Producer({**kafka_conf, **DEFAULT_PRODUCER_CONFIG})

    warm = min(args.warmup, len(events))
    produced = 0
    if warm:
        run_send(send_producer, topic, events[:warm])
        run_sender(sender_producer, topic, events[:warm])
        run_produce(bytes_producer, topic, values[:warm], keys[:warm])
        run_raw(raw_producer, topic, values[:warm], keys[:warm])
        produced += 4 * warm

    variants: dict[str, Callable[[], float]] = {
        "send": lambda: run_send(send_producer, topic, events),
        "sender": lambda: run_sender(sender_producer, topic, events),
        "raw": lambda: run_raw(raw_producer, topic, values, keys),
        "produce": lambda: run_produce(bytes_producer, topic, values, keys),
        "encode": lambda: run_encode(codec, topic, events),
    }
    rates: dict[str, list[float]] = {v: [] for v in variants}
    names = list(variants)
    for r in range(args.rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            gc.collect()
            rates[name].append(len(events) / variants[name]())
            if name != "encode":
                produced += len(events)
        line = ", ".join(f"{n} {rates[n][-1]:,.0f}/s" for n in names)
        print(f"round {r + 1}/{args.rounds} ({' > '.join(order)}): {line}", flush=True)

    for p in (send_producer, sender_producer, bytes_producer):
        if p.stats.failed or p.stats.sent != p.stats.delivered:
            fail(f"EventProducer stats show undelivered records: {p.stats}")
    landed = total_offsets(kafka_conf, topic, partitions) - start_offsets
    if landed != produced:
        fail(f"{produced} records produced but the topic's offsets grew by {landed}")

    def med(name: str) -> float:
        return statistics.median(rates[name])

    def ratio(a: str, b: str) -> float:
        return statistics.median(x / y for x, y in zip(rates[a], rates[b], strict=True))

    us = {n: 1e6 / med(n) for n in names}
    print()
    print(
        f"median of {args.rounds} rounds of {len(events)} trades to {topic} ({partitions} partitions), "
        f"first produce -> flush complete; all {produced} records verified on the broker"
    )
    print(f"{'variant':<44}{'records/s':>12}{'us/record':>11}")
    labels = {
        "send": "send: codec + EventProducer.send",
        "sender": "sender: codec + EventProducer.sender()",
        "raw": "raw: confluent_kafka.Producer, pre-encoded",
        "produce": "produce: EventProducer.produce, pre-encoded",
        "encode": "encode: AvroCodec.encode only, no Kafka",
    }
    for n in names:
        print(f"{labels[n]:<44}{med(n):>12,.0f}{us[n]:>11.2f}")
    send_raw = ratio("send", "raw")
    print()
    print(f"send/raw    = {send_raw:.3f}  (target >= 0.50: {'MET' if send_raw >= 0.5 else 'NOT MET'})")
    sender_raw = ratio("sender", "raw")
    print(f"sender/raw  = {sender_raw:.3f}  (the hot-path API: encoder and producer bound once per topic and type)")
    print(f"produce/raw = {ratio('produce', 'raw'):.3f}  (EventProducer wrapper alone, no codec)")
    print(
        f"time split of send (from medians, us/record): raw Kafka path {us['raw']:.2f}, "
        f"EventProducer wrapper {us['produce'] - us['raw']:+.2f}, codec encode {us['send'] - us['produce']:+.2f} "
        f"(encode alone measures {us['encode']:.2f})"
    )
    print(
        json.dumps(
            {
                "bench": "produce",
                "events": len(events),
                "rounds": args.rounds,
                "instruments": args.instruments,
                "topic": topic,
                "partitions": partitions,
                "rates": {n: round(med(n)) for n in names},
                "ratios": {
                    "send/raw": round(send_raw, 4),
                    "sender/raw": round(sender_raw, 4),
                    "produce/raw": round(ratio("produce", "raw"), 4),
                },
                "target_met": send_raw >= 0.5,
                "records_verified": produced,
            },
            separators=(",", ":"),
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
