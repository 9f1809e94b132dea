"""The LMS/DRMS actor: requirements in from the DMS, signals out to customers, compliance back.

====================================  ==========  =================================================
in / out                              with        the LMS
====================================  ==========  =================================================
DGM-16 load_management_requirement    DMS         plans (:mod:`.planner`), dispatches, answers
                                                  ``.response`` with the plan (planned / partial)
DGM-22 dr_enrolments                  CIS         replaces its enrolment (columnar rows; in pages
                                                  when large, see :data:`PAGE_KEYS`)
OpenADR 2.0b events (its VTN)         VENs        price (CPP, RTP) and simple-level (reliability)
                                                  events to the VENs of the chosen rows
AMI-12c load_control_event            head-end    direct load control of the chosen meters' HAN
                                                  devices; ``.response`` says which were done
DGM-22 dr_event_records               CIS         what was asked of each account, when, the
                                                  response, later the settled reduction and credit
AMI-7 dr_compliance                   DMS         each event's requested and delivered reduction
====================================  ==========  =================================================

The scenario runner's DMS sends it DGM-16 messages; it calls :meth:`Lms.settle` (after the MDMS has the
event's reads) and :meth:`Lms.report`; :meth:`Lms.cpp_events` gives billing its critical-peak windows.

**Enrolment in pages.** An enrolment larger than one message of the transport comes as pages: each
``dr_enrolments`` message carries the envelope extensions ``enrolment`` (one id for all pages), ``page``
(0-based) and ``pages``; the LMS keeps the pages and replaces its enrolment only when every page of one
enrolment has arrived (a message without them is a whole enrolment).

**OpenADR time.** An OpenADR VEN judges an event by its own (wall) clock — openleadr answers no event
whose active period is over — so when the LMS runs in simulated time, :attr:`Lms.openadr_shift` (wall
minus simulated time) moves the times the VTN sends; the LMS's own records keep simulated time.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from gridloom.catalog.messages import DeclaredType
from gridloom.errors import DrConfigError, GridloomError
from gridloom.fabric import Endpoint, Fabric, Identity, Message
from gridloom.fabric.actor import FabricActor
from gridloom.fabric.envelope import to_micros
from gridloom.protocols.openadr.events import DrEvent, Signal, SignalName, Targets
from gridloom.protocols.openadr.vtn import Vtn
from gridloom.systems.lms.baseline import BaselineRule, EventWindow, event_days, performance
from gridloom.systems.lms.planner import Dispatch, Plan, plan
from gridloom.systems.lms.programs import DrProgram, Enrolment, ProgramKind, default_programs
from gridloom.systems.lms.settlement import EventReport, event_reports, settle
from gridloom.systems.lms.wire import (
    Compliance,
    Enrolments,
    EventRecords,
    LoadControl,
    LoadControlResponse,
    Requirement,
    RequirementResponse,
)

log = logging.getLogger(__name__)
ROLE = "lms"
_US = 1_000_000
#: Envelope extensions of a paged ``dr_enrolments``: the enrolment's id, the page (0-based) and the page count.
PAGE_KEYS = ("enrolment", "page", "pages")
#: Envelope extension of ``dr_enrolments``: each row's VEN certificate fingerprint ("" without a VEN).
FINGERPRINT_KEY = "ven_fingerprint"


def _at(us: int) -> dt.datetime:
    return dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(microseconds=us)


@dataclass
class LmsEvent:
    """One program's dispatch of one requirement, as the LMS tracks it."""

    event_id: str
    requirement_id: str
    program: DrProgram
    rows: np.ndarray[Any, np.dtype[np.intp]]
    start_at: dt.datetime
    end_at: dt.datetime
    expected_w: float
    ven_ids: tuple[str, ...] = ()
    dlc_done: list[str] = field(default_factory=list)
    dlc_failed: list[str] = field(default_factory=list)


@dataclass
class LmsStats:
    requirements: int = 0
    events: int = 0
    enrolment_pages: int = 0
    openadr_events: int = 0
    dlc_commands: int = 0
    dlc_meters_done: int = 0
    enrolled: int = 0
    unhandled: int = 0


