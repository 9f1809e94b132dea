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
import io
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


def read_interval_file(path: str | Path) -> pa.Table:
    """The reads of a CSV or Parquet file as a version-0 table (READS_SCHEMA, source "imported").

    Raises :class:`ImportRejected` for an unreadable file, a missing or unknown column, or the
    first malformed row (with how many rows are malformed in all).
    """
    path = Path(path)
    name = path.name.lower()
    if name.endswith(CSV_SUFFIXES):
        raw, lines = _read_csv(path)
        locate: Callable[[int], dict[str, int]] = lambda i: {"line": int(lines[i])}  # noqa: E731
    elif name.endswith(PARQUET_SUFFIXES):
        raw = _read_parquet(path)
        locate = lambda i: {"row": i + 1}  # noqa: E731
    else:
        raise ImportRejected(str(path), f"unsupported file type; give a {' / '.join(CSV_SUFFIXES + PARQUET_SUFFIXES)} file")
    return _parse(raw, str(path), locate)


# --- reading ----------------------------------------------------------------------------------


def _read_csv(path: Path) -> tuple[pa.Table, npt.NDArray[np.int64]]:
    """All fields as text, and each row's line number in the file."""
    where = str(path)
    try:
        with pa.input_stream(str(path), compression="detect") as stream:
            head = stream.read(1 << 16).decode("utf-8-sig", errors="replace").splitlines()
    except (OSError, pa.ArrowException) as exc:
        raise ImportRejected(where, f"cannot be read: {exc}") from exc
    if not head:
        raise ImportRejected(where, "is empty; the first line must name the columns", line=1)
    names = next(csv.reader([head[0]]))
    clean = [n.strip() for n in names]
    _check_columns(clean, where, line=1)
    skipped: list[int | None] = []

    def invalid_row(row: pacsv.InvalidRow) -> str:
        skipped.append(row.number)
        return "skip"

    def read(threads: bool) -> pa.Table:
        skipped.clear()
        return pacsv.read_csv(
            str(path),
            read_options=pacsv.ReadOptions(use_threads=threads, column_names=clean, skip_rows=1),
            parse_options=pacsv.ParseOptions(invalid_row_handler=invalid_row, ignore_empty_lines=False),
            convert_options=pacsv.ConvertOptions(
                column_types=dict.fromkeys(clean, pa.string()), strings_can_be_null=False, quoted_strings_can_be_null=False
            ),
        )

    try:
        table = read(threads=True)
        if skipped and None in skipped:  # line numbers are known only to a single-threaded read
            table = read(threads=False)
    except pa.ArrowInvalid as exc:
        raise ImportRejected(where, f"is not readable CSV: {exc}") from exc
    # physical line of each data row: the header is line 1, and rows skipped as invalid shift the rest
    bad_lines = np.array(sorted(n for n in skipped if n is not None), dtype=np.int64)
    rows = np.arange(table.num_rows, dtype=np.int64)
    lines = rows + 2
    for bad in bad_lines:  # few (the file is rejected anyway); each shifts the rows after it
        lines[lines >= bad] += 1
    if bad_lines.size:
        first_bad = int(bad_lines[0])
        expected = len(clean)
        problems = _field_problems(table, {})
        earlier = [p for p in problems if lines[p.row] < first_bad]
        if earlier:
            p = min(earlier, key=lambda p: p.row)
            raise ImportRejected(where, p.message, line=int(lines[p.row]), field=p.field)
        raise ImportRejected(where, f"expected {expected} fields, as the header names; found a different number", line=first_bad)
    blank = _blank_rows(table)
    if blank.any():
        keep = ~blank
        table, lines = table.filter(pa.array(keep)), lines[keep]
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
        bad_rows = len({p.row for p in problems})
        more = f" ({bad_rows} malformed rows in all, first shown)" if bad_rows > 1 else ""
        raise ImportRejected(where, first.message + more, field=first.field, **locate(first.row))
    n = raw.num_rows
    out = {
        "meter_id": columns["meter_id"],
        "interval_start": columns["interval_start"],
        "interval_s": columns.get("interval_s", pa.chunked_array([pa.repeat(pa.scalar(DEFAULT_INTERVAL_S, pa.int32()), n)])),
        "energy_delivered_wh": columns["energy_delivered_wh"],
        "energy_received_wh": columns.get("energy_received_wh", pa.chunked_array([pa.nulls(n, pa.float64())])),
        "reactive_varh": columns.get("reactive_varh", pa.chunked_array([pa.nulls(n, pa.float64())])),
        "voltage_v": columns.get("voltage_v", pa.chunked_array([pa.nulls(n, pa.float64())])),
        "quality": pa.chunked_array([pa.repeat(pa.scalar(0, pa.uint32()), n)]),
        "version": pa.chunked_array([pa.repeat(pa.scalar(0, pa.int32()), n)]),
        "source": pa.chunked_array([pa.repeat(pa.scalar("imported"), n)]),
    }
    table = pa.table(out)
    for field in READS_SCHEMA:
        if field.name not in out:
            table = table.append_column(field.name, pa.chunked_array([pa.nulls(n, field.type)]))
    return table.select(READS_SCHEMA.names).cast(READS_SCHEMA)


