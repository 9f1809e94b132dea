"""What every part of the OMS core shares: the evidence, the outages, who holds which meter, and helpers.

The core is split by job — :mod:`.location` (explain fresh evidence, follow young outages),
:mod:`.restoration` (restores, nested outages), :mod:`.core` (the public API, verification, crews
and customers) — over this one state. Meters held by outages (``owner``) are counted per node
(``held_direct``) as they change hands, so no evaluation has to look at every meter.
"""

from __future__ import annotations

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
from gridloom.systems.oms.evidence import NEVER, Evidence
from gridloom.systems.oms.outages import Outage
from gridloom.systems.oms.records import OutageKind, OutageStatus
from gridloom.systems.oms.topology import OmsTopology

IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]
FloatArray = npt.NDArray[np.float64]
US = 1_000_000


@dataclass
class OmsStats:
    evaluations: int = 0
    evaluation_s: float = 0.0
    pings_requested: int = 0
    ping_rounds: int = 0
    work_orders: int = 0
    bursts_explained: int = 0


class CoreBase:
    """The OMS core's state and the helpers its parts share (see the module docstring)."""

    def __init__(self, config: OmsConfig | None = None) -> None:
        self.config = config or OmsConfig()
        self.stats = OmsStats()
        self.topology: OmsTopology | None = None
        self.outages: list[Outage] = []
        self.evidence = Evidence(0)
        self.owner = np.empty(0, dtype=np.int64)
        self.due_us: int | None = None
        self._open_ids: set[int] = set()
        # watch lists, so an evaluation looks at the outages that need something, not at all of them
        self._unsettled: set[int] = set()  # open, still following the evidence
        self._restoring_ids: set[int] = set()
        self._to_verify: set[int] = set()  # verification pings out, not verified yet
        self._to_dispatch: set[int] = set()  # no work order yet
        self._held_direct = np.zeros(0, dtype=np.int64)
        self._held_below: IntArray | None = None
        self._known_below = np.zeros(0, dtype=np.int64)  # per node: meters below it known to be switched out
        self._ping_seq = 0
        self._pending_pings: dict[str, tuple[int, PingPurpose]] = {}
        self._recheck: list[IntArray] = []  # rows to look at again next time (new owners)
        # per outage: (settled, its rows, which have supply again) until its meters' evidence or owners change
        self._alive_cache: dict[int, tuple[bool, IntArray, BoolArray]] = {}

    # ------------------------------------------------------------------ the model
    @property
    def _topo(self) -> OmsTopology:
        if self.topology is None:
            raise OmsConfigError("the OMS has no connectivity model yet")
        return self.topology

    def _reset(self, topology: OmsTopology) -> None:
        self.evidence = Evidence(topology.n_meters)
        self.owner = np.full(topology.n_meters, -1, dtype=np.int64)
        self.outages = []
        self._open_ids, self._unsettled, self._restoring_ids, self._to_verify, self._to_dispatch = (
            set(),
            set(),
            set(),
            set(),
            set(),
        )
        self._held_direct = np.zeros(topology.n_nodes, dtype=np.int64)
        self._held_below = None

    def _span_rows(self, lo: int, hi: int) -> IntArray:
        out: IntArray = self._topo.order[lo:hi]
        return out

    def _owned_rows(self, outage: Outage) -> IntArray:
        rows = self._span_rows(outage.lo, outage.hi)
        out: IntArray = rows[self.owner[rows] == outage.id]
        return out

    def _device_id(self, node: int, meter: int) -> str:
        topo = self._topo
        return str(topo.node_id[node]) if node >= 0 else str(topo.payload.meter_id[meter])

    # ------------------------------------------------------------------ outages and their meters
    def _open(self) -> list[Outage]:
        return [self.outages[i] for i in sorted(self._open_ids)]

    def _watched(self, ids: set[int]) -> list[Outage]:
        return [self.outages[i] for i in sorted(ids)]

    def _young(self, outage: Outage, now_us: int) -> bool:
        """Still following the evidence: recent, not restoring, not a known customer-side premise."""
        age = now_us - outage.detected_us
        return (
            outage.status in (OutageStatus.SUSPECTED, OutageStatus.CONFIRMED)
            and not outage.settled
            and outage.restoring_since < 0
            and not outage.customer_side
            and age < round(self.config.merge_window_s * US)
            # verified, and its burst's reports are all in: nothing left to follow
            and not (outage.verified and age >= round(self.config.settle_verified_s * US))
        )

    def _masked_ids(self, now_us: int) -> BoolArray:
        """Per outage id: True for open outages that no longer follow the evidence (their meters are theirs)."""
        masked = np.zeros(max(len(self.outages), 1), dtype=bool)
        masked[list(self._open_ids)] = True
        masked[[o.id for o in self._watched(self._unsettled) if self._young(o, now_us)]] = False
        return masked

    def _assign(self, rows: IntArray, outage_id: int) -> None:
        """Give unheld ``rows`` to an outage."""
        self.owner[rows] = outage_id
        self._count_held(rows, +1)
        self._alive_cache.pop(outage_id, None)

    def _release(self, rows: IntArray) -> None:
        """Held ``rows`` are nobody's again."""
        for outage_id in np.unique(self.owner[rows]).tolist():
            self._alive_cache.pop(outage_id, None)
        self.owner[rows] = -1
        self._count_held(rows, -1)

    def _count_held(self, rows: IntArray, sign: int) -> None:
        nodes = self._topo.meter_node[rows]
        nodes = nodes[nodes >= 0]
        if len(nodes):
            np.add.at(self._held_direct, nodes, sign)
            self._held_below = None

    def held_below(self) -> IntArray:
        """Per node: meters below it that an open outage holds."""
        if self._held_below is None:
            self._held_below = self._topo.subtree_sum(self._held_direct).astype(np.int64)
        return self._held_below

    def _new(self, node: int, meter: int, start_us: int, confidence: float, now_us: int) -> Outage:
        outage = Outage(id=len(self.outages), outage_id=f"out-{len(self.outages) + 1:06d}", start_us=start_us,
                        detected_us=now_us)  # fmt: skip
        outage.predicted_device_id = self._device_id(node, meter)
        outage.log(now_us, "detected", f"at {outage.predicted_device_id}, confidence {confidence:.2f}")
        if self._restore_only(node, meter):
            outage.log(now_us, "start unknown", "no last gasp came through: it began before its first restore")
        self.outages.append(outage)
        self._open_ids.add(outage.id)
        self._unsettled.add(outage.id)
        self._to_dispatch.add(outage.id)
        return outage

    def _restore_only(self, node: int, meter: int) -> bool:
        """True when the meters of a new outage told of it by restores alone (no last gasp)."""
        topo, ev = self._topo, self.evidence
        rows = self._span_rows(int(topo.lo[node]), int(topo.hi[node])) if node >= 0 else np.asarray([meter])
        fresh = ev.restore[rows] > ev.consumed[rows]
        return bool(fresh.any() and not (ev.gasp[rows][fresh] > ev.consumed[rows][fresh]).any())

    def _mask(self, outage: Outage) -> None:
        """An outage that stops following the evidence: its meters leave the fresh evidence (it keeps them)."""
        rows = self._owned_rows(outage)
        self.evidence.live[rows] = False
        outage.settled = True
        self._unsettled.discard(outage.id)

    def _close(self, outage: Outage, now_us: int, status: OutageStatus, detail: str, *, end_us: int = -1) -> None:
        outage.status = status
        if end_us >= 0:
            outage.end_us = end_us
        outage.log(now_us, status.value, detail)
        for watch in (self._open_ids, self._unsettled, self._restoring_ids, self._to_verify, self._to_dispatch):
            watch.discard(outage.id)
        if status is not OutageStatus.MERGED:  # a merged outage's meters went to the one it merged into
            rows = self._owned_rows(outage)
            self._release(rows)
            self.evidence.consume(rows, until_us=outage.end_us if outage.end_us >= 0 else now_us)
        for request_id in outage.outstanding:
            self._pending_pings.pop(request_id, None)
        outage.outstanding.clear()

    # ------------------------------------------------------------------ pings
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
            below = spread(quiet, cfg.ping_below)
            up = int(topo.node_parent[outage.node])
            beside_lo, beside_hi = (int(topo.lo[up]), int(topo.hi[up])) if up >= 0 else (0, 0)
        outside = np.concatenate([topo.order[beside_lo : outage.lo], topo.order[outage.hi : beside_hi]]).astype(
            np.int64
        )
        outside = outside[~topo.known_out[outside]]
        if len(outside):
            quiet_out = outside[ev.gasp[outside] <= ev.consumed[outside]]
            outside = quiet_out if len(quiet_out) else outside
        beside = spread(outside, cfg.ping_beside)
        outage.ping_below, outage.ping_beside = below, beside
        self._ping(outage, np.concatenate([below, beside]), PingPurpose.VERIFY, now_us, actions)
        outage.ping_sent = now_us
        self._to_verify.add(outage.id)

    def _ping(self, outage: Outage, meters: IntArray, purpose: PingPurpose, now_us: int, actions: OmsActions) -> None:
        if not len(meters):
            return
        self._ping_seq += 1
        request_id = f"ping-{self._ping_seq:07d}"
        self._pending_pings[request_id] = (outage.id, purpose)
        outage.outstanding.add(request_id)
        self.evidence.ref[meters] = outage.start_us
        actions.pings.append(PingRequest(request_id, np.unique(meters), outage.outage_id, purpose))
        self.stats.pings_requested += len(meters)
        self.stats.ping_rounds += 1
        outage.log(now_us, "pinged", f"{purpose.value}: {len(meters)} meters")

    # ------------------------------------------------------------------ what goes out
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
        if outage.kind is OutageKind.PREMISE:
            meters = np.asarray([outage.meter], dtype=np.int64)
        elif status == "restored":
            meters = outage.notified_meters
        else:
            meters = self._owned_rows(outage)
        outage.notified = True
        outage.notified_meters = meters.copy()
        return CustomerNotice(
            outage.outage_id, status, meters.copy(), outage.start_us, outage.estimated_restoration_us, outage.end_us
        )


def spread(rows: IntArray, count: int) -> IntArray:
    """Up to ``count`` of ``rows``, evenly spread over them (rows keep their order)."""
    if count <= 0 or not len(rows):
        return np.empty(0, dtype=np.int64)
    if len(rows) <= count:
        return rows.astype(np.int64)
    at = np.linspace(0, len(rows) - 1, count).round().astype(np.int64)
    out: IntArray = rows[np.unique(at)].astype(np.int64)
    return out


__all__ = ["NEVER", "US", "CoreBase", "OmsStats", "spread"]