class Lms(FabricActor):
    """The LMS/DRMS on the fabric, with its OpenADR VTN. Build, then ``await start()``."""

    not_started = (DrConfigError, "the LMS is not started: await start()")

    def __init__(
        self,
        fabric: Fabric,
        identity: Identity,
        *,
        programs: dict[str, DrProgram] | None = None,
        vtn: Vtn | None = None,
        headend: str | None = None,
        cis: str | None = None,
        dms: str | None = None,
        interval: dt.timedelta = dt.timedelta(minutes=15),
        timezone: str = "UTC",
    ) -> None:
        if identity.role != ROLE:
            raise DrConfigError(f"an LMS needs an identity of role {ROLE!r}, got {identity.role!r}")
        self.fabric = fabric
        self.identity = identity
        self.programs = programs or default_programs()
        self.vtn = vtn
        self.headend = headend
        self.cis = cis
        self.dms = dms
        self.interval = interval
        self.timezone = timezone
        self.enrolment = Enrolment.empty()
        self.events: dict[str, LmsEvent] = {}
        self.plans: dict[str, Plan] = {}
        self.stats = LmsStats()
        self.openadr_shift = dt.timedelta(0)  # wall minus simulated time, for the VTN's events (module docstring)
        self._pages: dict[str, dict[int, tuple[Enrolments, list[str]]]] = {}
        self._endpoint: Endpoint | None = None

    # ------------------------------------------------------------------ life cycle
    async def start(self) -> None:
        types: dict[str, type[Any]] = {
            DeclaredType.LOAD_MANAGEMENT_REQUIREMENT: Requirement,
            DeclaredType.DR_ENROLMENTS: Enrolments,
            DeclaredType.LOAD_CONTROL_EVENT.response: LoadControlResponse,
        }
        self._endpoint = await self.fabric.attach(self.identity, self.handle, body_types=types)

    # ------------------------------------------------------------------ receiving
    async def handle(self, message: Message) -> None:
        kind, interface = message.message_type, message.interface
        if kind == DeclaredType.LOAD_MANAGEMENT_REQUIREMENT:
            req: Requirement = message.body
            try:
                result = await self.dispatch(req)
                answer = RequirementResponse(
                    req.requirement_id, result.status, result.expected_w, [e.event_id for e in self._events_of(req)]
                )
            except GridloomError as exc:
                answer = RequirementResponse(req.requirement_id, "refused", reason=str(exc))
            await self.endpoint.send(
                interface,
                DeclaredType.LOAD_MANAGEMENT_REQUIREMENT.response,
                answer,
                to=message.sender.instance,
                correlation_id=message.envelope.message_id,
            )
        elif kind == DeclaredType.DR_ENROLMENTS:
            try:
                whole = self._assemble(message.body, message.envelope.extensions)
                if whole is not None:
                    enrolments, fingerprints = whole
                    self.enrol(Enrolment.from_body(enrolments, self.programs), fingerprints=fingerprints)
            except DrConfigError as exc:
                log.warning("%s: enrolment from %s refused: %s", self.identity.instance, message.sender.instance, exc)
        elif kind == DeclaredType.LOAD_CONTROL_EVENT.response:
            body: LoadControlResponse = message.body
            event = self.events.get(body.event_id)
            if event is not None:
                event.dlc_done.extend(body.done)
                event.dlc_failed.extend(body.failures)
                self.stats.dlc_meters_done += len(body.done)
        else:
            self.stats.unhandled += 1

    def _assemble(self, body: Enrolments, extensions: dict[str, Any]) -> tuple[Enrolments, list[str]] | None:
        """The whole enrolment once its last page is in (see the module docstring), with its VENs' certificate
        fingerprints (extension ``ven_fingerprint``, one per row); None while pages are missing."""
        fingerprints = [str(f) for f in extensions.get(FINGERPRINT_KEY) or []]
        if not any(k in extensions for k in PAGE_KEYS):
            return body, fingerprints
        try:
            enrolment, page, pages = str(extensions["enrolment"]), int(extensions["page"]), int(extensions["pages"])
        except (KeyError, TypeError, ValueError) as exc:
            raise DrConfigError(f"dr_enrolments page: extensions need {', '.join(PAGE_KEYS)} ({exc})") from exc
        if not (pages >= 1 and 0 <= page < pages):
            raise DrConfigError(f"dr_enrolments page {page} of {pages}: out of range")
        self.stats.enrolment_pages += 1
        for older in [e for e in self._pages if e != enrolment]:  # a newer enrolment replaces unfinished older ones
            del self._pages[older]
        got = self._pages.setdefault(enrolment, {})
        got[page] = (body, fingerprints)
        if len(got) < pages:
            return None
        del self._pages[enrolment]
        names = Enrolments.__struct_fields__
        whole = Enrolments(*([v for k in range(pages) for v in getattr(got[k][0], name)] for name in names))
        return whole, [f for k in range(pages) for f in got[k][1]]

    def enrol(self, enrolment: Enrolment, *, fingerprints: Sequence[str] = ()) -> None:
        """Replace the enrolment (the CIS sends the whole of it) and tell the VTN which VENs may connect: each row's
        VEN with its certificate's ``fingerprints`` (one per row, "" without a VEN), in its program's and feeder's
        groups. VENs no longer enrolled are dropped from the VTN."""
        if fingerprints and len(fingerprints) != len(enrolment):
            raise DrConfigError(f"dr_enrolments: {len(fingerprints)} VEN fingerprints for {len(enrolment)} rows")
        self.enrolment = enrolment
        self.stats.enrolled = len(enrolment)
        if self.vtn is None or not fingerprints:
            return
        keep = set()
        rows = zip(enrolment.ven_id.tolist(), enrolment.program.tolist(), enrolment.feeder.tolist(), fingerprints,
                   strict=True)  # fmt: skip
        for ven, program, feeder, fingerprint in rows:
            if ven and fingerprint:
                self.vtn.enrol(ven, fingerprint=fingerprint, groups=[program, feeder])
                keep.add(ven)
        for ven in [v for v in self.vtn.vens if v not in keep]:
            self.vtn.unenrol(ven)

    def _events_of(self, req: Requirement) -> list[LmsEvent]:
        return [e for e in self.events.values() if e.requirement_id == req.requirement_id]

    # ------------------------------------------------------------------ the decision and the signals
    async def dispatch(self, req: Requirement) -> Plan:
        """Plan ``req`` and send its signals: OpenADR events through the VTN, DLC through the head-end."""
        chosen = plan(req, self.enrolment, self.programs)
        self.stats.requirements += 1
        self.plans[req.requirement_id] = chosen
        start, end = _at(req.start_us), _at(req.end_us)
        for dispatch in chosen.dispatches:
            event = LmsEvent(
                f"{req.requirement_id}-{dispatch.program.program_id}",
                req.requirement_id,
                dispatch.program,
                dispatch.rows,
                start,
                end,
                dispatch.expected_w,
            )
            self.events[event.event_id] = event
            self.stats.events += 1
            if dispatch.program.kind is ProgramKind.DIRECT_LOAD_CONTROL:
                await self._direct_load_control(event)
            else:
                self._openadr(event, dispatch, urgency=req.urgency)
        await self._records(chosen)
        return chosen

    def _openadr(self, event: LmsEvent, dispatch: Dispatch, *, urgency: str) -> None:
        ven_ids = tuple(dict.fromkeys(self.enrolment.ven_id[dispatch.rows].tolist()))
        event.ven_ids = ven_ids
        if self.vtn is None:
            log.warning("%s: no VTN; event %s is recorded but not signalled", self.identity.instance, event.event_id)
            return
        n = max(1, round((event.end_at - event.start_at) / self.interval))
        program = dispatch.program
        if program.kind is ProgramKind.CRITICAL_PEAK:
            signals = (Signal(SignalName.ELECTRICITY_PRICE, "price", (program.critical_price_per_kwh,) * n),)
        elif program.kind is ProgramKind.REAL_TIME:
            # a price vector rising towards the middle of the window (the deepest need), then easing
            shape = 0.6 + 0.4 * np.sin(np.linspace(0.0, np.pi, n))
            signals = (Signal(SignalName.ELECTRICITY_PRICE, "price", tuple(round(float(x), 4) for x in shape)),)
        else:
            level = 3 if urgency == "emergency" else 2
            signals = (Signal(SignalName.SIMPLE, "level", (level,) * n),)
        self.vtn.create_event(
            DrEvent(
                event_id=event.event_id,
                program=program.market_context,
                start_at=event.start_at + self.openadr_shift,
                interval=(event.end_at - event.start_at) / n,
                signals=signals,
                targets=Targets(ven_ids=ven_ids),
                priority=1 if urgency == "emergency" else 2,
            )
        )
        self.stats.openadr_events += 1

    async def _direct_load_control(self, event: LmsEvent) -> None:
        if self.headend is None:
            raise DrConfigError("direct load control needs the head-end's instance (Lms(headend=...))")
        meters = sorted(set(self.enrolment.meter_id[event.rows].tolist()))
        body = LoadControl(event.event_id, meters, "shed", 100.0, to_micros(event.start_at), to_micros(event.end_at))
        await self.endpoint.send("AMI-12c", DeclaredType.LOAD_CONTROL_EVENT, body, to=self.headend)
        self.stats.dlc_commands += 1

    async def _records(self, chosen: Plan, reports: dict[str, pa.Table] | None = None) -> None:
        if self.cis is None:
            return
        await self.endpoint.send("DGM-22", DeclaredType.DR_EVENT_RECORDS, self.records(chosen), to=self.cis)

    def records(self, chosen: Plan, credits: pa.Table | None = None) -> EventRecords:
        """DGM-22 rows: one per account asked, with its response (and, after settlement, its reduction)."""
        out = EventRecords([], [], [], [], [], [], [], [], [])
        settled: dict[tuple[str, str], float] = {}
        if credits is not None:
            for row in credits.select(["event_id", "account_id", "reduction_wh"]).to_pylist():
                settled[(row["event_id"], row["account_id"])] = row["reduction_wh"]
        for dispatch in chosen.dispatches:
            event = self.events[f"{chosen.requirement.requirement_id}-{dispatch.program.program_id}"]
            opts = self.vtn.opts.get(event.event_id, {}) if self.vtn is not None else {}
            per_row = self.enrolment.capacity_w[dispatch.rows] * (1 - dispatch.program.expected_opt_out)
            for row, requested in zip(dispatch.rows.tolist(), per_row.tolist(), strict=True):
                account = str(self.enrolment.account_id[row])
                dlc = dispatch.program.kind is ProgramKind.DIRECT_LOAD_CONTROL
                out.event_id.append(event.event_id)
                out.program.append(dispatch.program.program_id)
                out.account_id.append(account)
                out.requested_w.append(float(requested))
                out.start_us.append(to_micros(event.start_at))
                out.end_us.append(to_micros(event.end_at))
                out.opt.append("dlc" if dlc else opts.get(str(self.enrolment.ven_id[row]), "pending"))
                out.reduction_wh.append(float(settled.get((event.event_id, account), 0.0)))
                out.credit_per_kwh.append(dispatch.program.credit_per_kwh)
        return out

    # ------------------------------------------------------------------ settlement and reports
    def cpp_events(self) -> list[tuple[str, dt.datetime, dt.datetime]]:
        """(event id, start, end) of critical-peak events, for billing's CriticalPeakEvent list."""
        return [
            (e.event_id, e.start_at, e.end_at)
            for e in self.events.values()
            if e.program.kind is ProgramKind.CRITICAL_PEAK
        ]

    def settle(
        self,
        reads: pa.Table,
        *,
        event_ids: Sequence[str] | None = None,
        rule: BaselineRule | None = None,
        control_meter_ids: Sequence[str] = (),
    ) -> tuple[pa.Table, pa.Table]:
        """Per-meter performance and per-account credits of events, from MDMS reads (READS_SCHEMA).

        ``control_meter_ids``: comparable meters that took no part (the control-group baseline's group; a
        meter of the event is left out of its own event's group); ``reads`` must hold theirs too.
        """
        chosen = [self.events[e] for e in (event_ids or list(self.events))]
        windows = []
        for e in chosen:
            meters = tuple(self.enrolment.meter_id[e.rows].tolist())
            taking_part = set(meters)
            control = tuple(m for m in control_meter_ids if m not in taking_part)
            windows.append(EventWindow(e.event_id, e.start_at, e.end_at, meters, control_meter_ids=control))
        base = rule or BaselineRule(timezone=self.timezone)
        excluded = tuple(set(base.excluded_days) | set(event_days(windows, base.timezone)))
        rule = BaselineRule(**{**base.__dict__, "excluded_days": excluded})
        perf = performance(reads, windows, rule=rule)
        # Opted-out customers were asked but are not paid; DLC customers are.
        pairs = pa.table(
            {
                "account_id": pa.array(self.enrolment.account_id.tolist(), pa.string()),
                "meter_id": pa.array(self.enrolment.meter_id.tolist(), pa.string()),
            }
        )
        rates = {e.event_id: e.program.credit_per_kwh for e in chosen}
        credits = settle(perf, pairs, credit_per_kwh=rates)
        if self.vtn is not None and credits.num_rows:
            out = {(e.event_id, v) for e in chosen for v in self.vtn.opted_out(e.event_id)}
            ven_of = dict(zip(self.enrolment.account_id.tolist(), self.enrolment.ven_id.tolist(), strict=True))
            keep = [
                (ev, ven_of.get(acct, "")) not in out
                for ev, acct in zip(credits["event_id"].to_pylist(), credits["account_id"].to_pylist(), strict=True)
            ]
            credits = credits.filter(pa.array(keep))
        return perf, credits

    async def report(self, requirement_id: str, perf: pa.Table, credits: pa.Table) -> list[EventReport]:
        """Send each event's compliance to the DMS (AMI-7) and the settled records to the CIS (DGM-22)."""
        chosen = self.plans[requirement_id]
        requested = {f"{requirement_id}-{d.program.program_id}": d.expected_w for d in chosen.dispatches}
        mine = perf.filter(pa.compute.is_in(perf["event_id"], value_set=pa.array(list(requested), pa.string())))
        reports = event_reports(mine, requested_w=requested)
        if self.dms is not None:
            for r in reports:
                opted = len(self.vtn.opted_out(r.event_id)) if self.vtn is not None else 0
                body = Compliance(requirement_id, r.event_id, r.requested_w or 0.0, r.reduction_w, r.meters, opted)
                await self.endpoint.send("AMI-7", DeclaredType.DR_COMPLIANCE, body, to=self.dms)
        if self.cis is not None:
            await self.endpoint.send(
                "DGM-22", DeclaredType.DR_EVENT_RECORDS, self.records(chosen, credits), to=self.cis
            )
        return reports
