"""Arrow tables in PostgreSQL's binary COPY format, built a column at a time.

Why binary and why by hand: psycopg's ``write_row`` is a Python call per row, and Arrow's CSV
writer formats timestamps at under a million values a second, so text COPY of 9.6 M reads spent
21 s in formatting alone. The binary format is, per row, a 16-bit field count and, per field, a
32-bit length (-1 for NULL) and the big-endian value. Each column is turned into such
"length + value" cells with numpy (fixed width) or Arrow kernels (text), and Arrow's
``binary_join_element_wise`` concatenates the cells of each row: the rows of a chunk come out as
one contiguous buffer, ready for ``copy.write``. 9.6 M reads encode in about 2 s.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from gridloom.errors import StoreInputError

HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)
TRAILER = struct.pack(">h", -1)
PG_EPOCH_US = 946_684_800_000_000  # 2000-01-01T00:00:00Z, PostgreSQL's timestamp origin, in Unix µs
CHUNK_ROWS = 100_000
_NULL_CELL = pa.scalar(b"\xff\xff\xff\xff", pa.binary())


def pg_type(kind: pa.DataType) -> str:
    """The PostgreSQL column type that holds an Arrow type without loss (uint32 needs a bigint)."""
    if pa.types.is_string(kind):
        return 'text COLLATE "C"'  # byte order: the same order as DuckDB and Arrow, and faster B-trees
    if pa.types.is_timestamp(kind) and kind.tz is not None:
        return "timestamptz"
    if pa.types.is_float64(kind):
        return "double precision"
    if pa.types.is_int16(kind):
        return "smallint"
    if pa.types.is_int32(kind):
        return "integer"
    if pa.types.is_int64(kind) or pa.types.is_uint32(kind):
        return "bigint"
    if pa.types.is_boolean(kind):
        return "boolean"
    raise StoreInputError(f"no PostgreSQL column type for Arrow type {kind}")


def copy_chunks(table: pa.Table, *, chunk_rows: int = CHUNK_ROWS) -> Iterator[memoryview | bytes]:
    """The whole binary COPY stream of ``table`` (header, row chunks, trailer), column order as given."""
    for column in table.columns:
        pg_type(column.type)  # refuse an unsupported type before sending anything
    yield HEADER
    for batch in table.to_batches(max_chunksize=chunk_rows):
        if batch.num_rows:
            yield _encode(batch)
    yield TRAILER


def _encode(batch: pa.RecordBatch) -> memoryview:
    n = batch.num_rows
    count = _cells(np.full(n, batch.num_columns, dtype=">i2"))
    cells = [_column_cells(batch.column(i)) for i in range(batch.num_columns)]
    rows = pc.binary_join_element_wise(count, *cells, b"")
    offsets = np.frombuffer(rows.buffers()[1], dtype=np.int32)
    start, end = int(offsets[rows.offset]), int(offsets[rows.offset + n])
    return memoryview(rows.buffers()[2]).cast("B")[start:end]


def _column_cells(column: pa.Array) -> pa.Array:
    kind = column.type
    if pa.types.is_string(kind):
        return _text_cells(column)
    if pa.types.is_timestamp(kind):
        micros = pc.subtract(column.cast(pa.timestamp("us", tz="UTC")).cast(pa.int64()), PG_EPOCH_US)
        return _fixed_cells(micros, ">i8")
    if pa.types.is_float64(kind):
        return _fixed_cells(column, ">f8")
    if pa.types.is_int16(kind):
        return _fixed_cells(column, ">i2")
    if pa.types.is_int32(kind):
        return _fixed_cells(column, ">i4")
    if pa.types.is_int64(kind) or pa.types.is_uint32(kind):
        return _fixed_cells(column.cast(pa.int64()), ">i8")
    if pa.types.is_boolean(kind):
        return _fixed_cells(column.cast(pa.uint8()), ">u1")
    raise StoreInputError(f"no PostgreSQL column type for Arrow type {kind}")


def _fixed_cells(column: pa.Array, dtype: str) -> pa.Array:
    """Cells "int32 width + big-endian value"; nulls become the cell "-1"."""
    values = column.fill_null(0) if column.null_count else column
    cells = np.empty(len(column), dtype=[("length", ">i4"), ("value", dtype)])
    cells["length"] = np.dtype(dtype).itemsize
    cells["value"] = values.to_numpy(zero_copy_only=False)
    out = _cells(cells)
    if column.null_count:
        out = pc.if_else(column.is_valid(), out, _NULL_CELL)
    return out


def _text_cells(column: pa.Array) -> pa.Array:
    """Cells "int32 byte length + UTF-8 bytes"; nulls become the cell "-1"."""
    raw = column.cast(pa.binary())
    lengths = pc.binary_length(raw).fill_null(-1).to_numpy(zero_copy_only=False).astype(">i4")
    return pc.binary_join_element_wise(_cells(lengths), raw.fill_null(b""), b"")


def _cells(values: npt.NDArray[Any]) -> pa.Array:
    """A numpy array of fixed-size records as an Arrow binary array, one record per value."""
    raw = np.ascontiguousarray(values).view(np.uint8)
    width = values.dtype.itemsize
    fixed = pa.FixedSizeBinaryArray.from_buffers(pa.binary(width), len(values), [None, pa.py_buffer(raw)])
    return fixed.cast(pa.binary())
