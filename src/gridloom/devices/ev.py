"""Plug-in electric vehicles at their chargers (PEV/EVSE) as a fleet, vectorised.

One EV per charger (EVSE). Each night (or workday) the EV arrives, plugs in, needs the
energy it used since it last charged, and leaves; times and energy are drawn from an
:class:`EvBehaviour` with the numpy ``Generator`` the fleet was given, so a fleet is
reproducible from its seed.

Charging is uncontrolled by default (full power from the moment it plugs in, as most
home charging is today). A load-management system or an OCPP central system limits a
charger with :meth:`EvFleet.set_limit`, which holds until the next command; ``step`` can
also take a one-step limit. The power drawn is never above ``min(EVSE rating, commanded
limit, step limit)`` and the energy of a session never exceeds what the EV needs.

Energy is measured at the EVSE (what the grid supplies); charger losses are not split
out. Powers are consumption: ``p_w >= 0`` is drawn from the grid. Hours in
:class:`EvBehaviour` are local clock hours (``utc_offset_h`` maps them to UTC).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from gridloom.devices.distributions import Distribution
from gridloom.devices.selection import readonly, select_units
from gridloom.errors import DeviceConfigError, DeviceInputError, IntervalOutOfOrder

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
IndexArray = npt.NDArray[np.intp]

__all__ = [
    "HOME_CHARGING",
    "LEVEL1_W",
    "LEVEL2_W",
    "WORKPLACE_CHARGING",
    "EvBehaviour",
    "EvFleet",
    "EvSessions",
]

LEVEL1_W = 1_900.0  # SAE J1772 level 1: 120 V x 16 A
LEVEL2_W = 7_200.0  # SAE J1772 level 2: 240 V x 30 A
_DAY_S = 86_400.0
_MIN_ARRIVAL_SOC = 0.05  # nobody arrives with a flatter battery than this
_US = 1_000_000


_HOME_ARRIVAL = Distribution.normal(18.0, 1.5)
_HOME_DEPARTURE = Distribution.normal(7.5, 1.0)
_HOME_DAILY_ENERGY = Distribution.lognormal(8_000.0, 0.5)


@dataclass(frozen=True)
class EvBehaviour:
    """When drivers arrive and leave (local clock hours) and how much energy a day of driving takes.

    Defaults are home charging: arrival ~ N(18:00, 1.5 h), departure the next morning
    ~ N(07:30, 1 h), daily energy lognormal with median 8 kWh (sigma 0.5: half the days
    between about 5.7 and 11.2 kWh). Any :class:`Distribution` can replace them.
    """

    arrival_hour: Distribution = _HOME_ARRIVAL
    departure_hour: Distribution = _HOME_DEPARTURE
    departure_day_offset: int = 1  # 1: leaves the next day (home); 0: the same day (work)
    daily_energy_wh: Distribution = _HOME_DAILY_ENERGY
    plug_in_probability: float = 1.0  # a driver who skips a day needs both days' energy next time
    min_dwell_h: float = 0.25
    utc_offset_h: float = 0.0  # local time = UTC + offset

    def __post_init__(self) -> None:
        if self.departure_day_offset not in (0, 1):
            raise DeviceConfigError("EvBehaviour.departure_day_offset is 0 (same day) or 1 (next day)")
        if not 0.0 < self.plug_in_probability <= 1.0:
            raise DeviceConfigError(
                f"EvBehaviour.plug_in_probability must be in (0, 1], got {self.plug_in_probability}"
            )
        if not self.min_dwell_h > 0:
            raise DeviceConfigError(f"EvBehaviour.min_dwell_h must be positive, got {self.min_dwell_h}")


HOME_CHARGING = EvBehaviour()
WORKPLACE_CHARGING = EvBehaviour(
    arrival_hour=Distribution.normal(8.5, 1.0),
    departure_hour=Distribution.normal(17.5, 1.0),
    departure_day_offset=0,
    daily_energy_wh=Distribution.lognormal(10_000.0, 0.5),
)


@dataclass(frozen=True)
class EvSessions:
    """Finished charging sessions, columnar (one row per session): what a charger's submeter reports."""

    evse: IndexArray
    arrival_us: npt.NDArray[np.int64]  # UTC epoch microseconds
    departure_us: npt.NDArray[np.int64]
    energy_need_wh: FloatArray
    energy_delivered_wh: FloatArray

    def __len__(self) -> int:
        return len(self.evse)


