"""Customer baselines and delivered reduction per event, from MDMS interval reads (the seed's 4.4.2.6).

A baseline is what a customer would have used during an event had there been none. Three common
methods, computed for every participating meter at once (numpy over meters x days x slots arrays):

* **10-in-10** — the average, slot by slot, of the 10 most recent *eligible* days before the event
  (same kind of day — weekday or weekend —, not a holiday, not an event day, every needed interval
  read), within ``lookback_days``;
* **high 5 of 10** — of those 10 days, the 5 with the highest energy in the event window;
* **matched control group** — non-participating meters on the event day itself
  (:attr:`EventWindow.control_meter_ids`, e.g. the same class of customer on the same feeders): for
  each participant the ``control_neighbours`` meters whose load shape on the event day, from local
  midnight until ``adjustment_gap_hours`` before the event, is nearest to its own (hourly shares of
  that morning's energy: it tells a PV roof, a night-storage heater or an evening household apart),
  and its baseline is its own morning energy times their event-window-to-morning ratio. It needs no
  history, so an event is settled on the day it happened, and as the group lives through the same
  weather and the same day, the day-to-day swings that swamp small sheds under 10-in-10 cancel out
  (NAESB's "Baseline Type-II" family; evaluations of residential direct load control use it).
  ``benchmarks/baselines.py`` measures each method's settled total against a known shed.

10-in-10 and high 5 of 10 may be *adjusted on the same day*: the ratio of the event day's actual energy to the
baseline's in the ``adjustment_hours`` ending ``adjustment_gap_hours`` before the event starts,
capped to ``1 ± adjustment_cap``, multiplies the baseline (CAISO/NYISO practice: the hours just
before a notified event are left out, as customers may pre-cool).

Delivered reduction = adjusted baseline - actual, over the event's intervals, per meter. Days are
local calendar days of the utility's time zone; reads are the current versions (VEE's estimates and
edits count, as they do for billing). A meter with fewer than ``min_days`` eligible days, or with a
missing read in the event, gets ``complete = false`` and no reduction (settlement skips it); under
the control-group method, a participant is incomplete when fewer than ``min_control_meters`` control
meters have every read of the event day until the event's end, or when it lacks a read of its own there
(an event within ``adjustment_gap_hours`` of local midnight leaves nothing to match on: incomplete).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from gridloom.errors import BaselineInputError
from gridloom.store.versions import current_versions

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
_US = 1_000_000
_DAY_US = 86_400 * _US
TIMESTAMP = pa.timestamp("us", tz="UTC")

PERFORMANCE_SCHEMA = pa.schema(
    [
        ("event_id", pa.string()),
        ("meter_id", pa.string()),
        ("method", pa.string()),
        ("start_at", TIMESTAMP),
        ("end_at", TIMESTAMP),
        ("days_used", pa.int32()),  # history days averaged (0 under the control-group method)
        ("control_meters", pa.int32()),  # control-group method: control meters the baseline comes from (else 0)
        ("adjustment_factor", pa.float64()),
        ("baseline_wh", pa.float64()),  # adjusted, over the event's intervals
        ("actual_wh", pa.float64()),
        ("reduction_wh", pa.float64()),  # baseline - actual (negative: used more than the baseline)
        ("complete", pa.bool_()),  # enough history and every event interval read
    ]
)


class BaselineMethod(StrEnum):
    TEN_IN_TEN = "10-in-10"
    HIGH_5_OF_10 = "high-5-of-10"
    CONTROL_GROUP = "control-group"


@dataclass(frozen=True)
class EventWindow:
    """One event as settlement sees it: when, and which meters took part."""

    event_id: str
    start_at: dt.datetime
    end_at: dt.datetime
    meter_ids: tuple[str, ...]
    control_meter_ids: tuple[str, ...] = ()  # the comparison group of the control-group baseline

    def __post_init__(self) -> None:
        if set(self.meter_ids) & set(self.control_meter_ids):
            raise BaselineInputError(f"event {self.event_id}: a participating meter cannot be in its control group")
        for name in ("start_at", "end_at"):
            value = getattr(self, name)
            if value.tzinfo is None or value.utcoffset() is None:
                raise BaselineInputError(f"event {self.event_id}: {name} must be timezone-aware (UTC)")
        if self.end_at <= self.start_at:
            raise BaselineInputError(f"event {self.event_id}: end_at must be after start_at")


@dataclass(frozen=True)
class BaselineRule:
    """How baselines are computed; the defaults are the common 10-in-10 with a capped same-day adjustment."""

    method: BaselineMethod = BaselineMethod.TEN_IN_TEN
    days: int = 10  # eligible days averaged (10-in-10) or chosen from (high 5 of 10)
    high_days: int = 5  # high-5-of-10: how many of the highest days are averaged
    min_days: int = 5  # fewer eligible days: no baseline (complete = false)
    lookback_days: int = 45
    adjust: bool = True
    adjustment_hours: float = 3.0
    adjustment_gap_hours: float = 1.0
    adjustment_cap: float = 0.2
    holidays: tuple[dt.date, ...] = ()
    timezone: str = "UTC"
    excluded_days: tuple[dt.date, ...] = field(default=())  # other event days (local dates)
    min_control_meters: int = 10  # control group: fewer complete control meters, no baseline
    control_neighbours: int = 20  # control group: the nearest meters by the morning's shape (0: the whole group)

    def __post_init__(self) -> None:
        object.__setattr__(self, "method", BaselineMethod(self.method))
        if not 1 <= self.min_days <= self.days:
            raise BaselineInputError(f"BaselineRule.min_days must lie in 1..days ({self.days}), got {self.min_days}")
        if not 1 <= self.high_days <= self.days:
            raise BaselineInputError(f"BaselineRule.high_days must lie in 1..days, got {self.high_days}")
        if self.lookback_days < self.days:
            raise BaselineInputError("BaselineRule.lookback_days must be at least days")
        if self.control_neighbours < 0:
            raise BaselineInputError(
                f"BaselineRule.control_neighbours must be 0 or more, got {self.control_neighbours}"
            )
        if self.min_control_meters < 1:
            raise BaselineInputError(
                f"BaselineRule.min_control_meters must be at least 1, got {self.min_control_meters}"
            )
        if not 0 <= self.adjustment_cap <= 1:
            raise BaselineInputError(f"BaselineRule.adjustment_cap must lie in [0, 1], got {self.adjustment_cap}")
        try:
            ZoneInfo(self.timezone)
        except (KeyError, ValueError) as exc:
            raise BaselineInputError(f"BaselineRule.timezone: unknown time zone {self.timezone!r}") from exc


def _interval_s(reads: pa.Table) -> int:
    if "interval_s" not in reads.column_names or reads.num_rows == 0:
        return 900
    lengths = pc.unique(reads["interval_s"]).to_pylist()
    if len(lengths) != 1 or not lengths[0] or 86_400 % int(lengths[0]):
        raise BaselineInputError(
            f"reads hold interval lengths {sorted(x for x in lengths if x is not None)} s: baselines need one "
            "length that divides a day (resample the reads first)"
        )
    return int(lengths[0])


def performance(
    reads: pa.Table, events: Sequence[EventWindow], *, rule: BaselineRule | None = None, chunk_meters: int = 20_000
) -> pa.Table:
    """Baseline, actual and delivered reduction of each participating meter in each event (PERFORMANCE_SCHEMA).

    ``reads`` has the store's READS_SCHEMA columns (``meter_id``, ``interval_start``, ``interval_s``,
    ``energy_delivered_wh``, and ``version`` when it holds several versions).
    """
    rule = rule or BaselineRule()
    for name in ("meter_id", "interval_start", "energy_delivered_wh"):
        if name not in reads.column_names:
            raise BaselineInputError(f"reads lack the column {name!r} (READS_SCHEMA)")
    if "version" in reads.column_names and reads.num_rows:
        reads = current_versions(reads)
    interval_s = _interval_s(reads)
    zone = ZoneInfo(rule.timezone)
    zoned = reads["interval_start"].cast(pa.timestamp("us", tz=rule.timezone))
    local = pc.local_timestamp(zoned) if reads.num_rows else pa.array([], pa.timestamp("us"))
    local_us = np.asarray(pc.cast(local, pa.int64()).to_numpy(zero_copy_only=False), np.int64)
    day_all = local_us // _DAY_US
    slot_all = (local_us % _DAY_US) // (interval_s * _US)
    energy_all = np.asarray(pc.fill_null(reads["energy_delivered_wh"], np.nan).to_numpy(zero_copy_only=False), float)
    if rule.method is BaselineMethod.CONTROL_GROUP:
        lacking = [e.event_id for e in events if not e.control_meter_ids]
        if lacking:
            raise BaselineInputError(
                f"the control-group baseline needs a control group: event(s) {', '.join(lacking)} have no "
                "control_meter_ids (non-participating meters of the same kind of customer)"
            )
    event_days = {e.start_at.astimezone(zone).date() for e in events} | set(rule.excluded_days)
    parts = [
        _one_event(
            e, rule, zone, interval_s, reads["meter_id"], day_all, slot_all, energy_all, event_days, chunk_meters
        )
        for e in events
    ]
    return pa.concat_tables(parts) if parts else PERFORMANCE_SCHEMA.empty_table()


def _epoch_day(d: dt.date) -> int:
    return (d - dt.date(1970, 1, 1)).days


def _one_event(
    event: EventWindow,
    rule: BaselineRule,
    zone: ZoneInfo,
    interval_s: int,
    meter_col: pa.ChunkedArray,
    day_all: npt.NDArray[np.int64],
    slot_all: npt.NDArray[np.int64],
    energy_all: FloatArray,
    event_days: set[dt.date],
    chunk_meters: int,
) -> pa.Table:
    start_local, end_local = event.start_at.astimezone(zone), event.end_at.astimezone(zone)
    day0 = start_local.date()
    midnight = dt.datetime.combine(day0, dt.time(), zone)
    slot_s = float(interval_s)
    ev_lo = int((start_local - midnight).total_seconds() // slot_s)
    ev_hi = int(-(-(end_local - midnight).total_seconds() // slot_s))
    if ev_hi > 86_400 // interval_s:
        raise BaselineInputError(f"event {event.event_id} crosses local midnight; split it into one event per day")
    gap = round(rule.adjustment_gap_hours * 3600 / slot_s)
    adj_n = round(rule.adjustment_hours * 3600 / slot_s) if rule.adjust else 0
    adj_hi = max(ev_lo - gap, 0)
    adj_lo = max(adj_hi - adj_n, 0)
    if rule.method is BaselineMethod.CONTROL_GROUP:
        adj_lo = 0  # the group is matched to a participant over the whole day before the event (less noise)
    lo = min(adj_lo, ev_lo)
    width = ev_hi - lo
    lookback = rule.lookback_days
    days = [day0 - dt.timedelta(days=k) for k in range(lookback, -1, -1)]  # oldest first, the event day last
    weekend = day0.weekday() >= 5
    candidate = np.array(
        [d != day0 and (d.weekday() >= 5) == weekend and d not in rule.holidays and d not in event_days for d in days]
    )
    first_day = _epoch_day(days[0])
    d_idx, s_idx = day_all - first_day, slot_all - lo
    in_span = (d_idx >= 0) & (d_idx <= lookback) & (s_idx >= 0) & (s_idx < width)

    def grid_of(meters: pa.Array, *, days_back: int) -> FloatArray:
        """Energy per (meter, day, slot) over the last ``days_back`` + 1 days, NaN where no read."""
        m_idx = np.asarray(pc.fill_null(pc.index_in(meter_col, value_set=meters), -1).to_numpy(), np.int64)
        keep = in_span & (m_idx >= 0) & (d_idx >= lookback - days_back)
        grid = np.full((len(meters), days_back + 1, width), np.nan)
        grid[m_idx[keep], d_idx[keep] - (lookback - days_back), s_idx[keep]] = energy_all[keep]
        return grid

    control: FloatArray | None = None
    if rule.method is BaselineMethod.CONTROL_GROUP:
        group = pa.array(list(dict.fromkeys(event.control_meter_ids)), pa.string())
        control = grid_of(group, days_back=0)[:, 0, :]
        control = control[~np.isnan(control).any(axis=1)]  # only meters with every read of the window
    meters = pa.array(list(dict.fromkeys(event.meter_ids)), pa.string())
    out = []
    for c0 in range(0, len(meters), chunk_meters):
        chunk = meters[c0 : c0 + chunk_meters]
        if control is not None:
            today = grid_of(chunk, days_back=0)[:, 0, :]
            per_hour = max(3600 // interval_s, 1)
            out.append(
                _control_baseline(event, rule, chunk, today, control, per_hour, ev_lo - lo, adj_lo - lo, adj_hi - lo)
            )
        else:
            grid = grid_of(chunk, days_back=lookback)
            out.append(_baseline(event, rule, chunk, grid, candidate, ev_lo - lo, adj_lo - lo, adj_hi - lo))
    return pa.concat_tables(out) if out else PERFORMANCE_SCHEMA.empty_table()


def _control_baseline(
    event: EventWindow,
    rule: BaselineRule,
    meters: pa.Array,
    today: FloatArray,
    control: FloatArray,
    slots_per_hour: int,
    ev0: int,
    adj0: int,
    adj1: int,
) -> pa.Table:
    """Each participant's baseline from its nearest control meters by the morning's shape, scaled to it."""
    n = len(meters)
    mine_adj = today[:, adj0:adj1].sum(axis=1)
    group_adj = control[:, adj0:adj1].sum(axis=1)
    control = control[group_adj > 0]  # a meter that drew nothing all morning has no shape to match
    group_adj, group_ev = group_adj[group_adj > 0], control[:, ev0:].sum(axis=1)
    k = min(rule.control_neighbours or len(control), len(control))
    ok = (len(control) >= rule.min_control_meters) & np.isfinite(mine_adj) & (mine_adj > 0)
    if k == 0:  # nothing drawn before the event by any control meter (e.g. an event at local midnight)
        nothing, actual_wh = np.full(n, np.nan), today[:, ev0:].sum(axis=1)
        unsettled = np.zeros(n, np.bool_)
        return _table(event, rule, meters, (np.zeros(n, np.int32),) * 2, nothing, nothing, actual_wh, unsettled)
    if k == len(control):  # the whole group for everyone
        ratio, morning = np.full(n, group_ev.sum() / group_adj.sum()), np.full(n, group_adj.mean())
    else:
        neighbours = _nearest(_shape(today, adj0, adj1, slots_per_hour), _shape(control, adj0, adj1, slots_per_hour), k)
        ratio = group_ev[neighbours].sum(axis=1) / np.maximum(group_adj[neighbours].sum(axis=1), 1e-12)
        morning = group_adj[neighbours].mean(axis=1)
    baseline_wh = np.where(ok, mine_adj * ratio, np.nan)
    factor = np.where(ok, mine_adj / np.maximum(morning, 1e-12), np.nan)
    actual_wh = today[:, ev0:].sum(axis=1)
    complete = ok & np.isfinite(actual_wh)
    used = np.zeros(n, np.int32), np.full(n, k, np.int32)
    return _table(event, rule, meters, used, factor, baseline_wh, actual_wh, complete)


def _shape(energy: FloatArray, lo: int, hi: int, slots_per_hour: int) -> FloatArray:
    """Hourly energy over [lo, hi) as shares of its total (NaN-free: incomplete meters get a flat zero shape)."""
    hours = max((hi - lo) // slots_per_hour, 1)
    block = energy[:, lo : lo + hours * slots_per_hour]
    hourly = block.reshape(len(energy), hours, -1).sum(axis=2)
    total = hourly.sum(axis=1, keepdims=True)
    usable = np.isfinite(total) & (total > 0)
    shares: FloatArray = np.divide(hourly, total, out=np.zeros_like(hourly), where=usable)
    return np.nan_to_num(shares)


def _nearest(shapes: FloatArray, group: FloatArray, k: int) -> npt.NDArray[np.intp]:
    """Indices of the ``k`` control shapes nearest (Euclidean) to each participant's, in participant chunks."""
    out = np.empty((len(shapes), k), np.intp)
    group_sq = (group**2).sum(axis=1)
    rows = max(1, 20_000_000 // max(len(group), 1))  # ~160 MB of distances at a time
    for r0 in range(0, len(shapes), rows):
        part = shapes[r0 : r0 + rows]
        distance = (part**2).sum(axis=1)[:, None] + group_sq[None, :] - 2.0 * part @ group.T
        out[r0 : r0 + rows] = np.argpartition(distance, k - 1, axis=1)[:, :k]
    return out


def _table(
    event: EventWindow,
    rule: BaselineRule,
    meters: pa.Array,
    used: tuple[npt.NDArray[np.int32], npt.NDArray[np.int32]],
    factor: FloatArray,
    baseline_wh: FloatArray,
    actual_wh: FloatArray,
    complete: BoolArray,
) -> pa.Table:
    n = len(meters)
    return pa.table(
        {
            "event_id": pa.array([event.event_id] * n, pa.string()),
            "meter_id": meters,
            "method": pa.array([rule.method.value] * n, pa.string()),
            "start_at": pa.array([event.start_at] * n, TIMESTAMP),
            "end_at": pa.array([event.end_at] * n, TIMESTAMP),
            "days_used": pa.array(used[0]),
            "control_meters": pa.array(used[1]),
            "adjustment_factor": factor,
            "baseline_wh": baseline_wh,
            "actual_wh": actual_wh,
            "reduction_wh": np.where(complete, baseline_wh - actual_wh, np.nan),
            "complete": pa.array(complete),
        },
        schema=PERFORMANCE_SCHEMA,
    )


def _baseline(
    event: EventWindow,
    rule: BaselineRule,
    meters: pa.Array,
    grid: FloatArray,
    candidate: BoolArray,
    ev0: int,
    adj0: int,
    adj1: int,
) -> pa.Table:
    history, today = grid[:, :-1, :], grid[:, -1, :]
    complete_day = ~np.isnan(history).any(axis=2)
    eligible = candidate[None, :-1] & complete_day
    recent_rank = np.cumsum(eligible[:, ::-1], axis=1)[:, ::-1]  # 1 = the most recent eligible day
    chosen = eligible & (recent_rank <= rule.days)
    days_used = chosen.sum(axis=1)
    filled = np.where(chosen[:, :, None], history, 0.0)
    if rule.method is BaselineMethod.HIGH_5_OF_10:
        window_wh = np.where(chosen, filled[:, :, ev0:].sum(axis=2), -np.inf)
        order = np.argsort(-window_wh, axis=1, kind="stable")
        top = np.zeros_like(chosen)
        take = min(rule.high_days, chosen.shape[1])
        np.put_along_axis(top, order[:, :take], True, axis=1)
        chosen = top & chosen
        filled = np.where(chosen[:, :, None], history, 0.0)
    count = chosen.sum(axis=1).astype(np.float64)
    base = filled.sum(axis=1) / np.maximum(count, 1.0)[:, None]  # (meters, slots)
    factor = np.ones(len(meters))
    if rule.adjust and adj1 > adj0:
        actual_adj = today[:, adj0:adj1].sum(axis=1)
        base_adj = base[:, adj0:adj1].sum(axis=1)
        ok = np.isfinite(actual_adj) & (base_adj > 0)
        raw = np.divide(actual_adj, base_adj, out=np.ones(len(meters)), where=ok)
        factor = np.clip(raw, 1.0 - rule.adjustment_cap, 1.0 + rule.adjustment_cap)
    baseline_wh = base[:, ev0:].sum(axis=1) * factor
    actual_wh = today[:, ev0:].sum(axis=1)
    complete = (days_used >= rule.min_days) & np.isfinite(actual_wh)
    baseline_wh = np.where(days_used >= rule.min_days, baseline_wh, np.nan)
    used = days_used.astype(np.int32), np.zeros(len(meters), np.int32)
    return _table(event, rule, meters, used, factor, baseline_wh, actual_wh, complete)


def event_days(events: Iterable[EventWindow], timezone: str) -> tuple[dt.date, ...]:
    """The local dates of events (to exclude them from later baselines)."""
    zone = ZoneInfo(timezone)
    return tuple(sorted({e.start_at.astimezone(zone).date() for e in events}))


@dataclass(frozen=True)
class Placebo:
    """What the method settles for groups that had no event: its bias (mean) and noise (1 sigma), in Wh."""

    mean_wh: float
    sigma_wh: float
    draws: int


def placebo(
    reads: pa.Table, event: EventWindow, *, rule: BaselineRule | None = None, draws: int = 20, seed: int = 0
) -> Placebo | None:
    """Settle ``draws`` groups of control meters as if they had taken part in ``event`` (they did nothing).

    Each group has as many meters as the event has participants (at most half the control group),
    the rest of the control group is its control group; each group's settled total is scaled to the
    participants' count. A real reduction well outside ``mean ± 2 sigma`` is a shed, one inside it is
    noise. None without at least ``2 x min_control_meters`` control meters.
    """
    rule = rule or BaselineRule()
    group = np.array(list(dict.fromkeys(event.control_meter_ids)))
    size = min(len(event.meter_ids), len(group) // 2)
    if size == 0 or len(group) < 2 * rule.min_control_meters or draws < 2:
        return None
    rng = np.random.default_rng(seed)
    totals = []
    for _ in range(draws):
        pick = rng.permutation(len(group))
        fake = EventWindow(event.event_id, event.start_at, event.end_at, tuple(group[pick[:size]]),
                           tuple(group[pick[size:]]))  # fmt: skip
        perf = performance(reads, [fake], rule=rule)
        done = perf.filter(perf["complete"])
        if done.num_rows:
            totals.append(float(pc.sum(done["reduction_wh"]).as_py()) * len(event.meter_ids) / done.num_rows)
    if len(totals) < 2:
        return None
    return Placebo(float(np.mean(totals)), float(np.std(totals, ddof=1)), len(totals))
