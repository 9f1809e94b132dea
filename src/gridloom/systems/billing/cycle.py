"""Billing cycles and the per-run inputs: critical-peak event windows and hourly real-time prices.

A cycle is a calendar month in the utility's local time (``2026-11`` in Europe/Berlin runs from
2026-10-31 23:00 UTC to 2026-11-30 23:00 UTC). Shares of a cycle (for prorating fixed charges
and tier blocks after a move) are measured in local calendar time, so a move-in at local
midnight on the 16th of November is exactly half of the cycle even in a month with a daylight
saving change.

A *short* cycle (:meth:`BillingCycle.span`, e.g. a simulated run of a few days) carries the part
of the monthly charges its days make of their month (``charge_share``): the fixed charge, the
demand charge and the tier blocks are prorated by it.
"""

from __future__ import annotations

import csv
import datetime as dt
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt

from gridloom.errors import BillingInputError

_US = 1_000_000
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_CYCLE_RE = re.compile(r"^(\d{4})-(\d{2})$")


def to_us(at: dt.datetime, name: str = "at") -> int:
    """Microseconds since the Unix epoch of a timezone-aware time."""
    if at.tzinfo is None or at.utcoffset() is None:
        raise BillingInputError(f"{name} must be timezone-aware (UTC), got {at!r}")
    return (at - EPOCH) // dt.timedelta(microseconds=1)


def from_us(us: int) -> dt.datetime:
    return EPOCH + dt.timedelta(microseconds=int(us))


