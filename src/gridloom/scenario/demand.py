"""Demand response in a scenario run: the DMS's requirements, the LMS/DRMS, its customers' gateways and loads.

With ``lms`` in a scenario's systems the runner starts, beside its core actors:

* a **DMS** load-management desk (role ``dms``, instance ``dms-2``; the OMS plug-in's DMS is ``dms-1``):
  it sends each timeline event's requirement to the LMS as a DGM-16 ``load_management_requirement``
  (where, how much, when), reads the LMS's plan from the answer and later its AMI-7 ``dr_compliance``;
* the **LMS** (role ``lms``) with the head-end for direct load control and, when the timeline has an
  OpenADR event, its OpenADR 2.0b VTN over TLS on 127.0.0.1 (:mod:`.demand_vens`);
* the **CIS's DR side** (role ``cis``): it sends the LMS its enrolment over DGM-22 (in pages when it is
  larger than a message of the bus) and takes the LMS's event records back; the settled credits in
  them reach the run's billing (``Demand response credit`` lines on the bills).
  ``programs.demand_response_share`` of the residential LV customers are enrolled (drawn with the
  scenario's seed): those on a critical-peak tariff in the ``cpp`` program, ``programs.reliability_share``
  of the others in the ``reliability`` program, the rest in direct load control (``dlc``). Each row's
  sheddable load is what the customer's flexible devices draw on average over the run (see below);
* one **ESI gateway** identity (role ``esi``) for the enrolled customers' HAN gateways, as a
  concentrator speaks for its meters, with one :class:`~gridloom.devices.flex.FlexFleet` of all the
  enrolled sites: air conditioner, water heater, pool pump. The territory's PV, PEVs and home batteries
  are the simulation's own fleets and stay out of load control: the simulation steps its PEVs before it
  asks for the load adjustment, and the event's baseline would need a twin of those fleets to count
  their deferral once (home batteries are idle until commanded: discharging them is a new response,
  not a shed);
* a **customer EMS VEN** (role ``customer_ems``) per customer in an OpenADR program, with its TLS
  certificate from the run's CA; its certificate's fingerprint travels with the CIS's enrolment.

**A timeline event** (``program: dlc | cpp | reliability``) is the DMS's requirement ``notice`` before
the window (or when the run starts, if later), for ``shed_kw`` or everything the program's customers
are expected to shed; its urgency makes the LMS's planner reach for that program first (emergency:
direct load control, reliability: reliability levels, economic: prices). *Direct load control*: the
LMS sends AMI-12c ``load_control_event`` to the head-end, which relays it on AMI-27 to the ESI; the
ESI confirms at once and acts on its sites from the first step of the window. *OpenADR*: the VENs of
the program's customers come online, the LMS's VTN creates the event (a critical-peak price or a
simple level per 15-minute interval) for the VENs it chose (VENs of another program the LMS adds
come online once the event exists), and the runner waits in wall time until they have answered;
each customer's EMS opts in or out with its customer's opt-out rate (seeded), and from the window's
first step the opted-in sites act on the signal they received (a price reaches the price-responsive
ones; a level reaches every one).

**What the grid sees.** The SimBench profiles stand for what the customers draw without demand
response, so the flexible devices are part of them. A twin fleet with the same seed steps beside
the enrolled fleet without any event (the counterfactual); before each step's power flow the
simulation adds, per enrolled customer, the fleet's load minus the twin's
(:attr:`~gridloom.grid.simulate.Simulation.load_adjustment`): zero until a site responds, below zero
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

**Settlement** runs once the MDMS has closed the event's day, with ``programs.baseline``: ``auto``
takes the 10-in-10 baseline when the run has :data:`HISTORY_DAYS` days of reads before the event's day
and otherwise the control-group baseline (the non-enrolled residential LV meters on the participants'
feeders, or all of them when those are too few), so a one-day run settles. The LMS reports compliance
to the DMS (AMI-7) and the settled records to the CIS (DGM-22).

The run's metrics get a ``demand_response`` section: per event the twin's total ("baseline") and the
fleet's total ("actual") around the window, the shed per interval of the window, what the DMS asked and
the LMS planned, what the ESI confirmed or the VENs answered (with wall-clock latencies), the
compliance the DMS received and the settlement.
"""

from __future__ import annotations

