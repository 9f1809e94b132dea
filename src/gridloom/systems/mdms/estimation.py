"""Estimation: fill every missing or unusable interval of the expected grid, the way MDM products do.

For each interval to estimate (no read, or a read failing a rule of ``VeeConfig.replace_flags``),
the first method that applies wins:

0. **outage_zero** — the interval lies wholly inside a known outage (``outages``, or a meter's
   LAST_GASP .. POWER_RESTORE in ``events``): a dead meter sends nothing and nothing was
   delivered, so the estimate is 0 — interpolating across an outage would bill the customer
   for energy that never flowed;
1. **interpolation** — the gap between the good intervals either side spans at most
   ``max_interpolation_intervals``: a straight line between them (each estimate lies between
   its neighbours; Itron IEE's "linear interpolation", Oracle MDM's interval interpolation rule);
2. **like_day** — the average of the same interval on the same weekday of the last
   ``like_day_weeks`` weeks that have it (at least ``like_day_min_weeks``): the "like-day" or
   historical estimation of MDM products;
3. **neighbour_hold** — a short gap with a good neighbour on one side only (at the start or end
   of the data): that neighbour's value, Oracle's "flat load";
4. **register_share** — nothing known about the shape, but register reads bound the span: the
   register difference not covered by actual intervals, shared evenly (Itron's "flat line").

Then **proration**: where two register reads enclose the estimates and every other interval of
their span was read, the estimates are scaled so that estimates + actual intervals equal the
register difference exactly (Oracle's "interval adjustment from scalar"); such estimates carry
``+prorated`` in ``rule``. If the actual intervals alone already exceed the difference, the
estimates are set to 0 and flagged REGISTER_MISMATCH for review.

Good neighbours and like days are actual reads (never estimates) from the batch and from
``history`` (current versions of stored reads); ask the store for
:func:`~gridloom.systems.mdms.vee.history_windows` only. Run again over current versions (the
nightly VEE), estimation refines the estimates already stored with what is known now and returns
only those that changed (``VeeConfig.refine_estimates``); edits are never estimated over.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from gridloom.devices.meters import QualityFlag
from gridloom.store.schema import READS_SCHEMA, TIMESTAMP
from gridloom.systems.mdms._arrays import (
    NO_ROW,
    US,
    BoolArray,
    FloatArray,
    Frame,
    IntArray,
    MeterCodes,
    SortedKeys,
    Spans,
    U32Array,
    batch_window,
    check_lengths,
    code_of,
    conform_reads,
    grid_cells,
    keys,
    outside,
    register_spans,
    segment_sums,
    time_of,
)
from gridloom.systems.mdms._arrays import outages as known_outages
from gridloom.systems.mdms.validation import GAPS_SCHEMA, Validation
from gridloom.systems.mdms.vee import PRORATED_SUFFIX, EstimationMethod, Expected, VeeConfig, VeeFlag

_WEEK_S = 7 * 86_400
_METHODS = (None, *EstimationMethod)  # method code 0 = not estimated
_OUTAGE, _INTERP, _LIKE_DAY, _HOLD, _SHARE = (
    _METHODS.index(m)
    for m in (
        EstimationMethod.OUTAGE_ZERO,
        EstimationMethod.INTERPOLATION,
        EstimationMethod.LIKE_DAY,
        EstimationMethod.NEIGHBOUR_HOLD,
        EstimationMethod.REGISTER_SHARE,
    )
)
_ESTIMATED_BITS = np.uint32(VeeFlag.ESTIMATED | QualityFlag.ESTIMATED)
_COLUMNS = ("delivered", "received", "reactive")
_TINY_WH = 1e-9  # estimates adding up to less than this carry no shape: share the register evenly


@dataclass(frozen=True, eq=False)
class Estimation:
    """What estimation produced.

    ``rows`` are new versions in READS_SCHEMA (source ``estimated``, the method in ``rule``,
    ``version`` and ``recorded_at`` null: the store assigns them in ``add_versions``);
    ``unestimated`` the intervals no method could fill (no neighbours, history or registers);
    ``counts`` new estimates per method plus ``prorated``, ``register_short``, ``unchanged``
    (estimates already stored that came out the same, so need no new version) and ``unestimated``.
    """

    rows: pa.Table
    unestimated: pa.Table
    counts: Mapping[str, int]

    @property
    def estimated_share(self) -> float:
        total = self.rows.num_rows + self.unestimated.num_rows
        return self.rows.num_rows / total if total else 0.0


def estimate(
    validated: Validation | pa.Table,
    *,
    expected: Expected | tuple[object, ...],
    history: pa.Table | None = None,
    registers: pa.Table | None = None,
    outages: pa.Table | None = None,
    events: pa.Table | None = None,
    config: VeeConfig | None = None,
) -> pa.Table:
    """Estimated rows for every missing or unusable interval of ``expected`` (see :func:`estimate_detailed`)."""
    return estimate_detailed(
        validated,
        expected=expected,
        history=history,
        registers=registers,
        outages=outages,
        events=events,
        config=config,
    ).rows


def estimate_detailed(
    validated: Validation | pa.Table,
    *,
    expected: Expected | tuple[object, ...],
    history: pa.Table | None = None,
    registers: pa.Table | None = None,
    outages: pa.Table | None = None,
    events: pa.Table | None = None,
    config: VeeConfig | None = None,
) -> Estimation:
    """Estimate the intervals of ``expected`` (meters, start, end, interval_s) that have no usable read.

    ``validated`` is a :class:`Validation` or a reads table (its VEE bits decide which reads are
    unusable: duplicates, ``config.replace_flags``; reads with negative or missing delivered
    energy are never used). ``history`` holds earlier (or later) reads for neighbours and like
    days; ``registers`` (REGISTER_SCHEMA) bound the estimates by proration; ``outages``
    (meter_id, start, end) and the LAST_GASP / POWER_RESTORE ``events`` zero-fill outages.
    """
    cfg = config or VeeConfig()
    grid = Expected(*expected).checked()
    expected_ids = grid.ids()
    frame, codes = _frame_of(validated, expected_ids, grid.interval_s)
    exp_codes = codes.codes(expected_ids)
    exp_meter = np.zeros(len(codes), bool)
    exp_meter[exp_codes] = True
    check_lengths(frame, codes, exp_codes, grid.interval_s)

    # Estimates are never neighbours or like days of other estimates; refined, they are estimated again.
    unusable = np.uint32(cfg.replace_flags | VeeFlag.DUPLICATE | VeeFlag.ESTIMATED)
    refine = np.uint32(unusable if cfg.refine_estimates else unusable & ~np.uint32(VeeFlag.ESTIMATED))
    good = ((frame.quality & refine) == 0) & np.isfinite(frame.delivered) & (frame.delivered >= 0)
    good &= ~(frame.received < 0)
    batch = _Pool.of(frame, good & ((frame.quality & np.uint32(VeeFlag.ESTIMATED)) == 0))

    # The cells to estimate, sorted by key.
    row_of_code = np.full(len(codes), NO_ROW, np.int64)
    row_of_code[exp_codes] = np.arange(len(exp_codes))
    n_int = max(grid.intervals, 1)
    cells = grid_cells(row_of_code, len(exp_codes), frame.key, good, grid.start_s, grid.intervals, grid.interval_s)
    cell_key = np.sort(keys(exp_codes[cells // n_int], grid.start_s + (cells % n_int) * grid.interval_s))
    reason, previous = _reasons(frame, good, cell_key)

    pool = [batch]
    if history is not None:
        hist = _history_frame(validated, history, codes, grid.interval_s)
        meters, lo, hi = batch_window(frame)
        grid_end = grid.start_s + grid.intervals * grid.interval_s
        usable = outside(hist, meters, lo, hi) & outside(hist, exp_meter, grid.start_s, grid_end)
        usable &= ((hist.quality & unusable) == 0) & np.isfinite(hist.delivered) & (hist.delivered >= 0)
        # (``unusable`` holds ESTIMATED: like days and neighbours are actual reads, as MDM products require)
        pool.append(_Pool.of(hist, usable))

    est = _Estimates(cell_key, grid.interval_s, pool)
    known = known_outages(outages, events, codes)
    if known is not None and len(known):
        est.outage_zero(known.covers(cell_key, np.full(len(cell_key), grid.interval_s, np.int64)))
    est.interpolate(cfg.max_interpolation_intervals)
    est.like_day(cfg.like_day_weeks, cfg.like_day_min_weeks)
    est.hold(cfg.max_interpolation_intervals)
    spans = register_spans(registers, codes, grid.interval_s)
    if spans is not None and len(spans):
        est.prorate(spans)
    return est.result(codes, reason, previous)


def _frame_of(validated: Validation | pa.Table, expected_ids: pa.Array, interval_s: int) -> tuple[Frame, MeterCodes]:
    """The batch as arrays: the validation's own when it knows every expected meter, else converted anew."""
    if isinstance(validated, Validation):
        codes = validated.codes
        if not len(expected_ids) or codes.codes(expected_ids).min() >= 0:
            return validated.frame, codes
    table = validated.reads if isinstance(validated, Validation) else validated
    table = conform_reads(table, interval_s=interval_s)
    codes = MeterCodes.of(table.column("meter_id"), expected_ids)
    return Frame.of(table, codes, "reads"), codes


