"""Columnar building blocks of VEE: meter codes, sortable keys, register spans, outages, event lookups.

Every table of one VEE call shares one integer code per meter id (ids in sorted order), so a
read, a register read, an event or an outage is addressed by one int64 *key*::

    key = code << 33 | epoch seconds        (seconds < 2**33: until the year 2242)

Sorting by key groups by meter and orders in time; a table already ordered by
(meter_id, time) — as the store returns it — is recognised as sorted and never re-sorted.
Lookups (exact, previous, next, ranges) are ``np.searchsorted`` calls over whole batches.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TypeAlias

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from gridloom.errors import VeeInputError
from gridloom.store.schema import READS_SCHEMA, TIMESTAMP

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
U32Array = npt.NDArray[np.uint32]

T_BITS = 33
T_MAX = (1 << T_BITS) - 1
US = 1_000_000
NO_ROW = -1

PerMeter: TypeAlias = float | bool | Mapping[str, float] | Mapping[str, bool] | pa.Table


# ---------------------------------------------------------------------------------------- columns
def require(table: pa.Table, columns: tuple[str, ...], name: str) -> None:
    if not isinstance(table, pa.Table):
        raise VeeInputError(f"{name} must be a pyarrow Table, got {type(table).__name__}")
    missing = [c for c in columns if c not in table.column_names]
    if missing:
        raise VeeInputError(f"{name} lacks column(s) {', '.join(missing)} (has {', '.join(table.column_names)})")


def seconds(table: pa.Table, column: str, name: str) -> IntArray:
    """A timestamp column as int64 epoch seconds (floored); refuses nulls and times outside 1970..2242."""
    col = table.column(column)
    if col.null_count:
        raise VeeInputError(f"{name}.{column} has {col.null_count} null timestamps")
    try:
        if col.type != TIMESTAMP:
            col = col.cast(TIMESTAMP)
        us = np.asarray(col.cast(pa.int64()).to_numpy(), dtype=np.int64)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise VeeInputError(f"{name}.{column} is not a timestamp column ({col.type})") from exc
    s = us // US
    if len(s) and (s.min() < 0 or s.max() > T_MAX):
        raise VeeInputError(f"{name}.{column} has times outside 1970-01-01 .. 2242")
    return s


def floats(table: pa.Table, column: str, name: str) -> FloatArray:
    """A numeric column as float64, nulls as NaN."""
    col = table.column(column)
    try:
        values = col.cast(pa.float64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise VeeInputError(f"{name}.{column} is not numeric ({col.type})") from exc
    if values.null_count:
        values = pc.fill_null(values, np.nan)
    return np.asarray(values.to_numpy(), dtype=np.float64)


FRAME_COLUMNS = (
    "meter_id",
    "interval_start",
    "interval_s",
    "energy_delivered_wh",
    "energy_received_wh",
    "reactive_varh",
    "quality",
)
"""The columns of a reads table that VEE computes with (:class:`Frame`); the others are carried along."""


def conform_reads(
    reads: pa.Table, *, interval_s: int, name: str = "reads", columns: tuple[str, ...] | None = None
) -> pa.Table:
    """``reads`` with the columns of READS_SCHEMA, in its order and types; absent optional columns filled.

    Only ``meter_id``, ``interval_start`` and ``energy_delivered_wh`` are required; absent
    measurements are null, ``interval_s`` the configured length, ``quality`` 0, ``version`` 0.
    ``columns``: only these (in schema order), e.g. :data:`FRAME_COLUMNS` — filling the others
    of millions of reads costs memory that VEE's arithmetic does not need.
    """
    require(reads, ("meter_id", "interval_start", "energy_delivered_wh"), name)
    n = reads.num_rows
    defaults = {"interval_s": interval_s, "quality": 0, "version": 0, "source": "measured"}
    schema = READS_SCHEMA if columns is None else pa.schema([f for f in READS_SCHEMA if f.name in columns])
    columns_out = []
    for f in schema:
        if f.name in reads.column_names:
            col = reads.column(f.name)
            if columns is not None and f.name == "meter_id" and _is_text_dictionary(col.type):
                # Kept encoded (a store's bulk read): VEE wants codes, not text.
                schema = schema.set(schema.get_field_index("meter_id"), pa.field("meter_id", col.type))
                columns_out.append(col)
                continue
            try:
                columns_out.append(col if col.type == f.type else col.cast(f.type))
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                raise VeeInputError(f"{name}.{f.name} cannot be read as {f.type} (it is {col.type}): {exc}") from exc
        else:
            value = defaults.get(f.name)
            columns_out.append(pa.nulls(n, f.type) if value is None else pa.repeat(pa.scalar(value, f.type), n))
    table = pa.Table.from_arrays(columns_out, schema=schema)
    if table.column("meter_id").null_count:
        raise VeeInputError(f"{name}.meter_id has {table.column('meter_id').null_count} nulls")
    lengths = table.column("interval_s")
    if lengths.null_count:
        table = table.set_column(schema.get_field_index("interval_s"), "interval_s", pc.fill_null(lengths, interval_s))
    elif n and pc.min(lengths).as_py() <= 0:
        raise VeeInputError(f"{name}.interval_s must be positive")
    return table


def lengths(table: pa.Table) -> IntArray:
    """Interval lengths; one read-only broadcast value (no memory) when every read has the same."""
    col = table.column("interval_s")
    if len(col):
        bounds = pc.min_max(col).as_py()
        if bounds["min"] == bounds["max"]:
            return constant(int(bounds["min"]), len(col))
    return np.asarray(col.to_numpy(), dtype=np.int64)


def constant(value: int, n: int) -> IntArray:
    out: IntArray = np.broadcast_to(np.int64(value), (n,))
    return out


def take(values: IntArray, rows: IntArray | BoolArray) -> IntArray:
    """``values[rows]``, keeping a broadcast constant a broadcast constant."""
    if values.ndim == 1 and values.strides == (0,) and len(values):
        n = int(np.count_nonzero(rows)) if rows.dtype == np.bool_ else len(rows)
        return constant(int(values[0]), n)
    out: IntArray = values[rows]
    return out


def qualities(table: pa.Table) -> U32Array:
    col = table.column("quality")
    if col.null_count:
        col = pc.fill_null(col, 0)
    return np.asarray(col.to_numpy(), dtype=np.uint32)


def _is_text_dictionary(kind: pa.DataType) -> bool:
    return bool(pa.types.is_dictionary(kind)) and bool(
        pa.types.is_string(kind.value_type) or pa.types.is_large_string(kind.value_type)
    )


def _dictionary_parts(column: pa.Array | pa.ChunkedArray) -> tuple[pa.Array, IntArray]:
    """A dictionary-encoded column as (one dictionary, every row's index into it)."""
    chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
    if not chunks:
        return pa.array([], pa.string()), np.zeros(0, np.int64)
    dictionary = chunks[0].dictionary
    if any(c.dictionary is not dictionary and not c.dictionary.equals(dictionary) for c in chunks[1:]):
        chunks = pa.chunked_array(chunks).unify_dictionaries().chunks
        dictionary = chunks[0].dictionary
    indices = [np.asarray(c.indices.fill_null(-1).to_numpy(zero_copy_only=False), dtype=np.int64) for c in chunks]
    return dictionary.cast(pa.string()), np.concatenate(indices) if len(indices) > 1 else indices[0]


# ---------------------------------------------------------------------------------------- meter codes
class MeterCodes:
    """One int code per meter id, ids in sorted order (so keys sort like (meter_id, time))."""

    def __init__(self, ids: pa.Array) -> None:
        self.ids = ids

    @classmethod
    def of(cls, *columns: pa.Array | pa.ChunkedArray) -> MeterCodes:
        parts = [pc.unique(c) for c in columns if len(c)]
        return cls._sorted(parts)

    @classmethod
    def _sorted(cls, parts: list[pa.Array]) -> MeterCodes:
        parts = [p for p in parts if len(p)]
        if not parts:
            return cls(pa.array([], pa.string()))
        if len(parts) == 1:
            ids = parts[0].cast(pa.string())
        else:
            ids = pc.unique(pa.chunked_array([p.cast(pa.string()) for p in parts], pa.string()).combine_chunks())
        return cls(ids.take(pc.sort_indices(ids)))

    @classmethod
    def encode(
        cls, column: pa.Array | pa.ChunkedArray, *others: pa.Array | pa.ChunkedArray
    ) -> tuple[MeterCodes, IntArray]:
        """The codes of ``column``'s ids and ``others``', and the code of each row of ``column``.

        One hash pass over the (long) column, where ``of`` and ``codes`` would take two.
        """
        if _is_text_dictionary(column.type):
            dictionary, indices = _dictionary_parts(column)
        else:
            encoded = pc.dictionary_encode(column.cast(pa.string()))
            chunks = encoded.chunks if isinstance(encoded, pa.ChunkedArray) else [encoded]
            if not chunks:
                return cls._sorted([pc.unique(c) for c in others]), np.zeros(0, np.int64)
            # A chunked column shares one dictionary, every chunk's a prefix of the last one's.
            dictionary = chunks[-1].dictionary
            if any(len(c.dictionary) != len(dictionary) for c in chunks):
                chunks = pa.chunked_array(chunks).unify_dictionaries().chunks
                dictionary = chunks[-1].dictionary
            parts = [np.asarray(c.indices.to_numpy(zero_copy_only=False), dtype=np.int64) for c in chunks]
            indices = np.concatenate(parts) if len(parts) > 1 else parts[0]
        codes = cls._sorted([dictionary, *(pc.unique(c) for c in others)])
        position = np.append(codes.codes(dictionary), NO_ROW)  # dictionary entry -> code; a null row -> NO_ROW
        return codes, position[indices]

    def __len__(self) -> int:
        return len(self.ids)

    def codes(self, column: pa.Array | pa.ChunkedArray) -> IntArray:
        """The code of each id; NO_ROW for an id not known."""
        if _is_text_dictionary(column.type):  # look up the dictionary, not every row
            dictionary, indices = _dictionary_parts(column)
            return np.append(self.codes(dictionary), NO_ROW)[indices]
        idx = pc.index_in(column.cast(pa.string()), value_set=self.ids)
        if idx.null_count:
            idx = pc.fill_null(idx, NO_ROW)
        return np.asarray(idx.to_numpy(), dtype=np.int64)

    def take(self, codes: IntArray) -> pa.Array:
        return self.ids.take(pa.array(codes, pa.int64()))


def keys(codes: IntArray, t: IntArray) -> IntArray:
    out: IntArray = (codes << T_BITS) | t
    return out


def code_of(key: IntArray) -> IntArray:
    out: IntArray = key >> T_BITS
    return out


def time_of(key: IntArray) -> IntArray:
    out: IntArray = key & T_MAX
    return out


class SortedKeys:
    """Keys sorted once; lookups answer with row indices of the *unsorted* input (NO_ROW if none)."""

    def __init__(self, key: IntArray, *, presorted: bool = False) -> None:
        if presorted or len(key) < 2 or bool(np.all(key[1:] >= key[:-1])):
            self.order: IntArray | None = None
            self.sorted = key
        else:
            self.order = np.argsort(key, kind="stable").astype(np.int64, copy=False)
            self.sorted = key[self.order]

    def __len__(self) -> int:
        return len(self.sorted)

    def rows(self, positions: IntArray) -> IntArray:
        """Input rows at sorted positions (positions may be NO_ROW)."""
        if self.order is None:
            return positions
        out = np.full(len(positions), NO_ROW, np.int64)
        ok = positions >= 0
        out[ok] = self.order[positions[ok]]
        return out

    def in_order(self, values: npt.NDArray[np.generic]) -> npt.NDArray[np.generic]:
        return values if self.order is None else values[self.order]

    def exact(self, q: IntArray) -> IntArray:
        """Position (sorted) of the first key equal to each query, or NO_ROW."""
        pos = np.searchsorted(self.sorted, q, side="left").astype(np.int64, copy=False)
        found = pos < len(self.sorted)
        found[found] = self.sorted[pos[found]] == q[found]
        return np.where(found, pos, NO_ROW)

    def before(self, q: IntArray) -> IntArray:
        """Position of the largest key < q of the same meter, or NO_ROW."""
        pos = np.searchsorted(self.sorted, q, side="left").astype(np.int64, copy=False) - 1
        ok = pos >= 0
        ok[ok] = code_of(self.sorted[pos[ok]]) == code_of(q[ok])
        return np.where(ok, pos, NO_ROW)

    def after(self, q: IntArray) -> IntArray:
        """Position of the smallest key > q of the same meter, or NO_ROW."""
        pos = np.searchsorted(self.sorted, q, side="right").astype(np.int64, copy=False)
        ok = pos < len(self.sorted)
        ok[ok] = code_of(self.sorted[pos[ok]]) == code_of(q[ok])
        return np.where(ok, pos, NO_ROW)

    def range(self, lo: IntArray, hi: IntArray) -> tuple[IntArray, IntArray]:
        """Sorted positions [a, b) of the keys in [lo, hi)."""
        a = np.searchsorted(self.sorted, lo, side="left").astype(np.int64, copy=False)
        b = np.searchsorted(self.sorted, hi, side="left").astype(np.int64, copy=False)
        return a, b


def segment_sums(values: FloatArray, a: IntArray, b: IntArray) -> FloatArray:
    """Sums of ``values[a[i]:b[i]]`` (NaN counted as 0), each summed on its own: exact to the segment's scale.

    Prefix sums over a whole batch would lose the last Wh of a span to the batch's magnitude.
    """
    out = np.zeros(len(a), np.float64)
    nonempty = np.flatnonzero(b > a)
    if not len(nonempty):
        return out
    padded = np.zeros(len(values) + 1, np.float64)
    padded[:-1] = np.nan_to_num(values, nan=0.0)
    bounds = np.empty(2 * len(nonempty), np.int64)
    bounds[0::2] = a[nonempty]
    bounds[1::2] = b[nonempty]
    out[nonempty] = np.add.reduceat(padded, bounds)[0::2]
    return out


# ---------------------------------------------------------------------------------------- per meter
def per_meter(value: PerMeter | None, codes: MeterCodes, column: str, name: str) -> FloatArray | None:
    """A per-meter setting as an array over codes (NaN where unknown); None when not given at all.

    ``value`` is a scalar (every meter), a mapping meter_id -> value, or a table with columns
    ``meter_id`` and ``column``.
    """
    if value is None:
        return None
    out = np.full(len(codes), np.nan, np.float64)
    if isinstance(value, bool | int | float):
        out[:] = float(value)
        return out
    if isinstance(value, pa.Table):
        require(value, ("meter_id", column), name)
        table = value
    elif isinstance(value, Mapping):
        table = pa.table(
            {"meter_id": pa.array(list(value.keys()), pa.string()), column: [float(v) for v in value.values()]}
        )
    else:
        raise VeeInputError(f"{name} must be a number, a mapping meter_id -> value or a table, got {type(value)}")
    c = codes.codes(table.column("meter_id"))
    v = floats(table, column, name)
    known = c >= 0
    out[c[known]] = v[known]
    return out


# ---------------------------------------------------------------------------------------- registers
@dataclass(frozen=True, eq=False)
class Spans:
    """Consecutive register reads of each meter: span i covers intervals starting in [start, end)."""

    start_key: IntArray  # sorted
    end_t: IntArray
    delta_delivered_wh: FloatArray  # NaN when a register went backwards (meter exchange, rollover)
    delta_received_wh: FloatArray

    def __len__(self) -> int:
        return len(self.start_key)

    @property
    def start_t(self) -> IntArray:
        return time_of(self.start_key)

    @property
    def code(self) -> IntArray:
        return code_of(self.start_key)

    def locate(self, key: IntArray, length_s: IntArray | int) -> IntArray:
        """The span holding each interval [t, t + length) of key, or NO_ROW."""
        i = np.searchsorted(self.start_key, key, side="right").astype(np.int64, copy=False) - 1
        ok = i >= 0
        ok[ok] = code_of(self.start_key[i[ok]]) == code_of(key[ok])
        ends = time_of(key) + length_s
        ok[ok] = ends[ok] <= self.end_t[i[ok]]
        return np.where(ok, i, NO_ROW)

    def segments(self, sorted_key: IntArray) -> tuple[IntArray, IntArray]:
        """Positions [a, b) of the sorted keys inside each span (reads on the same interval grid)."""
        a = np.searchsorted(sorted_key, self.start_key, side="left").astype(np.int64, copy=False)
        b = np.searchsorted(sorted_key, keys(self.code, self.end_t), side="left").astype(np.int64, copy=False)
        return a, b

    def intervals(self, interval_s: int) -> IntArray:
        out: IntArray = (self.end_t - self.start_t) // interval_s
        return out


def register_spans(registers: pa.Table | None, codes: MeterCodes, interval_s: int) -> Spans | None:
    """Spans between consecutive register reads per meter, each read moved down to its interval boundary.

    A register read reports the energy of every interval that ended before it was taken, so a
    read at 00:00:07 closes the span at 00:00. Two reads falling on one boundary keep the later.
    """
    if registers is None:
        return None
    name = "registers"
    require(registers, ("meter_id", "read_at", "energy_delivered_wh"), name)
    c = codes.codes(registers.column("meter_id"))
    t = seconds(registers, "read_at", name)
    delivered = floats(registers, "energy_delivered_wh", name)
    received = (
        floats(registers, "energy_received_wh", name)
        if "energy_received_wh" in registers.column_names
        else np.full(len(c), np.nan)
    )
    keep = (c >= 0) & np.isfinite(delivered)
    c, t, delivered, received = c[keep], t[keep], delivered[keep], received[keep]
    order = np.lexsort((t, c))
    c, t, delivered, received = c[order], t[order], delivered[order], received[order]
    boundary = t - t % interval_s
    last_of_boundary = np.ones(len(c), bool)
    last_of_boundary[:-1] = (c[1:] != c[:-1]) | (boundary[1:] != boundary[:-1])
    c, boundary = c[last_of_boundary], boundary[last_of_boundary]
    delivered, received = delivered[last_of_boundary], received[last_of_boundary]
    pair = np.flatnonzero(c[1:] == c[:-1])
    d_delivered = delivered[pair + 1] - delivered[pair]
    d_received = received[pair + 1] - received[pair]
    return Spans(
        start_key=keys(c[pair], boundary[pair]),
        end_t=boundary[pair + 1],
        delta_delivered_wh=np.where(d_delivered >= 0, d_delivered, np.nan),
        delta_received_wh=np.where(d_received >= 0, d_received, np.nan),
    )


# ---------------------------------------------------------------------------------------- outages, events
@dataclass(frozen=True, eq=False)
class Outages:
    """Known outages per meter, merged where they overlap, for "is [t0, t1) inside an outage" lookups."""

    start_key: IntArray  # sorted
    reach_key: IntArray  # running max of end keys: how far the outages begun so far reach

    def __len__(self) -> int:
        return len(self.start_key)

    def covers(self, key: IntArray, length_s: IntArray) -> BoolArray:
        i = np.searchsorted(self.start_key, key, side="right").astype(np.int64, copy=False) - 1
        ok = i >= 0
        ok[ok] = self.reach_key[i[ok]] >= key[ok] + length_s[ok]
        return ok


def outages(outage_table: pa.Table | None, events: pa.Table | None, codes: MeterCodes) -> Outages | None:
    """Outages given (meter_id, start, end — a null end is still going on) plus those the meters told:
    a LAST_GASP up to the next POWER_RESTORE (or the meter's next gasp; open if none follows)."""
    starts: list[IntArray] = []
    ends: list[IntArray] = []
    if outage_table is not None:
        name = "outages"
        require(outage_table, ("meter_id", "start", "end"), name)
        c = codes.codes(outage_table.column("meter_id"))
        s = seconds(outage_table, "start", name)
        end_col = outage_table.column("end")
        e = np.full(len(c), T_MAX, np.int64)
        if len(c):
            filled = outage_table.set_column(
                outage_table.column_names.index("end"),
                "end",
                pc.fill_null(end_col.cast(TIMESTAMP), pa.scalar(0, TIMESTAMP)),
            )
            known = ~np.asarray(end_col.is_null().to_numpy(zero_copy_only=False), dtype=bool)
            e = np.where(known, seconds(filled, "end", name), T_MAX)
        keep = c >= 0
        starts.append(keys(c[keep], s[keep]))
        ends.append(keys(c[keep], e[keep]))
    if events is not None:
        ev_c, ev_t, kind = _events(events, codes, ("LAST_GASP", "POWER_RESTORE"))
        order = np.lexsort((ev_t, ev_c))
        ev_c, ev_t, kind = ev_c[order], ev_t[order], kind[order]
        gasp = np.flatnonzero(kind == "LAST_GASP")
        nxt = gasp + 1
        has_next = nxt < len(ev_c)
        has_next[has_next] = ev_c[nxt[has_next]] == ev_c[gasp[has_next]]
        end = np.full(len(gasp), T_MAX, np.int64)
        end[has_next] = ev_t[nxt[has_next]]
        starts.append(keys(ev_c[gasp], ev_t[gasp]))
        ends.append(keys(ev_c[gasp], end))
        # A restore with no gasp before it in these events: the outage began before them.
        restore = np.flatnonzero(kind == "POWER_RESTORE")
        prev = restore - 1
        orphan = prev < 0
        orphan[~orphan] = (ev_c[prev[~orphan]] != ev_c[restore[~orphan]]) | (kind[prev[~orphan]] != "LAST_GASP")
        orphan_rows = restore[orphan]
        prev_rows = prev[orphan]
        same = prev_rows >= 0
        same[same] = ev_c[prev_rows[same]] == ev_c[orphan_rows[same]]
        begun = np.where(same, ev_t[np.maximum(prev_rows, 0)], 0)
        starts.append(keys(ev_c[orphan_rows], begun))
        ends.append(keys(ev_c[orphan_rows], ev_t[orphan_rows]))
    if not starts:
        return None
    start_key = np.concatenate(starts)
    end_key = np.concatenate(ends)
    order = np.argsort(start_key, kind="stable")
    return Outages(start_key[order], np.maximum.accumulate(end_key[order]) if len(order) else end_key)


def _events(
    events: pa.Table, codes: MeterCodes, kinds: tuple[str, ...]
) -> tuple[IntArray, IntArray, npt.NDArray[np.str_]]:
    name = "events"
    require(events, ("meter_id", "at", "kind"), name)
    mask = pc.is_in(events.column("kind").cast(pa.string()), value_set=pa.array(kinds, pa.string()))
    selected = events.filter(pc.fill_null(mask, False))
    c = codes.codes(selected.column("meter_id"))
    t = seconds(selected, "at", name)
    kind = np.asarray(selected.column("kind").cast(pa.string()).to_numpy(zero_copy_only=False), dtype=np.str_)
    keep = c >= 0
    return c[keep], t[keep], kind[keep]


def event_keys(events: pa.Table | None, codes: MeterCodes, kind: str) -> SortedKeys | None:
    """Keys of the events of one kind, sorted, for "did it happen in [t, t + length)" lookups."""
    if events is None:
        return None
    c, t, _ = _events(events, codes, (kind,))
    return SortedKeys(keys(c, t))


# ---------------------------------------------------------------------------------------- grid
def grid_cells(
    row_of_code: IntArray, n_rows: int, key: IntArray, present: BoolArray, start_s: int, intervals: int, interval_s: int
) -> IntArray:
    """Cells of an ``n_rows`` x ``intervals`` grid without a present read, ascending.

    Cell ``i`` is meter row ``i // intervals`` (``row_of_code`` maps a meter code to its row, or
    NO_ROW), interval ``i % intervals``; ``key`` holds interval starts already on the boundary.
    """
    filled = np.zeros(n_rows * intervals, bool)
    if len(key):
        at = key if bool(present.all()) else key[present]
        code = code_of(at)
        identity = len(row_of_code) == n_rows and bool((row_of_code == np.arange(n_rows)).all())
        row = code if identity else row_of_code[code]  # the nightly VEE's meters are its grid's rows
        offset = time_of(at) - start_s
        inside = offset.view(np.uint64) < np.uint64(intervals * interval_s)  # 0 <= offset < span, one test
        if not identity:
            inside &= row >= 0
        filled[row[inside] * intervals + offset[inside] // interval_s] = True
    out: IntArray = np.flatnonzero(~filled).astype(np.int64, copy=False)
    return out


# ---------------------------------------------------------------------------------------- frames
def aligned(t: IntArray, length_s: IntArray) -> IntArray:
    """Each start moved to the nearest boundary of its interval length (``t`` itself when all are on one)."""
    off = t % (int(length_s[0]) if len(length_s) and length_s.strides == (0,) else length_s)
    if not off.any():
        return t
    out: IntArray = t - off + np.where(2 * off >= length_s, length_s, 0)
    return out


@dataclass(frozen=True, eq=False)
class Frame:
    """The columns of a conformed reads table as numpy arrays, sorted by key (meter code, then time).

    ``order[i]`` is the table row of sorted row ``i`` (None: the table was already sorted).
    ``key`` uses the interval start moved to its boundary, so a drifting meter's read lands on
    the interval it measured; ``t`` keeps the stamp as sent.
    """

    code: IntArray
    t: IntArray
    length: IntArray
    key: IntArray
    delivered: FloatArray
    received: FloatArray
    reactive: FloatArray
    quality: U32Array
    order: IntArray | None

    def __len__(self) -> int:
        return len(self.code)

    @property
    def index(self) -> SortedKeys:
        return SortedKeys(self.key, presorted=True)

    @classmethod
    def of(cls, table: pa.Table, codes: MeterCodes, name: str, *, code: IntArray | None = None) -> Frame:
        """The frame of ``table`` (conformed); rows of meters unknown to ``codes`` are dropped.

        ``code``: the rows' meter codes when already known (see :meth:`MeterCodes.encode`).
        """
        if code is None:
            code = codes.codes(table.column("meter_id"))
        t = seconds(table, "interval_start", name)
        length = lengths(table)
        on_boundary = aligned(t, length)
        key = keys(code, on_boundary)
        rows: IntArray | None = None
        if len(code) and code.min() < 0:
            rows = np.flatnonzero(code >= 0).astype(np.int64, copy=False)
        if len(key) > 1 and not bool(np.all(key[1:] >= key[:-1])):
            # Stable: the first of repeated reads stays first. Batches concatenated interval by interval
            # are a few long sorted runs, which this sort merges in little more than one pass.
            rows = np.argsort(key, kind="stable").astype(np.int64, copy=False)
            if code.min() < 0:  # unknown meters (code -1) sort first; drop them
                rows = rows[code[rows] >= 0]
        reals = [floats(table, c, name) for c in ("energy_delivered_wh", "energy_received_wh", "reactive_varh")]
        quality = qualities(table)
        if rows is not None:
            key = key[rows]
            # Meter and boundary come back from the sorted key (one pass, no gather); the stamp as sent
            # is gathered only where some stamp was off its boundary.
            t = time_of(key) if on_boundary is t else t[rows]
            code = code_of(key)
            length = take(length, rows)
            reals = [c[rows] for c in reals]
            quality = quality[rows]
        delivered, received, reactive = reals
        return cls(code, t, length, key, delivered, received, reactive, quality, rows)

    def take(self, mask: BoolArray) -> Frame:
        """The rows of ``mask`` (still sorted)."""
        order = None if self.order is None else self.order[mask]
        return Frame(
            self.code[mask],
            self.t[mask],
            take(self.length, mask),
            self.key[mask],
            self.delivered[mask],
            self.received[mask],
            self.reactive[mask],
            self.quality[mask],
            order if order is not None else np.flatnonzero(mask).astype(np.int64, copy=False),
        )

    def to_input_order(self, values: U32Array, n_rows: int, fill: int = 0) -> U32Array:
        """Per-row ``values`` (sorted order) placed at their table rows; rows not in the frame get ``fill``."""
        if self.order is None and len(values) == n_rows:
            return values
        out = np.full(n_rows, fill, values.dtype)
        out[np.arange(len(values)) if self.order is None else self.order] = values
        return out


def check_lengths(frame: Frame, codes: MeterCodes, expected_codes: IntArray, interval_s: int) -> None:
    """Refuse reads of expected meters whose interval length is not the grid's (they would not fit on it)."""
    expected = np.zeros(len(codes), bool)
    expected[expected_codes] = True
    wrong = expected[frame.code] & (frame.length != interval_s)
    if wrong.any():
        first = int(np.flatnonzero(wrong)[0])
        meter = codes.take(frame.code[first : first + 1])[0].as_py()
        raise VeeInputError(
            f"reads.interval_s: {int(wrong.sum())} reads of expected meters are {int(frame.length[first])} s long,"
            f" the expected grid's are {interval_s} s (first: meter {meter}); check each interval length separately"
        )


def batch_window(batch: Frame) -> tuple[BoolArray, int, int]:
    """The batch's meters (a mask over codes) and the time span [lo, hi) its reads cover."""
    if not len(batch):
        return np.zeros(0, bool), 0, 0
    meters = np.zeros(int(batch.code.max()) + 1, bool)
    meters[batch.code] = True
    start = time_of(batch.key)
    return meters, int(start.min()), int((start + batch.length).max())


def outside(other: Frame, meters: BoolArray, lo: int, hi: int) -> BoolArray:
    """Rows of ``other`` (history) that are not of ``meters`` (a mask over codes) inside [lo, hi).

    History overlapping the batch would compare a read with itself or count it twice; the batch
    is authoritative where it has (or should have) data.
    """
    mine = np.zeros(len(other), bool)
    known = other.code < len(meters)
    mine[known] = meters[other.code[known]]
    t = time_of(other.key)
    out: BoolArray = ~(mine & (t >= lo) & (t < hi))
    return out
