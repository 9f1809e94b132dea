"""The embedded store: one DuckDB file (or ``:memory:``), batches appended as Arrow.

A batch is registered as a view over its Arrow memory (no copy) and inserted with one
``INSERT ... SELECT`` that anti-joins what is already stored, restricted to the batch's time and
meter range so DuckDB's zone maps skip the rest of the table.

Keys are kept unique by that anti-join under a lock, not by a PRIMARY KEY: measured with
100,000 meters x 96 reads in a file, a PRIMARY KEY on (meter_id, interval_start, version) made
ingest six to ten times slower (0.65-0.93 M against 5-6 M rows/s), the file four times larger,
and its ART index held in memory grew by ~2 GB per 10 M reads (a million meters' day would not
fit in this machine's memory). ``key_constraint=True`` creates new tables
with the PRIMARY KEY anyway, for those who write to the file with other tools too. DuckDB lets a
single process write a file; inside it, every store on the same file shares one lock.
"""

# SQL here is composed from the store schema's own table and column names (fixed in schema.py,
# quoted where they vary); every value is a bound parameter or an Arrow view, never text.
# ruff: noqa: S608

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa

from gridloom.errors import StoreConflict, StoreError, StoreInputError, StoreUnavailable
from gridloom.store.base import (
    ORDINAL,
    VALUE_COLUMNS,
    Clock,
    Filters,
    MeterDataStore,
    Versions,
    key_bounds,
    no_interval_s,
    quote,
    time_conditions,
)
from gridloom.store.schema import READS, READS_SCHEMA, TABLES, TableSpec

SCHEMA_VERSION = 1
META_TABLE = "gridloom_store_meta"

_LOCKS: dict[str, threading.RLock] = {}
_LOCKS_GUARD = threading.Lock()


def _lock_for(path: str) -> threading.RLock:
    """One lock per database file in this process (DuckDB shares one instance per file)."""
    if path == ":memory:":
        return threading.RLock()
    with _LOCKS_GUARD:
        return _LOCKS.setdefault(os.path.realpath(path), threading.RLock())


def duckdb_type(kind: pa.DataType) -> str:
    if pa.types.is_string(kind):
        return "VARCHAR"
    if pa.types.is_timestamp(kind) and kind.tz is not None:
        return "TIMESTAMPTZ"
    if pa.types.is_float64(kind):
        return "DOUBLE"
    if pa.types.is_int32(kind):
        return "INTEGER"
    if pa.types.is_uint32(kind):
        return "UINTEGER"
    if pa.types.is_int64(kind):
        return "BIGINT"
    raise StoreInputError(f"no DuckDB column type for Arrow type {kind}")


def create_table_sql(spec: TableSpec, *, key_constraint: bool, name: str | None = None) -> str:
    columns = ", ".join(
        f"{quote(f.name)} {duckdb_type(f.type)}{' NOT NULL' if f.name in spec.not_null else ''}" for f in spec.schema
    )
    key = f", PRIMARY KEY ({', '.join(map(quote, spec.key))})" if key_constraint else ""
    return f"CREATE TABLE IF NOT EXISTS {name or spec.name} ({columns}{key})"


