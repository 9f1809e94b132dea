"""Field IEDs as one fleet: breakers, reclosers, switches, capacitor banks, voltage regulators.

What changes an IED's state:

* breakers, reclosers and switches: commands only (:meth:`IedFleet.open`,
  :meth:`IedFleet.close`), from SCADA/DMS, a field crew, or protection (``cause``);
* capacitor banks: commands, and their own local voltage control when in automatic mode
  (switch in after the voltage has stayed below ``v_on_pu`` for ``delay_s``, out after it
  has stayed above ``v_off_pu`` for ``delay_s``);
* voltage regulators: commands (:meth:`IedFleet.set_tap`), and their own control in
  automatic mode (ANSI-style: taps only after the regulated voltage has stayed outside
  ``v_set_pu +- bandwidth_pu / 2`` for ``delay_s``; then one step every
  ``intertap_delay_s`` while it stays out). Tap range -16..+16, 0.625 % per step
  (the 32-step, +-10 % regulator).

Every state change is an event (:class:`IedEvents`) stamped with the IED's own clock,
which is the injected simulation clock plus a per-IED offset and drift (IEDs without
GPS disagree by milliseconds to seconds). Measurements are taken from the power-flow
arrays the caller passes (one scenario: node voltages, line currents, optional line P/Q)
and stamped the same way.

Powers follow the generator view of the other device modules: a capacitor bank's
``q_var > 0`` is injected. Line P and Q are passed through as the caller gives them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import IntEnum

import numpy as np
import numpy.typing as npt

from gridloom.devices.selection import readonly, select_units
from gridloom.errors import DeviceConfigError, DeviceInputError, UnknownDevice

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
IndexArray = npt.NDArray[np.intp]

__all__ = [
    "TAP_MAX",
    "TAP_MIN",
    "TAP_STEP_PU",
    "CapacitorSpec",
    "Cause",
    "IedEventKind",
    "IedEvents",
    "IedFleet",
    "IedKind",
    "IedMeasurements",
    "RegulatorSpec",
    "SwitchSpec",
]

TAP_MIN, TAP_MAX = -16, 16
TAP_STEP_PU = 0.00625
_SQRT3 = float(np.sqrt(3.0))
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


class IedKind(IntEnum):
    BREAKER = 1
    RECLOSER = 2
    SWITCH = 3
    CAPACITOR = 4
    REGULATOR = 5


class IedEventKind(IntEnum):
    OPENED = 1  # a switching device opened, or a capacitor bank switched out
    CLOSED = 2  # closed, or switched in
    TAP_CHANGED = 3  # ``value`` is the new tap position


class Cause(IntEnum):
    COMMAND = 1  # operator, DMS, SCADA, field crew
    PROTECTION = 2  # a relay or recloser acting on a fault (applied by the protection model)
    LOCAL_CONTROL = 3  # the IED's own voltage control


_SWITCHING = (IedKind.BREAKER, IedKind.RECLOSER, IedKind.SWITCH)


@dataclass(frozen=True)
class SwitchSpec:
    """A breaker, recloser or switch at ``node``; ``line`` is where its current is measured,
    ``switch_row`` the pandapower switch row it operates (-1 if none)."""

    kind: IedKind
    node: int
    line: int = -1
    switch_row: int = -1
    closed: bool = True


@dataclass(frozen=True)
class CapacitorSpec:
    """A switched capacitor bank at ``node``: ``q_rated_var`` at 1 pu (Q scales with V^2)."""

    node: int
    q_rated_var: float
    v_on_pu: float = 0.98
    v_off_pu: float = 1.04
    delay_s: float = 60.0
    closed: bool = False
    auto: bool = True


@dataclass(frozen=True)
class RegulatorSpec:
    """A step voltage regulator (or a transformer's on-load tap changer) sensing ``node``.

    Bandwidth 2 V on a 120 V base (0.0167 pu) and 30 s delay are common field settings.
    ``intertap_delay_s`` None means sequential operation (each further step waits the full
    ``delay_s``).
    """

    node: int
    line: int = -1
    v_set_pu: float = 1.0
    bandwidth_pu: float = 2.0 / 120.0
    delay_s: float = 30.0
    intertap_delay_s: float | None = None
    tap: int = 0
    auto: bool = True


IedSpec = SwitchSpec | CapacitorSpec | RegulatorSpec


@dataclass(frozen=True)
class IedEvents:
    """State changes, columnar; ``at_us`` is UTC epoch microseconds on the IED's own clock."""

    ied: IndexArray
    at_us: npt.NDArray[np.int64]
    kind: npt.NDArray[np.int8]  # IedEventKind
    value: npt.NDArray[np.int16]  # new state: 1 closed / 0 open, or the new tap
    cause: npt.NDArray[np.int8]  # Cause

    def __len__(self) -> int:
        return len(self.ied)


@dataclass(frozen=True)
class IedMeasurements:
    """One reading per IED, columnar; ``at_us`` is UTC epoch microseconds on the IED's own clock."""

    ied: IndexArray
    at_us: npt.NDArray[np.int64]
    kind: npt.NDArray[np.int8]  # IedKind
    state: npt.NDArray[np.int16]  # 1 closed / 0 open (switching devices, capacitors); tap (regulators)
    current_a: FloatArray  # NaN where the IED has no current sensor (no line)
    voltage_v: FloatArray  # line-to-line, V
    voltage_pu: FloatArray
    p_w: FloatArray  # NaN where not measured
    q_var: FloatArray

    def __len__(self) -> int:
        return len(self.ied)


def _epoch_us(at: dt.datetime) -> int:
    if at.tzinfo is None:
        raise DeviceInputError("the clock must give timezone-aware UTC times")
    return (at - _EPOCH) // dt.timedelta(microseconds=1)


class IedFleet:
    """All field IEDs of a grid (or a territory), as arrays in the order of ``specs``.

    ``node_vn_v``: nominal line-to-line voltage of every node (``District.node_vn_v``),
    to turn per-unit voltages into volts. ``clock`` gives the true simulated UTC time;
    ``rng`` draws each IED's clock offset (normal, ``clock_offset_sigma_s``) and drift
    (normal, ``clock_drift_ppm_sigma``).
    """

    def __init__(
        self,
        specs: Sequence[IedSpec],
        *,
        node_vn_v: npt.ArrayLike,
        clock: Callable[[], dt.datetime],
        rng: np.random.Generator,
        ids: Sequence[str] | None = None,
        clock_offset_sigma_s: float = 0.001,
        clock_drift_ppm_sigma: float = 1.0,
    ) -> None:
        n = len(specs)
        self.n = n
        self._clock = clock
        self.ids = np.asarray(ids if ids is not None else [f"ied-{i}" for i in range(n)], dtype=str)
        if self.ids.shape != (n,) or len(set(self.ids.tolist())) != n:
            raise DeviceConfigError("ids must be one unique string per IED")
        self._index = {name: i for i, name in enumerate(self.ids.tolist())}
        vn = np.asarray(node_vn_v, dtype=np.float64)
        if vn.ndim != 1 or np.any(vn <= 0):
            raise DeviceConfigError("node_vn_v is one positive nominal voltage per node")
        self._node_vn_v = vn

        kind = np.zeros(n, dtype=np.int8)
        node = np.zeros(n, dtype=np.intp)
        line = np.full(n, -1, dtype=np.intp)
        switch_row = np.full(n, -1, dtype=np.intp)
        closed = np.zeros(n, dtype=bool)
        auto = np.zeros(n, dtype=bool)
        tap = np.zeros(n, dtype=np.int16)
        q_rated = np.zeros(n)
        v_lo = np.full(n, np.nan)  # capacitor: switch in below; regulator: lower band edge
        v_hi = np.full(n, np.nan)  # capacitor: switch out above; regulator: upper band edge
        delay = np.zeros(n)
        intertap = np.zeros(n)
        for i, spec in enumerate(specs):  # construction only: IEDs number thousands, not millions
            node[i] = spec.node
            if isinstance(spec, SwitchSpec):
                if spec.kind not in _SWITCHING:
                    raise DeviceConfigError(f"{self.ids[i]}: a SwitchSpec is a breaker, recloser or switch")
                kind[i], line[i], switch_row[i], closed[i] = spec.kind, spec.line, spec.switch_row, spec.closed
            elif isinstance(spec, CapacitorSpec):
                if not spec.v_on_pu < spec.v_off_pu or spec.q_rated_var < 0 or spec.delay_s < 0:
                    raise DeviceConfigError(
                        f"{self.ids[i]}: a capacitor needs v_on_pu < v_off_pu (a deadband), q_rated_var >= 0, "
                        "delay >= 0"
                    )
                kind[i], closed[i], auto[i] = IedKind.CAPACITOR, spec.closed, spec.auto
                q_rated[i], v_lo[i], v_hi[i], delay[i] = spec.q_rated_var, spec.v_on_pu, spec.v_off_pu, spec.delay_s
            else:
                if not TAP_MIN <= spec.tap <= TAP_MAX or spec.bandwidth_pu <= 0 or spec.delay_s < 0:
                    raise DeviceConfigError(
                        f"{self.ids[i]}: a regulator needs a tap in {TAP_MIN}..{TAP_MAX}, bandwidth > 0, delay >= 0"
                    )
                kind[i], line[i], tap[i], auto[i], closed[i] = IedKind.REGULATOR, spec.line, spec.tap, spec.auto, True
                v_lo[i] = spec.v_set_pu - spec.bandwidth_pu / 2
                v_hi[i] = spec.v_set_pu + spec.bandwidth_pu / 2
                delay[i] = spec.delay_s
                intertap[i] = spec.delay_s if spec.intertap_delay_s is None else spec.intertap_delay_s
        if n and (node.min() < 0 or node.max() >= len(vn)):
            raise DeviceConfigError(f"IED nodes must be in 0..{len(vn) - 1}")
        self._kind, self._node, self._line, self._switch_row = kind, node, line, switch_row
        self._closed, self._auto, self._tap = closed, auto, tap
        self._q_rated_var, self._v_lo, self._v_hi = q_rated, v_lo, v_hi
        self._delay_s, self._intertap_s = delay, intertap
        self._timer_s = np.zeros(n)  # how long the control condition has held
        self._direction = np.zeros(n, dtype=np.int8)  # regulator: +1 too high, -1 too low
        self._stepped = np.zeros(n, dtype=bool)  # regulator: already tapped in this excursion
        self._t0_us = _epoch_us(clock())
        self._offset_us = rng.normal(0.0, clock_offset_sigma_s, n) * 1e6
        self._drift = rng.normal(0.0, clock_drift_ppm_sigma, n) * 1e-6
        self._events: list[IedEvents] = []

    # -- identity and state -----------------------------------------------------------

    def index(self, ids: Sequence[str]) -> IndexArray:
        """Positions of IEDs given by id."""
        missing = [i for i in ids if i not in self._index]
        if missing:
            raise UnknownDevice(f"no IED with id {missing[0]!r}", devices=missing[:10])
        return np.array([self._index[i] for i in ids], dtype=np.intp)

    @property
    def kind(self) -> npt.NDArray[np.int8]:
        return readonly(self._kind)

    @property
    def node(self) -> IndexArray:
        return readonly(self._node)

    @property
    def closed(self) -> BoolArray:
        """Switching devices and capacitor banks: closed / switched in (regulators: True)."""
        return readonly(self._closed)

    @property
    def tap(self) -> npt.NDArray[np.int16]:
        return readonly(self._tap)

    @property
    def auto(self) -> BoolArray:
        return readonly(self._auto)

    def ied_time_us(self, true_us: int | npt.NDArray[np.int64] | None = None) -> npt.NDArray[np.int64]:
        """Every IED's clock reading at true time ``true_us`` (default: now), epoch microseconds."""
        t = np.asarray(_epoch_us(self._clock()) if true_us is None else true_us, dtype=np.int64)
        return t + np.round(self._offset_us + self._drift * (t - self._t0_us)).astype(np.int64)

    # -- commands ---------------------------------------------------------------------

    def _pick(self, ieds: npt.ArrayLike | Sequence[str], allowed: tuple[IedKind, ...], what: str) -> IndexArray:
        raw = np.atleast_1d(np.asarray(ieds))
        idx = self.index([str(x) for x in raw]) if raw.dtype.kind in "US" else select_units(raw, self.n, "IED")
        wrong = idx[~np.isin(self._kind[idx], np.array(allowed, dtype=np.int8))]
        if wrong.size:
            names = ", ".join(self.ids[wrong[:5]].tolist())
            raise DeviceInputError(f"cannot {what} {names}: wrong kind of IED")
        return idx

    def _record(
        self, idx: IndexArray, kind: npt.ArrayLike, value: npt.ArrayLike, cause: Cause, true_us: npt.ArrayLike
    ) -> None:
        if idx.size == 0:
            return
        t = np.broadcast_to(np.asarray(true_us, dtype=np.int64), idx.shape)
        stamped = t + np.round(self._offset_us[idx] + self._drift[idx] * (t - self._t0_us)).astype(np.int64)
        self._events.append(
            IedEvents(
                ied=idx.copy(),
                at_us=stamped,
                kind=np.broadcast_to(np.asarray(kind, dtype=np.int8), idx.shape).copy(),
                value=np.broadcast_to(np.asarray(value, dtype=np.int16), idx.shape).copy(),
                cause=np.full(idx.shape, cause, dtype=np.int8),
            )
        )

    def _switch(self, ieds: npt.ArrayLike | Sequence[str], closed: bool, cause: Cause) -> IndexArray:
        idx = np.unique(self._pick(ieds, (*_SWITCHING, IedKind.CAPACITOR), "close" if closed else "open"))
        changed: IndexArray = idx[self._closed[idx] != closed]
        self._closed[changed] = closed
        self._timer_s[changed] = 0.0
        kind = IedEventKind.CLOSED if closed else IedEventKind.OPENED
        self._record(changed, kind, int(closed), cause, _epoch_us(self._clock()))
        return changed

    def open(self, ieds: npt.ArrayLike | Sequence[str], *, cause: Cause = Cause.COMMAND) -> IndexArray:
        """Open switching devices / switch capacitor banks out; returns the IEDs whose state changed."""
        return self._switch(ieds, False, cause)

    def close(self, ieds: npt.ArrayLike | Sequence[str], *, cause: Cause = Cause.COMMAND) -> IndexArray:
        """Close switching devices / switch capacitor banks in; returns the IEDs whose state changed."""
        return self._switch(ieds, True, cause)

    def set_tap(self, ieds: npt.ArrayLike | Sequence[str], tap: npt.ArrayLike) -> IndexArray:
        """Move regulators to ``tap`` (-16..+16); returns the regulators whose tap changed."""
        idx = self._pick(ieds, (IedKind.REGULATOR,), "set the tap of")
        new = np.broadcast_to(np.asarray(tap), idx.shape)
        if not np.issubdtype(new.dtype, np.integer) or np.any(new < TAP_MIN) or np.any(new > TAP_MAX):
            raise DeviceInputError(f"a tap position is an integer in {TAP_MIN}..{TAP_MAX}")
        moved = self._tap[idx] != new
        changed: IndexArray = idx[moved]
        self._tap[changed] = new[moved]
        self._timer_s[changed] = 0.0
        self._stepped[changed] = False
        self._record(changed, IedEventKind.TAP_CHANGED, new[moved], Cause.COMMAND, _epoch_us(self._clock()))
        return changed

    def set_auto(self, ieds: npt.ArrayLike | Sequence[str], enabled: bool) -> None:
        """Put capacitor banks / regulators in automatic (local control) or manual mode."""
        idx = self._pick(ieds, (IedKind.CAPACITOR, IedKind.REGULATOR), "change the control mode of")
        self._auto[idx] = enabled
        self._timer_s[idx] = 0.0
        self._stepped[idx] = False

    def set_voltage_setpoint(self, ieds: npt.ArrayLike | Sequence[str], v_set_pu: float) -> None:
        """Move regulators' band centre, keeping the bandwidth (e.g. conservation voltage reduction)."""
        idx = self._pick(ieds, (IedKind.REGULATOR,), "set the voltage of")
        if not 0.8 <= v_set_pu <= 1.2:
            raise DeviceInputError(f"a regulator set point is in 0.8..1.2 pu, not {v_set_pu}")
        half = (self._v_hi[idx] - self._v_lo[idx]) / 2
        self._v_lo[idx] = v_set_pu - half
        self._v_hi[idx] = v_set_pu + half
        self._timer_s[idx] = 0.0
        self._stepped[idx] = False

    # -- local control ----------------------------------------------------------------

    def control(self, dt_s: float, *, node_voltage_pu: npt.ArrayLike) -> None:
        """Run the capacitor and regulator controls over ``[now, now + dt_s)``.

        ``node_voltage_pu``: (n_nodes,) voltages of one power-flow solution, held for the
        interval. A regulator that taps sees its own effect (the regulated voltage scales
        with its ratio) and may tap again within the interval; a capacitor bank acts at
        most once per interval (its effect shows in the next power flow). Events are
        stamped when the delay expired. A dead node (0 pu) blocks control.
        """
        if not dt_s > 0:
            raise DeviceInputError(f"a control interval is a positive number of seconds, not {dt_s}")
        v_node = np.asarray(node_voltage_pu, dtype=np.float64)
        if v_node.shape != self._node_vn_v.shape:
            raise DeviceInputError(
                f"node_voltage_pu has one value per node {self._node_vn_v.shape}, got {v_node.shape}"
            )
        now_us = _epoch_us(self._clock())
        v = v_node[self._node]
        live = self._auto & (v > 0.0)
        self._control_capacitors(np.flatnonzero(live & (self._kind == IedKind.CAPACITOR)), v, dt_s, now_us)
        self._control_regulators(np.flatnonzero(live & (self._kind == IedKind.REGULATOR)), v, dt_s, now_us)

    def _control_capacitors(self, idx: IndexArray, v_all: FloatArray, dt_s: float, now_us: int) -> None:
        v, closed = v_all[idx], self._closed[idx]
        act = (~closed & (v < self._v_lo[idx])) | (closed & (v > self._v_hi[idx]))
        held = np.where(act, self._timer_s[idx], 0.0)
        fire = act & (held + dt_s >= self._delay_s[idx])
        self._timer_s[idx] = np.where(act & ~fire, held + dt_s, 0.0)
        fired = idx[fire]
        new_state = ~closed[fire]
        self._closed[fired] = new_state
        offset_us = np.round((self._delay_s[fired] - held[fire]) * 1e6).astype(np.int64)
        kind = np.where(new_state, IedEventKind.CLOSED, IedEventKind.OPENED)
        self._record(fired, kind, new_state.astype(np.int16), Cause.LOCAL_CONTROL, now_us + offset_us)

    def _control_regulators(self, idx: IndexArray, v_all: FloatArray, dt_s: float, now_us: int) -> None:
        v_meas = v_all[idx]
        ratio_at_measure = 1.0 + self._tap[idx] * TAP_STEP_PU
        elapsed = np.zeros(len(idx))  # seconds of this interval already accounted for
        active = np.ones(len(idx), dtype=bool)
        # One pass per tap step (at most 32), vectorised over regulators.
        while np.any(active):
            a = np.flatnonzero(active)
            g = idx[a]
            v = v_meas[a] * (1.0 + self._tap[g] * TAP_STEP_PU) / ratio_at_measure[a]
            dev = np.where(v > self._v_hi[g], 1, np.where(v < self._v_lo[g], -1, 0)).astype(np.int8)
            restart = (dev == 0) | (dev != self._direction[g])
            self._timer_s[g] = np.where(restart, 0.0, self._timer_s[g])
            self._stepped[g] = np.where(restart, False, self._stepped[g])
            self._direction[g] = dev
            new_tap = self._tap[g] - dev  # voltage too high: step down
            room = (new_tap >= TAP_MIN) & (new_tap <= TAP_MAX)
            need = np.where(self._stepped[g], self._intertap_s[g], self._delay_s[g])
            left = dt_s - elapsed[a]
            wait = np.maximum(need - self._timer_s[g], 0.0)
            fire = (dev != 0) & room & (wait <= left)
            # Out of band but not (yet) due, or at the end of the range: the timer keeps running.
            hold = (dev != 0) & ~fire
            self._timer_s[g] = np.where(hold, self._timer_s[g] + left, np.where(fire, 0.0, self._timer_s[g]))
            fired = g[fire]
            elapsed[a[fire]] += wait[fire]
            self._tap[fired] = new_tap[fire]
            self._stepped[fired] = True
            at_us = now_us + np.round(elapsed[a[fire]] * 1e6).astype(np.int64)
            self._record(fired, IedEventKind.TAP_CHANGED, new_tap[fire], Cause.LOCAL_CONTROL, at_us)
            active[a[~fire]] = False

    # -- what the grid sees -----------------------------------------------------------

    def tap_ratio(self) -> FloatArray:
        """Voltage ratio of each IED (regulators ``1 + tap * 0.625 %``, others 1.0)."""
        return 1.0 + self._tap.astype(np.float64) * TAP_STEP_PU

    def capacitor_q_var(self, node_voltage_pu: npt.ArrayLike | float = 1.0) -> FloatArray:
        """Reactive power each IED injects (capacitor banks that are in: ``q_rated * V^2``; others 0)."""
        v = np.broadcast_to(np.asarray(node_voltage_pu, dtype=np.float64), self._node_vn_v.shape)[self._node]
        on = (self._kind == IedKind.CAPACITOR) & self._closed
        return np.where(on, self._q_rated_var * v * v, 0.0)

    def node_q_var(self, node_voltage_pu: npt.ArrayLike | float = 1.0) -> FloatArray:
        """Capacitor injection summed per node, (n_nodes,), to add to the power flow's injections."""
        q = self.capacitor_q_var(node_voltage_pu)
        return np.asarray(np.bincount(self._node, weights=q, minlength=len(self._node_vn_v)), dtype=np.float64)

    def switch_closed(self, base: npt.ArrayLike) -> BoolArray:
        """The power flow's switch states: ``base`` (n_switches,) with the IEDs' states on their rows."""
        out = np.array(base, dtype=bool)
        mapped = self._switch_row >= 0
        rows = self._switch_row[mapped]
        if rows.size and rows.max() >= len(out):
            raise DeviceInputError(f"an IED operates switch row {rows.max()}, beyond the {len(out)} switches given")
        out[rows] = self._closed[mapped]
        return out

    def measure(
        self,
        *,
        node_voltage_pu: npt.ArrayLike,
        line_current_a: npt.ArrayLike,
        line_p_w: npt.ArrayLike | None = None,
        line_q_var: npt.ArrayLike | None = None,
    ) -> IedMeasurements:
        """Read every IED from one power-flow solution, stamped with each IED's clock now.

        An open switching device reads zero current and power whatever the arrays say
        (nothing flows through an open contact). Capacitor banks read their own Q and the
        current it draws; others read their line's values (NaN without a line).
        """
        v_node = np.asarray(node_voltage_pu, dtype=np.float64)
        i_line = np.asarray(line_current_a, dtype=np.float64)
        if v_node.shape != self._node_vn_v.shape:
            raise DeviceInputError(
                f"node_voltage_pu has one value per node {self._node_vn_v.shape}, got {v_node.shape}"
            )
        n_lines = i_line.shape[0]
        if self.n and self._line.max() >= n_lines:
            raise DeviceInputError(f"an IED measures line {self._line.max()}, beyond the {n_lines} lines given")
        has_line = self._line >= 0
        line = np.where(has_line, self._line, 0)

        def per_line(values: npt.ArrayLike | None) -> FloatArray:
            if values is None:
                return np.full(self.n, np.nan)
            a = np.asarray(values, dtype=np.float64)
            if a.shape != (n_lines,):
                raise DeviceInputError(f"line arrays have one value per line ({n_lines}), got {a.shape}")
            return np.where(has_line, a[line], np.nan) if n_lines else np.full(self.n, np.nan)

        v_pu = v_node[self._node]
        voltage_v = v_pu * self._node_vn_v[self._node]
        current = per_line(i_line)
        p, q = per_line(line_p_w), per_line(line_q_var)
        cap = self._kind == IedKind.CAPACITOR
        q_cap = self.capacitor_q_var(v_node)
        with np.errstate(divide="ignore", invalid="ignore"):
            i_cap = np.where(voltage_v > 0, q_cap / (_SQRT3 * voltage_v), 0.0)
        current = np.where(cap, i_cap, current)
        p = np.where(cap, 0.0, p)
        q = np.where(cap, q_cap, q)
        open_switch = np.isin(self._kind, np.array(_SWITCHING, dtype=np.int8)) & ~self._closed
        current, p, q = (np.where(open_switch, 0.0, x) for x in (current, p, q))
        state = np.where(self._kind == IedKind.REGULATOR, self._tap, self._closed.astype(np.int16)).astype(np.int16)
        return IedMeasurements(
            ied=np.arange(self.n, dtype=np.intp),
            at_us=self.ied_time_us(),
            kind=self._kind.copy(),
            state=state,
            current_a=current,
            voltage_v=voltage_v,
            voltage_pu=v_pu,
            p_w=p,
            q_var=q,
        )

    def drain_events(self) -> IedEvents:
        """State changes since the last call, in the order they were recorded, and forget them."""
        logs, self._events = self._events, []
        if not logs:
            return IedEvents(
                np.zeros(0, dtype=np.intp),
                np.zeros(0, dtype=np.int64),
                np.zeros(0, dtype=np.int8),
                np.zeros(0, dtype=np.int16),
                np.zeros(0, dtype=np.int8),
            )
        return IedEvents(
            ied=np.concatenate([e.ied for e in logs]),
            at_us=np.concatenate([e.at_us for e in logs]),
            kind=np.concatenate([e.kind for e in logs]),
            value=np.concatenate([e.value for e in logs]),
            cause=np.concatenate([e.cause for e in logs]),
        )
