"""AMI meters as one vectorised fleet: interval reads, registers, meter clocks, events, service switch.

A fleet of n meters is a set of numpy arrays, never n objects: one ``measure`` call for a
million meters is a few dozen array passes. Meter ``i`` is row ``i`` of every array; its
customer (a row of the district's ``net.load``, or a global customer index of a territory)
is ``fleet.customer[i]``.

Sign convention: ``p_w`` > 0 is power delivered by the utility to the customer (consumption);
``p_w`` < 0 is power received from the customer (export, e.g. rooftop PV). ``q_var`` > 0 is
lagging (inductive) reactive power drawn by the customer.

What a meter does each interval (``measure``):

- integrates the customer's demand over the time it had supply and its service switch was
  closed into Wh delivered / received and signed varh, with a persistent per-meter gain error
  (accuracy class), and adds the same amounts to its cumulative registers, so the sum of its
  interval reads always equals the change of its registers;
- reports the average voltage it saw (with measurement noise);
- stamps the interval with its own clock (see *Clocks* below) and sets quality flags;
- detects events: last gasp / power restore, tamper, reverse rotation.

Supply: ``energized`` is the line-side supply at the end of the interval and ``outage_s`` the
seconds without supply inside it (default: all of it for meters not energised, none for the
others). A meter that loses supply does so in the last ``outage_s`` seconds of the interval, one
that regains it in the first ``outage_s`` seconds, and an interruption of a meter energised at
both ends is placed in the middle. A meter reports a last gasp for an outage that lasts at least
``last_gasp_delay_s`` (shorter ones only count in its momentary-interruption register, as real
meters are configured to keep recloser operations from flooding the head-end), and a power
restore when such an outage ends. A meter without supply at the end of an interval cannot send
its read: it keeps the partial interval and sends it with its first read after power returns;
intervals it was dead for throughout produce no read (the MDMS estimates them).

Clocks: each meter's real-time clock runs fast or slow by its own drift (ppm, drawn once from
``MeterConfig.clock_drift_ppm``) from the last time it was set. Interval reads carry the interval
boundary of the meter's own clock (real meters close intervals on their own clock, so a meter
more than half an interval off stamps the wrong interval); events and register reads carry the
meter's clock reading to the microsecond. ``CLOCK_DRIFT`` is set when the meter's clock is off by
more than ``clock_drift_threshold_s`` at the end of the interval. ``sync_clock`` sets it again
(with a small synchronisation error), and the next interval carries ``CLOCK_SET``.

Devices change state only through commands: ``remote_disconnect`` / ``remote_connect`` operate the
service switch, ``sync_clock`` sets the clock, ``set_net_metering`` enrols meters in net metering.
A meter without supply does not receive commands; each command returns which meters took it.
A disconnected meter keeps reading (0 Wh, line-side voltage) with ``SERVICE_DISCONNECTED`` set;
the caller should also remove the customer's load from the power flow (see ``service_connected``).

Times are UTC; arrays of times are int64 microseconds since the Unix epoch (``*_us``).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import IntEnum, IntFlag, StrEnum

import numpy as np
import numpy.typing as npt

from gridloom.devices.distributions import Distribution
from gridloom.errors import DeviceConfigError, DeviceInputError, IntervalOutOfOrder, UnknownDevice

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]
U8Array = npt.NDArray[np.uint8]

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_US = 1_000_000
_NEVER = np.iinfo(np.int64).min


class QualityFlag(IntFlag):
    """Bit flags of a read's ``quality`` (uint8). A read without flags is valid as measured.

    ========================  ===  ===========================================================
    CLOCK_DRIFT                 1  the meter's clock was off by more than the threshold
    ESTIMATED                   2  reserved for the MDMS (VEE): the value is an estimate; meters never set it
    POWER_OUTAGE_PARTIAL        4  the meter lost supply during part of the interval
    TAMPER                      8  a tamper (cover open, magnetic field) was detected in the interval
    REVERSE_ROTATION           16  energy flowed to the grid through a meter not enrolled in net metering
    SERVICE_DISCONNECTED       32  the service switch was open for all or part of the interval
    CLOCK_SET                  64  the meter's clock was set during the interval (its length is not exact)
    (128)                          reserved
    ========================  ===  ===========================================================
    """

    NONE = 0
    CLOCK_DRIFT = 1
    ESTIMATED = 2
    POWER_OUTAGE_PARTIAL = 4
    TAMPER = 8
    REVERSE_ROTATION = 16
    SERVICE_DISCONNECTED = 32
    CLOCK_SET = 64


class MeterEventKind(IntEnum):
    """Codes of ``MeterEvents.kind`` (uint8)."""

    LAST_GASP = 1  # supply lost (sent on the meter's stored energy)
    POWER_RESTORE = 2  # supply back after an outage that was announced by a last gasp
    TAMPER = 3
    REVERSE_ROTATION = 4  # first interval of received energy on a meter not enrolled in net metering
    SERVICE_DISCONNECTED = 5  # the service switch opened on a remote command
    SERVICE_CONNECTED = 6  # the service switch closed on a remote command


class ReverseRotation(StrEnum):
    """What a meter not enrolled in net metering registers when energy flows to the grid."""

    REGISTER = "register"  # into the received register (and flags it): nothing is lost
    DETENT = "detent"  # not at all (a detented meter): received energy is lost to billing
    ABSOLUTE = "absolute"  # as delivered energy (|P|, the anti-tamper setting of many utilities)


@dataclass(frozen=True)
class MeterConfig:
    """How the meters of a fleet behave. Per-meter values are drawn once, at construction."""

    interval_s: int = 900
    clock_drift_ppm: Distribution = field(default_factory=lambda: Distribution.normal(0.0, 10.0))
    initial_clock_offset_s: Distribution = field(default_factory=lambda: Distribution.constant(0.0))
    clock_sync_error_s: Distribution = field(default_factory=lambda: Distribution.normal(0.0, 0.2))
    clock_drift_threshold_s: float = 60.0
    tamper_rate_per_day: float = 1e-4  # per meter, while it has supply
    reverse_rotation: ReverseRotation = ReverseRotation.REGISTER
    last_gasp_delay_s: float = 5.0  # outages shorter than this are momentary: no last gasp
    power_restore_report_delay_s: Distribution = field(default_factory=lambda: Distribution.uniform(0.0, 30.0))
    energy_gain_error: Distribution = field(default_factory=lambda: Distribution.normal(0.0, 0.001))
    voltage_noise: float = 0.001  # relative standard deviation of each voltage read
    initial_delivered_wh: Distribution = field(default_factory=lambda: Distribution.uniform(0.0, 5e7))

    def __post_init__(self) -> None:
        object.__setattr__(self, "reverse_rotation", ReverseRotation(self.reverse_rotation))
        if not isinstance(self.interval_s, int) or self.interval_s <= 0:
            raise DeviceConfigError(f"MeterConfig.interval_s must be a positive integer, got {self.interval_s!r}")
        for name in ("clock_drift_threshold_s", "tamper_rate_per_day", "last_gasp_delay_s", "voltage_noise"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise DeviceConfigError(f"MeterConfig.{name} must be finite and >= 0, got {value!r}")
        if self.power_restore_report_delay_s.minimum() < 0:
            raise DeviceConfigError("MeterConfig.power_restore_report_delay_s must not draw negative delays")


@dataclass(frozen=True, eq=False)
class IntervalReads:
    """Interval reads, columnar: one row per (meter, interval) read; rows sorted by meter."""

    interval_s: int
    meter: IntArray  # fleet row of the meter
    interval_start_us: IntArray  # the interval's start on the meter's clock
    energy_delivered_wh: FloatArray
    energy_received_wh: FloatArray
    reactive_varh: FloatArray  # signed: > 0 lagging (inductive) import
    voltage_v: FloatArray  # average voltage while supplied
    quality: U8Array  # QualityFlag bits

    def __len__(self) -> int:
        return len(self.meter)

    def flagged(self, flag: QualityFlag) -> BoolArray:
        """Rows whose quality has ``flag`` set."""
        flagged: BoolArray = np.bitwise_and(self.quality, np.uint8(flag)) != 0
        return flagged

    def take(self, rows: npt.NDArray[np.intp] | slice) -> IntervalReads:
        return IntervalReads(
            self.interval_s,
            self.meter[rows],
            self.interval_start_us[rows],
            self.energy_delivered_wh[rows],
            self.energy_received_wh[rows],
            self.reactive_varh[rows],
            self.voltage_v[rows],
            self.quality[rows],
        )

    @classmethod
    def empty(cls, interval_s: int) -> IntervalReads:
        f = np.empty(0, np.float64)
        return cls(interval_s, np.empty(0, np.int64), np.empty(0, np.int64), f, f, f, f, np.empty(0, np.uint8))

    @classmethod
    def concat(cls, parts: Sequence[IntervalReads], *, interval_s: int) -> IntervalReads:
        if not parts:
            return cls.empty(interval_s)
        return cls(
            interval_s,
            *(np.concatenate([getattr(p, name) for p in parts]) for name in _READ_COLUMNS),
        )

    @classmethod
    def merge_by_meter(cls, first: IntervalReads, then: IntervalReads) -> IntervalReads:
        """Rows of both (each sorted by meter), sorted by meter; a meter's rows of ``first`` come first."""
        if not len(first):
            return then
        if not len(then):
            return first
        # Scatter both into place instead of concatenating and sorting: one pass per column.
        at_first = np.searchsorted(then.meter, first.meter, side="left") + np.arange(len(first))
        is_first = np.zeros(len(first) + len(then), dtype=bool)
        is_first[at_first] = True
        columns = []
        for name in _READ_COLUMNS:
            a, b = getattr(first, name), getattr(then, name)
            out = np.empty(len(a) + len(b), dtype=a.dtype)
            out[at_first] = a
            out[~is_first] = b
            columns.append(out)
        return cls(first.interval_s, *columns)


