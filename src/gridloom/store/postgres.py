"""The shared store: PostgreSQL, batches loaded with binary COPY.

A batch is COPYed (binary, see :mod:`gridloom.store.pgcopy`) into a temporary table, which
PostgreSQL does not write to its WAL, and moved into the real table by one ``INSERT ... SELECT``
of the staged rows whose key is not stored yet: a hash anti-join for a batch as large as a good
part of the table, a primary-key probe per row for a smaller one (see ``_not_stored``). Both
measured faster than ``INSERT ... ON CONFLICT DO NOTHING``, which makes a speculative insertion
per row (9.6 M reads: 0.44 / 0.34 against 0.28 M rows/s). Writers take ``SHARE ROW EXCLUSIVE``
on the table they write after staging: two ingests (or an ingest and an edit) never interleave,
so "not stored yet" and "max version + 1" stay right, while readers are never blocked.

Results come back as CSV from ``COPY (query) TO STDOUT`` parsed by Arrow's multi-threaded reader:
``extra_float_digits = 1`` makes PostgreSQL print the shortest text that reads back to the same
double, so values round-trip exactly.

The tables live in the first schema of the connection's ``search_path`` (created if missing), so
``postgresql://host/db?options=-csearch_path%3Dmdms`` keeps a store in schema ``mdms`` and any
other connection with the same URL (the CIS tables) finds it too.
"""

# SQL here is composed from the store schema's own table and column names (fixed in schema.py,
# quoted where they vary); every value is a bound parameter or an Arrow view, never text.
# ruff: noqa: S608

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
import pyarrow as pa
import pyarrow.csv as pacsv
from psycopg import errors as pgerrors
from psycopg import sql

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
    redact,
    time_conditions,
)
from gridloom.store.pgcopy import copy_chunks, pg_type
from gridloom.store.schema import READS, READS_SCHEMA, TABLES, TableSpec

SCHEMA_VERSION = 1
META_TABLE = "gridloom_store_meta"
SESSION = (
    "SET TimeZone TO 'UTC'",
    "SET DateStyle TO 'ISO, YMD'",
    "SET extra_float_digits TO 1",  # shortest exact text for doubles (PostgreSQL >= 12)
    "SET work_mem TO '128MB'",  # the anti-join's hash of a 10 M-row batch stays in memory
)
LARGE_BATCH = 50_000
"""From this many rows, a batch is checked against the stored rows of its time and meter range with one
hash anti-join whatever the table's size (a probe of the primary key per row costs microseconds each)."""
ROW_BYTES_ABOUT = 150  # a read's heap tuple with its share of page overhead, measured
_CONFLICTS = (
    pgerrors.LockNotAvailable,
    pgerrors.SerializationFailure,
    pgerrors.DeadlockDetected,
    pgerrors.UniqueViolation,
)


def create_table_sql(spec: TableSpec, qualified: str) -> str:
    columns = []
    for field in spec.schema:
        column = f"{quote(field.name)} {pg_type(field.type)}{' NOT NULL' if field.name in spec.not_null else ''}"
        if pa.types.is_uint32(field.type):
            column += f" CHECK ({quote(field.name)} BETWEEN 0 AND 4294967295)"
        columns.append(column)
    key = ", ".join(map(quote, spec.key))
    return f"CREATE TABLE IF NOT EXISTS {qualified} ({', '.join(columns)}, PRIMARY KEY ({key}))"


def copy_into(cursor: psycopg.Cursor[Any], target: str, table: pa.Table) -> None:
    """COPY every row of ``table`` into ``target`` (its columns named as in ``table``), binary."""
    statement = f"COPY {target} ({', '.join(map(quote, table.column_names))}) FROM STDIN (FORMAT binary)"
    with cursor.copy(statement) as copy:
        for chunk in copy_chunks(table):
            copy.write(chunk)


