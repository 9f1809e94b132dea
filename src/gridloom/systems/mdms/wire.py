"""Interval-read batches as they arrive (AMI-10 / DGM-29 ``interval_reads``), turned into Arrow.

A batch is columnar: one list per field (``meter_id``, ``interval_start_us``, ``interval_s``,
``energy_delivered_wh``, ``energy_received_wh``, ``reactive_varh``, ``voltage_v``,
``quality``), as the head-end forwards it. It comes either as a mapping of those columns (lists
or numpy arrays; what the fabric decodes by default and what callers of the Python API pass) or
as its msgpack bytes (the MDMS actor asks the fabric for the body undecoded, see
:class:`RawBatch`).

The msgpack bytes are the fast path. A read costs ~110 ns to decode into Python objects and as
much again to turn those into Arrow; instead, :class:`RawBatch` keeps each column's encoded
elements, and :func:`decode_columns` decodes many batches' columns at once with numpy when a
column's elements all have one encoding — which is what a msgpack encoder writes for floats (all
float64), for times in µs (all uint64), for small flags (all positive fixint) and for meter ids
of one length (all fixstr). Any other column (mixed widths, nil, text of varied lengths) goes
through msgspec and ``pa.array``, with the same result and the same errors as a mapping batch.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec
import numpy as np
import numpy.typing as npt
import pyarrow as pa

from gridloom.errors import VeeInputError
from gridloom.store.schema import READS_SCHEMA, TIMESTAMP

READ_COLUMNS: dict[str, pa.DataType] = {
    "meter_id": pa.string(),
    "interval_start_us": pa.int64(),
    "interval_s": pa.int32(),
    "energy_delivered_wh": pa.float64(),
    "energy_received_wh": pa.float64(),
    "reactive_varh": pa.float64(),
    "voltage_v": pa.float64(),
    "quality": pa.uint32(),
}
"""The wire columns of an ``interval_reads`` body and the Arrow type each becomes."""

Records = Mapping[str, Sequence[Any] | npt.NDArray[Any]]


class _RawColumns(msgspec.Struct):
    """An ``interval_reads`` body with each column left encoded (unknown keys are ignored)."""

    meter_id: msgspec.Raw
    interval_start_us: msgspec.Raw
    interval_s: msgspec.Raw
    energy_delivered_wh: msgspec.Raw
    energy_received_wh: msgspec.Raw
    reactive_varh: msgspec.Raw
    voltage_v: msgspec.Raw
    quality: msgspec.Raw


_RAW_DECODER = msgspec.msgpack.Decoder(_RawColumns)
_LIST_DECODER = msgspec.msgpack.Decoder(list[Any])


@dataclass(frozen=True, eq=False, slots=True)
class RawBatch:
    """One batch's columns as msgpack: per column, the bytes of its elements (array header removed)."""

    rows: int
    columns: dict[str, memoryview]

    @classmethod
    def of(cls, payload: bytes | msgspec.Raw | memoryview) -> RawBatch:
        """Split a msgpack ``interval_reads`` body into its columns; :class:`VeeInputError` when it is
        not a map holding every column as an array, or the arrays differ in length."""
        try:
            raw = _RAW_DECODER.decode(payload)
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            raise VeeInputError(f"interval_reads body: {exc}") from exc
        columns: dict[str, memoryview] = {}
        rows = -1
        for name in READ_COLUMNS:  # a few hundred thousand batches a day: kept to plain integer work
            view = memoryview(getattr(raw, name))
            first = view[0]  # a Raw value is never empty
            if 0x90 <= first <= 0x9F:
                n, header = first & 0x0F, 1
            elif first == 0xDC and len(view) >= 3:
                n, header = (view[1] << 8) | view[2], 3
            elif first == 0xDD and len(view) >= 5:
                n, header = int.from_bytes(view[1:5], "big"), 5
            else:
                raise VeeInputError(f"interval_reads body: column {name} is not an array")
            if n != rows and rows >= 0:
                raise VeeInputError(
                    f"interval_reads body: columns differ in length: meter_id has {rows}, {name} has {n}"
                )
            rows = n
            columns[name] = view[header:]
        return cls(rows, columns)


# --- decoding one column of many batches --------------------------------------------------------------
_INT_TAGS: dict[int, tuple[int, str]] = {  # tag -> (element width with the tag, big-endian numpy type)
    0xCC: (2, ">u1"),
    0xCD: (3, ">u2"),
    0xCE: (5, ">u4"),
    0xCF: (9, ">u8"),
    0xD0: (2, ">i1"),
    0xD1: (3, ">i2"),
    0xD2: (5, ">i4"),
    0xD3: (9, ">i8"),
}
_FLOAT64 = 0xCB
_FIXSTR = 0xA0


def _elements(data: bytes, n: int, width: int, kind: str) -> npt.NDArray[Any] | None:
    """The values of ``n`` elements of one tag and ``width`` bytes each, or None if they are not."""
    if len(data) != n * width:
        return None
    cells = np.frombuffer(data, dtype=np.dtype([("tag", "u1"), ("value", kind)]))
    if n and not bool((cells["tag"] == data[0]).all()):
        return None
    return cells["value"]


