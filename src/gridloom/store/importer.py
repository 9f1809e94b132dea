"""Reading a utility's own interval-read file (CSV or Parquet) for ``gridloom mdms import``.

The whole file is checked before anything is stored: a malformed row rejects the file with
:class:`~gridloom.errors.ImportRejected`, naming its line (CSV; line 1 is the header) or row
(Parquet, from 1) and the field, e.g. ``line 17, field energy_delivered_wh: 'abc' is not a
number``. Every field is checked over the whole column at once (regular expressions and casts
over Arrow arrays), so a file of millions of rows is read at Arrow's speed.

Columns: ``meter_id``, ``interval_start`` (ISO 8601 with a UTC offset, e.g.
``2026-11-01T00:15:00+01:00`` or ``...Z``), ``energy_delivered_wh``; optional
``energy_received_wh``, ``reactive_varh``, ``voltage_v`` (empty = no value) and ``interval_s``
(seconds; empty or absent = 900).
"""

from __future__ import annotations

import csv
import difflib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from gridloom.errors import ImportRejected
from gridloom.store.schema import DEFAULT_INTERVAL_S, READS_SCHEMA, TIMESTAMP

REQUIRED = ("meter_id", "interval_start", "energy_delivered_wh")
OPTIONAL = ("energy_received_wh", "reactive_varh", "voltage_v", "interval_s")
COLUMNS = REQUIRED + OPTIONAL
NON_NEGATIVE = ("energy_delivered_wh", "energy_received_wh", "voltage_v")  # reactive energy is signed
CSV_SUFFIXES = (".csv", ".csv.gz", ".csv.bz2")
PARQUET_SUFFIXES = (".parquet", ".pq")

_NUMBER = r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$"
_WHOLE = r"^\+?\d+$"
_TIME = r"^\d{4}-\d\d-\d\d[T ]\d\d:\d\d(:\d\d(\.\d+)?)?"
_OFFSET = r"(Z|[+-]\d\d(:?\d\d)?)$"
_EXAMPLE_TIME = "2026-11-01T00:15:00+01:00 or 2026-11-01T00:15:00Z"

BoolArray = npt.NDArray[np.bool_]


@dataclass
class _Problem:
    """The first bad row of one field and how to say what is wrong with it."""

    row: int
    field: str
    message: str
    rows: BoolArray  # every row with this fault


def read_interval_file(path: str | Path) -> pa.Table:
    """The reads of a CSV or Parquet file as a version-0 table (READS_SCHEMA, source "imported").

    Raises :class:`ImportRejected` for an unreadable file, a missing or unknown column, or the
    first malformed row (with how many rows are malformed in all).
    """
    path = Path(path)
    name = path.name.lower()
    if name.endswith(CSV_SUFFIXES):
        raw, lines = _read_csv(path)
        return _parse(raw, str(path), lambda i: {"line": int(lines[i])})
    if name.endswith(PARQUET_SUFFIXES):
        return _parse(_read_parquet(path), str(path), lambda i: {"row": i + 1})
    kinds = " / ".join(CSV_SUFFIXES + PARQUET_SUFFIXES)
    raise ImportRejected(str(path), f"unsupported file type; give a {kinds} file")


# --- reading ----------------------------------------------------------------------------------


