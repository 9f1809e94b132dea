"""Reliability indices from outage records, as IEEE Std 1366 defines them.

For a period, with ``N`` customers served and the interruptions that *began* in the period:

========  ==========================================================  ==========
SAIFI     Σ customers interrupted (sustained) / N                     per period
SAIDI     Σ customer minutes of interruption (sustained) / N          minutes
CAIDI     SAIDI / SAIFI (the average restoration time)                minutes
MAIFI     Σ customers momentarily interrupted / N                     per period
========  ==========================================================  ==========

Sustained: longer than 5 minutes; momentary: shorter (IEEE 1366's threshold, the OMS's
``momentary_s``). Outages still open count up to the end of the period (or ``as_of``, if
earlier). Merged and cancelled records and customer-side single premises are not utility
interruptions and are left out.

MAIFI here counts what the OMS can see: an interruption long enough for the meters to send a
last gasp and a power restore (``MeterConfig.last_gasp_delay_s``, 5 s by default) and restored
within 5 minutes, one per customer and reclosing sequence (IEEE 1366's MAIFI_E). Shorter
interruptions — a recloser's first fast trip — only count in the meters' own momentary
registers, which the on-demand reads the OMS receives do not carry.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

from gridloom.errors import OutageRecordsError
from gridloom.systems.oms.records import OutageRecord, us_of

_US_PER_MIN = 60_000_000


@dataclass(frozen=True)
class ReliabilityIndices:
    start: str  # ISO 8601, UTC
    end: str
    customers_served: int
    saifi: float
    saidi_min: float
    caidi_min: float | None  # None when nobody had a sustained interruption
    maifi: float
    sustained_outages: int
    momentary_events: int
    customers_interrupted: int
    customer_minutes: float
    customers_momentary: int
    open_outages: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def reliability_indices(
    records: Iterable[OutageRecord],
    *,
    customers_served: int,
    start: dt.datetime,
    end: dt.datetime,
    as_of: dt.datetime | None = None,
) -> ReliabilityIndices:
    """IEEE 1366 SAIFI, SAIDI, CAIDI and MAIFI of the interruptions that began in [start, end)."""
    if customers_served <= 0:
        raise OutageRecordsError(f"customers_served must be positive, got {customers_served}")
    start_us, end_us = us_of(start), us_of(end)
    if end_us <= start_us:
        raise OutageRecordsError(f"the period is empty: --to {end.isoformat()} is not after --from {start.isoformat()}")
    cutoff = end_us if as_of is None else min(end_us, us_of(as_of))
    ci = cm = 0
    cmi = 0.0
    sustained = momentary = still_open = 0
    for record in records:
        if not record.counts_as_interruption or not start_us <= record.start_us < end_us or record.customers <= 0:
            continue
        if record.momentary:
            momentary += 1
            cm += record.customers
            continue
        stop = record.end_us if record.end_us >= 0 else cutoff
        if record.end_us < 0:
            still_open += 1
        sustained += 1
        ci += record.customers
        cmi += record.customers * max(stop - record.start_us, 0) / _US_PER_MIN
    n = float(customers_served)
    saifi = ci / n
    saidi = cmi / n
    return ReliabilityIndices(
        start=start.astimezone(dt.UTC).isoformat(),
        end=end.astimezone(dt.UTC).isoformat(),
        customers_served=customers_served,
        saifi=saifi,
        saidi_min=saidi,
        caidi_min=(saidi / saifi) if saifi > 0 else None,
        maifi=cm / n,
        sustained_outages=sustained,
        momentary_events=momentary,
        customers_interrupted=ci,
        customer_minutes=cmi,
        customers_momentary=cm,
        open_outages=still_open,
    )
