"""Bills in the store's database: ``billing_bills`` and ``billing_lines``.

One bill per account per cycle: saving a run for accounts that already have a bill in force
for the cycle is refused (:class:`BillExists`) unless it is a re-bill, which marks the earlier
bill ``cancelled`` and stores the new one as the next revision — nothing is deleted, so every
bill ever sent stays with its lines and their trace.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from gridloom.errors import BillExists
from gridloom.systems.billing.engine import BILLS_SCHEMA, LINES_SCHEMA
from gridloom.systems.billing.run import BillingRun
from gridloom.systems.cis.db import Database

_SQL_TYPE = {
    pa.string(): "VARCHAR",
    pa.int64(): "BIGINT",
    pa.int32(): "INTEGER",
    pa.float64(): "DOUBLE",
    pa.timestamp("us", tz="UTC"): "TIMESTAMPTZ",
}


def _ddl(name: str, schema: pa.Schema, key: str) -> str:
    columns = ", ".join(f"{f.name} {_SQL_TYPE[f.type]}" for f in schema)
    return f"CREATE TABLE IF NOT EXISTS {name} ({columns}, PRIMARY KEY ({key}))"


def create_billing_tables(db: Database) -> None:
    with db.transaction():
        db.execute(_ddl("billing_bills", BILLS_SCHEMA, "bill_id"))
        db.execute(_ddl("billing_lines", LINES_SCHEMA, "bill_id, line_no"))


def save_run(db: Database, run: BillingRun, *, rebill: bool = False) -> BillingRun:
    """Store a run's bills and lines atomically; returns the run with revisions and bill ids as stored."""
    create_billing_tables(db)
    cycle = run.cycle.cycle_id
    with db.transaction():
        existing = db.query_arrow(
            "SELECT account_id, revision, status FROM billing_bills WHERE cycle = ?",
            [cycle],
            schema=pa.schema([("account_id", pa.string()), ("revision", pa.int32()), ("status", pa.string())]),
        )
        mine = existing.filter(pc.is_in(existing["account_id"], value_set=run.bills["account_id"]))
        in_force = mine.filter(pc.not_equal(mine["status"], "cancelled"))
        if in_force.num_rows and not rebill:
            raise BillExists(cycle, sorted(in_force["account_id"].to_pylist()))
        bills, lines = run.bills, run.lines
        if mine.num_rows:
            last = mine.group_by("account_id").aggregate([("revision", "max")])
            db.execute("CREATE TEMP TABLE IF NOT EXISTS billing_rebill (account_id VARCHAR)")
            db.execute("DELETE FROM billing_rebill")
            db.insert_arrow("billing_rebill", in_force.select(["account_id"]))
            db.execute(
                "UPDATE billing_bills SET status = 'cancelled' WHERE cycle = ? AND status <> 'cancelled' "
                "AND account_id IN (SELECT account_id FROM billing_rebill)",
                [cycle],
            )
            bills, lines = _revise(bills, lines, last, cycle)
        db.insert_arrow("billing_bills", bills)
        db.insert_arrow("billing_lines", lines)
    return BillingRun(run.run_id, run.cycle, bills, lines, run.unbilled_wh, run.reads_used, run.seconds)


def _revise(bills: pa.Table, lines: pa.Table, last: pa.Table, cycle: str) -> tuple[pa.Table, pa.Table]:
    """Give re-billed accounts the next revision (and the bill id that says so)."""
    idx = pc.index_in(bills["account_id"], value_set=last["account_id"])
    prev = pc.take(last["revision_max"], pc.fill_null(idx, 0))
    revision = pc.if_else(pc.is_null(idx), bills["revision"], pc.add(prev, 1)).cast(pa.int32())
    bill_id = pc.binary_join_element_wise(bills["account_id"], pa.scalar(cycle), pc.cast(revision, pa.string()), "/")
    old_to_new = dict(zip(bills["bill_id"].to_pylist(), bill_id.to_pylist(), strict=True))
    bills = bills.set_column(bills.schema.get_field_index("revision"), "revision", revision)
    bills = bills.set_column(0, "bill_id", bill_id)
    new_ids = pa.array([old_to_new[b] for b in lines["bill_id"].to_pylist()], pa.string())
    return bills, lines.set_column(0, "bill_id", new_ids)


def load_bills(db: Database, *, cycle: str, account_ids: list[str] | None = None) -> tuple[pa.Table, pa.Table]:
    """Bills (every revision) and their lines of a cycle, optionally for some accounts."""
    create_billing_tables(db)
    names = ", ".join(BILLS_SCHEMA.names)
    bills = db.query_arrow(
        f"SELECT {names} FROM billing_bills WHERE cycle = ? ORDER BY account_id, revision",  # noqa: S608
        [cycle],
        schema=BILLS_SCHEMA,
    )
    if account_ids is not None:
        bills = bills.filter(pc.is_in(bills["account_id"], value_set=pa.array(account_ids, pa.string())))
    line_names = ", ".join(f"l.{n}" for n in LINES_SCHEMA.names)
    lines = db.query_arrow(
        f"SELECT {line_names} FROM billing_lines l JOIN billing_bills b ON l.bill_id = b.bill_id "  # noqa: S608
        "WHERE b.cycle = ? ORDER BY l.bill_id, l.line_no",
        [cycle],
        schema=LINES_SCHEMA,
    )
    lines = lines.filter(pc.is_in(lines["bill_id"], value_set=bills["bill_id"]))
    return bills, lines
