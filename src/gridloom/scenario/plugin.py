"""How a system plugs into the scenario runner.

The runner always runs the grid, the field network (meters and concentrators), the AMI head-end
and the MDMS (and billing and the CIS when the scenario names them). Every other system — the OMS,
the LMS/DRMS, … — is a :class:`SystemPlugin`: the runner starts it once the core actors are on the
fabric, calls it after every simulated step and at every midnight, stops it at the end and puts
what :meth:`SystemPlugin.metrics` returns into ``metrics.json`` under the plugin's key (the report
has a section per key it knows).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from gridloom.scenario.clock import SimulationClock

if TYPE_CHECKING:
    from gridloom.catalog import Catalog
    from gridloom.fabric import Fabric, Identity
    from gridloom.grid.simulate import Simulation, StepResult
    from gridloom.scenario.spec import Scenario
    from gridloom.systems.headend import HeadEnd, MeterNetwork
    from gridloom.systems.headend.config import EventSubscription
    from gridloom.systems.mdms.service import MdmsActor


class FabricClock:
    """The fabric's simulated clock: it only moves forward, whoever moves it."""

    def __init__(self, start: dt.datetime) -> None:
        self._clock = SimulationClock(start)

    def __call__(self) -> dt.datetime:
        return self._clock()

    def advance_to(self, at: dt.datetime) -> None:
        if at > self._clock():
            self._clock.set(at)


@dataclass
class RunContext:
    """What a plugged-in system may use: the fabric, the simulation, the core actors, and the run's log."""

    scenario: Scenario
    out: Path  # the run folder: a system may keep its own records there
    catalog: Catalog
    fabric: Fabric
    clock: FabricClock
    simulation: Simulation
    headend: HeadEnd
    mdms: MdmsActor
    network: MeterNetwork
    issue: Callable[[str, str], Identity]  # (role, instance) -> an identity from the run's CA
    alarm: Callable[[dt.datetime, str, str, str], None]  # (at, severity, source, text)
    log: Callable[[dt.datetime, str, str], None]  # (at, kind, detail): the run's timeline


class SystemPlugin(Protocol):
    """One system the runner can start beside its core actors."""

    key: str  # its section in metrics.json

    def headend_subscriptions(self) -> tuple[EventSubscription, ...]:
        """Meter events the head-end should send this system (asked before the head-end starts)."""
        ...

    async def start(self, ctx: RunContext) -> None: ...

    def due_at(self) -> dt.datetime | None:
        """When the system next wants the clock (e.g. an evaluation window closing); None: nothing pending."""
        ...

    async def tick(self, ctx: RunContext) -> None:
        """The clock reached :meth:`due_at` (the runner moves it there between backhaul arrivals)."""
        ...

    async def after_step(self, ctx: RunContext, step: StepResult) -> None:
        """After each 15-minute step, once the step's batches that arrived in time were delivered."""
        ...

    async def end_of_day(self, ctx: RunContext, start: dt.datetime, end: dt.datetime) -> None:
        """After the MDMS's nightly VEE of ``[start, end)`` (also at the end of the run)."""
        ...

    async def stop(self, ctx: RunContext) -> None: ...

    def metrics(self, ctx: RunContext) -> dict[str, Any]: ...

    def interfaces(self, ctx: RunContext) -> list[dict[str, Any]]:
        """Catalogued interfaces the system carried outside the fabric (e.g. OpenADR over HTTPS), as rows of
        metrics.json's ``interfaces`` (the fabric's columns, plus ``carried_by``)."""
        ...
