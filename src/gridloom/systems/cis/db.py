"""A DB-API connection to the store's database, for the CIS and billing tables (plain SQL).

The CIS and billing keep their own tables (``cis_*``, ``billing_*``) in the same database as
the meter data store, opened from the same URL: ``postgresql://…`` (or ``postgres://``) is a
PostgreSQL server (psycopg 3), anything else a DuckDB file (``:memory:`` for tests). SQL is
written once with ``?`` placeholders and translated for psycopg. Tables move as Arrow: DuckDB
appends an Arrow table in one statement, PostgreSQL receives it as one CSV ``COPY`` (never
row by row).
"""

from __future__ import annotations

import io
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import pyarrow as pa
import pyarrow.csv as pacsv

from gridloom.errors import CisError

Dialect = Literal["duckdb", "postgresql"]


def is_postgres_url(url: str | Path) -> bool:
    return isinstance(url, str) and url.startswith(("postgresql://", "postgres://"))


class Database:
    """One connection (DuckDB or PostgreSQL); a context manager that closes it."""

    def __init__(self, connection: Any, dialect: Dialect) -> None:  # noqa: ANN401 (a DB-API connection)
        self.connection = connection
        self.dialect: Dialect = dialect
        self._depth = 0

    # ------------------------------------------------------------------ life cycle
    def __enter__(self) -> Database:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self.connection.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """All or nothing; nested calls join the outer transaction."""
        if self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        self._depth = 1
        try:
            if self.dialect == "postgresql":
                with self.connection.transaction():
                    yield
            else:
                self.connection.execute("BEGIN TRANSACTION")
                try:
                    yield
                except BaseException:
                    self.connection.execute("ROLLBACK")
                    raise
                self.connection.execute("COMMIT")
        finally:
            self._depth = 0

    # ------------------------------------------------------------------ SQL
    def _sql(self, sql: str) -> str:
        if self.dialect == "postgresql":
            sql = sql.replace("DOUBLE", "DOUBLE PRECISION").replace("?", "%s")
        return sql

    def execute(self, sql: str, params: Sequence[object] = ()) -> None:
        if self.dialect == "postgresql":
            with self.connection.cursor() as cur:
                cur.execute(self._sql(sql), tuple(params) or None)
        else:
            self.connection.execute(sql, list(params))

    def scalar(self, sql: str, params: Sequence[object] = ()) -> Any:  # noqa: ANN401 (any SQL value)
        rows = self.rows(sql, params)
        return rows[0][0] if rows else None

    def rows(self, sql: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        if self.dialect == "postgresql":
            with self.connection.cursor() as cur:
                cur.execute(self._sql(sql), tuple(params) or None)
                return list(cur.fetchall())
        return list(self.connection.execute(sql, list(params)).fetchall())

    def query_arrow(self, sql: str, params: Sequence[object] = (), *, schema: pa.Schema) -> pa.Table:
        """The result as an Arrow table of ``schema`` (columns in the query's order)."""
        if self.dialect == "postgresql":
            with self.connection.cursor() as cur:
                cur.execute(self._sql(sql), tuple(params) or None)
                rows = cur.fetchall()
            columns: list[list[Any]] = [list(c) for c in zip(*rows, strict=True)] if rows else [[] for _ in schema]
            return pa.table([pa.array(c, f.type) for c, f in zip(columns, schema, strict=True)], schema=schema)
        table = self.connection.sql(sql, params=list(params) or None).to_arrow_table()
        return table.rename_columns(schema.names).cast(schema)

    def insert_arrow(self, name: str, table: pa.Table) -> int:
        """Append ``table`` to the SQL table ``name`` (same column names) in one statement."""
        if table.num_rows == 0:
            return 0
        columns = ", ".join(table.column_names)
        if self.dialect == "postgresql":
            buffer = io.BytesIO()
            pacsv.write_csv(table, buffer, pacsv.WriteOptions(include_header=False))
            with (
                self.connection.cursor() as cur,
                cur.copy(f"COPY {name} ({columns}) FROM STDIN WITH (FORMAT csv)") as cp,
            ):
                cp.write(buffer.getvalue())
        else:
            self.connection.register("_gridloom_in", table)
            try:
                self.connection.execute(f"INSERT INTO {name} ({columns}) SELECT {columns} FROM _gridloom_in")  # noqa: S608
            finally:
                self.connection.unregister("_gridloom_in")
        return int(table.num_rows)


def open_database(url: str | Path) -> Database:
    """Connect to the store's database: ``postgresql://…`` or a DuckDB file path (``:memory:``)."""
    if is_postgres_url(url):
        import psycopg

        try:
            return Database(psycopg.connect(str(url), autocommit=True), "postgresql")
        except psycopg.Error as exc:
            raise CisError(f"cannot connect to {_redact(str(url))}: {exc}".strip()) from exc
    import duckdb

    path = str(url)
    if path != ":memory:":
        Path(path).expanduser().parent.mkdir(parents=True, exist_ok=True)
    try:
        return Database(duckdb.connect(path), "duckdb")
    except duckdb.Error as exc:
        raise CisError(f"cannot open DuckDB database {path}: {exc}") from exc


def _redact(url: str) -> str:
    """The URL without a password."""
    head, sep, tail = url.partition("@")
    if not sep or ":" not in head.split("//", 1)[-1]:
        return url
    scheme, _, creds = head.partition("//")
    return f"{scheme}//{creds.split(':', 1)[0]}:***@{tail}"
