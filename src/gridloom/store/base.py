"""The meter data store's interface: what every backend (DuckDB, PostgreSQL) does the same way.

The public methods live here, once: they check and shape the input (over whole columns), drop
rows a batch repeats, and call a backend's hooks inside one transaction. A backend only says how
to stage a batch, insert what is new, assign versions and run a query in its SQL.

Guarantees, on every backend:

- **idempotent ingest**: a read whose (meter_id, interval_start) is already stored at version 0 is
  skipped and counted as a duplicate, as is a repeat inside one batch (the first one wins); the
  same holds for register reads (meter_id, read_at) and events (meter_id, at, kind);
- **atomic**: a batch is stored whole or not at all;
- **versions**: :meth:`MeterDataStore.add_versions` gives each row version max+1 of its interval
  and never changes a stored row; ``reads(versions="current")`` returns the highest version of each
  interval, ``"original"`` version 0, ``"all"`` every version.
"""

from __future__ import annotations

import datetime as dt
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from types import TracebackType
from typing import Any, Literal, Protocol, Self, TypeAlias
from urllib.parse import urlsplit, urlunsplit

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from gridloom.errors import StoreInputError, UnknownTable
from gridloom.store.conform import as_table, conform, first_occurrences
from gridloom.store.schema import (
    DEFAULT_INTERVAL_S,
    EVENTS,
    MEASURED_SOURCES,
    READS,
    READS_SCHEMA,
    REGISTER_READS,
    TABLES,
    TIMESTAMP,
    VERSION_SOURCES,
    TableSpec,
)

Clock = Callable[[], dt.datetime]
Versions = Literal["current", "original", "all"]
MeterIds: TypeAlias = Sequence[str] | pa.Array | pa.ChunkedArray
"""Meter ids to select: a list, or an Arrow string array (taken without conversion)."""

VALUE_COLUMNS = ("interval_s", "energy_delivered_wh", "energy_received_wh", "reactive_varh", "voltage_v", "quality")
"""The columns of a read that a new version may change; those it leaves out are carried over."""

ORDINAL = "_ordinal"
"""Column a backend gets with :meth:`MeterDataStore._insert_versions` rows: their input order."""


@dataclass(frozen=True)
class IngestResult:
    """What an ingest did: rows newly stored, and rows skipped because they were already stored
    (or repeated in the batch)."""

    inserted: int
    duplicates: int

    @property
    def received(self) -> int:
        return self.inserted + self.duplicates


