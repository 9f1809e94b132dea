"""Customer-side flexible loads as one vectorised fleet: 100,000 homes respond in one step.

Each residential site may have any of: an air conditioner (a first-order thermal model of the
house with a comfort limit), an electric water heater (a tank model with a minimum temperature),
a pool pump (daily run hours that may be deferred), a PEV (energy needed by a departure time), a
home battery and a PV array that may be curtailed. The site's customer EMS (DGM-30, DR-17..19)
acts on the signals the site receives — a curtailment event, an OpenADR simple level, a price —
within the customer's preferences:

* **HVAC** raises its cooling setpoint by ``level_depth * hvac_offset_c`` but never above
  ``comfort_max_c``; the thermal model is exact over the step (``T' = Te + (T - Te) e^(-dt/RC)``,
  ``Te = T_out + R (gains - COP P)``), the controller asks for the power that reaches its target at
  the end of the step, clipped to the unit's rating.
* **Water heater** (hysteresis thermostat) keeps its element off while responding unless the
  tank falls below ``water_min_c``.
* **Pool pump** defers its run while responding and catches up later the same local day.
* **PEV** pauses while responding only if it can still deliver its energy by departure.
* **Home battery** covers the house load (never exporting) while responding, otherwise stores
  PV surplus.
* **PV** is curtailed so the site's export stays within ``export_limit_w`` (and to zero export
  when the price is negative).

A site responds to an event unless its customer opted out: :meth:`FlexFleet.start_event` draws the
opt-outs once per event from each customer's ``opt_out_rate``; price-responsive customers respond
when the price reaches their ``price_threshold_per_kwh``.

Sign convention: ``load_w > 0`` imports from the grid (consumer view, like a meter's delivered
energy); PV and battery discharge reduce it. Heating is not modelled (a cooling season).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, fields

import numpy as np
import numpy.typing as npt

from gridloom.devices.selection import readonly, select_units
from gridloom.errors import DeviceConfigError, DeviceInputError

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.int64]

__all__ = ["LEVEL_DEPTH", "FlexFleet", "FlexShares", "FlexSites", "FlexStep"]

#: How deep a site responds at each OpenADR simple level (0 normal, 1 moderate, 2 high, 3 special).
LEVEL_DEPTH = np.array([0.0, 0.5, 1.0, 1.0])
_WATER_J_PER_L_C = 4186.0
_EV_EFFICIENCY = 0.92
_DAY_S = 86_400.0


@dataclass(frozen=True)
class FlexShares:
    """Which share of homes own each appliance, and the customers' habits (for :meth:`FlexFleet.synthetic`)."""

    hvac: float = 0.7
    water_heater: float = 0.45
    pool: float = 0.12
    ev: float = 0.2
    battery: float = 0.1
    pv: float = 0.3
    opt_out_rate_mean: float = 0.1  # the mean probability a customer opts out of an event
    price_responsive: float = 0.5  # share of customers who respond to a high price without an event

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not 0.0 <= value <= 1.0:
                raise DeviceConfigError(f"FlexShares.{f.name} must lie in [0, 1], got {value}")


