"""Billing: bill determinants from validated reads, tariffs applied, one bill per account per cycle.

Every line of a bill says which meters, intervals and read versions it was computed from
(:mod:`~gridloom.systems.billing.engine`), and :func:`trace_line` finds those exact reads again.
Tariffs are defined in :mod:`gridloom.systems.cis.tariffs` (the CIS assigns them to accounts).
"""

from gridloom.store.base import ReadsSource
from gridloom.store.versions import current_versions
from gridloom.systems.billing.credits import DR_CREDITS_SCHEMA
from gridloom.systems.billing.cycle import BillingCycle, CriticalPeakEvent, PriceSeries, events_from_csv
from gridloom.systems.billing.engine import BILLS_SCHEMA, LINES_SCHEMA, ROWS_SCHEMA, Rated, RatingInputs, rate_accounts
from gridloom.systems.billing.persist import create_billing_tables, load_bills, save_run
from gridloom.systems.billing.run import (
    Bill,
    BillingRun,
    BillLine,
    TableReads,
    bill_from_tables,
    run_billing,
)
from gridloom.systems.billing.trace import trace_line

__all__ = [
    "BILLS_SCHEMA",
    "DR_CREDITS_SCHEMA",
    "LINES_SCHEMA",
    "ROWS_SCHEMA",
    "Bill",
    "BillLine",
    "BillingCycle",
    "BillingRun",
    "CriticalPeakEvent",
    "PriceSeries",
    "Rated",
    "RatingInputs",
    "ReadsSource",
    "TableReads",
    "bill_from_tables",
    "create_billing_tables",
    "current_versions",
    "events_from_csv",
    "load_bills",
    "rate_accounts",
    "run_billing",
    "save_run",
    "trace_line",
]