class DuckDBStore(MeterDataStore):
    """Meter data in a DuckDB file (created with its folder if missing), or ``":memory:"``."""

    def __init__(
        self, path: str | Path = ":memory:", *, clock: Clock | None = None, key_constraint: bool = False
    ) -> None:
        super().__init__(clock=clock)
        self.path = str(path)
        self.url = self.path
        self._lock = _lock_for(self.path)
        try:
            if self.path != ":memory:":
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            # Every query that needs an order says ORDER BY; without the promise of insertion order,
            # an ingest's anti-join runs its insert on every thread (measured: 2.3 -> 2.0 s for 9 M reads).
            self._con = duckdb.connect(self.path, config={"preserve_insertion_order": False})
        except (OSError, duckdb.Error) as exc:
            raise StoreUnavailable(f"cannot open the DuckDB store {self.path}: {exc}") from exc
        try:
            self._create(key_constraint=key_constraint)
        except BaseException:
            self._con.close()
            raise

    def close(self) -> None:
        self._con.close()

    def _create(self, *, key_constraint: bool) -> None:
        with self._transaction():
            self._run(f"CREATE TABLE IF NOT EXISTS {META_TABLE} (key VARCHAR PRIMARY KEY, value VARCHAR)")
            rows = self._run(f"SELECT value FROM {META_TABLE} WHERE key = 'schema_version'")
            row = rows[0] if rows else None
            if row is None:
                self._run(f"INSERT INTO {META_TABLE} VALUES ('schema_version', $v)", {"v": str(SCHEMA_VERSION)})
            elif int(row[0]) > SCHEMA_VERSION:
                raise StoreUnavailable(
                    f"{self.path} was written by a newer gridloom"
                    f" (store schema {row[0]}; this one knows {SCHEMA_VERSION})"
                )
            for spec in TABLES.values():
                self._run(create_table_sql(spec, key_constraint=key_constraint))

    # --- transactions and errors --------------------------------------------------------------

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except (duckdb.ConstraintException, duckdb.TransactionException) as exc:
            raise StoreConflict(f"{self.path}: {exc}; nothing was stored") from exc
        except (duckdb.IOException, duckdb.ConnectionException) as exc:
            raise StoreUnavailable(f"{self.path}: {exc}") from exc
        except duckdb.Error as exc:
            raise StoreError(f"{self.path}: {exc}") from exc

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        with self._lock, self._errors():
            self._con.begin()
            try:
                yield
            except BaseException:
                self._con.rollback()
                raise
            try:
                self._con.commit()
            except duckdb.Error:
                self._rollback_quietly()
                raise

    def _rollback_quietly(self) -> None:
        with suppress(duckdb.TransactionException):  # a failed COMMIT may have ended the transaction already
            self._con.rollback()

    @contextmanager
    def _arrow(self, **tables: pa.Table) -> Iterator[None]:
        """Arrow tables visible to SQL under these names for the block (no copy)."""
        for name, table in tables.items():
            self._con.register(name, table)
        try:
            yield
        finally:
            for name in tables:
                self._con.unregister(name)

    # --- writes -------------------------------------------------------------------------------

    def _insert_new_reads(self, batch: pa.Table) -> int:
        lo, hi = key_bounds(batch, "interval_start")
        first, last = key_bounds(batch, "meter_id")
        columns = ", ".join(READS_SCHEMA.names)
        sql = f"""
            INSERT INTO reads ({columns})
            SELECT {", ".join(f"b.{c}" for c in READS_SCHEMA.names)} FROM _gl_batch b
            ANTI JOIN (
                SELECT meter_id, interval_start FROM reads
                WHERE version = 0 AND interval_start BETWEEN $lo AND $hi AND meter_id BETWEEN $first AND $last
            ) r ON b.meter_id = r.meter_id AND b.interval_start = r.interval_start
        """
        with self._arrow(_gl_batch=batch):
            return self._rowcount(sql, {"lo": lo, "hi": hi, "first": first, "last": last})

    def _insert_new(self, spec: TableSpec, batch: pa.Table) -> int:
        lo, hi = key_bounds(batch, spec.time_column)
        names = spec.schema.names
        on = " AND ".join(f"b.{quote(k)} = r.{quote(k)}" for k in spec.key)
        sql = f"""
            INSERT INTO {spec.name} ({", ".join(map(quote, names))})
            SELECT {", ".join(f"b.{quote(c)}" for c in names)} FROM _gl_batch b
            ANTI JOIN (
                SELECT {", ".join(map(quote, spec.key))} FROM {spec.name}
                WHERE {quote(spec.time_column)} BETWEEN $lo AND $hi
            ) r
            ON {on}
        """
        with self._arrow(_gl_batch=batch.select(names)):
            return self._rowcount(sql, {"lo": lo, "hi": hi})

    def _insert_versions(self, rows: pa.Table, *, carried: tuple[str, ...]) -> pa.Table:
        values = [
            (f"coalesce(cur.{c}, 0)" if c == "quality" else f"cur.{c}") if c in carried else f"s.{c}"
            for c in VALUE_COLUMNS
        ]
        current = (
            "LEFT JOIN reads cur ON cur.meter_id = s.meter_id AND cur.interval_start = s.interval_start"
            " AND cur.version = top.v"
            if carried
            else ""
        )
        sql = f"""
            CREATE OR REPLACE TEMP TABLE _gl_new AS
            SELECT s.meter_id, s.interval_start,
                   {", ".join(f"{v} AS {c}" for v, c in zip(values, VALUE_COLUMNS, strict=True))},
                   CAST(coalesce(top.v, 0) + row_number() OVER (
                       PARTITION BY s.meter_id, s.interval_start ORDER BY s.{ORDINAL}) AS INTEGER) AS version,
                   s.source, s.rule, s.edited_by, s.recorded_at, s.{ORDINAL}
            FROM _gl_rows s
            LEFT JOIN (
                SELECT r.meter_id, r.interval_start, max(r.version) AS v FROM reads r
                SEMI JOIN _gl_rows k ON r.meter_id = k.meter_id AND r.interval_start = k.interval_start
                WHERE r.interval_start BETWEEN $lo AND $hi AND r.meter_id BETWEEN $first AND $last
                GROUP BY r.meter_id, r.interval_start
            ) top ON top.meter_id = s.meter_id AND top.interval_start = s.interval_start
            {current}
        """
        columns = ", ".join(READS_SCHEMA.names)
        (lo, hi), (first, last) = key_bounds(rows, "interval_start"), key_bounds(rows, "meter_id")
        with self._arrow(_gl_rows=rows):
            self._run(sql, {"lo": lo, "hi": hi, "first": first, "last": last})
        try:
            orphans = self._run("SELECT meter_id, interval_start FROM _gl_new WHERE interval_s IS NULL LIMIT 1")
            if orphans:
                raise StoreInputError(no_interval_s(orphans[0][0], orphans[0][1]))
            self._run(f"INSERT INTO reads ({columns}) SELECT {columns} FROM _gl_new")
            return self._con.sql(f"SELECT {columns}, {ORDINAL} FROM _gl_new").to_arrow_table()
        finally:
            self._run("DROP TABLE IF EXISTS _gl_new")

    def _rowcount(self, sql: str, params: dict[str, Any]) -> int:
        rows = self._run(sql, params)
        return int(rows[0][0]) if rows else 0

    def _run(self, sql: str, params: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
        """Execute one statement and fetch its whole result (DuckDB 2 refuses new work before that)."""
        return self._con.execute(sql, params).fetchall()

    # --- reads --------------------------------------------------------------------------------

    def _select_reads(
        self, filters: Filters, versions: Versions, names: Sequence[str], ordered: bool, meter_index: bool
    ) -> pa.Table:
        # With meter_index, a join with the ids asked for both selects the meters and numbers them.
        where, params = _where(READS, filters, "r", meters=not meter_index)
        columns = ", ".join("m.meter_index AS meter_id" if c == "meter_id" and meter_index else f"r.{c}" for c in names)
        index = "JOIN _gl_meters m ON m.meter_id = r.meter_id" if meter_index else ""
        if versions == "current":
            inner, _ = _where(READS, filters, "t")
            sql = f"""
                SELECT {columns} FROM reads r {index}
                LEFT JOIN (
                    SELECT t.meter_id, t.interval_start, max(t.version) AS v FROM reads t
                    WHERE t.version > 0 AND {inner} GROUP BY t.meter_id, t.interval_start
                ) top ON top.meter_id = r.meter_id AND top.interval_start = r.interval_start
                WHERE {where} AND r.version = coalesce(top.v, 0)
                {"ORDER BY r.meter_id, r.interval_start" if ordered else ""}
            """
        else:
            only = " AND r.version = 0" if versions == "original" else ""
            order = " ORDER BY r.meter_id, r.interval_start, r.version" if ordered else ""
            sql = f"SELECT {columns} FROM reads r {index} WHERE {where}{only}{order}"
        return self._query(sql, params, filters)

    def _select(self, spec: TableSpec, filters: Filters) -> pa.Table:
        where, params = _where(spec, filters, "r")
        columns = ", ".join(f"r.{quote(c)}" for c in spec.schema.names)
        order = ", ".join(f"r.{quote(k)}" for k in spec.key)
        return self._query(f"SELECT {columns} FROM {spec.name} r WHERE {where} ORDER BY {order}", params, filters)

    def _query(self, sql: str, params: dict[str, Any], filters: Filters) -> pa.Table:
        tables = {}
        if filters.meter_ids is not None:
            n = len(filters.meter_ids)
            tables["_gl_meters"] = pa.table(
                {"meter_id": filters.meter_ids, "meter_index": pa.array(np.arange(n, dtype=np.int32))}
            )
        if filters.kinds is not None:
            tables["_gl_kinds"] = pa.table({"kind": filters.kinds})
        with self._lock, self._errors(), self._arrow(**tables):
            return self._con.sql(sql, params=params or None).to_arrow_table()

    def _count(self, spec: TableSpec) -> int:
        with self._lock, self._errors():
            rows = self._run(f"SELECT count(*) FROM {spec.name}")
        return int(rows[0][0]) if rows else 0


def _where(spec: TableSpec, filters: Filters, alias: str, *, meters: bool = True) -> tuple[str, dict[str, Any]]:
    """A WHERE clause for ``filters`` on table alias ``alias``, with its named parameters (``meters=False``:
    the query joins the meters itself; only their range is added, for pruning)."""
    clauses = ["TRUE"]
    params: dict[str, Any] = {}
    if filters.meter_ids is not None:
        if meters:
            clauses.append(f"{alias}.meter_id IN (SELECT meter_id FROM _gl_meters)")
        if (bounds := filters.meter_range) is not None:  # lets zone maps skip row groups of other meters
            clauses.append(f"{alias}.meter_id BETWEEN $first_meter AND $last_meter")
            params.update(first_meter=bounds[0], last_meter=bounds[1])
    if filters.kinds is not None:
        clauses.append(f"{alias}.kind IN (SELECT kind FROM _gl_kinds)")
    conditions, time_params = time_conditions(spec, filters, alias, lambda name: f"${name}")
    clauses += conditions
    params.update(time_params)
    return " AND ".join(clauses), params