_READ_COLUMNS = (
    "meter",
    "interval_start_us",
    "energy_delivered_wh",
    "energy_received_wh",
    "reactive_varh",
    "voltage_v",
    "quality",
)


@dataclass(frozen=True, eq=False)
class MeterEvents:
    """Meter events, columnar, sorted by the time they were sent.

    ``at_us`` is when the event happened by the meter's clock (what the meter reports);
    ``sent_at_us`` is the true (simulation) time the meter transmitted it, which the
    communication model starts from. It is simulation truth and not part of the record.
    """

    meter: IntArray
    at_us: IntArray
    kind: U8Array  # MeterEventKind codes
    sent_at_us: IntArray

    def __len__(self) -> int:
        return len(self.meter)

    def take(self, rows: npt.NDArray[np.intp] | npt.NDArray[np.bool_] | slice) -> MeterEvents:
        return MeterEvents(self.meter[rows], self.at_us[rows], self.kind[rows], self.sent_at_us[rows])

    def of_kind(self, kind: MeterEventKind) -> MeterEvents:
        return self.take(self.kind == kind)

    @classmethod
    def empty(cls) -> MeterEvents:
        i = np.empty(0, np.int64)
        return cls(i, i, np.empty(0, np.uint8), i)

    @classmethod
    def concat(cls, parts: Sequence[MeterEvents]) -> MeterEvents:
        """All events of ``parts``, sorted by sending time, then meter (a stable, deterministic order)."""
        parts = [p for p in parts if len(p)]
        if not parts:
            return cls.empty()
        merged = cls(
            *(np.concatenate([getattr(p, c) for p in parts]) for c in ("meter", "at_us", "kind", "sent_at_us"))
        )
        return merged.take(np.lexsort((merged.meter, merged.sent_at_us)))


