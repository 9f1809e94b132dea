"""Demand response in a scenario run: the LMS/DRMS, its customers' HAN gateways and their flexible loads.

With ``lms`` in a scenario's systems the runner starts, beside its core actors:

* the **LMS** (role ``lms``) with the head-end for direct load control. Its OpenADR 2.0b VTN is not
  started: OpenADR over TLS inside the runner is out of scope for now, so the runner runs direct load
  control only (``program: dlc``; the scenario file refuses the OpenADR programs);
* the **CIS's DR side** (role ``cis``): it sends the LMS its enrolment over DGM-22 and takes the
  LMS's event records back. ``programs.demand_response_share`` of the residential LV customers are
  enrolled in the DLC program, drawn with the scenario's seed; each row's sheddable load is what
  the devices the ESI switches draw on average over the run (see below);
* one **ESI gateway** identity (role ``esi``) for the enrolled customers' HAN gateways, as a
  concentrator speaks for its meters, with a :class:`~gridloom.devices.flex.FlexFleet` of their
  switched devices: air conditioner, water heater, pool pump (the territory's PV, PEVs and home
  batteries are the simulation's own fleets, not under load control yet).

A ``demand_response`` event of the timeline is the DMS's requirement (no DMS runs yet, so the runner
hands it to :meth:`~gridloom.systems.lms.service.Lms.dispatch`, the LMS's DGM-16 entry): ``notice``
before the window (or when the run starts, if later) the LMS plans it and sends AMI-12c
``load_control_event`` to the head-end, which relays it on AMI-27 to the ESI; the ESI confirms
at once and acts on its sites from the first step of the window.

**What the grid sees.** The SimBench profiles stand for what the customers draw without demand
response, so the switched devices are part of them. A twin fleet with the same seed steps beside
the ESI's fleet without any event (the counterfactual); before each step's power flow the
simulation adds, per enrolled customer, the fleet's load minus the twin's
(:attr:`~gridloom.grid.simulate.Simulation.load_adjustment`): zero until the ESI acts, below zero
while it sheds, above zero while the devices catch up afterwards. Both fleets see one summer day's
outdoor temperature (:func:`outdoor_c`, 18 °C at 03:00 to 31 °C at 15:00 UTC) and irradiance
(:func:`irradiance`).

**Sites sized to the homes.** The synthetic sites are sized for homes with air conditioning; the
district's households draw far less. Each site is scaled to its customer (the device model is linear
in a site's size — thermal mass, losses and ratings scale together — so scaling the powers is
scaling the site): before the run both fleets are stepped once over the whole run, every site shed
in every event window, and a site's scale is the largest (at most 1) at which its devices draw on
average :data:`SHARE_OF_PROFILE` of what its customer's load profile draws, and at which it never
draws less than its twin by more than that share of what the profile typically draws at the moment
(its SimBench profile and reference power, the lowest value within the profiles' time shift). So a
shed never takes more than a home draws: no meter outside net metering runs backwards.

The run's metrics get a ``demand_response`` section: per event the twin's total ("baseline") and the
fleet's total ("actual") around the window, the shed per interval of the window, what the LMS
planned and the ESI confirmed, and the settlement, which needs prior days of MDMS reads the run
may not have (then it says so instead of settling).
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from gridloom.catalog.messages import DeclaredType
from gridloom.devices.flex import FlexFleet, FlexShares
from gridloom.devices.flex_han import EsiGateway
from gridloom.errors import GridloomError, ScenarioError
from gridloom.fabric import Endpoint, Message
from gridloom.fabric.envelope import to_micros
from gridloom.grid.connectivity import DeviceKind
from gridloom.grid.model import LV_VOLT_LEVEL
from gridloom.grid.profiles import STEP_S, load_table, profile_step
from gridloom.grid.simulate import Simulation, StepResult
from gridloom.scenario.plugin import RunContext
from gridloom.scenario.spec import DemandResponseEvent
from gridloom.systems.cis.build import cis_for_territory
from gridloom.systems.cis.model import Cis, CustomerClass
from gridloom.systems.headend.config import EventSubscription
from gridloom.systems.lms.baseline import BaselineRule
from gridloom.systems.lms.service import Lms
from gridloom.systems.lms.wire import Enrolments, Requirement

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.intp]

LMS_INSTANCE, ESI_INSTANCE, CIS_INSTANCE = "lms-1", "esi-1", "cis-1"
PROGRAM = "dlc"
URGENCY = "reliability"  # a notified peak event; the planner serves it from the DLC program
#: The devices the ESI switches at each enrolled site (the territory's PV, PEVs and batteries are simulated apart).
SHARES = FlexShares(ev=0.0, battery=0.0, pv=0.0)
#: A site's switched devices draw on average this share of what its customer's profile draws, and shed at most
#: this share of what the profile typically draws at the moment.
SHARE_OF_PROFILE = 0.3
BYTES_PER_ROW = 100  # a DGM-22 row (enrolment or event record) encoded, with room to spare
MARGIN = dt.timedelta(hours=3)  # the series of an event start and end this far around its window
_H = STEP_S / 3600.0


def outdoor_c(at: dt.datetime) -> float:
    """A summer day's outdoor temperature (°C): 18 at 03:00 UTC rising to 31 at 15:00, a sine over 24 h."""
    hour = at.hour + at.minute / 60.0
    return 24.5 + 6.5 * math.sin(2.0 * math.pi * (hour - 9.0) / 24.0)