@dataclass(frozen=True)
class Filters:
    """A query's restrictions, checked: times are UTC-aware, ``[start, end)`` half-open."""

    meter_ids: pa.Array | None = None
    start: dt.datetime | None = None
    end: dt.datetime | None = None
    as_of: dt.datetime | None = None  # only rows recorded at or before
    kinds: pa.Array | None = None  # events only

    @property
    def meter_range(self) -> tuple[str, str] | None:
        """The smallest and largest meter id asked for: a range a backend can prune with (None: no ids)."""
        if self.meter_ids is None or len(self.meter_ids) == 0:
            return None
        bounds = pc.min_max(self.meter_ids)
        low, high = bounds["min"].as_py(), bounds["max"].as_py()
        return None if low is None or high is None else (str(low), str(high))


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def redact(url: str) -> str:
    """``url`` with its password replaced by ``***``, fit to print."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


class ReadsSource(Protocol):
    """What readers of interval data need of a store (billing, VEE, tests over a plain table)."""

    def reads(
        self,
        *,
        meter_ids: Sequence[str] | None = None,
        start: dt.datetime | None = None,
        end: dt.datetime | None = None,
        versions: Literal["current", "original", "all"] = "current",
    ) -> pa.Table: ...


class MeterDataStore(ABC):
    """Interval reads (versioned), register reads and meter events, in one database.

    Use it as ``with open_store(url) as store: ...``; it is synchronous, and one instance may be
    shared by threads (calls are serialised). ``clock`` stamps ``recorded_at`` / ``received_at``
    where a batch leaves them null (inject a simulated clock in scenarios).
    """

    url: str
    """Where the data lives, printable (password redacted)."""

    def __init__(self, *, clock: Clock | None = None) -> None:
        self._clock = clock or utc_now

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @abstractmethod
    def close(self) -> None:
        """Release the connection; the store cannot be used afterwards."""

    # --- interval reads -------------------------------------------------------------------------

    def ingest_reads(self, reads: pa.Table) -> IngestResult:
        """Store reads as measured (version 0), skipping those already stored; atomic.

        ``reads`` holds READS_SCHEMA columns, at least meter_id, interval_start and
        energy_delivered_wh; missing ones default (interval_s 900, quality 0, source "measured",
        values null, recorded_at = the store's clock). ``version``, if given, must be 0 and
        ``source`` "measured" or "imported": estimates and edits go to :meth:`add_versions`.
        """
        what = "ingest_reads"
        table = conform(
            reads,
            READS,
            what=what,
            required=("meter_id", "interval_start", "energy_delivered_wh"),
            not_null=("interval_s", "quality", "source"),
        )
        if "version" in table.column_names and pc.any(nonzero := pc.not_equal(table.column("version"), 0)).as_py():
            raise StoreInputError(
                f"{what}: version must be 0 (as measured) at row {_first_true(nonzero)};"
                " store estimates and edits with add_versions"
            )
        _check_one_of(table, "source", MEASURED_SOURCES, what)
        _check_positive(table, "interval_s", what)
        n = table.num_rows
        table = _with_defaults(table, self._now(), n)
        table, repeated = first_occurrences(table, ("meter_id", "interval_start"))
        if table.num_rows == 0:
            return IngestResult(0, repeated)
        with self._transaction():
            inserted = self._insert_new_reads(table)
        return IngestResult(inserted, repeated + table.num_rows - inserted)

    def add_versions(self, rows: pa.Table) -> pa.Table:
        """Store estimates or edits as new versions; returns them as stored, in the order given.

        Each row becomes version max+1 of its (meter_id, interval_start) (two rows for the same
        interval: max+1 and max+2, in order); an interval with nothing stored gets version 1, so
        version 0 stays what was measured. ``source`` ("estimated" or "edited") and ``rule`` (the
        VEE rule or the edit's reason code) are required, ``edited_by`` too for edits. Value
        columns left out are carried over from the interval's current version; ``version`` is
        assigned by the store and ``recorded_at`` defaults to its clock. Atomic.
        """
        what = "add_versions"
        rows = as_table(rows, what)
        if "version" in rows.column_names:  # assigned here, whatever the caller copied along
            rows = rows.drop_columns(["version"])
        table = conform(
            rows,
            READS,
            what=what,
            required=("meter_id", "interval_start", "source", "rule"),
            not_null=("source", "rule"),
        )
        _check_one_of(table, "source", VERSION_SOURCES, what)
        _check_positive(table, "interval_s", what)
        edited = pc.equal(table.column("source"), "edited")
        if "edited_by" not in table.column_names:
            if pc.any(edited).as_py():
                raise StoreInputError(f"{what}: an edit needs edited_by (who edited); the column is missing")
        elif pc.any(pc.and_(edited, table.column("edited_by").is_null())).as_py():
            at = _first_true(pc.and_(edited, table.column("edited_by").is_null()))
            raise StoreInputError(f"{what}: edited_by is null at row {at}, an edit must name who made it")
        n = table.num_rows
        if n == 0:
            return READS_SCHEMA.empty_table()
        now = self._now()
        recorded = table.column("recorded_at") if "recorded_at" in table.column_names else pa.nulls(n, TIMESTAMP)
        columns = {name: table.column(name) for name in table.column_names if name not in ("version", "recorded_at")}
        columns["edited_by"] = columns.get("edited_by", pa.nulls(n, pa.string()))
        columns["recorded_at"] = pc.fill_null(recorded, pa.scalar(now, TIMESTAMP))
        columns[ORDINAL] = pa.array(np.arange(n, dtype=np.int64))
        given = pa.table(columns)
        with self._transaction():
            stored = self._insert_versions(given, carried=tuple(c for c in VALUE_COLUMNS if c not in columns))
        if stored.num_rows != n:  # a backend bug, not bad input: never hand back a partial answer
            raise RuntimeError(f"add_versions stored {stored.num_rows} of {n} rows")
        order = pc.sort_indices(stored, sort_keys=[(ORDINAL, "ascending")])
        return stored.take(order).select(READS_SCHEMA.names).cast(READS_SCHEMA)

    def reads(
        self,
        *,
        meter_ids: MeterIds | None = None,
        start: dt.datetime | None = None,
        end: dt.datetime | None = None,
        versions: Versions = "current",
        as_of: dt.datetime | None = None,
        columns: Sequence[str] | None = None,
        ordered: bool = True,
        dictionary: bool = False,
    ) -> pa.Table:
        """Interval reads with ``start <= interval_start < end``, ordered by meter, time, version.

        ``versions``: "current" the highest version of each interval (what billing uses),
        "original" version 0 (as measured), "all" every version. ``as_of`` sees the store as it
        was then (rows recorded later are ignored), to reproduce what an earlier bill used.

        For bulk readers that sort and group by themselves (the nightly VEE over millions of
        reads, where the database's sort and the ids' text cost more than the reading):
        ``columns`` picks some READS_SCHEMA columns (in schema order); ``ordered=False`` leaves the
        rows in the order the database finds them; ``dictionary=True`` (with ``meter_ids``) gives
        ``meter_id`` dictionary-encoded, its dictionary the distinct ``meter_ids`` asked for.
        """
        if versions not in ("current", "original", "all"):
            raise StoreInputError(f"reads: versions must be 'current', 'original' or 'all', not {versions!r}")
        names = list(READS_SCHEMA.names)
        if columns is not None:
            unknown = [columns] if isinstance(columns, str) else [c for c in columns if c not in names]
            if unknown:
                raise StoreInputError(f"reads: columns must be a list of {', '.join(names)}; not {unknown!r}")
            names = [c for c in names if c in columns]
        if dictionary and meter_ids is None:
            raise StoreInputError("reads: dictionary=True needs meter_ids (they are the dictionary)")
        filters = _filters("reads", meter_ids=meter_ids, start=start, end=end, as_of=as_of)
        if dictionary and filters.meter_ids is not None:
            filters = replace(filters, meter_ids=pc.unique(filters.meter_ids))
        table = self._select_reads(filters, versions, names, ordered, dictionary and "meter_id" in names)
        schema = pa.schema([READS_SCHEMA.field(c) for c in names])
        if not (dictionary and "meter_id" in names and filters.meter_ids is not None):
            return table.cast(schema)
        at = names.index("meter_id")
        ids = filters.meter_ids
        given = table.column(at)  # positions in ids, or (from a backend that does not number them) the ids
        index = pc.index_in(given, value_set=ids) if pa.types.is_string(given.type) else given.cast(pa.int32())
        encoded = pa.chunked_array(
            [pa.DictionaryArray.from_arrays(chunk, ids) for chunk in index.chunks],
            pa.dictionary(pa.int32(), pa.string()),
        )
        rest = table.drop_columns([table.column_names[at]]).cast(schema.remove(at))
        return rest.add_column(at, pa.field("meter_id", encoded.type, nullable=False), encoded)

    # --- register reads and events ------------------------------------------------------------

    def ingest_register_reads(self, registers: pa.Table) -> int:
        """Store register (cumulative) reads, skipping (meter_id, read_at) already stored; atomic.
        Returns how many were newly stored."""
        table = conform(
            registers,
            REGISTER_READS,
            what="ingest_register_reads",
            required=("meter_id", "read_at"),
            not_null=("quality",),
        )
        return self._ingest_keyed(REGISTER_READS, _complete(table, REGISTER_READS.schema, {"quality": 0}))

    def register_reads(
        self,
        *,
        meter_ids: MeterIds | None = None,
        start: dt.datetime | None = None,
        end: dt.datetime | None = None,
    ) -> pa.Table:
        """Register reads with ``start <= read_at < end``, ordered by meter and time."""
        filters = _filters("register_reads", meter_ids=meter_ids, start=start, end=end)
        return self._select(REGISTER_READS, filters).cast(REGISTER_READS.schema)

    def ingest_events(self, events: pa.Table) -> int:
        """Store meter events, skipping (meter_id, at, kind) already stored; atomic. ``received_at``
        defaults to the store's clock. Returns how many were newly stored."""
        table = conform(events, EVENTS, what="ingest_events", required=("meter_id", "at", "kind"))
        now = pa.scalar(self._now(), TIMESTAMP)
        if "received_at" in table.column_names:
            table = table.set_column(
                table.column_names.index("received_at"), "received_at", pc.fill_null(table.column("received_at"), now)
            )
        return self._ingest_keyed(EVENTS, _complete(table, EVENTS.schema, {"received_at": now}))

    def events(
        self,
        *,
        meter_ids: MeterIds | None = None,
        start: dt.datetime | None = None,
        end: dt.datetime | None = None,
        kinds: Sequence[str] | None = None,
    ) -> pa.Table:
        """Meter events with ``start <= at < end`` (and of ``kinds``), ordered by meter, time, kind."""
        filters = _filters("events", meter_ids=meter_ids, start=start, end=end, kinds=kinds)
        return self._select(EVENTS, filters).cast(EVENTS.schema)

    def count(self, table: str) -> int:
        """Rows in a store table: "reads" (every version), "register_reads" or "events"."""
        if table not in TABLES:
            import difflib

            raise UnknownTable(table, difflib.get_close_matches(table, list(TABLES), 3))
        return self._count(TABLES[table])

    # --- what a backend provides --------------------------------------------------------------

    @abstractmethod
    def _transaction(self) -> AbstractContextManager[None]:
        """One transaction: committed when the block ends, rolled back (and the error mapped to a
        StoreError) when it raises."""

    @abstractmethod
    def _insert_new_reads(self, batch: pa.Table) -> int:
        """In the open transaction: insert the rows of ``batch`` (READS_SCHEMA, version 0, keys unique
        within it) whose (meter_id, interval_start) has no version 0 yet; return how many."""

    @abstractmethod
    def _insert_versions(self, rows: pa.Table, *, carried: tuple[str, ...]) -> pa.Table:
        """In the open transaction: store ``rows`` (READS columns but version, plus ORDINAL) as version
        max+1 per interval (consecutive in ORDINAL order), taking the ``carried`` columns from the
        interval's current version; return the stored rows with ORDINAL."""

    @abstractmethod
    def _insert_new(self, spec: TableSpec, batch: pa.Table) -> int:
        """In the open transaction: insert the rows of ``batch`` (keys unique within it) whose key is
        not stored yet; return how many."""

    @abstractmethod
    def _select_reads(
        self, filters: Filters, versions: Versions, columns: Sequence[str], ordered: bool, meter_index: bool
    ) -> pa.Table:
        """Reads matching ``filters``: the ``columns`` (READS_SCHEMA names, in schema order), ordered by
        meter, time and version when ``ordered``; with ``meter_index``, the ``meter_id`` column may hold the
        position of the read's meter in ``filters.meter_ids`` (distinct ids) instead of the id."""

    @abstractmethod
    def _select(self, spec: TableSpec, filters: Filters) -> pa.Table: ...

    @abstractmethod
    def _count(self, spec: TableSpec) -> int: ...

    # --- shared helpers -----------------------------------------------------------------------

    def _now(self) -> dt.datetime:
        now = self._clock()
        if now.tzinfo is None:
            raise StoreInputError(f"the store's clock returned a naive time {now!r}; it must be timezone-aware")
        return now

    def _ingest_keyed(self, spec: TableSpec, table: pa.Table) -> int:
        table, _ = first_occurrences(table, spec.key)
        if table.num_rows == 0:
            return 0
        with self._transaction():
            return self._insert_new(spec, table)


def key_bounds(batch: pa.Table, column: str) -> tuple[object, object]:
    """Smallest and largest value of a column (lets a backend prune what it compares against)."""
    bounds = pc.min_max(batch.column(column))
    return bounds["min"].as_py(), bounds["max"].as_py()


def quote(name: str) -> str:
    """A column name as a quoted SQL identifier (``at`` is a reserved word in DuckDB)."""
    return '"' + name.replace('"', '""') + '"'


def no_interval_s(meter_id: str, interval_start: dt.datetime) -> str:
    """Why a new version without interval_s is refused when its interval has nothing stored."""
    return (
        f"add_versions: nothing is stored for meter {meter_id} at {interval_start.isoformat()} to take"
        " interval_s from; give interval_s with the row"
    )


def _filters(
    what: str,
    *,
    meter_ids: MeterIds | None = None,
    start: dt.datetime | None = None,
    end: dt.datetime | None = None,
    as_of: dt.datetime | None = None,
    kinds: Sequence[str] | None = None,
) -> Filters:
    for name, value in (("start", start), ("end", end), ("as_of", as_of)):
        if value is not None and (not isinstance(value, dt.datetime) or value.tzinfo is None):
            raise StoreInputError(f"{what}: {name} must be a timezone-aware datetime, got {value!r}")
    if start is not None and end is not None and end < start:
        raise StoreInputError(f"{what}: end {end.isoformat()} is before start {start.isoformat()}")
    if isinstance(meter_ids, str) or isinstance(kinds, str):
        raise StoreInputError(f"{what}: meter_ids and kinds are lists of strings, not one string")
    return Filters(
        meter_ids=None if meter_ids is None else _strings(meter_ids, what),
        start=start,
        end=end,
        as_of=as_of,
        kinds=None if kinds is None else pa.array(list(kinds), pa.string()),
    )


def _strings(values: Sequence[str] | pa.Array | pa.ChunkedArray, what: str) -> pa.Array:
    """Meter ids as a string array (an Arrow array is taken as it is)."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if isinstance(values, pa.Array):
        if not (pa.types.is_string(values.type) or pa.types.is_large_string(values.type)):
            raise StoreInputError(f"{what}: meter_ids must hold text, not {values.type}")
        return values.cast(pa.string())
    return pa.array(list(values), pa.string())


def _with_defaults(table: pa.Table, now: dt.datetime, n: int) -> pa.Table:
    """A version-0 batch in READS_SCHEMA: absent columns defaulted, null recorded_at stamped now."""
    stamp = pa.scalar(now, TIMESTAMP)
    if "recorded_at" in table.column_names and table.column("recorded_at").null_count:
        filled = pc.fill_null(table.column("recorded_at"), stamp)
        table = table.set_column(table.column_names.index("recorded_at"), "recorded_at", filled)
    defaults = {
        "interval_s": pa.scalar(DEFAULT_INTERVAL_S, pa.int32()),
        "quality": pa.scalar(0, pa.uint32()),
        "source": pa.scalar("measured"),
        "recorded_at": stamp,
        "version": pa.scalar(0, pa.int32()),
    }
    return _complete(table, READS_SCHEMA, defaults)


def _complete(table: pa.Table, schema: pa.Schema, defaults: dict[str, object]) -> pa.Table:
    """``table`` with every column of ``schema`` in order: absent ones from ``defaults`` (an array,
    or a scalar repeated) or null."""
    n = table.num_rows
    columns = []
    for field in schema:
        if field.name in table.column_names:
            columns.append(table.column(field.name))
        elif isinstance(default := defaults.get(field.name), pa.Array):
            columns.append(pa.chunked_array([default]))
        elif isinstance(default, pa.Scalar):
            columns.append(pa.chunked_array([pa.repeat(default, n)]))
        elif default is not None:
            columns.append(pa.chunked_array([pa.repeat(pa.scalar(default, field.type), n)]))
        else:
            columns.append(pa.chunked_array([pa.nulls(n, field.type)]))
    return pa.Table.from_arrays(columns, schema=schema)


def _check_one_of(table: pa.Table, name: str, allowed: Sequence[str], what: str) -> None:
    if name not in table.column_names:
        return
    bad = pc.invert(pc.is_in(table.column(name), value_set=pa.array(list(allowed)))).fill_null(False)
    if pc.any(bad).as_py():
        at = _first_true(bad)
        raise StoreInputError(
            f"{what}: {name} {table.column(name)[at].as_py()!r} at row {at} is not one of {', '.join(allowed)}"
        )


def _check_positive(table: pa.Table, name: str, what: str) -> None:
    if name in table.column_names:
        bad = pc.less_equal(table.column(name), 0).fill_null(False)
        if pc.any(bad).as_py():
            at = _first_true(bad)
            raise StoreInputError(f"{what}: {name} must be positive, got {table.column(name)[at].as_py()} at row {at}")


def _first_true(mask: pa.ChunkedArray | pa.Array) -> int:
    return int(np.argmax(np.asarray(mask.to_numpy(zero_copy_only=False), dtype=bool)))


_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def is_url(text: str) -> bool:
    """Whether ``text`` looks like ``scheme://...`` rather than a file path."""
    return bool(_SCHEME.match(text))


def time_conditions(
    spec: TableSpec, filters: Filters, alias: str, placeholder: Callable[[str], str]
) -> tuple[list[str], dict[str, Any]]:
    """The time-window and as-of conditions of ``filters`` on ``alias``, with their parameters.

    ``placeholder`` writes a named parameter in the backend's syntax (``$start``, ``%(start)s``).
    """
    conditions: list[str] = []
    params: dict[str, Any] = {}
    time_column = f"{alias}.{quote(spec.time_column)}"
    if filters.start is not None:
        conditions.append(f"{time_column} >= {placeholder('start')}")
        params["start"] = filters.start
    if filters.end is not None:
        conditions.append(f"{time_column} < {placeholder('end')}")
        params["end"] = filters.end
    if filters.as_of is not None and spec is READS:
        conditions.append(f"{alias}.recorded_at <= {placeholder('as_of')}")
        params["as_of"] = filters.as_of
    return conditions, params