def _read_csv(path: Path) -> tuple[pa.Table, npt.NDArray[np.int64]]:
    """All fields as text, and each row's line number in the file (blank lines dropped)."""
    where = str(path)
    try:
        with pa.input_stream(str(path), compression="detect") as stream:
            head = stream.read(1 << 16).decode("utf-8-sig", errors="replace").splitlines()
    except (OSError, pa.ArrowException) as exc:
        raise ImportRejected(where, f"cannot be read: {exc}") from exc
    if not head or not head[0].strip():
        raise ImportRejected(where, "no header: the first line must name the columns", line=1)
    names = [n.strip() for n in next(csv.reader([head[0]]))]
    _check_columns(names, where, line=1)
    invalid: list[tuple[int | None, int]] = []  # (line, fields found) of rows with the wrong number of fields

    def on_invalid(row: pacsv.InvalidRow) -> str:
        invalid.append((row.number, row.actual_columns))
        return "skip"

    def read(*, threads: bool) -> pa.Table:
        invalid.clear()
        return pacsv.read_csv(
            str(path),
            read_options=pacsv.ReadOptions(use_threads=threads, column_names=names, skip_rows=1),
            parse_options=pacsv.ParseOptions(invalid_row_handler=on_invalid, ignore_empty_lines=False),
            convert_options=pacsv.ConvertOptions(
                column_types=dict.fromkeys(names, pa.string()),
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )

    try:
        table = read(threads=True)
        if any(line is None for line, _ in invalid):  # only a single-threaded read knows their lines
            table = read(threads=False)
    except pa.ArrowInvalid as exc:
        raise ImportRejected(where, f"is not readable CSV: {exc}") from exc
    # the physical line of each row read: the header is line 1, and each skipped row shifts the rest
    lines = np.arange(table.num_rows, dtype=np.int64) + 2
    skipped = sorted((line, found) for line, found in invalid if line is not None)
    for line, _ in skipped:  # few: the file is rejected anyway
        lines[lines >= line] += 1
    keep = ~_blank_rows(table)
    table, lines = table.filter(pa.array(keep)), lines[keep]
    if skipped:
        line, found = skipped[0]
        earlier = [p for p in _field_problems(table, {}) if lines[p.row] < line]
        if earlier:
            first = min(earlier, key=lambda p: p.row)
            raise ImportRejected(where, first.message, line=int(lines[first.row]), field=first.field)
        raise ImportRejected(where, f"{found} fields where the header names {len(names)}", line=line)
    return table, lines


def _blank_rows(table: pa.Table) -> BoolArray:
    """Rows whose every field is empty (blank lines): ignored rather than refused."""
    blank = np.ones(table.num_rows, dtype=bool)
    for column in table.columns:
        blank &= np.asarray(pc.equal(pc.utf8_trim_whitespace(column), "").to_numpy(zero_copy_only=False), dtype=bool)
    return blank


def _read_parquet(path: Path) -> pa.Table:
    where = str(path)
    try:
        table = pq.read_table(str(path))
    except (OSError, pa.ArrowException) as exc:
        raise ImportRejected(where, f"is not a readable Parquet file: {exc}") from exc
    _check_columns(table.column_names, where, line=None)
    return table


def _check_columns(names: list[str], where: str, *, line: int | None) -> None:
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ImportRejected(where, f"column(s) {', '.join(twice)} appear more than once", line=line)
    for name in names:
        if name not in COLUMNS:
            close = difflib.get_close_matches(name, COLUMNS, 1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ImportRejected(
                where, f"unknown column {name!r}; {hint}the columns are {', '.join(COLUMNS)}", line=line, field=name
            )
    missing = [n for n in REQUIRED if n not in names]
    if missing:
        raise ImportRejected(where, f"missing column(s) {', '.join(missing)}", line=line)


# --- checking and converting ------------------------------------------------------------------


def _parse(raw: pa.Table, where: str, locate: Callable[[int], dict[str, int]]) -> pa.Table:
    columns: dict[str, pa.ChunkedArray] = {}
    problems = _field_problems(raw, columns)
    if problems:
        first = min(problems, key=lambda p: (p.row, COLUMNS.index(p.field)))
        bad_rows = int(np.logical_or.reduce([p.rows for p in problems]).sum())
        more = f" ({bad_rows} malformed rows in all, first shown)" if bad_rows > 1 else ""
        raise ImportRejected(where, first.message + more, field=first.field, **locate(first.row))
    n = raw.num_rows
    constants = {
        "interval_s": pa.scalar(DEFAULT_INTERVAL_S, pa.int32()),
        "quality": pa.scalar(0, pa.uint32()),
        "version": pa.scalar(0, pa.int32()),
        "source": pa.scalar("imported"),
    }
    out = []
    for field in READS_SCHEMA:
        if field.name in columns:
            out.append(columns[field.name].cast(field.type))
        elif field.name in constants:
            out.append(pa.chunked_array([pa.repeat(constants[field.name], n)]))
        else:
            out.append(pa.chunked_array([pa.nulls(n, field.type)]))
    return pa.Table.from_arrays(out, schema=READS_SCHEMA)


def _field_problems(raw: pa.Table, out: dict[str, pa.ChunkedArray]) -> list[_Problem]:
    """The first malformed row of each field (and fault); fills ``out`` with the parsed columns.

    ``_Problem.rows`` of each holds every row with that fault, to count them.
    """
    problems: list[_Problem] = []
    for name in raw.column_names:
        if name not in COLUMNS:
            continue
        column = raw.column(name)
        if name == "meter_id":
            parsed, found = _meter_ids(column)
        elif name == "interval_start":
            parsed, found = _times(column)
        elif name == "interval_s":
            parsed, found = _interval_s(column)
        else:
            parsed, found = _numbers(column, name)
        out[name] = parsed
        for rows, message in found:
            if rows.any():
                row = int(np.argmax(rows))
                value = column[row].as_py()
                problems.append(_Problem(row, name, message(repr(value) if value is not None else "no value"), rows))
    return problems


Found = list[tuple["BoolArray", Callable[[str], str]]]


def _only(n: int, row: int) -> BoolArray:
    rows = np.zeros(n, dtype=bool)
    rows[row] = True
    return rows


def _text(column: pa.ChunkedArray) -> pa.ChunkedArray:
    return pc.utf8_trim_whitespace(column.cast(pa.string()))


def _is(values: pa.ChunkedArray | pa.Array) -> BoolArray:
    return np.asarray(values.to_numpy(zero_copy_only=False), dtype=bool)


def _missing(column: pa.ChunkedArray) -> BoolArray:
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        return _is(pc.or_(column.is_null(), pc.equal(pc.utf8_trim_whitespace(column), "")).fill_null(True))
    return _is(column.is_null())


def _meter_ids(column: pa.ChunkedArray) -> tuple[pa.ChunkedArray, Found]:
    if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
        column = column.cast(pa.string())  # a Parquet file may hold numeric meter ids
    missing = _missing(column)
    nul = _is(pc.match_substring(column, "\x00").fill_null(False))
    found: Found = [(missing, lambda _: "missing value (every read needs its meter)")]
    found.append((nul, lambda v: f"{v} holds a NUL character"))
    return _text(column), found


def _times(column: pa.ChunkedArray) -> tuple[pa.ChunkedArray, Found]:
    n = len(column)
    if pa.types.is_timestamp(column.type):
        if column.type.tz is None:
            return column, [(_only(n, 0), lambda _: "timestamps without a time zone; store them with one (UTC)")]
        return column.cast(TIMESTAMP), [(_is(column.is_null()), lambda _: "missing value")]
    if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
        kind = column.type
        return column, [(_only(n, 0), lambda _: f"type {kind} is not a time; give ISO 8601 text or zoned timestamps")]
    text = _text(column)
    missing = _missing(column)
    shaped = _is(pc.match_substring_regex(text, _TIME + _OFFSET).fill_null(False))
    no_offset = ~shaped & ~missing & _is(pc.match_substring_regex(text, _TIME + "$").fill_null(False))
    found: Found = [
        (missing, lambda _: "missing value"),
        (no_offset, lambda v: f"{v} has no UTC offset; write e.g. {_EXAMPLE_TIME}"),
        (~shaped & ~missing & ~no_offset, lambda v: f"{v} is not an ISO 8601 time such as {_EXAMPLE_TIME}"),
    ]
    good = text.filter(pa.array(shaped))
    try:
        parsed = good.cast(TIMESTAMP)
    except pa.ArrowInvalid:  # well shaped but impossible (month 13, 25 o'clock): find the first
        row = int(np.flatnonzero(shaped)[_first_failing(good, TIMESTAMP)])
        return column, [*found, (_only(n, row), lambda v: f"{v} is not a valid date and time")]
    if shaped.all():
        return parsed, found
    return column, found


def _first_failing(values: pa.ChunkedArray, target: pa.DataType) -> int:
    """Index of the first value that does not cast to ``target`` (bisection: log n casts)."""
    lo, hi = 0, len(values)  # the first failure is in [lo, hi)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        try:
            values.slice(lo, mid - lo).cast(target)
            lo = mid
        except pa.ArrowInvalid:
            hi = mid
    return lo


def _numbers(column: pa.ChunkedArray, name: str) -> tuple[pa.ChunkedArray, Found]:
    n = len(column)
    missing = _missing(column)
    found: Found = []
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        text = _text(column)
        number = _is(pc.match_substring_regex(text, _NUMBER).fill_null(False))
        found.append((~number & ~missing, lambda v: f"{v} is not a number"))
        values = pc.if_else(pa.array(number), text, pa.scalar(None, pa.string())).cast(pa.float64())
    elif pa.types.is_integer(column.type) or pa.types.is_floating(column.type) or pa.types.is_decimal(column.type):
        values = column.cast(pa.float64())
    else:
        kind = column.type
        return column, [(_only(n, 0), lambda _: f"type {kind} is not a number")]
    if name in REQUIRED:
        found.append((missing, lambda _: f"missing value ({name} is required)"))
    found.append((_is(pc.invert(pc.is_finite(values)).fill_null(False)), lambda v: f"{v} is not a finite number"))
    if name in NON_NEGATIVE:
        found.append((_is(pc.less(values, 0).fill_null(False)), lambda v: f"{v} is negative"))
    return values, found


def _interval_s(column: pa.ChunkedArray) -> tuple[pa.ChunkedArray, Found]:
    n = len(column)
    missing = _missing(column)
    found: Found = []
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        text = _text(column)
        whole = _is(pc.match_substring_regex(text, _WHOLE).fill_null(False))
        found.append((~whole & ~missing, lambda v: f"{v} is not a whole number of seconds"))
        values = pc.if_else(pa.array(whole & ~missing), text, pa.scalar(None, pa.string())).cast(pa.int64())
    elif pa.types.is_integer(column.type):
        values = column.cast(pa.int64())
    else:
        kind = column.type
        return column, [(_only(n, 0), lambda _: f"type {kind} is not a whole number of seconds")]
    out_of_range = _is(pc.or_(pc.less_equal(values, 0), pc.greater(values, 86_400)).fill_null(False))
    found.append((out_of_range, lambda v: f"{v} is not between 1 and 86400 seconds"))
    return values.fill_null(DEFAULT_INTERVAL_S), found