def _history_frame(validated: Validation | pa.Table, history: pa.Table, codes: MeterCodes, interval_s: int) -> Frame:
    """``history`` as arrays: those validation made of the very same table when it can, else converted anew."""
    if isinstance(validated, Validation) and validated.history is not None and validated.codes is codes:
        source, frame = validated.history
        if source is history:
            return frame
    return Frame.of(conform_reads(history, interval_s=interval_s, name="history"), codes, "history")


def _reasons(frame: Frame, good: BoolArray, cell_key: IntArray) -> tuple[U32Array, _Previous]:
    """Why each cell is estimated (the flags of the unusable read there, or GAP when there was none),
    and the estimate already there, if any (refined estimates are returned only when they change)."""
    present = ((frame.quality & np.uint32(VeeFlag.DUPLICATE)) == 0) & ~good
    pos = SortedKeys(frame.key[present], presorted=True).exact(cell_key)
    reason = np.full(len(cell_key), np.uint32(VeeFlag.GAP), np.uint32)
    found = pos >= 0
    quality = frame.quality[present][pos[found]]
    reason[found] = quality
    estimated = np.zeros(len(cell_key), bool)
    estimated[found] = (quality & np.uint32(VeeFlag.ESTIMATED)) != 0
    values = []
    for column in (frame.delivered, frame.received, frame.reactive):
        v = np.full(len(cell_key), np.nan)
        v[found] = column[present][pos[found]]
        values.append(v)
    return reason, _Previous(estimated, values[0], values[1], values[2])


