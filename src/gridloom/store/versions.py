"""Which version of each interval counts: the highest, optionally as it stood at a moment."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


def current_versions(reads: pa.Table, *, as_of: dt.datetime | None = None) -> pa.Table:
    """The highest version of each (meter, interval_start), sorted by meter and time.

    With ``as_of``, only versions recorded by then count (``recorded_at``), so a bill can be
    reproduced as it was issued after later edits.
    """
    if as_of is not None:
        reads = reads.filter(
            pc.less_equal(reads["recorded_at"], pa.scalar(as_of, reads.schema.field("recorded_at").type))
        )
    if reads.num_rows == 0:
        return reads
    order = pc.sort_indices(
        reads, [("meter_id", "ascending"), ("interval_start", "ascending"), ("version", "descending")]
    )
    ordered = reads.take(order)
    meters = np.asarray(pc.dictionary_encode(ordered["meter_id"]).combine_chunks().indices)
    starts = np.asarray(ordered["interval_start"].cast(pa.int64()))
    first = np.ones(ordered.num_rows, dtype=np.bool_)
    first[1:] = (meters[1:] != meters[:-1]) | (starts[1:] != starts[:-1])
    return ordered.filter(pa.array(first))
