"""The bodies of the OMS's declared message types (keys as in ``catalog/data/messages.yaml``; a test keeps
them equal). Systems do not import each other, so the head-end's bodies the OMS reads are spelled here
too; unknown keys are ignored when decoding, so a head-end may send more than the OMS reads."""

from __future__ import annotations

import msgspec


# --- from the head-end (AMI-11) ---------------------------------------------------------------
class MeterEventColumns(msgspec.Struct):
    """``meter_events``: ``kind`` is a MeterEventKind name (LAST_GASP, POWER_RESTORE, ...)."""

    meter_id: list[str]
    at_us: list[int]
    kind: list[str]


class PingRequestBody(msgspec.Struct):
    """AMI-11 ``on_demand_read`` (OMS -> head-end): a verification ping of some meters."""

    request_id: str
    meter_ids: list[str]
    reason: str = ""


class ReadsAnswered(msgspec.Struct):
    """The part of the register reads a ping answer carries that the OMS uses: who answered, when."""

    meter_id: list[str] = msgspec.field(default_factory=list)
    read_at_us: list[int] = msgspec.field(default_factory=list)


class PingFailure(msgspec.Struct):
    meter_id: str
    reason: str


class PingAnswer(msgspec.Struct):
    """AMI-11 ``on_demand_read.response``."""

    request_id: str
    status: str
    reason: str = ""
    reads: ReadsAnswered = msgspec.field(default_factory=ReadsAnswered)
    failures: list[PingFailure] = msgspec.field(default_factory=list)


# --- to the field crews (AMI-18) ----------------------------------------------------------------
class WorkOrderBody(msgspec.Struct):
    """AMI-18 ``work_order``: create, update (located again), cancel, close (restored)."""

    work_order_id: str
    outage_id: str
    action: str
    device_id: str
    device_kind: str
    customers: int
    started_at_us: int
    estimated_restoration_us: int
    reason: str


class WorkOrderResponse(msgspec.Struct):
    """AMI-18 ``work_order.response`` from the crew's tool."""

    work_order_id: str
    status: str
    reason: str = ""


class OutageStatusBody(msgspec.Struct):
    """AMI-18 ``outage_status``, columnar: one row per outage whose status changed. Times in µs since
    the epoch; -1 when not known (yet)."""

    outage_id: list[str]
    status: list[str]
    device_id: list[str]
    customers: list[int]
    confidence: list[float]
    started_at_us: list[int]
    estimated_restoration_us: list[int]
    restored_at_us: list[int]


# --- to the customer side (DGM-27) --------------------------------------------------------------
class RestorationEstimateBody(msgspec.Struct):
    """DGM-27 ``restoration_estimate``: the meters of one outage and when power should be (was) back."""

    outage_id: str
    status: str  # out | customer_side | restored | cancelled
    meter_ids: list[str]
    started_at_us: int
    estimated_restoration_us: int
    restored_at_us: int