import datetime as dt
import math
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

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
from gridloom.protocols.openadr import SignalName, Vtn
from gridloom.scenario.demand_records import DrRecords
from gridloom.scenario.demand_vens import OPENADR_PROGRAMS, OpenAdrLeg, VenOutcome, ven_id
from gridloom.scenario.metrics import interface_facts
from gridloom.scenario.plugin import RunContext
from gridloom.scenario.spec import DemandResponseEvent
from gridloom.systems.billing.cycle import CriticalPeakEvent
from gridloom.systems.cis.build import cis_for_territory
from gridloom.systems.cis.model import Cis, CustomerClass
from gridloom.systems.cis.tariffs import TariffKind
from gridloom.systems.headend.config import EventSubscription
from gridloom.systems.lms.baseline import BaselineMethod, BaselineRule, EventWindow, placebo
from gridloom.systems.lms.programs import ProgramKind
from gridloom.systems.lms.service import FINGERPRINT_KEY, Lms, LmsEvent
from gridloom.systems.lms.wire import Compliance, Enrolments, Requirement, RequirementResponse

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.intp]

LMS_INSTANCE, ESI_INSTANCE, CIS_INSTANCE = "lms-1", "esi-1", "cis-1"
DMS_INSTANCE = "dms-2"  # the DMS's load-management desk (the OMS plug-in attaches the DMS as dms-1)
#: The requirement's urgency per program: the LMS's planner reaches for that program first.
URGENCY = {"dlc": "emergency", "reliability": "reliability", "cpp": "economic"}
#: The devices at each enrolled site (the territory's PV, PEVs and batteries are simulated apart).
SHARES = FlexShares(ev=0.0, battery=0.0, pv=0.0)
#: A site's flexible devices draw on average this share of what its customer's profile draws, and shed at most
#: this share of what the profile typically draws at the moment.
SHARE_OF_PROFILE = 0.3
BYTES_PER_ROW = 200  # a DGM-22 enrolment row with its VEN's fingerprint, encoded, with room to spare
MAX_PAGE_ROWS = 20_000  # DGM-22 enrolment rows a message at most (fewer where the bus limits a message's size)
HISTORY_DAYS = 14  # programs.baseline auto: 10-in-10 with this many days of reads before the event's day
MARGIN = dt.timedelta(hours=3)  # the series of an event start and end this far around its window
_H = STEP_S / 3600.0
DLC = ProgramKind.DIRECT_LOAD_CONTROL


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
    requested_w: float = 0.0
    planned_w: float = 0.0
    event_ids: list[str] = field(default_factory=list)  # the LMS's events for the requirement (one per program)
    commanded: int = 0
    openadr: dict[str, VenOutcome] = field(default_factory=dict)  # per OpenADR event id
    settlement: str | dict[str, Any] = "not settled: the run ended before the MDMS closed the event's day"
    settled: bool = False

    @property
    def name(self) -> str:
        return f"{self.requirement_id}: {self.spec.program.upper()} {self.start:%H:%M}-{self.end:%H:%M} UTC"


@dataclass
class _Enrolled:
    """The enrolled customers: positions in the territory (= the meter fleet's order), their rows and programs."""

    customers: IntArray
    meter_ids: list[str]
    account_ids: list[str]
    feeders: list[str]
    program: npt.NDArray[np.str_]
    eligible: int
    control_meter_ids: list[str] = field(default_factory=list)  # eligible, not enrolled: settlement's control group
    control_feeders: list[str] = field(default_factory=list)
    size: FloatArray = field(default_factory=lambda: np.zeros(0))  # each site's scale (see the module docstring)
    capacity_w: FloatArray = field(default_factory=lambda: np.zeros(0))

    @property
    def ven_ids(self) -> list[str]:
        """Each row's customer EMS VEN ("" in direct load control)."""
        return [ven_id(m) if p in OPENADR_PROGRAMS else "" for m, p in zip(self.meter_ids, self.program, strict=True)]


@dataclass(frozen=True)
class _Signal:
    """What the opted-in sites of an OpenADR event act on: a price or a level per interval of the window."""

    sites: IntArray
    start: dt.datetime
    interval: dt.timedelta
    name: str
    values: tuple[float, ...]

    def value_at(self, at: dt.datetime) -> float | None:
        k = math.floor((at - self.start) / self.interval) if at >= self.start else -1
        return self.values[k] if 0 <= k < len(self.values) else None


@dataclass
class _Series:
    """Per step, the twin's and the fleet's total over each program's sites (W)."""

    at: list[dt.datetime] = field(default_factory=list)
    baseline_w: dict[str, list[float]] = field(default_factory=dict)
    actual_w: dict[str, list[float]] = field(default_factory=dict)


