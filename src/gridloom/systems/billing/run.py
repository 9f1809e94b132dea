"""A billing run: every account of the CIS (or some), one cycle, reads from the meter data store.

Accounts are rated in batches (``batch_accounts`` at a time: their meters' current reads are
fetched, rated and released), so a run over 100,000 accounts x a month of 15-minute reads (288
million reads) never holds more than one batch in memory. The reads come from anything with the
store's ``reads(meter_ids=, start=, end=, versions=)`` method: :class:`MeterDataStore`, or
:class:`TableReads` over an Arrow table.
"""

from __future__ import annotations

import datetime as dt
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from gridloom.errors import NoUsageData, UnknownCisRecord
from gridloom.store.base import ReadsSource
from gridloom.store.schema import READS_SCHEMA
from gridloom.store.versions import current_versions
from gridloom.systems.billing.cycle import BillingCycle, CriticalPeakEvent, PriceSeries
from gridloom.systems.billing.engine import BILLS_SCHEMA, LINES_SCHEMA, RatingInputs, money, rate_accounts
from gridloom.systems.cis.model import Cis


@dataclass
class TableReads:
    """A reads source over an Arrow table holding every version (tests, benchmarks, imports)."""

    table: pa.Table

    def reads(
        self,
        *,
        meter_ids: Sequence[str] | None = None,
        start: dt.datetime | None = None,
        end: dt.datetime | None = None,
        versions: Literal["current", "original", "all"] = "current",
    ) -> pa.Table:
        t = self.table
        ts_type = t.schema.field("interval_start").type
        mask = pa.array(np.ones(t.num_rows, bool))
        if meter_ids is not None:
            mask = pc.and_(mask, pc.is_in(t["meter_id"], value_set=pa.array(list(meter_ids), pa.string())))
        if start is not None:
            mask = pc.and_(mask, pc.greater_equal(t["interval_start"], pa.scalar(start, ts_type)))
        if end is not None:
            mask = pc.and_(mask, pc.less(t["interval_start"], pa.scalar(end, ts_type)))
        t = t.filter(mask)
        if versions == "original":
            return t.filter(pc.equal(t["version"], 0))
        return current_versions(t) if versions == "current" else t


@dataclass(frozen=True)
class BillLine:
    line_no: int
    kind: str
    bucket: str
    label: str
    quantity: float
    unit: str
    rate: float
    amount: Decimal
    meter_ids: tuple[str, ...]
    interval_from: dt.datetime | None
    interval_to: dt.datetime | None
    intervals: int
    versions: dict[int, int]  # version -> intervals
    estimated_intervals: int
    edited_intervals: int


@dataclass(frozen=True)
class Bill:
    """One bill as a person reads it (amounts as decimals)."""

    bill_id: str
    account_id: str
    cycle: str
    tariff_id: str
    currency: str
    status: str
    hold_reason: str | None
    period_start_at: dt.datetime
    period_end_at: dt.datetime
    total: Decimal
    energy_delivered_wh: float
    energy_received_wh: float
    peak_demand_w: float
    intervals: int
    intervals_expected: int
    estimated_share: float
    reads_as_of: dt.datetime | None
    lines: tuple[BillLine, ...]

    def line(self, bucket: str) -> BillLine:
        """The line of a bucket (``energy``, ``period:peak``, ``tier:2``, ``demand``, ``net_metering``, ``fixed``…)."""
        for line in self.lines:
            if line.bucket == bucket:
                return line
        raise KeyError(f"bill {self.bill_id} has no {bucket!r} line (it has {[x.bucket for x in self.lines]})")


def bill_from_tables(bills: pa.Table, lines: pa.Table, account_id: str) -> Bill:
    """The (latest) bill of one account out of a run's tables."""
    rows = bills.filter(pc.equal(bills["account_id"], account_id))
    if rows.num_rows == 0:
        raise UnknownCisRecord("bill for account", account_id)
    b = rows.sort_by([("revision", "descending")]).slice(0, 1).to_pylist()[0]
    mine = lines.filter(pc.equal(lines["bill_id"], b["bill_id"])).sort_by("line_no").to_pylist()
    return Bill(
        bill_id=b["bill_id"], account_id=account_id, cycle=b["cycle"], tariff_id=b["tariff_id"], currency=b["currency"],
        status=b["status"], hold_reason=b["hold_reason"], period_start_at=b["period_start_at"],
        period_end_at=b["period_end_at"], total=money(b["total_cents"]), energy_delivered_wh=b["energy_delivered_wh"],
        energy_received_wh=b["energy_received_wh"], peak_demand_w=b["peak_demand_w"], intervals=b["intervals"],
        intervals_expected=b["intervals_expected"], estimated_share=b["estimated_share"], reads_as_of=b["reads_as_of"],
        lines=tuple(
            BillLine(
                line_no=x["line_no"], kind=x["kind"], bucket=x["bucket"], label=x["label"], quantity=x["quantity"],
                unit=x["unit"], rate=x["rate"], amount=money(x["amount_cents"]),
                meter_ids=tuple(m for m in x["meter_ids"].split(",") if m),
                interval_from=x["interval_from"], interval_to=x["interval_to"], intervals=x["intervals"],
                versions={int(v): int(c) for v, c in (p.split(":") for p in x["versions"].split(",") if p)},
                estimated_intervals=x["estimated_intervals"], edited_intervals=x["edited_intervals"],
            )
            for x in mine
        ),
    )  # fmt: skip


