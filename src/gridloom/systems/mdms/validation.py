"""Validation: every VEE rule over a whole batch of interval reads at once.

Each rule is a handful of array passes over the batch (never a Python loop per read) and sets
its :class:`~gridloom.systems.mdms.vee.VeeFlag` on the reads that fail it. The rules and what
they catch, as the VEE rule sets of MDM products and state VEE standards describe them:

==================  =======================================================================
gap                 intervals with no read between the expected start and end (or, without
                    an expected grid, between a meter's first and last read)
duplicate           a second read of the same meter and interval (a re-sent batch, a meter
                    sending a partial interval twice); the first read is kept
clock_drift         the meter flagged its clock as off, or stamped the read off the boundary
spike               above the premise's history peak or its service capacity
negative            negative values; received energy on a meter not in net metering
zero_run            zero consumption for a long run (stuck meter, bypass, vacancy)
register_mismatch   the intervals between two register reads do not add up to their difference
during_outage       consumption while the meter was in a known outage
tamper              the meter reported tampering (its quality bit or a TAMPER event)
reverse_rotation    the meter reported reverse rotation (its quality bit or an event)
==================  =======================================================================
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from gridloom.devices.meters import QualityFlag
from gridloom.errors import VeeInputError
from gridloom.store.schema import READS_SCHEMA, TIMESTAMP
from gridloom.systems.mdms._arrays import (
    FRAME_COLUMNS,
    US,
    BoolArray,
    FloatArray,
    Frame,
    IntArray,
    MeterCodes,
    PerMeter,
    SortedKeys,
    U32Array,
    batch_window,
    check_lengths,
    code_of,
    conform_reads,
    event_keys,
    grid_cells,
    outside,
    per_meter,
    register_spans,
    segment_sums,
    time_of,
)
from gridloom.systems.mdms._arrays import outages as known_outages
from gridloom.systems.mdms.vee import VALIDATION_FLAGS, Expected, VeeConfig, VeeFlag

GAPS_SCHEMA = pa.schema([("meter_id", pa.string()), ("interval_start", TIMESTAMP), ("interval_s", pa.int32())])

_VALIDATION_MASK = np.uint32(sum(int(f) for f in VALIDATION_FLAGS))
_NEW_VERSION = np.uint32(VeeFlag.ESTIMATED | VeeFlag.EDITED)


@dataclass(frozen=True, eq=False)
class Validation:
    """What validation found.

    ``reads`` are the input rows (all of them, in their order, in READS_SCHEMA) with the VEE
    bits of every rule they failed set in ``quality``; ``gaps`` the missing intervals;
    ``counts`` the reads flagged per rule (``gap``: missing intervals; ``reads``: rows checked);
    ``skipped`` the rules (or parts) that could not run for lack of their input.
    """

    gaps: pa.Table
    counts: Mapping[str, int]
    skipped: tuple[str, ...]
    # The batch as arrays, kept so that estimation does not convert it again.
    frame: Frame = field(repr=False)
    codes: MeterCodes = field(repr=False)
    history: tuple[pa.Table, Frame] | None = field(default=None, repr=False)  # the history table and its arrays
    # What ``reads`` is built from, when first asked for (the nightly VEE of millions of reads never asks).
    given: pa.Table | None = field(default=None, repr=False)
    interval_s: int = field(default=900, repr=False)

    @cached_property
    def reads(self) -> pa.Table:
        """The input rows (all of them, in their order, in READS_SCHEMA), VEE bits set in ``quality``."""
        if self.given is None:
            raise VeeInputError("this validation kept no input rows")
        table = conform_reads(self.given, interval_s=self.interval_s)
        quality = self.frame.to_input_order(self.frame.quality, table.num_rows)
        return table.set_column(READS_SCHEMA.get_field_index("quality"), "quality", pa.array(quality, pa.uint32()))

    def flagged(self, flag: VeeFlag) -> pa.Table:
        """The reads carrying ``flag`` (any of its bits)."""
        mask = pc.not_equal(pc.bit_wise_and(self.reads.column("quality"), pa.scalar(int(flag), pa.uint32())), 0)
        return self.reads.filter(mask)

    @property
    def accepted(self) -> pa.Table:
        """The reads to store: every row but the duplicates (failed reads are stored with their flags)."""
        if not self.counts.get("duplicate", 1):
            return self.reads
        mask = pc.equal(
            pc.bit_wise_and(self.reads.column("quality"), pa.scalar(int(VeeFlag.DUPLICATE), pa.uint32())), 0
        )
        return self.reads.filter(mask)


def validate(
    reads: pa.Table,
    *,
    config: VeeConfig | None = None,
    expected: Expected | tuple[object, ...] | None = None,
    history: pa.Table | None = None,
    registers: pa.Table | None = None,
    events: pa.Table | None = None,
    outages: pa.Table | None = None,
    capacity_w: PerMeter | None = None,
    net_metered: PerMeter | None = None,
) -> Validation:
    """Run every VEE validation rule over ``reads`` (READS_SCHEMA; at least meter_id, interval_start,
    energy_delivered_wh) and return them flagged.

    Optional inputs switch rules on: ``expected`` (meters, start, end, interval_s) finds gaps
    at the edges and whole meters missing; ``history`` (earlier reads, READS_SCHEMA) gives each
    premise's peak for spikes; ``capacity_w`` (a number, a mapping meter_id -> W or a table
    meter_id, capacity_w) the service capacity; ``net_metered`` (bool, mapping or table
    meter_id, net_metered) which meters may receive energy; ``registers`` (REGISTER_SCHEMA) the
    sum check; ``outages`` (meter_id, start, end) and the LAST_GASP / POWER_RESTORE pairs of
    ``events`` (EVENTS_SCHEMA) the known outages; TAMPER and REVERSE_ROTATION ``events`` mark
    the intervals they happened in. Previous VEE validation bits of ``reads`` are replaced, except on
    estimates and edits (current versions re-validated), whose bits tell why they were made.
    """
    cfg = config or VeeConfig()
    table = conform_reads(reads, interval_s=cfg.interval_s, columns=FRAME_COLUMNS)
    grid = Expected(*expected).checked() if expected is not None else None
    expected_ids = grid.ids() if grid is not None else None
    codes, row_codes = MeterCodes.encode(
        table.column("meter_id"), *([expected_ids] if expected_ids is not None else [])
    )
    frame = Frame.of(table, codes, "reads", code=row_codes)
    if grid is not None and expected_ids is not None:
        check_lengths(frame, codes, codes.codes(expected_ids), grid.interval_s)
    checks = _Checks(frame, codes, cfg)

    duplicate = checks.duplicates()
    unique = ~duplicate
    gaps = checks.gaps(unique, grid, expected_ids)
    checks.set(VeeFlag.DUPLICATE, duplicate)
    checks.set(VeeFlag.CLOCK_DRIFT, checks.clock_drift())
    checks.set(VeeFlag.SPIKE, checks.spikes(history, capacity_w))
    checks.set(VeeFlag.NEGATIVE, checks.negative(net_metered))
    outage = checks.during_outage(outages, events)
    checks.set(VeeFlag.DURING_OUTAGE, outage & (frame.delivered > cfg.outage_tolerance_wh))
    checks.set(VeeFlag.ZERO_RUN, checks.zero_runs(unique & ~outage))
    checks.set(VeeFlag.REGISTER_MISMATCH, checks.register_mismatch(registers, unique))
    checks.set(VeeFlag.TAMPER, checks.reported(QualityFlag.TAMPER, events, "TAMPER"))
    checks.set(VeeFlag.REVERSE_ROTATION, checks.reported(QualityFlag.REVERSE_ROTATION, events, "REVERSE_ROTATION"))

    # A read's flags are recomputed; an estimate or an edit keeps the flags that say why it was made.
    kept = np.where((frame.quality & _NEW_VERSION) != 0, np.uint32(0xFFFFFFFF), ~_VALIDATION_MASK)
    quality = (frame.quality & kept) | checks.flags
    counts = {"reads": len(frame), "gap": gaps.num_rows}
    counts.update(checks.counts)
    return Validation(
        gaps,
        counts,
        tuple(checks.skipped),
        replace(frame, quality=quality),
        codes,
        checks.history,
        given=reads,
        interval_s=cfg.interval_s,
    )


class _Checks:
    """The rules, one method each, sharing the batch's arrays and collecting flags and counts."""

    def __init__(self, frame: Frame, codes: MeterCodes, config: VeeConfig) -> None:
        self.frame = frame
        self.codes = codes
        self.config = config
        self.flags: U32Array = np.zeros(len(frame), np.uint32)
        self.counts: dict[str, int] = {}
        self.skipped: list[str] = []
        self.history: tuple[pa.Table, Frame] | None = None

    def set(self, flag: VeeFlag, mask: BoolArray) -> None:
        self.flags[mask] |= np.uint32(flag)
        self.counts[(flag.name or "").lower()] = int(np.count_nonzero(mask))

    def _meter_bit(self, flag: QualityFlag) -> BoolArray:
        out: BoolArray = (self.frame.quality & np.uint32(flag)) != 0
        return out

    # ------------------------------------------------------------------ gap, duplicate
    def duplicates(self) -> BoolArray:
        """Later reads of a (meter, interval) already read in this batch.

        Re-delivery of reads already stored is the store's business (its ingest is idempotent);
        this catches the batch contradicting itself — a meter resending an interval.
        """
        key = self.frame.key
        dup = np.zeros(len(key), bool)
        dup[1:] = key[1:] == key[:-1]  # sorted stably: the first read received stays unflagged
        return dup

    def gaps(self, unique: BoolArray, grid: Expected | None, expected_ids: pa.Array | None) -> pa.Table:
        """Missing intervals: on the expected grid for its meters, between first and last read for others.

        A gap has no row to flag; the estimate that fills it carries GAP.
        """
        frame = self.frame
        cells_code: list[IntArray] = []
        cells_t: list[IntArray] = []
        cells_len: list[IntArray] = []
        in_grid_meter = np.zeros(len(self.codes), bool)
        if grid is not None and expected_ids is not None:
            exp_codes = self.codes.codes(expected_ids)
            row_of_code = np.full(len(self.codes), -1, np.int64)
            row_of_code[exp_codes] = np.arange(len(exp_codes))
            in_grid_meter[exp_codes] = True
            cells = grid_cells(
                row_of_code, len(exp_codes), frame.key, unique, grid.start_s, grid.intervals, grid.interval_s
            )
            cells_code.append(exp_codes[cells // max(grid.intervals, 1)])
            cells_t.append(grid.start_s + (cells % max(grid.intervals, 1)) * grid.interval_s)
            cells_len.append(np.full(len(cells), grid.interval_s, np.int64))
        else:
            self.skipped.append("gap: edges and silent meters (no expected grid; gaps between reads only)")
        # Between consecutive reads of the other meters.
        rows = unique & ~in_grid_meter[frame.code]
        key, length = frame.key[rows], frame.length[rows]
        same = code_of(key[1:]) == code_of(key[:-1])
        step = time_of(key[1:]) - time_of(key[:-1])
        missing = np.where(same, step // length[:-1] - 1, 0).clip(min=0)
        first = np.repeat(np.arange(len(missing)), missing)
        within = np.arange(len(first)) - np.repeat(np.cumsum(missing) - missing, missing)
        cells_code.append(code_of(key[first]))
        cells_t.append(time_of(key[first]) + (within + 1) * length[first])
        cells_len.append(length[first])
        code = np.concatenate(cells_code)
        t = np.concatenate(cells_t)
        return pa.Table.from_arrays(
            [
                self.codes.take(code),
                pa.array(t * US, pa.int64()).cast(TIMESTAMP),
                pa.array(np.concatenate(cells_len), pa.int32()),
            ],
            schema=GAPS_SCHEMA,
        )

    # ------------------------------------------------------------------ clock
    def clock_drift(self) -> BoolArray:
        """The meter's own CLOCK_DRIFT bit, or a stamp more than the threshold off the interval boundary.

        AMI meters close intervals on their own clock; a meter that stamps 00:16:10 for the
        00:15 interval (imported data often carries such stamps) has drifted by 70 s.
        """
        frame = self.frame
        off = np.abs(frame.t - time_of(frame.key))
        mask: BoolArray = (off > self.config.clock_drift_threshold_s) | self._meter_bit(QualityFlag.CLOCK_DRIFT)
        return mask

    # ------------------------------------------------------------------ spike
    def spikes(self, history: pa.Table | None, capacity_w: PerMeter | None) -> BoolArray:
        """Above ``spike_history_factor`` x the premise's history peak (and the floor), or above its capacity."""
        frame, cfg = self.frame, self.config
        hours = frame.length / 3600.0
        spike = np.zeros(len(frame), bool)
        if history is None and capacity_w is None:
            self.skipped.append("spike (no history, no capacity_w)")
            return spike
        if history is not None:
            peak = self._history_peak(history)[frame.code]
            limit = np.maximum(cfg.spike_history_factor * peak, cfg.spike_floor_w * hours)
            spike |= np.isfinite(peak) & (frame.delivered > limit)
        capacity = per_meter(capacity_w, self.codes, "capacity_w", "capacity_w")
        if capacity is not None:
            cap = capacity[frame.code] * hours * cfg.capacity_margin
            spike |= np.isfinite(cap) & (np.fmax(frame.delivered, frame.received) > cap)
        return spike

    def _history_peak(self, history: pa.Table) -> FloatArray:
        """Each meter's highest interval in ``history`` (NaN without history), spikes and this batch left out."""
        hist = Frame.of(
            conform_reads(history, interval_s=self.config.interval_s, name="history"), self.codes, "history"
        )
        self.history = (history, hist)
        usable = np.isfinite(hist.delivered) & ((hist.quality & np.uint32(VeeFlag.SPIKE)) == 0)
        usable &= outside(hist, *batch_window(self.frame))
        peak = np.full(len(self.codes), np.nan)
        if usable.any():
            grouped = (
                pa.table({"c": hist.code[usable], "v": hist.delivered[usable]}).group_by("c").aggregate([("v", "max")])
            )
            peak[np.asarray(grouped.column("c").to_numpy(), np.int64)] = grouped.column("v_max").to_numpy()
        return peak

    # ------------------------------------------------------------------ negative
    def negative(self, net_metered: PerMeter | None) -> BoolArray:
        """Negative values (never physical), and received energy beyond the tolerance on meters not net-metered."""
        frame = self.frame
        mask: BoolArray = (frame.delivered < 0) | (frame.received < 0)
        net = per_meter(net_metered, self.codes, "net_metered", "net_metered")
        if net is None:
            self.skipped.append("negative: received energy on non-net meters (net_metered not given)")
            return mask
        not_net = net[frame.code] == 0
        mask |= not_net & (frame.received > self.config.negative_tolerance_wh)
        return mask

    # ------------------------------------------------------------------ zero runs
    def zero_runs(self, eligible: BoolArray) -> BoolArray:
        """Reads in a run of consecutive zero intervals lasting at least ``zero_run_s``.

        Intervals with the service switch open or inside a known outage are expected to be zero;
        they break a run rather than extend it.
        """
        frame, cfg = self.frame, self.config
        zero = (
            eligible
            & (frame.delivered <= cfg.zero_tolerance_wh)
            & ~(frame.received > cfg.zero_tolerance_wh)
            & ~self._meter_bit(QualityFlag.SERVICE_DISCONNECTED)
        )
        z, key, length = zero, frame.key, frame.length
        follows = np.zeros(len(z), bool)
        follows[1:] = z[:-1] & (key[1:] - key[:-1] == length[:-1])
        follows[1:] &= code_of(key[1:]) == code_of(key[:-1])
        run = np.cumsum(z & ~follows) - 1
        run_s = np.bincount(run[z], weights=length[z]) if z.any() else np.zeros(0)
        long = np.zeros(len(z), bool)
        long[z] = run_s[run[z]] >= cfg.zero_run_s
        return long

    # ------------------------------------------------------------------ registers
    def register_mismatch(self, registers: pa.Table | None, unique: BoolArray) -> BoolArray:
        """Reads of register spans whose intervals do not add up to the register difference.

        A span with every interval read must match within tolerance; one with intervals missing
        (estimation will fill them) can only be caught when what was read already exceeds it.
        """
        frame, cfg = self.frame, self.config
        spans = register_spans(registers, self.codes, cfg.interval_s)
        out = np.zeros(len(frame), bool)
        if spans is None:
            self.skipped.append("register_mismatch (no registers)")
            return out
        if not len(spans):
            return out
        a, b = spans.segments(frame.key)
        counted = np.zeros(len(frame) + 1, np.int64)
        np.cumsum(unique, out=counted[1:])
        complete = counted[b] - counted[a] == spans.intervals(cfg.interval_s)
        bad = np.zeros(len(spans), bool)
        for values, delta in (
            (frame.delivered, spans.delta_delivered_wh),
            (frame.received, spans.delta_received_wh),
        ):
            total = segment_sums(np.where(unique, values, 0.0), a, b)
            tol = np.maximum(cfg.register_tolerance_wh, cfg.register_tolerance_fraction * np.abs(delta))
            with np.errstate(invalid="ignore"):
                bad |= np.isfinite(delta) & ((complete & (np.abs(total - delta) > tol)) | (total > delta + tol))
        # Mark the rows of bad spans: +1 where a bad span starts, -1 where it ends.
        edges = np.zeros(len(frame) + 1, np.int64)
        np.add.at(edges, a[bad], 1)
        np.add.at(edges, b[bad], -1)
        out[:] = np.cumsum(edges[:-1]) > 0
        return out & unique

    # ------------------------------------------------------------------ outages, events
    def during_outage(self, outage_table: pa.Table | None, events: pa.Table | None) -> BoolArray:
        """Reads whose whole interval lies inside a known outage (flagged when they show consumption)."""
        known = known_outages(outage_table, events, self.codes)
        if known is None:
            self.skipped.append("during_outage (no outages, no events)")
            return np.zeros(len(self.frame), bool)
        return known.covers(self.frame.key, self.frame.length)

    def reported(self, bit: QualityFlag, events: pa.Table | None, kind: str) -> BoolArray:
        """The meter's quality bit, or an event of ``kind`` stamped inside the interval."""
        mask = self._meter_bit(bit)
        found: SortedKeys | None = event_keys(events, self.codes, kind)
        if found is not None and len(found):
            a, b = found.range(self.frame.key, self.frame.key + self.frame.length)
            mask |= b > a
        return mask
