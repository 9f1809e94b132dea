"""Locating: fresh evidence explained burst by burst, and young outages following the explanation.

Fresh evidence is what meters said since their last outage closed (a last gasp, a restore, an
unanswered ping), unless an outage that no longer follows the evidence (settled, restoring) holds
the meter. It is cut into bursts (:func:`~gridloom.systems.oms.inference.group_bursts`); a burst
is explained again only when something in it changed (new events, new ping answers, evidence still
waiting for its hold), so the cost of an evaluation follows the news, not the territory. Within a
burst, meters other outages hold and other bursts' evidence are not in play, and a node holding an
outage that began after this burst cannot be out in it.

Young outages (detected less than ``merge_window_s`` ago) follow the explanation: kept, revised
(pinged again), merged (several explained by one device), split (one explained by several); a new
outage is predicted once its first report is ``hold_s`` old.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gridloom.systems.oms.actions import OmsActions, WorkOrderAction
from gridloom.systems.oms.base import NEVER, US, BoolArray, CoreBase, FloatArray, IntArray
from gridloom.systems.oms.inference import explain, group_bursts
from gridloom.systems.oms.outages import Outage
from gridloom.systems.oms.records import OutageKind, OutageStatus


@dataclass(frozen=True)
class Element:
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


@dataclass(frozen=True, eq=False)
class _Fresh:
    """This evaluation's fresh evidence (rows sorted ascending) and the answers that contradict it."""

    rows: IntArray
    reported: BoolArray  # a gasp or a restore (else an unanswered ping)
    t_int: IntArray  # when it went out
    seen: IntArray  # when the OMS first heard
    changed: BoolArray
    contra_nodes: IntArray  # nodes of meters that answered a ping and were never out, ascending
    contra_ok: FloatArray  # ... and when they answered


@dataclass(frozen=True, eq=False)
class _Burst:
    """A burst to explain again: its evidence (``idx`` into the fresh rows), young outages, substation."""

    b: int
    idx: IntArray
    mine: list[Outage]
    later: IntArray  # nodes (ascending) of outages below its substation that began after it
    root: int  # its substation's node (a negative number for a meter without a node)
    began: int


def _positive_sorted(nodes: IntArray) -> IntArray:
    out = np.sort(nodes)
    result: IntArray = out[np.searchsorted(out, 0) :]
    return result