def _numbers(data: bytes, n: int, target: pa.DataType) -> pa.Array | None:
    """A numeric column from its encoded elements when they share one encoding, else None."""
    if n == 0:
        return pa.array([], target)
    tag = data[0]
    if pa.types.is_floating(target):
        values = _elements(data, n, 9, ">f8") if tag == _FLOAT64 else None
        return None if values is None else pa.array(values.astype(np.float64), target)
    if len(data) == n:  # every element a positive fixint (0..127)
        small = np.frombuffer(data, dtype=np.uint8)
        return pa.array(small.astype(np.int64), pa.int64()).cast(target) if bool((small < 0x80).all()) else None
    if tag not in _INT_TAGS:
        return None
    width, kind = _INT_TAGS[tag]
    ints = _elements(data, n, width, kind)
    if ints is None or (kind == ">u8" and bool((ints > np.iinfo(np.int64).max).any())):
        return None
    return pa.array(ints.astype(np.int64), pa.int64()).cast(target)  # raises on overflow, as pa.array would


def _strings(data: bytes, n: int) -> pa.Array | None:
    """A text column from its encoded elements when they are all fixstr of one length, else None."""
    if n == 0:
        return pa.array([], pa.string())
    tag = data[0]
    length = tag - _FIXSTR
    if not 0 <= length <= 31 or len(data) != n * (length + 1):
        return None
    cells = np.frombuffer(data, dtype=np.uint8).reshape(n, length + 1)
    if not bool((cells[:, 0] == tag).all()):
        return None
    text = np.ascontiguousarray(cells[:, 1:])
    offsets = np.arange(n + 1, dtype=np.int32) * np.int32(length)
    array = pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(text))
    if length and not bool((text < 0x80).all()):
        try:
            array.validate(full=True)  # not ASCII: check the UTF-8 as pa.array would
        except pa.ArrowInvalid as exc:
            raise VeeInputError(f"interval_reads body: meter_id is not valid UTF-8: {exc}") from exc
    return array


def decode_columns(batches: Sequence[RawBatch]) -> dict[str, pa.Array]:
    """The columns of ``batches`` (in order) as Arrow arrays of :data:`READ_COLUMNS`' types.

    Raises :class:`VeeInputError` when a value does not fit its column (a text where a number
    belongs, an integer out of range, invalid UTF-8).
    """
    n = sum(b.rows for b in batches)
    out: dict[str, pa.Array] = {}
    for name, target in READ_COLUMNS.items():
        data = b"".join(b.columns[name] for b in batches)
        try:
            fast = _strings(data, n) if pa.types.is_string(target) else _numbers(data, n, target)
        except pa.ArrowInvalid as exc:  # an integer out of the column's range
            raise VeeInputError(f"interval_reads body: column {name} cannot be read as {target}: {exc}") from exc
        out[name] = fast if fast is not None else _slow(data, n, name, target)
    return out


def _slow(data: bytes, n: int, name: str, target: pa.DataType) -> pa.Array:
    """Decode through Python objects: any msgpack the fast paths do not take (nil, mixed widths)."""
    header = b"\xdd" + n.to_bytes(4, "big")
    try:
        values = _LIST_DECODER.decode(header + data)
        return pa.array(values, target)
    except (msgspec.DecodeError, msgspec.ValidationError, pa.ArrowInvalid, pa.ArrowTypeError, OverflowError) as exc:
        raise VeeInputError(f"interval_reads body: column {name} cannot be read as {target}: {exc}") from exc


def mapping_columns(records: Records) -> dict[str, pa.Array]:
    """The columns of a mapping batch (lists or numpy arrays) as Arrow arrays of :data:`READ_COLUMNS`' types."""
    missing = [name for name in READ_COLUMNS if name not in records]
    if missing:
        raise VeeInputError(f"interval_reads body lacks column(s) {', '.join(missing)}")
    lengths = {name: len(records[name]) for name in READ_COLUMNS}
    n = lengths["meter_id"]
    uneven = [f"{name} has {length}" for name, length in lengths.items() if length != n]
    if uneven:
        raise VeeInputError(f"interval_reads body: columns differ in length: meter_id has {n}, {', '.join(uneven)}")
    out: dict[str, pa.Array] = {}
    for name, target in READ_COLUMNS.items():
        try:
            out[name] = pa.array(records[name], target)
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError, TypeError) as exc:
            raise VeeInputError(f"interval_reads body: column {name} cannot be read as {target}: {exc}") from exc
    return out


def reads_from_columns(columns: Mapping[str, pa.Array], *, recorded_at: dt.datetime) -> pa.Table:
    """Wire columns (see :data:`READ_COLUMNS`) as a version-0 table in READS_SCHEMA, stamped ``recorded_at``."""
    n = len(columns["meter_id"])
    return pa.Table.from_arrays(
        [
            columns["meter_id"],
            columns["interval_start_us"].cast(TIMESTAMP),
            columns["interval_s"],
            columns["energy_delivered_wh"],
            columns["energy_received_wh"],
            columns["reactive_varh"],
            columns["voltage_v"],
            columns["quality"],
            pa.array(np.zeros(n, np.int32)),
            pa.repeat(pa.scalar("measured", pa.string()), n),
            pa.nulls(n, pa.string()),
            pa.nulls(n, pa.string()),
            pa.repeat(pa.scalar(recorded_at, TIMESTAMP), n),
        ],
        schema=READS_SCHEMA,
    )


def reads_table(records: Records, *, recorded_at: dt.datetime) -> pa.Table:
    """Columnar read records (as concentrators send them) as a version-0 table in READS_SCHEMA."""
    return reads_from_columns(mapping_columns(records), recorded_at=recorded_at)