@dataclass(frozen=True)
class BillingCycle:
    """One cycle ``[start_at, end_at)`` (UTC): a local calendar month, or a short span of one."""

    cycle_id: str
    start_at: dt.datetime
    end_at: dt.datetime
    timezone: str
    charge_share: float = 1.0  # share of the monthly fixed/demand charges and tier blocks this cycle carries

    @classmethod
    def span(cls, cycle_id: str, start_at: dt.datetime, end_at: dt.datetime, *, timezone: str) -> BillingCycle:
        """A short cycle ``[start_at, end_at)`` inside one month, carrying its days' share of the monthly charges."""
        if not start_at < end_at:
            raise BillingInputError(f"cycle {cycle_id!r}: the start ({start_at}) must come before the end ({end_at})")
        local = start_at.astimezone(ZoneInfo(timezone))
        month = cls.month(f"{local.year}-{local.month:02d}", timezone=timezone)
        if end_at > month.end_at + dt.timedelta(days=1):
            raise BillingInputError(f"cycle {cycle_id!r}: a short cycle stays within one month ({month.cycle_id})")
        share = min((end_at - start_at) / (month.end_at - month.start_at), 1.0)
        return cls(cycle_id, start_at, end_at, timezone, charge_share=share)

    @classmethod
    def covering(cls, start_at: dt.datetime, end_at: dt.datetime, *, timezone: str) -> list[BillingCycle]:
        """The cycles that bill ``[start_at, end_at)``: whole local months, short cycles at either end."""
        cycles, at = [], start_at
        while at < end_at:
            local = at.astimezone(ZoneInfo(timezone))
            month = cls.month(f"{local.year}-{local.month:02d}", timezone=timezone)
            stop = min(end_at, month.end_at)
            if at == month.start_at and stop == month.end_at:
                cycles.append(month)
            else:
                name = f"{at.astimezone(ZoneInfo(timezone)):%Y-%m-%d}..{stop.astimezone(ZoneInfo(timezone)):%Y-%m-%d}"
                cycles.append(cls.span(name, at, stop, timezone=timezone))
            at = stop
        return cycles

    @classmethod
    def month(cls, cycle_id: str, *, timezone: str) -> BillingCycle:
        """``2026-11`` -> the local month; refuses anything else, naming the expected form."""
        match = _CYCLE_RE.match(cycle_id.strip())
        if not match or not 1 <= int(match.group(2)) <= 12:
            raise BillingInputError(f"cycle {cycle_id!r}: write a month as YYYY-MM, e.g. 2026-11")
        year, month = int(match.group(1)), int(match.group(2))
        zone = ZoneInfo(timezone)
        start = dt.datetime(year, month, 1, tzinfo=zone)
        end = dt.datetime(year + month // 12, month % 12 + 1, 1, tzinfo=zone)
        return cls(cycle_id.strip(), start.astimezone(dt.UTC), end.astimezone(dt.UTC), timezone)

    @property
    def start_us(self) -> int:
        return to_us(self.start_at)

    @property
    def end_us(self) -> int:
        return to_us(self.end_at)

    def _local_naive_s(self, us: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
        """Seconds on the local wall clock (naive) of each time; few distinct values in practice."""
        zone = ZoneInfo(self.timezone)
        uniq, inverse = np.unique(us, return_inverse=True)
        wall = np.array(
            [
                (from_us(int(u)).astimezone(zone).replace(tzinfo=None) - dt.datetime(1970, 1, 1)).total_seconds()
                for u in uniq
            ]
        )
        return np.asarray(wall[inverse], dtype=np.float64)

    def share(self, start_us: npt.NDArray[np.int64], end_us: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
        """Share of the cycle covered by each ``[start, end)`` in local calendar time (0..1)."""
        lo = self._local_naive_s(np.clip(start_us, self.start_us, self.end_us))
        hi = self._local_naive_s(np.clip(end_us, self.start_us, self.end_us))
        full = self._local_naive_s(np.array([self.start_us, self.end_us], dtype=np.int64))
        return np.asarray(np.clip((hi - lo) / (full[1] - full[0]), 0.0, 1.0), dtype=np.float64)


@dataclass(frozen=True)
class CriticalPeakEvent:
    """A critical-peak event window ``[start_at, end_at)`` (UTC); DR will send these later."""

    start_at: dt.datetime
    end_at: dt.datetime
    event_id: str = ""

    def __post_init__(self) -> None:
        if to_us(self.end_at, "end_at") <= to_us(self.start_at, "start_at"):
            raise BillingInputError(
                f"critical-peak event {self.event_id or self.start_at}: end_at must be after start_at"
            )


def event_mask(events: Sequence[CriticalPeakEvent], t_us: npt.NDArray[np.int64]) -> npt.NDArray[np.bool_]:
    """True where a time falls inside any event window (windows may overlap)."""
    if not events:
        return np.zeros(t_us.shape, dtype=bool)
    bounds = sorted((to_us(e.start_at), to_us(e.end_at)) for e in events)
    merged: list[list[int]] = []
    for lo, hi in bounds:
        if merged and lo <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], hi)
        else:
            merged.append([lo, hi])
    starts = np.array([m[0] for m in merged], dtype=np.int64)
    ends = np.array([m[1] for m in merged], dtype=np.int64)
    k = np.searchsorted(starts, t_us, side="right") - 1
    return np.asarray((k >= 0) & (t_us < ends[np.maximum(k, 0)]), dtype=bool)


@dataclass(frozen=True)
class PriceSeries:
    """Hourly energy prices (currency per kWh), keyed by the UTC start of each hour."""

    hour_start_us: npt.NDArray[np.int64]
    price_per_kwh: npt.NDArray[np.float64]

    @classmethod
    def from_pairs(cls, pairs: Iterable[tuple[dt.datetime, float]]) -> PriceSeries:
        items = [(to_us(at, "hour_start"), float(price)) for at, price in pairs]
        if not items:
            return cls(np.zeros(0, np.int64), np.zeros(0))
        hours = np.array([h for h, _ in items], dtype=np.int64)
        prices = np.array([p for _, p in items], dtype=np.float64)
        if np.any(hours % (3600 * _US)):
            bad = from_us(int(hours[np.flatnonzero(hours % (3600 * _US))[0]]))
            raise BillingInputError(f"price series: hour_start {bad.isoformat()} is not on a whole UTC hour")
        if not np.all(np.isfinite(prices)):
            raise BillingInputError("price series: every price_per_kwh must be a finite number")
        order = np.argsort(hours, kind="stable")
        hours, prices = hours[order], prices[order]
        if np.any(hours[1:] == hours[:-1]):
            dup = from_us(int(hours[np.flatnonzero(hours[1:] == hours[:-1])[0]]))
            raise BillingInputError(f"price series: hour {dup.isoformat()} has two prices")
        return cls(hours, prices)

    @classmethod
    def from_csv(cls, path: Path) -> PriceSeries:
        """A CSV with ``hour_start`` (ISO 8601 with offset) and ``price_per_kwh`` columns."""
        pairs: list[tuple[dt.datetime, float]] = []
        with path.open(newline="") as f:
            for line, row in enumerate(csv.DictReader(f), start=2):
                try:
                    at = dt.datetime.fromisoformat(row["hour_start"])
                    price = float(row["price_per_kwh"])
                except (KeyError, TypeError, ValueError) as exc:
                    raise BillingInputError(
                        f"{path}: line {line}: need hour_start (ISO 8601) and price_per_kwh"
                    ) from exc
                if at.tzinfo is None:
                    raise BillingInputError(f"{path}: line {line}: hour_start needs a UTC offset")
                pairs.append((at, price))
        return cls.from_pairs(pairs)

    def lookup(self, t_us: npt.NDArray[np.int64]) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_]]:
        """Price of the UTC hour of each time, and whether the series has that hour."""
        hour = t_us - t_us % (3600 * _US)
        k = np.searchsorted(self.hour_start_us, hour)
        found = (k < self.hour_start_us.size) & (
            self.hour_start_us[np.minimum(k, max(self.hour_start_us.size - 1, 0))] == hour
        )
        if self.hour_start_us.size == 0:
            return np.zeros(t_us.shape), np.zeros(t_us.shape, dtype=bool)
        return np.where(found, self.price_per_kwh[np.minimum(k, self.hour_start_us.size - 1)], 0.0), found


def events_from_csv(path: Path) -> list[CriticalPeakEvent]:
    """A CSV with ``start_at`` and ``end_at`` (ISO 8601 with offset) and an optional ``event_id``."""
    events: list[CriticalPeakEvent] = []
    with path.open(newline="") as f:
        for line, row in enumerate(csv.DictReader(f), start=2):
            try:
                start, end = dt.datetime.fromisoformat(row["start_at"]), dt.datetime.fromisoformat(row["end_at"])
            except (KeyError, TypeError, ValueError) as exc:
                raise BillingInputError(f"{path}: line {line}: need start_at and end_at (ISO 8601)") from exc
            if start.tzinfo is None or end.tzinfo is None:
                raise BillingInputError(f"{path}: line {line}: start_at and end_at need a UTC offset")
            events.append(CriticalPeakEvent(start, end, row.get("event_id") or f"line-{line}"))
    return events
