"""The bodies of the LMS's declared message types (``catalog/data/messages.yaml``), as msgspec structs.

Keys are the ``fields`` / ``response_fields`` of the data (a test keeps them equal). Times are
int64 microseconds since the Unix epoch (UTC), powers in W, energy in Wh. Unknown keys are
ignored when decoding, so a newer sender may add fields (requirement c of the customer gateway).
"""

from __future__ import annotations

import msgspec


class Requirement(msgspec.Struct):
    """DGM-16 ``load_management_requirement``: where, how much, when."""

    requirement_id: str
    feeders: list[str]
    reduce_w: float
    start_us: int
    end_us: int
    urgency: str = "economic"  # economic | reliability | emergency


class RequirementResponse(msgspec.Struct):
    requirement_id: str
    status: str  # planned | partial | refused
    planned_w: float = 0.0
    events: list[str] = msgspec.field(default_factory=list)
    reason: str = ""


class Enrolments(msgspec.Struct):
    """DGM-22 ``dr_enrolments`` (CIS -> LMS), columnar."""

    account_id: list[str]
    meter_id: list[str]
    program: list[str]
    ven_id: list[str]
    feeder: list[str]
    capacity_w: list[float]
    dlc: list[bool]


class EventRecords(msgspec.Struct):
    """DGM-22 ``dr_event_records`` (LMS -> CIS), columnar."""

    event_id: list[str]
    program: list[str]
    account_id: list[str]
    requested_w: list[float]
    start_us: list[int]
    end_us: list[int]
    opt: list[str]  # optIn | optOut | pending | dlc
    reduction_wh: list[float]
    credit_per_kwh: list[float]


class Compliance(msgspec.Struct):
    """AMI-7 ``dr_compliance`` (LMS -> DMS)."""

    requirement_id: str
    event_id: str
    requested_w: float
    delivered_w: float
    participants: int
    opted_out: int


class LoadControl(msgspec.Struct):
    """AMI-12c / AMI-27 ``load_control_event``."""

    event_id: str
    meter_ids: list[str]
    action: str  # shed | cycle | restore
    cycle_pct: float
    start_us: int
    end_us: int


class LoadControlResponse(msgspec.Struct):
    event_id: str
    status: str  # completed | partial | failed | refused
    reason: str = ""
    done: list[str] = msgspec.field(default_factory=list)
    failures: list[str] = msgspec.field(default_factory=list)
