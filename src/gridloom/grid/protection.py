"""Protection: which device clears a fault, its reclosing sequence, and what customers see.

Coordination rule: a fault on the section just below device ``d`` is cleared by the
nearest protective device at or above ``d`` — a FUSE, RECLOSER or BREAKER, and the
SUBSTATION (its transformer/bus protection) when nothing below it protects the section.
Devices further up stay closed: that is what coordinated time-current curves achieve.

- A **fuse** blows (opens) and stays open until a crew replaces it; temporary faults blow
  fuses too (a fuse-blowing scheme: the upstream recloser's fast curve is not set to save
  fuses).
- A **recloser** or a **breaker** with a reclosing relay trips on each shot of its
  sequence (``trip_curves``, e.g. fast, fast, slow), recloses after each interval, and
  locks out after the last trip if the fault is still there. A temporary fault is gone once
  it has been de-energised ``trips_to_clear`` times: the next reclose holds and the
  customers saw only momentary interruptions.
- A **sectionalizer** between the reclosing device and the fault counts the trips of fault
  current through it and opens in the dead time after ``sectionalizer_counts`` trips (at
  most one fewer than the upstream device's trips to lockout, as coordination requires); the
  next reclose then holds and only the customers beyond the sectionalizer stay out. Of
  several sectionalizers in series the one nearest the fault opens (series sectionalizers
  are set with decreasing counts toward the feeder end).

Output per fault: the time-stamped operations (open / close / lockout) per device, and per
customer every interval without supply, marked momentary when shorter than
``momentary_threshold_s`` (5 minutes, IEEE 1366). Each de-energisation of a reclosing
sequence is its own interval, as a meter sees it. Times in :class:`Interruptions` are
integer microseconds since the Unix epoch (UTC), like meter events; ``end_us = -1`` means
not restored within the sequence (no repair time given).

Limits: faults are simulated one at a time on the district's normal radial tree
(:func:`simulate_faults` applies them in time order, each starting from the state the
previous left); a fault in a replica whose ties are closed is still coordinated on the
normal tree.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np
import numpy.typing as npt

from gridloom.errors import GridInputError
from gridloom.grid.connectivity import ConnectivityModel, DeviceKind
from gridloom.grid.faults import FaultState

IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_US = dt.timedelta(microseconds=1)
_PROTECTIVE = frozenset(
    k.code for k in (DeviceKind.FUSE, DeviceKind.RECLOSER, DeviceKind.BREAKER, DeviceKind.SUBSTATION)
)


class TripCurve(StrEnum):
    FAST = "fast"
    SLOW = "slow"


class OperationKind(StrEnum):
    OPEN = "open"
    CLOSE = "close"
    LOCKOUT = "lockout"


@dataclass(frozen=True)
class ReclosingSettings:
    """One reclosing sequence: a trip per curve, a reclose interval between consecutive trips."""

    trip_curves: tuple[TripCurve, ...] = (TripCurve.FAST, TripCurve.FAST, TripCurve.SLOW)
    reclose_intervals_s: tuple[float, ...] = (2.0, 15.0)
    fast_clear_s: float = 0.1  # fault (or reclose onto it) to contacts open, fast curve
    slow_clear_s: float = 0.6

    def __post_init__(self) -> None:
        if not self.trip_curves:
            raise GridInputError("trip_curves: at least one trip is needed")
        if len(self.reclose_intervals_s) != len(self.trip_curves) - 1:
            raise GridInputError(
                f"reclose_intervals_s: {len(self.trip_curves)} trips need {len(self.trip_curves) - 1} "
                f"intervals, got {len(self.reclose_intervals_s)}"
            )
        if min((*self.reclose_intervals_s, self.fast_clear_s, self.slow_clear_s)) <= 0:
            raise GridInputError("reclose_intervals_s, fast_clear_s, slow_clear_s must be positive")

    def clear_s(self, curve: TripCurve) -> float:
        return self.fast_clear_s if TripCurve(curve) is TripCurve.FAST else self.slow_clear_s


@dataclass(frozen=True)
class ProtectionSettings:
    """Settings for every protective device kind (one set per district)."""

    recloser: ReclosingSettings = field(default_factory=ReclosingSettings)
    # a feeder breaker's reclosing relay: one delayed reclose
    breaker: ReclosingSettings = field(
        default_factory=lambda: ReclosingSettings(
            trip_curves=(TripCurve.SLOW, TripCurve.SLOW), reclose_intervals_s=(5.0,)
        )
    )
    fuse_clear_s: float = 0.05
    substation_clear_s: float = 1.0  # transformer / bus protection, no reclosing
    sectionalizer_counts: int = 2
    sectionalizer_open_s: float = 0.5  # into the dead time, after the counted trip
    momentary_threshold_s: float = 300.0

    def __post_init__(self) -> None:
        if self.sectionalizer_counts < 1:
            raise GridInputError("sectionalizer_counts must be at least 1")
        if min(self.fuse_clear_s, self.substation_clear_s, self.sectionalizer_open_s) <= 0:
            raise GridInputError("fuse_clear_s, substation_clear_s, sectionalizer_open_s must be positive")
        if self.momentary_threshold_s <= 0:
            raise GridInputError("momentary_threshold_s must be positive")


@dataclass(frozen=True)
class Fault:
    """A short circuit on the section just below ``device`` (see ``ConnectivityModel.section_of_line``)."""

    replica: int
    device: int
    at: dt.datetime  # UTC, timezone-aware
    permanent: bool = True
    trips_to_clear: int = 1  # a temporary fault's arc is gone after this many de-energisations
    repair_after_s: float | None = None  # crews repair and re-close this long after the fault

    def __post_init__(self) -> None:
        if self.at.tzinfo is None:
            raise GridInputError(f"Fault.at must be timezone-aware (UTC), got {self.at!r}")
        if self.trips_to_clear < 1:
            raise GridInputError("Fault.trips_to_clear must be at least 1")
        if self.repair_after_s is not None and self.repair_after_s <= 0:
            raise GridInputError("Fault.repair_after_s must be positive")


@dataclass(frozen=True)
class Operation:
    at: dt.datetime
    replica: int
    device: int
    kind: OperationKind
    reason: str


@dataclass(frozen=True, eq=False)
class Interruptions:
    """Intervals without supply, one row per customer and interval (columnar)."""

    replica: IntArray
    customer: IntArray  # district-local customer (net.load row)
    start_us: IntArray  # UTC microseconds since the epoch
    end_us: IntArray  # -1: not restored within the simulated sequence
    momentary: BoolArray

    def __len__(self) -> int:
        return len(self.customer)

    def take(self, rows: BoolArray | IntArray) -> Interruptions:
        return Interruptions(
            self.replica[rows], self.customer[rows], self.start_us[rows], self.end_us[rows], self.momentary[rows]
        )

    def of_territory(self, n_district: int, customers: int) -> Interruptions:
        """Only the rows of customers a territory of ``customers`` serves (its last replica may be partial)."""
        return self.take(self.territory_index(n_district) < customers)

    def territory_index(self, n_district: int) -> IntArray:
        """Each row's customer as a territory index (replica * customers per district + customer)."""
        out: IntArray = self.replica * n_district + self.customer
        return out

    @staticmethod
    def empty() -> Interruptions:
        z = np.empty(0, dtype=np.int64)
        return Interruptions(z, z, z, z, np.empty(0, dtype=bool))

    @staticmethod
    def concat(parts: list[Interruptions]) -> Interruptions:
        if not parts:
            return Interruptions.empty()
        return Interruptions(
            replica=np.concatenate([p.replica for p in parts]),
            customer=np.concatenate([p.customer for p in parts]),
            start_us=np.concatenate([p.start_us for p in parts]),
            end_us=np.concatenate([p.end_us for p in parts]),
            momentary=np.concatenate([p.momentary for p in parts]),
        )

    def global_customer(self, n_customers_district: int) -> IntArray:
        """Territory-wide customer index: ``replica * n_customers_district + customer``."""
        return self.replica * n_customers_district + self.customer

    def of_customer(self, customer: int, replica: int = 0) -> list[tuple[int, int, bool]]:
        """``(start_us, end_us, momentary)`` of one customer, in time order."""
        m = (self.customer == customer) & (self.replica == replica)
        idx = np.flatnonzero(m)
        idx = idx[np.argsort(self.start_us[idx], kind="stable")]
        return [(int(self.start_us[i]), int(self.end_us[i]), bool(self.momentary[i])) for i in idx]


