"""The order router end to end: commands on Kafka, a ``tickflow router`` process, the simulated
Binance order API, answers on Kafka; and kill -9 at random points over hundreds of commands."""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import pytest

from processors.router.client import OrderClient
from producers.venues.trading import client_order_id
from simulator.faults import Faults
from tests.integration.router_harness import (
    API_KEY,
    SECRET,
    VENUE,
    RouterProcess,
    RouterTopics,
    SimulatedVenue,
    create,
    partitions_by_order,
    read_events,
    send_commands,
    size_for,
    wait_answered,
)
from tickflow.codec import AvroCodec
from tickflow.config import Settings
from tickflow.events import (
    AmendOrder,
    Balance,
    BookHealth,
    BookTop,
    CancelOrder,
    KillSwitch,
    MarketType,
    OrderState,
    OrderStatus,
    RejectReason,
    Side,
    TimeInForce,
)
from tickflow.producer import EventProducer

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]


def _command(kind: type, order_id: str, symbol: str, **fields: object) -> object:
    command_id = f"{kind.__name__}-{random.getrandbits(48):x}"
    return kind(command_id=command_id, account="alice", order_id=order_id, venue=VENUE, market=MarketType.SPOT,
                symbol=symbol, issued_ts=time.time_ns() // 1000, **fields)  # fmt: skip


def test_commands_reach_the_venue_signed_and_every_one_is_answered(
    settings: Settings, codec: AvroCodec, new_topic: Callable[..., str], tmp_path: Path
) -> None:
    topics = RouterTopics.make(new_topic)
    with SimulatedVenue() as venue:
        router = RouterProcess.configure(settings, tmp_path, topics, venue, limits={"price_band": "0.05"})
        client_topics = {"commands_topic": topics.commands, "events_topic": topics.events,
                         "control_topic": topics.control}  # fmt: skip
        with router.running(), OrderClient(settings.kafka, codec, **client_topics) as client:
            symbol, bid, ask, tick, step = venue.top()
            # The price band needs a best bid/offer: the order-book agent's tops, as the router reads them.
            with EventProducer(settings.kafka, codec) as producer:
                producer.send(topics.bbo, BookTop(venue=VENUE, market=MarketType.SPOT, symbol=symbol,
                                                  venue_symbol=symbol.replace("-", ""), exchange_ts=None,
                                                  receive_ts=0, processed_ts=0, health=BookHealth.LIVE,
                                                  bid_price=bid, ask_price=ask))  # fmt: skip
            time.sleep(1.0)
            resting = create(symbol, Side.BUY, bid - 10 * tick, size_for(bid, step))
            outcome = client.outcome(client.send(resting))
            assert outcome.final is not None and outcome.final.status is OrderStatus.ACCEPTED
            assert outcome.final.client_order_id == client_order_id(resting.command_id)
            venue_order = venue.orders_by_client_id()[client_order_id(resting.command_id)]
            assert len(venue_order) == 1 and outcome.final.venue_order_id == str(venue_order[0].id)

            taker = create(symbol, Side.BUY, ask + tick, size_for(ask, step), tif=TimeInForce.IOC)
            filled = client.outcome(client.send(taker)).final
            assert filled is not None and filled.status is OrderStatus.FILLED and filled.filled_size == taker.size

            amend = _command(AmendOrder, resting.order_id, symbol, new_price=bid - 11 * tick)
            amended = client.outcome(client.send(amend)).final
            assert amended is not None and amended.status is OrderStatus.AMENDED and amended.price == bid - 11 * tick

            cancel = _command(CancelOrder, resting.order_id, symbol)
            canceled = client.outcome(client.send(cancel)).final
            assert canceled is not None and canceled.status is OrderStatus.CANCELED

            off_tick = create(symbol, Side.BUY, bid - tick / 2, size_for(bid, step))
            refused = client.outcome(client.send(off_tick)).final
            assert refused is not None and (refused.status, refused.rule) == (OrderStatus.REJECTED, "tick_size")

            far = create(symbol, Side.BUY, ask * Decimal("1.2") // tick * tick, size_for(ask, step))
            banded = client.outcome(client.send(far)).final
            assert banded is not None and (banded.reason, banded.rule) == (RejectReason.RISK_CHECK_FAILED,
                                                                           "price_band")  # fmt: skip

            client.set_kill_switch(KillSwitch(scope="*", engaged=True, reason="test", set_by="pytest", ts=0))
            time.sleep(1.0)
            stopped = client.outcome(client.send(create(symbol, Side.BUY, bid - 10 * tick, size_for(bid, step))))
            assert stopped.final is not None and stopped.final.reason is RejectReason.KILL_SWITCH

            # An unreadable command is dead-lettered, and the router carries on.
            client.producer.produce(topics.commands, b"\x00garbage", key=b"x")
            client.producer.flush()
            client.set_kill_switch(KillSwitch(scope="*", engaged=False, ts=0))
            time.sleep(1.0)
            after = client.outcome(client.send(create(symbol, Side.BUY, bid - 10 * tick, size_for(bid, step))))
            assert after.final is not None and after.final.status is OrderStatus.ACCEPTED

            refused_ids = {off_tick.command_id, far.command_id, stopped.command_id}
            venue_ids = set(venue.orders_by_client_id())
            assert not {client_order_id(c) for c in refused_ids} & venue_ids  # nothing refused reached the venue
        log = router.log.read_text()
        assert API_KEY not in log and SECRET not in log
        events = read_events(settings, codec, topics.events)
        assert not any(SECRET in repr(e) or API_KEY in repr(e) for e in events)
        # The private stream told each fill of the taker order, with the venue's trade id, price and fee.
        fills = [e for e in events if e.order_id == taker.order_id and e.command_id is None and e.trade_id]
        assert fills and sum(e.last_fill_size for e in fills) == taker.size  # type: ignore[misc]
        assert all(e.fee is not None and e.fee_asset and e.last_fill_price for e in fills)
        balances = read_events(settings, codec, topics.balances, Balance)
        assert {b.asset for b in balances} >= {"USDT"} and all(b.account == "alice" for b in balances)


COMMANDS = 300
#: Commands a second: about 8 creates a second, within Binance spot's 100 orders per 10 s (which
#: the router keeps to, by its own count and the venue's X-MBX-ORDER-COUNT-10S).
RATE = 11.0


def test_kill_9_at_random_points_never_duplicates_or_loses_an_order(
    settings: Settings, codec: AvroCodec, new_topic: Callable[..., str], tmp_path: Path
) -> None:
    """Hundreds of creates and cancels with faults at the venue (timeouts after accepting, 5xx
    before and after, 429s, latency) while the router is killed -9 again and again: each create
    is one order at the venue or none (if refused), and every command has exactly one answer."""
    rng = random.Random(7)
    topics = RouterTopics.make(new_topic)
    faults = Faults(order_latency=0.03, order_timeout_every=23, order_timeout_hold=2.5, order_5xx_after_accept_every=17,
                    order_5xx_before_accept_every=19, order_429_every=29, rest_retry_after=1)  # fmt: skip
    with SimulatedVenue(faults=faults) as venue:
        router = RouterProcess.configure(settings, tmp_path, topics, venue)
        router.extra_env["TICKFLOW_LOG_LEVEL"] = "DEBUG"  # each answer and transaction: a failure shows its cause
        symbol, bid, ask, tick, step = venue.top()
        commands: list[object] = []
        creates: list[object] = []
        for n in range(COMMANDS):
            if creates and rng.random() < 0.25:
                commands.append(_command(CancelOrder, rng.choice(creates).order_id, symbol))
                continue
            if rng.random() < 0.2:  # marketable: fills at once
                command = create(symbol, Side.BUY, ask + 50 * tick, size_for(ask, step), tif=TimeInForce.IOC, tag="k")
            else:  # rests, below the market
                command = create(symbol, Side.BUY, bid - (20 + n % 7) * tick, size_for(bid, step), tag="k")
            creates.append(command)
            commands.append(command)

        sent = threading.Event()

        def send_all() -> None:
            with EventProducer(settings.kafka, codec, config={"linger.ms": 0}) as producer:
                for command in commands:
                    producer.send(topics.commands, command)  # type: ignore[arg-type]
                    producer.poll(0)
                    time.sleep(1 / RATE)
            sent.set()

        router.start()
        sender = threading.Thread(target=send_all)
        sender.start()
        try:
            while not sent.is_set():
                time.sleep(rng.uniform(0.5, 2.5))
                router.kill()
                router.start()
            sender.join()
            wanted = {c.command_id for c in commands}  # type: ignore[attr-defined]
            events = wait_answered(settings, codec, topics.events, commands, every=2)
        finally:
            router.stop()
        assert router.kills >= 3

        final = Counter(e.command_id for e in events if e.command_id and e.status is not OrderStatus.UNKNOWN_OUTCOME)
        order_of = {c.command_id: c.order_id for c in commands}  # type: ignore[attr-defined]
        missing = wanted - set(final)
        assert not missing, f"{len(missing)} commands never answered"
        doubled = {c: n for c, n in final.items() if n > 1}
        if doubled:
            orders = {e.order_id for e in events if e.command_id in doubled}
            told = [f"{e.command_id} {e.status.name} {e.venue_message}" for e in events if e.order_id in orders]
            lines = [line for line in router.log.read_text().splitlines()
                     if "--- test:" in line or any(o in line for o in orders) or "assigned" in line]  # fmt: skip
            print("\n".join(told + lines))
        assert not doubled, f"commands answered more than once: {list(doubled.items())[:5]}"
        assert set(final) == wanted  # and no answer to a command nobody sent
        # What any later router reads back: each order's last state remembers every command of
        # it that was answered (so none of them can run again), not just the last one's.
        last_state = {s.order_id: s for s in read_events(settings, codec, topics.state, OrderState)}
        forgotten = [c for c in wanted if c not in last_state[order_of[c]].answered]
        assert not forgotten, f"answered commands missing from their order's state: {forgotten[:5]}"

        venue_orders = venue.orders_by_client_id()
        outcome = {e.command_id: e for e in events if e.command_id and e.status is not OrderStatus.UNKNOWN_OUTCOME}
        for command in creates:
            cid = client_order_id(command.command_id)  # type: ignore[attr-defined]
            orders = venue_orders.get(cid, [])
            answer = outcome[command.command_id]  # type: ignore[attr-defined]
            assert len(orders) <= 1, f"{len(orders)} orders at the venue for one create"
            if answer.status is OrderStatus.REJECTED:
                assert not orders, f"a create answered REJECTED ({answer.venue_message}) has an order at the venue"
            else:
                assert len(orders) == 1, f"a create answered {answer.status} has no order at the venue"
                assert answer.venue_order_id == str(orders[0].id)
        ours = {client_order_id(c.command_id) for c in creates}  # type: ignore[attr-defined]
        assert set(venue_orders) <= ours, "the venue has orders no command asked for"
        # The faults were really hit, and the unknown outcomes were resolved by asking the venue.
        stats = venue.call(lambda: venue.sim.stats)
        assert stats.orders_timed_out and stats.orders_5xx_after_accept  # type: ignore[attr-defined]
        unknown = [e for e in events if e.status is OrderStatus.UNKNOWN_OUTCOME]
        assert unknown, "no unknown outcome was ever published"
        refused = Counter(
            f"{outcome[c.command_id].reason}: {(outcome[c.command_id].venue_message or '')[:60]}"  # type: ignore[attr-defined]
            for c in creates
            if outcome[c.command_id].status is OrderStatus.REJECTED
        )  # type: ignore[attr-defined]
        recovered = router.log.read_text().count("sent before a restart")
        print(
            f"\n{COMMANDS} commands, {router.kills} kills, {len(unknown)} unknown outcomes resolved, "
            f"{recovered} creates found at the venue after a restart, {len(venue_orders)} venue orders, "
            f"creates refused: {dict(refused)}"
        )


def test_two_routers_share_the_commands_and_the_survivor_takes_over_a_killed_ones_orders(
    settings: Settings, codec: AvroCodec, new_topic: Callable[..., str], tmp_path: Path
) -> None:
    """Two routers in one group split the command partitions; one is killed -9 for good while
    commands flow: the other is given its partitions, reads their order state again and carries
    on. Still one order or none per create, and exactly one answer per command."""
    topics = RouterTopics.make(new_topic)
    faults = Faults(order_latency=0.02)
    with SimulatedVenue(faults=faults) as venue:
        group = f"router-pair-{random.getrandbits(32):x}"
        first = RouterProcess.configure(settings, tmp_path, topics, venue, name="router-a", group_id=group,
                                        instance_id="router-a")  # fmt: skip
        second = RouterProcess.configure(settings, tmp_path, topics, venue, name="router-b", group_id=group,
                                         instance_id="router-b")  # fmt: skip
        symbol, bid, _, tick, step = venue.top()
        commands = [create(symbol, Side.BUY, bid - (20 + n % 5) * tick, size_for(bid, step), tag="pair")
                    for n in range(160)]  # fmt: skip
        first.start()
        second.start()
        try:
            with EventProducer(settings.kafka, codec, config={"linger.ms": 0}) as producer:
                for n, command in enumerate(commands):
                    producer.send(topics.commands, command)
                    producer.poll(0)
                    time.sleep(1 / 10)
                    if n == 60:
                        first.kill()  # for good: its partitions go to the other after the session timeout
            events = wait_answered(settings, codec, topics.events, commands, every=2)
        finally:
            first.stop()
            second.stop()
        final = Counter(e.command_id for e in events if e.command_id and e.status is not OrderStatus.UNKNOWN_OUTCOME)
        log = second.log.read_text()
        unanswered = [n for n, c in enumerate(commands) if c.command_id not in final]
        assert not unanswered, f"never answered (their numbers): {unanswered}; the survivor's log:\n{log[-6000:]}"
        assert all(n == 1 for n in final.values()), [c for c, n in final.items() if n > 1][:5]
        orders = venue.orders_by_client_id()
        for command in commands:
            assert len(orders.get(client_order_id(command.command_id), [])) == 1
        assert log.count("command partitions assigned") >= 2  # its own share, then the dead one's too
        # Each order's state is in the partition numbered like its commands': the one a router
        # taking those commands over reads again (not one another partitioner chose).
        commanded = partitions_by_order(settings, codec, topics.commands)
        stated = partitions_by_order(settings, codec, topics.state)
        assert {o: stated.get(o) for o in commanded} == commanded


def test_partitions_left_inside_a_dead_routers_transaction_are_taken_once_the_broker_aborts_it(
    settings: Settings, codec: AvroCodec, new_topic: Callable[..., str], tmp_path: Path
) -> None:
    """A router killed inside a transaction leaves the group's offsets pending in it: whoever takes
    its partitions cannot read where to start until the broker aborts the transaction. The next
    router waits for that, saying so, then answers every command; it neither dies nor sits there
    consuming nothing (it did both, once in about ten kills, before)."""
    from confluent_kafka import Consumer, Producer, TopicPartition

    topics = RouterTopics.make(new_topic)
    group = f"router-ghost-{random.getrandbits(32):x}"
    # The dead owner: a transaction holding offsets of the group, never committed, open for 30 s
    # (longer than a router waits for one reading of its committed offsets: 10 s).
    ghost = Producer({**settings.kafka.client_config(), "transactional.id": f"{group}.ghost",
                      "transaction.timeout.ms": 30_000})  # fmt: skip
    ghost.init_transactions(30)
    ghost.begin_transaction()
    outsider = Consumer({**settings.kafka.client_config(), "group.id": group})
    offsets = [TopicPartition(topics.commands, p, 0) for p in range(3)]
    ghost.send_offsets_to_transaction(offsets, outsider.consumer_group_metadata(), 30)
    outsider.close()
    with SimulatedVenue() as venue:
        router = RouterProcess.configure(settings, tmp_path, topics, venue, group_id=group)
        symbol, bid, _, tick, step = venue.top()
        commands = [create(symbol, Side.BUY, bid - (20 + n % 5) * tick, size_for(bid, step), tag="ghost")
                    for n in range(30)]  # fmt: skip
        send_commands(settings, codec, topics.commands, commands)
        router.start()
        try:
            events = wait_answered(settings, codec, topics.events, commands, timeout=90)
        finally:
            router.stop()
        log = router.log.read_text()
        answered = Counter(e.command_id for e in events if e.command_id and e.status is not OrderStatus.UNKNOWN_OUTCOME)
        assert set(answered) == {c.command_id for c in commands} and set(answered.values()) == {1}, log[-4000:]
        assert "a previous owner's transaction may still be open" in log
        orders = venue.orders_by_client_id()
        assert all(len(orders.get(client_order_id(c.command_id), [])) == 1 for c in commands)
    del ghost  # open until here: the broker aborts it on its timeout


def test_a_router_restarted_on_a_backlog_asks_the_venue_only_about_what_its_predecessor_reserved(
    settings: Settings, codec: AvroCodec, new_topic: Callable[..., str], tmp_path: Path
) -> None:
    """Each transaction reserves ``reserve_ahead`` commands per partition past the last fetched,
    and no command beyond the reservation starts: after a kill -9, the next router asks the venue
    about the creates below its predecessor's reservation only, not about the whole backlog that
    piled up meanwhile (a venue's query weight would run out on a large one). Still one order per
    create, one answer per command."""
    import json
    import urllib.request

    from tests.integration.processors_worker import free_port

    topics = RouterTopics.make(new_topic)  # 3 partitions
    ahead, port = 10, free_port()
    with SimulatedVenue() as venue:
        router = RouterProcess.configure(settings, tmp_path, topics, venue, reserve_ahead=ahead, status_port=port)
        symbol, bid, _, tick, step = venue.top()

        def ioc(tag: str) -> object:
            return create(symbol, Side.BUY, bid - 30 * tick, size_for(bid, step), tif=TimeInForce.IOC, tag=tag)

        first = [ioc("before") for _ in range(30)]
        router.start()
        try:
            send_commands(settings, codec, topics.commands, first)
            wait_answered(settings, codec, topics.events, first)
            time.sleep(0.5)  # its transactions since have reserved past the last command fetched
            router.kill()
            backlog = [ioc("backlog") for _ in range(300)]
            send_commands(settings, codec, topics.commands, backlog)
            router.start()
            events = wait_answered(settings, codec, topics.events, first + backlog)
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=10) as response:
                status = json.load(response)
        finally:
            router.stop()
        orders = venue.orders_by_client_id()

    answers = Counter(e.command_id for e in events if e.command_id and e.status is not OrderStatus.UNKNOWN_OUTCOME)
    assert set(answers) == {c.command_id for c in first + backlog} and max(answers.values()) == 1
    assert all(len(orders.get(client_order_id(c.command_id), [])) == 1 for c in first + backlog)
    # Below the reservation: at most ``ahead`` commands of each of the 3 partitions (each partition
    # got more than that of the backlog); without it, every one of the 300 would have been asked.
    assert 0 < status["recovery_queries"] <= 3 * ahead, status["recovery_queries"]


def test_a_router_fenced_by_a_newer_incarnation_stops_and_the_newer_one_answers_everything(
    settings: Settings, codec: AvroCodec, new_topic: Callable[..., str], tmp_path: Path
) -> None:
    """A second router started with the same instance id (a restart that overlaps the old
    process) fences the first: the first's transactions fail for good, and it must stop rather
    than run on sending orders whose answers it can never commit. The newer one answers every
    command exactly once."""
    topics = RouterTopics.make(new_topic)
    with SimulatedVenue() as venue:
        first = RouterProcess.configure(settings, tmp_path, topics, venue)
        second = RouterProcess(settings, first.config, tmp_path / "router-second.log")
        symbol, bid, _, tick, step = venue.top()
        commands = [create(symbol, Side.BUY, bid - 30 * tick, size_for(bid, step), tif=TimeInForce.IOC, tag="f")
                    for _ in range(40)]  # fmt: skip

        first.start()
        try:
            send_commands(settings, codec, topics.commands, commands[:20])
            wait_answered(settings, codec, topics.events, commands[:20], timeout=60)
            second.start()
            assert first.process is not None
            code = first.process.wait(60)  # fenced: it stops by itself
            assert code != 0
            send_commands(settings, codec, topics.commands, commands[20:])
            events = wait_answered(settings, codec, topics.events, commands, timeout=90)
        finally:
            first.stop()
            second.stop()
        orders = venue.orders_by_client_id()
    answers = Counter(e.command_id for e in events if e.command_id and e.status is not OrderStatus.UNKNOWN_OUTCOME)

    assert set(answers) == {c.command_id for c in commands} and max(answers.values()) == 1
    assert all(len(orders.get(client_order_id(c.command_id), [])) == 1 for c in commands)
    assert "fenced" in first.log.read_text().lower()
