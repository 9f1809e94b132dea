"""Editing: a person replaces interval values, with a reason code; the original and every version stay.

An edit never changes a stored row. It reads the current version of each interval, copies it
with the new values, flags it EDITED (and no longer ESTIMATED), records who and why
(``edited_by``, ``rule`` = the reason code) and hands it to ``store.add_versions``, which
stores it as version n+1 — so billing's use of a value stays traceable to the version it used,
and ``store.reads(versions="all")`` shows the whole history of an interval.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Mapping
from typing import Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from gridloom.devices.meters import QualityFlag
from gridloom.errors import EditRefused
from gridloom.store.base import ReadsSource
from gridloom.store.schema import READS_SCHEMA, TIMESTAMP
from gridloom.systems.mdms._arrays import US, MeterCodes, keys, qualities, require, seconds
from gridloom.systems.mdms.vee import EditReason, VeeFlag

EDITABLE = ("energy_delivered_wh", "energy_received_wh", "reactive_varh", "voltage_v")
"""The columns a person may replace."""

_REASON = re.compile(r"[a-z0-9_.-]{1,64}")
_NOT_ESTIMATED = np.uint32(~(VeeFlag.ESTIMATED | QualityFlag.ESTIMATED) & 0xFFFFFFFF)
_SIGNED = ("reactive_varh",)  # reactive energy is signed; the others cannot be negative


class VersionedReads(ReadsSource, Protocol):
    """The part of :class:`gridloom.store.MeterDataStore` that VEE uses: reads, and adding versions."""

    def add_versions(self, rows: pa.Table) -> pa.Table: ...


def edit(
    store: VersionedReads,
    *,
    meter_id: str,
    interval_start: dt.datetime,
    values: Mapping[str, float],
    reason: EditReason | str,
    user: str,
    now: dt.datetime | None = None,
) -> pa.Table:
    """Replace ``values`` (a subset of :data:`EDITABLE`) of one interval; returns the new version as stored.

    ``reason`` is a reason code (:class:`EditReason` or any ``[a-z0-9_.-]{1,64}``), ``user`` who
    edits. Refused (:class:`EditRefused`) when nothing is stored for that interval yet.
    """
    _check_value_names(values)
    if not isinstance(interval_start, dt.datetime) or interval_start.tzinfo is None:
        raise EditRefused(f"interval_start must be a timezone-aware datetime, got {interval_start!r}")
    row = {"meter_id": [meter_id], "interval_start": [interval_start]}
    row.update({name: [value] for name, value in values.items()})
    return edit_many(store, pa.table(row), reason=reason, user=user, now=now)


def edit_many(
    store: VersionedReads,
    edits: pa.Table,
    *,
    reason: EditReason | str,
    user: str,
    now: dt.datetime | None = None,
) -> pa.Table:
    """Replace values of many intervals at once (one reason, one user): returns the new versions as stored.

    ``edits`` has ``meter_id``, ``interval_start`` and one or more of :data:`EDITABLE`; a null
    keeps the current value. Every interval must already be stored (estimate gaps first).
    """
    require(edits, ("meter_id", "interval_start"), "edits")
    value_columns = [c for c in edits.column_names if c not in ("meter_id", "interval_start")]
    _check_value_names(dict.fromkeys(value_columns, 0.0))
    code = _reason_code(reason)
    if not isinstance(user, str) or not user.strip():
        raise EditRefused("an edit needs the user who makes it")
    if not edits.num_rows:
        return READS_SCHEMA.empty_table()
    t = seconds(edits, "interval_start", "edits")
    for name in value_columns:
        _check_values(edits.column(name), name)

    meter_ids = pc.unique(edits.column("meter_id").cast(pa.string())).to_pylist()
    first = dt.datetime.fromtimestamp(int(t.min()), dt.UTC)
    last = dt.datetime.fromtimestamp(int(t.max()) + 1, dt.UTC)
    current = store.reads(meter_ids=meter_ids, start=first, end=last, versions="current")
    codes = MeterCodes.of(edits.column("meter_id"), current.column("meter_id"))
    stored_key = keys(codes.codes(current.column("meter_id")), seconds(current, "interval_start", "stored reads"))
    wanted_key = keys(codes.codes(edits.column("meter_id")), t)
    if len(np.unique(wanted_key)) != len(wanted_key):
        raise EditRefused("edits name the same interval more than once")
    sort = np.argsort(stored_key, kind="stable")
    pos = np.searchsorted(stored_key[sort], wanted_key)
    found = pos < len(sort)
    found[found] = stored_key[sort[pos[found]]] == wanted_key[found]
    if not found.all():
        missing = int(np.flatnonzero(~found)[0])
        at = dt.datetime.fromtimestamp(int(t[missing]), dt.UTC).isoformat()
        meter = edits.column("meter_id")[missing].as_py()
        raise EditRefused(
            f"no stored read of meter {meter} at {at} to edit ({int((~found).sum())} of {len(found)} intervals "
            "not stored); estimate the gap first, then edit the estimate"
        )
    base = current.take(pa.array(sort[pos], pa.int64()))
    columns = {name: base.column(name) for name in READS_SCHEMA.names}
    for name in value_columns:
        new = edits.column(name).cast(pa.float64())
        columns[name] = pc.if_else(pc.is_null(new), base.column(name).cast(pa.float64()), new)
    quality = (qualities(base) & _NOT_ESTIMATED) | np.uint32(VeeFlag.EDITED)
    n = base.num_rows
    recorded = pa.nulls(n, TIMESTAMP) if now is None else pa.array([_us(now)] * n, pa.int64()).cast(TIMESTAMP)
    columns.update(
        quality=pa.array(quality, pa.uint32()),
        version=pa.nulls(n, pa.int32()),
        source=pa.array(["edited"] * n, pa.string()),
        rule=pa.array([code] * n, pa.string()),
        edited_by=pa.array([user] * n, pa.string()),
        recorded_at=recorded,
    )
    rows = pa.Table.from_arrays([columns[f.name].cast(f.type) for f in READS_SCHEMA], schema=READS_SCHEMA)
    return store.add_versions(rows)


def _reason_code(reason: EditReason | str) -> str:
    code = str(reason.value if isinstance(reason, EditReason) else reason)
    if not _REASON.fullmatch(code):
        raise EditRefused(
            f"reason code {reason!r} is not a code like {EditReason.METER_TEST.value!r} ([a-z0-9_.-], 1-64 characters)"
        )
    return code


def _check_value_names(values: Mapping[str, object]) -> None:
    if not values:
        raise EditRefused(f"an edit must replace at least one of {', '.join(EDITABLE)}")
    unknown = [name for name in values if name not in EDITABLE]
    if unknown:
        raise EditRefused(f"cannot edit {', '.join(unknown)}: only {', '.join(EDITABLE)} may be replaced")


def _check_values(column: pa.ChunkedArray, name: str) -> None:
    try:
        values = np.asarray(pc.fill_null(column.cast(pa.float64()), 0.0).to_numpy(), np.float64)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise EditRefused(f"{name} must be numbers, got {column.type}") from exc
    bad = ~np.isfinite(values) | ((values < 0) & (name not in _SIGNED))
    if bad.any():
        value = float(values[np.flatnonzero(bad)[0]])
        raise EditRefused(
            f"{name} = {value!r} is not a valid value" + ("" if math.isfinite(value) else " (not finite)")
        )


def _us(at: dt.datetime) -> int:
    if at.tzinfo is None:
        raise EditRefused(f"now must be timezone-aware, got {at!r}")
    return round((at - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)).total_seconds() * US)
