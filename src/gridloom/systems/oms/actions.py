"""What an OMS evaluation asks its actor to send: pings, work orders, customer notices, status updates."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np
import numpy.typing as npt

IntArray = npt.NDArray[np.int64]


class PingPurpose(StrEnum):
    VERIFY = "verify"  # below and beside a predicted outage
    RESTORE = "restore"  # meters of a restoring outage not yet heard from


@dataclass(frozen=True, eq=False)
class PingRequest:
    """On-demand reads to send through the head-end; answer with :meth:`OmsCore.add_pings`."""

    request_id: str
    meters: IntArray  # meter rows
    outage_id: str
    purpose: PingPurpose


class WorkOrderAction(StrEnum):
    CREATE = "create"
    UPDATE = "update"  # the outage was located again (revised, merged)
    CANCEL = "cancel"  # no outage after all, or merged into another one
    CLOSE = "close"  # restored


@dataclass(frozen=True)
class WorkOrder:
    work_order_id: str
    outage_id: str
    action: WorkOrderAction
    device_id: str
    device_kind: str
    customers: int
    started_at_us: int
    estimated_restoration_us: int
    reason: str


@dataclass(frozen=True, eq=False)
class CustomerNotice:
    """The estimated (or actual) restoration of one outage, for its customers' meters (DGM-27)."""

    outage_id: str
    status: str  # out | customer_side | restored | cancelled
    meters: IntArray
    started_at_us: int
    estimated_restoration_us: int
    restored_at_us: int


@dataclass(frozen=True)
class StatusUpdate:
    """An outage's status for the field crews' tools (AMI-18 ``outage_status``)."""

    outage_id: str
    status: str
    device_id: str
    customers: int
    confidence: float
    started_at_us: int
    estimated_restoration_us: int
    restored_at_us: int


@dataclass
class OmsActions:
    pings: list[PingRequest] = field(default_factory=list)
    work_orders: list[WorkOrder] = field(default_factory=list)
    notices: list[CustomerNotice] = field(default_factory=list)
    status: list[StatusUpdate] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.pings or self.work_orders or self.notices or self.status)
