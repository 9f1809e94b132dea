"""The CIS in the store's database: ``cis_*`` tables, saved and loaded whole in one transaction.

Saving replaces the CIS tables' contents atomically (a reader sees the old CIS or the new one,
never half of it); the tariff book is stored as one JSON document per tariff so a tariff is
exactly what was written.
"""

from __future__ import annotations

import pyarrow as pa

from gridloom.errors import CisDataError
from gridloom.systems.cis.db import Database
from gridloom.systems.cis.model import TABLE_SCHEMAS, Cis
from gridloom.systems.cis.tariffs import parse_tariff, tariff_json

_DDL: dict[str, str] = {
    "customers": "customer_id VARCHAR PRIMARY KEY, name VARCHAR, customer_class VARCHAR NOT NULL",
    "service_points": "service_point_id VARCHAR PRIMARY KEY, location VARCHAR",
    "premises": "premise_id VARCHAR PRIMARY KEY, service_point_id VARCHAR NOT NULL, address VARCHAR",
    "meters": "meter_id VARCHAR NOT NULL, premise_id VARCHAR NOT NULL, installed_at TIMESTAMPTZ NOT NULL, "
    "removed_at TIMESTAMPTZ",
    "accounts": "account_id VARCHAR PRIMARY KEY, customer_id VARCHAR NOT NULL, premise_id VARCHAR NOT NULL, "
    "tariff_id VARCHAR NOT NULL, move_in_at TIMESTAMPTZ NOT NULL, move_out_at TIMESTAMPTZ",
    "enrolments": "account_id VARCHAR NOT NULL, program VARCHAR NOT NULL, enrolled_at TIMESTAMPTZ NOT NULL, "
    "ended_at TIMESTAMPTZ",
    "tariffs": "tariff_id VARCHAR PRIMARY KEY, kind VARCHAR NOT NULL, definition VARCHAR NOT NULL",
    "settings": "key VARCHAR PRIMARY KEY, value VARCHAR NOT NULL",
}
TABLES = tuple(f"cis_{name}" for name in _DDL)


def create_cis_tables(db: Database) -> None:
    """Create the ``cis_*`` tables if missing (idempotent)."""
    with db.transaction():
        for name, columns in _DDL.items():
            db.execute(f"CREATE TABLE IF NOT EXISTS cis_{name} ({columns})")


def has_cis(db: Database) -> bool:
    """True when the database holds a saved CIS."""
    sql = "SELECT count(*) FROM information_schema.tables WHERE table_name = 'cis_settings'"
    if db.dialect == "postgresql":
        sql += " AND table_schema = current_schema()"
    return bool(db.scalar(sql)) and bool(db.scalar("SELECT count(*) FROM cis_settings"))


def save_cis(db: Database, cis: Cis) -> None:
    """Validate and store the whole CIS, replacing what was there, atomically."""
    cis.validate()
    create_cis_tables(db)
    tariffs = pa.table(
        {
            "tariff_id": list(cis.tariffs),
            "kind": [str(t.kind) for t in cis.tariffs.values()],
            "definition": [tariff_json(t) for t in cis.tariffs.values()],
        }
    )
    with db.transaction():
        for table in TABLES:
            db.execute(f"DELETE FROM {table}")  # noqa: S608 (fixed table names)
        for name, table in cis.tables().items():
            db.insert_arrow(f"cis_{name}", table)
        db.insert_arrow("cis_tariffs", tariffs)
        db.execute("INSERT INTO cis_settings (key, value) VALUES (?, ?)", ["timezone", cis.timezone])


def load_cis(db: Database) -> Cis:
    """The CIS saved in this database; refuses when there is none."""
    if not has_cis(db):
        raise CisDataError("this store holds no CIS yet: create one first (gridloom billing init-cis)")
    tables: dict[str, pa.Table] = {}
    for name, schema in TABLE_SCHEMAS.items():
        columns = ", ".join(schema.names)
        order = schema.names[0]
        tables[name] = db.query_arrow(f"SELECT {columns} FROM cis_{name} ORDER BY {order}", schema=schema)  # noqa: S608
    tariffs = {row[0]: parse_tariff(row[1]) for row in db.rows("SELECT tariff_id, definition FROM cis_tariffs")}
    timezone = db.scalar("SELECT value FROM cis_settings WHERE key = ?", ["timezone"])
    return Cis(**tables, tariffs=tariffs, timezone=str(timezone))
