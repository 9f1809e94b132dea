"""The simulated clock: steps physics and fleets, as fast as possible or at wall-clock pace.

It is a plain callable returning the current simulated UTC time, so it can be injected
wherever gridloom takes a clock (the fabric, the audit log, the CA).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Callable


class SimulationClock:
    """Simulated time that moves in steps of ``step_s`` seconds.

    With ``realtime=True`` each step waits until ``step_s / speed`` wall-clock seconds
    have passed since the previous one (``speed`` 60 shows an hour a minute).
    """

    def __init__(
        self,
        start_at: dt.datetime,
        *,
        step_s: float = 900.0,
        realtime: bool = False,
        speed: float = 1.0,
        wall_clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if start_at.tzinfo is None:
            raise ValueError("the simulation starts at a timezone-aware UTC time")
        if step_s <= 0 or speed <= 0:
            raise ValueError("step and speed must be positive")
        self.start_at = start_at.astimezone(dt.UTC)
        self.step_s = step_s
        self.realtime = realtime
        self.speed = speed
        self.step = 0
        self._now = self.start_at
        self._wall_clock = wall_clock
        self._wall_start = wall_clock()
        self._wall_next = self._wall_start

    def __call__(self) -> dt.datetime:
        return self._now

    @property
    def now(self) -> dt.datetime:
        return self._now

    def at_step(self, step: int) -> dt.datetime:
        return self.start_at + dt.timedelta(seconds=step * self.step_s)

    def set(self, at: dt.datetime) -> None:
        """Move within the current step (e.g. to stamp an event at its own time); never backwards."""
        if at < self._now:
            raise ValueError(f"the clock does not go backwards ({at} < {self._now})")
        self._now = at

    def pace_to(self, step: int) -> None:
        """Block until the wall clock reaches ``step`` (realtime mode only) and move there."""
        if self.realtime:
            delay = self._wall_start + step * self.step_s / self.speed - self._wall_clock()
            if delay > 0:
                time.sleep(delay)
        self.step = step
        self._now = max(self._now, self.at_step(step))

    async def tick(self) -> dt.datetime:
        """Advance one step (waiting for the wall clock in realtime mode); returns the new time."""
        if self.realtime:
            self._wall_next += self.step_s / self.speed
            delay = self._wall_next - self._wall_clock()
            if delay > 0:
                await asyncio.sleep(delay)
        self.step += 1
        self._now = self.at_step(self.step)
        return self._now
