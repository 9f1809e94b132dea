"""Small builders of reads, registers and events tables for the VEE tests."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import numpy as np
import pyarrow as pa

from gridloom.store.schema import EVENTS_SCHEMA, READS_SCHEMA, REGISTER_SCHEMA

DAY = dt.datetime(2026, 11, 4, tzinfo=dt.UTC)  # a Wednesday
Q = dt.timedelta(minutes=15)


def at(i: int, day: dt.datetime = DAY) -> dt.datetime:
    """Start of interval ``i`` (15 min) of ``day``."""
    return day + i * Q


def reads(
    meter: str,
    delivered: Sequence[float],
    *,
    start: dt.datetime = DAY,
    slots: Sequence[int] | None = None,
    received: Sequence[float] | None = None,
    quality: Sequence[int] | None = None,
    interval_s: int = 900,
) -> pa.Table:
    """Reads of one meter: ``delivered[k]`` at interval ``slots[k]`` (default 0, 1, 2, ...) from ``start``."""
    n = len(delivered)
    slots = list(range(n)) if slots is None else list(slots)
    return pa.Table.from_pydict(
        {
            "meter_id": [meter] * n,
            "interval_start": [start + dt.timedelta(seconds=interval_s * s) for s in slots],
            "interval_s": [interval_s] * n,
            "energy_delivered_wh": [float(v) for v in delivered],
            "energy_received_wh": [0.0] * n if received is None else [float(v) for v in received],
            "reactive_varh": [0.0] * n,
            "voltage_v": [230.0] * n,
            "quality": [0] * n if quality is None else list(quality),
            "version": [0] * n,
            "source": ["measured"] * n,
            "rule": [None] * n,
            "edited_by": [None] * n,
            "recorded_at": [None] * n,
        },
        schema=READS_SCHEMA,
    )


def day_of(meter: str, values: Sequence[float] | float = 100.0, *, start: dt.datetime = DAY, drop=()) -> pa.Table:
    """A day of 96 reads of ``meter`` (constant or given values), without the slots in ``drop``."""
    v = np.full(96, values, float) if np.isscalar(values) else np.asarray(values, float)
    keep = [i for i in range(96) if i not in set(drop)]
    return reads(meter, v[keep], start=start, slots=keep)


def concat(*tables: pa.Table) -> pa.Table:
    return pa.concat_tables(tables)


def registers(rows: Sequence[tuple[str, dt.datetime, float]], received: Sequence[float] | None = None) -> pa.Table:
    n = len(rows)
    return pa.Table.from_pydict(
        {
            "meter_id": [r[0] for r in rows],
            "read_at": [r[1] for r in rows],
            "energy_delivered_wh": [float(r[2]) for r in rows],
            "energy_received_wh": [0.0] * n if received is None else [float(v) for v in received],
            "reactive_delivered_varh": [0.0] * n,
            "reactive_received_varh": [0.0] * n,
            "quality": [0] * n,
        },
        schema=REGISTER_SCHEMA,
    )


def events(rows: Sequence[tuple[str, dt.datetime, str]]) -> pa.Table:
    return pa.Table.from_pydict(
        {
            "meter_id": [r[0] for r in rows],
            "at": [r[1] for r in rows],
            "kind": [r[2] for r in rows],
            "received_at": [r[1] + dt.timedelta(seconds=5) for r in rows],
        },
        schema=EVENTS_SCHEMA,
    )


def column(table: pa.Table, name: str) -> list:
    return table.column(name).to_pylist()