def _field_problems(raw: pa.Table, out: dict[str, pa.ChunkedArray]) -> list[_Problem]:
    """Each field's first malformed row (one per kind of fault); fills ``out`` with the parsed columns."""
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
        problems += [_Problem(row, name, message) for row, message in found]
    return problems


Found = list[tuple[int, str]]


def _text(column: pa.ChunkedArray) -> pa.ChunkedArray:
    return pc.utf8_trim_whitespace(column.cast(pa.string()))


def _first(mask: BoolArray, column: pa.ChunkedArray, message: Callable[[str], str]) -> Found:
    """(row, message) for the first row of ``mask``, or nothing."""
    if not mask.any():
        return []
    row = int(np.argmax(mask))
    value = column[row].as_py()
    return [(row, message(repr(value) if value is not None else "an empty value"))]


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
    found = _first(missing, column, lambda _: "missing value (every read needs its meter)")
    found += _first(nul, column, lambda v: f"{v} holds a NUL character")
    return _text(column), found


def _times(column: pa.ChunkedArray) -> tuple[pa.ChunkedArray, Found]:
    if pa.types.is_timestamp(column.type):
        if column.type.tz is None:
            return column, [(0, "timestamps without a time zone; store them as timestamp with time zone (UTC)")]
        missing = _is(column.is_null())
        return column.cast(TIMESTAMP), _first(missing, column, lambda _: "missing value")
    if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
        return column, [(0, f"type {column.type} is not a time; give ISO 8601 text or timestamps with a time zone")]
    text = _text(column)
    missing = _missing(column)
    shaped = _is(pc.match_substring_regex(text, _TIME + _OFFSET).fill_null(False))
    no_offset = ~shaped & ~missing & _is(pc.match_substring_regex(text, _TIME + "$").fill_null(False))
    garbled = ~shaped & ~missing & ~no_offset
    found = _first(missing, column, lambda _: "missing value")
    found += _first(no_offset, column, lambda v: f"{v} has no UTC offset; write e.g. {_EXAMPLE_TIME}")
    found += _first(garbled, column, lambda v: f"{v} is not an ISO 8601 time such as {_EXAMPLE_TIME}")
    good = pa.array(shaped)
    ok_text = text.filter(good)
    try:
        parsed = ok_text.cast(TIMESTAMP)
    except pa.ArrowInvalid:  # well shaped but impossible (month 13, 25 o'clock): find the first
        rows = np.flatnonzero(shaped)
        row = int(rows[_first_failing(ok_text, TIMESTAMP)])
        return column, [*found, (row, f"{column[row].as_py()!r} is not a valid date and time")]
    if found:
        return column, found
    return parsed, found


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
    required = name in REQUIRED
    missing = _missing(column)
    found: Found = []
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        text = _text(column)
        number = _is(pc.match_substring_regex(text, _NUMBER).fill_null(False))
        found += _first(~number & ~missing, column, lambda v: f"{v} is not a number")
        values = pc.if_else(pa.array(number), text, pa.scalar(None, pa.string())).cast(pa.float64())
    elif pa.types.is_integer(column.type) or pa.types.is_floating(column.type) or pa.types.is_decimal(column.type):
        values = column.cast(pa.float64())
        finite = _is(pc.is_finite(values).fill_null(True))
        found += _first(~finite, column, lambda v: f"{v} is not a finite number")
    else:
        return column, [(0, f"type {column.type} is not a number")]
    if required:
        found += _first(missing, column, lambda _: f"missing value ({name} is required)")
    if name in NON_NEGATIVE:
        negative = _is(pc.less(values, 0).fill_null(False))
        found += _first(negative, column, lambda v: f"{v} is negative")
    too_big = _is(pc.invert(pc.is_finite(values)).fill_null(False)) & ~missing
    found += _first(too_big, column, lambda v: f"{v} is not a finite number")
    return values, found


def _interval_s(column: pa.ChunkedArray) -> tuple[pa.ChunkedArray, Found]:
    missing = _missing(column)
    found: Found = []
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        text = _text(column)
        whole = _is(pc.match_substring_regex(text, _WHOLE).fill_null(False))
        found += _first(~whole & ~missing, column, lambda v: f"{v} is not a whole number of seconds")
        values = pc.if_else(pa.array(whole & ~missing), text, pa.scalar(None, pa.string())).cast(pa.int64())
    elif pa.types.is_integer(column.type):
        values = column.cast(pa.int64())
    else:
        return column, [(0, f"type {column.type} is not a whole number of seconds")]
    bad = _is(pc.or_(pc.less_equal(values, 0), pc.greater(values, 86_400)).fill_null(False))
    found += _first(bad, column, lambda v: f"{v} is not between 1 and 86400 seconds")
    if found:
        return column, found
    return values.fill_null(DEFAULT_INTERVAL_S).cast(pa.int32()), found


def read_interval_csv_text(text: str, *, name: str = "reads.csv") -> pa.Table:
    """:func:`read_interval_file` on CSV text (for tests and small scripts)."""
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / name
        path.write_text(text, encoding="utf-8")
        return read_interval_file(path)


__all__ = ["COLUMNS", "OPTIONAL", "REQUIRED", "io", "read_interval_file", "read_interval_csv_text"]
