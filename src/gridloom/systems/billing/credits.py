"""Demand-response credits on bills: the reduction the LMS settled per account and event, paid per kWh.

The LMS settles each event from MDMS reads (baseline minus actual) and reports the result to the
CIS (DGM-22); billing turns each row into a credit line on the bill of the cycle in which the event
ended: ``quantity`` = reduction in kWh (three decimals, never negative), ``amount`` = ``-quantity *
credit_per_kwh`` rounded to the cent. Critical-peak *charges* need nothing here: a
:class:`~gridloom.systems.cis.tariffs.CriticalPeakTariff` bills the event hours at its critical
rate from the events given to the run.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from gridloom.errors import BillingInputError

TIMESTAMP = pa.timestamp("us", tz="UTC")
DR_CREDITS_SCHEMA = pa.schema(
    [
        ("account_id", pa.string()),
        ("event_id", pa.string()),
        ("start_at", TIMESTAMP),
        ("end_at", TIMESTAMP),
        ("meter_ids", pa.string()),  # comma-separated, sorted
        ("reduction_wh", pa.float64()),
        ("credit_per_kwh", pa.float64()),
    ]
)
CREDIT_LINE_NO = 85  # after net metering (80), before demand (90); one line per event, in event order


@dataclass(frozen=True)
class CreditRows:
    """The credit rows of one batch of accounts, ready for the bill's lines."""

    account: npt.NDArray[np.int64]  # position in the batch's sorted accounts
    event_id: list[str]
    label: list[str]
    quantity_kwh: npt.NDArray[np.float64]
    rate: npt.NDArray[np.float64]
    start_us: npt.NDArray[np.int64]
    end_us: npt.NDArray[np.int64]
    meter_ids: list[str]


def check_credits(credits: pa.Table) -> pa.Table:
    """The table with DR_CREDITS_SCHEMA's columns, or :class:`BillingInputError` naming what is wrong."""
    missing = [f.name for f in DR_CREDITS_SCHEMA if f.name not in credits.column_names]
    if missing:
        raise BillingInputError(f"dr_credits lacks the column(s) {', '.join(missing)} (DR_CREDITS_SCHEMA)")
    table = credits.select(DR_CREDITS_SCHEMA.names).cast(DR_CREDITS_SCHEMA)
    for name in ("reduction_wh", "credit_per_kwh"):
        values = np.asarray(pc.fill_null(table[name], np.nan).to_numpy(zero_copy_only=False), np.float64)
        bad = np.flatnonzero(~np.isfinite(values) | (values < 0))
        if bad.size:
            row = int(bad[0])
            raise BillingInputError(
                f"dr_credits row {row + 1} (account {table['account_id'][row]}, event {table['event_id'][row]}): "
                f"{name} must be a finite number >= 0"
            )
    return table


def credit_rows(
    credits: pa.Table, account_ids: pa.ChunkedArray | pa.Array, *, start_us: int, end_us: int
) -> CreditRows:
    """Credits of these accounts for events that ended in ``(start, end]`` (the cycle), in event order."""
    table = check_credits(credits)
    end = np.asarray(pc.cast(table["end_at"], pa.int64()).to_numpy(zero_copy_only=False), np.int64)
    acct = np.asarray(pc.fill_null(pc.index_in(table["account_id"], value_set=account_ids), -1).to_numpy(), np.int64)
    keep = np.flatnonzero((acct >= 0) & (end > start_us) & (end <= end_us))
    start = np.asarray(pc.cast(table["start_at"], pa.int64()).to_numpy(zero_copy_only=False), np.int64)
    keep = keep[np.lexsort((table["event_id"].to_numpy(zero_copy_only=False)[keep], start[keep]))]
    events = [str(x) for x in table["event_id"].take(pa.array(keep)).to_pylist()]
    return CreditRows(
        account=acct[keep],
        event_id=events,
        label=[f"Demand response credit, event {e}" for e in events],
        quantity_kwh=np.round(np.asarray(table["reduction_wh"].to_numpy(), np.float64)[keep] / 1000.0, 3),
        rate=np.asarray(table["credit_per_kwh"].to_numpy(), np.float64)[keep],
        start_us=start[keep],
        end_us=end[keep],
        meter_ids=[str(x) for x in table["meter_ids"].take(pa.array(keep)).to_pylist()],
    )