class PostgresStore(MeterDataStore):
    """Meter data in PostgreSQL; ``url`` is a libpq URL (``postgresql://user@host:5432/db``)."""

    def __init__(self, url: str, *, clock: Clock | None = None) -> None:
        super().__init__(clock=clock)
        self.url = redact(url)
        self._lock = threading.RLock()
        self._active: psycopg.Cursor[Any] | None = None  # the cursor of the open transaction
        try:
            self._conn: psycopg.Connection[Any] = psycopg.connect(url, autocommit=True)
        except psycopg.Error as exc:
            raise StoreUnavailable(f"cannot reach the PostgreSQL store {self.url}: {exc}") from exc
        try:
            for statement in SESSION:
                self._conn.execute(statement)  # constant SQL
            self.schema = self._first_schema()
            self._names = {
                name: sql.Identifier(self.schema, name).as_string(self._conn) for name in (*TABLES, META_TABLE)
            }
            self._create()
        except BaseException:
            self._conn.close()
            raise

    def close(self) -> None:
        self._conn.close()

    def _first_schema(self) -> str:
        row = self._conn.execute("SELECT current_setting('search_path')").fetchone()
        for entry in (row[0] if row else "").split(","):
            name = entry.strip()
            if name.startswith('"') and name.endswith('"'):
                name = name[1:-1].replace('""', '"')
            if name and name != "$user":
                return name
        return "public"

    def _create(self) -> None:
        with self._transaction():
            cur = self._cursor
            cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"gridloom.store {self.schema}",))
            cur.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(self.schema)))
            meta = self._names[META_TABLE]
            cur.execute(f"CREATE TABLE IF NOT EXISTS {meta} (key text PRIMARY KEY, value text NOT NULL)")
            row = cur.execute(f"SELECT value FROM {meta} WHERE key = 'schema_version'").fetchone()
            if row is None:
                cur.execute(f"INSERT INTO {meta} VALUES ('schema_version', %s)", (str(SCHEMA_VERSION),))
            elif int(row[0]) > SCHEMA_VERSION:
                raise StoreUnavailable(
                    f"{self.url} schema {self.schema} was written by a newer gridloom"
                    f" (store schema {row[0]}; this one knows {SCHEMA_VERSION})"
                )
            for spec in TABLES.values():
                cur.execute(create_table_sql(spec, self._names[spec.name]))
            # a block range index on time: tiny, and lets the ingest anti-join read only the batch's days
            brin = sql.Identifier(f"{READS.name}_{READS.time_column}_brin").as_string(self._conn)
            cur.execute(f"CREATE INDEX IF NOT EXISTS {brin} ON {self._names['reads']} USING brin (interval_start)")

    # --- transactions and errors --------------------------------------------------------------

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except _CONFLICTS as exc:
            raise StoreConflict(f"{self.url}: {exc}; nothing was stored") from exc
        except psycopg.OperationalError as exc:
            raise StoreUnavailable(f"{self.url}: {exc}") from exc
        except psycopg.Error as exc:
            raise StoreError(f"{self.url}: {exc}") from exc

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        with self._lock, self._errors(), self._conn.transaction(), self._conn.cursor() as cursor:
            self._active = cursor
            try:
                yield
            finally:
                self._active = None

    @property
    def _cursor(self) -> psycopg.Cursor[Any]:
        cursor = self._active
        if cursor is None:
            raise RuntimeError("no transaction is open")  # a backend bug: hooks run inside _transaction
        return cursor

    def _stage(self, name: str, table: pa.Table) -> None:
        """A temporary table ``name`` (dropped at commit) holding ``table``, with fresh statistics."""
        cur = self._cursor
        columns = ", ".join(f"{quote(f.name)} {pg_type(f.type)}" for f in table.schema)
        cur.execute(f"CREATE TEMP TABLE {name} ({columns}) ON COMMIT DROP")
        copy_into(cur, name, table)
        cur.execute(f"ANALYZE {name}")  # temp tables get no autovacuum statistics

    def _lock_table(self, spec: TableSpec) -> None:
        self._cursor.execute(f"LOCK TABLE {self._names[spec.name]} IN SHARE ROW EXCLUSIVE MODE")

    # --- writes -------------------------------------------------------------------------------

    def _insert_new_reads(self, batch: pa.Table) -> int:
        columns = [c for c in READS_SCHEMA.names if c != "version"]  # all 0: not worth sending
        self._stage("_gl_stage", batch.select(columns))
        self._lock_table(READS)
        new, params = self._not_stored(READS, batch, ("meter_id", "interval_start"), "r.version = 0")
        statement = f"""
            INSERT INTO {self._names["reads"]} ({", ".join(columns)}, version)
            SELECT {", ".join(f"s.{c}" for c in columns)}, 0 FROM _gl_stage s WHERE {new}
        """
        self._cursor.execute(statement, params)
        return self._cursor.rowcount

    def _insert_new(self, spec: TableSpec, batch: pa.Table) -> int:
        names = spec.schema.names
        self._stage("_gl_stage", batch.select(names))
        self._lock_table(spec)
        new, params = self._not_stored(spec, batch, spec.key, "TRUE")
        statement = f"""
            INSERT INTO {self._names[spec.name]} ({", ".join(map(quote, names))})
            SELECT {", ".join(f"s.{quote(c)}" for c in names)} FROM _gl_stage s WHERE {new}
        """
        self._cursor.execute(statement, params)
        return self._cursor.rowcount

    def _not_stored(
        self, spec: TableSpec, batch: pa.Table, key: Sequence[str], also: str
    ) -> tuple[str, dict[str, Any]]:
        """A condition on staged rows ``s``: no stored row ``r`` has their ``key`` (and ``also``)."""
        match = " AND ".join(f"r.{quote(k)} = s.{quote(k)}" for k in key)
        stored = f"SELECT 1 FROM {self._names[spec.name]} r WHERE {match} AND {also}"
        if batch.num_rows < LARGE_BATCH and batch.num_rows * 4 < self._rows_about(spec):
            # a small batch: probe the primary key per row. OFFSET 0 keeps the planner from turning this
            # into a hash anti-join, which hashes every stored row of the batch's time range, each batch
            # (scattered concentrator batches fell from 0.21 to 0.08 M reads/s by 3 M reads stored)
            return f"NOT EXISTS ({stored} OFFSET 0)", {}
        # a batch as large as a good part of the table, or large in itself (an MDMS flush of a few hundred
        # thousand reads, a few intervals): one hash anti-join over the stored rows in its time and meter
        # range beats a probe per row (9.6 M reads: 0.42 against 0.34 M reads/s; 500k-read flushes into
        # a growing table: see LARGE_BATCH)
        (lo, hi), (first, last) = key_bounds(batch, spec.time_column), key_bounds(batch, "meter_id")
        ranges = f"r.{quote(spec.time_column)} BETWEEN %(lo)s AND %(hi)s AND r.meter_id BETWEEN %(first)s AND %(last)s"
        return f"NOT EXISTS ({stored} AND {ranges})", {"lo": lo, "hi": hi, "first": first, "last": last}

    def _rows_about(self, spec: TableSpec) -> int:
        """Rows in a table, roughly, from its size on disk: always current, unlike the planner's
        statistics, which lag a bulk load until autovacuum analyzes the table."""
        row = self._cursor.execute("SELECT pg_relation_size(%s::regclass)", (self._names[spec.name],)).fetchone()
        return int(row[0]) // ROW_BYTES_ABOUT if row else 0

    def _insert_versions(self, rows: pa.Table, *, carried: tuple[str, ...]) -> pa.Table:
        self._stage("_gl_rows", rows)
        self._lock_table(READS)
        reads = self._names["reads"]
        values = [
            (f"coalesce(cur.{c}, 0)" if c == "quality" else f"cur.{c}") if c in carried else f"s.{c}"
            for c in VALUE_COLUMNS
        ]
        current = (
            f"LEFT JOIN {reads} cur ON cur.meter_id = s.meter_id AND cur.interval_start = s.interval_start"
            " AND cur.version = top.v"
            if carried
            else ""
        )
        statement = f"""
            CREATE TEMP TABLE _gl_new ON COMMIT DROP AS
            SELECT s.meter_id, s.interval_start,
                   {", ".join(f"{v} AS {c}" for v, c in zip(values, VALUE_COLUMNS, strict=True))},
                   CAST(coalesce(top.v, 0) + row_number() OVER (
                       PARTITION BY s.meter_id, s.interval_start ORDER BY s.{ORDINAL}) AS integer) AS version,
                   s.source, s.rule, s.edited_by, s.recorded_at, s.{ORDINAL}
            FROM _gl_rows s
            LEFT JOIN (
                SELECT r.meter_id, r.interval_start, max(r.version) AS v FROM {reads} r
                WHERE (r.meter_id, r.interval_start) IN (SELECT meter_id, interval_start FROM _gl_rows)
                  AND r.interval_start BETWEEN %(lo)s AND %(hi)s AND r.meter_id BETWEEN %(first)s AND %(last)s
                GROUP BY r.meter_id, r.interval_start
            ) top ON top.meter_id = s.meter_id AND top.interval_start = s.interval_start
            {current}
        """
        cur = self._cursor
        (lo, hi), (first, last) = key_bounds(rows, "interval_start"), key_bounds(rows, "meter_id")
        cur.execute(statement, {"lo": lo, "hi": hi, "first": first, "last": last})
        orphan = cur.execute("SELECT meter_id, interval_start FROM _gl_new WHERE interval_s IS NULL LIMIT 1").fetchone()
        if orphan is not None:
            raise StoreInputError(no_interval_s(orphan[0], orphan[1]))
        columns = ", ".join(READS_SCHEMA.names)
        cur.execute(f"INSERT INTO {reads} ({columns}) SELECT {columns} FROM _gl_new")
        schema = READS_SCHEMA.append(pa.field(ORDINAL, pa.int64()))
        return _fetch(cur, f"SELECT {columns}, {ORDINAL} FROM _gl_new", {}, schema)

    # --- reads --------------------------------------------------------------------------------

    def _select_reads(
        self, filters: Filters, versions: Versions, names: Sequence[str], ordered: bool, meter_index: bool
    ) -> pa.Table:
        reads = self._names["reads"]
        where, params = _where(READS, filters, "r")
        # meter_index is left to the caller: a join with the unnested ids made the planner loop over
        # the reads (minutes for a million of them); the ids come back as text, numbered in Arrow.
        columns = ", ".join(f"r.{c}" for c in names)
        if versions == "current":
            inner, _ = _where(READS, filters, "t")
            statement = f"""
                SELECT {columns} FROM {reads} r
                LEFT JOIN (
                    SELECT t.meter_id, t.interval_start, max(t.version) AS v FROM {reads} t
                    WHERE t.version > 0 AND {inner} GROUP BY t.meter_id, t.interval_start
                ) top ON top.meter_id = r.meter_id AND top.interval_start = r.interval_start
                WHERE {where} AND r.version = coalesce(top.v, 0)
                {"ORDER BY r.meter_id, r.interval_start" if ordered else ""}
            """
        else:
            only = " AND r.version = 0" if versions == "original" else ""
            order = " ORDER BY r.meter_id, r.interval_start, r.version" if ordered else ""
            statement = f"SELECT {columns} FROM {reads} r WHERE {where}{only}{order}"
        return self._read(statement, params, pa.schema([READS_SCHEMA.field(c) for c in names]))

    def _select(self, spec: TableSpec, filters: Filters) -> pa.Table:
        where, params = _where(spec, filters, "r")
        columns = ", ".join(f"r.{quote(c)}" for c in spec.schema.names)
        order = ", ".join(f"r.{quote(k)}" for k in spec.key)
        statement = f"SELECT {columns} FROM {self._names[spec.name]} r WHERE {where} ORDER BY {order}"
        return self._read(statement, params, spec.schema)

    def _read(self, statement: str, params: dict[str, Any], schema: pa.Schema) -> pa.Table:
        with self._lock, self._errors(), self._conn.cursor() as cur:
            return _fetch(cur, statement, params, schema)

    def _count(self, spec: TableSpec) -> int:
        with self._lock, self._errors():
            row = self._conn.execute(f"SELECT count(*) FROM {self._names[spec.name]}").fetchone()
        return int(row[0]) if row else 0