def irradiance(at: dt.datetime) -> float:
    """PV output as a fraction of peak: a clear day from 06:00 to 18:00 UTC."""
    hour = at.hour + at.minute / 60.0
    return max(0.0, math.sin(math.pi * (hour - 6.0) / 12.0))


@dataclass
class _Event:
    """One timeline event as the plugin follows it."""

    requirement_id: str
    spec: DemandResponseEvent
    start: dt.datetime
    end: dt.datetime
    notice_at: dt.datetime
    dispatched_at: dt.datetime | None = None
    status: str = "pending"
    planned_w: float = 0.0
    commanded: int = 0
    settlement: str | dict[str, Any] = "not settled: the run ended before the MDMS closed the event's day"
    settled: bool = False

    @property
    def event_id(self) -> str:
        return f"{self.requirement_id}-{PROGRAM}"

    @property
    def name(self) -> str:
        return f"{self.requirement_id}: {self.spec.program.upper()} {self.start:%H:%M}-{self.end:%H:%M} UTC"


@dataclass
class _Enrolled:
    """The enrolled customers: positions in the territory (= the meter fleet's order) and their rows."""

    customers: IntArray
    meter_ids: list[str]
    account_ids: list[str]
    feeders: list[str]
    eligible: int
    size: FloatArray = field(default_factory=lambda: np.zeros(0))  # each site's scale (see the module docstring)
    capacity_w: FloatArray = field(default_factory=lambda: np.zeros(0))


@dataclass
class _Series:
    at: list[dt.datetime] = field(default_factory=list)
    baseline_w: list[float] = field(default_factory=list)
    actual_w: list[float] = field(default_factory=list)


