"""How a tariff prices each interval: the tariff's *buckets* and which bucket each interval falls in.

A bucket is one energy line of a bill: ``energy`` (flat, tiered — the blocks are applied to the
bucket's total afterwards), one per time-of-use period plus ``off_peak``, ``critical_peak``
during events, or ``real_time`` (its rate varies per hour). Classification is vectorised: the
local hour, weekday and holiday of every 15-minute slot of the cycle are computed once per
time zone (about 3,000 slots a month), and each interval takes its slot's bucket.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt

from gridloom.errors import MissingPrices
from gridloom.systems.billing.cycle import BillingCycle, CriticalPeakEvent, PriceSeries, event_mask, from_us
from gridloom.systems.cis.tariffs import (
    CriticalPeakTariff,
    FlatTariff,
    RealTimeTariff,
    Tariff,
    TieredTariff,
    TimeOfUseTariff,
)

SLOT_S = 900  # every zone's UTC offset is a multiple of 15 minutes, so a slot has one local hour
_SLOT_US = SLOT_S * 1_000_000
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class Bucket:
    key: str  # energy | period:<name> | off_peak | critical_peak | real_time
    label: str
    rate_per_kwh: Decimal | None  # None: varies per interval (real-time price + adder)


@dataclass(frozen=True)
class _Slots:
    hour: npt.NDArray[np.int8]
    weekday: npt.NDArray[np.int8]
    date_ordinal: IntArray


@lru_cache(maxsize=32)
def _slots(start_us: int, end_us: int, zone: str) -> _Slots:
    n = -(-(end_us - start_us) // _SLOT_US) + 1
    tz = ZoneInfo(zone)
    first = from_us(start_us)
    local = [(first + dt.timedelta(seconds=SLOT_S * i)).astimezone(tz) for i in range(n)]
    return _Slots(
        hour=np.array([t.hour for t in local], dtype=np.int8),
        weekday=np.array([t.weekday() for t in local], dtype=np.int8),
        date_ordinal=np.array([t.date().toordinal() for t in local], dtype=np.int64),
    )


@dataclass(frozen=True)
class TariffPlan:
    """A tariff made ready for one cycle: its buckets and a slot -> bucket table."""

    tariff: Tariff
    buckets: tuple[Bucket, ...]
    slot_bucket: IntArray | None  # per 15-min slot of the cycle; None: one bucket (or events/prices decide)

    @classmethod
    def build(cls, tariff: Tariff, cycle: BillingCycle) -> TariffPlan:
        if isinstance(tariff, RealTimeTariff):
            return cls(tariff, (Bucket("real_time", "Energy at real-time prices", None),), None)
        if isinstance(tariff, FlatTariff):
            return cls(tariff, (Bucket("energy", "Energy", tariff.energy_rate_per_kwh),), None)
        if isinstance(tariff, TieredTariff):
            return cls(tariff, (Bucket("energy", "Energy", None),), None)
        assert isinstance(tariff, TimeOfUseTariff)
        slots = _slots(cycle.start_us, cycle.end_us, tariff.timezone)
        buckets = [
            Bucket(f"period:{p.name}", f"Energy, {p.name.replace('_', ' ')}", p.rate_per_kwh) for p in tariff.periods
        ]
        buckets.append(Bucket("off_peak", "Energy, off-peak", tariff.off_peak_rate_per_kwh))
        off_peak = len(tariff.periods)
        slot_bucket = np.full(slots.hour.size, off_peak, dtype=np.int64)
        for k in reversed(range(len(tariff.periods))):  # reversed: the first matching period wins
            p = tariff.periods[k]
            hit = (slots.hour >= p.start_hour) & (slots.hour < p.end_hour) & np.isin(slots.weekday, p.weekdays)
            slot_bucket[hit] = k
        if tariff.holidays:
            slot_bucket[np.isin(slots.date_ordinal, [d.toordinal() for d in tariff.holidays])] = off_peak
        if isinstance(tariff, CriticalPeakTariff):
            buckets.append(Bucket("critical_peak", "Energy, critical peak event", tariff.critical_peak_rate_per_kwh))
        return cls(tariff, tuple(buckets), slot_bucket)

    def classify(
        self,
        t_us: IntArray,
        *,
        cycle: BillingCycle,
        events: Sequence[CriticalPeakEvent],
        prices: PriceSeries | None,
    ) -> tuple[IntArray, npt.NDArray[np.float64] | None]:
        """Bucket of each interval start, and the per-interval rate where the bucket's rate varies."""
        if self.slot_bucket is not None:
            slot = np.clip((t_us - cycle.start_us) // _SLOT_US, 0, self.slot_bucket.size - 1)
            bucket = self.slot_bucket[slot]
            if isinstance(self.tariff, CriticalPeakTariff):
                bucket = np.where(event_mask(events, t_us), len(self.buckets) - 1, bucket)
            return bucket, None
        bucket = np.zeros(t_us.shape, dtype=np.int64)
        if not isinstance(self.tariff, RealTimeTariff):
            return bucket, None
        if prices is None:
            raise MissingPrices(f"tariff {self.tariff.tariff_id} is real-time priced: give an hourly price series")
        price, found = prices.lookup(t_us)
        if not found.all():
            hours = np.unique(t_us[~found] - t_us[~found] % (3600 * 1_000_000))
            shown = [from_us(int(h)).isoformat() for h in hours[:5]]
            more = f" and {hours.size - 5} more" if hours.size > 5 else ""
            raise MissingPrices(
                f"tariff {self.tariff.tariff_id}: the price series has no price for {', '.join(shown)}{more} "
                "(UTC hours with usage)",
                hours=[from_us(int(h)).isoformat() for h in hours],
            )
        return bucket, price + float(self.tariff.adder_per_kwh)
