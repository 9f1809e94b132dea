"""The nightly VEE: a closed period validated as a whole, every missing or unusable interval estimated.

Meters are taken ``chunk_meters`` at a time, in id order. Every rule and every estimate looks
only at one meter's own reads, history, register reads and events, so chunks give the same
result as one pass over all meters — with memory bounded by the chunk, not by the territory.
While one chunk is validated and estimated (numpy, one core), a worker thread already reads the
next chunk's inputs from the store (the database, the other core).

What is read is what VEE computes with: current versions, unordered, seven columns, meter ids
dictionary-encoded (see :meth:`~gridloom.store.base.MeterDataStore.reads`) — validation sorts and
groups by its own integer keys far faster than a database sorts and ships text.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pyarrow as pa

from gridloom.store.base import MeterDataStore
from gridloom.systems.mdms._arrays import FRAME_COLUMNS, PerMeter
from gridloom.systems.mdms.estimation import estimate_detailed
from gridloom.systems.mdms.validation import validate
from gridloom.systems.mdms.vee import Expected, VeeConfig, history_windows


@dataclass(frozen=True)
class ClosedPeriod:
    """What the nightly VEE of one period did."""

    start: dt.datetime
    end: dt.datetime
    reads: int
    flagged: Mapping[str, int]
    estimated: int
    unestimated: int


@dataclass(frozen=True)
class _Inputs:
    """One chunk's inputs from the store."""

    grid: Expected
    reads: pa.Table
    history: pa.Table | None
    registers: pa.Table | None
    events: pa.Table | None


class NightlyVee:
    """Closes periods over one store, ``chunk_meters`` meters at a time."""

    def __init__(
        self,
        store: MeterDataStore,
        *,
        config: VeeConfig,
        net_metered: PerMeter | None,
        capacity_w: PerMeter | None,
        chunk_meters: int,
    ) -> None:
        self.store = store
        self.config = config
        self.net_metered = net_metered
        self.capacity_w = capacity_w
        self.chunk_meters = chunk_meters

    def close(self, start: dt.datetime, end: dt.datetime, meter_ids: pa.Array) -> ClosedPeriod:
        """Validate [start, end) of ``meter_ids`` (distinct, in id order) and store an estimate for
        every interval missing or unusable."""
        chunks = [meter_ids.slice(at, self.chunk_meters) for at in range(0, max(len(meter_ids), 1), self.chunk_meters)]
        flagged: Counter[str] = Counter()
        reads = estimated = unestimated = 0
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="mdms-vee-reader") as reader:
            coming = reader.submit(self._inputs, start, end, chunks[0])
            for at in range(len(chunks)):
                inputs = coming.result()
                if at + 1 < len(chunks):
                    coming = reader.submit(self._inputs, start, end, chunks[at + 1])
                chunk = self._close(inputs)
                reads += chunk.reads
                estimated += chunk.estimated
                unestimated += chunk.unestimated
                flagged.update(chunk.flagged)
        return ClosedPeriod(
            start=start,
            end=end,
            reads=reads,
            flagged={k: v for k, v in flagged.items() if v},
            estimated=estimated,
            unestimated=unestimated,
        )

    def _inputs(self, start: dt.datetime, end: dt.datetime, meter_ids: pa.Array) -> _Inputs:
        grid = Expected(meter_ids, start, end, self.config.interval_s)
        reads = self._reads(meter_ids, start, end)
        history_parts = [self._reads(meter_ids, lo, hi) for lo, hi in history_windows(grid, self.config)]
        history = pa.concat_tables(history_parts) if history_parts else None
        registers = self.store.register_reads(meter_ids=meter_ids, start=start, end=end)
        events = self.store.events(meter_ids=meter_ids, start=start, end=end)
        return _Inputs(
            grid,
            reads,
            history if history is not None and history.num_rows else None,
            registers if registers.num_rows else None,
            events if events.num_rows else None,
        )

    def _reads(self, meter_ids: pa.Array, start: dt.datetime, end: dt.datetime) -> pa.Table:
        return self.store.reads(
            meter_ids=meter_ids,
            start=start,
            end=end,
            versions="current",
            columns=FRAME_COLUMNS,
            ordered=False,
            dictionary=True,
        )

    def _close(self, inputs: _Inputs) -> ClosedPeriod:
        checked = validate(
            inputs.reads,
            config=self.config,
            expected=inputs.grid,
            history=inputs.history,
            registers=inputs.registers,
            events=inputs.events,
            net_metered=self.net_metered,
            capacity_w=self.capacity_w,
        )
        estimation = estimate_detailed(
            checked,
            expected=inputs.grid,
            history=inputs.history,
            registers=inputs.registers,
            events=inputs.events,
            config=self.config,
        )
        if estimation.rows.num_rows:
            self.store.add_versions(estimation.rows)
        return ClosedPeriod(
            start=inputs.grid.start,
            end=inputs.grid.end,
            reads=inputs.reads.num_rows,
            flagged=dict(checked.counts),
            estimated=estimation.rows.num_rows,
            unestimated=estimation.unestimated.num_rows,
        )