class DemandResponsePlugin:
    """The LMS, the CIS's DR side and the enrolled customers' ESI of a run (scenario systems: ``lms``)."""

    key = "demand_response"

    def __init__(self) -> None:
        self.lms: Lms | None = None
        self.esi: EsiGateway | None = None
        self.fleet: FlexFleet | None = None  # the enrolled sites, acting on the ESI's controls
        self.twin: FlexFleet | None = None  # the same sites without any event: the counterfactual
        self.enrolled: _Enrolled | None = None
        self.events: list[_Event] = []
        self.series = _Series()
        self.records_received = 0  # DGM-22 event-record rows the CIS got from the LMS
        self.timezone = "UTC"
        self._cis: Endpoint | None = None
        self._n_customers = 0

    def headend_subscriptions(self) -> tuple[EventSubscription, ...]:
        return ()

    # ------------------------------------------------------------------ start
    async def start(self, ctx: RunContext) -> None:
        scenario, simulation = ctx.scenario, ctx.simulation
        start = ctx.clock()
        for k, (at, event) in enumerate(
            ((at, e) for at, e in scenario.schedule() if isinstance(e, DemandResponseEvent)), start=1
        ):
            end = at + dt.timedelta(seconds=event.duration)
            self.events.append(_Event(f"dr-{k}", event, at, end, max(start, at - dt.timedelta(seconds=event.notice))))
        cis = cis_for_territory(
            simulation.territory, net_metered=simulation.fleets.meters.net_metered,
            tariff_shares=scenario.customers.tariff_shares, seed=scenario.seed,
        )  # fmt: skip
        self.timezone = cis.timezone
        self._n_customers = simulation.territory.customers
        enrolled = _enrol(simulation, cis, share=scenario.programs.demand_response_share, seed=scenario.seed)
        self.enrolled = enrolled
        lms = self.lms = Lms(
            ctx.fabric, ctx.issue("lms", LMS_INSTANCE), headend=ctx.headend.instance, cis=CIS_INSTANCE,
            timezone=cis.timezone,
        )  # fmt: skip
        await lms.start()
        self._cis = await ctx.fabric.attach(ctx.issue("cis", CIS_INSTANCE), self._cis_inbox)
        n = enrolled.customers.size
        limit = ctx.fabric.transport.max_payload_bytes
        if limit is not None and n * BYTES_PER_ROW > limit // 2:  # half: the envelope, sealing and signature
            raise ScenarioError(
                f"{n:,} customers enrolled in demand response make DGM-22 messages larger than the bus carries "
                f"({limit:,} bytes a message): lower programs.demand_response_share or grid.customers, or run "
                "without --bus"
            )
        if n:
            seed = int(np.random.SeedSequence([scenario.seed, 14]).generate_state(1)[0])
            self.fleet = FlexFleet.synthetic(n, seed=seed, shares=SHARES)
            self.twin = FlexFleet.synthetic(n, seed=seed, shares=SHARES)
            windows = [(e.start, e.end) for e in self.events]
            enrolled.size, enrolled.capacity_w = _sizes(simulation, enrolled.customers, windows, seed=seed)
            self.esi = EsiGateway(ctx.fabric, ctx.issue("esi", ESI_INSTANCE), self.fleet, enrolled.meter_ids)
            await self.esi.start()
            simulation.load_adjustment = self._load_adjustment
            simulation.chunk_steps = 1  # the ESI acts between steps
        body = Enrolments(
            account_id=enrolled.account_ids, meter_id=enrolled.meter_ids, program=[PROGRAM] * n,
            ven_id=[""] * n, feeder=enrolled.feeders, capacity_w=enrolled.capacity_w.tolist(), dlc=[True] * n,
        )  # fmt: skip
        await self._cis.send("DGM-22", DeclaredType.DR_ENROLMENTS, body, to=LMS_INSTANCE)
        await ctx.fabric.transport.drain()
        who = f"{n} of {enrolled.eligible} residential LV customers enrolled in direct load control"
        ctx.log(start, "demand_response", f"{who}; the LMS has {lms.stats.enrolled}")
        await self._dispatch_due(ctx)  # events notified when the run starts act from its first step
        await ctx.fabric.transport.drain()

    async def _cis_inbox(self, message: Message) -> None:
        """The CIS's side of DGM-22: the LMS's records of what it asked of whom (billing uses them)."""
        if message.message_type == DeclaredType.DR_EVENT_RECORDS and isinstance(message.body, dict):
            self.records_received += len(message.body.get("account_id", []))

    # ------------------------------------------------------------------ the timeline
    def due_at(self) -> dt.datetime | None:
        pending = [e.notice_at for e in self.events if e.dispatched_at is None]
        return min(pending) if pending else None

    async def tick(self, ctx: RunContext) -> None:
        await self._dispatch_due(ctx)

    async def _dispatch_due(self, ctx: RunContext) -> None:
        now = ctx.clock()
        for event in self.events:
            if event.dispatched_at is None and event.notice_at <= now:
                await self._dispatch(ctx, event, now)

    async def _dispatch(self, ctx: RunContext, event: _Event, now: dt.datetime) -> None:
        """The DMS's requirement for the event goes to the LMS, which plans it and commands the head-end."""
        event.dispatched_at = now
        lms, enrolled = self.lms, self.enrolled
        if lms is None or enrolled is None:
            return
        # without shed_kw, every enrolled customer: what the LMS expects of them all
        available = float(enrolled.capacity_w.sum()) * (1.0 - lms.programs[PROGRAM].expected_opt_out)
        reduce_w = event.spec.shed_kw * 1000.0 if event.spec.shed_kw is not None else available
        if reduce_w <= 0:
            event.status = "nobody to ask"
            ctx.alarm(now, "warning", "lms", f"{event.name}: no enrolled customer can shed load; nothing dispatched")
            return
        feeders = sorted(set(enrolled.feeders))
        req = Requirement(event.requirement_id, feeders, reduce_w, to_micros(event.start), to_micros(event.end),
                          URGENCY)  # fmt: skip
        plan = await lms.dispatch(req)
        event.status, event.planned_w = plan.status, plan.expected_w
        event.commanded = int(sum(d.rows.size for d in plan.dispatches))
        expected = f"{plan.expected_w / 1000:,.0f} kW"
        what = f"the LMS commands {event.commanded} meters' HAN devices through the head-end, {expected} expected"
        ctx.log(now, "demand_response", f"{event.name}: {what}")
        if plan.status != "planned":
            offer = f"{reduce_w / 1000:,.0f} kW asked, the enrolment offers {expected}"
            ctx.alarm(now, "warning", "lms", f"{event.name}: {offer}")

    # ------------------------------------------------------------------ the physics
    def _load_adjustment(self, at: dt.datetime) -> FloatArray | None:
        """W per territory customer for the step at ``at``: the fleet's load minus the twin's."""
        fleet, twin, esi, enrolled = self.fleet, self.twin, self.esi, self.enrolled
        if fleet is None or twin is None or esi is None or enrolled is None:
            return None
        esi.tick(at)
        actual = enrolled.size * _step(fleet, at)
        baseline = enrolled.size * _step(twin, at)
        self.series.at.append(at)
        self.series.baseline_w.append(float(baseline.sum()))
        self.series.actual_w.append(float(actual.sum()))
        delta = actual - baseline
        if not delta.any():
            return None
        out = np.zeros(self._n_customers)
        out[enrolled.customers] = delta
        return out

    async def after_step(self, ctx: RunContext, step: StepResult) -> None:
        return None

    # ------------------------------------------------------------------ settlement
    async def end_of_day(self, ctx: RunContext, start: dt.datetime, end: dt.datetime) -> None:
        """Settle the events the MDMS has closed the day of, from its reads (10-in-10 baseline)."""
        lms, enrolled = self.lms, self.enrolled
        if lms is None or enrolled is None:
            return
        for event in self.events:
            if event.settled or event.end > end or event.event_id not in lms.events:
                continue
            event.settled = True
            rule = BaselineRule(timezone=self.timezone)
            meters = lms.enrolment.meter_id[lms.events[event.event_id].rows].tolist()
            reads = ctx.mdms.core.store.reads(
                meter_ids=meters, start=event.start - dt.timedelta(days=rule.lookback_days + 1), end=event.end
            )
            try:
                perf, credits = lms.settle(reads, event_ids=[event.event_id], rule=rule)
            except GridloomError as exc:
                event.settlement = f"not settled: {exc}"
                continue
            complete = perf.filter(perf["complete"])
            if complete.num_rows == 0:
                days = int(pc.max(perf["days_used"]).as_py() or 0) if perf.num_rows else 0
                event.settlement = (
                    f"not settled: the {rule.method.value} baseline needs {rule.days} prior days of reads like the "
                    f"event day's (at least {rule.min_days}); the run has {days}"
                )
                continue
            report = (await lms.report(event.requirement_id, perf, credits))[0]
            credit = pc.sum(pc.multiply(credits["reduction_wh"], credits["credit_per_kwh"])).as_py() or 0.0
            event.settlement = {
                **report.as_dict(), "accounts_credited": credits.num_rows, "credits": round(float(credit) / 1000, 2),
            }  # fmt: skip

    async def stop(self, ctx: RunContext) -> None:
        ctx.simulation.load_adjustment = None
        if self.esi is not None:
            await self.esi.close()
        if self.lms is not None:
            await self.lms.close()
        if self._cis is not None:
            await self._cis.close()
            self._cis = None

    # ------------------------------------------------------------------ metrics
    def metrics(self, ctx: RunContext) -> dict[str, Any]:
        lms, enrolled = self.lms, self.enrolled
        if lms is None or enrolled is None:
            return {"implemented": True, "ready": False, "events": []}
        return {
            "implemented": True,
            "program": PROGRAM,
            "eligible": enrolled.eligible,
            "enrolled": int(enrolled.customers.size),
            "share": ctx.scenario.programs.demand_response_share,
            "sheddable_kw": round(float(enrolled.capacity_w.sum()) / 1000, 1),
            "weather": "summer day: 18 °C at 03:00 to 31 °C at 15:00 UTC, clear sky 06:00-18:00",
            "openadr": "not in the scenario runner: the LMS runs without its VTN, direct load control only",
            "lms": asdict(lms.stats),
            "load_control_relayed_by_headend": ctx.headend.stats.load_control_forwarded,
            "records_received_by_cis": self.records_received,
            "comfort_overrides": self.fleet.comfort_overrides if self.fleet is not None else 0,
            "events": [self._event_metrics(e, lms) for e in self.events],
        }

    def _event_metrics(self, event: _Event, lms: Lms) -> dict[str, Any]:
        at_us = np.array([to_micros(t) for t in self.series.at], dtype=np.int64)
        base, actual = np.asarray(self.series.baseline_w), np.asarray(self.series.actual_w)

        def span(lo: dt.datetime, hi: dt.datetime) -> npt.NDArray[np.bool_]:
            return (at_us >= to_micros(lo)) & (at_us < to_micros(hi))

        window = span(event.start - MARGIN, event.end + MARGIN)
        during, after = span(event.start, event.end), span(event.end, event.end + MARGIN)
        shed = (base[during] - actual[during]) / 1000
        tracked = lms.events.get(event.event_id)
        return {
            "name": event.name,
            "program": event.spec.program,
            "start": event.start.isoformat(),
            "end": event.end.isoformat(),
            "notified_at": event.dispatched_at.isoformat() if event.dispatched_at is not None else None,
            "status": event.status,
            "requested_kw": event.spec.shed_kw,
            "planned_kw": round(event.planned_w / 1000, 1),
            "meters_commanded": event.commanded,
            "meters_confirmed": len(tracked.dlc_done) if tracked is not None else 0,
            "meters_failed": len(tracked.dlc_failed) if tracked is not None else 0,
            "at": [t.isoformat() for t, keep in zip(self.series.at, window, strict=True) if keep],
            "baseline_kw": [round(float(w) / 1000, 3) for w in base[window]],
            "actual_kw": [round(float(w) / 1000, 3) for w in actual[window]],
            "shed_kw": [round(float(w), 3) for w in shed],
            "shed_kwh": round(float(shed.sum()) * _H, 2),
            "rebound_kwh": round(float((actual[after] - base[after]).clip(min=0).sum()) / 1000 * _H, 2),
            "settlement": event.settlement,
        }