@dataclass(frozen=True, eq=False)
class _Previous:
    """The estimates already in place on the cells (``estimated``) and their values."""

    estimated: BoolArray
    delivered: FloatArray
    received: FloatArray
    reactive: FloatArray

    def unchanged(self, values: list[FloatArray]) -> BoolArray:
        same = self.estimated.copy()
        for old, new in zip((self.delivered, self.received, self.reactive), values, strict=True):
            same &= np.isclose(old, new, rtol=0.0, atol=1e-9, equal_nan=True)
        return same


@dataclass(frozen=True, eq=False)
class _Pool:
    """Good reads, sorted by key and without repeated keys, for neighbour and like-day lookups."""

    index: SortedKeys
    values: tuple[FloatArray, FloatArray, FloatArray]  # delivered, received, reactive in key order

    @classmethod
    def of(cls, frame: Frame, mask: BoolArray) -> _Pool:
        """The ``mask`` rows of ``frame`` (sorted by key), the first of each key only."""
        take = mask.copy()
        key = frame.key
        take[1:] &= ~((key[1:] == key[:-1]) & mask[:-1])  # a masked read right before with the same key wins
        if take.all():
            return cls(SortedKeys(key, presorted=True), (frame.delivered, frame.received, frame.reactive))
        return cls(
            SortedKeys(key[take], presorted=True),
            (frame.delivered[take], frame.received[take], frame.reactive[take]),
        )

    def key_at(self, pos: IntArray) -> IntArray:
        out: IntArray = self.index.sorted[np.maximum(pos, 0)]
        return out


def _nearest(pool: list[_Pool], q: IntArray, *, after: bool) -> tuple[IntArray, FloatArray, FloatArray, FloatArray]:
    """The nearest good read before (or after) each key over all pools: (time or -1, the three values)."""
    best_t = np.full(len(q), NO_ROW, np.int64)
    vals = [np.full(len(q), np.nan) for _ in _COLUMNS]
    for p in pool:
        if not len(p.index):
            continue
        pos = p.index.after(q) if after else p.index.before(q)
        ok = pos >= 0
        t = np.where(ok, time_of(p.key_at(pos)), NO_ROW)
        better = ok & ((best_t < 0) | ((t < best_t) if after else (t > best_t)))
        best_t = np.where(better, t, best_t)
        for v, src in zip(vals, p.values, strict=True):
            v[better] = src[pos[better]]
    return best_t, vals[0], vals[1], vals[2]