@dataclass(frozen=True)
class FlexSites:
    """The fleet's nameplates and customer preferences, arrays of shape (n,). Zero power = no such appliance."""

    hvac_rated_w: FloatArray  # electric input at full cooling
    hvac_cop: FloatArray
    house_r_c_per_w: FloatArray  # thermal resistance house <-> outdoors
    house_c_j_per_c: FloatArray  # thermal capacitance of the house
    internal_gain_w: FloatArray  # people, appliances, sun through the windows
    setpoint_c: FloatArray
    hvac_offset_c: FloatArray  # how far the customer lets the setpoint rise in an event
    comfort_max_c: FloatArray  # never above this, event or not
    water_element_w: FloatArray
    water_tank_l: FloatArray
    water_setpoint_c: FloatArray
    water_deadband_c: FloatArray
    water_min_c: FloatArray  # the element comes back on below this, even in an event
    water_ua_w_per_c: FloatArray
    water_draw_w: FloatArray  # mean hot-water draw (thermal), shaped by the time of day
    pool_w: FloatArray
    pool_hours: FloatArray  # run hours per local day
    pool_start_h: FloatArray  # local hour the pump normally starts
    ev_charger_w: FloatArray
    ev_daily_wh: FloatArray  # energy to put into the car each evening
    ev_arrival_h: FloatArray
    ev_departure_h: FloatArray
    battery_wh: FloatArray
    battery_w: FloatArray
    battery_reserve_frac: FloatArray
    pv_peak_w: FloatArray
    opt_out_rate: FloatArray  # probability the customer opts out of an event (drawn once per event)
    price_threshold_per_kwh: FloatArray  # respond to prices at or above this (inf: price-insensitive)

    def __post_init__(self) -> None:
        n = self.hvac_rated_w.shape[0]
        for f in fields(self):
            value = np.asarray(getattr(self, f.name), dtype=np.float64)
            if value.shape != (n,):
                raise DeviceConfigError(f"FlexSites.{f.name} has shape {value.shape}, expected ({n},)")
            if np.isnan(value).any():
                raise DeviceConfigError(f"FlexSites.{f.name} holds NaN at site {int(np.argmax(np.isnan(value)))}")
            object.__setattr__(self, f.name, readonly(value))
        if np.any(self.opt_out_rate < 0) or np.any(self.opt_out_rate > 1):
            raise DeviceConfigError("FlexSites.opt_out_rate must lie in [0, 1]")
        if np.any(self.comfort_max_c < self.setpoint_c):
            site = int(np.argmax(self.comfort_max_c < self.setpoint_c))
            raise DeviceConfigError(f"FlexSites.comfort_max_c is below setpoint_c at site {site}")
        for name in ("house_r_c_per_w", "house_c_j_per_c", "hvac_cop", "water_tank_l"):
            if np.any(getattr(self, name) <= 0):
                raise DeviceConfigError(f"FlexSites.{name} must be positive")

    def __len__(self) -> int:
        return int(self.hvac_rated_w.shape[0])


@dataclass(frozen=True)
class FlexStep:
    """What each site drew over one step (W, averages over the step), shape (n,)."""

    load_w: FloatArray  # net at the meter: + import
    base_w: FloatArray
    hvac_w: FloatArray
    water_w: FloatArray
    pool_w: FloatArray
    ev_w: FloatArray
    battery_w: FloatArray  # + charging, - discharging
    pv_w: FloatArray  # produced (after curtailment)
    pv_curtailed_w: FloatArray
    responding: BoolArray  # the site acted on a signal during the step
    indoor_c: FloatArray  # at the end of the step

    def energy_wh(self, dt_s: float) -> FloatArray:
        """Imported energy over the step (exports count as zero delivered)."""
        return np.maximum(self.load_w, 0.0) * (dt_s / 3600.0)

    def total_w(self) -> float:
        return float(self.load_w.sum())


def _hour_of_day(at: dt.datetime, utc_offset_h: float) -> float:
    if at.tzinfo is None or at.utcoffset() is None:
        raise DeviceInputError(f"at must be timezone-aware (UTC), got {at!r}")
    utc = at.astimezone(dt.UTC)
    return ((utc.hour + utc.minute / 60.0 + utc.second / 3600.0 + utc_offset_h) % 24.0 + 24.0) % 24.0


def _draw_profile(hour: float) -> float:
    """Hot-water draw relative to the daily mean: a morning and an evening peak (integrates to 1 over 24 h)."""
    morning = np.exp(-0.5 * ((hour - 7.5) / 1.2) ** 2)
    evening = np.exp(-0.5 * ((hour - 19.5) / 1.8) ** 2)
    raw = 0.25 + 1.6 * morning + 1.3 * evening
    mean = 0.25 + (1.6 * 1.2 + 1.3 * 1.8) * np.sqrt(2 * np.pi) / 24.0
    return float(raw / mean)


