"""The simulated clock steps fast by default and at wall-clock pace when asked."""

import datetime as dt

import pytest

from gridloom.scenario.clock import SimulationClock

pytestmark = pytest.mark.anyio
START = dt.datetime(2026, 7, 1, tzinfo=dt.UTC)


async def test_steps_move_simulated_time() -> None:
    clock = SimulationClock(START, step_s=900)
    assert clock() == START
    assert await clock.tick() == START + dt.timedelta(minutes=15)
    await clock.tick()
    assert clock.step == 2
    assert clock.now == START + dt.timedelta(minutes=30)


async def test_realtime_waits_for_the_wall_clock() -> None:
    import time

    clock = SimulationClock(START, step_s=900, realtime=True, speed=900 / 0.05)  # a step every 50 ms
    began = time.monotonic()
    for _ in range(4):
        await clock.tick()
    assert time.monotonic() - began >= 0.19


async def test_clock_refuses_naive_start_and_going_backwards() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        SimulationClock(dt.datetime(2026, 7, 1))
    clock = SimulationClock(START)
    clock.set(START + dt.timedelta(minutes=3))
    with pytest.raises(ValueError, match="backwards"):
        clock.set(START)


def test_pace_to_blocks_until_the_wall_clock_catches_up() -> None:
    import time

    clock = SimulationClock(START, step_s=900, realtime=True, speed=900 / 0.02)  # a step every 20 ms
    began = time.monotonic()
    clock.pace_to(5)
    assert time.monotonic() - began >= 0.09
    assert clock.now == START + dt.timedelta(minutes=75)
    fast = SimulationClock(START, step_s=900)
    began = time.monotonic()
    fast.pace_to(10_000)
    assert time.monotonic() - began < 0.05