class EvFleet:
    """``n`` chargers, each with its EV, as arrays.

    ``evse_max_w``: each charger's rating (``LEVEL1_W``, ``LEVEL2_W`` or any value).
    ``start_at``: the UTC time the fleet starts at; sessions that began before it (an EV
    plugged in last evening) are under way, having charged at full power since arrival.
    """

    def __init__(
        self,
        evse_max_w: npt.ArrayLike,
        *,
        start_at: dt.datetime,
        rng: np.random.Generator,
        behaviour: EvBehaviour = HOME_CHARGING,
        battery_wh: npt.ArrayLike = 60_000.0,
        target_soc: float = 0.9,
    ) -> None:
        rating = np.asarray(evse_max_w, dtype=np.float64)
        if rating.ndim != 1:
            raise DeviceConfigError(f"evse_max_w is one value per charger (1-D), got shape {rating.shape}")
        if not np.all(np.isfinite(rating)) or np.any(rating < 0):
            raise DeviceConfigError("charger ratings must be finite and non-negative")
        if start_at.tzinfo is None:
            raise DeviceConfigError("start_at must be a timezone-aware UTC time")
        n = rating.shape[0]
        self.n = n
        self.behaviour = behaviour
        self._rng = rng
        self._evse_max_w = rating.copy()
        self._battery_wh = np.array(np.broadcast_to(np.asarray(battery_wh, dtype=np.float64), (n,)))
        if not np.all(self._battery_wh > 0):
            raise DeviceConfigError("battery_wh must be positive")
        if not _MIN_ARRIVAL_SOC < target_soc <= 1.0:
            raise DeviceConfigError(f"target_soc must be in ({_MIN_ARRIVAL_SOC}, 1]")
        self._target_soc = target_soc
        self._max_need_wh = self._battery_wh * (target_soc - _MIN_ARRIVAL_SOC)
        start_at = start_at.astimezone(dt.UTC)
        self._t0_us = (start_at - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)) // dt.timedelta(microseconds=1)
        self.start_at = start_at
        # Local midnight of the start day, in seconds relative to start_at.
        local_s = (self._t0_us / _US + behaviour.utc_offset_h * 3_600.0) % _DAY_S
        self._midnight0_s = -local_s

        self._limit_w = np.full(n, np.inf)
        self._arrival_s = np.zeros(n)
        self._departure_s = np.full(n, -np.inf)
        self._need_wh = np.zeros(n)
        self._delivered_wh = np.zeros(n)
        self._present = np.zeros(n, dtype=bool)  # does the EV plug in for this session at all
        self._day = np.full(n, -1 - behaviour.departure_day_offset, dtype=np.int64)
        self._total_wh = np.zeros(n)
        self._now_s = 0.0
        self._log: list[EvSessions] = []

        everyone = np.arange(n, dtype=np.intp)
        self._draw(everyone, carry_wh=np.zeros(n), previous_departure_s=np.full(n, -np.inf))
        # Sessions before the start: charged uncontrolled; roll until every session ends after it.
        while True:
            over = np.flatnonzero(self._departure_s <= 0.0)
            if over.size == 0:
                break
            dwell = self._departure_s[over] - self._arrival_s[over]
            self._delivered_wh[over] = np.minimum(self._need_wh[over], self._evse_max_w[over] * dwell / 3_600.0)
            self._roll(over, log=False)
        under_way = self._present & (self._arrival_s < 0.0)
        since = np.where(under_way, -self._arrival_s, 0.0)
        self._delivered_wh = np.where(
            under_way, np.minimum(self._need_wh, self._evse_max_w * since / 3_600.0), self._delivered_wh
        )

    # -- sessions ---------------------------------------------------------------------

    def _draw(self, idx: IndexArray, *, carry_wh: FloatArray, previous_departure_s: FloatArray) -> None:
        """Draw the session of day ``self._day[idx]`` for the chargers ``idx``."""
        b, rng, k = self.behaviour, self._rng, len(idx)
        day_start = self._midnight0_s + self._day[idx] * _DAY_S
        arrival = day_start + b.arrival_hour.sample(rng, k) * 3_600.0
        departure = day_start + b.departure_day_offset * _DAY_S + b.departure_hour.sample(rng, k) * 3_600.0
        driven = np.maximum(b.daily_energy_wh.sample(rng, k), 0.0)
        plugs = rng.random(k) < b.plug_in_probability
        arrival = np.maximum(arrival, previous_departure_s)  # cannot come back before it left
        self._arrival_s[idx] = arrival
        self._departure_s[idx] = np.maximum(departure, arrival + b.min_dwell_h * 3_600.0)
        self._need_wh[idx] = np.minimum(carry_wh + driven, self._max_need_wh[idx])
        self._delivered_wh[idx] = 0.0
        self._present[idx] = plugs

    def _roll(self, idx: IndexArray, *, log: bool) -> None:
        """Close the sessions ``idx`` (they have departed) and draw each charger's next one."""
        present = self._present[idx]
        if log and np.any(present):
            done = idx[present]
            self._log.append(
                EvSessions(
                    evse=done.copy(),
                    arrival_us=self._to_us(self._arrival_s[done]),
                    departure_us=self._to_us(self._departure_s[done]),
                    energy_need_wh=self._need_wh[done].copy(),
                    energy_delivered_wh=self._delivered_wh[done].copy(),
                )
            )
        # What was not charged (or the whole need, if it never plugged in) carries over.
        carry = self._need_wh[idx] - np.where(present, self._delivered_wh[idx], 0.0)
        previous = self._departure_s[idx].copy()
        self._day[idx] += 1
        self._draw(idx, carry_wh=carry, previous_departure_s=previous)

    def _to_us(self, rel_s: FloatArray) -> npt.NDArray[np.int64]:
        return self._t0_us + np.round(rel_s * _US).astype(np.int64)

    # -- commands ---------------------------------------------------------------------

    def _evse(self, evse: npt.ArrayLike) -> IndexArray:
        return select_units(evse, self.n, "charger")

    def set_limit(self, evse: npt.ArrayLike, limit_w: npt.ArrayLike) -> None:
        """Limit chargers to ``limit_w`` W until the next command (``inf`` lifts the limit)."""
        idx = self._evse(evse)
        limit = np.broadcast_to(np.asarray(limit_w, dtype=np.float64), idx.shape)
        if np.any(np.isnan(limit)) or np.any(limit < 0):
            raise DeviceInputError("a charging limit is a non-negative number of W (inf for none)")
        self._limit_w[idx] = limit

    # -- physics ----------------------------------------------------------------------

    def step(self, at: dt.datetime, dt_s: float, *, limit_w: npt.ArrayLike | None = None) -> FloatArray:
        """Charge over ``[at, at + dt_s)``; returns each charger's average power in W (>= 0, drawn).

        ``limit_w`` (scalar or ``(n,)``) caps this step only, on top of :meth:`set_limit`.
        Steps must not go back in time; a gap between steps is time the fleet skips.
        """
        if at.tzinfo is None:
            raise DeviceInputError("at must be a timezone-aware UTC time")
        if not dt_s > 0:
            raise DeviceInputError(f"a step lasts a positive number of seconds, not {dt_s}")
        t = (at - self.start_at) / dt.timedelta(seconds=1)
        if t < self._now_s - 1e-6:
            raise IntervalOutOfOrder(f"steps go forward in time: {at} is before the end of the previous step")
        end = t + dt_s
        cap = np.minimum(self._evse_max_w, self._limit_w)
        if limit_w is not None:
            step_limit = np.broadcast_to(np.asarray(limit_w, dtype=np.float64), (self.n,))
            if np.any(np.isnan(step_limit)) or np.any(step_limit < 0):
                raise DeviceInputError("a charging limit is a non-negative number of W (inf for none)")
            cap = np.minimum(cap, step_limit)
        # Sessions that ended in a gap before this step.
        while (gone := np.flatnonzero(self._departure_s <= t)).size:
            self._roll(gone, log=True)
        energy_wh = np.zeros(self.n)
        idx = np.arange(self.n, dtype=np.intp)
        while idx.size:
            start = np.maximum(self._arrival_s[idx], t)
            stop = np.minimum(self._departure_s[idx], end)
            plugged_s = np.where(self._present[idx], np.maximum(stop - start, 0.0), 0.0)
            wanted = self._need_wh[idx] - self._delivered_wh[idx]
            got = np.minimum(cap[idx] * plugged_s / 3_600.0, np.maximum(wanted, 0.0))
            self._delivered_wh[idx] += got
            energy_wh[idx] += got
            leaving = idx[self._departure_s[idx] <= end]
            if leaving.size:
                self._roll(leaving, log=True)
            # A charger whose next session also starts within the step charges again.
            idx = leaving[self._arrival_s[leaving] < end]
        self._total_wh += energy_wh
        self._now_s = end
        return energy_wh * 3_600.0 / dt_s

    # -- what chargers report ---------------------------------------------------------

    @property
    def evse_max_w(self) -> FloatArray:
        return readonly(self._evse_max_w)

    @property
    def limit_w(self) -> FloatArray:
        """The commanded limit of each charger (inf where none)."""
        return readonly(self._limit_w)

    @property
    def plugged(self) -> BoolArray:
        """Whether each EV is plugged in at the end of the last step."""
        return self._present & (self._arrival_s <= self._now_s) & (self._now_s < self._departure_s)

    @property
    def soc(self) -> FloatArray:
        """Each plugged-in EV's state of charge (0..1); NaN where no EV is plugged in."""
        soc = self._target_soc - (self._need_wh - self._delivered_wh) / self._battery_wh
        return np.where(self.plugged, soc, np.nan)

    @property
    def energy_need_wh(self) -> FloatArray:
        """Energy the current (or next) session needs in total."""
        return readonly(self._need_wh)

    @property
    def energy_delivered_wh(self) -> FloatArray:
        """Energy delivered so far in the current (or next) session."""
        return readonly(self._delivered_wh)

    @property
    def energy_delivered_total_wh(self) -> FloatArray:
        """Energy each charger has delivered since the fleet started (a submeter register)."""
        return readonly(self._total_wh)

    @property
    def arrival_us(self) -> npt.NDArray[np.int64]:
        """Arrival of the current (or next) session, UTC epoch microseconds."""
        return self._to_us(self._arrival_s)

    @property
    def departure_us(self) -> npt.NDArray[np.int64]:
        """Departure of the current (or next) session, UTC epoch microseconds."""
        return self._to_us(self._departure_s)

    def drain_sessions(self) -> EvSessions:
        """Sessions that ended since the last call (in the order they ended), and forget them."""
        logs, self._log = self._log, []
        if not logs:
            empty_i = np.zeros(0, dtype=np.int64)
            return EvSessions(np.zeros(0, dtype=np.intp), empty_i, empty_i.copy(), np.zeros(0), np.zeros(0))
        return EvSessions(
            evse=np.concatenate([s.evse for s in logs]),
            arrival_us=np.concatenate([s.arrival_us for s in logs]),
            departure_us=np.concatenate([s.departure_us for s in logs]),
            energy_need_wh=np.concatenate([s.energy_need_wh for s in logs]),
            energy_delivered_wh=np.concatenate([s.energy_delivered_wh for s in logs]),
        )