def _enrol(simulation: Simulation, cis: Cis, *, share: float, seed: int) -> _Enrolled:
    """Draw ``share`` of the residential LV customers (with the seed); their accounts from the CIS, their feeders."""
    territory, district = simulation.territory, simulation.district
    meter_ids = simulation.fleets.meters.meter_id
    local = territory.local_of(territory.customer_index)
    # the CIS's class of each meter's customer: meter -> premise -> account -> customer -> class
    premise = cis.meters["premise_id"].take(pc.index_in(pa.array(meter_ids.tolist()), cis.meters["meter_id"]))
    rows = pc.index_in(premise, cis.accounts["premise_id"])
    account = cis.accounts["account_id"].take(rows)
    customer = cis.accounts["customer_id"].take(rows)
    klass = cis.customers["customer_class"].take(pc.index_in(customer, cis.customers["customer_id"]))
    residential = np.asarray(pc.fill_null(pc.equal(klass, CustomerClass.RESIDENTIAL.value), False))
    eligible = residential & (district.customer_volt_level[local] == LV_VOLT_LEVEL)
    draw = np.random.default_rng([seed, 13]).random(territory.customers)
    customers = np.flatnonzero(eligible & (draw < share)).astype(np.intp)
    return _Enrolled(
        customers=customers,
        meter_ids=meter_ids[customers].tolist(),
        account_ids=account.take(pa.array(customers)).to_pylist(),
        feeders=_feeders(simulation)[customers].tolist(),
        eligible=int(eligible.sum()),
    )


