"""From a bill line back to the exact reads behind it.

A bill records ``reads_as_of`` — the newest ``recorded_at`` among the reads it used — and
versions only ever get added, so the reads a bill used are, for each (meter, interval) of the
line's meters and range, the highest version recorded at or before ``reads_as_of``. Later
estimates or edits add newer versions and change nothing here: the trace of a bill sent in
December still gives December's numbers in March.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from gridloom.errors import BillingInputError
from gridloom.store.base import ReadsSource
from gridloom.store.versions import current_versions
from gridloom.systems.billing.engine import ROWS_SCHEMA, RatingInputs, rate_accounts
from gridloom.systems.billing.run import Bill, BillLine
from gridloom.systems.cis.model import Cis


def trace_line(bill: Bill, line: BillLine, *, cis: Cis, source: ReadsSource, inputs: RatingInputs) -> pa.Table:
    """The reads behind ``line`` of ``bill``, as they stood when the bill was made (:data:`ROWS_SCHEMA`).

    ``inputs`` must be the run's (same cycle, events and prices). A fixed charge has no reads
    behind it (an empty table). Summing ``energy_delivered_wh`` (or ``energy_received_wh`` for
    the net-metering credit) over the rows gives the line's quantity in Wh; for the demand line
    the rows are the intervals of the peak 15 minutes.
    """
    if inputs.cycle.cycle_id != bill.cycle:
        raise BillingInputError(f"bill {bill.bill_id} is of cycle {bill.cycle}, not {inputs.cycle.cycle_id}")
    if line.kind == "fixed" or line.interval_from is None or line.interval_to is None or not line.meter_ids:
        return ROWS_SCHEMA.empty_table()
    every = source.reads(
        meter_ids=list(line.meter_ids), start=inputs.cycle.start_at, end=inputs.cycle.end_at, versions="all"
    )
    reads = current_versions(every, as_of=bill.reads_as_of) if bill.reads_as_of is not None else every.slice(0, 0)
    rated = rate_accounts(reads, cis=cis, account_ids=[bill.account_id], inputs=inputs, keep_rows=True)
    rows = rated.rows
    if rows is None:  # keep_rows=True always returns rows; this keeps the type checker informed
        raise BillingInputError("no trace rows")
    if line.kind == "energy":
        rows = rows.filter(pc.equal(rows["bucket"], line.bucket))
    elif line.kind == "net_metering_credit":
        rows = rows.filter(rows["net_metering"])
    elif line.kind == "demand":
        rows = rows.filter(rows["peak_block"])
    ts = rows.schema.field("interval_start").type
    in_range = pc.and_(
        pc.greater_equal(rows["interval_start"], pa.scalar(line.interval_from, ts)),
        pc.less(rows["interval_start"], pa.scalar(line.interval_to, ts)),
    )
    return rows.filter(in_range)
