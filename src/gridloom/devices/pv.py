"""Photovoltaic inverters as a fleet: IEEE 1547-2018 volt-var and volt-watt, vectorised.

Sign convention (generator view, as pandapower's ``sgen``): ``p_w > 0`` is active power
injected into the grid; ``q_var > 0`` is reactive power injected (the inverter behaves
like a capacitor and raises the local voltage); ``q_var < 0`` is absorbed (inductive,
lowers the voltage).

Default curves, IEEE Std 1547-2018:

* Volt-var, Category B defaults (Table 8), Q in per unit of the inverter's *rated
  apparent power* (VA), V in per unit of nominal voltage:

  ====== ======= ==========================
  point  V (pu)  Q (pu of rated VA)
  ====== ======= ==========================
  V1/Q1  0.92    +0.44  (injection)
  V2/Q2  0.98     0
  V3/Q3  1.02     0
  V4/Q4  1.08    -0.44  (absorption)
  ====== ======= ==========================

  Linear between points, flat outside V1..V4. Reactive power has priority: Q is served
  first (clipped to the VA rating) and active power gets what is left of the VA circle,
  ``P <= sqrt(VA^2 - Q^2)``.

* Volt-watt (Table 10): P limited to ``P1 = 100 %`` of rated active power at and below
  ``V1 = 1.06 pu``, falling linearly to ``P2`` at ``V2 = 1.10 pu`` and flat above. The
  standard gives ``P2 = min(0.2 Prated, Pmin)`` for DER that can only generate, and
  ``P'2 = 0`` for DER that can also absorb active power (storage). The fleet uses
  ``P2 = 0.2`` for generation-only units and ``0.0`` for units flagged ``can_absorb_p``;
  both are per-unit settings a command can change.

What is not modelled: open-loop response times (Cat B volt-var 5 s, volt-watt 10 s are
far below a 15-minute step), the autonomous V_ref adjustment (off by default in the
standard), ride-through and trip curves other than cessation at zero voltage
(a de-energised inverter must cease to energise: anti-islanding, 1547-2018 clause 8.1).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from gridloom.devices.selection import readonly, select_units
from gridloom.errors import DeviceConfigError, DeviceInputError

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
IndexArray = npt.NDArray[np.intp]

__all__ = [
    "PvFleet",
    "VoltVarCurve",
    "VoltWattCurve",
    "volt_var_q_pu",
    "volt_watt_p_pu",
]


@dataclass(frozen=True)
class VoltVarCurve:
    """Four-point volt-var curve; Q in pu of rated VA (+ = inject). Defaults: 1547-2018 Cat B."""

    v1_pu: float = 0.92
    q1_pu: float = 0.44
    v2_pu: float = 0.98
    q2_pu: float = 0.0
    v3_pu: float = 1.02
    q3_pu: float = 0.0
    v4_pu: float = 1.08
    q4_pu: float = -0.44

    def __post_init__(self) -> None:
        v = (self.v1_pu, self.v2_pu, self.v3_pu, self.v4_pu)
        if not all(a < b for a, b in itertools.pairwise(v)):
            raise DeviceConfigError(f"volt-var voltages must increase strictly, got {v}")
        q = (self.q1_pu, self.q2_pu, self.q3_pu, self.q4_pu)
        if any(abs(x) > 1.0 for x in q):
            raise DeviceConfigError(f"volt-var Q points are in pu of rated VA, within [-1, 1], got {q}")

    @property
    def v_pu(self) -> tuple[float, float, float, float]:
        return (self.v1_pu, self.v2_pu, self.v3_pu, self.v4_pu)

    @property
    def q_pu(self) -> tuple[float, float, float, float]:
        return (self.q1_pu, self.q2_pu, self.q3_pu, self.q4_pu)


@dataclass(frozen=True)
class VoltWattCurve:
    """Two-point volt-watt curve; P limit in pu of rated active power. Defaults: 1547-2018 Table 10.

    ``p2_pu`` applies to generation-only units, ``p2_absorbing_pu`` to units that can also
    absorb active power (``P'2`` in the standard).
    """

    v1_pu: float = 1.06
    v2_pu: float = 1.10
    p1_pu: float = 1.0
    p2_pu: float = 0.2
    p2_absorbing_pu: float = 0.0

    def __post_init__(self) -> None:
        if not self.v1_pu < self.v2_pu:
            raise DeviceConfigError(f"volt-watt needs V1 < V2, got {self.v1_pu} and {self.v2_pu}")
        for name in ("p1_pu", "p2_pu", "p2_absorbing_pu"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise DeviceConfigError(f"volt-watt {name} is a fraction of rated power in [0, 1], got {value}")
        if self.p2_pu > self.p1_pu or self.p2_absorbing_pu > self.p1_pu:
            raise DeviceConfigError("volt-watt limits must not rise with voltage (P2 <= P1)")


def _shared(xs: FloatArray, ys: FloatArray) -> bool:
    """Whether every unit has the same curve (checked when curves change, not per dispatch)."""
    return len(xs) > 0 and bool(np.all(xs == xs[0])) and bool(np.all(ys == ys[0]))


def _piecewise(x: FloatArray, xs: FloatArray, ys: FloatArray, *, shared: bool) -> FloatArray:
    """Piecewise-linear y(x) with per-unit breakpoints ``xs``/``ys`` of shape (n, k), flat outside.

    ``x`` has shape (..., n). When every unit has the same curve (``shared``, the usual
    case) this is one ``np.interp``; otherwise a loop over the k-1 segments, never over units.
    """
    if shared:
        return np.asarray(np.interp(x, xs[0], ys[0]), dtype=np.float64)
    y = np.broadcast_to(ys[:, 0], x.shape).copy()
    for i in range(xs.shape[1] - 1):
        x0, x1, y0, y1 = xs[:, i], xs[:, i + 1], ys[:, i], ys[:, i + 1]
        inside = x > x0
        frac = np.clip((x - x0) / (x1 - x0), 0.0, 1.0)
        y = np.where(inside, y0 + frac * (y1 - y0), y)
    return y


def volt_var_q_pu(voltage_pu: npt.ArrayLike, curve: VoltVarCurve = VoltVarCurve()) -> FloatArray:
    """Reactive power the volt-var curve asks for, in pu of rated VA (+ = inject)."""
    v = np.asarray(voltage_pu, dtype=np.float64)
    return np.interp(v, curve.v_pu, curve.q_pu)


def volt_watt_p_pu(
    voltage_pu: npt.ArrayLike, curve: VoltWattCurve = VoltWattCurve(), *, can_absorb: bool = False
) -> FloatArray:
    """Active power limit of the volt-watt curve, in pu of rated active power."""
    v = np.asarray(voltage_pu, dtype=np.float64)
    p2 = curve.p2_absorbing_pu if can_absorb else curve.p2_pu
    return np.interp(v, (curve.v1_pu, curve.v2_pu), (curve.p1_pu, p2))


def _float_array(name: str, value: npt.ArrayLike, n: int) -> FloatArray:
    array = np.array(np.broadcast_to(np.asarray(value, dtype=np.float64), (n,)))
    if not np.all(np.isfinite(array)):
        raise DeviceConfigError(f"{name} must be finite")
    return array


class PvFleet:
    """``n`` PV inverters with per-unit ratings, curves and modes, all as arrays.

    Ratings: ``rated_w`` (active power rating, also the volt-watt base) and
    ``inverter_va`` (apparent power rating, the volt-var base and the VA limit; defaults
    to ``rated_w``). Settings change only through the ``set_*`` commands (a DERMS or
    aggregator sending IEEE 2030.5 / SunSpec settings); :meth:`dispatch` is pure given
    those settings.
    """

    def __init__(
        self,
        rated_w: npt.ArrayLike,
        *,
        inverter_va: npt.ArrayLike | None = None,
        can_absorb_p: npt.ArrayLike | None = None,
        volt_var: VoltVarCurve = VoltVarCurve(),
        volt_watt: VoltWattCurve = VoltWattCurve(),
        volt_var_enabled: bool = True,
        volt_watt_enabled: bool = True,
    ) -> None:
        rated = np.asarray(rated_w, dtype=np.float64)
        if rated.ndim != 1:
            raise DeviceConfigError(f"rated_w is one value per unit (1-D), got shape {rated.shape}")
        n = rated.shape[0]
        self.n = n
        self._rated_w = _float_array("rated_w", rated, n)
        self._inverter_va = _float_array("inverter_va", rated if inverter_va is None else inverter_va, n)
        if np.any(self._rated_w < 0) or np.any(self._inverter_va < 0):
            raise DeviceConfigError("ratings must not be negative")
        absorb = np.zeros(n, dtype=bool) if can_absorb_p is None else np.asarray(can_absorb_p, dtype=bool)
        self._can_absorb_p: BoolArray = np.array(np.broadcast_to(absorb, (n,)))
        self._vv_v = np.empty((n, 4))
        self._vv_q = np.empty((n, 4))
        self._vw_v = np.empty((n, 2))
        self._vw_p = np.empty((n, 2))
        everyone = np.arange(n)
        self.set_volt_var(everyone, volt_var)
        self.set_volt_watt(everyone, volt_watt)
        self._volt_var_enabled: BoolArray = np.full(n, volt_var_enabled)
        self._volt_watt_enabled: BoolArray = np.full(n, volt_watt_enabled)
        self._p_limit_w: FloatArray = np.full(n, np.inf)  # 1547 clause 4.6.2 "limit active power"

    # -- read-only settings ----------------------------------------------------------

    @property
    def rated_w(self) -> FloatArray:
        return readonly(self._rated_w)

    @property
    def inverter_va(self) -> FloatArray:
        return readonly(self._inverter_va)

    @property
    def can_absorb_p(self) -> BoolArray:
        return readonly(self._can_absorb_p)

    @property
    def volt_var_enabled(self) -> BoolArray:
        return readonly(self._volt_var_enabled)

    @property
    def volt_watt_enabled(self) -> BoolArray:
        return readonly(self._volt_watt_enabled)

    @property
    def p_limit_w(self) -> FloatArray:
        """Commanded active power cap per unit (inf where none)."""
        return readonly(self._p_limit_w)

    # -- commands ---------------------------------------------------------------------

    def _units(self, units: npt.ArrayLike) -> IndexArray:
        return select_units(units, self.n, "PV unit")

    def set_volt_var(self, units: npt.ArrayLike, curve: VoltVarCurve) -> None:
        idx = self._units(units)
        self._vv_v[idx] = curve.v_pu
        self._vv_q[idx] = curve.q_pu
        self._vv_shared = _shared(self._vv_v, self._vv_q)

    def set_volt_watt(self, units: npt.ArrayLike, curve: VoltWattCurve) -> None:
        idx = self._units(units)
        self._vw_v[idx] = (curve.v1_pu, curve.v2_pu)
        self._vw_p[idx, 0] = curve.p1_pu
        self._vw_p[idx, 1] = np.where(self._can_absorb_p[idx], curve.p2_absorbing_pu, curve.p2_pu)
        self._vw_shared = _shared(self._vw_v, self._vw_p)

    def set_modes(self, units: npt.ArrayLike, *, volt_var: bool | None = None, volt_watt: bool | None = None) -> None:
        """Enable or disable the volt-var / volt-watt functions (None leaves a mode as it is)."""
        idx = self._units(units)
        if volt_var is not None:
            self._volt_var_enabled[idx] = volt_var
        if volt_watt is not None:
            self._volt_watt_enabled[idx] = volt_watt

    def set_p_limit(self, units: npt.ArrayLike, limit_w: npt.ArrayLike) -> None:
        """Cap active power (curtailment command); ``inf`` removes the cap."""
        idx = self._units(units)
        limit = np.broadcast_to(np.asarray(limit_w, dtype=np.float64), idx.shape)
        if np.any(np.isnan(limit)) or np.any(limit < 0):
            raise DeviceInputError("an active power limit is a non-negative number of W (inf for none)")
        self._p_limit_w[idx] = limit

    # -- physics ----------------------------------------------------------------------

    def q_request_var(self, voltage_pu: npt.ArrayLike) -> FloatArray:
        """Reactive power each unit's volt-var curve asks for (before the VA limit), (..., n)."""
        v = np.asarray(voltage_pu, dtype=np.float64)
        q = _piecewise(v, self._vv_v, self._vv_q, shared=self._vv_shared) * self._inverter_va
        return np.where(self._volt_var_enabled, q, 0.0)

    def p_limit_at(self, voltage_pu: npt.ArrayLike) -> FloatArray:
        """Active power cap from volt-watt and the curtailment command, (..., n)."""
        v = np.asarray(voltage_pu, dtype=np.float64)
        vw = np.where(
            self._volt_watt_enabled,
            _piecewise(v, self._vw_v, self._vw_p, shared=self._vw_shared) * self._rated_w,
            np.inf,
        )
        return np.minimum(vw, self._p_limit_w)

    def dispatch(self, *, available_p_w: npt.ArrayLike, voltage_pu: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
        """Active and reactive output for the available PV power and the terminal voltage.

        ``available_p_w`` and ``voltage_pu`` have shape ``(n,)`` or ``(..., n)`` (e.g. steps
        by units); the result has the broadcast shape. Returns ``(p_w, q_var)`` with
        ``p_w >= 0`` injected and ``q_var > 0`` injected (capacitive). ``p_w^2 + q_var^2``
        never exceeds ``inverter_va^2``; a unit at zero voltage (de-energised) outputs
        nothing.
        """
        v = np.asarray(voltage_pu, dtype=np.float64)
        avail = np.asarray(available_p_w, dtype=np.float64)
        if not (np.all(np.isfinite(v)) and np.all(np.isfinite(avail))):
            raise DeviceInputError("voltage_pu and available_p_w must be finite")
        va = self._inverter_va
        q = np.clip(self.q_request_var(v), -va, va)  # reactive priority, within the rating
        p_room = np.sqrt(np.maximum(va * va - q * q, 0.0))
        p = np.minimum(np.minimum(np.maximum(avail, 0.0), self._rated_w), np.minimum(self.p_limit_at(v), p_room))
        energised = v > 0.0
        return np.where(energised, p, 0.0), np.where(energised, q, 0.0)
