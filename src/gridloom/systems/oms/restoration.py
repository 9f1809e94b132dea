"""Restoration: power restores start it, pings confirm it, and what is still dead becomes nested outages.

A power restore (or, once the outage is settled, an answered ping) from a meter of an outage, later
than the outage's last last gasp — the restores between the shots of a reclosing sequence that then
locks out do not count — starts the outage's restoration. ``restore_settle_s`` later (meters delay
their restores by up to 30 s) the OMS pings a sample of the meters not heard from: one in each
branch with no meter back first (a nested outage, even if all its last gasps were lost), then those
beside restored meters (restores lost on the way). Then it explains what is still dead within the
outage: nested outages (they keep the outage's start, their customers were out since then) or
nothing (restored). An outage restored within ``momentary_s`` is momentary (IEEE 1366).
"""

from __future__ import annotations

import numpy as np

from gridloom.systems.oms.actions import OmsActions, PingPurpose, WorkOrderAction
from gridloom.systems.oms.base import US, BoolArray, CoreBase, FloatArray, IntArray, spread
from gridloom.systems.oms.inference import explain
from gridloom.systems.oms.location import Element, Location
from gridloom.systems.oms.outages import Outage
from gridloom.systems.oms.records import OutageStatus

LAST_GASPS_QUANTILE = 0.7  # holds when up to 70 % of a lockout's last gasps are lost