class _Estimates:
    """Values and methods of the cells to estimate, filled method by method (first that applies wins)."""

    def __init__(self, cell_key: IntArray, interval_s: int, pool: list[_Pool]) -> None:
        self.pool = pool
        self.key = cell_key
        self.t = time_of(cell_key)
        self.interval_s = interval_s
        n = len(cell_key)
        self.values = [np.full(n, np.nan) for _ in _COLUMNS]
        self.method = np.zeros(n, np.int8)
        self.prorated = np.zeros(n, bool)
        self.short = np.zeros(n, bool)  # register difference below the actual intervals: set to 0, flagged
        # Runs of consecutive cells (one meter, adjacent intervals): the gap seen from inside the grid.
        follows = np.zeros(n, bool)
        follows[1:] = cell_key[1:] - cell_key[:-1] == interval_s
        run = np.cumsum(~follows) - 1
        self.run_length = np.bincount(run)[run] if n else np.zeros(0, np.int64)
        self.prev_t, *prev_v = _nearest(pool, cell_key, after=False)
        self.next_t, *next_v = _nearest(pool, cell_key, after=True)
        self.prev_v, self.next_v = tuple(prev_v), tuple(next_v)

    def _fill(self, mask: BoolArray, method: int, values: tuple[FloatArray, ...]) -> None:
        mask = mask & (self.method == 0)
        for dst, src in zip(self.values, values, strict=True):
            dst[mask] = src[mask]
        self.method[mask] = method

    def outage_zero(self, inside: BoolArray) -> None:
        zero = np.zeros(len(self.key))
        self._fill(inside, _OUTAGE, (zero, zero, zero))

    def interpolate(self, max_intervals: int) -> None:
        prev_t, next_t, prev_v, next_v = self.prev_t, self.next_t, self.prev_v, self.next_v
        both = (prev_t >= 0) & (next_t >= 0)
        span = np.where(both, next_t - prev_t, 1)
        short = both & (span // self.interval_s - 1 <= max_intervals)
        frac = (self.t - prev_t) / span
        values = tuple(p + (n - p) * frac for p, n in zip(prev_v, next_v, strict=True))
        self._fill(short & np.isfinite(values[0]), _INTERP, values)

    def like_day(self, weeks: int, min_weeks: int) -> None:
        if weeks < 1:
            return
        n = len(self.key)
        sums = [np.zeros(n) for _ in _COLUMNS]
        counts = [np.zeros(n) for _ in _COLUMNS]
        for w in range(1, weeks + 1):
            q = self.key - w * _WEEK_S
            found = np.zeros(n, bool)
            for p in self.pool:
                pos = p.index.exact(q)
                hit = (pos >= 0) & ~found
                found |= hit
                for s, c, src in zip(sums, counts, p.values, strict=True):
                    v = src[pos[hit]]
                    ok = np.isfinite(v)
                    rows = np.flatnonzero(hit)[ok]
                    s[rows] += v[ok]
                    c[rows] += 1
        with np.errstate(invalid="ignore", divide="ignore"):
            values = tuple(np.where(c > 0, s / c, np.nan) for s, c in zip(sums, counts, strict=True))
        self._fill(counts[0] >= min_weeks, _LIKE_DAY, values)

    def hold(self, max_intervals: int) -> None:
        prev_t, next_t, prev_v, next_v = self.prev_t, self.next_t, self.prev_v, self.next_v
        one_side = (prev_t >= 0) != (next_t >= 0)
        use_prev = prev_t >= 0
        values = tuple(np.where(use_prev, p, n) for p, n in zip(prev_v, next_v, strict=True))
        self._fill(one_side & (self.run_length <= max_intervals) & np.isfinite(values[0]), _HOLD, values)

    def prorate(self, spans: Spans) -> None:
        """Scale the estimates of complete register spans to the register difference (see the module doc)."""
        span = spans.locate(self.key, self.interval_s)
        fixed = self.method == _OUTAGE  # zero by knowledge, not by guess: counted like an actual interval
        n_fixed = np.bincount(span[(span >= 0) & fixed], minlength=len(spans))
        span[fixed] = NO_ROW
        inside = span >= 0
        if not inside.any():
            return
        n = len(spans)
        n_est = np.bincount(span[inside], minlength=n)
        # Actual intervals per span, each span summed on its own (exact to the last Wh).
        n_act = np.zeros(n, np.int64)
        act = [np.zeros(n) for _ in _COLUMNS[:2]]
        for p in self.pool:
            lo, hi = spans.segments(p.index.sorted)
            n_act += hi - lo
            for acc, src in zip(act, p.values[:2], strict=True):
                acc += segment_sums(src, lo, hi)
        complete = (n_est > 0) & (n_act + n_fixed + n_est == spans.intervals(self.interval_s))
        use = inside.copy()
        use[inside] = complete[span[inside]]
        if not use.any():
            return
        s = span[use]
        unknown = self.method[use] == 0
        for col, (values, delta) in enumerate(
            zip(self.values[:2], (spans.delta_delivered_wh, spans.delta_received_wh), strict=True)
        ):
            remaining = delta - act[col]
            target = use.copy()
            target[use] = np.isfinite(remaining[s])
            if not target.any():
                continue
            st = span[target]
            w = values[target]
            known = np.isfinite(w)
            n_known = np.bincount(st[known], minlength=n)
            mean_known = np.bincount(st[known], weights=w[known], minlength=n) / np.maximum(n_known, 1)
            w = np.where(known, w, np.where(n_known[st] > 0, mean_known[st], 1.0))
            total = np.bincount(st, weights=w, minlength=n)
            cnt = np.bincount(st, minlength=n)
            rem = remaining[st]
            with np.errstate(invalid="ignore", divide="ignore"):
                # Shares first (w / total), then the energy: no precision lost to tiny weights.
                shaped = total[st] > _TINY_WH
                scaled = np.where(shaped, w / np.where(shaped, total[st], 1.0) * rem, rem / cnt[st])
            short = rem < 0
            values[target] = np.where(short, 0.0, scaled)
            self.prorated[target] = True
            self.short[target] |= short
        # Cells no method could shape got their share of the register difference.
        share = use.copy()
        share[use] = unknown
        share &= np.isfinite(self.values[0])
        self.method[share] = _SHARE

    def result(self, codes: MeterCodes, reason: U32Array, previous: _Previous) -> Estimation:
        done = self.method > 0
        # An estimate already in place that came out the same needs no new version; one that cannot be
        # estimated now stays as it is (it is not "unestimated").
        keep = previous.unchanged(self.values)
        rows = np.flatnonzero(done & ~keep)
        n = len(rows)
        method_names = np.array([m.value if m is not None else "" for m in _METHODS], dtype=object)
        rule = method_names[self.method[rows]]
        prorated = self.prorated[rows] & (self.method[rows] != _SHARE)
        rule[prorated] = rule[prorated] + PRORATED_SUFFIX
        quality = reason[rows].astype(np.uint32) | _ESTIMATED_BITS
        quality[self.short[rows]] |= np.uint32(VeeFlag.REGISTER_MISMATCH)
        code = code_of(self.key[rows])
        t = self.t[rows]

        def col(values: FloatArray) -> pa.Array:
            v = values[rows]
            return pa.array(v, pa.float64(), mask=~np.isfinite(v))

        out = pa.Table.from_arrays(
            [
                codes.take(code),
                pa.array(t * US, pa.int64()).cast(TIMESTAMP),
                pa.array(np.full(n, self.interval_s), pa.int32()),
                col(self.values[0]),
                col(self.values[1]),
                col(self.values[2]),
                pa.nulls(n, pa.float64()),
                pa.array(quality, pa.uint32()),
                pa.nulls(n, pa.int32()),
                pa.array(np.full(n, "estimated", dtype=object), pa.string()),
                pa.array(rule, pa.string()),
                pa.nulls(n, pa.string()),
                pa.nulls(n, TIMESTAMP),
            ],
            schema=READS_SCHEMA,
        )
        left = np.flatnonzero(~done & ~previous.estimated)
        unestimated = pa.Table.from_arrays(
            [
                codes.take(code_of(self.key[left])),
                pa.array(self.t[left] * US, pa.int64()).cast(TIMESTAMP),
                pa.array(np.full(len(left), self.interval_s), pa.int32()),
            ],
            schema=GAPS_SCHEMA,
        )
        new = done & ~keep
        counts = {m.value: int(np.count_nonzero(new & (self.method == i))) for i, m in enumerate(_METHODS) if m}
        counts["prorated"] = int(np.count_nonzero(self.prorated & new))
        counts["register_short"] = int(np.count_nonzero(self.short & new))
        counts["unchanged"] = int(np.count_nonzero(done & keep))
        counts["unestimated"] = len(left)
        return Estimation(out, unestimated, counts)
