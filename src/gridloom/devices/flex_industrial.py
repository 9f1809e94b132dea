"""Industrial customers' flexibility: rescheduling production against day-ahead prices, local generation,
and reductions negotiated in advance (the seed's I2G use cases 4.4.2.10 and 4.4.2.3), vectorised.

Each site has a day-ahead production plan of 24 hourly loads. A share of each hour's load is
*flexible* (batch processes, cold stores, pumping) and may move to other hours within the site's
capacity; each kWh moved costs ``shift_cost_per_kwh``. Given prices, a site moves flexible energy
only from hours priced above ``median + shift_cost / 2`` to hours below ``median - shift_cost / 2``,
so every moved kWh saves more than it costs; it moves as much as the cheap hours can absorb,
taken from the dear hours in proportion to their flexible energy, put into the cheap hours in
proportion to their spare capacity (energy is conserved). Local generation runs in hours whose
price exceeds its running cost, up to the site's remaining load (never exporting).

A reduction negotiated in advance (:meth:`IndustrialFleet.negotiate`) is committed by a site whose
reservation price the payment meets, for as much as its flexible energy and generation allow in
the event hours; :meth:`IndustrialFleet.schedule` then delivers it.
Powers are hourly averages in W, shape ``(n, 24)``; hour 0 is the first hour of the delivery day.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import numpy.typing as npt

from gridloom.devices.selection import readonly
from gridloom.errors import DeviceConfigError, DeviceInputError

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

__all__ = ["Commitment", "IndustrialFleet", "IndustrialSchedule", "IndustrialSites"]
HOURS = 24


@dataclass(frozen=True)
class IndustrialSites:
    """Production plans and the customers' terms; ``planned_w`` is (n, 24), the others (n,)."""

    planned_w: FloatArray
    flexible_frac: FloatArray  # of each hour's load, movable
    capacity_w: FloatArray  # the most the plant can draw in an hour
    shift_cost_per_kwh: FloatArray
    generation_w: FloatArray  # local generation (0: none)
    generation_cost_per_kwh: FloatArray
    reservation_per_kwh: FloatArray  # the least payment for which it commits a reduction in advance

    def __post_init__(self) -> None:
        planned = np.asarray(self.planned_w, np.float64)
        if planned.ndim != 2 or planned.shape[1] != HOURS:
            raise DeviceConfigError(f"IndustrialSites.planned_w must be (n, 24), got {planned.shape}")
        n = planned.shape[0]
        object.__setattr__(self, "planned_w", readonly(planned))
        for f in fields(self)[1:]:
            value = np.asarray(getattr(self, f.name), np.float64)
            if value.shape != (n,):
                raise DeviceConfigError(f"IndustrialSites.{f.name} has shape {value.shape}, expected ({n},)")
            if not np.all(np.isfinite(value)) or np.any(value < 0):
                raise DeviceConfigError(f"IndustrialSites.{f.name} must be finite and not negative")
            object.__setattr__(self, f.name, readonly(value))
        if np.any(self.flexible_frac > 1):
            raise DeviceConfigError("IndustrialSites.flexible_frac must lie in [0, 1]")
        if np.any(planned.max(axis=1) > self.capacity_w + 1e-9):
            site = int(np.argmax(planned.max(axis=1) > self.capacity_w + 1e-9))
            raise DeviceConfigError(f"IndustrialSites: site {site} plans more than its capacity_w")

    def __len__(self) -> int:
        return int(self.planned_w.shape[0])


@dataclass(frozen=True)
class Commitment:
    """Reductions agreed in advance: ``committed_w`` per site over ``hours`` (bool (24,)) at ``payment_per_kwh``."""

    hours: BoolArray
    committed_w: FloatArray
    payment_per_kwh: float

    @property
    def total_w(self) -> float:
        return float(self.committed_w.sum())


@dataclass(frozen=True)
class IndustrialSchedule:
    """The day the sites will run: grid load, production load and generation, each (n, 24) in W."""

    load_w: FloatArray  # from the grid
    production_w: FloatArray
    generation_w: FloatArray
    moved_wh: FloatArray  # (n,) energy moved between hours

    def cost(self, prices: FloatArray) -> FloatArray:
        """Each site's energy cost for the day at ``prices`` (per kWh, (24,) or (n, 24))."""
        return np.asarray((self.load_w / 1000.0 * prices).sum(axis=1), np.float64)