@dataclass(frozen=True, eq=False)
class RegisterReads:
    """Cumulative register reads of the meters that answered, columnar."""

    meter: IntArray
    at_us: IntArray  # the meter's clock when read
    energy_delivered_wh: FloatArray
    energy_received_wh: FloatArray
    reactive_delivered_varh: FloatArray  # lagging
    reactive_received_varh: FloatArray  # leading
    momentary_interruptions: IntArray  # outages shorter than the last-gasp delay, since installation
    quality: U8Array  # CLOCK_DRIFT only

    def __len__(self) -> int:
        return len(self.meter)


def to_us(at: dt.datetime, name: str = "at") -> int:
    """Microseconds since the Unix epoch of a timezone-aware time."""
    if at.tzinfo is None:
        raise DeviceInputError(f"{name} must be timezone-aware (UTC), got {at!r}")
    return (at - EPOCH) // dt.timedelta(microseconds=1)


class MeterFleet:
    """n AMI meters as arrays. ``rng`` draws the per-meter values now and all later randomness."""

    def __init__(
        self,
        meter_id: Sequence[str] | npt.NDArray[np.str_],
        *,
        rng: np.random.Generator,
        customer: npt.ArrayLike | None = None,
        config: MeterConfig | None = None,
        net_metered: npt.ArrayLike | None = None,
    ) -> None:
        self.config = config or MeterConfig()
        self.meter_id: npt.NDArray[np.str_] = np.asarray(meter_id, dtype=np.str_)
        n = self.n = len(self.meter_id)
        if self.meter_id.ndim != 1 or n == 0:
            raise DeviceInputError("meter_id must be a non-empty sequence of ids")
        self.customer: IntArray = np.arange(n, dtype=np.int64) if customer is None else np.asarray(customer, np.int64)
        if self.customer.shape != (n,):
            raise DeviceInputError(f"customer must have shape ({n},), got {self.customer.shape}")
        self._rng = rng
        cfg = self.config
        self._interval_us = cfg.interval_s * _US
        # Per-meter constants, drawn in a fixed order so a seed gives the same fleet.
        self._drift_ppm = cfg.clock_drift_ppm.sample(rng, n)
        self._clock_offset_us = cfg.initial_clock_offset_s.sample(rng, n) * _US  # at _clock_ref_us
        self._clock_ref_us = np.zeros(n, np.int64)  # set at the first measurement or command
        self._started = False
        self._gain = np.maximum(1.0 + cfg.energy_gain_error.sample(rng, n), 0.0)
        self._reg_delivered = cfg.initial_delivered_wh.sample(rng, n)
        self._reg_received = np.zeros(n)
        self._reg_var_delivered = np.zeros(n)
        self._reg_var_received = np.zeros(n)
        self._momentary = np.zeros(n, np.int64)
        self._energized = np.ones(n, bool)
        self._net_metered = np.zeros(n, bool) if net_metered is None else np.asarray(net_metered, bool).copy()
        if self._net_metered.shape != (n,):
            raise DeviceInputError(f"net_metered must have shape ({n},), got {self._net_metered.shape}")
        self._reverse_latched = np.zeros(n, bool)
        self._last_voltage = np.zeros(n)
        self._clock_set = np.zeros(n, bool)
        # Service switch: state now, state before the first change not yet measured, time of that change.
        self._switch_closed = np.ones(n, bool)
        self._switch_before = np.ones(n, bool)
        self._switch_changed_us = np.full(n, _NEVER, np.int64)
        self._switch_dirty = False
        # Outages: when the current one started (true time) and whether its last gasp went out.
        self._outage_start_us = np.full(n, _NEVER, np.int64)
        self._outage_announced = np.zeros(n, bool)
        self._pending = IntervalReads.empty(cfg.interval_s)  # partial intervals of meters that lost supply
        self._events: list[MeterEvents] = []
        self._measured_until_us: int | None = None
        self._rows = np.arange(n, dtype=np.int64)
        self._rows.flags.writeable = False
        self._id_order: npt.NDArray[np.intp] | None = None
        self._silent_until_us = np.full(n, _NEVER, np.int64)  # firmware faults: no interval reads sent before
        self.reads_withheld = 0  # interval reads a silent meter measured but did not send

    # ------------------------------------------------------------------ views
    @property
    def energized(self) -> BoolArray:
        """Line-side supply of each meter at the end of the last measured interval (read-only copy)."""
        return self._energized.copy()

    @property
    def service_connected(self) -> BoolArray:
        """Service switch closed (the customer's load is served) — zero the load of the others."""
        return self._switch_closed.copy()

    @property
    def net_metered(self) -> BoolArray:
        return self._net_metered.copy()

    @property
    def clock_drift_ppm(self) -> FloatArray:
        return self._drift_ppm.copy()

    @property
    def measured_until(self) -> dt.datetime | None:
        """End of the last measured interval."""
        if self._measured_until_us is None:
            return None
        return EPOCH + dt.timedelta(microseconds=self._measured_until_us)

    def clock_error_s(self, at: dt.datetime) -> FloatArray:
        """How far each meter's clock is ahead of true time at ``at`` (simulation truth, seconds)."""
        t = to_us(at)
        self._start_clock(t)
        return self._offset_us(self._rows, t) / _US

    def index_of(self, meter_id: Sequence[str] | npt.NDArray[np.str_]) -> IntArray:
        """Fleet rows of the given meter ids; UnknownDevice names the ids not in the fleet."""
        if self._id_order is None:
            self._id_order = np.argsort(self.meter_id, kind="stable")
        wanted = np.asarray(meter_id, dtype=np.str_)
        sorted_ids = self.meter_id[self._id_order]
        pos = np.minimum(np.searchsorted(sorted_ids, wanted), self.n - 1)
        found = sorted_ids[pos] == wanted
        if not found.all():
            missing = [str(m) for m in wanted[~found][:10]]
            raise UnknownDevice(f"meters not in the fleet: {', '.join(missing)}", devices=missing)
        return self._id_order[pos].astype(np.int64)

    def pop_events(self) -> MeterEvents:
        """Every event since the last call (from measurements and commands), sorted by sending time."""
        events = MeterEvents.concat(self._events)
        self._events = []
        return events

    # ------------------------------------------------------------------ measuring
    def measure(
        self,
        *,
        interval_start_at: dt.datetime,
        p_w: npt.ArrayLike,
        q_var: npt.ArrayLike,
        voltage_v: npt.ArrayLike,
        energized: npt.ArrayLike,
        outage_s: npt.ArrayLike | None = None,
    ) -> IntervalReads:
        """Meter one interval; returns the reads sent now. Events go to ``pop_events()``.

        ``p_w``/``q_var`` are each customer's average demand while supplied, ``voltage_v`` the
        average line-side voltage while supplied (0 where unknown: the meter's last reading is
        used), ``energized`` the supply at the end of the interval, ``outage_s`` the seconds
        without supply inside it (see the module docstring). All shaped ``(n,)``.
        """
        cfg, n, rng = self.config, self.n, self._rng
        length_s = float(cfg.interval_s)
        s = to_us(interval_start_at, "interval_start_at")
        e = s + self._interval_us
        if self._measured_until_us is not None and s < self._measured_until_us:
            raise IntervalOutOfOrder(
                f"interval starting {interval_start_at.isoformat()} is before the end of the last measured one "
                f"({self.measured_until})"
            )
        p = self._vector(p_w, "p_w")
        q = self._vector(q_var, "q_var")
        v = self._vector(voltage_v, "voltage_v")
        now = self._mask(energized, "energized")
        prev = self._energized
        if outage_s is None:
            off = np.where(now, 0.0, length_s)
        else:
            off = self._vector(outage_s, "outage_s")
            if off.min(initial=0.0) < 0 or off.max(initial=0.0) > length_s:
                raise DeviceInputError(f"outage_s must be within [0, {cfg.interval_s}] seconds")
            off = np.where(prev | now, off, length_s)  # dead throughout, whatever was given
        self._start_clock(s)  # nothing changes before every input is accepted
        supplied_s = length_s - off
        read_any = supplied_s > 0

        # Energy: demand integrated over the time with supply and a closed switch, times the meter's gain.
        connected = self._connected_fraction(s, e)
        factor = supplied_s * self._gain / 3600.0
        if connected is not None:
            factor *= connected
        delivered = np.maximum(p, 0.0) * factor
        received = np.maximum(-p, 0.0) * factor
        varh = q * factor
        reverse = (received > 0) & ~self._net_metered
        if cfg.reverse_rotation is not ReverseRotation.REGISTER and reverse.any():
            if cfg.reverse_rotation is ReverseRotation.ABSOLUTE:
                delivered += np.where(reverse, received, 0.0)
            received = np.where(reverse, 0.0, received)
        self._reg_delivered += delivered
        self._reg_received += received
        self._reg_var_delivered += np.maximum(varh, 0.0)
        self._reg_var_received += np.maximum(-varh, 0.0)

        volts = np.where((v <= 0) & read_any, self._last_voltage, v)
        if cfg.voltage_noise > 0:
            volts *= 1.0 + cfg.voltage_noise * rng.standard_normal(n)
        np.copyto(self._last_voltage, volts, where=read_any)

        # Quality.
        quality = _flag(np.abs(self._offset_us(self._rows, e)) > cfg.clock_drift_threshold_s * _US, "CLOCK_DRIFT")
        quality |= _flag(off > 0, "POWER_OUTAGE_PARTIAL")
        quality |= _flag(reverse, "REVERSE_ROTATION")
        quality |= _flag(self._clock_set, "CLOCK_SET")
        if connected is not None:
            quality |= _flag(connected < 1.0, "SERVICE_DISCONNECTED")
        self._clock_set &= ~read_any

        events: list[MeterEvents] = []
        tampered = self._tamper(s, read_any, events)
        quality[tampered] |= np.uint8(QualityFlag.TAMPER)
        first_reverse = np.flatnonzero(reverse & ~self._reverse_latched)
        if len(first_reverse):
            events.append(
                self._events_at(first_reverse, np.full(len(first_reverse), s), MeterEventKind.REVERSE_ROTATION)
            )
        np.copyto(self._reverse_latched, reverse, where=read_any)

        # Interval stamps on each meter's own clock: the boundary nearest to the true start.
        offset_start = self._offset_us(self._rows, s)
        stamp = s + np.rint(offset_start / self._interval_us).astype(np.int64) * self._interval_us
        current = IntervalReads(cfg.interval_s, self._rows, stamp, delivered, received, varh, volts, quality)

        lost = np.flatnonzero(prev & ~now)
        back = np.flatnonzero(~prev & now)
        reads = current if now.all() else current.take(np.flatnonzero(now))
        if len(lost) or not prev.all() or (off > 0).any():
            reads = self._outages(s, e, prev, now, off, lost, back, current, reads, events)
        self._events.extend(events)
        self._energized = now.copy()
        self._measured_until_us = e
        self._settle_switch(e)
        if self._silent_until_us.max() > s:
            sending = self._silent_until_us[reads.meter] <= s
            self.reads_withheld += int(np.count_nonzero(~sending))
            reads = reads.take(np.flatnonzero(sending))
        return reads

    def register_reads(self, at: dt.datetime, *, meters: npt.ArrayLike | None = None) -> RegisterReads:
        """Register values (as of the end of the last measured interval) of the meters with supply."""
        t = to_us(at)
        self._start_clock(t)
        idx = self._rows if meters is None else self._indices(meters)
        idx = idx[self._energized[idx]]
        offset = self._offset_us(idx, t)
        quality = _flag(np.abs(offset) > self.config.clock_drift_threshold_s * _US, "CLOCK_DRIFT")
        return RegisterReads(
            idx.copy(),
            t + np.rint(offset).astype(np.int64),
            self._reg_delivered[idx],
            self._reg_received[idx],
            self._reg_var_delivered[idx],
            self._reg_var_received[idx],
            self._momentary[idx],
            quality,
        )

    # ------------------------------------------------------------------ commands
    def remote_disconnect(self, meters: npt.ArrayLike, at: dt.datetime) -> BoolArray:
        """Open the service switch of ``meters`` at ``at``; returns which of them took the command.

        ``meters`` are fleet rows or a mask; ``at`` may fall inside the next interval to measure,
        which then reads the part before ``at``. One switch change per meter and interval is
        resolved exactly; with more, the interval reads as if the switch had kept its state from
        before the first change until the last one.
        """
        return self._operate_switch(meters, at, closed=False)

    def remote_connect(self, meters: npt.ArrayLike, at: dt.datetime) -> BoolArray:
        """Close the service switch of ``meters`` at ``at``; returns which of them took the command."""
        return self._operate_switch(meters, at, closed=True)

    def sync_clock(self, meters: npt.ArrayLike, at: dt.datetime) -> BoolArray:
        """Set the clocks of ``meters`` to true time at ``at`` (within the sync error); returns who took it."""
        t = self._command_time(at)
        idx = self._indices(meters)
        took = self._energized[idx]
        acc = np.unique(idx[took])
        self._clock_offset_us[acc] = self.config.clock_sync_error_s.sample(self._rng, len(acc)) * _US
        self._clock_ref_us[acc] = t
        self._clock_set[acc] = True
        return took

    def firmware_clock_jump(self, meters: npt.ArrayLike, seconds: float) -> None:
        """A firmware fault steps the clocks of ``meters`` by ``seconds``; they drift on from there."""
        self._clock_offset_us[self._indices(meters)] += seconds * _US

    def firmware_silence(self, meters: npt.ArrayLike, until: dt.datetime) -> None:
        """A firmware fault stops ``meters`` sending interval reads before ``until``; they keep metering
        (registers advance) and answer register reads and commands as before."""
        idx = self._indices(meters)
        self._silent_until_us[idx] = np.maximum(self._silent_until_us[idx], to_us(until, "until"))

    def set_net_metering(self, meters: npt.ArrayLike, *, enrolled: bool) -> BoolArray:
        """Enrol ``meters`` in net metering (or withdraw them); returns which of them took the command."""
        idx = self._indices(meters)
        took = self._energized[idx]
        self._net_metered[idx[took]] = enrolled
        return took

    # ------------------------------------------------------------------ internals
    def _vector(self, values: npt.ArrayLike, name: str) -> FloatArray:
        array = np.asarray(values, dtype=np.float64)
        if array.shape != (self.n,):
            raise DeviceInputError(f"{name} must have shape ({self.n},), got {array.shape}")
        if not np.isfinite(array).all():
            bad = np.flatnonzero(~np.isfinite(array))
            raise DeviceInputError(f"{name} has {len(bad)} non-finite values, first at meter row {bad[0]}")
        return array

    def _mask(self, values: npt.ArrayLike, name: str) -> BoolArray:
        array = np.asarray(values)
        if array.shape != (self.n,):
            raise DeviceInputError(f"{name} must have shape ({self.n},), got {array.shape}")
        return array.astype(bool, copy=False)

    def _indices(self, meters: npt.ArrayLike) -> IntArray:
        idx = np.asarray(meters)
        if idx.dtype == np.bool_:
            if idx.shape != (self.n,):
                raise DeviceInputError(f"a meter mask must have shape ({self.n},), got {idx.shape}")
            return np.flatnonzero(idx).astype(np.int64)
        if idx.size and not np.issubdtype(idx.dtype, np.integer):
            raise DeviceInputError(f"meters must be fleet rows (integers) or a mask, got dtype {idx.dtype}")
        idx = idx.astype(np.int64).reshape(-1)
        bad = idx[(idx < 0) | (idx >= self.n)]
        if len(bad):
            raise UnknownDevice(
                f"meter rows out of range 0..{self.n - 1}: {bad[:10].tolist()}", devices=[str(b) for b in bad[:10]]
            )
        return idx

    def _start_clock(self, t_us: int) -> None:
        # Drift counts from the moment the simulation first touches the fleet.
        if not self._started:
            self._clock_ref_us[:] = t_us
            self._started = True

    def _offset_us(self, idx: IntArray, t_us: int | IntArray) -> FloatArray:
        elapsed = np.asarray(t_us, np.int64) - self._clock_ref_us[idx]
        return self._clock_offset_us[idx] + self._drift_ppm[idx] * 1e-6 * elapsed

    def _events_at(
        self, idx: IntArray, t_us: IntArray, kind: MeterEventKind, sent_us: IntArray | None = None
    ) -> MeterEvents:
        t_us = np.asarray(t_us, np.int64)
        at_us = t_us + np.rint(self._offset_us(idx, t_us)).astype(np.int64)
        return MeterEvents(
            idx.astype(np.int64), at_us, np.full(len(idx), kind, np.uint8), t_us if sent_us is None else sent_us
        )

    def _command_time(self, at: dt.datetime) -> int:
        t = to_us(at)
        if self._measured_until_us is not None and t < self._measured_until_us:
            raise IntervalOutOfOrder(f"command at {at.isoformat()} is before the end of the last measured interval")
        self._start_clock(t)
        return t

    def _operate_switch(self, meters: npt.ArrayLike, at: dt.datetime, *, closed: bool) -> BoolArray:
        t = self._command_time(at)
        idx = self._indices(meters)
        took = self._energized[idx]
        acc = np.unique(idx[took])
        change = acc[self._switch_closed[acc] != closed]
        # A switch already changed since the last measurement keeps the state it had before that change.
        measured = _NEVER + 1 if self._measured_until_us is None else self._measured_until_us
        settled = self._switch_changed_us[change] < measured
        self._switch_before[change[settled]] = self._switch_closed[change[settled]]
        self._switch_closed[change] = closed
        self._switch_changed_us[change] = t
        self._switch_dirty = self._switch_dirty or len(change) > 0 or not self._switch_closed.all()
        kind = MeterEventKind.SERVICE_CONNECTED if closed else MeterEventKind.SERVICE_DISCONNECTED
        self._events.append(self._events_at(change, np.full(len(change), t), kind))
        return took

    def _connected_fraction(self, s: int, e: int) -> FloatArray | None:
        """Fraction of [s, e) each service switch was closed; None when all were closed throughout."""
        if not self._switch_dirty:
            return None
        # The switch is in its previous state until the change, in its current state after it.
        change = np.clip(self._switch_changed_us, s, e)
        after = (e - change).astype(np.float64) / (e - s)
        return np.where(self._switch_closed, after, 0.0) + np.where(self._switch_before, 1.0 - after, 0.0)

    def _settle_switch(self, e: int) -> None:
        if not self._switch_dirty:
            return
        done = self._switch_changed_us < e
        np.copyto(self._switch_before, self._switch_closed, where=done)
        self._switch_dirty = bool((~done).any() or not self._switch_closed.all())

    def _tamper(self, s: int, read_any: BoolArray, events: list[MeterEvents]) -> IntArray:
        rate = self.config.tamper_rate_per_day
        if rate <= 0:
            return np.empty(0, np.int64)
        probability = -math.expm1(-rate * self.config.interval_s / 86_400)
        # Binomial count then a uniform subset = independent Bernoulli draws, without n random numbers.
        count = int(self._rng.binomial(self.n, probability))
        chosen = np.sort(self._rng.choice(self.n, size=count, replace=False)).astype(np.int64)
        times = self._rng.integers(s, s + self._interval_us, size=count)
        keep = read_any[chosen]
        chosen, times = chosen[keep], times[keep]
        if len(chosen):
            events.append(self._events_at(chosen, times, MeterEventKind.TAMPER))
        return chosen

    def _outages(
        self,
        s: int,
        e: int,
        prev: BoolArray,
        now: BoolArray,
        off: FloatArray,
        lost: IntArray,
        back: IntArray,
        current: IntervalReads,
        reads: IntervalReads,
        events: list[MeterEvents],
    ) -> IntervalReads:
        """Last gasps, restores, momentary counts and partial intervals of meters whose supply changed."""
        delay_us = round(self.config.last_gasp_delay_s * _US)
        off_us = np.rint(off * _US).astype(np.int64)
        gasps: list[tuple[IntArray, IntArray]] = []  # (meters, outage start)
        restores: list[tuple[IntArray, IntArray]] = []  # (meters, restore time)

        # Interrupted and back within the interval: an outage in the middle of it.
        inside = np.flatnonzero(prev & now & (off > 0)).astype(np.int64)
        start = s + (self._interval_us - off_us[inside]) // 2
        long = off_us[inside] >= max(delay_us, 1)
        gasps.append((inside[long], start[long]))
        restores.append((inside[long], start[long] + off_us[inside][long]))
        self._momentary[inside[~long]] += 1

        # Supply lost: the outage starts in the last off seconds.
        lost = lost.astype(np.int64)
        self._outage_start_us[lost] = e - off_us[lost]
        self._outage_announced[lost] = False
        # Dead throughout or lost now: the last gasp goes out once the outage has lasted the delay.
        out = np.flatnonzero(~now).astype(np.int64)
        due = out[~self._outage_announced[out] & (e - self._outage_start_us[out] >= delay_us)]
        gasps.append((due, self._outage_start_us[due]))
        self._outage_announced[due] = True

        # Supply back in the first off seconds.
        back = back.astype(np.int64)
        restored_at = s + off_us[back]
        announced = self._outage_announced[back]
        late = ~announced & (restored_at - self._outage_start_us[back] >= max(delay_us, 1))
        gasps.append((back[late], self._outage_start_us[back[late]]))
        restores.append((back[announced | late], restored_at[announced | late]))
        self._momentary[back[~announced & ~late]] += 1
        self._outage_announced[back] = False
        self._outage_start_us[back] = _NEVER

        gasp_meters = np.concatenate([g[0] for g in gasps])
        gasp_start = np.concatenate([g[1] for g in gasps])
        events.append(self._events_at(gasp_meters, gasp_start, MeterEventKind.LAST_GASP, gasp_start + delay_us))
        restore_meters = np.concatenate([r[0] for r in restores])
        restore_at = np.concatenate([r[1] for r in restores])
        report_delay = self.config.power_restore_report_delay_s.sample(self._rng, len(restore_meters))
        sent = restore_at + np.rint(report_delay * _US).astype(np.int64)
        events.append(self._events_at(restore_meters, restore_at, MeterEventKind.POWER_RESTORE, sent))

        # Reads: a meter that lost supply keeps its partial interval until supply is back.
        pending, interval_s = self._pending, self.config.interval_s
        has_pending = np.isin(pending.meter, back)
        partial = lost[off[lost] < float(interval_s)]
        if has_pending.all():
            sent_now, kept = pending, IntervalReads.empty(interval_s)
        else:
            sent_now, kept = pending.take(np.flatnonzero(has_pending)), pending.take(np.flatnonzero(~has_pending))
        dying = current.take(partial)
        self._pending = IntervalReads.concat([kept, dying], interval_s=interval_s) if len(kept) else dying
        if len(sent_now) > 1 and (np.diff(sent_now.meter) < 0).any():
            sent_now = sent_now.take(np.argsort(sent_now.meter, kind="stable"))
        return IntervalReads.merge_by_meter(sent_now, reads)


def _flag(mask: BoolArray, name: str) -> U8Array:
    """``mask`` as uint8 bits of the named quality flag (0 elsewhere), without a copy of the mask."""
    return mask.view(np.uint8) * np.uint8(QualityFlag[name])
