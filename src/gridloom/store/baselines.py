"""The raw baselines a store's ingest is measured against (for benchmarks/mdms.py).

Each writes the same Arrow table the store would get, with none of the store's work (no
duplicate check, no key, no versions), into a fresh place it removes afterwards, and returns
rows per second of the write alone:

- :func:`raw_append_rate`: DuckDB, the table registered as an Arrow view and appended with one
  ``INSERT INTO raw SELECT * FROM batch`` into a new file's table without constraints, committed;
- :func:`raw_copy_rate`: PostgreSQL, one binary COPY of the table (encoded as the store encodes
  it, see :mod:`gridloom.store.pgcopy`) into a new logged table without constraints, committed.
"""

from __future__ import annotations

import tempfile
import time
import uuid
from pathlib import Path

import duckdb
import psycopg
import pyarrow as pa
from psycopg import sql

from gridloom.errors import StoreUnavailable
from gridloom.store.base import quote, redact
from gridloom.store.duckdb import duckdb_type
from gridloom.store.pgcopy import pg_type
from gridloom.store.postgres import copy_into


def raw_append_rate(table: pa.Table, *, directory: str | Path | None = None) -> float:
    """Rows/s of a plain DuckDB append of ``table`` to a new file (in ``directory``, default the
    system's temporary folder; removed afterwards)."""
    with tempfile.TemporaryDirectory(prefix="gridloom-raw-", dir=directory) as folder:
        con = duckdb.connect(str(Path(folder) / "raw.duckdb"))
        try:
            columns = ", ".join(f"{quote(f.name)} {duckdb_type(f.type)}" for f in table.schema)
            con.execute(f"CREATE TABLE raw ({columns})").fetchall()
            con.register("batch", table)
            start = time.perf_counter()
            con.execute("INSERT INTO raw SELECT * FROM batch").fetchall()
            elapsed = time.perf_counter() - start
        finally:
            con.close()
    return float(table.num_rows / elapsed)


def raw_copy_rate(table: pa.Table, url: str) -> float:
    """Rows/s of one binary COPY of ``table`` into a new, unconstrained PostgreSQL table at ``url``
    (in a schema of its own, dropped afterwards)."""
    schema = f"gridloom_raw_{uuid.uuid4().hex[:12]}"
    try:
        conn = psycopg.connect(url, autocommit=True)
    except psycopg.Error as exc:
        raise StoreUnavailable(f"cannot reach PostgreSQL at {redact(url)}: {exc}") from exc
    try:
        target = sql.Identifier(schema, "raw").as_string(conn)
        columns = ", ".join(f"{quote(f.name)} {pg_type(f.type)}" for f in table.schema)
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        conn.execute(f"CREATE TABLE {target} ({columns})")
        start = time.perf_counter()
        with conn.transaction(), conn.cursor() as cursor:
            copy_into(cursor, target, table)
        elapsed = time.perf_counter() - start
    finally:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
        conn.close()
    return float(table.num_rows / elapsed)