@dataclass
class BillingRun:
    """The outcome of a run: bills and lines (Arrow), and what it measured."""

    run_id: str
    cycle: BillingCycle
    bills: pa.Table
    lines: pa.Table
    unbilled_wh: float
    reads_used: int
    seconds: dict[str, float] = field(default_factory=dict)

    def bill(self, account_id: str) -> Bill:
        return bill_from_tables(self.bills, self.lines, account_id)

    def summary(self) -> dict[str, object]:
        status = self.bills["status"]
        issued = self.bills.filter(pc.equal(status, "issued"))
        return {
            "run_id": self.run_id,
            "cycle": self.cycle.cycle_id,
            "bills": self.bills.num_rows,
            "issued": issued.num_rows,
            "held": int(pc.sum(pc.cast(pc.equal(status, "held"), pa.int64())).as_py() or 0),
            "lines": self.lines.num_rows,
            "billed_total": str(money(int(pc.sum(issued["total_cents"]).as_py() or 0))),
            "energy_delivered_kwh": round(float(pc.sum(self.bills["energy_delivered_wh"]).as_py() or 0) / 1000, 3),
            "unbilled_kwh": round(self.unbilled_wh / 1000, 3),
            "reads_used": self.reads_used,
            "seconds": {k: round(v, 3) for k, v in self.seconds.items()},
        }


def run_billing(
    cis: Cis,
    source: ReadsSource,
    *,
    cycle: str | BillingCycle,
    account_ids: Sequence[str] | None = None,
    events: Sequence[CriticalPeakEvent] = (),
    prices: PriceSeries | None = None,
    min_coverage: float = 0.99,
    dr_credits: pa.Table | None = None,
    batch_accounts: int = 2_000,
    progress: Callable[[int, int], None] | None = None,
) -> BillingRun:
    """Rate one cycle for ``account_ids`` (default: every account served in the cycle).

    Refuses unknown accounts (with close matches) and a cycle in which none of the accounts
    has a single read (:class:`NoUsageData`); accounts with too few reads get a *held* bill.
    ``dr_credits`` (DR_CREDITS_SCHEMA, from the LMS's settlement) adds a credit line per event that
    ended in the cycle.
    """
    cyc = cycle if isinstance(cycle, BillingCycle) else BillingCycle.month(cycle, timezone=cis.timezone)
    if account_ids is not None:
        cis.check_accounts(list(account_ids))
        wanted = list(dict.fromkeys(account_ids))
    else:
        wanted = pc.unique(cis.service_windows(start=cyc.start_at, end=cyc.end_at)["account_id"]).to_pylist()
    wanted.sort()
    run_id = f"{cyc.cycle_id}-{uuid.uuid4().hex[:8]}"
    inputs = RatingInputs(cyc, tuple(events), prices, min_coverage, run_id, dt.datetime.now(dt.UTC), dr_credits)
    windows = cis.service_windows(wanted, start=cyc.start_at, end=cyc.end_at)
    bills, lines = [], []
    unbilled, used = 0.0, 0
    seconds = {"read": 0.0, "rate": 0.0}
    for lo in range(0, len(wanted), batch_accounts):
        batch = wanted[lo : lo + batch_accounts]
        meters = pc.unique(
            windows.filter(pc.is_in(windows["account_id"], value_set=pa.array(batch, pa.string())))["meter_id"]
        ).to_pylist()
        t = time.perf_counter()
        reads = (
            source.reads(meter_ids=meters, start=cyc.start_at, end=cyc.end_at, versions="current") if meters else None
        )
        seconds["read"] += time.perf_counter() - t
        t = time.perf_counter()
        rated = rate_accounts(
            reads if reads is not None else READS_SCHEMA.empty_table(), cis=cis, account_ids=batch, inputs=inputs
        )
        seconds["rate"] += time.perf_counter() - t
        bills.append(rated.bills)
        lines.append(rated.lines)
        unbilled += rated.unbilled_wh
        used += rated.reads_used
        if progress is not None:
            progress(min(lo + batch_accounts, len(wanted)), len(wanted))
    all_bills = pa.concat_tables(bills) if bills else BILLS_SCHEMA.empty_table()
    if used == 0:
        raise NoUsageData(cyc.cycle_id, accounts=list(account_ids) if account_ids is not None else None)
    return BillingRun(
        run_id=run_id,
        cycle=cyc,
        bills=all_bills,
        lines=pa.concat_tables(lines) if lines else LINES_SCHEMA.empty_table(),
        unbilled_wh=unbilled,
        reads_used=used,
        seconds=seconds,
    )