class FlexFleet:
    """Residential flexible loads of ``n`` sites; change state only through :meth:`step` and events."""

    def __init__(
        self, sites: FlexSites, *, utc_offset_h: float = 0.0, seed: int = 0, indoor_c: npt.ArrayLike | None = None
    ) -> None:
        n = len(sites)
        self.sites = sites
        self.utc_offset_h = float(utc_offset_h)
        self._rng = np.random.default_rng(seed)
        s = sites
        self._indoor_c = np.array(s.setpoint_c if indoor_c is None else np.broadcast_to(indoor_c, (n,)), np.float64)
        self._tank_c = np.array(s.water_setpoint_c, np.float64)
        self._water_on = np.zeros(n, bool)
        self._pool_run_s = np.zeros(n)
        self._ev_need_wh = np.zeros(n)
        self._ev_plugged = np.zeros(n, bool)
        self._soc_wh = np.array(s.battery_wh * 0.8, np.float64)
        self._opted_out = np.zeros(n, bool)
        self._in_event = np.zeros(n, bool)
        self._last_hour: float | None = None
        self.comfort_overrides = 0  # site-steps whose setpoint rise stopped at the comfort limit
        self.events_started = 0

    # ------------------------------------------------------------------ construction
    @classmethod
    def synthetic(
        cls, n: int, *, seed: int = 0, shares: FlexShares | None = None, utc_offset_h: float = 0.0
    ) -> FlexFleet:
        """A fleet of ``n`` typical homes with appliances drawn by ``shares`` (reproducible by ``seed``)."""
        if n <= 0:
            raise DeviceConfigError(f"a flexible-load fleet needs at least one site, got n={n}")
        sh = shares or FlexShares()
        rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(1)[0])

        def has(share: float) -> FloatArray:
            return (rng.random(n) < share).astype(np.float64)

        def uniform(lo: float, hi: float) -> FloatArray:
            return rng.uniform(lo, hi, n)

        setpoint = uniform(22.0, 25.0)
        opt = np.clip(rng.beta(2.0, 2.0 / max(sh.opt_out_rate_mean, 1e-6) - 2.0, n), 0.0, 1.0)
        threshold = np.where(rng.random(n) < sh.price_responsive, uniform(0.35, 0.8), np.inf)
        sites = FlexSites(
            hvac_rated_w=has(sh.hvac) * uniform(2_000.0, 4_500.0),
            hvac_cop=uniform(2.8, 4.0),
            house_r_c_per_w=uniform(0.004, 0.008),  # 125-250 W/K
            house_c_j_per_c=uniform(6e6, 1.4e7),  # time constant 7-30 h
            internal_gain_w=uniform(300.0, 900.0),
            setpoint_c=setpoint,
            hvac_offset_c=uniform(1.5, 3.5),
            comfort_max_c=setpoint + uniform(2.0, 4.0),
            water_element_w=has(sh.water_heater) * 4_500.0,
            water_tank_l=uniform(150.0, 300.0),
            water_setpoint_c=uniform(52.0, 60.0),
            water_deadband_c=uniform(3.0, 6.0),
            water_min_c=uniform(40.0, 45.0),
            water_ua_w_per_c=uniform(1.5, 3.0),
            water_draw_w=uniform(150.0, 350.0),
            pool_w=has(sh.pool) * uniform(750.0, 1_500.0),
            pool_hours=uniform(4.0, 8.0),
            pool_start_h=uniform(9.0, 14.0),
            ev_charger_w=has(sh.ev) * rng.choice(np.array([3_700.0, 7_400.0, 11_000.0]), n),
            ev_daily_wh=uniform(4_000.0, 16_000.0),
            ev_arrival_h=np.clip(rng.normal(18.0, 1.5, n), 15.0, 22.5),
            ev_departure_h=np.clip(rng.normal(7.0, 0.8, n), 5.0, 9.0),
            battery_wh=(b := has(sh.battery)) * 13_500.0,
            battery_w=b * 5_000.0,
            battery_reserve_frac=uniform(0.1, 0.3),
            pv_peak_w=has(sh.pv) * uniform(3_000.0, 9_000.0),
            opt_out_rate=opt,
            price_threshold_per_kwh=threshold,
        )
        return cls(sites, utc_offset_h=utc_offset_h, seed=seed)

    def __len__(self) -> int:
        return len(self.sites)

    # ------------------------------------------------------------------ events
    def start_event(self, sites: npt.ArrayLike, *, allow_opt_out: bool = True) -> BoolArray:
        """An event reaches these sites: each customer opts out with its ``opt_out_rate``; returns the opt-outs.

        Direct load control (``allow_opt_out=False``) acts on the devices without asking.
        """
        idx = select_units(sites, len(self), "site")
        draw = self._rng.random(idx.size) < self.sites.opt_out_rate[idx]
        out = draw if allow_opt_out else np.zeros(idx.size, bool)
        self._in_event[idx] = True
        self._opted_out[idx] = out
        self.events_started += 1
        return out

    def opt_out(self, sites: npt.ArrayLike) -> None:
        """Customers opt out of the current event (e.g. from their in-home display)."""
        self._opted_out[select_units(sites, len(self), "site")] = True

    def end_event(self, sites: npt.ArrayLike) -> None:
        idx = select_units(sites, len(self), "site")
        self._in_event[idx] = False
        self._opted_out[idx] = False

    @property
    def in_event(self) -> BoolArray:
        return readonly(self._in_event)

    @property
    def opted_out(self) -> BoolArray:
        return readonly(self._opted_out)

    @property
    def indoor_c(self) -> FloatArray:
        return readonly(self._indoor_c)

    @property
    def tank_c(self) -> FloatArray:
        return readonly(self._tank_c)

    @property
    def soc_wh(self) -> FloatArray:
        return readonly(self._soc_wh)

    @property
    def ev_need_wh(self) -> FloatArray:
        return readonly(self._ev_need_wh)

    @property
    def pool_run_s(self) -> FloatArray:
        """Seconds the pool pump has run in the current local day."""
        return readonly(self._pool_run_s)

    # ------------------------------------------------------------------ the step
    def _vector(self, value: npt.ArrayLike, name: str) -> FloatArray:
        arr = np.asarray(value, dtype=np.float64)
        if arr.ndim == 0:
            return np.full(len(self), float(arr))
        if arr.shape != (len(self),):
            raise DeviceInputError(f"{name} must be a scalar or shape ({len(self)},), got {arr.shape}")
        return arr

    def step(
        self,
        at: dt.datetime,
        dt_s: float,
        *,
        outdoor_c: npt.ArrayLike,
        irradiance: npt.ArrayLike = 0.0,
        base_w: npt.ArrayLike = 500.0,
        level: npt.ArrayLike = 0,
        price_per_kwh: npt.ArrayLike = 0.0,
        export_limit_w: npt.ArrayLike = np.inf,
    ) -> FlexStep:
        """Advance every site by ``dt_s`` seconds starting at ``at`` (UTC); returns the step's average powers.

        ``level`` is the OpenADR simple level the site's EMS holds (0-3; sites in an event started
        with :meth:`start_event` respond at least at level 2); ``irradiance`` is the PV output as a
        fraction of peak; ``base_w`` the uncontrollable load.
        """
        if not dt_s > 0:
            raise DeviceInputError(f"dt_s must be positive, got {dt_s}")
        s, n = self.sites, len(self)
        hour = _hour_of_day(at, self.utc_offset_h)
        h_end = hour + dt_s / 3600.0
        t_out = self._vector(outdoor_c, "outdoor_c")
        base = self._vector(base_w, "base_w")
        price = self._vector(price_per_kwh, "price_per_kwh")
        lvl = np.asarray(level)
        if lvl.ndim and lvl.shape != (n,):
            raise DeviceInputError(f"level must be a scalar or shape ({n},), got {lvl.shape}")
        if np.any((lvl < 0) | (lvl > 3)):
            raise DeviceInputError("level must be an OpenADR simple level 0..3")
        depth = LEVEL_DEPTH[np.broadcast_to(lvl.astype(np.int64), (n,))]
        depth = np.where(self._in_event, np.maximum(depth, 1.0), depth)
        depth = np.where(price >= s.price_threshold_per_kwh, np.maximum(depth, 1.0), depth)
        depth = np.where(self._opted_out, 0.0, depth)
        respond = depth > 0

        # HVAC: aim for the (raised) setpoint at the end of the step, never above the comfort limit
        wanted = s.setpoint_c + depth * s.hvac_offset_c
        target = np.minimum(wanted, s.comfort_max_c)
        self.comfort_overrides += int(np.count_nonzero((wanted > s.comfort_max_c) & (s.hvac_rated_w > 0)))
        rc = s.house_r_c_per_w * s.house_c_j_per_c
        a = np.exp(-dt_s / rc)
        t_free = t_out + s.house_r_c_per_w * s.internal_gain_w  # where the house drifts with the unit off
        t_eq = (target - self._indoor_c * a) / (1.0 - a)
        hvac = np.clip((t_free - t_eq) / (s.house_r_c_per_w * s.hvac_cop), 0.0, s.hvac_rated_w)
        t_e = t_free - s.house_r_c_per_w * s.hvac_cop * hvac
        self._indoor_c = t_e + (self._indoor_c - t_e) * a

        # water heater: hysteresis thermostat; held off while responding unless below the minimum
        c_tank = s.water_tank_l * _WATER_J_PER_L_C
        draw = s.water_draw_w * _draw_profile(hour)
        has_wh = s.water_element_w > 0
        self._water_on = has_wh & (
            (self._tank_c < s.water_setpoint_c - s.water_deadband_c)
            | (self._water_on & (self._tank_c < s.water_setpoint_c))
        )
        allowed = self._water_on & (~respond | (self._tank_c < s.water_min_c))
        to_setpoint = (s.water_setpoint_c - self._tank_c) * c_tank / dt_s + draw
        water = np.where(allowed, np.clip(to_setpoint, 0.0, s.water_element_w), 0.0)
        loss = s.water_ua_w_per_c * (self._tank_c - 20.0)
        self._tank_c = np.where(has_wh, self._tank_c + dt_s * (water - loss - draw) / c_tank, self._tank_c)

        # pool pump: run hours from the start hour, deferred while responding, caught up the same day
        if self._last_hour is not None and hour < self._last_hour:
            self._pool_run_s[:] = 0.0  # a new local day
        due = s.pool_hours * 3600.0 - self._pool_run_s
        pool_on = (s.pool_w > 0) & (hour >= s.pool_start_h) & (due > 0) & ~respond
        run_s = np.where(pool_on, np.minimum(due, dt_s), 0.0)
        self._pool_run_s += run_s
        pool = s.pool_w * run_s / dt_s

        # PEV: plugged from arrival to departure (overnight); pauses only if it can still finish
        has_ev = s.ev_charger_w > 0
        plugged = has_ev & ((hour >= s.ev_arrival_h) | (hour < s.ev_departure_h))
        arrived = plugged & ~self._ev_plugged
        self._ev_need_wh = np.where(arrived, self._ev_need_wh + s.ev_daily_wh, self._ev_need_wh)
        self._ev_need_wh = np.where(has_ev & ~plugged, 0.0, self._ev_need_wh)  # left: what is missing is missed
        self._ev_plugged = plugged
        to_departure_h = (s.ev_departure_h - h_end) % 24.0
        slack = to_departure_h * s.ev_charger_w * _EV_EFFICIENCY >= self._ev_need_wh
        charge = plugged & (self._ev_need_wh > 0) & ~(respond & slack)
        ev = np.where(charge, np.minimum(s.ev_charger_w, self._ev_need_wh / _EV_EFFICIENCY * 3600.0 / dt_s), 0.0)
        self._ev_need_wh = np.maximum(self._ev_need_wh - ev * _EV_EFFICIENCY * dt_s / 3600.0, 0.0)

        # PV, then the battery against what is left of the house load
        pv_avail = s.pv_peak_w * np.clip(self._vector(irradiance, "irradiance"), 0.0, 1.2)
        house = base + hvac + water + pool + ev
        reserve = s.battery_wh * s.battery_reserve_frac
        can_out = np.minimum(s.battery_w, np.maximum(self._soc_wh - reserve, 0.0) * 3600.0 / dt_s)
        can_in = np.minimum(s.battery_w, np.maximum(s.battery_wh - self._soc_wh, 0.0) * 3600.0 / dt_s)
        surplus = pv_avail - house
        battery = np.where(
            respond,
            -np.minimum(can_out, np.maximum(house - pv_avail, 0.0)),
            np.minimum(can_in, np.maximum(surplus, 0.0)),
        )
        self._soc_wh += np.where(battery > 0, battery * 0.95, battery / 0.95) * dt_s / 3600.0
        limit = self._vector(export_limit_w, "export_limit_w")
        limit = np.where((price < 0) & respond, np.minimum(limit, 0.0), limit)
        pv = np.minimum(pv_avail, np.maximum(house + battery + limit, 0.0))
        load = house + battery - pv
        self._last_hour = hour
        return FlexStep(
            load_w=load,
            base_w=base,
            hvac_w=hvac,
            water_w=water,
            pool_w=pool,
            ev_w=ev,
            battery_w=battery,
            pv_w=pv,
            pv_curtailed_w=pv_avail - pv,
            responding=respond,
            indoor_c=self._indoor_c.copy(),
        )
