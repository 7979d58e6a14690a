"""One order's commands run one at a time, even when a command arrives just as another hands the
order's lock over (the lock looks free then: a kill -9 test caught two cancels of one order
running side by side, the second answer's state dropping the first, and the first cancel
answered again after a restart)."""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal

from processors.router.locks import KeyedLocks
from producers.venues.trading import OrderRequest, VenueOrder
from tests.unit.test_router_checks import VENUE, RecordingClient, create, make_router
from tickflow.events import CancelOrder, MarketType, OrderEvent, OrderStatus


def test_a_lock_handed_to_a_waiter_is_not_given_to_a_newcomer_too() -> None:
    locks, inside, most = KeyedLocks(), [0], [0]

    async def user(pause: float) -> None:
        async with locks.hold("order-1"):
            inside[0] += 1
            most[0] = max(most[0], inside[0])
            await asyncio.sleep(pause)
            inside[0] -= 1

    async def main() -> None:
        first = asyncio.create_task(user(0.01))
        await asyncio.sleep(0)  # first holds the lock
        waiter = asyncio.create_task(user(0.01))
        await first  # released: the waiter is woken, and has taken the lock by now
        newcomer = asyncio.create_task(user(0.01))
        await asyncio.gather(waiter, newcomer)

    asyncio.run(main())
    assert most[0] == 1
    assert len(locks) == 0  # nobody holds or waits: the lock is gone


def test_a_waiter_canceled_leaves_no_lock_behind() -> None:
    locks = KeyedLocks()

    async def main() -> None:
        async with locks.hold("order-1"):
            waiter = asyncio.create_task(locks.hold("order-1").__aenter__())
            await asyncio.sleep(0)
            assert locks.busy("order-1")
            waiter.cancel()
            await asyncio.gather(waiter, return_exceptions=True)
        assert not locks.busy("order-1")

    asyncio.run(main())


class SlowVenue(RecordingClient):
    """Each call takes a moment, as a real venue's does: the router's tasks interleave."""

    async def create(self, request: OrderRequest) -> VenueOrder:
        await asyncio.sleep(0.01)
        return await super().create(request)

    async def cancel(self, symbol: str, client_order_id: str, venue_order_id: str | None = None) -> VenueOrder:
        await asyncio.sleep(0.01)
        return await super().cancel(symbol, client_order_id, venue_order_id)


def cancel(command_id: str, order_id: str) -> CancelOrder:
    return CancelOrder(command_id=command_id, account="alice", order_id=order_id, venue=VENUE, market=MarketType.SPOT,
                       symbol="BTC-USDT", issued_ts=time.time_ns() // 1000)  # fmt: skip


def test_two_cancels_of_one_order_go_in_turn_and_its_state_remembers_both_answers() -> None:
    router, _ = make_router()
    venue = router.clients[("alice", VENUE)] = SlowVenue()
    order = create()
    cancels = [cancel(f"cancel-{n}", order.order_id) for n in (1, 2)]

    async def main() -> None:
        placing = asyncio.create_task(router.handle(order))
        await asyncio.sleep(0)  # the create holds the order
        first = asyncio.create_task(router.handle(cancels[0]))  # waits for it
        await placing  # the create hands the order to the first cancel...
        second = asyncio.create_task(router.handle(cancels[1]))  # ...as the second cancel comes
        await asyncio.gather(first, second)

    asyncio.run(main())
    assert venue.calls == ["create", "cancel"]  # the second cancel found the order canceled
    answers = {e.command_id: e for _, e in router.take_outbox() if isinstance(e, OrderEvent)}
    assert answers[cancels[0].command_id].status is OrderStatus.CANCELED
    assert (answers[cancels[1].command_id].status, answers[cancels[1].command_id].rule) == (
        OrderStatus.REJECTED, "order_closed",
    )  # fmt: skip
    state = router.book.get(order.order_id)
    assert state is not None and state.status is OrderStatus.CANCELED
    # What a restarted router reads back: every command of the order answered, none to run again.
    assert state.answered == [order.command_id, *(c.command_id for c in cancels)]
    assert state.size == Decimal("1")