class Restoration(Location, CoreBase):
    def _restoring(self, now_us: int, actions: OmsActions) -> None:
        """Outages whose meters report power back start restoring (before location, which then leaves them)."""
        ev = self.evidence
        changed = np.flatnonzero(ev.changed)
        for outage_id in np.unique(self.owner[changed]).tolist():  # their meters said something new
            self._alive_cache.pop(outage_id, None)
        rows = np.concatenate([changed, *self._recheck]).astype(np.int64)
        self._recheck = []
        owners = self.owner[rows]
        rows, owners = rows[owners >= 0], owners[owners >= 0]
        # only a sign of supply can start a restoration
        back = np.maximum(ev.restore[rows], ev.ok[rows]) >= np.maximum(ev.gasp[rows], ev.fail[rows])
        rows, owners = rows[back], owners[back]
        if not len(rows):
            return
        for outage_id in np.unique(owners).tolist():
            outage = self.outages[outage_id]
            if not outage.status.open or outage.restoring_since >= 0:
                continue
            _, alive = self._alive_rows(outage, settled=not self._young(outage, now_us))
            if alive.any():
                outage.restoring_since = now_us
                outage.status = OutageStatus.RESTORING
                self._restoring_ids.add(outage.id)
                outage.log(now_us, "restoring", "power restores from its meters")
                self._mask(outage)
                actions.status.append(self._status(outage))

    def _restored_after(self, outage: Outage, rows: IntArray) -> int:
        """Alive evidence after this shows restoration: after most of the outage's last gasps.

        After the last shot of a reclosing sequence that locks out, most meters gasp again (the
        restores between the shots do not count); a few meters that went out later in the same
        outage (a sectionalizer's customers) do not hold back the restoration of the others.
        """
        tol = round(self.config.clock_tolerance_s * US)
        gasps = self.evidence.gasp[rows]
        gasps = gasps[gasps >= outage.start_us - tol]
        if not len(gasps):
            return outage.start_us + tol
        k = int(LAST_GASPS_QUANTILE * (len(gasps) - 1))
        return int(np.partition(gasps, k)[k]) + tol

    def _alive(self, outage: Outage, rows: IntArray, *, settled: bool) -> BoolArray:
        """Per row: the meter has had supply since the outage (a restore; an answered ping once settled)."""
        ev = self.evidence
        since = self._restored_after(outage, rows)
        alive = ev.restore[rows] > since
        if settled:
            alive |= ev.ok[rows] > since
        out: BoolArray = alive & (np.maximum(ev.restore[rows], ev.ok[rows]) >= np.maximum(ev.gasp[rows], ev.fail[rows]))
        return out

    def _alive_rows(self, outage: Outage, *, settled: bool) -> tuple[IntArray, BoolArray]:
        """The outage's meters and which have supply again (cached until their evidence or owners change)."""
        hit = self._alive_cache.get(outage.id)
        if hit is not None and hit[0] == settled:
            return hit[1], hit[2]
        rows = self._owned_rows(outage)
        alive = self._alive(outage, rows, settled=settled)
        self._alive_cache[outage.id] = (settled, rows, alive)
        return rows, alive

    def _restore(self, now_us: int, actions: OmsActions) -> None:
        """Restoring outages, once settled and pinged: nested outages or restored."""
        cfg = self.config
        settle, timeout = round(cfg.restore_settle_s * US), round(cfg.ping_timeout_s * US)
        ready: list[tuple[Outage, IntArray]] = []
        for outage in self._watched(self._restoring_ids):
            if now_us < outage.restoring_since + settle:
                continue
            if outage.restore_ping_sent < 0:
                rows, alive = self._alive_rows(outage, settled=True)
                self._restoration_pings(outage, rows, alive, now_us, actions)
                if outage.outstanding:
                    continue
            elif outage.outstanding and now_us < outage.restore_ping_sent + timeout:
                continue
            ready.append((outage, self._owned_rows(outage)))
        if ready:
            self._finish_restorations(ready, now_us, actions)

    def _restoration_pings(
        self, outage: Outage, rows: IntArray, alive: BoolArray, now_us: int, actions: OmsActions
    ) -> None:
        """First round: one meter in each branch where none is back, then meters beside restored ones."""
        outage.restore_ping_sent = now_us
        outage.restore_rounds = 1
        quota = self.config.ping_restore
        silent = rows[~alive]
        if not len(silent) or quota == 0:
            return
        topo = self._topo
        silent = silent[np.argsort(topo.meter_pos[silent], kind="stable")]
        nodes = topo.meter_node[silent]
        back = np.zeros(topo.n_nodes + 1, dtype=bool)
        back[topo.meter_node[rows[alive]]] = True
        dark = ~back[nodes]
        _, first = np.unique(nodes[dark], return_index=True)
        chosen = silent[dark][np.sort(first)][: max(quota // 2, 1)]
        chosen = np.concatenate([chosen, spread(silent[~dark], quota - len(chosen))])
        if len(chosen) < quota:
            rest = np.setdiff1d(silent, chosen)
            chosen = np.concatenate([chosen, spread(rest, quota - len(chosen))])
        self._ping(outage, chosen, PingPurpose.RESTORE, now_us, actions)

    def _finish_restorations(self, ready: list[tuple[Outage, IntArray]], now_us: int, actions: OmsActions) -> None:
        """Explain what is still dead inside each restoring outage: nested outages, or restored."""
        topo, ev, cfg = self._topo, self.evidence, self.config
        tol = round(cfg.clock_tolerance_s * US)
        parts = []
        for outage, rows in ready:
            since = self._restored_after(outage, rows)
            dead_at = np.maximum(ev.gasp[rows], ev.fail[rows])
            alive_at = np.maximum(ev.restore[rows], ev.ok[rows])
            dead = (dead_at > alive_at) & (dead_at > ev.consumed[rows]) & (dead_at >= outage.start_us - tol)
            alive = ~dead & (alive_at > since)
            # when each dead meter went dead: its last gasp if that came after its last sign of supply
            went_dead = np.where(ev.gasp[rows] > alive_at, ev.gasp[rows], ev.fail[rows])
            parts.append((rows, dead, alive, went_dead))
        all_rows = np.concatenate([p[0] for p in parts])
        dead = np.concatenate([p[1] for p in parts])
        alive = np.concatenate([p[2] for p in parts])
        went_dead = np.concatenate([p[3] for p in parts])
        reported = all_rows[dead & (ev.gasp[all_rows] >= ev.fail[all_rows])]
        confirmed = all_rows[dead & (ev.fail[all_rows] > ev.gasp[all_rows])]
        play = _sorted_nodes(topo.meter_node[all_rows])
        back = _sorted_nodes(topo.meter_node[all_rows[alive]])
        tops = np.sort(np.asarray([o.node for o, _ in ready if o.node >= 0], dtype=np.int64))

        def in_play(scope: IntArray) -> FloatArray:
            out: FloatArray = topo.count_in(play, scope).astype(np.float64)
            return out

        def contradicted(scope: IntArray) -> BoolArray:
            out: BoolArray = topo.count_in(back, scope) > 0
            return out

        def allowed(scope: IntArray) -> BoolArray:
            return topo.within_any(tops, scope)

        explanation = explain(
            topo, reported=reported, confirmed=confirmed, in_play=in_play, contradicted=contradicted,
            allowed=allowed, params=cfg.inference,
        )  # fmt: skip
        el_lo = np.concatenate([topo.lo[explanation.nodes], topo.meter_pos[explanation.premises]])
        el_hi = np.concatenate([topo.hi[explanation.nodes], topo.meter_pos[explanation.premises] + 1])
        el_node = np.concatenate([explanation.nodes, np.full(len(explanation.premises), -1, dtype=np.int64)])
        el_meter = np.concatenate([np.full(len(explanation.nodes), -1, dtype=np.int64), explanation.premises])
        el_conf = np.concatenate([explanation.node_confidence, explanation.premise_confidence])
        dead_rows = all_rows[dead]
        dead_order = np.argsort(dead_rows)
        dead_rows, dead_time = dead_rows[dead_order], went_dead[dead][dead_order]
        used = np.zeros(len(el_lo), dtype=bool)
        for (outage, rows), (_, _, alive_part, _) in sorted(
            zip(ready, parts, strict=True), key=lambda item: (item[0][0].hi - item[0][0].lo, item[0][0].id)
        ):  # inner outages first
            inside = np.flatnonzero((el_lo >= outage.lo) & (el_hi <= outage.hi) & ~used)
            used[inside] = True
            if any(int(el_lo[i]) == outage.lo and int(el_hi[i]) == outage.hi for i in inside):
                outage.restoring_since = -1
                outage.restore_ping_sent, outage.restore_rounds = -1, 0
                self._restoring_ids.discard(outage.id)
                if outage.work_order_id is None:
                    self._to_dispatch.add(outage.id)
                if not outage.verified and outage.ping_sent >= 0:
                    self._to_verify.add(outage.id)
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
            since = self._restored_after(outage, rows)
            back_rows = rows[alive_part]
            restores = ev.restore[back_rows]
            restores = restores[restores > since]
            if len(restores):
                restored_at = int(np.median(restores))
            else:
                oks = ev.ok[back_rows]
                restored_at = int(oks.min()) if len(oks) else now_us
            restored_at = max(restored_at, outage.start_us)
            for i in inside.tolist():
                lo, hi = int(el_lo[i]), int(el_hi[i])
                span = self._span_rows(lo, hi)
                span = span[self.owner[span] == outage.id]
                at = np.searchsorted(dead_rows, span)
                hit = (at < len(dead_rows)) & (dead_rows[np.minimum(at, len(dead_rows) - 1)] == span)
                t0 = int(dead_time[at[hit]].min()) if hit.any() else restored_at
                nested = t0 <= restored_at + tol
                e = Element(int(el_node[i]), int(el_meter[i]), lo, hi, min(outage.start_us, t0) if nested else t0,
                            now_us, float(el_conf[i]))  # fmt: skip
                child = self._new(e.node, e.meter, e.t0, e.confidence, now_us)
                if nested:
                    child.parent = outage.outage_id
                    child.log(now_us, "nested", f"still out when {outage.outage_id} was restored")
                    outage.log(now_us, "nested outage", f"{child.outage_id} at {child.predicted_device_id}")
                self._release(span)
                self._take(child, e, now_us, actions, new=True)
                self._mask(child)  # found by the restoration, not by fresh evidence: it stays as it is
                if child.customers == 0:
                    self._close(child, now_us, OutageStatus.CANCELLED, "no meters left")
            outage.customers = len(self._owned_rows(outage))
            outage.end_us = restored_at
            if outage.customers == 0:
                self._close(outage, now_us, OutageStatus.MERGED, "its customers are all in nested outages")
            else:
                outage.momentary = (restored_at - outage.start_us) < cfg.momentary_s * US
                what = "momentary interruption" if outage.momentary else "power restored"
                self._close(outage, now_us, OutageStatus.RESTORED, what, end_us=restored_at)
            actions.status.append(self._status(outage))
            if outage.work_order_id is not None:
                actions.work_orders.append(self._work_order(outage, WorkOrderAction.CLOSE, "power restored"))
            if outage.notified:
                actions.notices.append(self._notice(outage, "restored"))


def _sorted_nodes(nodes: IntArray) -> IntArray:
    out = np.sort(nodes)
    result: IntArray = out[np.searchsorted(out, 0) :]
    return result
