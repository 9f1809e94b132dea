"""The OMS's logic without the fabric: detect, locate, verify and restore outages from meter evidence.

:class:`OmsCore` is synchronous and takes the time as an argument. Feed it meter events
(:meth:`OmsCore.add_events`) and ping outcomes (:meth:`OmsCore.add_pings`) as they arrive, call
:meth:`OmsCore.evaluate` when :attr:`OmsCore.due_us` has come, and carry out the
:class:`OmsActions` it returns (pings to send, work orders, customer notices, status updates).
Each evaluation:

1. **verifies** young outages with the pings that came back: the meter of a single premise
   answered (no outage: cancelled) or is dead while its neighbours answered (customer side);
   a network outage with a dead meter below and live meters beside it is *confirmed*;
2. **locates** (``explain`` in :mod:`.inference`) from every meter with fresh evidence that no
   settled outage holds: the most upstream devices whose meters explain the evidence. Young
   outages (detected less than ``merge_window_s`` ago, not restoring) follow the new
   explanation — revised up or down, merged when one device now explains several, split when
   several explain one; a new outage is predicted once its first report is ``hold_s`` old.
   Outages still open after the window are settled: their meters no longer move;
3. **restores**: a power restore (or, once settled, an answered ping) from a meter of an outage
   since it began starts its restoration; ``restore_settle_s`` later (restores trickle in) the
   OMS pings a sample of the meters not heard from — one per branch first, so a nested outage
   shows even if all its last gasps were lost — and explains what is still dead within the
   outage: nested outages (they keep the parent's start) or nothing (restored). An outage
   restored within ``momentary_s`` is momentary;
4. **dispatches** a work order with an estimated restoration time ``dispatch_delay_s`` after an
   outage began (once verified, or once verification timed out), updates it when the location
   is revised and closes it at restoration; customers get the estimate and the restoration.

Every array operation is over meters with fresh evidence or over nodes; the loops are over
outages (a storm has thousands, not millions).
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from gridloom.errors import OmsConfigError
from gridloom.systems.oms.actions import (
    CustomerNotice,
    OmsActions,
    PingPurpose,
    PingRequest,
    StatusUpdate,
    WorkOrder,
    WorkOrderAction,
)
from gridloom.systems.oms.config import OmsConfig
from gridloom.systems.oms.evidence import EVENT_CODES, NEVER, Evidence
from gridloom.systems.oms.indices import ReliabilityIndices, reliability_indices
from gridloom.systems.oms.inference import explain, group_bursts, subtree_max, subtree_min
from gridloom.systems.oms.outages import Outage
from gridloom.systems.oms.records import OutageKind, OutageRecord, OutageStatus, at_of, us_of
from gridloom.systems.oms.topology import OmsTopology

IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]
FloatArray = npt.NDArray[np.float64]
_US = 1_000_000


@dataclass
class OmsStats:
    evaluations: int = 0
    evaluation_s: float = 0.0
    pings_requested: int = 0
    ping_rounds: int = 0
    work_orders: int = 0


@dataclass(frozen=True)
class _Element:
    """One outage of an explanation: a node or a single premise, with its meter range."""

    node: int  # -1 for a premise
    meter: int  # the premise's meter row, -1 for a node
    lo: int
    hi: int
    t0: int  # earliest interruption evidence (µs)
    first_seen: int  # when the OMS first heard of it
    confidence: float

    @property
    def size(self) -> int:
        return self.hi - self.lo


class OmsCore:
    """Outage management on one connectivity model (see the module docstring)."""

    def __init__(self, topology: OmsTopology | None = None, *, config: OmsConfig | None = None) -> None:
        self.config = config or OmsConfig()
        self.stats = OmsStats()
        self.topology: OmsTopology | None = None
        self.outages: list[Outage] = []
        self.due_us: int | None = None
        self._last_eval_us: int = NEVER
        self._ping_seq = 0
        self._pending_pings: dict[str, tuple[int, PingPurpose]] = {}
        self._buffer: list[tuple[list[str], list[int], list[str], int]] = []
        self.evidence = Evidence(0)
        if topology is not None:
            self.set_topology(topology)

    # ------------------------------------------------------------------ set-up
    def set_topology(self, topology: OmsTopology) -> None:
        """Use a connectivity model. A first model replays events buffered before it came; a
        newer model (new current states) keeps the evidence and outages when its meters are the same."""
        old = self.topology
        same_meters = old is not None and np.array_equal(old.payload.meter_id, topology.payload.meter_id)
        self.topology = topology
        self._known_below = topology.count_below(np.flatnonzero(topology.known_out).astype(np.int64))
        if old is None or not same_meters:
            self.evidence = Evidence(topology.n_meters)
            self.owner = np.full(topology.n_meters, -1, dtype=np.int64)
            self.outages = []
        buffered, self._buffer = self._buffer, []
        for ids, at_us, kinds, now_us in buffered:
            self.add_event_columns(ids, at_us, kinds, now_us=now_us)

    @property
    def ready(self) -> bool:
        return self.topology is not None

    @property
    def customers_served(self) -> int:
        return 0 if self.topology is None else self.topology.n_meters

    # ------------------------------------------------------------------ evidence in
    def add_event_columns(self, meter_ids: list[str], at_us: list[int], kinds: list[str], *, now_us: int) -> int:
        """Events as they travel (``meter_events`` columns); buffered until a model is set."""
        if self.topology is None:
            self._buffer.append((meter_ids, at_us, kinds, now_us))
            return 0
        codes = np.fromiter(map(EVENT_CODES.get, kinds, [0] * len(kinds)), dtype=np.int64, count=len(kinds))
        keep = np.flatnonzero(codes > 0)
        if len(keep) < len(kinds):
            self.evidence.stats.ignored += len(kinds) - len(keep)
            meter_ids = [meter_ids[i] for i in keep.tolist()]
            at = np.asarray(at_us, dtype=np.int64)[keep]
            codes = codes[keep]
        else:
            at = np.asarray(at_us, dtype=np.int64)
        return self.add_events(self.topology.meters_of(meter_ids), at, codes, now_us=now_us)

    def add_events(self, meters: IntArray, at_us: IntArray, kinds: npt.NDArray[np.integer], *, now_us: int) -> int:
        """Meter events by row (``MeterEventKind`` codes; last gasps and restores are used)."""
        used = self.evidence.add_events(meters, at_us, kinds, now_us=now_us)
        if used:
            self._want(now_us + round(self.config.hold_s * _US))
        return used

    def add_pings(
        self, meters: IntArray, alive: BoolArray, *, at_us: int, request_id: str | None = None, done: bool = True
    ) -> None:
        """Ping outcomes: ``alive`` answered, the others did not (no supply). ``done``: the request is complete."""
        self.evidence.add_pings(np.asarray(meters, dtype=np.int64), np.asarray(alive, dtype=bool), at_us=at_us)
        if request_id is not None and done:
            pending = self._pending_pings.pop(request_id, None)
            if pending is not None:
                outage = self.outages[pending[0]]
                outage.outstanding.discard(request_id)
        self._want(at_us)

    def _want(self, at_us: int) -> None:
        at_us = max(at_us, self._last_eval_us + round(self.config.evaluate_interval_s * _US))
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
            self._verify(now_us, actions)
            owned, ids, alive = self._restoring(now_us, actions)
            self._locate(now_us, actions)
            self._restore(owned, ids, alive, now_us, actions)
            self._dispatch(now_us, actions)
            self._schedule(now_us)
        self.stats.evaluations += 1
        self.stats.evaluation_s += time.perf_counter() - began
        return actions

    # -- 1. verification --------------------------------------------------------------------------
    def _verify(self, now_us: int, actions: OmsActions) -> None:
        ev, tol = self.evidence, round(self.config.clock_tolerance_s * _US)
        timeout = round(self.config.ping_timeout_s * _US)
        for outage in self._open():
            if outage.restoring_since >= 0 or outage.ping_sent < 0 or outage.verified:
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
                    outage.status = OutageStatus.CONFIRMED
                    outage.log(now_us, "customer side", "the meter is dead and its neighbours have supply")
                    actions.status.append(self._status(outage))
                    actions.notices.append(self._notice(outage, "customer_side"))
                continue
            below = outage.ping_below
            below_dead = bool(len(below) == 0 or (ev.fail[below] >= since).any())
            if below_dead and beside_alive:
                outage.verified = True
                if outage.status is OutageStatus.SUSPECTED:
                    outage.status = OutageStatus.CONFIRMED
                    outage.log(now_us, "confirmed", "verification pings: dead below, supply beside")
                    actions.status.append(self._status(outage))

    # -- 2. location --------------------------------------------------------------------------------
    def _young(self, outage: Outage, now_us: int) -> bool:
        return (
            outage.status in (OutageStatus.SUSPECTED, OutageStatus.CONFIRMED)
            and outage.restoring_since < 0
            and not outage.customer_side
            and now_us - outage.detected_us < round(self.config.merge_window_s * _US)
        )

    def _locate(self, now_us: int, actions: OmsActions) -> None:
        """Explain the fresh evidence that no settled outage holds, one burst of interruptions at a time."""
        topo, ev, cfg = self._topo, self.evidence, self.config
        live = np.flatnonzero(ev.live).astype(np.int64)
        young = [o for o in self._open() if self._young(o, now_us)]
        if not len(live) and not young:
            return
        grace = round(cfg.restore_grace_s * _US)
        consumed = ev.consumed[live]
        g, r, fl, ok = ev.gasp[live], ev.restore[live], ev.fail[live], ev.ok[live]
        fresh_g, fresh_r, fresh_f, fresh_ok = g > consumed, r > consumed + grace, fl > consumed, ok > consumed
        interrupted = fresh_g | fresh_r | fresh_f
        recent_ok = fresh_ok & (ok >= now_us - round((cfg.merge_window_s + cfg.hold_s) * _US))
        stale = ~(interrupted | recent_ok)
        if stale.any():
            gone = live[stale]
            ev.live[gone] = False
            ev.first_seen[gone] = NEVER
        masked_ids = self._masked_ids(now_us)
        owner = self.owner[live]
        in_dp = ~topo.known_out[live] & ~(masked_ids[np.maximum(owner, 0)] & (owner >= 0))
        is_evid = interrupted & in_dp
        evid = live[is_evid]
        evid_reported = (fresh_g | fresh_r)[is_evid]
        # when each went out: its last gasp; a ping it did not answer counts from the outage that asked
        ref = ev.ref[evid]
        t_evid = np.where(
            fresh_g[is_evid],
            g[is_evid],
            np.where(fresh_f[is_evid], np.where(ref > consumed[is_evid], ref, fl[is_evid]), r[is_evid]),
        )
        seen_evid = ev.first_seen[evid]
        contradicting = live[recent_ok & ~interrupted & in_dp]
        ok_contra = ev.ok[contradicting].astype(np.float64)
        masked_rows = np.flatnonzero((self.owner >= 0) & masked_ids[np.maximum(self.owner, 0)])
        base_in_play = topo.meters_below - topo.count_below(masked_rows) - self._known_below
        gap = round(cfg.event_gap_s * _US)
        bursts = group_bursts(topo, evid, t_evid, gap_us=gap)
        burst_of = np.zeros(len(evid), dtype=np.int64)
        for b, idx in enumerate(bursts):
            burst_of[idx] = b
        young_burst = self._burst_of_outages(evid, burst_of, len(bursts))
        # a young outage's meters stay together, in its burst
        held = np.flatnonzero(self.owner[evid] >= 0)
        lookup = np.full(len(self.outages), -1, dtype=np.int64)
        for outage_id, b in young_burst.items():
            lookup[outage_id] = b
        moved = held[lookup[self.owner[evid[held]]] >= 0]
        burst_of[moved] = lookup[self.owner[evid[moved]]]
        bursts = [np.flatnonzero(burst_of == b) for b in range(len(bursts))]
        for b, idx in enumerate(bursts):
            mine = [o for o in young if young_burst.get(o.id) == b]
            if not len(idx):
                if mine:
                    self._match([], mine, now_us, actions)
                continue
            rows, t_b, seen_b = evid[idx], t_evid[idx], seen_evid[idx]
            others = np.setdiff1d(evid, rows, assume_unique=True)
            # meters other young outages hold (outages created for earlier bursts included) are not in
            # play; those of outages that began after this burst had supply then: no node holds them
            began = int(t_b.min())
            held_young = np.zeros(len(self.outages), dtype=bool)
            later = np.zeros(len(self.outages), dtype=bool)
            for o in self._open():
                held_young[o.id] = self._young(o, now_us) and young_burst.get(o.id, -1) != b
                later[o.id] = o.start_us > began + gap and young_burst.get(o.id, -1) != b
            owned = np.flatnonzero(self.owner >= 0)
            held_elsewhere = owned[held_young[self.owner[owned]]]
            excluded = np.union1d(others, held_elsewhere)
            in_play = (base_in_play - topo.count_below(excluded)).astype(np.float64)
            contradicted = topo.count_below(owned[later[self.owner[owned]]]) > 0
            elements = self._explain_burst(
                rows, evid_reported[idx], t_b, seen_b, contradicting, ok_contra, in_play, contradicted
            )
            created = len(self.outages)
            self._match(elements, mine, now_us, actions)
            for o in self.outages[created:]:
                young_burst[o.id] = b
        rest = [o for o in young if o.id not in young_burst]
        if rest:
            self._match([], rest, now_us, actions)

    def _burst_of_outages(self, evid: IntArray, burst_of: IntArray, n_bursts: int) -> dict[int, int]:
        """The burst holding most of each young outage's evidence."""
        owners = self.owner[evid]
        held = owners >= 0
        if not held.any() or not n_bursts:
            return {}
        key = owners[held] * n_bursts + burst_of[held]
        keys, counts = np.unique(key, return_counts=True)
        outage, burst = keys // n_bursts, keys % n_bursts
        best = np.lexsort((-counts, outage))
        first = np.concatenate([[True], outage[best][1:] != outage[best][:-1]])
        return dict(zip(outage[best][first].tolist(), burst[best][first].tolist(), strict=True))

    def _explain_burst(
        self,
        rows: IntArray,
        reported: BoolArray,
        t_int: IntArray,
        seen: IntArray,
        contradicting: IntArray,
        ok_contra: FloatArray,
        in_play: FloatArray,
        contradicted: BoolArray,
    ) -> list[_Element]:
        """The elements explaining one burst of evidence (meter rows sorted ascending within ``rows``)."""
        topo, cfg = self._topo, self.config
        n_nodes = topo.n_nodes
        t0 = np.full(n_nodes, np.inf)
        first_seen = np.full(n_nodes, np.inf)
        nodes = topo.meter_node[rows]
        has = nodes >= 0
        np.minimum.at(t0, nodes[has], t_int[has].astype(np.float64))
        np.minimum.at(first_seen, nodes[has], seen[has].astype(np.float64))
        t0, first_seen = subtree_min(topo, t0), subtree_min(topo, first_seen)
        alive_at = np.full(n_nodes, -np.inf)
        c_nodes = topo.meter_node[contradicting]
        keep = c_nodes >= 0
        np.maximum.at(alive_at, c_nodes[keep], ok_contra[keep])
        alive_at = subtree_max(topo, alive_at)
        answered = np.where(alive_at > t0 - cfg.clock_tolerance_s * _US, topo.count_below(contradicting), 0.0)
        explanation = explain(
            topo,
            reported=rows[reported],
            confirmed=rows[~reported],
            in_play=in_play,
            contradicted=contradicted,
            answered=answered.astype(np.float64),
            params=cfg.inference,
        )
        elements = [
            _Element(int(v), -1, int(topo.lo[v]), int(topo.hi[v]), int(t0[v]), int(first_seen[v]), float(c))
            for v, c in zip(explanation.nodes.tolist(), explanation.node_confidence.tolist(), strict=True)
        ]
        if len(explanation.premises):
            sort = np.argsort(rows, kind="stable")
            at = sort[np.searchsorted(rows[sort], explanation.premises)]
            for m, c, t, f in zip(
                explanation.premises.tolist(),
                explanation.premise_confidence.tolist(),
                t_int[at].tolist(),
                seen[at].tolist(),
                strict=True,
            ):
                pos = int(topo.meter_pos[m])
                elements.append(_Element(-1, m, pos, pos + 1, int(t), int(f), float(c)))
        return elements

    def _match(self, elements: list[_Element], young: list[Outage], now_us: int, actions: OmsActions) -> None:
        """Young outages follow the new explanation: kept, revised, merged, split; new ones after the hold."""
        hold = round(self.config.hold_s * _US)
        young.sort(key=lambda o: o.lo)
        los = np.asarray([o.lo for o in young], dtype=np.int64)
        his = np.asarray([o.hi for o in young], dtype=np.int64)
        related: list[list[int]] = []
        for e in elements:
            first = int(np.searchsorted(los, e.lo, side="right")) - 1
            rel = []
            if first >= 0 and his[first] > e.lo and los[first] < e.lo:  # an outage containing e
                rel.append(first)
            a, b = int(np.searchsorted(los, e.lo, side="left")), int(np.searchsorted(los, e.hi, side="left"))
            rel.extend(range(a, b))
            related.append(rel)
        # each young outage goes with the largest element it overlaps
        primary: dict[int, int] = {}
        for i, rel in enumerate(related):
            for j in rel:
                if j not in primary or elements[i].size > elements[primary[j]].size:
                    primary[j] = i
        young_ids = {o.id for o in young}
        for o in young:  # ownership is given again below
            rows = self._span_rows(o.lo, o.hi)
            rows = rows[self.owner[rows] == o.id]
            self.owner[rows] = -1
        kept: set[int] = set()
        for i, e in enumerate(elements):
            mine = [young[j] for j, p in primary.items() if p == i]
            if mine:
                mine.sort(key=lambda o: (o.start_us, o.id))
                survivor = mine[0]
                for other in mine[1:]:
                    other.merged_into = survivor.outage_id
                    self._close(other, now_us, OutageStatus.MERGED, f"merged into {survivor.outage_id}")
                    actions.status.append(self._status(other))
                    if other.work_order_id is not None:
                        actions.work_orders.append(self._work_order(other, WorkOrderAction.CANCEL, "merged"))
                    survivor.log(now_us, "merged", f"{other.outage_id} is part of this outage")
                    survivor.start_us = min(survivor.start_us, other.start_us)
                self._take(survivor, e, now_us, actions)
                kept.add(survivor.id)
                continue
            split_from = [young[j].outage_id for j in related[i]]
            if not split_from and now_us - e.first_seen < hold:
                continue  # not yet: more reports may come
            span = self._span_rows(e.lo, e.hi)
            if not (self.owner[span] == -1).any():
                continue  # every meter is in another outage already
            outage = self._new(e, now_us)
            if split_from:
                outage.log(now_us, "split", f"split from {', '.join(split_from)}")
            self._take(outage, e, now_us, actions, new=True)
        for o in young:
            if o.id not in kept and o.id in young_ids and o.status.open:
                self._close(o, now_us, OutageStatus.CANCELLED, "no evidence left: meters have supply")
                actions.status.append(self._status(o))
                if o.work_order_id is not None:
                    actions.work_orders.append(self._work_order(o, WorkOrderAction.CANCEL, "no outage"))

    def _take(self, outage: Outage, e: _Element, now_us: int, actions: OmsActions, *, new: bool = False) -> None:
        """Point ``outage`` at element ``e``: its meters, location and confidence; pings when it moved."""
        moved = new or (outage.node, outage.meter) != (e.node, e.meter)
        if moved and not new:
            outage.log(now_us, "revised", f"{outage.device_id} -> {self._device_id(e.node, e.meter)}")
        outage.node, outage.meter, outage.lo, outage.hi = e.node, e.meter, e.lo, e.hi
        outage.kind = OutageKind.NETWORK if e.node >= 0 else OutageKind.PREMISE
        outage.device_id = self._device_id(e.node, e.meter)
        outage.device_kind = self._topo.kind_of(e.node).value if e.node >= 0 else OutageKind.PREMISE.value
        outage.confidence = e.confidence
        if e.t0 < outage.start_us:
            outage.start_us = e.t0
        rows = self._span_rows(e.lo, e.hi)
        rows = rows[self.owner[rows] == -1]
        self.owner[rows] = outage.id
        outage.customers = len(rows)
        if moved:
            outage.verified = False
            if outage.status is OutageStatus.CONFIRMED:
                outage.status = OutageStatus.SUSPECTED
            self._verification_pings(outage, now_us, actions)
            actions.status.append(self._status(outage))
            if outage.work_order_id is not None:
                actions.work_orders.append(self._work_order(outage, WorkOrderAction.UPDATE, "located again"))
                actions.notices.append(self._notice(outage, "out"))

    def _new(self, e: _Element, now_us: int) -> Outage:
        outage = Outage(
            id=len(self.outages),
            outage_id=f"out-{len(self.outages) + 1:06d}",
            start_us=e.t0,
            detected_us=now_us,
        )
        outage.predicted_device_id = self._device_id(e.node, e.meter)
        outage.log(now_us, "detected", f"at {outage.predicted_device_id}, confidence {e.confidence:.2f}")
        self.outages.append(outage)
        return outage

    # -- 3. restoration -----------------------------------------------------------------------------
    def _restoring(self, now_us: int, actions: OmsActions) -> tuple[IntArray, IntArray, BoolArray]:
        """Outages whose meters report power back start restoring (before location, which then leaves
        them alone). Returns the owned meters, their outages and whether each has supply again."""
        ev = self.evidence
        open_outages = self._open()
        owned = np.flatnonzero(self.owner >= 0).astype(np.int64)
        ids = self.owner[owned]
        settled = self._attr(open_outages, lambda o: int(not self._young(o, now_us)))
        since = self._restored_after(open_outages, owned, ids)
        alive = (ev.restore[owned] > since) | ((ev.ok[owned] > since) & (settled[ids] > 0))
        alive &= np.maximum(ev.restore[owned], ev.ok[owned]) >= np.maximum(ev.gasp[owned], ev.fail[owned])
        any_alive = np.bincount(ids[alive], minlength=len(self.outages)) > 0
        for outage in open_outages:
            if outage.restoring_since < 0 and any_alive[outage.id]:
                outage.restoring_since = now_us
                outage.status = OutageStatus.RESTORING
                outage.log(now_us, "restoring", "power restores from its meters")
                actions.status.append(self._status(outage))
        return owned, ids, alive

    def _restore(self, owned: IntArray, ids: IntArray, alive: BoolArray, now_us: int, actions: OmsActions) -> None:
        """Restoring outages, once settled and pinged: nested outages or restored."""
        cfg = self.config
        open_outages = [o for o in self._open() if o.restoring_since >= 0]
        if not open_outages:
            return
        settle = round(cfg.restore_settle_s * _US)
        timeout = round(cfg.ping_timeout_s * _US)
        ready: list[Outage] = []
        for outage in open_outages:
            if outage.restoring_since < 0 or now_us < outage.restoring_since + settle:
                continue
            if outage.restore_ping_sent < 0:
                self._restoration_pings(outage, owned, ids, alive, now_us, actions)
                if outage.outstanding:
                    continue
            elif outage.outstanding and now_us < outage.restore_ping_sent + timeout:
                continue
            ready.append(outage)
        if ready:
            self._finish_restorations(ready, owned, ids, now_us, actions)

    def _restored_after(self, outages: list[Outage], owned: IntArray, ids: IntArray) -> IntArray:
        """Per owned meter: alive evidence after this shows restoration — after the outage's last
        last gasp, so the restores between the shots of a reclosing sequence that then locks out do not."""
        tol = round(self.config.clock_tolerance_s * _US)
        start = self._attr(outages, lambda o: o.start_us)
        gasps = self.evidence.gasp[owned]
        of_it = gasps >= start[ids] - tol
        last = start.copy()
        np.maximum.at(last, ids[of_it], gasps[of_it])
        out: IntArray = last[ids] + tol
        return out

    def _restoration_pings(
        self, outage: Outage, owned: IntArray, ids: IntArray, alive: BoolArray, now_us: int, actions: OmsActions
    ) -> None:  # first round
        """Ping meters of a restoring outage not heard from since: one in each branch where no meter has
        supply again (a nested outage?), then those beside restored meters (a restore lost?), spread out."""
        outage.restore_ping_sent = now_us
        outage.restore_rounds = 1
        quota = self.config.ping_restore
        mine = ids == outage.id
        silent = owned[mine & ~alive]
        if not len(silent) or quota == 0:
            return
        topo = self._topo
        silent = silent[np.argsort(topo.meter_pos[silent], kind="stable")]
        nodes = topo.meter_node[silent]
        back = np.zeros(topo.n_nodes + 1, dtype=bool)
        back[topo.meter_node[owned[mine & alive]]] = True
        dark = ~back[nodes]
        _, first = np.unique(nodes[dark], return_index=True)
        chosen = silent[dark][np.sort(first)][: max(quota // 2, 1)]
        lone = silent[~dark]
        chosen = np.concatenate([chosen, _spread(lone, quota - len(chosen))])
        if len(chosen) < quota:
            rest = np.setdiff1d(silent, chosen)
            chosen = np.concatenate([chosen, _spread(rest, quota - len(chosen))])
        self._ping(outage, chosen, PingPurpose.RESTORE, now_us, actions)

    def _finish_restorations(
        self, ready: list[Outage], owned: IntArray, ids: IntArray, now_us: int, actions: OmsActions
    ) -> None:
        """Explain what is still dead inside each restoring outage: nested outages, or restored."""
        topo, ev, cfg = self._topo, self.evidence, self.config
        tol = round(cfg.clock_tolerance_s * _US)
        ready_ids = np.asarray([o.id for o in ready], dtype=np.int64)
        mine = np.isin(ids, ready_ids)
        rows, rid = owned[mine], ids[mine]
        since = self._restored_after(ready, rows, rid)
        dead_at = np.maximum(ev.gasp[rows], ev.fail[rows])
        alive_at = np.maximum(ev.restore[rows], ev.ok[rows])
        start = self._attr(ready, lambda o: o.start_us)
        dead = (dead_at > alive_at) & (dead_at > ev.consumed[rows]) & (dead_at >= start[rid] - tol)
        alive = ~dead & (alive_at > since)
        # when each dead meter went dead: its last gasp if that came after its last sign of supply
        went_dead = np.where(ev.gasp[rows] > alive_at, ev.gasp[rows], ev.fail[rows])
        reported = rows[dead & (ev.gasp[rows] >= ev.fail[rows])]
        confirmed = rows[dead & (ev.fail[rows] > ev.gasp[rows])]
        allowed_diff = np.zeros(topo.n_nodes + 1, dtype=np.int64)
        for o in ready:
            if o.node >= 0:
                allowed_diff[o.node] += 1
                allowed_diff[topo.node_end[o.node]] -= 1
        explanation = explain(
            topo,
            reported=reported,
            confirmed=confirmed,
            in_play=topo.count_below(rows).astype(np.float64),
            contradicted=topo.count_below(rows[alive]) > 0,
            allowed=np.cumsum(allowed_diff)[:-1] > 0,
            params=cfg.inference,
        )
        el_lo = np.concatenate([topo.lo[explanation.nodes], topo.meter_pos[explanation.premises]])
        el_hi = np.concatenate([topo.hi[explanation.nodes], topo.meter_pos[explanation.premises] + 1])
        el_node = np.concatenate([explanation.nodes, np.full(len(explanation.premises), -1, dtype=np.int64)])
        el_meter = np.concatenate([np.full(len(explanation.nodes), -1, dtype=np.int64), explanation.premises])
        el_conf = np.concatenate([explanation.node_confidence, explanation.premise_confidence])
        dead_time = dict(zip(rows[dead].tolist(), went_dead[dead].tolist(), strict=True))
        used = np.zeros(len(el_lo), dtype=bool)
        for outage in sorted(ready, key=lambda o: (o.hi - o.lo, o.id)):  # inner outages first
            inside = np.flatnonzero((el_lo >= outage.lo) & (el_hi <= outage.hi) & ~used)
            used[inside] = True
            if any(int(el_lo[i]) == outage.lo and int(el_hi[i]) == outage.hi for i in inside):
                outage.restoring_since = -1
                outage.restore_ping_sent, outage.restore_rounds = -1, 0
                outage.status = OutageStatus.CONFIRMED if outage.verified else OutageStatus.SUSPECTED
                outage.log(now_us, "not restored", "its meters are still dead")
                continue
            lone = [int(el_meter[i]) for i in inside.tolist() if el_meter[i] >= 0]
            unasked = [m for m in lone if max(ev.fail[m], ev.ok[m]) < outage.restore_ping_sent]
            if unasked and outage.restore_rounds < 2:
                # single meters still dead: most are restores lost on the way; ask them before calling them out
                outage.restore_rounds += 1
                outage.restore_ping_sent = now_us
                self._ping(outage, np.asarray(unasked, dtype=np.int64), PingPurpose.RESTORE, now_us, actions)
                continue
            of_it = (rid == outage.id) & alive
            mine_rows = rows[of_it]
            restores = ev.restore[mine_rows]
            restores = restores[restores > since[of_it]]
            if len(restores):
                restored_at = int(np.median(restores))
            else:
                oks = ev.ok[mine_rows]
                restored_at = int(oks.min()) if len(oks) else now_us
            restored_at = max(restored_at, outage.start_us)
            for i in inside.tolist():
                lo, hi = int(el_lo[i]), int(el_hi[i])
                span = self._span_rows(lo, hi)
                span = span[self.owner[span] == outage.id]
                t_dead = [dead_time[m] for m in span.tolist() if m in dead_time]
                t0 = min(t_dead) if t_dead else restored_at
                nested = t0 <= restored_at + tol
                e = _Element(int(el_node[i]), int(el_meter[i]), lo, hi, min(outage.start_us, t0) if nested else t0,
                             now_us, float(el_conf[i]))  # fmt: skip
                child = self._new(e, now_us)
                if nested:
                    child.parent = outage.outage_id
                    child.log(now_us, "nested", f"still out when {outage.outage_id} was restored")
                    outage.log(now_us, "nested outage", f"{child.outage_id} at {child.predicted_device_id}")
                self.owner[span] = -1
                self._take(child, e, now_us, actions, new=True)
                if child.customers == 0:
                    child.status = OutageStatus.CANCELLED
            remaining = np.flatnonzero(self.owner[self._span_rows(outage.lo, outage.hi)] == outage.id)
            outage.customers = len(remaining)
            outage.end_us = restored_at
            if outage.customers == 0:
                self._close(outage, now_us, OutageStatus.MERGED, "its customers are all in nested outages")
            else:
                outage.momentary = (restored_at - outage.start_us) < cfg.momentary_s * _US
                what = "momentary interruption" if outage.momentary else "restored"
                self._close(outage, now_us, OutageStatus.RESTORED, what, end_us=restored_at)
            actions.status.append(self._status(outage))
            if outage.work_order_id is not None:
                actions.work_orders.append(self._work_order(outage, WorkOrderAction.CLOSE, "power restored"))
            if outage.notified:
                actions.notices.append(self._notice(outage, "restored"))

    # -- 4. crews and customers -----------------------------------------------------------------------
    def _dispatch(self, now_us: int, actions: OmsActions) -> None:
        cfg = self.config
        delay, timeout = round(cfg.dispatch_delay_s * _US), round(cfg.ping_timeout_s * _US)
        for outage in self._open():
            if outage.work_order_id is not None or outage.customer_side or outage.restoring_since >= 0:
                continue
            if outage.kind is OutageKind.PREMISE and outage.parent is None:
                continue  # a lone premise is verified first: customer side or part of a wider outage
            verified = outage.verified or (outage.ping_sent >= 0 and now_us >= outage.ping_sent + timeout)
            if now_us < outage.start_us + delay or not verified:
                continue
            outage.work_order_id = f"wo-{outage.outage_id}"
            repair = cfg.repair_s.get(outage.device_kind, cfg.repair_s[OutageKind.PREMISE.value])
            outage.estimated_restoration_us = now_us + round(repair * _US)
            outage.log(now_us, "dispatched", f"{outage.work_order_id}, ETR {at_of(outage.estimated_restoration_us)}")
            actions.work_orders.append(self._work_order(outage, WorkOrderAction.CREATE, "outage located"))
            actions.notices.append(self._notice(outage, "out"))
            actions.status.append(self._status(outage))
            self.stats.work_orders += 1

    # -- pings ---------------------------------------------------------------------------------------------
    def _verification_pings(self, outage: Outage, now_us: int, actions: OmsActions) -> None:
        """Sample below (meters not heard from) and beside (below the parent, outside) the predicted device."""
        topo, ev, cfg = self._topo, self.evidence, self.config
        if outage.kind is OutageKind.PREMISE:
            node = int(topo.meter_node[outage.meter])
            below = np.asarray([outage.meter], dtype=np.int64)
            beside_lo, beside_hi = (int(topo.lo[node]), int(topo.hi[node])) if node >= 0 else (0, 0)
        else:
            span = self._span_rows(outage.lo, outage.hi)
            quiet = span[(ev.gasp[span] <= ev.consumed[span]) & (ev.fail[span] <= ev.consumed[span])]
            below = _spread(quiet, cfg.ping_below)
            up = int(topo.node_parent[outage.node])
            beside_lo, beside_hi = (int(topo.lo[up]), int(topo.hi[up])) if up >= 0 else (0, 0)
        outside = np.concatenate([topo.order[beside_lo : outage.lo], topo.order[outage.hi : beside_hi]]).astype(
            np.int64
        )
        outside = outside[~topo.known_out[outside]]
        if len(outside):
            quiet_out = outside[ev.gasp[outside] <= ev.consumed[outside]]
            outside = quiet_out if len(quiet_out) else outside
        beside = _spread(outside, cfg.ping_beside)
        outage.ping_below, outage.ping_beside = below, beside
        self._ping(outage, np.concatenate([below, beside]), PingPurpose.VERIFY, now_us, actions)
        outage.ping_sent = now_us

    def _ping(self, outage: Outage, meters: IntArray, purpose: PingPurpose, now_us: int, actions: OmsActions) -> None:
        if not len(meters):
            return
        self._ping_seq += 1
        request_id = f"ping-{self._ping_seq:07d}"
        self._pending_pings[request_id] = (outage.id, purpose)
        self.evidence.ref[meters] = outage.start_us
        outage.outstanding.add(request_id)
        actions.pings.append(PingRequest(request_id, np.unique(meters), outage.outage_id, purpose))
        self.stats.pings_requested += len(meters)
        self.stats.ping_rounds += 1
        outage.log(now_us, "pinged", f"{purpose.value}: {len(meters)} meters")

    # -- scheduling --------------------------------------------------------------------------------------------
    def _schedule(self, now_us: int) -> None:
        cfg = self.config
        wants: list[int] = []
        ev = self.evidence
        live = np.flatnonzero(ev.live & (self.owner < 0))
        if len(live):
            c = ev.consumed[live]
            waiting = (
                (ev.gasp[live] > c) | (ev.restore[live] > c + round(cfg.restore_grace_s * _US)) | (ev.fail[live] > c)
            )
            if waiting.any():
                wants.append(int(ev.first_seen[live[waiting]].min()) + round(cfg.hold_s * _US))
        for outage in self._open():
            if self._young(outage, now_us):
                wants.append(outage.detected_us + round(cfg.merge_window_s * _US))
                wants.append(outage.ping_sent + round(cfg.ping_timeout_s * _US))
            if outage.restoring_since >= 0:
                wants.append(outage.restoring_since + round(cfg.restore_settle_s * _US))
                if outage.restore_ping_sent >= 0:
                    wants.append(outage.restore_ping_sent + round(cfg.ping_timeout_s * _US))
            elif outage.work_order_id is None:
                wants.append(outage.start_us + round(cfg.dispatch_delay_s * _US))
        future = [w for w in wants if w > now_us]
        if future:
            self._want(min(future))

    # ------------------------------------------------------------------ helpers
    @property
    def _topo(self) -> OmsTopology:
        if self.topology is None:
            raise OmsConfigError("the OMS has no connectivity model yet")
        return self.topology

    def _open(self) -> list[Outage]:
        return [o for o in self.outages if o.status.open]

    def _masked_ids(self, now_us: int) -> BoolArray:
        masked = np.zeros(max(len(self.outages), 1), dtype=bool)
        for o in self._open():
            masked[o.id] = not self._young(o, now_us)
        return masked

    def _attr(self, outages: list[Outage], get: Callable[[Outage], int]) -> IntArray:
        """One value per outage id (0 for outages not in ``outages``)."""
        out = np.zeros(max(len(self.outages), 1), dtype=np.int64)
        for o in outages:
            out[o.id] = get(o)
        return out

    def _span_rows(self, lo: int, hi: int) -> IntArray:
        out: IntArray = self._topo.order[lo:hi]
        return out

    def _device_id(self, node: int, meter: int) -> str:
        topo = self._topo
        return str(topo.node_id[node]) if node >= 0 else str(topo.payload.meter_id[meter])

    def _close(self, outage: Outage, now_us: int, status: OutageStatus, detail: str, *, end_us: int = -1) -> None:
        outage.status = status
        if end_us >= 0:
            outage.end_us = end_us
        outage.log(now_us, status.value if status is not OutageStatus.RESTORED else "restored", detail)
        rows = self._span_rows(outage.lo, outage.hi)
        rows = rows[self.owner[rows] == outage.id]
        if status is not OutageStatus.MERGED:
            self.owner[rows] = -1
            self.evidence.consume(rows, until_us=outage.end_us if outage.end_us >= 0 else now_us)
        for request_id in outage.outstanding:
            self._pending_pings.pop(request_id, None)
        outage.outstanding.clear()

    def _status(self, outage: Outage) -> StatusUpdate:
        return StatusUpdate(
            outage.outage_id, outage.status.value if not outage.customer_side else "customer_side",
            outage.device_id, outage.customers, outage.confidence, outage.start_us,
            outage.estimated_restoration_us, outage.end_us,
        )  # fmt: skip

    def _work_order(self, outage: Outage, action: WorkOrderAction, reason: str) -> WorkOrder:
        return WorkOrder(
            outage.work_order_id or f"wo-{outage.outage_id}", outage.outage_id, action, outage.device_id,
            outage.device_kind, outage.customers, outage.start_us, outage.estimated_restoration_us, reason,
        )  # fmt: skip

    def _notice(self, outage: Outage, status: str) -> CustomerNotice:
        rows = self._span_rows(outage.lo, outage.hi)
        meters = rows[self.owner[rows] == outage.id] if status != "restored" else rows
        if outage.kind is OutageKind.PREMISE:
            meters = np.asarray([outage.meter], dtype=np.int64)
        outage.notified = True
        return CustomerNotice(
            outage.outage_id, status, meters.copy(), outage.start_us, outage.estimated_restoration_us, outage.end_us
        )

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


def _spread(rows: IntArray, count: int) -> IntArray:
    """Up to ``count`` of ``rows``, evenly spread over them (rows keep their order)."""
    if count <= 0 or not len(rows):
        return np.empty(0, dtype=np.int64)
    if len(rows) <= count:
        return rows.astype(np.int64)
    at = np.linspace(0, len(rows) - 1, count).round().astype(np.int64)
    out: IntArray = rows[np.unique(at)].astype(np.int64)
    return out


__all__ = [
    "CustomerNotice",
    "OmsActions",
    "OmsConfig",
    "OmsCore",
    "PingPurpose",
    "PingRequest",
    "StatusUpdate",
    "WorkOrder",
    "WorkOrderAction",
    "us_of",
]