@dataclass(frozen=True, eq=False)
class ProtectionResult:
    fault: Fault
    clearing_device: int  # the protective device that interrupted the fault current (-1: fault not energised)
    isolating_device: int  # the device left open to isolate the fault (-1: a temporary fault cleared)
    locked_out: bool  # a recloser / breaker / substation ended its sequence open
    operations: tuple[Operation, ...]
    interruptions: Interruptions

    @property
    def sustained_customers(self) -> IntArray:
        """Customers with at least one sustained interruption."""
        out: IntArray = np.unique(self.interruptions.customer[~self.interruptions.momentary])
        return out

    @property
    def momentary_customers(self) -> IntArray:
        """Customers that saw only momentary interruptions."""
        mom = np.unique(self.interruptions.customer[self.interruptions.momentary])
        return np.setdiff1d(mom, self.sustained_customers)

    def apply(self, state: FaultState, *, until: dt.datetime | None = None) -> None:
        """Replay the operations (those at or before ``until``) onto ``state``."""
        for op in self.operations:
            if until is not None and op.at > until:
                break
            if op.kind is OperationKind.CLOSE:
                state.close(op.replica, op.device)
            else:
                state.open(op.replica, op.device)


def clearing_device(model: ConnectivityModel, device: int) -> int:
    """The nearest protective device (fuse, recloser, breaker, substation) at or above ``device``."""
    for d in model.ancestors(device):
        if int(model.kind[d]) in _PROTECTIVE:
            return int(d)
    return -1


