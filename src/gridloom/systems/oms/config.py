"""The OMS's settings: grouping, verification, restoration, dispatch. Times in seconds of its clock."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from gridloom.errors import OmsConfigError
from gridloom.grid.connectivity import DeviceKind
from gridloom.systems.oms.inference import InferenceParams
from gridloom.systems.oms.records import OutageKind

DEFAULT_REPAIR_S = {
    DeviceKind.SUBSTATION.value: 6 * 3600.0,
    DeviceKind.BREAKER.value: 3 * 3600.0,
    DeviceKind.RECLOSER.value: 2 * 3600.0,
    DeviceKind.SECTIONALIZER.value: 2 * 3600.0,
    DeviceKind.FUSE.value: 1.5 * 3600.0,
    DeviceKind.SERVICE_TRANSFORMER.value: 4 * 3600.0,
    OutageKind.PREMISE.value: 2 * 3600.0,
}


@dataclass(frozen=True)
class OmsConfig:
    """How the OMS groups, verifies and restores. Times in seconds of the OMS's clock."""

    hold_s: float = 10.0  # a new outage is predicted once its first report is this old
    evaluate_interval_s: float = 10.0  # evaluations at most this often (simulated or wall seconds)
    restore_check_s: float = 30.0  # power restores alone ask for an evaluation this soon (no new outage in them)
    merge_window_s: float = 90.0  # a young outage may be revised, merged or split this long
    settle_verified_s: float = 45.0  # ... or this long once its verification pings agreed
    restore_settle_s: float = 45.0  # after the first restore, wait for the others (meters delay them 0-30 s)
    restore_grace_s: float = 60.0  # restores this soon after an outage closed are its late ones
    ping_below: int = 3  # verification pings below a predicted device
    ping_beside: int = 3  # ... and beside it (below its parent, outside it)
    ping_restore: int = 20  # pings to confirm a restoration (one per silent branch first)
    ping_timeout_s: float = 60.0  # verification pings unanswered this long count as not coming
    dispatch_delay_s: float = 120.0  # work orders for outages at least this old (momentaries never get one)
    momentary_s: float = 300.0  # IEEE 1366: shorter interruptions are momentary
    event_gap_s: float = 20.0  # interruptions further apart than this are separate events
    clock_tolerance_s: float = 2.0  # meter clocks vs the OMS's
    repair_s: Mapping[str, float] = field(default_factory=lambda: MappingProxyType(dict(DEFAULT_REPAIR_S)))
    inference: InferenceParams = field(default_factory=InferenceParams)

    def __post_init__(self) -> None:
        object.__setattr__(self, "repair_s", MappingProxyType({**DEFAULT_REPAIR_S, **dict(self.repair_s)}))
        for name in (
            "hold_s", "evaluate_interval_s", "restore_check_s", "merge_window_s", "settle_verified_s",
            "restore_settle_s", "restore_grace_s",
            "ping_timeout_s", "dispatch_delay_s", "momentary_s", "clock_tolerance_s", "event_gap_s",
        ):  # fmt: skip
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
                raise OmsConfigError(f"OmsConfig.{name} must be a number of seconds >= 0, got {value!r}")
        for name in ("ping_below", "ping_beside", "ping_restore"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 0:
                raise OmsConfigError(f"OmsConfig.{name} must be an integer >= 0, got {value!r}")
        q = self.inference.report_probability
        if not 0.0 < q < 1.0:
            raise OmsConfigError(f"InferenceParams.report_probability must be within (0, 1), got {q!r}")
        bad = {k: v for k, v in self.repair_s.items() if not (math.isfinite(v) and v > 0)}
        if bad:
            raise OmsConfigError(f"OmsConfig.repair_s must be positive seconds; wrong: {bad}")