def _feeders(simulation: Simulation) -> npt.NDArray[np.str_]:
    """Each territory customer's feeder: its substation (replica) and the breaker above it, ``s000-brk-12``."""
    connectivity, territory = simulation.connectivity, simulation.territory
    feeder = np.full(simulation.district.n_customers, "substation", dtype=object)
    for breaker in connectivity.devices_of_kind(DeviceKind.BREAKER):
        feeder[connectivity.downstream_customers(int(breaker))] = str(connectivity.device_id[breaker])
    replica = territory.replica_of(territory.customer_index)
    local = territory.local_of(territory.customer_index)
    substation = np.char.add(np.char.add("s", np.char.zfill(replica.astype(str), 3)), "-")
    return np.char.add(substation, feeder[local].astype(str))


def _step(fleet: FlexFleet, at: dt.datetime) -> FloatArray:
    """The sites' switched devices' draw (W) over the step at ``at``, in the run's weather."""
    return fleet.step(at, STEP_S, outdoor_c=outdoor_c(at), irradiance=irradiance(at), base_w=0.0).load_w


def _sizes(
    simulation: Simulation, customers: IntArray, windows: list[tuple[dt.datetime, dt.datetime]], *, seed: int
) -> tuple[FloatArray, FloatArray]:
    """Each site's scale (see the module docstring) and its switched devices' mean draw over the run at that scale (W).

    Sites are independent, so one pass with every site shed in every window bounds any plan the LMS makes.
    """
    district, territory = simulation.district, simulation.territory
    local = territory.local_of(customers)
    table = load_table(district.net.profiles)
    columns = table.columns(district.customer_profile[local])
    p_ref_w = district.customer_p_ref_w[local]
    variation = simulation.config.variation
    shift = np.arange(-variation.shift_steps, variation.shift_steps + 1)
    shed = FlexFleet.synthetic(customers.size, seed=seed, shares=SHARES)
    twin = FlexFleet.synthetic(customers.size, seed=seed, shares=SHARES)
    everyone = np.arange(customers.size)
    ratio = np.full(customers.size, np.inf)  # the least typical draw / shed seen
    drawn_w, typical_sum_w = np.zeros(customers.size), np.zeros(customers.size)
    active = [False] * len(windows)
    steps = simulation.total_steps
    for k in range(steps):
        at = simulation.config.start_at + dt.timedelta(seconds=k * STEP_S)
        for i, (lo, hi) in enumerate(windows):  # as the ESI acts: from the first step in the window to its end
            if not active[i] and lo <= at < hi:
                shed.start_event(everyone, allow_opt_out=False)
                active[i] = True
            elif active[i] and at >= hi:
                shed.end_event(everyone)
                active[i] = False
        rows = (profile_step(at) + shift[:, None]) % table.p.shape[0]
        typical_w = p_ref_w * table.p[rows, columns[None, :]].min(axis=0)
        usual_w = _step(twin, at)
        drawn_w += usual_w
        typical_sum_w += typical_w
        less_w = usual_w - _step(shed, at)
        less = less_w > 0
        ratio[less] = np.minimum(ratio[less], typical_w[less] / less_w[less])
    with np.errstate(divide="ignore", invalid="ignore"):
        mean_ratio = np.where(drawn_w > 0, typical_sum_w / drawn_w, np.inf)
    size = np.minimum(1.0, SHARE_OF_PROFILE * np.minimum(ratio, mean_ratio))
    return size, size * drawn_w / max(steps, 1)