def _us(at: dt.datetime) -> int:
    return (at - _EPOCH) // _US


def simulate_fault(
    model: ConnectivityModel,
    fault: Fault,
    *,
    settings: ProtectionSettings | None = None,
    state: FaultState | None = None,
) -> ProtectionResult:
    """What protection does about one fault, and who loses supply when.

    ``state`` (not modified) gives the device states at the fault: a fault on a section
    that is already dead causes nothing, and customers already out are not counted again.
    Use :meth:`ProtectionResult.apply` to leave the devices as the sequence ends.
    """
    s = settings or ProtectionSettings()
    device = int(model.ancestors(fault.device)[0])  # validates the index
    r = int(fault.replica)
    if state is not None:
        if not 0 <= r < state.n_replicas:
            raise GridInputError(f"Fault.replica {r} out of range 0..{state.n_replicas - 1}")
        energized = state.customer_energized()[r]
        path_closed = bool(state.current_closed[r, model.ancestors(device)].all())
    else:
        energized = np.broadcast_to(model.supplied[model.customer_meter], (model.n_customers,))
        path_closed = bool(model.normal_closed[model.ancestors(device)].all())
    clearing = clearing_device(model, device)
    if not path_closed or clearing < 0:
        return ProtectionResult(fault, -1, -1, False, (), Interruptions.empty())

    ops: list[Operation] = []
    segments: list[tuple[IntArray, dt.datetime, dt.datetime | None]] = []
    repair_at = None if fault.repair_after_s is None else fault.at + dt.timedelta(seconds=fault.repair_after_s)

    def live(dev: int) -> IntArray:
        c = model.downstream_customers(dev)
        out: IntArray = c[energized[c]]
        return out

    def op(at: dt.datetime, dev: int, kind: OperationKind, reason: str) -> None:
        ops.append(Operation(at, r, dev, kind, reason))

    def finish(dev: int, last_at: dt.datetime, customers: IntArray, what: str) -> None:
        # the sustained part: until repair (if given), then the isolating device closes again
        if repair_at is None:
            segments.append((customers, last_at, None))
            return
        end = max(repair_at, last_at + _US)
        segments.append((customers, last_at, end))
        op(end, dev, OperationKind.CLOSE, f"{what} after repair")

    kind = DeviceKind.from_code(int(model.kind[clearing]))
    isolating, locked_out = clearing, False
    if kind is DeviceKind.FUSE:
        t = fault.at + dt.timedelta(seconds=s.fuse_clear_s)
        op(t, clearing, OperationKind.OPEN, "fuse blown")
        finish(clearing, t, live(clearing), "fuse replaced")
    elif kind is DeviceKind.SUBSTATION:
        t = fault.at + dt.timedelta(seconds=s.substation_clear_s)
        op(t, clearing, OperationKind.OPEN, "substation protection trip")
        op(t, clearing, OperationKind.LOCKOUT, "no reclosing")
        locked_out = True
        finish(clearing, t, live(clearing), "re-energised")
    else:
        seq = s.recloser if kind is DeviceKind.RECLOSER else s.breaker
        sec = _sectionalizer(model, device, clearing)
        affected = live(clearing)
        t = fault.at
        present = True
        n = len(seq.trip_curves)
        # a sectionalizer is set to count one trip fewer than its upstream device needs to
        # lock out (at most ``sectionalizer_counts``); behind a device that never recloses it
        # cannot act
        counts = min(s.sectionalizer_counts, n - 1)
        for k, curve in enumerate(seq.trip_curves):
            t_open = t + dt.timedelta(seconds=seq.clear_s(curve))
            op(t_open, clearing, OperationKind.OPEN, f"{TripCurve(curve).value} trip {k + 1}")
            if not fault.permanent and k + 1 >= fault.trips_to_clear:
                present = False
            if k == n - 1:
                op(t_open, clearing, OperationKind.LOCKOUT, f"lockout after {n} trips")
                locked_out = True
                finish(clearing, t_open, affected, "closed")
                break
            t_close = t_open + dt.timedelta(seconds=seq.reclose_intervals_s[k])
            if present and sec >= 0 and counts >= 1 and k + 1 >= counts:
                t_sec = t_open + dt.timedelta(seconds=min(s.sectionalizer_open_s, seq.reclose_intervals_s[k] / 2))
                op(t_sec, sec, OperationKind.OPEN, f"sectionalizer counted {k + 1} trips")
                op(t_close, clearing, OperationKind.CLOSE, f"reclose {k + 1}")
                beyond = live(sec)
                segments.append((np.setdiff1d(affected, beyond), t_open, t_close))
                finish(sec, t_open, beyond, "sectionalizer closed")
                isolating = sec
                break
            op(t_close, clearing, OperationKind.CLOSE, f"reclose {k + 1}")
            segments.append((affected, t_open, t_close))
            if not present:
                isolating = -1
                break
            t = t_close
    ops.sort(key=lambda o: o.at)
    return ProtectionResult(
        fault=fault,
        clearing_device=clearing,
        isolating_device=isolating,
        locked_out=locked_out,
        operations=tuple(ops),
        interruptions=_interruptions(r, segments, s.momentary_threshold_s),
    )