class Location(CoreBase):
    def _locate(self, now_us: int, actions: OmsActions) -> None:
        """Explain the fresh evidence that no settled outage holds, one changed burst at a time."""
        topo, cfg = self._topo, self.config
        young = [o for o in self._watched(self._unsettled) if self._young(o, now_us)]
        recent = self._watched(self._unsettled | self._restoring_ids)  # those that may have begun after a burst
        fresh = self._fresh(now_us)
        if not len(fresh.rows) and not young:
            return
        gap = round(cfg.event_gap_s * US)
        burst_of, n_bursts = group_bursts(topo, fresh.rows, fresh.t_int, gap_us=gap)
        young_burst = self._burst_of_outages(fresh.rows, burst_of, n_bursts)
        # a young outage's meters stay together, in its burst
        lookup = np.full(len(self.outages), -1, dtype=np.int64)
        for outage_id, b in young_burst.items():
            lookup[outage_id] = b
        owners = self.owner[fresh.rows]
        held = np.flatnonzero(owners >= 0)
        moved = held[lookup[owners[held]] >= 0]
        burst_of[moved] = lookup[owners[moved]]
        by_burst = np.argsort(burst_of, kind="stable")
        cuts = np.searchsorted(burst_of[by_burst], np.arange(n_bursts + 1))
        bursts = [by_burst[cuts[b] : cuts[b + 1]] for b in range(n_bursts)]
        unowned = owners < 0
        all_unowned = np.sort(topo.meter_node[fresh.rows[unowned]])
        young_of: dict[int, list[Outage]] = {}
        for o in young:
            if o.id in young_burst:
                young_of.setdefault(young_burst[o.id], []).append(o)
        # where outages began, for "an outage that began after this burst is below this node"
        open_node = np.asarray([o.node if o.node >= 0 else int(topo.meter_node[o.meter]) for o in recent], np.int64)
        open_start = np.asarray([o.start_us for o in recent], dtype=np.int64)
        open_burst = np.asarray([young_burst.get(o.id, -1) for o in recent], dtype=np.int64)
        held_below = self.held_below()  # once: what this evaluation's new outages take is other bursts' evidence
        # the bursts to explain again (something in them changed), in rounds of one burst per substation:
        # bursts of different substations share no node, so one explanation serves a whole round
        dirty: list[_Burst] = []
        for b, idx in enumerate(bursts):
            mine = young_of.get(b, [])
            if not len(idx):
                if mine:
                    self._match([], mine, now_us, actions)
                continue
            if not (fresh.changed[idx].any() or unowned[idx].any() or any(o.dirty for o in mine)):
                continue
            began = int(fresh.t_int[idx].min())
            first_node = int(topo.meter_node[fresh.rows[idx[0]]])
            root = int(topo.node_root[first_node]) if first_node >= 0 else -1 - int(fresh.rows[idx[0]])
            later = open_node[(open_start > began + gap) & (open_burst != b)]
            later = np.sort(later[(later >= 0) & (topo.node_root[np.maximum(later, 0)] == root)])
            dirty.append(_Burst(b, idx, mine, later, root, began))
        if dirty:
            back = self._back_again(self._watched(self._restoring_ids))
            rounds: dict[int, list[_Burst]] = {}
            seen_roots: dict[int, int] = {}
            for burst in sorted(dirty, key=lambda x: x.began):
                k = seen_roots.get(burst.root, 0)
                seen_roots[burst.root] = k + 1
                rounds.setdefault(k, []).append(burst)
            for k in sorted(rounds):
                round_ = sorted(rounds[k], key=lambda x: x.root)
                self.stats.bursts_explained += len(round_)
                explained = self._explain_round(fresh, round_, unowned, all_unowned, back, held_below)
                for burst in round_:
                    created = len(self.outages)
                    self._match(explained.get(burst.b, []), burst.mine, now_us, actions)
                    for o in self.outages[created:]:
                        young_burst[o.id] = burst.b
        rest = [o for o in young if o.id not in young_burst]
        if rest:
            self._match([], rest, now_us, actions)
        for o in young:
            o.dirty = False

    def _fresh(self, now_us: int) -> _Fresh:
        topo, ev, cfg = self._topo, self.evidence, self.config
        live = np.flatnonzero(ev.live).astype(np.int64)
        grace = round(cfg.restore_grace_s * US)
        consumed = ev.consumed[live]
        g, r, fl, ok = ev.gasp[live], ev.restore[live], ev.fail[live], ev.ok[live]
        fresh_g, fresh_r, fresh_f, fresh_ok = g > consumed, r > consumed + grace, fl > consumed, ok > consumed
        interrupted = fresh_g | fresh_r | fresh_f
        recent_ok = fresh_ok & (ok >= now_us - round((cfg.merge_window_s + cfg.hold_s) * US))
        stale = ~(interrupted | recent_ok)
        if stale.any():
            gone = live[stale]
            ev.live[gone] = False
            ev.first_seen[gone] = NEVER
        masked = self._masked_ids(now_us)
        owner = self.owner[live]
        in_dp = ~topo.known_out[live] & ~(masked[np.maximum(owner, 0)] & (owner >= 0))
        keep = interrupted & in_dp
        # when each went out: its last gasp; a ping it did not answer counts from the outage that asked
        ref = ev.ref[live]
        t_int = np.where(fresh_g, g, np.where(fresh_f, np.where(ref > consumed, ref, fl), r))
        contra = live[recent_ok & ~interrupted & in_dp]
        contra_nodes = topo.meter_node[contra]
        order = np.argsort(contra_nodes, kind="stable")
        contra_nodes, contra_ok = contra_nodes[order], ev.ok[contra][order].astype(np.float64)
        start = np.searchsorted(contra_nodes, 0)
        return _Fresh(
            rows=live[keep],
            reported=(fresh_g | fresh_r)[keep],
            t_int=t_int[keep],
            seen=ev.first_seen[live[keep]],
            changed=ev.changed[live[keep]],
            contra_nodes=contra_nodes[start:],
            contra_ok=contra_ok[start:],
        )

    def _back_again(self, restoring: list[Outage]) -> tuple[IntArray, FloatArray]:
        """Nodes (ascending) of the meters of restoring outages that have supply again, and since when."""
        nodes, times = [], []
        for outage in restoring:
            rows, alive = self._alive_rows(outage, settled=True)
            back = rows[alive]
            nodes.append(self._topo.meter_node[back])
            times.append(np.maximum(self.evidence.restore[back], self.evidence.ok[back]))
        if not nodes:
            return np.empty(0, dtype=np.int64), np.empty(0)
        all_nodes, all_times = np.concatenate(nodes), np.concatenate(times).astype(np.float64)
        order = np.argsort(all_nodes, kind="stable")
        start = int(np.searchsorted(all_nodes[order], 0))
        return all_nodes[order][start:], all_times[order][start:]

    def _alive_rows(self, outage: Outage, *, settled: bool) -> tuple[IntArray, BoolArray]:
        raise NotImplementedError  # restoration provides it

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

    def _explain_round(
        self,
        fresh: _Fresh,
        round_: list[_Burst],
        unowned: BoolArray,
        all_unowned: IntArray,
        back: tuple[IntArray, FloatArray],
        held_below: IntArray,
    ) -> dict[int, list[Element]]:
        """The elements explaining bursts of different substations (``round_``, by root), by burst."""
        topo, cfg = self._topo, self.config
        tol = cfg.clock_tolerance_s * US
        idx = np.concatenate([burst.idx for burst in round_])
        rows, reported, t_int, seen = fresh.rows[idx], fresh.reported[idx], fresh.t_int[idx], fresh.seen[idx]
        nodes = topo.meter_node[rows]
        by_node = np.argsort(nodes, kind="stable")
        ev_nodes = nodes[by_node]
        first_at = np.searchsorted(ev_nodes, 0)
        ev_nodes, ev_t, ev_seen = ev_nodes[first_at:], t_int[by_node][first_at:], seen[by_node][first_at:]
        own_unowned = _positive_sorted(nodes[unowned[idx]])
        mine = [o for burst in round_ for o in burst.mine]
        mine_held = _positive_sorted(
            np.concatenate([topo.meter_node[self._owned_rows(o)] for o in mine]) if mine else np.empty(0, np.int64)
        )
        later = _positive_sorted(np.concatenate([burst.later for burst in round_]))
        roots = np.asarray([burst.root for burst in round_], dtype=np.int64)
        began = np.asarray([burst.began for burst in round_], dtype=np.float64)

        def began_at(scope: IntArray) -> FloatArray:
            out: FloatArray = began[np.searchsorted(roots, topo.node_root[scope])]
            return out

        def in_play(scope: IntArray) -> FloatArray:
            out: IntArray = (
                topo.meters_below[scope]
                - self._known_below[scope]
                - held_below[scope]
                + topo.count_in(mine_held, scope)
                - topo.count_in(all_unowned, scope)
                + topo.count_in(own_unowned, scope)
            )
            result: FloatArray = out.astype(np.float64)
            return result

        def contradicted(scope: IntArray) -> BoolArray:
            # an outage that began after the burst is below; or meters of a restoring outage have supply again
            again = topo.reduce_in(back[0], back[1], scope, np.maximum, -np.inf) > began_at(scope) + tol
            out: BoolArray = (topo.count_in(later, scope) > 0) | again
            return out

        def answered(scope: IntArray) -> FloatArray:
            t0 = topo.reduce_in(ev_nodes, ev_t.astype(np.float64), scope, np.minimum, np.inf)
            alive_at = topo.reduce_in(fresh.contra_nodes, fresh.contra_ok, scope, np.maximum, -np.inf)
            count = topo.count_in(fresh.contra_nodes, scope).astype(np.float64)
            out: FloatArray = np.where(alive_at > t0 - tol, count, 0.0)
            return out

        explanation = explain(
            topo,
            reported=rows[reported],
            confirmed=rows[~reported],
            in_play=in_play,
            contradicted=contradicted,
            answered=answered,
            params=cfg.inference,
        )
        out: dict[int, list[Element]] = {}
        chosen = explanation.nodes
        t0 = topo.reduce_in(ev_nodes, ev_t.astype(np.float64), chosen, np.minimum, np.inf)
        first_seen = topo.reduce_in(ev_nodes, ev_seen.astype(np.float64), chosen, np.minimum, np.inf)
        burst_of_root = {burst.root: burst.b for burst in round_}
        for v, t, f, c in zip(
            chosen.tolist(), t0.tolist(), first_seen.tolist(), explanation.node_confidence.tolist(), strict=True
        ):
            element = Element(int(v), -1, int(topo.lo[v]), int(topo.hi[v]), int(t), int(f), float(c))
            out.setdefault(burst_of_root[int(topo.node_root[v])], []).append(element)
        if len(explanation.premises):
            burst_of_row = np.concatenate([np.full(len(burst.idx), burst.b) for burst in round_])
            sort = np.argsort(rows, kind="stable")
            at = sort[np.searchsorted(rows[sort], explanation.premises)]
            for m, c, t, f, b in zip(
                explanation.premises.tolist(),
                explanation.premise_confidence.tolist(),
                t_int[at].tolist(),
                seen[at].tolist(),
                burst_of_row[at].tolist(),
                strict=True,
            ):
                pos = int(topo.meter_pos[m])
                out.setdefault(int(b), []).append(Element(-1, m, pos, pos + 1, int(t), int(f), float(c)))
        return out

    def _match(self, elements: list[Element], young: list[Outage], now_us: int, actions: OmsActions) -> None:
        """Young outages follow the new explanation: kept, revised, merged, split; new ones after the hold."""
        hold = round(self.config.hold_s * US)
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
        for o in young:  # their meters are given again below
            self._release(self._owned_rows(o))
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
            outage = self._new(e.node, e.meter, e.t0, e.confidence, now_us)
            if split_from:
                outage.log(now_us, "split", f"split from {', '.join(split_from)}")
            self._take(outage, e, now_us, actions, new=True)
        for o in young:
            if o.id not in kept and o.status.open:
                self._close(o, now_us, OutageStatus.CANCELLED, "no evidence left: meters have supply")
                actions.status.append(self._status(o))
                if o.work_order_id is not None:
                    actions.work_orders.append(self._work_order(o, WorkOrderAction.CANCEL, "no outage"))

    def _take(self, outage: Outage, e: Element, now_us: int, actions: OmsActions, *, new: bool = False) -> None:
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
        self._assign(rows, outage.id)
        self._recheck.append(rows)  # restores already in: the next evaluation sees them
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
