"""The weighted REST limiter, on a simulated clock (no real waiting)."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from producers.rate_limit import WeightedRateLimiter


class FakeClock:
    def __init__(self) -> None:
        self.now = 960.0  # on a window boundary: windows are aligned to the clock, as the venue's are
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += max(seconds, 0.0)


def limiter(clock: FakeClock, capacity: int = 100) -> WeightedRateLimiter:
    return WeightedRateLimiter(capacity, 60.0, headroom=1.0, clock=clock, sleep=clock.sleep)


def test_requests_within_the_budget_do_not_wait() -> None:
    clock = FakeClock()
    rl = limiter(clock)

    async def run() -> None:
        for _ in range(10):
            await rl.acquire(10)

    asyncio.run(run())
    assert clock.slept == [] and rl.used == 100


def test_a_mass_resync_queues_into_the_next_windows_instead_of_failing() -> None:
    clock = FakeClock()
    rl = limiter(clock)
    started = clock.now

    async def run() -> list[float]:
        times = []
        for _ in range(25):  # 25 snapshots of weight 10: 250 weight, 100 per minute
            await rl.acquire(10)
            times.append(clock.now - started)
        return times

    times = asyncio.run(run())
    assert times[:10] == [0.0] * 10
    assert all(t == pytest.approx(60.0) for t in times[10:20])
    assert all(t == pytest.approx(120.0) for t in times[20:])
    assert rl.waits == 2


def test_the_venues_used_weight_header_wins_over_our_count() -> None:
    clock = FakeClock()
    rl = limiter(clock)
    rl.observe(95)  # another process on our IP used most of the window

    async def run() -> None:
        await rl.acquire(10)

    asyncio.run(run())
    assert clock.slept == [pytest.approx(60.0)]


def test_retry_after_blocks_every_request_until_then() -> None:
    clock = FakeClock()
    rl = limiter(clock)
    rl.back_off(120)

    async def run() -> None:
        await rl.acquire(1)

    asyncio.run(run())
    assert clock.now >= 1080.0 and rl.back_offs == 1


def test_a_request_that_can_never_fit_is_refused() -> None:
    with pytest.raises(ValueError, match="can never fit"):
        asyncio.run(limiter(FakeClock(), capacity=10).acquire(50))


def test_request_pacer_spaces_concurrent_requests_in_order() -> None:
    from producers.rate_limit import RequestPacer

    async def scenario() -> list[float]:
        pacer, loop, sent = RequestPacer(20.0), asyncio.get_running_loop(), []

        async def request() -> None:
            await pacer.wait()
            sent.append(loop.time())

        await asyncio.gather(*(request() for _ in range(5)))
        return sent

    sent = asyncio.run(scenario())
    gaps = [b - a for a, b in itertools.pairwise(sent)]
    assert len(sent) == 5 and all(g >= 0.045 for g in gaps), gaps  # 20 a second: 50 ms apart
