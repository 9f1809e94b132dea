"""One outage while the OMS works on it (mutable); :meth:`Outage.record` is its public snapshot."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from gridloom.systems.oms.records import OutageKind, OutageRecord, OutageStatus, TimelineEntry

IntArray = npt.NDArray[np.int64]


def _no_meters() -> IntArray:
    return np.empty(0, dtype=np.int64)


@dataclass(eq=False)
class Outage:
    id: int  # position in OmsCore.outages; the meters it holds have owner == id
    outage_id: str
    start_us: int
    detected_us: int
    kind: OutageKind = OutageKind.NETWORK
    status: OutageStatus = OutageStatus.SUSPECTED
    node: int = -1  # topology node, -1 for a single premise
    meter: int = -1  # the premise's meter row
    lo: int = 0  # meter-order range of the node (or the premise)
    hi: int = 0
    device_id: str = ""
    device_kind: str = ""
    predicted_device_id: str = ""
    customers: int = 0
    confidence: float = 0.0
    end_us: int = -1
    momentary: bool = False
    customer_side: bool = False
    verified: bool = False
    parent: str | None = None
    merged_into: str | None = None
    restoring_since: int = -1  # OMS time the first restore (or answered ping, once settled) was seen
    ping_sent: int = -1  # last verification round
    restore_ping_sent: int = -1
    restore_rounds: int = 0  # ping rounds to confirm the restoration
    ping_below: IntArray = field(default_factory=_no_meters)
    ping_beside: IntArray = field(default_factory=_no_meters)
    outstanding: set[str] = field(default_factory=set)  # ping requests not answered yet
    work_order_id: str | None = None
    estimated_restoration_us: int = -1
    notified: bool = False
    notified_meters: IntArray = field(default_factory=_no_meters)  # the customers told it is out
    dirty: bool = False  # new ping answers since the last evaluation
    settled: bool = False  # no longer follows the evidence: its meters left the fresh evidence
    timeline: list[TimelineEntry] = field(default_factory=list)

    def log(self, at_us: int, what: str, detail: str = "") -> None:
        self.timeline.append(TimelineEntry(at_us, what, detail))

    def record(self, equivalent: tuple[str, ...] = ()) -> OutageRecord:
        return OutageRecord(
            outage_id=self.outage_id,
            kind=self.kind,
            status=self.status,
            device_id=self.device_id,
            device_kind=self.device_kind,
            predicted_device_id=self.predicted_device_id,
            start_us=self.start_us,
            detected_us=self.detected_us,
            end_us=self.end_us,
            customers=self.customers,
            confidence=round(self.confidence, 4),
            momentary=self.momentary,
            customer_side=self.customer_side,
            parent=self.parent,
            merged_into=self.merged_into,
            estimated_restoration_us=self.estimated_restoration_us,
            work_order_id=self.work_order_id,
            equivalent_devices=equivalent,
            timeline=tuple(self.timeline),
        )
