"""Rating: interval reads + the CIS -> one bill per account per cycle, every line traced to its reads.

The work is vectorised over all reads of a batch of accounts (numpy ``bincount`` and
``searchsorted``; no Python loop per read or per account):

1. *Who used it*: each read is matched to the account that held the premise where its meter
   was installed (:meth:`Cis.service_windows`); an interval that straddles a move is split
   between the two accounts in proportion to time (``weight``), usage at a vacant premise is
   counted as unbilled.
2. *Which line*: the account's tariff classifies each interval into a bucket (a time-of-use
   period, a critical-peak event, …; :mod:`.rating`).
3. *Determinants*: per (account, bucket) the kWh, and per account the received kWh in a
   net-metering enrolment and the highest 15-minute average kW (coincident over the account's
   meters).
4. *Charges*: quantities are billed in whole Wh (kWh with three decimals) and each line's
   amount is ``quantity * rate`` rounded half away from zero to the cent; real-time lines sum
   ``kWh * price`` per interval first. Fixed charges and tier blocks are prorated by the share of
   the cycle the account held the premise (local calendar time).
5. *Trace*: each line carries the meters, the interval range, the number of intervals, the
   versions used (``"0:2970,1:6"`` = 2,970 intervals at version 0 and 6 at version 1), how many
   were estimated or edited, and the bill records ``reads_as_of`` (the newest ``recorded_at`` it
   used), so :func:`gridloom.systems.billing.trace.trace_line` finds the exact reads again even
   after later edits add versions.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from gridloom.errors import BillingInputError
from gridloom.systems.billing.credits import CREDIT_LINE_NO, credit_rows
from gridloom.systems.billing.cycle import BillingCycle, CriticalPeakEvent, PriceSeries
from gridloom.systems.billing.rating import TariffPlan
from gridloom.systems.cis.model import OPEN_END_US, Cis, Program
from gridloom.systems.cis.tariffs import TieredTariff

TIMESTAMP = pa.timestamp("us", tz="UTC")
IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
_US = 1_000_000
_DAY_US = 86_400 * _US
DEMAND_WINDOW_S = 900  # the demand charge's averaging window: 15 minutes
ESTIMATED_QUALITY_BITS = 2  # QualityFlag.ESTIMATED (the MDMS sets it with the source "estimated")

BILLS_SCHEMA = pa.schema(
    [
        ("bill_id", pa.string()),
        ("cycle", pa.string()),
        ("account_id", pa.string()),
        ("customer_id", pa.string()),
        ("premise_id", pa.string()),
        ("tariff_id", pa.string()),
        ("currency", pa.string()),
        ("status", pa.string()),  # issued | held (data too incomplete to bill) | cancelled (re-billed)
        ("hold_reason", pa.string()),
        ("period_start_at", TIMESTAMP),  # the account's service within the cycle
        ("period_end_at", TIMESTAMP),
        ("cycle_share", pa.float64()),  # local-calendar share of the cycle (prorates fixed charges, blocks)
        ("energy_delivered_wh", pa.float64()),
        ("energy_received_wh", pa.float64()),
        ("peak_demand_w", pa.float64()),  # highest 15-minute average, all the account's meters together
        ("intervals", pa.int64()),
        ("intervals_expected", pa.int64()),
        ("estimated_share", pa.float64()),
        ("total_cents", pa.int64()),
        ("revision", pa.int32()),
        ("reads_as_of", TIMESTAMP),  # newest recorded_at among the reads used
        ("issued_at", TIMESTAMP),
        ("run_id", pa.string()),
    ]
)
LINES_SCHEMA = pa.schema(
    [
        ("bill_id", pa.string()),
        ("account_id", pa.string()),
        ("line_no", pa.int32()),
        ("kind", pa.string()),  # fixed | energy | tier | demand | net_metering_credit | dr_credit
        ("bucket", pa.string()),  # energy | period:<p> | off_peak | critical_peak | real_time | tier:<n> | dr_credit:…
        ("label", pa.string()),
        ("quantity", pa.float64()),
        ("unit", pa.string()),  # kWh | kW | cycle
        ("rate", pa.float64()),  # per unit; the average for real-time lines
        ("amount_cents", pa.int64()),
        ("meter_ids", pa.string()),  # comma-separated, sorted
        ("interval_from", TIMESTAMP),  # first interval start behind the line
        ("interval_to", TIMESTAMP),  # last interval end behind the line
        ("intervals", pa.int64()),
        ("versions", pa.string()),  # "version:intervals,..." e.g. "0:2970,1:6"
        ("max_version", pa.int32()),
        ("estimated_intervals", pa.int64()),
        ("edited_intervals", pa.int64()),
        ("estimated_share", pa.float64()),
    ]
)
#: The per-read trace rows (``keep_rows=True``): which account, line bucket and share each read went to.
ROWS_SCHEMA = pa.schema(
    [
        ("account_id", pa.string()),
        ("meter_id", pa.string()),
        ("interval_start", TIMESTAMP),
        ("interval_s", pa.int32()),
        ("version", pa.int32()),
        ("weight", pa.float64()),
        ("bucket", pa.string()),
        ("energy_delivered_wh", pa.float64()),  # weighted (the account's share)
        ("energy_received_wh", pa.float64()),
        ("net_metering", pa.bool_()),
        ("peak_block", pa.bool_()),
    ]
)


@dataclass(frozen=True)
class RatingInputs:
    """What a billing run needs besides reads and the CIS."""

    cycle: BillingCycle
    events: Sequence[CriticalPeakEvent] = ()
    prices: PriceSeries | None = None
    min_coverage: float = 0.99  # below this share of expected intervals a bill is held, not issued
    run_id: str = ""
    issued_at: dt.datetime | None = None
    dr_credits: pa.Table | None = None  # DR_CREDITS_SCHEMA: reductions the LMS settled, credited per kWh


@dataclass(frozen=True)
class Rated:
    bills: pa.Table  # BILLS_SCHEMA, one row per account served in the cycle
    lines: pa.Table  # LINES_SCHEMA
    rows: pa.Table | None  # ROWS_SCHEMA when asked for
    unbilled_wh: float  # delivered energy at premises no account held (vacant)
    reads_used: int


def cents(amount: npt.ArrayLike) -> IntArray:
    """Currency amounts to whole cents, half away from zero (the tiny bias absorbs float noise)."""
    value = np.asarray(amount, dtype=np.float64)
    return np.asarray(np.sign(value) * np.floor(np.abs(value) * 100.0 + 0.5 + 1e-7), dtype=np.int64)


def kwh3(wh: npt.ArrayLike) -> FloatArray:
    """Billed kWh: whole Wh (three decimals)."""
    return np.asarray(np.round(np.asarray(wh, dtype=np.float64)) / 1000.0, dtype=np.float64)


def _ts(column: pa.ChunkedArray | pa.Array, null_us: int) -> IntArray:
    return np.asarray(pc.fill_null(pc.cast(column, pa.int64()), null_us).to_numpy(zero_copy_only=False), dtype=np.int64)


def _f64(table: pa.Table, name: str) -> FloatArray:
    if name not in table.column_names:
        return np.zeros(table.num_rows)
    return np.asarray(pc.fill_null(table[name].cast(pa.float64()), 0.0).to_numpy(zero_copy_only=False))


def _find(
    owner_w: IntArray, lo_w: IntArray, hi_w: IntArray, owner: IntArray, t: IntArray, *, base: int, span: int
) -> tuple[IntArray, BoolArray]:
    """Index of the window ``[lo, hi)`` of the same owner containing each time (windows sorted by owner, lo)."""
    keys = owner_w * span + (lo_w - base)
    k = np.searchsorted(keys, owner * span + (t - base), side="right") - 1
    kc = np.maximum(k, 0)
    ok = (k >= 0) & (owner_w[kc] == owner) & (t < hi_w[kc]) if keys.size else np.zeros(t.shape, bool)
    return kc, np.asarray(ok, dtype=bool)


@dataclass
class _Trace:
    """Per-line statistics of the reads behind each line key."""

    count: IntArray
    tmin: IntArray
    tmax: IntArray
    vmax: IntArray
    est: IntArray
    edited: IntArray
    versions: list[str]
    meters: list[str]


@dataclass(frozen=True)
class _Rows:
    """The read rows as assigned to accounts (one per read and account share)."""

    acct: IntArray
    window: IntArray
    t0: IntArray
    t1: IntArray
    version: IntArray
    est: BoolArray
    edited: BoolArray

    def take(self, rows: IntArray) -> _Rows:
        return _Rows(*(getattr(self, f)[rows] for f in ("acct", "window", "t0", "t1", "version", "est", "edited")))


def _trace(rows: _Rows, sub: IntArray, k: int, n_a: int, *, w_acct: IntArray, w_meter_ids: pa.Array) -> _Trace:
    """Statistics per line key ``acct * k + sub`` (``n_a * k`` keys)."""
    n = n_a * k
    key = rows.acct * k + sub
    count = np.bincount(key, minlength=n).astype(np.int64)
    tmin = np.full(n, OPEN_END_US, np.int64)
    tmax = np.full(n, -1, np.int64)
    vmax = np.full(n, -1, np.int64)
    np.minimum.at(tmin, key, rows.t0)
    np.maximum.at(tmax, key, rows.t1)
    np.maximum.at(vmax, key, rows.version)
    n_versions = int(rows.version.max()) + 1 if rows.version.size else 1
    hist = np.bincount(key * n_versions + rows.version, minlength=n * n_versions).reshape(n, n_versions)
    line, ver = np.nonzero(hist)
    versions = _joined(
        pa.table({"k": line, "v": pc.binary_join_element_wise(
            pa.array(ver.astype(str), pa.string()), pa.array(hist[line, ver].astype(str), pa.string()), ":")}),
        n,
    )  # fmt: skip
    # meters: a window belongs to one account, so (line, window) pairs are (window, sub) pairs
    present = np.flatnonzero(np.bincount(rows.window * k + sub, minlength=w_acct.size * k))
    window, pair_sub = np.divmod(present, k)
    meters = _joined(
        pa.table({"k": w_acct[window] * k + pair_sub, "v": pc.take(w_meter_ids, pa.array(window, pa.int64()))}),
        n,
        distinct_sorted=True,
    )
    return _Trace(
        count=count, tmin=tmin, tmax=tmax, vmax=vmax,
        est=np.bincount(key, weights=rows.est, minlength=n).astype(np.int64),
        edited=np.bincount(key, weights=rows.edited, minlength=n).astype(np.int64),
        versions=versions, meters=meters,
    )  # fmt: skip


def _joined(pairs: pa.Table, n: int, *, distinct_sorted: bool = False) -> list[str]:
    """Comma-join the ``v`` strings of each key ``k`` (0..n-1), in order of appearance or sorted distinct."""
    if distinct_sorted:
        pairs = pairs.group_by(["k", "v"]).aggregate([]).sort_by([("k", "ascending"), ("v", "ascending")])
    grouped = pairs.group_by("k", use_threads=False).aggregate([("v", "list")])
    out = [""] * n
    joined = pc.binary_join(grouped["v_list"], ",")
    for k, v in zip(grouped["k"].to_pylist(), joined.to_pylist(), strict=True):
        out[int(k)] = v
    return out


def rate_accounts(
    reads: pa.Table, *, cis: Cis, account_ids: Sequence[str], inputs: RatingInputs, keep_rows: bool = False
) -> Rated:
    """Bills for ``account_ids`` in ``inputs.cycle`` from ``reads`` (current versions, READS_SCHEMA columns).

    Accounts without service in the cycle get no bill. Reads of other meters or outside the
    cycle are ignored; two reads of the same meter and interval are refused (pass current
    versions only, e.g. ``store.reads(versions="current")``).
    """
    cycle = inputs.cycle
    accounts = cis.accounts.filter(
        pc.is_in(cis.accounts["account_id"], value_set=pa.array(list(account_ids), pa.string()))
    )
    windows = cis.service_windows(list(account_ids), start=cycle.start_at, end=cycle.end_at)
    served = pc.unique(windows["account_id"])
    accounts = accounts.filter(pc.is_in(accounts["account_id"], value_set=served)).sort_by("account_id")
    n_a = accounts.num_rows
    base, span = cycle.start_us - _DAY_US, (cycle.end_us - cycle.start_us) + 2 * _DAY_US
    w_acct = _index(windows["account_id"], accounts["account_id"])
    meter_list = pc.unique(windows["meter_id"]) if windows.num_rows else pa.array([], pa.string())
    w_meter = _index(windows["meter_id"], meter_list)
    w_lo, w_hi = _ts(windows["start_at"], OPEN_END_US), _ts(windows["end_at"], OPEN_END_US)
    order = np.lexsort((w_lo, w_meter))
    w_acct, w_meter, w_lo, w_hi = w_acct[order], w_meter[order], w_lo[order], w_hi[order]
    w_meter_ids = pc.take(meter_list, pa.array(w_meter))

    # ---------------------------------------------------------------- reads -> (account window, weight)
    t0_all = _ts(reads["interval_start"], -1) if reads.num_rows else np.zeros(0, np.int64)
    r_meter = _index(reads["meter_id"], meter_list) if reads.num_rows else np.zeros(0, np.int64)
    keep = (r_meter >= 0) & (t0_all >= cycle.start_us) & (t0_all < cycle.end_us)
    sel = None if keep.all() else np.flatnonzero(keep)  # usually every read is wanted: no copies then

    def col(name: str, default: float, dtype: type[np.generic]) -> npt.NDArray[np.generic]:
        if name not in reads.column_names:
            return np.full(keep.size if sel is None else sel.size, default, dtype=dtype)
        values = np.asarray(pc.fill_null(reads[name], default).to_numpy(zero_copy_only=False), dtype=dtype)
        return values if sel is None else values[sel]

    r_meter_i = r_meter if sel is None else r_meter[sel]
    t0 = t0_all if sel is None else t0_all[sel]
    iv_s = np.asarray(col("interval_s", 900, np.int64), np.int64)
    if np.any(iv_s <= 0):
        raise BillingInputError("reads: interval_s must be positive")
    t1 = t0 + iv_s * _US
    _refuse_overlaps(r_meter_i, t0, iv_s, n_meters=len(meter_list), base=base, span=span)
    e_del = np.asarray(col("energy_delivered_wh", 0.0, np.float64), np.float64)
    e_rec = np.asarray(col("energy_received_wh", 0.0, np.float64), np.float64)
    version = np.asarray(col("version", 0, np.int64), np.int64)
    quality = np.asarray(col("quality", 0, np.int64), np.int64)
    if "source" in reads.column_names:
        source = reads["source"] if sel is None else reads["source"].take(pa.array(sel))
        estimated = np.asarray(pc.fill_null(pc.equal(source, "estimated"), False).to_numpy(zero_copy_only=False))
        edited = np.asarray(pc.fill_null(pc.equal(source, "edited"), False).to_numpy(zero_copy_only=False))
    else:
        estimated = edited = np.zeros(t0.size, bool)
    estimated = estimated | ((quality & ESTIMATED_QUALITY_BITS) != 0)
    recorded = None
    if "recorded_at" in reads.column_names:
        recorded_all = _ts(reads["recorded_at"], -1)
        recorded = recorded_all if sel is None else recorded_all[sel]

    # the account holding the interval's start; an interval that crosses a window end (a move) also
    # goes in part to the account of its end
    j, ok_j = _find(w_meter, w_lo, w_hi, r_meter_i, t0, base=base, span=span)
    length = (t1 - t0).astype(np.float64)
    # microseconds of each interval the account of its start held
    cover_a = np.where(ok_j, np.minimum(t1, w_hi[j]) - t0, 0) if w_hi.size else np.zeros(t0.size, np.int64)
    rb = np.flatnonzero(cover_a < t1 - t0)  # partly or not covered: look for a second window
    j2, ok2 = _find(w_meter, w_lo, w_hi, r_meter_i[rb], t1[rb] - 1, base=base, span=span)
    if w_hi.size:
        ok2 &= ((j2 != j[rb]) | ~ok_j[rb]) & (w_hi[j2] > t0[rb])
        cover_b = np.where(ok2, np.minimum(t1[rb], w_hi[j2]) - np.maximum(t0[rb], w_lo[j2]), 0)
    else:
        cover_b = np.zeros(rb.size, np.int64)
    uncovered = (t1 - t0) - cover_a
    uncovered[rb] -= cover_b
    unbilled_wh = float(np.sum(e_del * (np.maximum(uncovered, 0) / length)))
    ra = np.flatnonzero(ok_j)
    rb, j2, cover_b = rb[ok2], j2[ok2], cover_b[ok2]
    if rb.size:
        r = np.concatenate([ra, rb])
        win = np.concatenate([j[ra], j2])
        wt = np.concatenate([cover_a[ra] / length[ra], cover_b / length[rb]])
    elif ra.size == t0.size:  # the usual case: every read wholly in one account's window
        r, win, wt = ra, j, np.ones(t0.size)
    else:
        r, win, wt = ra, j[ra], cover_a[ra] / length[ra]
    reads_used = int(np.count_nonzero(ok_j) + rb.size - np.count_nonzero(ok_j[rb]))
    acct = w_acct[win]
    ed, er = e_del[r] * wt, e_rec[r] * wt
    rt0, rt1, rver, rest, redit = t0[r], t1[r], version[r], estimated[r], edited[r]

    # ---------------------------------------------------------------- tariffs and buckets
    tariff_ids = accounts["tariff_id"].to_pylist() if n_a else []
    plan_ids = sorted(set(tariff_ids))
    plans = [TariffPlan.build(cis.tariff(t), cycle) for t in plan_ids]
    a_plan = _index(accounts["tariff_id"], pa.array(plan_ids, pa.string())) if n_a else np.zeros(0, np.int64)
    nb = max((len(p.buckets) for p in plans), default=1)
    bucket = np.zeros(r.size, np.int64)
    var_amount = np.zeros(r.size)  # kWh x price where the rate varies per interval
    row_plan = a_plan[acct] if r.size else np.zeros(0, np.int64)
    for p, plan in enumerate(plans):
        mask = row_plan == p
        if not mask.any():
            continue
        b, rate = plan.classify(rt0[mask], cycle=cycle, events=inputs.events, prices=inputs.prices)
        bucket[mask] = b
        if rate is not None:
            var_amount[mask] = ed[mask] / 1000.0 * rate
    rows_all = _Rows(acct, win, rt0, rt1, rver, rest, redit)
    lkey = acct * nb + bucket
    energy = _trace(rows_all, bucket, nb, n_a, w_acct=w_acct, w_meter_ids=w_meter_ids)
    energy_wh = np.bincount(lkey, weights=ed, minlength=n_a * nb)
    energy_var = np.bincount(lkey, weights=var_amount, minlength=n_a * nb)

    # ---------------------------------------------------------------- per account
    a_lo = np.full(n_a, OPEN_END_US, np.int64)
    a_hi = np.full(n_a, -1, np.int64)
    np.minimum.at(a_lo, w_acct, w_lo)
    np.maximum.at(a_hi, w_acct, w_hi)
    share = cycle.share(a_lo, a_hi) * cycle.charge_share if n_a else np.zeros(0)
    iv_meter = np.full(meter_list.__len__() or 1, 0, np.int64)
    np.maximum.at(iv_meter, r_meter_i, iv_s)
    iv_meter[iv_meter == 0] = 900
    expected = np.bincount(w_acct, weights=(w_hi - w_lo) / (iv_meter[w_meter] * _US), minlength=n_a)
    covered = np.bincount(acct, weights=wt, minlength=n_a)
    delivered = np.bincount(acct, weights=ed, minlength=n_a)
    received = np.bincount(acct, weights=er, minlength=n_a)
    used = np.bincount(acct, minlength=n_a)
    est_a = np.bincount(acct, weights=rest, minlength=n_a)
    recorded = (
        _ts(reads["recorded_at"], -1)[r] if "recorded_at" in reads.column_names else np.full(r.size, -1, np.int64)
    )
    as_of = np.full(n_a, -1, np.int64)
    np.maximum.at(as_of, acct, recorded)

    # net metering: received energy during an enrolment
    nem = cis.enrolment_windows(Program.NET_METERING, accounts["account_id"].to_pylist())
    n_acct = np.asarray(
        pc.index_in(nem["account_id"], value_set=accounts["account_id"]).to_numpy(zero_copy_only=False), np.int64
    )
    n_lo, n_hi = _ts(nem["start_at"], OPEN_END_US), _ts(nem["end_at"], OPEN_END_US)
    n_order = np.lexsort((n_lo, n_acct))
    in_nem = _in_any(n_acct[n_order], n_lo[n_order], n_hi[n_order], acct, rt0)
    nem_rows = np.flatnonzero(in_nem)
    nem_trace = _trace(rows_all.take(nem_rows), np.zeros(nem_rows.size, np.int64), 1, n_a, w_acct=w_acct,
                       w_meter_ids=w_meter_ids)  # fmt: skip
    nem_wh = np.bincount(acct[nem_rows], weights=er[nem_rows], minlength=n_a)
    nem_enrolled = np.zeros(n_a, bool)
    nem_enrolled[n_acct[(n_lo < np.maximum(a_hi[np.maximum(n_acct, 0)], 0)) & (n_hi > a_lo[np.maximum(n_acct, 0)])]] = (
        True
    )

    # demand: highest 15-minute average kW of the account (its meters together)
    demand_rate = np.array([float(p.tariff.demand_charge_per_kw or 0) for p in plans])
    has_demand = np.array([p.tariff.demand_charge_per_kw is not None for p in plans], dtype=bool)
    peak_w = np.zeros(n_a)
    in_peak = np.zeros(r.size, bool)
    d_rows = np.flatnonzero(has_demand[row_plan]) if r.size else np.zeros(0, np.int64)
    if d_rows.size:
        block = (rt0[d_rows] - cycle.start_us) // (DEMAND_WINDOW_S * _US)
        n_blocks = int(block.max()) + 1
        bkey = acct[d_rows] * n_blocks + block
        uniq, inv = np.unique(bkey, return_inverse=True)
        window_s = np.maximum(iv_s[r[d_rows]], DEMAND_WINDOW_S)
        block_w = np.bincount(inv, weights=ed[d_rows] * 3600.0 / window_s, minlength=uniq.size)
        u_acct = uniq // n_blocks
        order_u = np.lexsort((-block_w, u_acct))  # per account, the highest block first (earliest on ties)
        first = np.ones(order_u.size, bool)
        first[1:] = u_acct[order_u][1:] != u_acct[order_u][:-1]
        top = order_u[first]
        peak_w[u_acct[top]] = block_w[top]
        peak_key = np.full(n_a, -1, np.int64)
        peak_key[u_acct[top]] = uniq[top]
        in_peak[d_rows] = bkey == peak_key[acct[d_rows]]
    peak_rows = np.flatnonzero(in_peak)
    peak_trace = _trace(rows_all.take(peak_rows), np.zeros(peak_rows.size, np.int64), 1, n_a, w_acct=w_acct,
                        w_meter_ids=w_meter_ids)  # fmt: skip

    # ---------------------------------------------------------------- lines
    lines = _LineBuilder(n_a)
    every_window = np.arange(w_acct.size, dtype=np.int64)
    a_meters = _trace(
        _Rows(w_acct, every_window, w_lo, w_hi, np.zeros(w_acct.size, np.int64), np.zeros(w_acct.size, bool),
              np.zeros(w_acct.size, bool)),
        np.zeros(w_acct.size, np.int64), 1, n_a, w_acct=w_acct, w_meter_ids=w_meter_ids,
    ).meters  # fmt: skip
    for p, plan in enumerate(plans):
        accts_p = np.flatnonzero(a_plan == p)
        if accts_p.size == 0:
            continue
        tariff = plan.tariff
        fixed = float(tariff.fixed_charge_per_cycle)
        if fixed:
            lines.add(accts_p, 0, "fixed", "fixed", "Customer charge", np.round(share[accts_p], 6), "cycle",
                      np.full(accts_p.size, fixed), cents(fixed * share[accts_p]), trace=None,
                      period=(a_lo[accts_p], a_hi[accts_p]), meters=[a_meters[a] for a in accts_p])  # fmt: skip
        for b_index, bk in enumerate(plan.buckets):
            keys = accts_p * nb + b_index
            has = energy.count[keys] > 0
            ka, kk = accts_p[has], keys[has]
            q = kwh3(energy_wh[kk])
            if isinstance(tariff, TieredTariff):
                _tiers(lines, tariff, ka, q, share[ka], energy, kk)
                continue
            if bk.rate_per_kwh is None:
                amount = cents(energy_var[kk])
                rate = np.divide(amount / 100.0, q, out=np.zeros(q.size), where=q > 0)
            else:
                rate = np.full(q.size, float(bk.rate_per_kwh))
                amount = cents(q * rate)
            lines.add(ka, 10 + b_index, "energy", bk.key, bk.label, q, "kWh", rate, amount, trace=(energy, kk))
        credit = tariff.net_metering_credit_per_kwh
        if credit is not None:
            ka = accts_p[nem_enrolled[accts_p]]
            q = kwh3(nem_wh[ka])
            credit_rate = float(credit)
            lines.add(ka, 80, "net_metering_credit", "net_metering", "Net metering credit, energy received", q,
                      "kWh", np.full(ka.size, credit_rate), -cents(q * credit_rate), trace=(nem_trace, ka))  # fmt: skip
        if has_demand[p]:
            q = np.round(peak_w[accts_p] / 1000.0, 3)
            d_rate = float(demand_rate[p]) * cycle.charge_share  # a short cycle carries its share of the month's
            lines.add(accts_p, 90, "demand", "demand", "Demand charge, highest 15-min kW", q, "kW",
                      np.full(accts_p.size, d_rate), cents(q * d_rate), trace=(peak_trace, accts_p))  # fmt: skip
    if inputs.dr_credits is not None and n_a:
        cr = credit_rows(inputs.dr_credits, accounts["account_id"], start_us=cycle.start_us, end_us=cycle.end_us)
        for event_id in dict.fromkeys(cr.event_id):  # one line per event (few events, many accounts)
            k = np.flatnonzero(np.array(cr.event_id, dtype=object) == event_id)
            q, rate = cr.quantity_kwh[k], cr.rate[k]
            lines.add(cr.account[k], CREDIT_LINE_NO, "dr_credit", f"dr_credit:{event_id}", cr.label[int(k[0])], q,
                      "kWh", rate, -cents(q * rate), trace=None, period=(cr.start_us[k], cr.end_us[k]),
                      meters=[cr.meter_ids[i] for i in k])  # fmt: skip
    line_table, line_acct, line_cents = lines.table(accounts["account_id"], cycle.cycle_id)

    # ---------------------------------------------------------------- bills
    total = np.round(np.bincount(line_acct, weights=line_cents.astype(np.float64), minlength=n_a)).astype(np.int64)
    coverage = np.divide(covered, expected, out=np.zeros(n_a), where=expected > 0)
    held = coverage + 1e-9 < inputs.min_coverage
    reason = np.where(
        used == 0,
        "no interval reads for this account in the cycle",
        np.char.add(
            np.char.add("only ", np.char.mod("%.1f", 100 * coverage)),
            f" % of the expected intervals have reads (at least {100 * inputs.min_coverage:g} % needed)",
        ),
    )
    issued_at = inputs.issued_at or dt.datetime.now(dt.UTC)
    currency = [cis.tariff(t).currency for t in tariff_ids]
    bill_ids = _bill_ids(accounts["account_id"], cycle.cycle_id)
    bills = pa.table(
        {
            "bill_id": bill_ids,
            "cycle": pa.array([cycle.cycle_id] * n_a, pa.string()),
            "account_id": accounts["account_id"],
            "customer_id": accounts["customer_id"],
            "premise_id": accounts["premise_id"],
            "tariff_id": accounts["tariff_id"],
            "currency": pa.array(currency, pa.string()),
            "status": pa.array(np.where(held, "held", "issued"), pa.string()),
            "hold_reason": pc.if_else(pa.array(held), pa.array(reason, pa.string()), pa.scalar(None, pa.string())),
            "period_start_at": pa.array(a_lo, pa.int64()).cast(TIMESTAMP),
            "period_end_at": pa.array(a_hi, pa.int64()).cast(TIMESTAMP),
            "cycle_share": share,
            "energy_delivered_wh": delivered,
            "energy_received_wh": received,
            "peak_demand_w": peak_w,
            "intervals": used.astype(np.int64),
            "intervals_expected": np.round(expected).astype(np.int64),
            "estimated_share": np.divide(est_a, used, out=np.zeros(n_a), where=used > 0),
            "total_cents": total,
            "revision": pa.array(np.ones(n_a, np.int32)),
            "reads_as_of": pc.if_else(pa.array(as_of >= 0), pa.array(as_of, pa.int64()).cast(TIMESTAMP),
                                      pa.scalar(None, TIMESTAMP)),
            "issued_at": pa.array([issued_at] * n_a, TIMESTAMP),
            "run_id": pa.array([inputs.run_id] * n_a, pa.string()),
        },
        schema=BILLS_SCHEMA,
    )  # fmt: skip
    rows = None
    if keep_rows:
        names = np.array([bk.key for p in plans for bk in p.buckets] or ["energy"], dtype=object)
        offsets = np.cumsum([0] + [len(p.buckets) for p in plans])[:-1] if plans else np.zeros(1, np.int64)
        rows = pa.table(
            {
                "account_id": pc.take(accounts["account_id"], pa.array(acct)),
                "meter_id": pc.take(w_meter_ids, pa.array(win)),
                "interval_start": pa.array(rt0, pa.int64()).cast(TIMESTAMP),
                "interval_s": pa.array(iv_s[r].astype(np.int32)),
                "version": pa.array(rver.astype(np.int32)),
                "weight": wt,
                "bucket": pa.array(names[offsets[row_plan] + bucket].astype(str) if r.size else [], pa.string()),
                "energy_delivered_wh": ed,
                "energy_received_wh": er,
                "net_metering": in_nem,
                "peak_block": in_peak,
            },
            schema=ROWS_SCHEMA,
        )
    return Rated(bills=bills, lines=line_table, rows=rows, unbilled_wh=unbilled_wh, reads_used=reads_used)


def _bill_ids(account_ids: pa.ChunkedArray | pa.Array, cycle_id: str, revision: int = 1) -> pa.Array:
    return pc.binary_join_element_wise(account_ids, pa.scalar(cycle_id), pa.scalar(str(revision)), "/")


def _refuse_overlaps(meter: IntArray, t0: IntArray, iv_s: IntArray, *, n_meters: int, base: int, span: int) -> None:
    """Two reads of one meter starting within one (shortest) interval: two versions, or overlapping intervals."""
    if t0.size < 2:
        return
    step = int(iv_s.min()) * _US
    slots = span // step + 1
    key = meter * slots + (t0 - base) // step
    if n_meters * slots <= 64_000_000:
        clash = bool(np.bincount(key, minlength=n_meters * slots).max() > 1)
    else:
        ordered = np.sort(key)
        clash = bool(np.any(ordered[1:] == ordered[:-1]))
    if clash:
        raise BillingInputError("reads hold two rows for one meter and interval: pass only the current versions")


def _index(values: pa.ChunkedArray | pa.Array, among: pa.ChunkedArray | pa.Array) -> IntArray:
    """Position of each value in ``among`` (-1 when absent)."""
    idx = pc.fill_null(pc.index_in(values, value_set=among), -1)
    return np.asarray(idx.to_numpy(zero_copy_only=False), dtype=np.int64)


def _in_any(owner_w: IntArray, lo_w: IntArray, hi_w: IntArray, owner: IntArray, t: IntArray) -> BoolArray:
    """True where ``t`` lies in a window of the same owner (windows of one owner may not overlap)."""
    if owner_w.size == 0:
        return np.zeros(t.shape, bool)
    order = np.lexsort((lo_w, owner_w))
    ow, lo, hi = owner_w[order], lo_w[order], hi_w[order]
    # search by (owner, t) in lexicographic order with a structured comparison via two searchsorted
    start = np.searchsorted(ow, owner, side="left")
    end = np.searchsorted(ow, owner, side="right")
    hit = np.zeros(t.shape, bool)
    width = int((end - start).max()) if end.size else 0
    for k in range(width):  # windows per owner: one or two in practice (enrolments)
        idx = np.minimum(start + k, ow.size - 1)
        valid = start + k < end
        hit |= valid & (t >= lo[idx]) & (t < hi[idx])
    return hit


def _tiers(
    lines: _LineBuilder,
    tariff: TieredTariff,
    accts: IntArray,
    q: FloatArray,
    share: FloatArray,
    trace: _Trace,
    keys: IntArray,
) -> None:
    lower = np.zeros(accts.size)
    for i, block in enumerate(tariff.blocks):
        upper = np.full(accts.size, np.inf) if block.up_to_kwh is None else float(block.up_to_kwh) * share
        qi = np.asarray(np.round(np.clip(q - lower, 0.0, upper - lower), 3), dtype=np.float64)
        keep = (qi > 0) | (i == 0)
        rate = float(block.rate_per_kwh)
        bound = "" if block.up_to_kwh is None else f" up to {block.up_to_kwh:g} kWh/cycle"
        label = f"Energy, block {i + 1}{bound}" if i < len(tariff.blocks) - 1 else f"Energy, block {i + 1} (above)"
        lines.add(accts[keep], 20 + i, "tier", f"tier:{i + 1}", label, qi[keep], "kWh", np.full(int(keep.sum()), rate),
                  cents(qi[keep] * rate), trace=(trace, keys[keep]))  # fmt: skip
        lower = np.asarray(upper, dtype=np.float64) * np.ones(accts.size)


class _LineBuilder:
    def __init__(self, n_accounts: int) -> None:
        self.n = n_accounts
        self.parts: list[dict[str, object]] = []

    def add(
        self, accts: IntArray, line_no: int, kind: str, bucket: str, label: str, quantity: FloatArray, unit: str,
        rate: FloatArray, amount: IntArray, *, trace: tuple[_Trace, IntArray] | None,
        period: tuple[IntArray, IntArray] | None = None, meters: list[str] | None = None,
    ) -> None:  # fmt: skip
        m = accts.size
        if m == 0:
            return
        if trace is not None:
            tr, keys = trace
            count = tr.count[keys]
            part: dict[str, object] = {
                "meter_ids": [tr.meters[k] for k in keys], "interval_from": tr.tmin[keys], "interval_to": tr.tmax[keys],
                "intervals": count, "versions": [tr.versions[k] for k in keys], "max_version": tr.vmax[keys],
                "estimated_intervals": tr.est[keys], "edited_intervals": tr.edited[keys],
                "estimated_share": np.divide(tr.est[keys], count, out=np.zeros(m), where=count > 0),
            }  # fmt: skip
        else:
            lo, hi = period if period is not None else (np.full(m, -1), np.full(m, -1))
            part = {
                "meter_ids": meters or [""] * m, "interval_from": lo, "interval_to": hi,
                "intervals": np.zeros(m, np.int64), "versions": [""] * m, "max_version": np.full(m, -1),
                "estimated_intervals": np.zeros(m, np.int64),
                "edited_intervals": np.zeros(m, np.int64), "estimated_share": np.zeros(m),
            }  # fmt: skip
        part.update(
            acct=accts, line_no=np.full(m, line_no, np.int32), kind=[kind] * m, bucket=[bucket] * m, label=[label] * m,
            quantity=np.asarray(quantity, np.float64), unit=[unit] * m, rate=np.asarray(rate, np.float64),
            amount_cents=np.asarray(amount, np.int64),
        )  # fmt: skip
        self.parts.append(part)

    def table(self, account_ids: pa.ChunkedArray | pa.Array, cycle_id: str) -> tuple[pa.Table, IntArray, IntArray]:
        if not self.parts:
            return LINES_SCHEMA.empty_table(), np.zeros(0, np.int64), np.zeros(0, np.int64)

        def cat(name: str) -> list[object] | npt.NDArray[np.generic]:
            values = [p[name] for p in self.parts]
            if isinstance(values[0], list):
                return [x for v in values for x in v]  # type: ignore[attr-defined]
            return np.concatenate(values)  # type: ignore[arg-type]

        acct = np.asarray(cat("acct"), np.int64)
        line_no = np.asarray(cat("line_no"), np.int32)
        order = np.lexsort((line_no, acct))
        ids = pc.take(account_ids, pa.array(acct))
        columns: dict[str, object] = {
            "bill_id": _bill_ids(ids, cycle_id),
            "account_id": ids,
            "line_no": pa.array(line_no),
        }
        for name in ("kind", "bucket", "label", "quantity", "unit", "rate", "amount_cents", "meter_ids"):
            columns[name] = cat(name)
        for name in ("interval_from", "interval_to"):
            us = np.asarray(cat(name), np.int64)
            columns[name] = pc.if_else(
                pa.array(us >= 0), pa.array(us, pa.int64()).cast(TIMESTAMP), pa.scalar(None, TIMESTAMP)
            )
        for name in (
            "intervals",
            "versions",
            "max_version",
            "estimated_intervals",
            "edited_intervals",
            "estimated_share",
        ):
            columns[name] = cat(name)
        columns["max_version"] = pa.array(np.asarray(columns["max_version"], np.int32))
        table = pa.table(columns, schema=LINES_SCHEMA).take(pa.array(order))
        return table, acct, np.asarray(cat("amount_cents"), np.int64)


def money(cents_value: int) -> Decimal:
    """Whole cents as a decimal amount."""
    return Decimal(int(cents_value)).scaleb(-2)
