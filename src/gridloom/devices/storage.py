"""Battery storage as a fleet: home batteries and utility-scale units, vectorised.

The seed's ES-16a (utility operations -> storage: charging/discharging decisions) arrives
as :meth:`StorageFleet.command`; ES-16b (storage -> utility operations: kW and kVAR
output, capability at a point in time, condition of the device) is
:meth:`StorageFleet.capability`. Commands are the only way setpoints change; the fleet
holds a setpoint until the next command, and delivers less only when the state of charge
or the ratings do not allow it (as a real inverter does).

Sign convention (generator view, like :mod:`gridloom.devices.pv`): ``p_w > 0`` discharges
into the grid, ``p_w < 0`` charges from it; ``q_var > 0`` injects reactive power.

Energy model, per unit:

* usable capacity ``capacity_wh * health``; the state of charge stays within
  ``[soc_min_frac, soc_max_frac]`` of it, always (the battery management system
  holds that band: power is reduced at the edges, self-discharge stops at the floor);
* round-trip efficiency split evenly: ``eta = sqrt(round_trip_efficiency)`` on the way
  in and on the way out (AC energy ``E`` charged stores ``E * eta``; stored energy ``E``
  discharged delivers ``E * eta``);
* self-discharge as a fraction of the stored energy per day;
* state of health falls with cell throughput: ``fade_per_cycle`` per full equivalent
  cycle (charge plus discharge of the nameplate capacity), e.g. 4e-5 = 20 % after 5,000
  cycles;
* active power has priority in the VA rating: ``|q_var| <= sqrt(inverter_va^2 - p_w^2)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypedDict

import numpy as np
import numpy.typing as npt

from gridloom.devices.selection import readonly, select_units
from gridloom.errors import DeviceConfigError, DeviceInputError

FloatArray = npt.NDArray[np.float64]
IndexArray = npt.NDArray[np.intp]

__all__ = ["HOME_BATTERY", "UTILITY_BATTERY", "StorageCapability", "StorageFleet", "StorageSpec"]


@dataclass(frozen=True)
class StorageSpec:
    """Nameplate and behaviour of one kind of battery."""

    capacity_wh: float
    max_charge_w: float
    max_discharge_w: float
    inverter_va: float
    soc_min_frac: float = 0.05
    soc_max_frac: float = 0.95
    round_trip_efficiency: float = 0.90
    self_discharge_per_day: float = 0.001
    fade_per_cycle: float = 4e-5


# A home battery of the Powerwall class: 13.5 kWh, 5 kW continuous, about 90 % round trip.
HOME_BATTERY = StorageSpec(capacity_wh=13_500.0, max_charge_w=5_000.0, max_discharge_w=5_000.0, inverter_va=5_800.0)
# A utility battery at a substation: 1 MW / 4 MWh, 85 % round trip (auxiliaries included).
UTILITY_BATTERY = StorageSpec(
    capacity_wh=4_000_000.0,
    max_charge_w=1_000_000.0,
    max_discharge_w=1_000_000.0,
    inverter_va=1_100_000.0,
    soc_min_frac=0.10,
    soc_max_frac=0.90,
    round_trip_efficiency=0.85,
    self_discharge_per_day=0.0005,
)


class StorageCapability(TypedDict):
    """ES-16b: what each unit can do now, arrays of shape (n,)."""

    p_w: FloatArray  # actual output over the last step (+ discharge)
    q_var: FloatArray  # actual reactive output over the last step (+ inject)
    charge_w: FloatArray  # charging power it can hold over the horizon
    discharge_w: FloatArray  # discharging power it can hold over the horizon
    q_var_max: FloatArray  # reactive power available at the present active output
    energy_available_wh: FloatArray  # AC energy it can still deliver (above the floor)
    energy_headroom_wh: FloatArray  # AC energy it can still absorb (below the ceiling)
    soc_frac: FloatArray  # state of charge as a fraction of usable capacity
    health: FloatArray  # state of health, 1.0 new


class StorageFleet:
    """``n`` batteries with per-unit ratings, state of charge and health, all as arrays."""

    def __init__(
        self,
        *,
        capacity_wh: npt.ArrayLike,
        max_charge_w: npt.ArrayLike,
        max_discharge_w: npt.ArrayLike,
        inverter_va: npt.ArrayLike,
        soc_wh: npt.ArrayLike,
        soc_min_frac: npt.ArrayLike = 0.05,
        soc_max_frac: npt.ArrayLike = 0.95,
        round_trip_efficiency: npt.ArrayLike = 0.90,
        self_discharge_per_day: npt.ArrayLike = 0.001,
        fade_per_cycle: npt.ArrayLike = 4e-5,
        health: npt.ArrayLike = 1.0,
    ) -> None:
        cap = np.asarray(capacity_wh, dtype=np.float64)
        if cap.ndim != 1:
            raise DeviceConfigError(f"capacity_wh is one value per unit (1-D), got shape {cap.shape}")
        n = cap.shape[0]
        self.n = n

        def arr(name: str, value: npt.ArrayLike) -> FloatArray:
            a = np.array(np.broadcast_to(np.asarray(value, dtype=np.float64), (n,)))
            if not np.all(np.isfinite(a)):
                raise DeviceConfigError(f"storage {name} must be finite")
            return a

        self._capacity_wh = arr("capacity_wh", cap)
        self._max_charge_w = arr("max_charge_w", max_charge_w)
        self._max_discharge_w = arr("max_discharge_w", max_discharge_w)
        self._inverter_va = arr("inverter_va", inverter_va)
        self._soc_min_frac = arr("soc_min_frac", soc_min_frac)
        self._soc_max_frac = arr("soc_max_frac", soc_max_frac)
        rte = arr("round_trip_efficiency", round_trip_efficiency)
        self._self_discharge_per_day = arr("self_discharge_per_day", self_discharge_per_day)
        self._fade_per_cycle = arr("fade_per_cycle", fade_per_cycle)
        self._health = arr("health", health)
        if np.any(self._capacity_wh <= 0):
            raise DeviceConfigError("capacity_wh must be positive")
        if np.any(self._max_charge_w < 0) or np.any(self._max_discharge_w < 0) or np.any(self._inverter_va < 0):
            raise DeviceConfigError("power ratings must not be negative")
        if (
            np.any(self._soc_min_frac < 0)
            or np.any(self._soc_max_frac > 1)
            or np.any(self._soc_min_frac >= self._soc_max_frac)
        ):
            raise DeviceConfigError("need 0 <= soc_min_frac < soc_max_frac <= 1")
        if np.any(rte <= 0) or np.any(rte > 1):
            raise DeviceConfigError("round_trip_efficiency must be in (0, 1]")
        if np.any(self._self_discharge_per_day < 0) or np.any(self._self_discharge_per_day >= 1):
            raise DeviceConfigError("self_discharge_per_day must be in [0, 1)")
        if np.any(self._fade_per_cycle < 0) or np.any(self._health <= 0) or np.any(self._health > 1):
            raise DeviceConfigError("need fade_per_cycle >= 0 and health in (0, 1]")
        self._eta = np.sqrt(rte)
        soc = arr("soc_wh", soc_wh)
        lo, hi = self.soc_min_wh, self.soc_max_wh
        if np.any(soc < lo) or np.any(soc > hi):
            raise DeviceConfigError("initial soc_wh must lie within [soc_min_frac, soc_max_frac] of usable capacity")
        self._soc_wh = soc
        self._setpoint_w = np.zeros(n)
        self._setpoint_var = np.zeros(n)
        self._p_w = np.zeros(n)
        self._q_var = np.zeros(n)
        self._charged_wh = np.zeros(n)  # AC energy registers, like a meter's
        self._discharged_wh = np.zeros(n)
        self._throughput_wh = np.zeros(n)  # cell-side |energy| moved, drives fade

    @classmethod
    def from_specs(
        cls,
        fleet: Sequence[tuple[StorageSpec, int]],
        *,
        rng: np.random.Generator,
        soc_frac: tuple[float, float] = (0.3, 0.9),
    ) -> StorageFleet:
        """A fleet of ``count`` units of each spec, in order; initial state of charge drawn
        uniformly from ``soc_frac`` of usable capacity (clipped to each spec's band)."""
        counts = np.array([count for _, count in fleet], dtype=np.intp)
        if counts.size == 0 or counts.sum() <= 0 or np.any(counts < 0):
            raise DeviceConfigError("a storage fleet needs at least one unit and no negative counts")

        def col(field: str) -> FloatArray:
            return np.repeat(np.array([getattr(spec, field) for spec, _ in fleet], dtype=np.float64), counts)

        lo, hi = col("soc_min_frac"), col("soc_max_frac")
        frac = np.clip(rng.uniform(soc_frac[0], soc_frac[1], size=int(counts.sum())), lo, hi)
        return cls(
            capacity_wh=col("capacity_wh"),
            max_charge_w=col("max_charge_w"),
            max_discharge_w=col("max_discharge_w"),
            inverter_va=col("inverter_va"),
            soc_wh=frac * col("capacity_wh"),
            soc_min_frac=lo,
            soc_max_frac=hi,
            round_trip_efficiency=col("round_trip_efficiency"),
            self_discharge_per_day=col("self_discharge_per_day"),
            fade_per_cycle=col("fade_per_cycle"),
        )

    # -- read-only state --------------------------------------------------------------

    @property
    def capacity_wh(self) -> FloatArray:
        return readonly(self._capacity_wh)

    @property
    def max_charge_w(self) -> FloatArray:
        return readonly(self._max_charge_w)

    @property
    def max_discharge_w(self) -> FloatArray:
        return readonly(self._max_discharge_w)

    @property
    def inverter_va(self) -> FloatArray:
        return readonly(self._inverter_va)

    @property
    def soc_wh(self) -> FloatArray:
        return readonly(self._soc_wh)

    @property
    def health(self) -> FloatArray:
        return readonly(self._health)

    @property
    def setpoint_w(self) -> FloatArray:
        return readonly(self._setpoint_w)

    @property
    def setpoint_var(self) -> FloatArray:
        return readonly(self._setpoint_var)

    @property
    def p_w(self) -> FloatArray:
        """Active output over the last step (+ discharge)."""
        return readonly(self._p_w)

    @property
    def q_var(self) -> FloatArray:
        """Reactive output over the last step (+ inject)."""
        return readonly(self._q_var)

    @property
    def energy_charged_wh(self) -> FloatArray:
        return readonly(self._charged_wh)

    @property
    def energy_discharged_wh(self) -> FloatArray:
        return readonly(self._discharged_wh)

    @property
    def usable_capacity_wh(self) -> FloatArray:
        return self._capacity_wh * self._health

    @property
    def soc_min_wh(self) -> FloatArray:
        return self._soc_min_frac * self.usable_capacity_wh

    @property
    def soc_max_wh(self) -> FloatArray:
        return self._soc_max_frac * self.usable_capacity_wh

    # -- ES-16a: commands -------------------------------------------------------------

    def _units(self, units: npt.ArrayLike | None) -> IndexArray | slice:
        return slice(None) if units is None else select_units(units, self.n, "battery")

    def command(
        self, setpoint_w: npt.ArrayLike, *, q_var: npt.ArrayLike | None = None, units: npt.ArrayLike | None = None
    ) -> FloatArray:
        """Set active (and optionally reactive) power setpoints; returns the accepted active setpoints.

        ``units`` selects the units (indices or mask; None = all, then ``setpoint_w`` is
        scalar or ``(n,)``). Positive discharges. Setpoints are clipped to the charge /
        discharge and VA ratings; NaN is refused.
        """
        sel = self._units(units)
        count = self.n if isinstance(sel, slice) else len(sel)
        p = np.broadcast_to(np.asarray(setpoint_w, dtype=np.float64), (count,))
        if np.any(np.isnan(p)):
            raise DeviceInputError("a storage setpoint must be a number of W, not NaN")
        accepted = np.clip(p, -self._max_charge_w[sel], self._max_discharge_w[sel])
        self._setpoint_w[sel] = accepted
        if q_var is not None:
            q = np.broadcast_to(np.asarray(q_var, dtype=np.float64), (count,))
            if np.any(np.isnan(q)):
                raise DeviceInputError("a reactive setpoint must be a number of var, not NaN")
            va = self._inverter_va[sel]
            self._setpoint_var[sel] = np.clip(q, -va, va)
        return accepted.copy()

    # -- physics ----------------------------------------------------------------------

    def step(self, dt_s: float) -> FloatArray:
        """Run ``dt_s`` seconds at the present setpoints; returns average active power (+ discharge).

        The reactive output of the same step is :attr:`q_var`.
        """
        if not dt_s > 0:
            raise DeviceInputError(f"a step lasts a positive number of seconds, not {dt_s}")
        soc = self._soc_wh
        lo, hi = self.soc_min_wh, self.soc_max_wh
        # Self-discharge first; the BMS floor holds it at the minimum.
        leak = soc * (1.0 - (1.0 - self._self_discharge_per_day) ** (dt_s / 86_400.0))
        soc = np.maximum(soc - leak, np.minimum(soc, lo))
        eta = self._eta
        hours = dt_s / 3_600.0
        can_discharge_w = np.maximum(soc - lo, 0.0) * eta / hours
        can_charge_w = np.maximum(hi - soc, 0.0) / (eta * hours)
        p = np.clip(
            self._setpoint_w,
            -np.minimum(self._max_charge_w, can_charge_w),
            np.minimum(self._max_discharge_w, can_discharge_w),
        )
        ac_wh = p * hours
        cell_wh = np.where(p > 0, ac_wh / eta, ac_wh * eta)  # energy leaving the cells (+) or entering (-)
        soc = soc - cell_wh
        moved = np.abs(cell_wh)
        self._throughput_wh += moved
        self._health = np.maximum(self._health - self._fade_per_cycle * moved / (2.0 * self._capacity_wh), 1e-6)
        # Capacity fade shrinks the band; rounding must not step outside it either.
        self._soc_wh = np.clip(soc, self.soc_min_wh, self.soc_max_wh)
        self._charged_wh += np.maximum(-ac_wh, 0.0)
        self._discharged_wh += np.maximum(ac_wh, 0.0)
        q_room = np.sqrt(np.maximum(self._inverter_va**2 - p * p, 0.0))
        self._p_w = p
        self._q_var = np.clip(self._setpoint_var, -q_room, q_room)
        return p.copy()

    # -- ES-16b: capability -----------------------------------------------------------

    def capability(self, *, horizon_s: float = 900.0) -> StorageCapability:
        """What each unit can do now; charge/discharge power is what it can hold for ``horizon_s``."""
        if not horizon_s > 0:
            raise DeviceInputError(f"the capability horizon is a positive number of seconds, not {horizon_s}")
        hours = horizon_s / 3_600.0
        usable = self.usable_capacity_wh
        available = np.maximum(self._soc_wh - self.soc_min_wh, 0.0) * self._eta
        headroom = np.maximum(self.soc_max_wh - self._soc_wh, 0.0) / self._eta
        return StorageCapability(
            p_w=self._p_w.copy(),
            q_var=self._q_var.copy(),
            charge_w=np.minimum(self._max_charge_w, headroom / hours),
            discharge_w=np.minimum(self._max_discharge_w, available / hours),
            q_var_max=np.sqrt(np.maximum(self._inverter_va**2 - self._p_w**2, 0.0)),
            energy_available_wh=available,
            energy_headroom_wh=headroom,
            soc_frac=self._soc_wh / usable,
            health=self._health.copy(),
        )