class DemandResponsePlugin:
    """The DMS's requirements, the LMS, the CIS's DR side, the ESI and the customers' EMS VENs of a run."""

    key = "demand_response"

    def __init__(self) -> None:
        self.lms: Lms | None = None
        self.esi: EsiGateway | None = None
        self.openadr: OpenAdrLeg | None = None
        self.fleet: FlexFleet | None = None  # the enrolled sites, acting on the ESI's controls and the VENs' signals
        self.twin: FlexFleet | None = None  # the same sites without any event: the counterfactual
        self.enrolled: _Enrolled | None = None
        self.events: list[_Event] = []
        self.series = _Series()
        self.signals: list[_Signal] = []
        self.answers: dict[str, RequirementResponse] = {}  # the LMS's answers to the DMS (DGM-16), by requirement
        self.compliance: dict[str, Compliance] = {}  # the LMS's AMI-7 reports the DMS received, by event id
        self.records = DrRecords()  # the CIS's DGM-22 records (billing takes its credits and CPP windows)
        self.enrolment_messages = 0
        self.timezone = "UTC"
        self._cis: Endpoint | None = None
        self._dms: Endpoint | None = None
        self._n_customers = 0
        self._seed = 0

    def headend_subscriptions(self) -> tuple[EventSubscription, ...]:
        return ()

    # ------------------------------------------------------------------ start
    async def start(self, ctx: RunContext) -> None:
        try:
            await self._start(ctx)
        except BaseException:
            await self.stop(ctx)  # openleadr allows one VTN per process: never leave it running
            raise

    async def _start(self, ctx: RunContext) -> None:
        scenario, simulation = ctx.scenario, ctx.simulation
        start = ctx.clock()
        self._seed = scenario.seed
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
        programs = scenario.programs
        enrolled = _enrol(
            simulation, cis, share=programs.demand_response_share, reliability_share=programs.reliability_share,
            seed=scenario.seed,
        )  # fmt: skip
        self.enrolled = enrolled
        n = enrolled.customers.size
        ven_ids = enrolled.ven_ids
        fingerprints = [""] * n
        wanted = {e.spec.program for e in self.events} & set(OPENADR_PROGRAMS)
        if wanted & set(enrolled.program.tolist()):
            self.openadr = OpenAdrLeg(ctx.out / "openadr", ctx.out / "pki")
            issued = dict(zip([v for v in ven_ids if v], self.openadr.issue([v for v in ven_ids if v]), strict=True))
            fingerprints = [issued.get(v, "") for v in ven_ids]
        vtn = await self.openadr.start() if self.openadr is not None else None
        lms = self.lms = Lms(
            ctx.fabric, ctx.issue("lms", LMS_INSTANCE), vtn=vtn, headend=ctx.headend.instance, cis=CIS_INSTANCE,
            dms=DMS_INSTANCE, timezone=cis.timezone,
        )  # fmt: skip
        await lms.start()
        self._cis = await ctx.fabric.attach(ctx.issue("cis", CIS_INSTANCE), self._cis_inbox)
        self._dms = await ctx.fabric.attach(
            ctx.issue("dms", DMS_INSTANCE), self._dms_inbox,
            body_types={DeclaredType.LOAD_MANAGEMENT_REQUIREMENT.response: RequirementResponse,
                        DeclaredType.DR_COMPLIANCE: Compliance},
        )  # fmt: skip
        if n:
            seed = int(np.random.SeedSequence([scenario.seed, 14]).generate_state(1)[0])
            self.fleet = FlexFleet.synthetic(n, seed=seed, shares=SHARES)
            self.twin = FlexFleet.synthetic(n, seed=seed, shares=SHARES)
            windows = [(e.start, e.end) for e in self.events]
            enrolled.size, enrolled.capacity_w = _sizes(simulation, enrolled.customers, windows, seed=seed)
            self.esi = EsiGateway(ctx.fabric, ctx.issue("esi", ESI_INSTANCE), self.fleet, enrolled.meter_ids)
            await self.esi.start()
            simulation.load_adjustment = self._load_adjustment
            simulation.chunk_steps = 1  # the ESI and the EMSs act between steps
        body = Enrolments(
            account_id=enrolled.account_ids, meter_id=enrolled.meter_ids, program=enrolled.program.tolist(),
            ven_id=ven_ids, feeder=enrolled.feeders, capacity_w=enrolled.capacity_w.tolist(),
            dlc=(enrolled.program == "dlc").tolist(),
        )  # fmt: skip
        await self._send_enrolment(ctx, body, fingerprints)
        counts = {p: int(np.count_nonzero(enrolled.program == p)) for p in ("dlc", *OPENADR_PROGRAMS)}
        who = ", ".join(f"{c} in {p}" for p, c in counts.items() if c)
        who = f"{n} of {enrolled.eligible} residential LV customers enrolled ({who or 'none'})"
        ctx.log(start, "demand_response", f"{who}; the LMS has {lms.stats.enrolled}")
        # events notified when the run starts: the runner ticks the plug-in before the first step (due_at)

    async def _send_enrolment(self, ctx: RunContext, body: Enrolments, fingerprints: list[str]) -> None:
        """The CIS's enrolment to the LMS (DGM-22): in pages of at most what one message of the bus carries."""
        if self._cis is None:
            return
        n = len(body.account_id)
        rows = MAX_PAGE_ROWS
        if (limit := ctx.fabric.transport.max_payload_bytes) is not None:
            rows = min(rows, max(1, limit // 2 // BYTES_PER_ROW))  # half: the envelope, sealing and signature
        pages = max(1, math.ceil(n / rows))
        enrolment = uuid.uuid4().hex[:12]
        for k in range(pages):
            part = slice(k * rows, (k + 1) * rows)
            page = Enrolments(*(getattr(body, name)[part] for name in Enrolments.__struct_fields__))
            extensions: dict[str, Any] = {FINGERPRINT_KEY: fingerprints[part]}
            if pages > 1:
                extensions |= {"enrolment": enrolment, "page": k, "pages": pages}
            await self._cis.send("DGM-22", DeclaredType.DR_ENROLMENTS, page, to=LMS_INSTANCE, extensions=extensions)
            self.enrolment_messages += 1
        await ctx.fabric.transport.drain()

    async def _cis_inbox(self, message: Message) -> None:
        """The CIS's side of DGM-22: the LMS's records of what it asked of whom and, once settled, the credits."""
        if message.message_type == DeclaredType.DR_EVENT_RECORDS and isinstance(message.body, dict):
            self.records.add(message.body)

    async def _dms_inbox(self, message: Message) -> None:
        """The DMS's side: the LMS's answer to a requirement (DGM-16) and its compliance reports (AMI-7)."""
        if isinstance(message.body, RequirementResponse):
            self.answers[message.body.requirement_id] = message.body
        elif isinstance(message.body, Compliance):
            self.compliance[message.body.event_id] = message.body

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
        """The DMS's requirement for the event goes to the LMS (DGM-16), which plans it and signals its customers."""
        event.dispatched_at = now
        lms, enrolled = self.lms, self.enrolled
        if lms is None or enrolled is None:
            return
        program = event.spec.program
        mine = enrolled.program == program
        # without shed_kw, every customer of the program: what the LMS expects of them all
        available = float(enrolled.capacity_w[mine].sum()) * (1.0 - lms.programs[program].expected_opt_out)
        reduce_w = event.spec.shed_kw * 1000.0 if event.spec.shed_kw is not None else available
        event.requested_w = reduce_w
        if reduce_w <= 0:
            event.status = "nobody to ask"
            ctx.alarm(now, "warning", "lms", f"{event.name}: no customer in {program} can shed load; nothing asked")
            return
        req = Requirement(event.requirement_id, sorted(set(enrolled.feeders)), reduce_w, to_micros(event.start),
                          to_micros(event.end), URGENCY[program])  # fmt: skip
        if self.openadr is not None:  # OpenADR events of the plan go to VENs (the program's online beforehand)
            lms.openadr_shift = dt.timedelta(seconds=round((dt.datetime.now(dt.UTC) - now).total_seconds()))
            first = [v for v, p in zip(enrolled.ven_ids, enrolled.program, strict=True) if v and p == program]

            async def create() -> list[str]:
                return [e for e in await self._require(ctx, req) if lms.events[e].program.kind is not DLC]

            event.openadr = await self.openadr.event(first, self._opt_in(event), create)
            self._act_on(event, lms)
        else:
            await self._require(ctx, req)
        answer = self.answers.get(event.requirement_id)
        if answer is None:
            event.status = "no answer from the LMS"
            ctx.alarm(now, "warning", "dms", f"{event.name}: the LMS did not answer the requirement")
            return
        event.status, event.planned_w, event.event_ids = answer.status, answer.planned_w, list(answer.events)
        tracked = [lms.events[e] for e in event.event_ids if e in lms.events]
        event.commanded = sum(int(e.rows.size) for e in tracked if e.program.kind is ProgramKind.DIRECT_LOAD_CONTROL)
        asked = ", ".join(f"{e.rows.size} customers in {e.program.program_id}" for e in tracked) or "nobody"
        expected = f"{answer.planned_w / 1000:,.0f} kW"
        ctx.log(now, "demand_response", f"{event.name}: the DMS asks, the LMS signals {asked}, {expected} expected")
        if answer.status != "planned":
            ctx.alarm(now, "warning", "lms", f"{event.name}: {reduce_w / 1000:,.0f} kW asked, the LMS plans {expected}"
                      + (f" ({answer.reason})" if answer.reason else ""))  # fmt: skip

    async def _require(self, ctx: RunContext, req: Requirement) -> list[str]:
        """The DMS sends ``req`` (DGM-16); returns the event ids of the LMS's answer."""
        if self._dms is None:
            raise ScenarioError("the DMS is not attached")
        await self._dms.send("DGM-16", DeclaredType.LOAD_MANAGEMENT_REQUIREMENT, req, to=LMS_INSTANCE)
        await ctx.fabric.transport.drain()
        answer = self.answers.get(req.requirement_id)
        return list(answer.events) if answer is not None else []

    def _opt_in(self, event: _Event) -> dict[str, bool]:
        """Each VEN's EMS's decision for ``event``: opt out with its customer's opt-out rate (seeded per event)."""
        enrolled, fleet = self.enrolled, self.fleet
        if enrolled is None or fleet is None:
            return {}
        k = self.events.index(event)
        out = np.random.default_rng([self._seed, 15, k]).random(enrolled.customers.size) < fleet.sites.opt_out_rate
        return {v: not bool(o) for v, o in zip(enrolled.ven_ids, out.tolist(), strict=True) if v}

    def _act_on(self, event: _Event, lms: Lms) -> None:
        """From the window on, the sites whose EMS opted in act on the signal their VEN received."""
        enrolled = self.enrolled
        if enrolled is None:
            return
        site_of = {v: i for i, v in enumerate(enrolled.ven_ids) if v}
        for event_id, outcome in event.openadr.items():
            received = outcome.signal
            if received is None or not received.signals or not received.intervals:
                continue
            sites = np.array(sorted(site_of[v] for v, o in outcome.decisions.items() if o == "optIn"), dtype=np.intp)
            name, values = next(iter(received.signals.items()))
            tracked = lms.events.get(event_id)
            start = tracked.start_at if tracked is not None else event.start
            self.signals.append(_Signal(sites, start, received.intervals[0][1], name, tuple(values)))

    # ------------------------------------------------------------------ the physics
    def _levels(self, at: dt.datetime, n: int) -> tuple[IntArray, FloatArray]:
        """The OpenADR simple level and price each site's EMS holds at ``at``."""
        level, price = np.zeros(n, dtype=np.intp), np.zeros(n)
        for signal in self.signals:
            value = signal.value_at(at)
            if value is None or not signal.sites.size:
                continue
            if signal.name == SignalName.SIMPLE:
                level[signal.sites] = np.maximum(level[signal.sites], int(value))
            elif signal.name == SignalName.ELECTRICITY_PRICE:
                price[signal.sites] = np.maximum(price[signal.sites], value)
        return level, price

    def _load_adjustment(self, at: dt.datetime) -> FloatArray | None:
        """W per territory customer for the step at ``at``: the fleet's load minus the twin's."""
        fleet, twin, esi, enrolled = self.fleet, self.twin, self.esi, self.enrolled
        if fleet is None or twin is None or esi is None or enrolled is None:
            return None
        esi.tick(at)
        level, price = self._levels(at, len(fleet))
        actual = enrolled.size * _step(fleet, at, level=level, price_per_kwh=price)
        baseline = enrolled.size * _step(twin, at)
        self.series.at.append(at)
        for program in ("dlc", *OPENADR_PROGRAMS):
            sites = enrolled.program == program
            self.series.baseline_w.setdefault(program, []).append(float(baseline[sites].sum()))
            self.series.actual_w.setdefault(program, []).append(float(actual[sites].sum()))
        delta = actual - baseline
        if not delta.any():
            return None
        out = np.zeros(self._n_customers)
        out[enrolled.customers] = delta
        return out

    async def after_step(self, ctx: RunContext, step: StepResult) -> None:
        return None

    # ------------------------------------------------------------------ settlement
    def rule(self, ctx: RunContext, event: _Event) -> BaselineRule:
        """The baseline of ``programs.baseline`` for ``event`` (auto: see the module docstring)."""
        chosen = ctx.scenario.programs.baseline
        if chosen == "auto":
            day = event.start.replace(hour=0, minute=0, second=0, microsecond=0)
            history = day - ctx.scenario.time.start >= dt.timedelta(days=HISTORY_DAYS)
            chosen = BaselineMethod.TEN_IN_TEN.value if history else BaselineMethod.CONTROL_GROUP.value
        method = BaselineMethod(chosen)
        zone = self.timezone
        local = event.start.astimezone(ZoneInfo(zone))
        if method is BaselineMethod.CONTROL_GROUP and local.replace(hour=0, minute=0) < ctx.scenario.time.start:
            # the group is matched over the event's day up to the event: where the local day began before the run
            # (a run starts at midnight UTC), the run's own (UTC) day is the day
            zone = "UTC"
        return BaselineRule(method=method, timezone=zone)

    def _control_group(self, tracked: list[LmsEvent], rule: BaselineRule) -> list[str]:
        """Non-enrolled residential LV meters on the participants' feeders (all of them if those are too few)."""
        enrolled, lms = self.enrolled, self.lms
        if enrolled is None or lms is None or rule.method is not BaselineMethod.CONTROL_GROUP:
            return []
        feeders = {f for e in tracked for f in lms.enrolment.feeder[e.rows].tolist()}
        near = [m for m, f in zip(enrolled.control_meter_ids, enrolled.control_feeders, strict=True) if f in feeders]
        return near if len(near) >= 2 * rule.min_control_meters else list(enrolled.control_meter_ids)

    async def end_of_day(self, ctx: RunContext, start: dt.datetime, end: dt.datetime) -> None:
        """Settle the events the MDMS has closed the day of, from its reads; report to the DMS and the CIS."""
        lms = self.lms
        if lms is None:
            return
        for event in self.events:
            tracked = [lms.events[e] for e in event.event_ids if e in lms.events]
            if event.settled or event.end > end or not tracked:
                continue
            event.settled = True
            rule = self.rule(ctx, event)
            meters = sorted({m for e in tracked for m in lms.enrolment.meter_id[e.rows].tolist()})
            control = self._control_group(tracked, rule)
            back = dt.timedelta(days=rule.lookback_days + 1 if rule.method is not BaselineMethod.CONTROL_GROUP else 1)
            reads = ctx.mdms.core.store.reads(meter_ids=meters + control, start=event.start - back, end=event.end)
            try:
                perf, credits = lms.settle(
                    reads, event_ids=[e.event_id for e in tracked], rule=rule, control_meter_ids=control
                )
            except GridloomError as exc:
                event.settlement = f"not settled: {exc}"
                continue
            complete = perf.filter(perf["complete"])
            if complete.num_rows == 0:
                event.settlement = f"not settled: {_lacking(perf, rule, len(control))}"
                continue
            reports = await lms.report(event.requirement_id, perf, credits)
            await ctx.fabric.transport.drain()
            credit = pc.sum(pc.multiply(credits["reduction_wh"], credits["credit_per_kwh"])).as_py() or 0.0
            paid = int(
                pc.sum(
                    pc.and_(pc.greater(credits["reduction_wh"], 0), pc.greater(credits["credit_per_kwh"], 0))
                ).as_py()
                or 0
            )
            summary: dict[str, Any] = reports[0].as_dict() if len(reports) == 1 else {
                "events": [r.as_dict() for r in reports], "method": rule.method.value,
                "reduction_wh": round(sum(r.reduction_wh for r in reports), 1),
            }  # fmt: skip
            event.settlement = {
                **summary, "control_meters": len(control), "accounts_credited": paid,
                "credits": round(float(credit) / 1000, 2), **_noise(reads, tracked, lms, rule, control),
            }  # fmt: skip

    # ------------------------------------------------------------------ what billing gets from the CIS
    def dr_credits(self) -> pa.Table | None:
        """The settled credits the CIS received from the LMS (DGM-22), as billing's ``dr_credits``."""
        enrolled = self.enrolled
        if enrolled is None:
            return None
        return self.records.credits(dict(zip(enrolled.account_ids, enrolled.meter_ids, strict=True)))

    def critical_peak_accounts(self) -> list[tuple[list[str], list[CriticalPeakEvent]]]:
        """The accounts the CIS's records show in critical-peak events, grouped by the events they were in."""
        return self.records.critical_peak()

    async def stop(self, ctx: RunContext) -> None:
        ctx.simulation.load_adjustment = None
        if self.openadr is not None:
            await self.openadr.stop()
        if self.esi is not None:
            await self.esi.close()
        if self.lms is not None:
            await self.lms.close()
        for endpoint in (self._cis, self._dms):
            if endpoint is not None:
                await endpoint.close()
        self._cis = self._dms = None

    # ------------------------------------------------------------------ metrics
    def interfaces(self, ctx: RunContext) -> list[dict[str, Any]]:
        """DGM-18 as the OpenADR leg carried it: events to the VENs targeted, their receipt and opt responses."""
        outcomes = [o for event in self.events for o in event.openadr.values()]
        vtn = self.lms.vtn if self.lms is not None else None
        if not outcomes or vtn is None:
            return []
        interface = ctx.catalog.interface("DGM-18")
        bounds = [f.timing.max_latency_s for f in interface.flows if f.timing.max_latency_s is not None]
        required = max(bounds) if bounds else None
        received = [s for o in outcomes for s in o.received_s]
        p50, p99 = (float(np.percentile(received, q)) for q in (50, 99)) if received else (0.0, 0.0)
        return [
            {
                "interface": "DGM-18",
                "sent": sum(o.targeted for o in outcomes),
                "delivered": sum(o.received for o in outcomes),
                "records": sum(o.received for o in outcomes),
                "rejected": sum(vtn.stats.refused.values()),
                "rejections": dict(vtn.stats.refused),
                "latency_p50_s": round(p50, 3),
                "latency_p99_s": round(p99, 3),
                "required_max_latency_s": required,
                "meets_timing": None if required is None else p99 <= required,
                **interface_facts(ctx.catalog, interface),
                "carried_by": "OpenADR 2.0b over HTTPS (event creation at the VTN to receipt at the VEN, wall time)",
            }
        ]

    def metrics(self, ctx: RunContext) -> dict[str, Any]:
        lms, enrolled = self.lms, self.enrolled
        if lms is None or enrolled is None:
            return {"implemented": True, "ready": False, "events": []}
        vtn = lms.vtn
        return {
            "implemented": True,
            "programs": {p: int(np.count_nonzero(enrolled.program == p)) for p in ("dlc", *OPENADR_PROGRAMS)},
            "eligible": enrolled.eligible,
            "enrolled": int(enrolled.customers.size),
            "share": ctx.scenario.programs.demand_response_share,
            "sheddable_kw": round(float(enrolled.capacity_w.sum()) / 1000, 1),
            "weather": "summer day: 18 °C at 03:00 to 31 °C at 15:00 UTC, clear sky 06:00-18:00",
            "openadr": None if vtn is None else _vtn_metrics(vtn),
            "lms": asdict(lms.stats),
            "enrolment_messages": self.enrolment_messages,
            "load_control_relayed_by_headend": ctx.headend.stats.load_control_forwarded,
            "records_received_by_cis": len(self.records),
            "comfort_overrides": self.fleet.comfort_overrides if self.fleet is not None else 0,
            "events": [self._event_metrics(e, lms) for e in self.events],
        }

    def _event_metrics(self, event: _Event, lms: Lms) -> dict[str, Any]:
        at_us = np.array([to_micros(t) for t in self.series.at], dtype=np.int64)
        program = event.spec.program  # the series of its program's sites (the LMS may add others beyond shed_kw)
        base = np.asarray(self.series.baseline_w.get(program, [0.0] * at_us.size))
        actual = np.asarray(self.series.actual_w.get(program, [0.0] * at_us.size))

        def span(lo: dt.datetime, hi: dt.datetime) -> npt.NDArray[np.bool_]:
            return (at_us >= to_micros(lo)) & (at_us < to_micros(hi))

        window = span(event.start - MARGIN, event.end + MARGIN)
        during, after = span(event.start, event.end), span(event.end, event.end + MARGIN)
        shed = (base[during] - actual[during]) / 1000
        tracked = [lms.events[e] for e in event.event_ids if e in lms.events]
        compliance = [self.compliance[e] for e in event.event_ids if e in self.compliance]
        return {
            "name": event.name,
            "program": event.spec.program,
            "start": event.start.isoformat(),
            "end": event.end.isoformat(),
            "notified_at": event.dispatched_at.isoformat() if event.dispatched_at is not None else None,
            "status": event.status,
            "requested_kw": event.spec.shed_kw,
            "required_kw": round(event.requested_w / 1000, 1),
            "planned_kw": round(event.planned_w / 1000, 1),
            "lms_events": {e.event_id: int(e.rows.size) for e in tracked},
            "meters_commanded": event.commanded,
            "meters_confirmed": sum(len(e.dlc_done) for e in tracked),
            "meters_failed": sum(len(e.dlc_failed) for e in tracked),
            "openadr": {k: o.as_dict() for k, o in event.openadr.items()} or None,
            "compliance_received_by_dms": [_compliance(c) for c in compliance],
            "at": [t.isoformat() for t, keep in zip(self.series.at, window, strict=True) if keep],
            "baseline_kw": [round(float(w) / 1000, 3) for w in base[window]],
            "actual_kw": [round(float(w) / 1000, 3) for w in actual[window]],
            "shed_kw": [round(float(w), 3) for w in shed],
            "shed_kwh": round(float(shed.sum()) * _H, 2),
            "rebound_kwh": round(float((actual[after] - base[after]).clip(min=0).sum()) / 1000 * _H, 2),
            "settlement": event.settlement,
        }


def _vtn_metrics(vtn: Vtn) -> dict[str, Any]:
    return {
        "vtn": vtn.url,
        "vens_enrolled": len(vtn.vens),
        "poll_interval_s": vtn.poll_interval.total_seconds(),
        "registrations": vtn.stats.registrations,
        "requests": vtn.stats.requests,
        "refused": dict(vtn.stats.refused),
    }


def _compliance(c: Compliance) -> dict[str, Any]:
    return {
        "event_id": c.event_id,
        "requested_kw": round(c.requested_w / 1000, 1),
        "delivered_kw": round(c.delivered_w / 1000, 1),
        "participants": c.participants,
        "opted_out": c.opted_out,
    }


def _lacking(perf: pa.Table, rule: BaselineRule, control: int) -> str:
    """Why no meter of an event got a baseline."""
    if rule.method is BaselineMethod.CONTROL_GROUP:
        return (
            f"the control-group baseline needs at least {rule.min_control_meters} control meters with every read of "
            f"the event's window ({control} in the group)"
        )
    days = int(pc.max(perf["days_used"]).as_py() or 0) if perf.num_rows else 0
    return (
        f"the {rule.method.value} baseline needs {rule.days} prior days of reads like the event day's (at least "
        f"{rule.min_days}); the run has {days}"
    )


def _noise(
    reads: pa.Table, tracked: list[LmsEvent], lms: Lms, rule: BaselineRule, control: list[str]
) -> dict[str, Any]:
    """The settlement's placebo: what the method settles, in the event's window, for control meters that did
    nothing (as many as the participants) — its bias and its noise beside the settled reduction."""
    if len(tracked) != 1:
        return {}
    event = tracked[0]
    window = EventWindow(event.event_id, event.start_at, event.end_at,
                         tuple(lms.enrolment.meter_id[event.rows].tolist()), tuple(control))  # fmt: skip
    found = placebo(reads, window, rule=rule)
    if found is None:
        return {}
    return {"placebo_mean_wh": round(found.mean_wh, 1), "placebo_sigma_wh": round(found.sigma_wh, 1)}


def _enrol(simulation: Simulation, cis: Cis, *, share: float, reliability_share: float, seed: int) -> _Enrolled:
    """Draw ``share`` of the residential LV customers (with the seed); their accounts, tariffs and programs from the
    CIS (see the module docstring), their feeders; the eligible customers left out are the control group."""
    territory, district = simulation.territory, simulation.district
    meter_ids = simulation.fleets.meters.meter_id
    local = territory.local_of(territory.customer_index)
    # the CIS's class and tariff of each meter's customer: meter -> premise -> account -> customer -> class
    premise = cis.meters["premise_id"].take(pc.index_in(pa.array(meter_ids.tolist()), cis.meters["meter_id"]))
    rows = pc.index_in(premise, cis.accounts["premise_id"])
    account = cis.accounts["account_id"].take(rows)
    customer = cis.accounts["customer_id"].take(rows)
    klass = cis.customers["customer_class"].take(pc.index_in(customer, cis.customers["customer_id"]))
    residential = np.asarray(pc.fill_null(pc.equal(klass, CustomerClass.RESIDENTIAL.value), False))
    tariff = cis.accounts["tariff_id"].take(rows)
    critical = [
        t
        for t in pc.unique(tariff).drop_null().to_pylist()
        if str(cis.tariff(t).kind) == TariffKind.CRITICAL_PEAK.value
    ]
    on_cpp = np.asarray(pc.fill_null(pc.is_in(tariff, value_set=pa.array(critical, pa.string())), False))
    eligible = residential & (district.customer_volt_level[local] == LV_VOLT_LEVEL)
    draw = np.random.default_rng([seed, 13]).random(territory.customers)
    customers = np.flatnonzero(eligible & (draw < share)).astype(np.intp)
    reliability = np.random.default_rng([seed, 16]).random(customers.size) < reliability_share
    program = np.where(on_cpp[customers], "cpp", np.where(reliability, "reliability", "dlc"))
    feeders = _feeders(simulation)
    control = np.flatnonzero(eligible & (draw >= share))
    return _Enrolled(
        customers=customers,
        meter_ids=meter_ids[customers].tolist(),
        account_ids=account.take(pa.array(customers)).to_pylist(),
        feeders=feeders[customers].tolist(),
        program=program.astype(str),
        eligible=int(eligible.sum()),
        control_meter_ids=meter_ids[control].tolist(),
        control_feeders=feeders[control].tolist(),
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


def _step(
    fleet: FlexFleet, at: dt.datetime, *, level: npt.ArrayLike = 0, price_per_kwh: npt.ArrayLike = 0.0
) -> FloatArray:
    """The sites' flexible devices' draw (W) over the step at ``at``, in the run's weather, at the EMSs' signals."""
    return fleet.step(
        at, STEP_S, outdoor_c=outdoor_c(at), irradiance=irradiance(at), base_w=0.0, level=level,
        price_per_kwh=price_per_kwh,
    ).load_w  # fmt: skip


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
