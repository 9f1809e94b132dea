"""The OMS's logic without the fabric: detect, locate, verify and restore outages from meter evidence.

:class:`OmsCore` is synchronous and takes the time as an argument. Feed it meter events
(:meth:`OmsCore.add_event_columns` as they travel, or :meth:`OmsCore.add_events` by meter row) and
ping outcomes (:meth:`OmsCore.add_pings`) as they arrive, call :meth:`OmsCore.evaluate` when
:attr:`OmsCore.due_us` has come (:meth:`OmsCore.is_due`), and carry out the :class:`OmsActions` it
returns (pings to send, work orders, customer notices, status updates). Each evaluation:

1. **takes in** the queued events at once (one vectorised meter-id lookup for every batch since
   the last evaluation);
2. **verifies** young outages with the pings that came back: the meter of a single premise
   answered (no outage: cancelled) or is dead while its neighbours answered (customer side); a
   network outage with a dead meter below and live meters beside it is *confirmed*;
3. **starts restorations** (:mod:`.restoration`): power restores from an outage's meters;
4. **locates** (:mod:`.location`, :mod:`.inference`): the fresh evidence that no settled outage
   holds, burst by burst, explained by the most upstream devices whose meters explain it; young
   outages follow — revised, merged, split — and a new outage is predicted once its first report
   is ``hold_s`` old;
5. **finishes restorations**: pings to the meters not heard from, then nested outages (they keep
   the parent's start) or restored; momentary when within ``momentary_s``;
6. **dispatches** a work order with an estimated restoration time ``dispatch_delay_s`` after an
   outage began (once verified, or once verification timed out), updates it when the location is
   revised and closes it at restoration; customers get the estimate and the restoration.

The cost follows the news: array work is over meters with fresh evidence, bursts that changed and
the nodes above their evidence; loops are over the outages that need something (watch lists).
"""

from __future__ import annotations

import datetime as dt
import time
from itertools import chain, repeat

import numpy as np
import numpy.typing as npt

from gridloom.devices.meters import MeterEventKind
from gridloom.systems.oms.actions import (
    CustomerNotice,
    OmsActions,
    PingPurpose,
    PingRequest,
    StatusUpdate,
    WorkOrder,
    WorkOrderAction,
)
from gridloom.systems.oms.base import NEVER, US, BoolArray, IntArray, OmsStats
from gridloom.systems.oms.config import OmsConfig
from gridloom.systems.oms.evidence import EVENT_CODES
from gridloom.systems.oms.indices import ReliabilityIndices, reliability_indices
from gridloom.systems.oms.records import OutageKind, OutageRecord, OutageStatus, at_of
from gridloom.systems.oms.restoration import Restoration
from gridloom.systems.oms.topology import OmsTopology

QUEUE_EVENTS = 50_000  # events waiting before they are taken in anyway
_LAST_GASP = MeterEventKind.LAST_GASP.name


