"""Interval reads built directly in READS_SCHEMA, as the MDMS store returns them."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import numpy as np
import pyarrow as pa

from gridloom.store.schema import READS_SCHEMA

UTC = dt.UTC


def make_reads(
    meter_id: str,
    start: dt.datetime,
    delivered_wh: Sequence[float | None],
    *,
    received_wh: Sequence[float | None] | None = None,
    interval_s: int = 900,
    quality: Sequence[int] | None = None,
    version: int | Sequence[int] = 0,
    source: str | Sequence[str] = "measured",
    rule: str | Sequence[str | None] | None = None,
) -> pa.Table:
    """Consecutive intervals of one meter from ``start``; scalars apply to every row."""
    n = len(delivered_wh)

    def each(value: object) -> list[object]:
        return list(value) if isinstance(value, list | tuple) else [value] * n

    starts = [start + dt.timedelta(seconds=interval_s * i) for i in range(n)]
    return pa.table(
        {
            "meter_id": [meter_id] * n,
            "interval_start": starts,
            "interval_s": np.full(n, interval_s, np.int32),
            "energy_delivered_wh": pa.array(list(delivered_wh), pa.float64()),
            "energy_received_wh": pa.array(list(received_wh) if received_wh is not None else [0.0] * n, pa.float64()),
            "reactive_varh": np.zeros(n),
            "voltage_v": np.full(n, 230.0),
            "quality": pa.array(list(quality) if quality is not None else [0] * n, pa.uint32()),
            "version": pa.array(each(version), pa.int32()),
            "source": pa.array(each(source), pa.string()),
            "rule": pa.array(each(rule), pa.string()),
            "edited_by": pa.nulls(n, pa.string()),
            "recorded_at": [start] * n,
        },
        schema=READS_SCHEMA,
    )
