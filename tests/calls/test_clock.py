"""ManualClock wakes sleepers in deadline order; SystemClock is the real thing."""

from __future__ import annotations

import asyncio

import pytest

from mediabot.calls import Clock, ManualClock, SystemClock


async def test_manual_clock_wakes_in_deadline_order() -> None:
    clock = ManualClock(start=100.0)
    woke: list[tuple[str, float]] = []

    async def sleeper(name: str, seconds: float) -> None:
        await clock.sleep(seconds)
        woke.append((name, clock.now()))

    tasks = [asyncio.create_task(sleeper(name, s)) for name, s in [("late", 30), ("early", 10), ("tie", 10)]]
    await asyncio.sleep(0)
    assert clock.sleepers == 3
    await clock.advance(9.5)
    assert woke == []
    await clock.advance(0.5)
    assert woke == [("early", 110.0), ("tie", 110.0)]
    await clock.advance(100)
    assert woke[-1] == ("late", 130.0)
    assert clock.now() == 210.0
    await asyncio.gather(*tasks)


async def test_a_loop_wakes_once_per_period_within_one_advance() -> None:
    clock = ManualClock()
    ticks: list[float] = []

    async def ticker() -> None:
        while True:
            await clock.sleep(5)
            ticks.append(clock.now())

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    await clock.advance(17)
    assert ticks == [5, 10, 15]
    task.cancel()


async def test_cancelled_sleepers_are_skipped_and_nonpositive_sleep_yields() -> None:
    clock = ManualClock()
    task = asyncio.create_task(clock.sleep(5))
    await asyncio.sleep(0)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert clock.sleepers == 0
    await clock.advance(10)
    await clock.sleep(0)
    await clock.sleep(-1)
    with pytest.raises(ValueError):
        await clock.advance(-1)


async def test_system_clock_is_monotonic_and_both_are_clocks() -> None:
    clock = SystemClock()
    before = clock.now()
    await clock.sleep(0)
    assert clock.now() >= before
    assert isinstance(clock, Clock) and isinstance(ManualClock(), Clock)