def _fetch(cursor: psycopg.Cursor[Any], statement: str, params: dict[str, Any], schema: pa.Schema) -> pa.Table:
    """The rows of a query as an Arrow table of ``schema`` (the query's columns, in order)."""
    data = bytearray()
    with cursor.copy(f"COPY ({statement}) TO STDOUT (FORMAT csv)", params or None) as copy:
        for block in copy:
            data += block
    if not data:
        return schema.empty_table()
    return pacsv.read_csv(
        pa.BufferReader(pa.py_buffer(data)),
        read_options=pacsv.ReadOptions(column_names=schema.names),
        parse_options=pacsv.ParseOptions(newlines_in_values=True),
        convert_options=pacsv.ConvertOptions(
            column_types={f.name: f.type for f in schema},
            null_values=[""],  # PostgreSQL writes NULL as an empty unquoted field...
            strings_can_be_null=True,
            quoted_strings_can_be_null=False,  # ...and an empty string as ""
        ),
    )


def _where(spec: TableSpec, filters: Filters, alias: str) -> tuple[str, dict[str, Any]]:
    """A WHERE clause for ``filters`` on table alias ``alias``, with its named parameters."""
    clauses = ["TRUE"]
    params: dict[str, Any] = {}
    if filters.meter_ids is not None:
        clauses.append(f"{alias}.meter_id = ANY(%(meters)s)")
        params["meters"] = filters.meter_ids.to_pylist()
        if (bounds := filters.meter_range) is not None:
            clauses.append(f"{alias}.meter_id BETWEEN %(first_meter)s AND %(last_meter)s")
            params.update(first_meter=bounds[0], last_meter=bounds[1])
    if filters.kinds is not None:
        clauses.append(f"{alias}.kind = ANY(%(kinds)s)")
        params["kinds"] = filters.kinds.to_pylist()
    conditions, time_params = time_conditions(spec, filters, alias, lambda name: f"%({name})s")
    clauses += conditions
    params.update(time_params)
    return " AND ".join(clauses), params