def _sectionalizer(model: ConnectivityModel, device: int, clearing: int) -> int:
    """The sectionalizer nearest the fault between it and the clearing device (-1: none)."""
    for d in model.ancestors(device):
        if d == clearing:
            return -1
        if int(model.kind[d]) == DeviceKind.SECTIONALIZER.code:
            return int(d)
    return -1


def _interruptions(
    replica: int, segments: list[tuple[IntArray, dt.datetime, dt.datetime | None]], threshold_s: float
) -> Interruptions:
    parts = []
    for customers, start, end in segments:
        if len(customers) == 0:
            continue
        n = len(customers)
        start_us = np.full(n, _us(start), dtype=np.int64)
        end_us = np.full(n, -1 if end is None else _us(end), dtype=np.int64)
        momentary = end is not None and (end - start).total_seconds() < threshold_s
        parts.append(
            Interruptions(
                replica=np.full(n, replica, dtype=np.int64),
                customer=customers.astype(np.int64),
                start_us=start_us,
                end_us=end_us,
                momentary=np.full(n, momentary, dtype=bool),
            )
        )
    return Interruptions.concat(parts)


def simulate_faults(
    model: ConnectivityModel,
    faults: list[Fault],
    *,
    state: FaultState,
    settings: ProtectionSettings | None = None,
) -> list[ProtectionResult]:
    """Simulate faults in time order, each applied to ``state`` (modified) before the next."""
    results = []
    for fault in sorted(faults, key=lambda f: f.at):
        res = simulate_fault(model, fault, settings=settings, state=state)
        res.apply(state)
        results.append(res)
    return results