class OmsCore(Restoration):
    """Outage management on one connectivity model (see the module docstring)."""

    def __init__(self, topology: OmsTopology | None = None, *, config: OmsConfig | None = None) -> None:
        super().__init__(config)
        self._last_eval_us: int = NEVER
        self._queued: list[tuple[list[str], list[int], list[str], int]] = []
        self._queued_count = 0
        if topology is not None:
            self.set_topology(topology)

    # ------------------------------------------------------------------ set-up
    def set_topology(self, topology: OmsTopology) -> None:
        """Use a connectivity model. A first model replays events buffered before it came; a
        newer model (new current states) keeps the evidence and outages when its meters and nodes are the same."""
        old = self.topology
        same = (
            old is not None
            and np.array_equal(old.payload.meter_id, topology.payload.meter_id)
            and np.array_equal(old.node_device, topology.node_device)
        )
        self.topology = topology
        topology.warm()
        self._known_below = topology.count_below(np.flatnonzero(topology.known_out).astype(np.int64))
        if not same:
            self._reset(topology)
        self.take_queued()  # events that came before the model

    @property
    def ready(self) -> bool:
        return self.topology is not None

    @property
    def customers_served(self) -> int:
        return 0 if self.topology is None else self.topology.n_meters

    # ------------------------------------------------------------------ evidence in
    def add_event_columns(self, meter_ids: list[str], at_us: list[int], kinds: list[str], *, now_us: int) -> int:
        """Events as they travel (``meter_events`` columns, received at ``now_us``).

        They are queued and taken in together — one vectorised id lookup for many batches — before
        the next evaluation (or when ``QUEUE_EVENTS`` are waiting, or the model comes); returns how
        many were queued.
        """
        if not meter_ids:
            return 0
        self._queued.append((meter_ids, at_us, kinds, now_us))
        self._queued_count += len(meter_ids)
        # a last gasp may be a new outage: look after the hold; restores can wait a little longer
        soon = self.config.hold_s if _LAST_GASP in kinds else self.config.restore_check_s
        self._want(now_us + round(soon * US))
        if self.topology is not None and self._queued_count >= QUEUE_EVENTS:
            self.take_queued()
        return len(meter_ids)

    def take_queued(self) -> int:
        """Take in the queued events now; returns how many were used (last gasps and restores)."""
        if self.topology is None or not self._queued:
            return 0
        queued, self._queued, self._queued_count = self._queued, [], 0
        ids = list(chain.from_iterable(q[0] for q in queued))
        n = len(ids)
        at = np.fromiter(chain.from_iterable(q[1] for q in queued), dtype=np.int64, count=n)
        codes = np.fromiter(
            map(EVENT_CODES.get, chain.from_iterable(q[2] for q in queued), repeat(0, n)), dtype=np.int64, count=n
        )
        now = np.repeat(np.asarray([q[3] for q in queued], dtype=np.int64), [len(q[0]) for q in queued])
        keep = np.flatnonzero(codes > 0)
        if len(keep) < n:
            self.evidence.stats.ignored += n - len(keep)
            ids = [ids[i] for i in keep.tolist()]
            at, codes, now = at[keep], codes[keep], now[keep]
        return self.evidence.add_events(self.topology.meters_of(ids), at, codes, now_us=now)

    def add_events(self, meters: IntArray, at_us: IntArray, kinds: npt.NDArray[np.integer], *, now_us: int) -> int:
        """Meter events by row (``MeterEventKind`` codes; last gasps and restores are used)."""
        used = self.evidence.add_events(meters, at_us, kinds, now_us=now_us)
        if used:
            gasps = bool((np.asarray(kinds) == MeterEventKind.LAST_GASP).any())
            self._want(now_us + round((self.config.hold_s if gasps else self.config.restore_check_s) * US))
        return used

    def add_pings(
        self, meters: IntArray, alive: BoolArray, *, at_us: int, request_id: str | None = None, done: bool = True
    ) -> None:
        """Ping outcomes: ``alive`` answered, the others did not (no supply). ``done``: the request is complete."""
        self.evidence.add_pings(np.asarray(meters, dtype=np.int64), np.asarray(alive, dtype=bool), at_us=at_us)
        if request_id is not None:
            self.ping_answered(request_id, done=done)
        self._want(at_us)

    def ping_answered(self, request_id: str, *, done: bool = True) -> None:
        """Answers to ping round ``request_id`` came in (all of them: ``done``)."""
        pending = self._pending_pings.get(request_id)
        if pending is None:
            return
        outage = self.outages[pending[0]]
        outage.dirty = True
        if done:
            del self._pending_pings[request_id]
            outage.outstanding.discard(request_id)

    def _want(self, at_us: int) -> None:
        at_us = max(at_us, self._last_eval_us + round(self.config.evaluate_interval_s * US))
        self.due_us = at_us if self.due_us is None else min(self.due_us, at_us)

    def is_due(self, now_us: int) -> bool:
        return self.due_us is not None and now_us >= self.due_us

    # ------------------------------------------------------------------ evaluation
    def evaluate(self, now_us: int) -> OmsActions:
        """One evaluation at ``now_us`` (see the module docstring); returns what to send."""
        began = time.perf_counter()
        actions = OmsActions()
        self.due_us = None
        self._last_eval_us = now_us
        if self.topology is not None:
            self.take_queued()
            for outage in self._watched(self._unsettled):
                if not self._young(outage, now_us):
                    self._mask(outage)
            self._verify(now_us, actions)
            self._restoring(now_us, actions)
            self._locate(now_us, actions)
            self._restore(now_us, actions)
            self._dispatch(now_us, actions)
            self._schedule(now_us)
            self.evidence.changed[:] = False
            # one status per outage and evaluation: the latest (a storm revises many at once)
            latest = {update.outage_id: update for update in actions.status}
            actions.status = list(latest.values())
        self.stats.evaluations += 1
        self.stats.evaluation_s += time.perf_counter() - began
        return actions

    # -- 1. verification --------------------------------------------------------------------------
    def _verify(self, now_us: int, actions: OmsActions) -> None:
        ev, tol = self.evidence, round(self.config.clock_tolerance_s * US)
        timeout = round(self.config.ping_timeout_s * US)
        for outage in self._watched(self._to_verify):
            if outage.restoring_since >= 0 or outage.ping_sent < 0 or outage.verified:
                self._to_verify.discard(outage.id)
                continue
            answered = not outage.outstanding or now_us >= outage.ping_sent + timeout
            if not answered:
                continue
            since = outage.ping_sent - tol
            beside = outage.ping_beside
            beside_alive = bool(len(beside) == 0 or (ev.ok[beside] >= since).all())
            if outage.kind is OutageKind.PREMISE:
                m = outage.meter
                if ev.ok[m] >= since and ev.ok[m] > ev.fail[m]:
                    self._close(outage, now_us, OutageStatus.CANCELLED, "the meter answered a ping: it has supply")
                    actions.status.append(self._status(outage))
                    continue
                if ev.fail[m] >= since and beside_alive and len(beside):
                    outage.customer_side = True
                    outage.verified = True
                    self._to_verify.discard(outage.id)
                    self._to_dispatch.discard(outage.id)
                    outage.status = OutageStatus.CONFIRMED
                    outage.log(now_us, "customer side", "the meter is dead and its neighbours have supply")
                    actions.status.append(self._status(outage))
                    actions.notices.append(self._notice(outage, "customer_side"))
                continue
            below = outage.ping_below
            below_dead = bool(len(below) == 0 or (ev.fail[below] >= since).any())
            if below_dead and beside_alive:
                outage.verified = True
                self._to_verify.discard(outage.id)
                if outage.status is OutageStatus.SUSPECTED:
                    outage.status = OutageStatus.CONFIRMED
                    outage.log(now_us, "confirmed", "verification pings: dead below, supply beside")
                    actions.status.append(self._status(outage))

    # -- 4. crews and customers -----------------------------------------------------------------------
    def _dispatch(self, now_us: int, actions: OmsActions) -> None:
        cfg = self.config
        delay, timeout = round(cfg.dispatch_delay_s * US), round(cfg.ping_timeout_s * US)
        for outage in self._watched(self._to_dispatch):
            if outage.work_order_id is not None or outage.customer_side or outage.restoring_since >= 0:
                self._to_dispatch.discard(outage.id)
                continue
            if outage.kind is OutageKind.PREMISE and outage.parent is None:
                continue  # a lone premise is verified first: customer side or part of a wider outage
            verified = outage.verified or (outage.ping_sent >= 0 and now_us >= outage.ping_sent + timeout)
            if now_us < outage.start_us + delay or not verified:
                continue
            outage.work_order_id = f"wo-{outage.outage_id}"
            self._to_dispatch.discard(outage.id)
            repair = cfg.repair_s.get(outage.device_kind, cfg.repair_s[OutageKind.PREMISE.value])
            outage.estimated_restoration_us = now_us + round(repair * US)
            outage.log(now_us, "dispatched", f"{outage.work_order_id}, ETR {at_of(outage.estimated_restoration_us)}")
            actions.work_orders.append(self._work_order(outage, WorkOrderAction.CREATE, "outage located"))
            actions.notices.append(self._notice(outage, "out"))
            actions.status.append(self._status(outage))
            self.stats.work_orders += 1

    # -- scheduling --------------------------------------------------------------------------------------------
    def _schedule(self, now_us: int) -> None:
        cfg = self.config
        wants: list[int] = []
        ev = self.evidence
        live = np.flatnonzero(ev.live & (self.owner < 0))
        if len(live):
            c = ev.consumed[live]
            waiting = (
                (ev.gasp[live] > c) | (ev.restore[live] > c + round(cfg.restore_grace_s * US)) | (ev.fail[live] > c)
            )
            if waiting.any():
                wants.append(int(ev.first_seen[live[waiting]].min()) + round(cfg.hold_s * US))
        merge, timeout = round(cfg.merge_window_s * US), round(cfg.ping_timeout_s * US)
        wants += [o.detected_us + merge for o in self._watched(self._unsettled)]
        wants += [o.ping_sent + timeout for o in self._watched(self._to_verify)]
        for outage in self._watched(self._restoring_ids):
            wants.append(outage.restoring_since + round(cfg.restore_settle_s * US))
            if outage.restore_ping_sent >= 0:
                wants.append(outage.restore_ping_sent + timeout)
        wants += [o.start_us + round(cfg.dispatch_delay_s * US) for o in self._watched(self._to_dispatch)]
        future = [w for w in wants if w > now_us]
        if future:
            self._want(min(future))

    # ------------------------------------------------------------------ what the OMS knows
    def records(self) -> list[OutageRecord]:
        """Every outage the OMS has recorded, oldest first."""
        topo = self.topology
        out = []
        for o in self.outages:
            equivalent = tuple(topo.equivalent_devices(o.node)) if topo is not None and o.node >= 0 else ()
            out.append(o.record(equivalent))
        return out

    def indices(self, start: dt.datetime, end: dt.datetime, *, as_of: dt.datetime | None = None) -> ReliabilityIndices:
        """IEEE 1366 indices of the outages that began in [start, end) (UTC datetimes)."""
        return reliability_indices(
            self.records(), customers_served=max(self.customers_served, 1), start=start, end=end, as_of=as_of
        )


__all__ = [
    "CustomerNotice",
    "OmsActions",
    "OmsConfig",
    "OmsCore",
    "OmsStats",
    "PingPurpose",
    "PingRequest",
    "StatusUpdate",
    "WorkOrder",
    "WorkOrderAction",
    "at_of",
]
