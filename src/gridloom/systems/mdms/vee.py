"""VEE vocabulary: the flags, the thresholds and the expected read grid shared by validation and estimation.

VEE ("validation, estimation, editing") is what a meter data management system does to interval
data between the head-end and billing, the way the VEE rule libraries of the common MDM products
(Itron IEE, Oracle Utilities MDM, SAP IS-U) and the state VEE standards describe it:

- *validation* runs a set of rules over every read and marks the ones that fail with a flag
  (:class:`VeeFlag`, bits 8 and up of ``quality``, beside the meter's own bits 0-7 of
  :class:`gridloom.devices.meters.QualityFlag`);
- *estimation* fills missing intervals and replaces reads that failed a rule which makes them
  unusable (by default: spikes) — each estimate a new version flagged ``ESTIMATED``, with the
  method that produced it in the ``rule`` column;
- *editing* lets a person replace values with a reason code; originals stay, every version is kept.

Every threshold lives in :class:`VeeConfig`, with the reasoning behind its default.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass, fields
from enum import IntFlag, StrEnum
from typing import NamedTuple

import pyarrow as pa
import pyarrow.compute as pc

from gridloom.errors import VeeConfigError, VeeInputError

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


class VeeFlag(IntFlag):
    """The MDMS's quality bits (8 and up of ``quality``); the meter's own are bits 0-7.

    ====================  ======  ==================================================================
    GAP                      256  an interval that was missing (set on the estimate that fills it)
    DUPLICATE                512  a second read of an interval already in the batch (the first is kept)
    CLOCK_DRIFT             1024  the meter flagged its clock, or the read is stamped off the interval grid
    SPIKE                   2048  above the premise's history or its service capacity
    NEGATIVE                4096  a negative value, or energy received on a meter not in net metering
    ZERO_RUN                8192  part of a long run of zero consumption (meter stuck, bypass, vacancy)
    REGISTER_MISMATCH      16384  the intervals do not add up to the register-read difference
    DURING_OUTAGE          32768  consumption while the premise was in a known outage
    TAMPER                 65536  the meter reported tampering in the interval
    REVERSE_ROTATION      131072  the meter reported reverse rotation in the interval
    ESTIMATED             262144  the value is an estimate (the method is in ``rule``)
    EDITED                524288  a person replaced the value (the reason code is in ``rule``)
    ====================  ======  ==================================================================
    """

    NONE = 0
    GAP = 1 << 8
    DUPLICATE = 1 << 9
    CLOCK_DRIFT = 1 << 10
    SPIKE = 1 << 11
    NEGATIVE = 1 << 12
    ZERO_RUN = 1 << 13
    REGISTER_MISMATCH = 1 << 14
    DURING_OUTAGE = 1 << 15
    TAMPER = 1 << 16
    REVERSE_ROTATION = 1 << 17
    ESTIMATED = 1 << 18
    EDITED = 1 << 19


#: The flags validation sets, in the order the rules run (GAP is counted, not set: a gap has no row).
VALIDATION_FLAGS: tuple[VeeFlag, ...] = (
    VeeFlag.GAP,
    VeeFlag.DUPLICATE,
    VeeFlag.CLOCK_DRIFT,
    VeeFlag.SPIKE,
    VeeFlag.NEGATIVE,
    VeeFlag.ZERO_RUN,
    VeeFlag.REGISTER_MISMATCH,
    VeeFlag.DURING_OUTAGE,
    VeeFlag.TAMPER,
    VeeFlag.REVERSE_ROTATION,
)


class EstimationMethod(StrEnum):
    """What produced an estimate: the ``rule`` column of an estimated row.

    A method followed by ``+prorated`` was then scaled so that the estimates and the actual
    intervals of the register span add up to the register-read difference.
    """

    OUTAGE_ZERO = "outage_zero"  # the interval lies wholly inside a known outage: nothing was delivered
    INTERPOLATION = "interpolation"  # straight line between the good intervals either side of a short gap
    LIKE_DAY = "like_day"  # average of the same interval on the same weekday of the last weeks
    NEIGHBOUR_HOLD = "neighbour_hold"  # short gap with one good neighbour: its value ("flat load")
    REGISTER_SHARE = "register_share"  # no shape known: the register difference left over, shared evenly


PRORATED_SUFFIX = "+prorated"


class EditReason(StrEnum):
    """Common reason codes for a manual edit; any code matching ``[a-z0-9_.-]{1,64}`` is accepted."""

    CUSTOMER_READ = "customer_read"  # the customer supplied a reading
    FIELD_READ = "field_read"  # a technician read the meter on site
    METER_TEST = "meter_test"  # the meter was tested and found inaccurate
    METER_EXCHANGE = "meter_exchange"  # values around a meter exchange
    ESTIMATE_CORRECTION = "estimate_correction"  # an automatic estimate replaced by a better one
    BILLING_ADJUSTMENT = "billing_adjustment"  # agreed with the customer
    DIVERSION = "diversion"  # energy diversion (theft) reassessed
    OTHER = "other"


@dataclass(frozen=True)
class VeeConfig:
    """Thresholds of every VEE rule. Defaults follow common utility practice; each says why.

    Energies are Wh per interval unless the name says W (an average power, scaled by the
    interval's length so one setting serves 5-, 15- and 60-minute data).
    """

    interval_s: int = 900
    """Interval length assumed for reads that carry none (and for register spans and the grid)."""

    clock_drift_threshold_s: float = 60.0
    """A read stamped more than this off its interval boundary comes from a drifting clock. Utilities
    resynchronise AMI meters whose clocks are off by more than about a minute (the meters'
    own CLOCK_DRIFT flag uses the same kind of threshold, set in the meter program)."""

    spike_history_factor: float = 3.0
    """SPIKE when an interval exceeds this many times the premise's highest interval in ``history``
    (the "historical max usage" / "high-low" checks of MDM products compare with the previous
    period's peak; a factor of several keeps ordinary load growth from failing)."""

    spike_floor_w: float = 2_000.0
    """…but never below this average power: small premises' peaks are noise, not spikes."""

    capacity_margin: float = 1.0
    """SPIKE when an interval's average power exceeds the service capacity (e.g. 200 A at 240 V) times
    this: a meter cannot pass more than its service delivers ("demand high limit")."""

    negative_tolerance_wh: float = 0.0
    """NEGATIVE when a meter not enrolled in net metering registers more received energy than this."""

    zero_run_s: int = 86_400
    """ZERO_RUN when consumption stays at zero this long (24 h: "consecutive interval check" for a
    stuck meter, a bypass or a vacant premise; a premise with a refrigerator never reads zero a day)."""

    zero_tolerance_wh: float = 0.0
    """An interval at or below this (delivered and received) counts as zero."""

    register_tolerance_wh: float = 100.0
    register_tolerance_fraction: float = 0.01
    """REGISTER_MISMATCH when the intervals of a register span differ from the register difference by
    more than the larger of these (an absolute Wh and a fraction of the difference): the "sum check"
    of interval against scalar data, with room for the rounding of each interval value."""

    outage_tolerance_wh: float = 0.0
    """DURING_OUTAGE when an interval lying wholly inside a known outage has more consumption than this."""

    max_interpolation_intervals: int = 8
    """Gaps of at most this many intervals (2 h of 15-minute data) are filled by linear interpolation
    between the good intervals either side; MDM products make this span configurable, typically 1-3 h."""

    like_day_weeks: int = 4
    """Longer gaps take the average of the same interval on the same weekday of up to this many previous
    weeks ("like-day" historical estimation)."""

    like_day_min_weeks: int = 1
    """…and need at least this many of those weeks in history."""

    replace_flags: VeeFlag = VeeFlag.SPIKE
    """Reads failing these rules are unusable and are estimated like gaps. The others are flagged for
    review only: a zero run may be a vacant house, a register mismatch is resolved by proration."""

    refine_estimates: bool = True
    """Estimates among the reads (current versions estimated earlier) are estimated again with what is
    known now — a late register read, more history — and returned only where the value changed; off,
    they count as reads and stay as they are."""

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "replace_flags":
                object.__setattr__(self, f.name, VeeFlag(value))
                continue
            if f.name == "refine_estimates":
                if not isinstance(value, bool):
                    raise VeeConfigError(f"VeeConfig.refine_estimates must be True or False, got {value!r}")
                continue
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise VeeConfigError(f"VeeConfig.{f.name} must be a finite number, got {value!r}")
            if value < 0:
                raise VeeConfigError(f"VeeConfig.{f.name} must be >= 0, got {value!r}")
        for name in ("interval_s", "zero_run_s", "max_interpolation_intervals", "like_day_weeks"):
            value = getattr(self, name)
            if not isinstance(value, int):
                raise VeeConfigError(f"VeeConfig.{name} must be an integer, got {value!r}")
        if self.interval_s <= 0:
            raise VeeConfigError("VeeConfig.interval_s must be positive")
        if self.like_day_min_weeks < 1 or self.like_day_min_weeks > max(self.like_day_weeks, 1):
            raise VeeConfigError(
                f"VeeConfig.like_day_min_weeks must lie in 1..like_day_weeks ({self.like_day_weeks}), "
                f"got {self.like_day_min_weeks!r}"
            )


class Expected(NamedTuple):
    """The read grid a batch should fill: every meter of ``meter_ids``, every interval in [start, end).

    A plain tuple ``(meter_ids, start, end, interval_s)`` works too.
    """

    meter_ids: Sequence[str] | pa.Array | pa.ChunkedArray
    start: dt.datetime
    end: dt.datetime
    interval_s: int = 900

    def checked(self) -> Expected:
        """Itself, after checking that the grid is well formed (aware times, aligned, non-empty)."""
        start, end, interval_s = self.start, self.end, self.interval_s
        if isinstance(interval_s, bool) or not isinstance(interval_s, int) or interval_s <= 0:
            raise VeeInputError(f"expected interval_s must be a positive integer, got {interval_s!r}")
        for name, at in (("start", start), ("end", end)):
            if not isinstance(at, dt.datetime) or at.tzinfo is None:
                raise VeeInputError(f"expected {name} must be a timezone-aware datetime, got {at!r}")
            if (at - EPOCH) % dt.timedelta(seconds=interval_s):
                raise VeeInputError(f"expected {name} {at.isoformat()} is not on a {interval_s} s interval boundary")
        if end < start:
            raise VeeInputError(f"expected end {end.isoformat()} is before start {start.isoformat()}")
        return self

    def ids(self) -> pa.Array:
        """The expected meters as a string array, each once."""
        ids = self.meter_ids
        if isinstance(ids, pa.ChunkedArray):
            array = ids.combine_chunks()
        elif isinstance(ids, pa.Array):
            array = ids
        else:
            array = pa.array([str(i) for i in ids], pa.string())
        if array.null_count:
            raise VeeInputError(f"expected meter_ids has {array.null_count} nulls")
        return pc.unique(array.cast(pa.string()))

    @property
    def start_s(self) -> int:
        return int((self.start - EPOCH).total_seconds())

    @property
    def intervals(self) -> int:
        """Intervals per meter."""
        return int((self.end - self.start).total_seconds()) // self.interval_s


def history_windows(expected: Expected, config: VeeConfig | None = None) -> list[tuple[dt.datetime, dt.datetime]]:
    """The time ranges of stored reads that estimation of ``expected`` can use, merged and in order.

    Query the store for these (``store.reads(start=a, end=b)`` for each) instead of weeks of
    history: the same weekday of each like-day week, and the intervals just before and after
    the grid that short gaps at its edges interpolate from.
    """
    cfg = config or VeeConfig()
    expected = Expected(*expected).checked()
    edge = dt.timedelta(seconds=expected.interval_s * max(cfg.max_interpolation_intervals, 1))
    week = dt.timedelta(days=7)
    windows = [(expected.start - edge, expected.start), (expected.end, expected.end + edge)]
    windows += [(expected.start - w * week, expected.end - w * week) for w in range(1, cfg.like_day_weeks + 1)]
    windows.sort()
    merged: list[tuple[dt.datetime, dt.datetime]] = []
    for a, b in windows:
        if merged and a <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], b))
        else:
            merged.append((a, b))
    return merged
