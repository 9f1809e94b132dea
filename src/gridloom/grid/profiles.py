"""Load and generation profiles from SimBench, varied per customer, on a real calendar.

SimBench ships one year (2016, a leap year starting on a Friday) of 15-minute profiles:
per load type (households H0-*, commercial G*-*, agriculture L*-*) a factor of the load's
rated power for P and for Q, and per generator type (PV*, wind WP*) a factor of its
rated power. A simulated date is mapped to the SimBench day with the same weekday nearest
to the same day of the year, so weekday and season are kept.

No two meters read alike: each customer gets a persistent scale (lognormal, mean 1), a
persistent time shift of a few steps (people do not all cook at 18:00) and independent
noise per step (lognormal, mean 1). Q follows P's variation so the power factor of each
profile type is kept.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd

STEP_S = 900
STEPS_PER_DAY = 86_400 // STEP_S
PROFILE_YEAR_START = dt.datetime(2016, 1, 1, tzinfo=dt.UTC)
_PROFILE_DAYS = 366

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class ProfileTable:
    """Factors per profile name, one row per 15-minute step of the SimBench year."""

    names: tuple[str, ...]
    p: FloatArray  # (35136, n_names)
    q: FloatArray  # (35136, n_names); zeros for generators

    def columns(self, wanted: npt.ArrayLike) -> npt.NDArray[np.intp]:
        """Column index of each wanted profile name."""
        index = {name: i for i, name in enumerate(self.names)}
        wanted_names = np.asarray(wanted, dtype=object)
        missing = sorted({str(n) for n in wanted_names if n not in index})
        if missing:
            raise KeyError(f"profiles not in the SimBench data: {', '.join(missing)}")
        return np.fromiter((index[n] for n in wanted_names), dtype=np.intp, count=len(wanted_names))


def load_table(profiles: dict[str, pd.DataFrame]) -> ProfileTable:
    """The load profiles of a SimBench net (``net.profiles``)."""
    frame = profiles["load"]
    names = tuple(c.removesuffix("_pload") for c in frame.columns if c.endswith("_pload"))
    p = frame[[f"{n}_pload" for n in names]].to_numpy(dtype=np.float64)
    q = frame[[f"{n}_qload" for n in names]].to_numpy(dtype=np.float64)
    return ProfileTable(names, p, q)


def generation_table(profiles: dict[str, pd.DataFrame]) -> ProfileTable:
    """The renewable and power-plant profiles of a SimBench net."""
    frames = [profiles[k].drop(columns="time") for k in ("renewables", "powerplants") if k in profiles]
    frame = pd.concat(frames, axis=1) if frames else pd.DataFrame()
    p = frame.to_numpy(dtype=np.float64)
    return ProfileTable(tuple(frame.columns), p, np.zeros_like(p))


def profile_step(at: dt.datetime) -> int:
    """The SimBench step that stands for ``at``: same weekday, nearest day of year, same time of day."""
    if at.tzinfo is None:
        raise ValueError("times in gridloom are timezone-aware UTC")
    at = at.astimezone(dt.UTC)
    day_of_year = at.timetuple().tm_yday - 1
    # SimBench day d has weekday (4 + d) % 7 (2016-01-01 was a Friday, weekday 4).
    shift = (at.weekday() - (4 + day_of_year)) % 7
    if shift > 3:
        shift -= 7
    day = day_of_year + shift
    if day < 0:  # beyond the year's edges: the same weekday a week inwards
        day += 7
    elif day >= _PROFILE_DAYS:
        day -= 7
    seconds = at.hour * 3600 + at.minute * 60 + at.second
    return day * STEPS_PER_DAY + seconds // STEP_S


@dataclass(frozen=True)
class Variation:
    """How much customers differ from their profile type."""

    scale_sigma: float = 0.25  # lognormal sigma of a customer's persistent scale
    shift_steps: int = 2  # persistent time shift, uniform in [-shift, +shift] steps
    noise_sigma: float = 0.15  # lognormal sigma of independent per-step noise


class CustomerProfiles:
    """Per-customer P and Q for any window of steps, for R replicas of a district.

    Draws each customer's scale and shift once (so a customer stays recognisable over
    the days) and fresh noise per call.
    """

    def __init__(
        self,
        table: ProfileTable,
        *,
        profile: npt.ArrayLike,
        p_ref_w: FloatArray,
        q_ref_var: FloatArray,
        replicas: int,
        rng: np.random.Generator,
        variation: Variation = Variation(),
    ) -> None:
        n = len(p_ref_w)
        self._table = table
        self._column = table.columns(profile)
        self._p_ref_w = np.asarray(p_ref_w, dtype=np.float64)
        self._q_ref_var = np.asarray(q_ref_var, dtype=np.float64)
        self._variation = variation
        self._rng = rng
        sigma = variation.scale_sigma
        # mean-one lognormal: exp(N(-sigma^2/2, sigma))
        self.scale = rng.lognormal(-(sigma**2) / 2, sigma, size=(replicas, n))
        self.shift = rng.integers(-variation.shift_steps, variation.shift_steps + 1, size=(replicas, n))

    def window(self, first_step: int, steps: int) -> tuple[FloatArray, FloatArray]:
        """P and Q in W / var, shape (steps, replicas, customers), starting at SimBench step ``first_step``."""
        total = self._table.p.shape[0]
        rows = (first_step + np.arange(steps)[:, None, None] + self.shift[None, :, :]) % total
        p_factor = self._table.p[rows, self._column[None, None, :]]
        q_factor = self._table.q[rows, self._column[None, None, :]]
        sigma = self._variation.noise_sigma
        noise = self._rng.lognormal(-(sigma**2) / 2, sigma, size=p_factor.shape) * self.scale[None]
        return p_factor * noise * self._p_ref_w, q_factor * noise * self._q_ref_var


def generation_window(
    table: ProfileTable, *, profile: npt.ArrayLike, p_ref_w: FloatArray, first_step: int, steps: int
) -> FloatArray:
    """Available generation in W, shape (steps, n_gens): SimBench factor times rated power."""
    rows = (first_step + np.arange(steps)) % table.p.shape[0]
    available: FloatArray = table.p[rows][:, table.columns(profile)] * np.asarray(p_ref_w, dtype=np.float64)
    return available
