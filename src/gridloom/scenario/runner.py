"""The scenario runner: the grid, the fleets and every system of a scenario, on the fabric, for a span of days.

One run:

1. a CA for the run (``OUT/pki``) issues an identity to every actor — one per concentrator, the
   AMI head-end, the MDMS, the CIS, billing — and the auditor that signs the audit log's head;
2. the actors attach to one fabric (in-process, or NATS JetStream with ``bus``) whose clock is
   the simulated clock, so freshness, replay windows and latencies are simulated time;
3. the physics and the fleets advance step by step (:class:`~gridloom.grid.simulate.Simulation`);
   each concentrator batch is signed when the concentrator sends it and published when the
   backhaul delivers it, so the fabric measures the backhaul's delay as DGM-20's latency;
   the head-end forwards reads and events to the MDMS (AMI-10), which validates and stores them;
4. the timeline acts between steps (faults are physics and are known up front; firmware faults
   change the meters; attack drills try the fabric);
5. at each midnight the meters send their register reads and the MDMS runs its nightly VEE; at
   the end billing asks the MDMS for the usage of the run over AMI-24 and rates every account;
6. the run folder gets ``metrics.json``, ``report.html``, the store and the audit log — on
   Ctrl-C too: a cancelled run stops at the next step, keeps what was stored and says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import heapq
import itertools
import json
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from gridloom.catalog import Catalog, load_catalog
from gridloom.devices.concentrators import ConcentratorBatch
from gridloom.errors import ScenarioError
from gridloom.fabric import (
    AuditLog,
    CertificateAuthority,
    Endpoint,
    Fabric,
    Identity,
    MemoryTransport,
    Message,
    TrustStore,
)
from gridloom.fabric.transports.base import Transport
from gridloom.grid.connectivity import ConnectivityModel, DeviceKind, build_connectivity
from gridloom.grid.networks import load_district
from gridloom.grid.profiles import STEP_S
from gridloom.grid.simulate import ScheduledFault, Simulation, SimulationConfig, StepResult
from gridloom.grid.territory import build_territory
from gridloom.scenario import metrics as run_metrics
from gridloom.scenario.demand import DemandResponsePlugin
from gridloom.scenario.drills import Captured, run_drill
from gridloom.scenario.outages import OutagePlugin
from gridloom.scenario.plugin import FabricClock, RunContext, SystemPlugin
from gridloom.scenario.spec import (
    RANDOM_KINDS,
    AttackDrillEvent,
    FaultEvent,
    MeterFirmwareEvent,
    Scenario,
    StormEvent,
    check_devices,
)
from gridloom.store import MeterDataStore, open_store
from gridloom.store.schema import READS_SCHEMA
from gridloom.systems.billing import PriceSeries, run_billing
from gridloom.systems.billing.cycle import BillingCycle, CriticalPeakEvent
from gridloom.systems.billing.run import BillingRun, TableReads
from gridloom.systems.cis import Cis
from gridloom.systems.cis.build import cis_for_territory
from gridloom.systems.headend import HeadEnd, HeadEndConfig, MeterNetwork
from gridloom.systems.headend.field import PreparedBatch, issue_concentrator_identities
from gridloom.systems.mdms.service import ClosedPeriod, Mdms, MdmsActor, reads_table

_US = 1_000_000
USAGE_ROWS_PER_REQUEST = 500_000  # per AMI-24 answer; fewer where the transport limits a frame's size
MIDNIGHT = dt.time(0, 0)
NIGHTLY_VEE_AT = dt.time(1, 0)  # the MDMS closes yesterday one hour after midnight
USAGE_BYTES_PER_ROW = 100  # an answer's encoded size per row, with room to spare


@dataclass(frozen=True)
class RunOptions:
    out: Path
    bus: str | None = None  # nats://host:port for JetStream; None: in-process
    store: str | None = None  # postgresql://… ; None: OUT/mdms.duckdb
    realtime: bool = False
    speed: float = 60.0  # realtime: simulated seconds per wall-clock second


@dataclass(frozen=True)
class Alarm:
    at: dt.datetime
    severity: str  # info | warning | critical
    source: str
    text: str


@dataclass
class RunProgress:
    """What a progress display shows after each step."""

    at: dt.datetime
    step: int
    total_steps: int
    delivered: dict[str, int]  # messages per interface
    rejections: int
    alarms: list[Alarm]


@dataclass
class RunResult:
    out: Path
    metrics: dict[str, Any]
    interrupted: bool

    @property
    def report(self) -> Path:
        return self.out / "report.html"


@dataclass
class _Actors:
    headend: HeadEnd
    mdms: MdmsActor
    network: MeterNetwork
    billing_inbox: asyncio.Queue[Message] | None = None
    billing_endpoint: Endpoint | None = None


class _Walls:
    """Wall seconds per part of a run. Time spent in the systems' fabric handlers during a timed part is
    counted for the system (by role), not for the part that happened to drive the fabric."""

    def __init__(self) -> None:
        self.seconds: defaultdict[str, float] = defaultdict(float)
        self.handlers: defaultdict[str, float] | None = None  # the fabric's handler_seconds, once it exists

    @contextlib.contextmanager
    def timing(self, part: str) -> Iterator[None]:
        before = dict(self.handlers) if self.handlers is not None else {}
        began = time.perf_counter()
        try:
            yield
        finally:
            elapsed = time.perf_counter() - began
            if self.handlers is not None:
                for role, seconds in self.handlers.items():
                    spent = seconds - before.get(role, 0.0)
                    self.seconds[role] += spent
                    elapsed -= spent
            self.seconds[part] += elapsed


class Runner:
    """Runs one scenario into ``options.out``; see the module docstring."""

    def __init__(
        self,
        scenario: Scenario,
        options: RunOptions,
        *,
        catalog: Catalog | None = None,
        progress: Callable[[RunProgress], None] | None = None,
    ) -> None:
        self.scenario = scenario
        self.options = options
        self.catalog = catalog or load_catalog()
        self.progress = progress
        self.walls = _Walls()
        self.alarms: list[Alarm] = []
        self.timeline_log: list[dict[str, Any]] = []
        self.drills: list[dict[str, Any]] = []
        self.closed_periods: list[ClosedPeriod] = []
        self.billing: list[BillingRun] = []
        self.interrupted = False
        self._outbox: list[tuple[int, int, ConcentratorBatch]] = []  # (sent_at_us, order, batch) heap
        self._pending: list[tuple[int, int, PreparedBatch]] = []  # (arrives_at_us, order, batch) heap
        self._order = itertools.count()
        self._captured: Captured | None = None
        self._register_reads_at: set[dt.datetime] = set()
        self.run_id = uuid.uuid4().hex[:10]
        self.plugins: list[SystemPlugin] = [PLUGINS[s]() for s in scenario.systems if s in PLUGINS]
        self.context: RunContext | None = None
        self.faults: list[ScheduledFault] = []

    # --- the whole run -----------------------------------------------------------------------
    async def run(self) -> RunResult:
        began = time.perf_counter()
        scenario, options = self.scenario, self.options
        with self.walls.timing("setup"):
            simulation = self._simulation()  # checks the scenario's devices before anything is written
        out = options.out
        out.mkdir(parents=True, exist_ok=True)
        (out / "scenario.yaml").write_text(scenario.to_yaml(), encoding="utf-8")
        clock = FabricClock(scenario.time.start)
        # created in wall time: TLS (OpenADR) judges the CA and its CRL by the wall clock; the actors' certificates
        # are issued in simulated time, which the fabric judges them by
        ca = CertificateAuthority.init(out / "pki", name=f"gridloom run {scenario.name}")
        auditor = ca.issue("auditor", "auditor", clock=clock, validity=self._validity())
        audit = AuditLog(out / "audit.jsonl", signing_key=auditor.signing_key, clock=clock)
        store = open_store(options.store or out / "mdms.duckdb")
        transport = self._transport()
        try:
            async with transport:
                fabric = Fabric(
                    catalog=self.catalog, transport=transport, trust=TrustStore(ca.certificate), clock=clock,
                    audit=audit, prefix=self._prefix,
                )  # fmt: skip
                self.walls.handlers = fabric.stats.handler_seconds
                actors = await self._start_actors(fabric, ca, clock, simulation, store)
                try:
                    try:
                        await self._simulate(fabric, clock, simulation, actors, ca)
                    except asyncio.CancelledError:
                        self.interrupted = True
                        self._alarm(
                            clock(), "warning", "runner", "run interrupted (Ctrl-C): stopped, keeping what was stored"
                        )
                    await self._finish(fabric, clock, simulation, actors)
                    if self._runs("billing") and not self.interrupted:
                        self.billing = await self._bill(fabric, simulation, actors, self._cis(simulation))
                    metrics = self._metrics(fabric, simulation, actors)
                finally:  # a system holding a server (the LMS's VTN) stops on errors too
                    await self._stop_actors(fabric, actors)
        finally:
            store.close()
            audit.close()
        metrics["wall_s"]["total"] = round(time.perf_counter() - began, 3)
        with self.walls.timing("report"):
            from gridloom.scenario.report import write_report  # the report's plotting is heavy to import

            write_report(metrics, out / "report.html")
        metrics["wall_s"]["report"] = round(self.walls.seconds["report"], 3)
        (out / "metrics.json").write_text(json.dumps(metrics, indent=1, sort_keys=False), encoding="utf-8")
        return RunResult(out, metrics, self.interrupted)

    # --- set-up ------------------------------------------------------------------------------
    @property
    def _prefix(self) -> str:
        """Subjects of this run: on a shared NATS server, runs must not see each other's messages."""
        return "gl" if self.options.bus is None else f"gl{self.run_id}"

    def _transport(self) -> Transport:
        if self.options.bus is None:
            return MemoryTransport()
        from gridloom.fabric.transports.nats import JetStreamTransport

        return JetStreamTransport(self.options.bus, stream=f"GRIDLOOM_RUN_{self.run_id}", subjects=f"{self._prefix}.>")

    def _validity(self) -> dt.timedelta:
        return dt.timedelta(days=self.scenario.time.days + 30)

    @property
    def _ctx(self) -> RunContext:
        if self.context is None:
            raise ScenarioError("the run's systems are not started yet")
        return self.context

    def _runs(self, system: str) -> bool:
        return system in self.scenario.systems

    def _simulation(self) -> Simulation:
        scenario = self.scenario
        district = load_district(scenario.grid.district)
        connectivity = build_connectivity(district)
        check_devices(scenario, district=district, connectivity=connectivity)
        replicas = build_territory(district, scenario.grid.customers).replicas
        self.faults = plan_faults(scenario, connectivity, replicas, district.n_customers)
        return Simulation(
            self.simulation_config(), district=district, connectivity=connectivity, realtime=self.options.realtime,
            speed=self.options.speed,
        )  # fmt: skip

    def simulation_config(self) -> SimulationConfig:
        """The physics and fleets of the scenario (faults as planned by :meth:`_simulation`)."""
        scenario = self.scenario
        return SimulationConfig(
            district=scenario.grid.district,
            customers=scenario.grid.customers,
            days=scenario.time.days,
            start_at=scenario.time.start,
            seed=scenario.seed,
            ev_share=scenario.customers.ev_share,
            battery_share=scenario.customers.battery_share,
            comm=scenario.comm_config(),
            faults=tuple(self.faults),
        )

    def _cis(self, simulation: Simulation) -> Cis:
        """The CIS of the territory: its customers, accounts, meters and tariffs (PV owners in net metering)."""
        return cis_for_territory(
            simulation.territory,
            net_metered=simulation.fleets.meters.net_metered,
            tariff_shares=self.scenario.customers.tariff_shares,
            seed=self.scenario.seed,
        )

    async def _start_actors(
        self, fabric: Fabric, ca: CertificateAuthority, clock: FabricClock, simulation: Simulation,
        store: MeterDataStore,
    ) -> _Actors:  # fmt: skip
        catalog, validity = self.catalog, self._validity()
        fleets = simulation.fleets

        def issue(role: str, instance: str) -> Identity:
            return ca.issue(role, instance, catalog=catalog, clock=clock, validity=validity, save=False)

        with self.walls.timing("ami_headend"):
            subscriptions = tuple(sub for plugin in self.plugins for sub in plugin.headend_subscriptions())
            config = HeadEndConfig(sweep_interval_s=None, event_subscriptions=subscriptions)
            headend = await HeadEnd.attach(fabric, issue("ami_headend", "headend-1"), config=config)
        with self.walls.timing("mdms"):
            meters = fleets.meters
            core = Mdms(
                store,
                clock=clock,
                net_metered=dict(zip(meters.meter_id.tolist(), meters.net_metered.tolist(), strict=True)),
            )
            mdms = await MdmsActor.attach(fabric, issue("mdms", "mdms-1"), core)
        with self.walls.timing("fabric"):
            # events on their own path at the head-end: a storm's last gasps never wait behind reads
            network = MeterNetwork(
                meters, fleets.concentrators, headend=headend.instance, clock=clock, separate_event_path=True
            )
            identities = issue_concentrator_identities(ca, fleets.concentrators, catalog=catalog, clock=clock)
            await network.attach(fabric, identities)
            headend.register_meters(network.routes())
        actors = _Actors(headend, mdms, network)
        if self._runs("billing"):
            inbox: asyncio.Queue[Message] = asyncio.Queue()

            async def keep(message: Message) -> None:
                await inbox.put(message)

            actors.billing_inbox = inbox
            actors.billing_endpoint = await fabric.attach(issue("billing", "billing-1"), keep)
        self.context = RunContext(
            scenario=self.scenario, out=self.options.out, catalog=catalog, fabric=fabric, clock=clock,
            simulation=simulation, headend=headend, mdms=mdms, network=network, issue=issue, alarm=self._alarm,
            log=self._log,
        )  # fmt: skip
        started: list[SystemPlugin] = []
        try:
            for plugin in self.plugins:
                with self.walls.timing(plugin.key):
                    await plugin.start(self.context)
                started.append(plugin)
        except BaseException:
            for plugin in started:
                await plugin.stop(self.context)
            raise
        return actors

    async def _stop_actors(self, fabric: Fabric, actors: _Actors) -> None:
        for plugin in self.plugins:
            with self.walls.timing(plugin.key):
                await plugin.stop(self._ctx)
        await actors.network.close()
        await actors.headend.close()
        await fabric.close()

    # --- the simulated days ------------------------------------------------------------------
    async def _simulate(
        self, fabric: Fabric, clock: FabricClock, simulation: Simulation, actors: _Actors, ca: CertificateAuthority
    ) -> None:
        timeline = [
            (at, event)
            for at, event in self.scenario.schedule()
            if isinstance(event, MeterFirmwareEvent | AttackDrillEvent)
        ]
        done_faults = False
        await self._advance(fabric, clock, actors, clock())  # what the systems want done when the run starts
        steps = simulation.steps()
        total = simulation.total_steps
        step_no = 0
        while True:
            with self.walls.timing("physics"):
                step = next(steps, None)
            if step is None:
                break
            step_no += 1
            if not done_faults:
                self._log_faults(simulation)
                done_faults = True
            self._hand_over([*step.collection.event_batches, *step.collection.read_batches])
            await self._advance(fabric, clock, actors, step.end)
            for plugin in self.plugins:
                with self.walls.timing(plugin.key):
                    await plugin.after_step(self._ctx, step)
            if step.end.time() == MIDNIGHT and step_no < total:
                await self._register_reads(fabric, actors, step.end)
            if step.end.time() == NIGHTLY_VEE_AT and step.end - self.scenario.time.start > dt.timedelta(days=1):
                # late reads of yesterday are in by now (the backhaul's delays are minutes)
                await self._nightly_vee(clock, simulation, actors, step.end.replace(hour=0, minute=0))
            # Timeline actions due before the next interval begins.
            while timeline and timeline[0][0] <= step.end:
                at, event = timeline.pop(0)
                await self._act(at, event, fabric, clock, simulation, actors, ca)
            self._report_progress(fabric, step, step_no, total)
            await asyncio.sleep(0)  # a cancellation (Ctrl-C) lands here, between steps

    def _hand_over(self, batches: list[ConcentratorBatch]) -> None:
        """The concentrators' batches of a step, to be sent when each concentrator sends it (:meth:`_advance`)."""
        for batch in batches:
            heapq.heappush(self._outbox, (batch.sent_at_us, next(self._order), batch))

    async def _advance(self, fabric: Fabric, clock: FabricClock, actors: _Actors, until: dt.datetime) -> None:
        """Move the clock to ``until`` through everything that happens before it, in time order: a concentrator
        sends a batch (signed and encrypted then), the backhaul delivers one (published then, so DGM-20's latency
        is the backhaul's delay), a plugged-in system asked for the clock (:meth:`SystemPlugin.due_at`)."""
        limit = round(until.timestamp() * _US)
        outbox, pending = self._outbox, self._pending
        ticked: set[tuple[int, str]] = set()  # a system still due at the same moment after its tick waits
        while True:
            sends_us = outbox[0][0] if outbox else None
            arrives_us = pending[0][0] if pending else None
            due = self._next_due()
            if due is not None and (due[0], due[1].key) in ticked:
                due = None
            first = min((t for t in (sends_us, arrives_us, due[0] if due else None) if t is not None), default=None)
            if first is None or first > limit:
                clock.advance_to(until)
                return
            clock.advance_to(dt.datetime.fromtimestamp(first / _US, dt.UTC))
            if sends_us == first:
                with self.walls.timing("fabric"):
                    for prepared in actors.network.prepare([heapq.heappop(outbox)[2]]):
                        heapq.heappush(pending, (prepared.arrives_at_us, next(self._order), prepared))
            elif arrives_us == first:
                _, _, batch = heapq.heappop(pending)
                with self.walls.timing("fabric"):
                    await actors.network.deliver([batch])
                    await fabric.transport.drain()
                subject, frame, _ = batch.built[0]
                self._captured = Captured(subject, frame)  # what an attacker on the backhaul could have kept
            elif due is not None:
                due_us, plugin = due
                ticked.add((due_us, plugin.key))
                with self.walls.timing(plugin.key):
                    await plugin.tick(self._ctx)
                    await fabric.transport.drain()

    def _last_arrival(self, clock: FabricClock) -> dt.datetime:
        """When the last batch still on its way arrives (everything sent is delivered at the end of a run)."""
        latest = max(
            [clock(), *(dt.datetime.fromtimestamp(b.arrives_at_us / _US, dt.UTC) for _, _, b in self._outbox),
             *(dt.datetime.fromtimestamp(t / _US, dt.UTC) for t, _, _ in self._pending)]
        )  # fmt: skip
        return latest + dt.timedelta(minutes=5)  # and what the systems do with it

    def _next_due(self) -> tuple[int, SystemPlugin] | None:
        """The earliest time a plugged-in system asked for (µs), and which system; never before now."""
        if self.context is None:
            return None
        now_us = round(self.context.clock().timestamp() * _US)
        dues = [(max(round(at.timestamp() * _US), now_us), p) for p in self.plugins if (at := p.due_at()) is not None]
        return min(dues, key=lambda d: d[0]) if dues else None

    async def _register_reads(self, fabric: Fabric, actors: _Actors, at: dt.datetime) -> None:
        """At midnight the meters send their register reads (the VEE checks the day's intervals against them)."""
        if at in self._register_reads_at:
            return
        self._register_reads_at.add(at)
        with self.walls.timing("fabric"):
            await actors.network.send_register_reads(at)
            await fabric.transport.drain()

    async def _nightly_vee(self, clock: FabricClock, simulation: Simulation, actors: _Actors, end: dt.datetime) -> None:
        """The MDMS validates and estimates the days up to ``end`` it has not closed yet, one day at a time."""
        start = self.closed_periods[-1].end if self.closed_periods else self.scenario.time.start
        while start < end:
            stop = min(end, start + dt.timedelta(days=1))
            with self.walls.timing("mdms"):
                await actors.mdms.flush()
                closed = actors.mdms.core.close_period(start, stop, simulation.fleets.meters.meter_id.tolist())
            self.closed_periods.append(closed)
            self._vee_alarms(clock(), closed)
            for plugin in self.plugins:
                with self.walls.timing(plugin.key):
                    await plugin.end_of_day(self._ctx, start, stop)
            start = stop

    async def _finish(self, fabric: Fabric, clock: FabricClock, simulation: Simulation, actors: _Actors) -> None:
        """The end of the run (or Ctrl-C): what is still on its way arrives; the last days are validated."""
        await self._advance(fabric, clock, actors, self._last_arrival(clock))
        end = simulation.fleets.meters.measured_until or self.scenario.time.start
        await self._register_reads(fabric, actors, end)
        await self._nightly_vee(clock, simulation, actors, end)

    async def _act(
        self, at: dt.datetime, action: MeterFirmwareEvent | AttackDrillEvent, fabric: Fabric, clock: FabricClock,
        simulation: Simulation, actors: _Actors, ca: CertificateAuthority,
    ) -> None:  # fmt: skip
        """A timeline event between two steps: it takes effect from the next interval on."""
        meters = simulation.fleets.meters
        if isinstance(action, MeterFirmwareEvent):
            rng = np.random.default_rng([self.scenario.seed, 7, len(self.timeline_log)])
            affected = np.flatnonzero(rng.random(meters.n) < action.share)
            if action.problem == "clock_jump":
                seconds = float(action.seconds or 0.0)
                meters.firmware_clock_jump(affected, seconds)
                detail = f"{affected.size} meters' clocks jump {seconds:+.0f} s"
            else:
                duration = float(action.duration or 0.0)
                meters.firmware_silence(affected, at + dt.timedelta(seconds=duration))
                detail = f"{affected.size} meters stop sending reads for {duration / 3600:.1f} h"
            self._log(at, action.kind, detail)
            self._alarm(at, "info", "scenario", f"meter firmware problem: {detail}")
        else:
            clock.advance_to(at)
            with self.walls.timing("drills"):
                results = await run_drill(
                    fabric, ca, self.catalog, attacks=action.attacks, headend=actors.headend.instance,
                    network=actors.network, captured=self._captured, validity=self._validity(),
                )  # fmt: skip
            for result in results:
                self.drills.append({"at": at.isoformat(), **result.as_dict()})
            passed = sum(r.passed for r in results)
            self._log(at, action.kind, f"{len(results)} attacks, {passed} refused as expected")
            severity = "info" if passed == len(results) else "critical"
            self._alarm(at, severity, "fabric", f"attack drill: {passed} of {len(results)} attacks refused")

    def _log_faults(self, simulation: Simulation) -> None:
        for result in simulation.summary.faults:
            fault = result.fault
            device = str(simulation.connectivity.device_id[fault.device])
            kind = "permanent" if fault.permanent else "temporary"
            self._log(fault.at, "fault", f"{kind} fault below {device} (substation {fault.replica})")
            gaps = result.interruptions.of_territory(simulation.district.n_customers, simulation.summary.customers)
            customers = int(np.unique(gaps.territory_index(simulation.district.n_customers)[~gaps.momentary]).size)
            if customers:
                self._alarm(fault.at, "warning", "grid", f"{device} operated: {customers} customers out")

    def _vee_alarms(self, at: dt.datetime, closed: ClosedPeriod) -> None:
        drift = int(closed.flagged.get("clock_drift", 0))
        if drift:
            self._alarm(at, "warning", "mdms", f"VEE: {drift} reads with meter clocks off (clock_drift)")
        if closed.unestimated:
            self._alarm(at, "warning", "mdms", f"VEE: {closed.unestimated} intervals could not be estimated")

    def _log(self, at: dt.datetime, kind: str, detail: str) -> None:
        self.timeline_log.append({"at": at.isoformat(), "kind": kind, "detail": detail})

    def _alarm(self, at: dt.datetime, severity: str, source: str, text: str) -> None:
        self.alarms.append(Alarm(at, severity, source, text))

    def _report_progress(self, fabric: Fabric, step: StepResult, step_no: int, total: int) -> None:
        if self.progress is None:
            return
        snapshot = fabric.stats.snapshot()
        self.progress(
            RunProgress(
                at=step.end,
                step=step_no,
                total_steps=total,
                delivered={row["interface"]: row["delivered"] for row in snapshot if row["delivered"]},
                rejections=sum(fabric.stats.total_rejections().values()),
                alarms=self.alarms,
            )
        )

    # --- billing over AMI-24 -------------------------------------------------------------------
    async def _bill(self, fabric: Fabric, simulation: Simulation, actors: _Actors, cis: Cis) -> list[BillingRun]:
        """Billing asks the MDMS for the run's usage (AMI-24, encrypted) and rates the cycles covering the run:
        local months, and short cycles carrying their share of the monthly charges where the run starts or ends."""
        start, end = self.scenario.time.start, simulation.fleets.meters.measured_until or self.scenario.time.start
        meter_ids = simulation.fleets.meters.meter_id.tolist()
        rows = USAGE_ROWS_PER_REQUEST
        if (limit := fabric.transport.max_payload_bytes) is not None:
            rows = min(rows, limit // 2 // USAGE_BYTES_PER_ROW)  # half: the envelope, sealing and signature
        per_request = max(1, rows // max(1, round((end - start).total_seconds() / STEP_S)))
        parts = []
        with self.walls.timing("billing"):
            endpoint, inbox = actors.billing_endpoint, actors.billing_inbox
            if endpoint is None or inbox is None:
                raise ScenarioError("billing runs only with its actor started (systems: billing)")
            for n, lo in enumerate(range(0, len(meter_ids), per_request)):
                await endpoint.send(
                    "AMI-24", "usage_request",
                    {"request_id": f"bill-{n}", "meter_ids": meter_ids[lo : lo + per_request],
                     "start_us": round(start.timestamp() * _US), "end_us": round(end.timestamp() * _US)},
                    to=actors.mdms.endpoint.instance if actors.mdms.endpoint else "mdms-1",
                )  # fmt: skip
                await fabric.transport.drain()
                answer = await asyncio.wait_for(inbox.get(), timeout=60)
                parts.append(_usage_table(answer.body))
            usage = pa.concat_tables(parts) if parts else READS_SCHEMA.empty_table()
            prices = _price_proxy(simulation)
            dr = next((p for p in self.plugins if isinstance(p, DemandResponsePlugin)), None)
            credits = dr.dr_credits() if dr is not None else None
            critical = dr.critical_peak_accounts() if dr is not None else []
            return [
                _bill_cycle(cis, TableReads(usage), cycle, prices=prices, dr_credits=credits, critical_peak=critical)
                for cycle in BillingCycle.covering(start, end, timezone=cis.timezone)
            ]

    # --- metrics -----------------------------------------------------------------------------
    def _metrics(self, fabric: Fabric, simulation: Simulation, actors: _Actors) -> dict[str, Any]:
        walls = dict(self.walls.seconds)
        sim_seconds = simulation.summary.seconds
        walls["physics"] = (
            walls.get("physics", 0.0) - sim_seconds.get("meters and comms", 0.0) - sim_seconds.get("fleets", 0.0)
        )
        walls["fleets"] = sim_seconds.get("meters and comms", 0.0) + sim_seconds.get("fleets", 0.0)
        return run_metrics.build(
            scenario=self.scenario,
            status="interrupted" if self.interrupted else "completed",
            simulation=simulation,
            fabric=fabric,
            catalog=self.catalog,
            mdms=actors.mdms,
            network=actors.network,
            closed=self.closed_periods,
            billing=self.billing,
            timeline=self.timeline_log,
            drills=self.drills,
            alarms=[
                {"at": a.at.isoformat(), "severity": a.severity, "source": a.source, "text": a.text}
                for a in sorted(self.alarms, key=lambda a: a.at)
            ],
            wall_s={k: round(v, 3) for k, v in walls.items()},
            sections={plugin.key: plugin.metrics(self._ctx) for plugin in self.plugins},
            outside_fabric=[row for plugin in self.plugins for row in plugin.interfaces(self._ctx)],
        )


#: Systems beside the core ones, by catalog actor id: what the runner plugs in when a scenario names them.
PLUGINS: dict[str, Callable[[], SystemPlugin]] = {"oms": OutagePlugin, "lms": DemandResponsePlugin}

STORM_DEVICE_KINDS = (DeviceKind.FUSE, DeviceKind.FUSE, DeviceKind.SERVICE_TRANSFORMER, DeviceKind.RECLOSER)
STORM_REPAIR_S = (3600.0, 4 * 3600.0)  # crews repair each permanent storm fault within 1-4 h


def plan_faults(
    scenario: Scenario, connectivity: ConnectivityModel, replicas: int, n_district: int
) -> list[ScheduledFault]:
    """The faults of the timeline, random devices and storms drawn with the scenario's seed.

    A storm strikes devices with served customers below them (the last substation of a territory
    may serve only part of its district).
    """
    rng = np.random.default_rng([scenario.seed, 11])
    customers = scenario.grid.customers
    faults = []
    for at, event in scenario.schedule():
        if isinstance(event, FaultEvent):
            device = event.device
            if device is None:
                candidates = connectivity.devices_of_kind(RANDOM_KINDS[str(event.random)])
                device = str(connectivity.device_id[rng.choice(candidates)])
            faults.append(ScheduledFault(at=at, device=device, replica=event.substation,
                                         permanent=not event.temporary, repair_after_s=event.repair))  # fmt: skip
        elif isinstance(event, StormEvent):
            offsets = np.sort(rng.uniform(0, event.duration, event.faults))
            for offset in offsets:
                replica = int(rng.integers(replicas))
                served = min(n_district, customers - replica * n_district)  # local customers 0..served-1
                kind = STORM_DEVICE_KINDS[rng.integers(len(STORM_DEVICE_KINDS))]
                struck = [
                    d for d in connectivity.devices_of_kind(kind)
                    if connectivity.downstream_customers(d).size and connectivity.downstream_customers(d)[0] < served
                ]  # fmt: skip
                device = str(connectivity.device_id[rng.choice(struck)])
                permanent = bool(rng.random() >= event.temporary_share)
                # a temporary fault below a fuse still blows it: crews replace it like any repair
                repair = float(rng.uniform(*STORM_REPAIR_S))
                faults.append(
                    ScheduledFault(at=at + dt.timedelta(seconds=round(float(offset))), device=device,
                                   replica=replica, permanent=permanent, repair_after_s=repair)
                )  # fmt: skip
    return faults


def _bill_cycle(
    cis: Cis, reads: TableReads, cycle: BillingCycle, *, prices: PriceSeries, dr_credits: pa.Table | None,
    critical_peak: list[tuple[list[str], list[CriticalPeakEvent]]],
) -> BillingRun:  # fmt: skip
    """One cycle's bills, with the DR credits; the accounts in critical-peak events are rated with their windows."""
    if not critical_peak:
        return run_billing(cis, reads, cycle=cycle, prices=prices, min_coverage=0.95, dr_credits=dr_credits)
    grouped = {a for accounts, _ in critical_peak for a in accounts}
    everyone = pc.unique(cis.service_windows(start=cycle.start_at, end=cycle.end_at)["account_id"]).to_pylist()
    groups = [(a, e) for a, e in critical_peak if a] + [([a for a in everyone if a not in grouped], [])]
    runs = [
        run_billing(cis, reads, cycle=cycle, prices=prices, min_coverage=0.95, dr_credits=dr_credits,
                    account_ids=accounts, events=events)
        for accounts, events in groups if accounts
    ]  # fmt: skip
    if len(runs) == 1:
        return runs[0]
    first = runs[0]
    seconds: defaultdict[str, float] = defaultdict(float)
    for run in runs:
        for part, spent in run.seconds.items():
            seconds[part] += spent
    return BillingRun(
        run_id=first.run_id, cycle=first.cycle, bills=pa.concat_tables([r.bills for r in runs]),
        lines=pa.concat_tables([r.lines for r in runs]), unbilled_wh=sum(r.unbilled_wh for r in runs),
        reads_used=sum(r.reads_used for r in runs), seconds=dict(seconds),
    )  # fmt: skip


def _usage_table(body: dict[str, Any]) -> pa.Table:
    """An AMI-24 answer as reads (current versions, as the MDMS sent them)."""
    n = len(body["meter_id"])
    records = {**body, "reactive_varh": [0.0] * n, "voltage_v": [0.0] * n}
    table = reads_table(records, recorded_at=dt.datetime.now(dt.UTC))
    return table.set_column(
        table.schema.get_field_index("version"), "version", pa.array(body["version"], pa.int32())
    ).set_column(table.schema.get_field_index("source"), "source", pa.array(body["source"], pa.string()))


def _price_proxy(simulation: Simulation) -> PriceSeries:
    """Hourly prices for real-time tariffs until a market clears them: 5-15 ct/kWh following the
    territory's own load (the marginal price rises with demand)."""
    summary = simulation.summary
    load = np.asarray(summary.substation_p_w) + np.asarray(summary.generation_mv_p_w)
    if not load.size:
        return PriceSeries.from_pairs([])
    hours = load[: load.size // 4 * 4].reshape(-1, 4).mean(axis=1) if load.size >= 4 else load
    span = max(float(hours.max() - hours.min()), 1.0)
    prices = 0.05 + 0.10 * (hours - hours.min()) / span
    start = summary.step_at[0]
    return PriceSeries.from_pairs(
        [(start + dt.timedelta(hours=h), float(Decimal(f"{p:.4f}"))) for h, p in enumerate(prices)]
    )


async def run_scenario(
    scenario: Scenario,
    options: RunOptions,
    *,
    catalog: Catalog | None = None,
    progress: Callable[[RunProgress], None] | None = None,
) -> RunResult:
    """Run ``scenario`` into ``options.out`` (see :class:`Runner`)."""
    return await Runner(scenario, options, catalog=catalog, progress=progress).run()