class IndustrialFleet:
    """Industrial sites answering day-ahead prices and reduction requests."""

    def __init__(self, sites: IndustrialSites) -> None:
        self.sites = sites

    @classmethod
    def synthetic(cls, n: int, *, seed: int = 0) -> IndustrialFleet:
        """``n`` plants of 0.2-5 MW on a day shift or round the clock; a third with local generation."""
        if n <= 0:
            raise DeviceConfigError(f"an industrial fleet needs at least one site, got n={n}")
        rng = np.random.default_rng(seed)
        size = rng.uniform(2e5, 5e6, n)
        hours = np.arange(HOURS)
        day_shift = rng.random(n) < 0.6
        shape = np.where(day_shift[:, None], np.where((hours >= 6) & (hours < 22), 1.0, 0.35), 0.9)
        planned = size[:, None] * shape * rng.uniform(0.85, 1.0, (n, HOURS))
        return cls(
            IndustrialSites(
                planned_w=planned,
                flexible_frac=rng.uniform(0.05, 0.3, n),
                capacity_w=size * 1.1,
                shift_cost_per_kwh=rng.uniform(0.01, 0.05, n),
                generation_w=np.where(rng.random(n) < 1 / 3, size * rng.uniform(0.1, 0.4, n), 0.0),
                generation_cost_per_kwh=rng.uniform(0.15, 0.3, n),
                reservation_per_kwh=rng.uniform(0.1, 0.6, n),
            )
        )

    def __len__(self) -> int:
        return len(self.sites)

    def _prices(self, prices: npt.ArrayLike) -> FloatArray:
        p = np.asarray(prices, np.float64)
        if p.shape == (HOURS,):
            p = np.broadcast_to(p, (len(self), HOURS))
        if p.shape != (len(self), HOURS) or not np.all(np.isfinite(p)):
            raise DeviceInputError(f"prices must be finite, shape (24,) or ({len(self)}, 24), got {p.shape}")
        return p

    def negotiate(self, hours: npt.ArrayLike, request_w: npt.ArrayLike, *, payment_per_kwh: float) -> Commitment:
        """Ask each site for ``request_w`` less load during ``hours``; a site commits what it can, if paid enough."""
        mask = np.asarray(hours, bool)
        if mask.shape != (HOURS,) or not mask.any():
            raise DeviceInputError("hours must be a (24,) boolean mask with at least one hour set")
        s = self.sites
        request = np.broadcast_to(np.asarray(request_w, np.float64), (len(self),))
        if np.any(request < 0):
            raise DeviceInputError("request_w must not be negative")
        in_hours = s.planned_w[:, mask]
        # what the site can take off in every event hour: its flexible load there plus its generation
        able = (in_hours * s.flexible_frac[:, None]).min(axis=1) + np.minimum(
            s.generation_w, in_hours.min(axis=1) * (1 - s.flexible_frac)
        )
        spare = (s.capacity_w[:, None] - s.planned_w)[:, ~mask].sum(axis=1) if (~mask).any() else np.zeros(len(self))
        able = np.minimum(able, spare / mask.sum() + np.minimum(s.generation_w, in_hours.min(axis=1)))
        willing = payment_per_kwh >= s.reservation_per_kwh
        return Commitment(mask.copy(), np.where(willing, np.minimum(request, able), 0.0), float(payment_per_kwh))

    def schedule(self, prices: npt.ArrayLike, *, commitment: Commitment | None = None) -> IndustrialSchedule:
        """Each site's day: flexible energy moved to cheap hours, generation where it pays, commitments kept."""
        s, p = self.sites, self._prices(prices)
        n = len(self)
        production = np.array(s.planned_w, np.float64)
        flexible = production * s.flexible_frac[:, None]
        median = np.median(p, axis=1, keepdims=True)
        half = s.shift_cost_per_kwh[:, None] / 2.0
        dear = p > median + half
        cheap = p < median - half
        if commitment is not None:
            dear = dear & ~commitment.hours[None, :]
            cheap = cheap & ~commitment.hours[None, :]
        out_wh = np.where(dear, flexible, 0.0)
        room = np.where(cheap, np.maximum(s.capacity_w[:, None] - production, 0.0), 0.0)
        moved = np.minimum(out_wh.sum(axis=1), room.sum(axis=1))
        production -= out_wh * _share(moved, out_wh.sum(axis=1))[:, None]
        production += room * _share(moved, room.sum(axis=1))[:, None]

        generation = np.zeros((n, HOURS))
        if commitment is not None and commitment.total_w > 0:
            hours = commitment.hours
            need = commitment.committed_w.copy()
            # first move flexible load out of the event hours into the other hours' spare capacity
            take = np.minimum((production[:, hours] * s.flexible_frac[:, None]).min(axis=1), need)
            spare = np.maximum(s.capacity_w[:, None] - production, 0.0) * ~hours[None, :]
            take = np.minimum(take, spare.sum(axis=1) / hours.sum())
            production[:, hours] -= take[:, None]
            production += spare * _share(take * hours.sum(), spare.sum(axis=1))[:, None]
            moved += take * hours.sum()
            need -= take
            generation[:, hours] = np.minimum(need, s.generation_w)[:, None]
        runs = p > s.generation_cost_per_kwh[:, None]
        generation = np.maximum(generation, np.where(runs, s.generation_w[:, None], 0.0))
        generation = np.minimum(generation, production)
        return IndustrialSchedule(
            load_w=production - generation, production_w=production, generation_w=generation, moved_wh=moved
        )


def _share(part: FloatArray, whole: FloatArray) -> FloatArray:
    return np.divide(part, whole, out=np.zeros_like(part), where=whole > 0)
