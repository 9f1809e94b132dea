"""The OMS actor: an :class:`OmsCore` on the fabric.

=====================================  ========================================================================
in                                     what the OMS does
=====================================  ========================================================================
AMI-11 ``meter_events`` (head-end)     last gasps and power restores into the core, vectorised per batch;
                                       an evaluation when one is due
AMI-11 ``on_demand_read.response``     verification pings answered: a read is a meter with supply, a
                                       failure "no supply" one without; other failures are no evidence
AMI-14 ``connectivity_model`` (GIS)    the model (all its parts) becomes the core's topology; events that
                                       came before it are replayed
AMI-18 ``work_order.response``         the crew's tool acknowledged a work order (counted)
=====================================  ========================================================================

out: AMI-11 ``on_demand_read`` to the head-end (at most ``max_ping_meters`` meters per request);
AMI-18 ``work_order`` and ``outage_status`` to the field crews (one instance, or every ``field_crew``);
DGM-27 ``restoration_estimate`` to the customer side, sent as a DMS function — the seed puts outage
management among the DMS functions, and DGM-27 runs from the DMS — so only when the OMS is given an
identity of role ``dms`` (``dms_identity``); without one the estimates stay in the records.

Meter events arrive on the OMS's group subscription (``AMI-11.group.oms``) and ping answers on its
direct one: two consumers, so a storm of events never waits behind pings and the other way round.

Time: the core runs on the fabric's clock (simulated in a scenario run). Evaluations run when events
arrive and one is due; under a simulated clock call :meth:`OmsActor.tick` whenever the clock moves (it
does nothing until :attr:`OmsActor.due_at`); under a wall clock ``tick_interval_s`` runs a ticker.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import msgspec
import numpy as np

from gridloom.catalog.messages import DeclaredType
from gridloom.errors import GridloomError, OmsConfigError
from gridloom.fabric import Endpoint, Fabric, Identity, Message
from gridloom.fabric.actor import FabricActor
from gridloom.fabric.envelope import to_micros
from gridloom.fabric.identity import Clock
from gridloom.systems.gis.model import ConnectivityPayload
from gridloom.systems.gis.wire import ConnectivityColumns
from gridloom.systems.oms.actions import CustomerNotice, OmsActions, PingRequest, StatusUpdate, WorkOrder
from gridloom.systems.oms.config import OmsConfig
from gridloom.systems.oms.core import OmsCore
from gridloom.systems.oms.indices import ReliabilityIndices
from gridloom.systems.oms.records import EPOCH, OutageRecord, OutageStatus, at_of, save_records
from gridloom.systems.oms.topology import OmsTopology
from gridloom.systems.oms.wire import (
    MeterEventColumns,
    OutageStatusBody,
    PingAnswer,
    PingRequestBody,
    RestorationEstimateBody,
    WorkOrderBody,
    WorkOrderResponse,
)

log = logging.getLogger(__name__)
_Body = TypeVar("_Body", bound=msgspec.Struct)

ROLE = "oms"
DMS_ROLE = "dms"
HEADEND_INTERFACE = "AMI-11"  # head-end <-> OMS: events in, pings out
GIS_INTERFACE = "AMI-14"  # GIS -> OMS
CREW_INTERFACE = "AMI-18"  # OMS <-> field tool
CUSTOMER_INTERFACE = "DGM-27"  # DMS -> customer EMS
NO_SUPPLY = "no supply"  # what a head-end's failure says when the meter has no power


@dataclass
class OmsActorStats:
    event_batches: int = 0
    malformed: int = 0
    unhandled: int = 0
    ping_requests: int = 0  # messages sent
    ping_answers: int = 0
    work_orders_sent: int = 0
    work_orders_acknowledged: int = 0
    status_sent: int = 0
    notices_sent: int = 0
    notices_kept: int = 0  # estimates not sent: no DMS identity
    send_failures: int = 0
    model_parts: int = 0


class OmsActor(FabricActor):
    """Outage management on the fabric. Use :meth:`attach`; see the module docstring."""

    not_started = (OmsConfigError, "the OMS is not attached: use OmsActor.attach")

    def __init__(
        self,
        fabric: Fabric,
        identity: Identity,
        core: OmsCore,
        *,
        headend: str | None = None,
        clock: Clock | None = None,
        dms_identity: Identity | None = None,
        field_crew: str | None = None,
        customer_ems: str | None = None,
        max_ping_meters: int = 500,
    ) -> None:
        if identity.role != ROLE:
            raise OmsConfigError(f"an OMS needs an identity of role {ROLE!r}, got {identity.role!r}")
        if dms_identity is not None and dms_identity.role != DMS_ROLE:
            raise OmsConfigError(f"dms_identity must be of role {DMS_ROLE!r} (DGM-27), got {dms_identity.role!r}")
        if max_ping_meters < 1:
            raise OmsConfigError(f"max_ping_meters must be at least 1, got {max_ping_meters}")
        self.fabric = fabric
        self.identity = identity
        self.core = core
        self.headend = headend
        self.clock: Clock = clock or fabric.clock
        self.dms_identity = dms_identity
        self.field_crew = field_crew
        self.customer_ems = customer_ems
        self.max_ping_meters = max_ping_meters
        self.stats = OmsActorStats()
        self._endpoint: Endpoint | None = None
        self._dms: Endpoint | None = None
        self._parts: dict[str, dict[int, ConnectivityColumns]] = {}
        self._ping_chunks: dict[str, list[str]] = {}  # ping message's request id -> the core's rounds in it
        self._chunks_left: dict[str, int] = {}  # core's ping round -> messages not answered yet
        self._ping_messages = 0
        self._ready = asyncio.Event()
        self._ticker: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    @classmethod
    async def attach(
        cls,
        fabric: Fabric,
        identity: Identity,
        core: OmsCore | None = None,
        *,
        connectivity: ConnectivityPayload | OmsTopology | None = None,
        headend: str | None = None,
        clock: Clock | None = None,
        config: OmsConfig | None = None,
        dms_identity: Identity | None = None,
        field_crew: str | None = None,
        customer_ems: str | None = None,
        max_ping_meters: int = 500,
        tick_interval_s: float | None = None,
    ) -> OmsActor:
        """Attach an OMS to the fabric.

        ``core`` (default: a new one with ``config``) is fed ``connectivity`` when given; otherwise the
        OMS waits for the GIS's model on AMI-14 (:meth:`wait_ready`). ``headend`` is the head-end
        instance pings go to (None: every head-end). ``clock`` defaults to the fabric's.
        """
        core = core or OmsCore(config=config)
        if connectivity is not None:
            topology = connectivity if isinstance(connectivity, OmsTopology) else OmsTopology.from_payload(connectivity)
            core.set_topology(topology)
        actor = cls(
            fabric, identity, core, headend=headend, clock=clock, dms_identity=dms_identity, field_crew=field_crew,
            customer_ems=customer_ems, max_ping_meters=max_ping_meters,
        )  # fmt: skip
        raw = dict.fromkeys(
            [
                DeclaredType.METER_EVENTS.value,
                DeclaredType.ON_DEMAND_READ.response,
                DeclaredType.CONNECTIVITY_MODEL.value,
                DeclaredType.WORK_ORDER.response,
            ],
            msgspec.Raw,
        )
        actor._endpoint = await fabric.attach(identity, actor.handle, body_types=raw)
        if dms_identity is not None:
            actor._dms = await fabric.attach(dms_identity, actor._ignore)
        if core.ready:
            actor._ready.set()
        if tick_interval_s is not None:
            actor._ticker = asyncio.create_task(actor._tick_every(tick_interval_s), name="oms-ticker")
        return actor

    async def close(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
            self._ticker = None
        for endpoint in (self._endpoint, self._dms):
            if endpoint is not None:
                await endpoint.close()
        self._endpoint = self._dms = None

    @property
    def instance(self) -> str:
        return self.identity.instance

    @property
    def ready(self) -> bool:
        """True once the OMS has a connectivity model."""
        return self.core.ready

    async def wait_ready(self, timeout_s: float = 30.0) -> None:
        """Wait for the GIS's model; :class:`OmsConfigError` if it has not come within ``timeout_s``."""
        try:
            await asyncio.wait_for(self._ready.wait(), timeout_s)
        except TimeoutError:
            raise OmsConfigError(
                f"no connectivity model from the GIS within {timeout_s:g} s: attach the GIS after the OMS, "
                "or have it publish again (GisActor.publish)"
            ) from None

    # ------------------------------------------------------------------ time
    def _now_us(self) -> int:
        return to_micros(self.clock())

    @property
    def due_at(self) -> dt.datetime | None:
        """When the OMS next wants to evaluate (None: nothing pending)."""
        due = self.core.due_us
        return None if due is None else at_of(max(due, 0))

    async def tick(self) -> OmsActions:
        """Evaluate if one is due at the clock's time; send what it asks. Cheap when nothing is due."""
        now = self._now_us()
        if not self.core.is_due(now):
            return OmsActions()
        async with self._lock:
            actions = self.core.evaluate(now)
            await self._send(actions)
        return actions

    async def _tick_every(self, period_s: float) -> None:
        while True:
            await asyncio.sleep(period_s)
            try:
                await self.tick()
            except (GridloomError, OSError):
                log.exception("%s: evaluation failed", self.instance)

    # ------------------------------------------------------------------ receiving
    async def _ignore(self, message: Message) -> None:
        """The DMS identity only sends (DGM-27); whatever reaches it is not for the OMS."""

    async def handle(self, message: Message) -> None:
        """The fabric handler: dispatch on (interface, message type)."""
        interface, kind = message.interface, message.message_type
        if interface == HEADEND_INTERFACE and kind == DeclaredType.METER_EVENTS:
            await self._events(message)
        elif interface == HEADEND_INTERFACE and kind == DeclaredType.ON_DEMAND_READ.response:
            await self._ping_answer(message)
        elif interface == GIS_INTERFACE and kind == DeclaredType.CONNECTIVITY_MODEL:
            await self._model_part(message)
        elif interface == CREW_INTERFACE and kind == DeclaredType.WORK_ORDER.response:
            body = self._decode(message, WorkOrderResponse)
            if body is not None:
                self.stats.work_orders_acknowledged += 1
                log.info("%s: work order %s: %s %s", self.instance, body.work_order_id, body.status, body.reason)
        else:
            self.stats.unhandled += 1
            log.info("%s: no handler for %s %s from %s", self.instance, interface, kind, message.sender.instance)
            return
        await self.tick()

    def _decode(self, message: Message, body_type: type[_Body]) -> _Body | None:
        try:
            return msgspec.msgpack.decode(message.body, type=body_type)
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            self.stats.malformed += 1
            log.warning(
                "%s: dropped a malformed %s from %s: %s", self.instance, message.message_type,
                message.sender.instance, exc,
            )  # fmt: skip
            return None

    async def _events(self, message: Message) -> None:
        body = self._decode(message, MeterEventColumns)
        if body is None:
            return
        if not len(body.meter_id) == len(body.at_us) == len(body.kind):
            self.stats.malformed += 1
            log.warning("%s: meter_events from %s with uneven columns", self.instance, message.sender.instance)
            return
        self.stats.event_batches += 1
        self.core.add_event_columns(body.meter_id, body.at_us, body.kind, now_us=to_micros(message.received_at))

    async def _ping_answer(self, message: Message) -> None:
        body = self._decode(message, PingAnswer)
        if body is None:
            return
        self.stats.ping_answers += 1
        rounds = self._ping_chunks.pop(body.request_id, None)
        if rounds is None:
            log.info("%s: answer to an unknown ping %s", self.instance, body.request_id)
            return
        topo = self.core.topology
        if topo is None:
            return
        dead_ids = [f.meter_id for f in body.failures if NO_SUPPLY in f.reason.lower()]
        meters = topo.meters_of(body.reads.meter_id + dead_ids)
        alive = np.zeros(len(meters), dtype=bool)
        alive[: len(body.reads.meter_id)] = True
        self.core.add_pings(meters, alive, at_us=to_micros(message.received_at))
        for core_id in rounds:
            left = self._chunks_left.get(core_id, 1) - 1
            if left > 0:
                self._chunks_left[core_id] = left
            else:
                self._chunks_left.pop(core_id, None)
            self.core.ping_answered(core_id, done=left <= 0)

    async def _model_part(self, message: Message) -> None:
        part = self._decode(message, ConnectivityColumns)
        if part is None:
            return
        self.stats.model_parts += 1
        parts = self._parts.setdefault(part.model_id, {})
        parts[part.part] = part
        if len(parts) < part.parts:
            return
        del self._parts[part.model_id]
        try:
            payload = ConnectivityPayload.from_parts(list(parts.values()))
            topology = OmsTopology.from_payload(payload)
        except GridloomError as exc:
            self.stats.malformed += 1
            log.warning("%s: unusable connectivity model from %s: %s", self.instance, message.sender.instance, exc)
            return
        self.core.set_topology(topology)
        self._ready.set()
        log.info("%s: connectivity model %s: %d nodes, %d meters", self.instance, part.model_id,
                 topology.n_nodes, topology.n_meters)  # fmt: skip

    # ------------------------------------------------------------------ sending
    async def _send(self, actions: OmsActions) -> None:
        await self._send_pings(actions.pings)
        for order in actions.work_orders:
            await self._send_work_order(order)
        await self._send_status(actions.status)
        for notice in actions.notices:
            await self._send_notice(notice)

    async def _try(self, what: str, interface: str, endpoint: Endpoint, kind: str, body: msgspec.Struct,
                   *, to: str | None, group: str | None, records: int = 1) -> bool:  # fmt: skip
        try:
            await endpoint.send(interface, kind, body, to=to, group=None if to else group, records=records)
        except GridloomError as exc:
            self.stats.send_failures += 1
            log.warning("%s: %s not sent: %s", self.instance, what, exc)
            return False
        return True

    async def _send_pings(self, pings: list[PingRequest]) -> None:
        """All of an evaluation's ping rounds in as few on-demand reads as the head-end takes (a storm asks
        for hundreds of small rounds at once)."""
        topo = self.core.topology
        if topo is None or not pings:
            return
        meters = np.unique(np.concatenate([ping.meters for ping in pings]))
        size = self.max_ping_meters
        chunk_rounds: list[list[str]] = [[] for _ in range(-(-len(meters) // size))]
        for ping in pings:
            chunks = np.unique(np.searchsorted(meters, ping.meters) // size).tolist()
            self._chunks_left[ping.request_id] = len(chunks)
            for k in chunks:
                chunk_rounds[k].append(ping.request_id)
        ids = topo.payload.meter_id[meters].tolist()
        for k, rounds in enumerate(chunk_rounds):
            self._ping_messages += 1
            request_id = f"{self.instance}-ping-{self._ping_messages:07d}"
            self._ping_chunks[request_id] = rounds
            chunk = ids[k * size : (k + 1) * size]
            body = PingRequestBody(request_id, chunk, f"outage verification ({len(rounds)} rounds)")
            sent = await self._try(
                "ping", HEADEND_INTERFACE, self.endpoint, DeclaredType.ON_DEMAND_READ, body,
                to=self.headend, group="ami_headend", records=len(chunk),
            )  # fmt: skip
            if sent:
                self.stats.ping_requests += 1

    async def _send_work_order(self, order: WorkOrder) -> None:
        body = WorkOrderBody(
            order.work_order_id, order.outage_id, order.action.value, order.device_id, order.device_kind,
            order.customers, order.started_at_us, order.estimated_restoration_us, order.reason,
        )  # fmt: skip
        if await self._try("work order", CREW_INTERFACE, self.endpoint, DeclaredType.WORK_ORDER, body,
                           to=self.field_crew, group="field_crew"):  # fmt: skip
            self.stats.work_orders_sent += 1

    async def _send_status(self, updates: list[StatusUpdate]) -> None:
        """The evaluation's status updates in one message (columns: one row per outage)."""
        if not updates:
            return
        body = OutageStatusBody(
            outage_id=[u.outage_id for u in updates],
            status=[u.status for u in updates],
            device_id=[u.device_id for u in updates],
            customers=[u.customers for u in updates],
            confidence=[u.confidence for u in updates],
            started_at_us=[u.started_at_us for u in updates],
            estimated_restoration_us=[u.estimated_restoration_us for u in updates],
            restored_at_us=[u.restored_at_us for u in updates],
        )
        if await self._try("outage status", CREW_INTERFACE, self.endpoint, DeclaredType.OUTAGE_STATUS, body,
                           to=self.field_crew, group="field_crew", records=len(updates)):  # fmt: skip
            self.stats.status_sent += len(updates)

    async def _send_notice(self, notice: CustomerNotice) -> None:
        topo = self.core.topology
        if self._dms is None or topo is None:
            self.stats.notices_kept += 1
            return
        body = RestorationEstimateBody(
            notice.outage_id, notice.status, topo.payload.meter_id[notice.meters].tolist(), notice.started_at_us,
            notice.estimated_restoration_us, notice.restored_at_us,
        )  # fmt: skip
        if await self._try("restoration estimate", CUSTOMER_INTERFACE, self._dms, DeclaredType.RESTORATION_ESTIMATE,
                           body, to=self.customer_ems, group="customer_ems", records=len(notice.meters)):  # fmt: skip
            self.stats.notices_sent += 1

    # ------------------------------------------------------------------ what the OMS knows
    def records(self) -> list[OutageRecord]:
        """Every outage recorded, oldest first (see :class:`OutageRecord`)."""
        return self.core.records()

    def indices(self, start: dt.datetime, end: dt.datetime) -> ReliabilityIndices:
        """IEEE 1366 SAIFI, SAIDI, CAIDI, MAIFI of the outages that began in [start, end), as of now."""
        return self.core.indices(start, end, as_of=self.clock())

    def save(self, path: Path) -> Path:
        """Write the records for ``gridloom oms report`` (JSON; see :mod:`gridloom.systems.oms.records`)."""
        return save_records(path, self.records(), customers_served=max(self.core.customers_served, 1))

    def as_metrics(self, start: dt.datetime | None = None, end: dt.datetime | None = None) -> dict[str, Any]:
        """For a run report: the outage list, the indices over [start, end) and what the OMS did.

        ``start`` defaults to the earliest outage's start (or now), ``end`` to now.
        """
        self.core.take_queued()
        records = self.records()
        now = self.clock()
        first = min((r.start_us for r in records), default=to_micros(now))
        start = start or (EPOCH + dt.timedelta(microseconds=first))
        end = end or max(now, start + dt.timedelta(microseconds=1))
        outages = [_outage_metrics(r) for r in records if r.status not in (OutageStatus.MERGED,)]
        delays = [(r.detected_us - r.start_us) / 1e6 for r in records if r.counts_as_interruption]
        status: dict[str, int] = {}
        for r in records:
            key = "customer_side" if r.customer_side else ("momentary" if r.momentary else r.status.value)
            status[key] = status.get(key, 0) + 1
        ev = self.core.evidence.stats
        return {
            "customers_served": self.core.customers_served,
            "ready": self.ready,
            "outages": outages,
            "counts": status,
            "indices": self.indices(start, end).as_dict() if self.core.customers_served else None,
            "detection_delay_s": {
                "mean": round(float(np.mean(delays)), 3) if delays else None,
                "max": round(float(np.max(delays)), 3) if delays else None,
            },
            "events": {"last_gasps": ev.last_gasps, "restores": ev.restores, "unknown_meters": ev.unknown_meters},
            "pings": {"meters": self.core.stats.pings_requested, "requests": self.stats.ping_requests},
            "work_orders": self.stats.work_orders_sent,
            "restoration_estimates": self.stats.notices_sent,
            "evaluations": self.core.stats.evaluations,
            "evaluation_s": round(self.core.stats.evaluation_s, 3),
        }


def _iso(us: int) -> str | None:
    at = at_of(us)
    return None if at is None else at.isoformat()


def _outage_metrics(r: OutageRecord) -> dict[str, Any]:
    return {
        "outage_id": r.outage_id,
        "device": r.device_id,
        "predicted_device": r.predicted_device_id,
        "device_kind": r.device_kind,
        "start": _iso(r.start_us),
        "detected_at": _iso(r.detected_us),
        "end": _iso(r.end_us),
        "customers": r.customers,
        "confidence": r.confidence,
        "status": r.status.value,
        "momentary": r.momentary,
        "customer_side": r.customer_side,
        "parent": r.parent,
        "work_order": r.work_order_id,
        "estimated_restoration": _iso(r.estimated_restoration_us),
    }
