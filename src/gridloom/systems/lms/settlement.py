"""Settlement of events (4.4.2.6): per-account DR credits and each event's performance report.

:func:`settle` turns the per-meter performance (:mod:`.baseline`) into one credit row per account
and event (the columns of billing's ``DR_CREDITS_SCHEMA``, which the LMS reports to the CIS over
DGM-22): the account's meters' reductions summed, only complete meters counted, never below zero
(a customer who used more than the baseline is not charged for it by a credit program — CPP customers
pay through their tariff's critical-peak rate). :func:`event_reports` sums each event for the DMS
(AMI-7): how much was asked, how much was delivered, by how many.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from gridloom.errors import BaselineInputError

TIMESTAMP = pa.timestamp("us", tz="UTC")
#: The same columns as billing's DR_CREDITS_SCHEMA (a test keeps them equal; systems do not import each other).
CREDITS_SCHEMA = pa.schema(
    [
        ("account_id", pa.string()),
        ("event_id", pa.string()),
        ("start_at", TIMESTAMP),
        ("end_at", TIMESTAMP),
        ("meter_ids", pa.string()),
        ("reduction_wh", pa.float64()),
        ("credit_per_kwh", pa.float64()),
    ]
)


def settle(performance: pa.Table, enrolments: pa.Table, *, credit_per_kwh: float | Mapping[str, float]) -> pa.Table:
    """DR credits per (account, event) from per-meter performance; ``enrolments`` maps ``account_id`` -> ``meter_id``.

    ``credit_per_kwh`` is one rate, or a rate per event id (an event missing from it is refused).
    """
    for name in ("account_id", "meter_id"):
        if name not in enrolments.column_names:
            raise BaselineInputError(f"enrolments lack the column {name!r} (account_id, meter_id)")
    perf = performance.filter(performance["complete"])
    joined = perf.join(enrolments.select(["account_id", "meter_id"]), keys="meter_id", join_type="inner")
    if joined.num_rows == 0:
        return CREDITS_SCHEMA.empty_table()
    grouped = joined.group_by(["account_id", "event_id"], use_threads=False).aggregate(
        [
            ("reduction_wh", "sum"),
            ("start_at", "min"),
            ("end_at", "max"),
            ("meter_id", "distinct"),
        ]
    )
    events = grouped["event_id"].to_pylist()
    if isinstance(credit_per_kwh, Mapping):
        missing = sorted({e for e in events if e not in credit_per_kwh})
        if missing:
            raise BaselineInputError(f"no credit rate for event(s) {', '.join(missing)}")
        rates = np.array([float(credit_per_kwh[e]) for e in events])
    else:
        rates = np.full(len(events), float(credit_per_kwh))
    if np.any(~np.isfinite(rates) | (rates < 0)):
        raise BaselineInputError("credit_per_kwh must be a finite number >= 0")
    reduction = np.maximum(np.asarray(grouped["reduction_wh_sum"].to_numpy(zero_copy_only=False), np.float64), 0.0)
    meters = [",".join(sorted(m)) for m in grouped["meter_id_distinct"].to_pylist()]
    table = pa.table(
        {
            "account_id": grouped["account_id"],
            "event_id": grouped["event_id"],
            "start_at": grouped["start_at_min"],
            "end_at": grouped["end_at_max"],
            "meter_ids": pa.array(meters, pa.string()),
            "reduction_wh": reduction,
            "credit_per_kwh": rates,
        },
        schema=CREDITS_SCHEMA,
    )
    return table.sort_by([("event_id", "ascending"), ("account_id", "ascending")])


@dataclass(frozen=True)
class EventReport:
    """One event's performance, as the LMS reports it to the DMS and the CIS."""

    event_id: str
    start_at: dt.datetime
    end_at: dt.datetime
    method: str
    meters: int
    complete: int  # meters with a baseline and every event read
    baseline_wh: float
    actual_wh: float
    reduction_wh: float
    requested_w: float | None
    reduction_w: float  # average over the event
    delivered_share: float | None  # reduction_w / requested_w

    def as_dict(self) -> dict[str, object]:
        return {
            "event_id": self.event_id,
            "start_at": self.start_at.isoformat(),
            "end_at": self.end_at.isoformat(),
            "method": self.method,
            "meters": self.meters,
            "complete": self.complete,
            "baseline_wh": round(self.baseline_wh, 1),
            "actual_wh": round(self.actual_wh, 1),
            "reduction_wh": round(self.reduction_wh, 1),
            "reduction_w": round(self.reduction_w, 1),
            "requested_w": self.requested_w,
            "delivered_share": None if self.delivered_share is None else round(self.delivered_share, 4),
        }


def event_reports(performance: pa.Table, *, requested_w: Mapping[str, float] | None = None) -> list[EventReport]:
    """One report per event in ``performance``, in start order."""
    reports = []
    for event_id in pc.unique(performance["event_id"]).to_pylist():
        rows = performance.filter(pc.equal(performance["event_id"], event_id))
        ok = rows.filter(rows["complete"])
        start, end = rows["start_at"][0].as_py(), rows["end_at"][0].as_py()
        hours = (end - start).total_seconds() / 3600.0
        reduction_wh = float(pc.sum(ok["reduction_wh"]).as_py() or 0.0)
        asked = None if requested_w is None else requested_w.get(event_id)
        reduction_w = reduction_wh / hours
        reports.append(
            EventReport(
                event_id=event_id,
                start_at=start,
                end_at=end,
                method=str(rows["method"][0].as_py()),
                meters=rows.num_rows,
                complete=ok.num_rows,
                baseline_wh=float(pc.sum(ok["baseline_wh"]).as_py() or 0.0),
                actual_wh=float(pc.sum(ok["actual_wh"]).as_py() or 0.0),
                reduction_wh=reduction_wh,
                requested_w=asked,
                reduction_w=reduction_w,
                delivered_share=None if not asked else reduction_w / asked,
            )
        )
    return sorted(reports, key=lambda r: r.start_at)
