"""Baselines from MDMS reads, delivered reduction, DR credits and a CPP bill, checked against hand figures.

Meter A uses 100 Wh every 15 minutes, except in the event of Tuesday 10 Nov 2026, 17:00-19:00
Berlin (16:00-18:00 UTC, 8 intervals), when it uses 40 Wh. Its 10 eligible days before the event
(weekdays, no other event) are 27-30 Oct and 2-6, 9 Nov, all at 100 Wh: the baseline over the event
is 8 x 100 = 800 Wh, the same-day adjustment (13:00-16:00 local) finds 100/100 = 1, so the reduction
is 800 - 8 x 40 = 480 Wh.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from decimal import Decimal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from gridloom.errors import BaselineInputError
from gridloom.systems.billing import DR_CREDITS_SCHEMA, CriticalPeakEvent, TableReads, run_billing
from gridloom.systems.lms.baseline import BaselineMethod, BaselineRule, EventWindow, performance, placebo
from gridloom.systems.lms.settlement import CREDITS_SCHEMA, event_reports, settle
from tests.systems.billing.conftest import ZONE, account_of, make_cis, month_reads

UTC = dt.UTC
A, B = "s000-m00001", "s000-m00002"
HISTORY_START = dt.datetime(2026, 10, 25, 23, tzinfo=UTC)  # 26 Oct 00:00 Berlin, after the DST change
EV_START, EV_END = dt.datetime(2026, 11, 10, 16, tzinfo=UTC), dt.datetime(2026, 11, 10, 18, tzinfo=UTC)
EPOCH = dt.datetime(1970, 1, 1, tzinfo=UTC)
RULE = BaselineRule(timezone=ZONE)


def _us(at: dt.datetime) -> int:
    return (at - EPOCH) // dt.timedelta(microseconds=1)


def in_event(t_us: np.ndarray) -> np.ndarray:
    return (t_us >= _us(EV_START)) & (t_us < _us(EV_END))


def meter_a(t_us: np.ndarray) -> np.ndarray:
    return np.where(in_event(t_us), 40.0, 100.0)


def meter_b(t_us: np.ndarray) -> np.ndarray:
    """10 Wh more each day since 26 Oct (27 Oct: 110 ... 9 Nov: 240); 250 on the event day, 100 in the event."""
    day = (t_us - _us(HISTORY_START)) // (86_400 * 1_000_000)
    return np.where(in_event(t_us), 100.0, 100.0 + 10.0 * day)


def reads() -> pa.Table:
    return pa.concat_tables(
        [
            month_reads([A], delivered_wh=meter_a, start=HISTORY_START),
            month_reads([B], delivered_wh=meter_b, start=HISTORY_START),
        ]
    )


def one(perf: pa.Table, meter: str) -> dict[str, object]:
    return perf.filter(pc.equal(perf["meter_id"], meter)).to_pylist()[0]


EVENT = EventWindow("cpp-1110", EV_START, EV_END, (A, B))


def test_ten_in_ten_with_same_day_adjustment_by_hand():
    perf = performance(reads(), [EVENT], rule=RULE)
    a = one(perf, A)
    assert (a["days_used"], a["adjustment_factor"], a["baseline_wh"], a["actual_wh"]) == (10, 1.0, 800.0, 320.0)
    assert a["reduction_wh"] == pytest.approx(480.0)
    # B: mean of 110..240 over the 10 days = 169 Wh; adjustment 250/169 capped at 1.2 -> 8 x 169 x 1.2
    b = one(perf, B)
    assert b["adjustment_factor"] == pytest.approx(1.2)
    assert b["baseline_wh"] == pytest.approx(8 * 169 * 1.2)
    assert b["reduction_wh"] == pytest.approx(8 * 169 * 1.2 - 800)


def test_high_five_of_ten_by_hand():
    rule = BaselineRule(method=BaselineMethod.HIGH_5_OF_10, adjust=False, timezone=ZONE)
    b = one(performance(reads(), [EVENT], rule=rule), B)
    # the five highest of the 10 days: 9 Nov 240, 6 Nov 210, 5 Nov 200, 4 Nov 190, 3 Nov 180 -> 204
    assert b["baseline_wh"] == pytest.approx(8 * 204.0)
    assert b["adjustment_factor"] == 1.0


def test_other_event_days_and_holidays_are_not_baseline_days():
    rule = BaselineRule(timezone=ZONE, holidays=(dt.date(2026, 11, 9),), excluded_days=(dt.date(2026, 11, 6),))
    b = one(performance(reads(), [EVENT], rule=rule), B)
    # without 9 and 6 Nov the history holds only 9 weekdays: 26-30 Oct and 2-5 Nov
    days = [100, 110, 120, 130, 140, 170, 180, 190, 200]  # only 9 weekdays are left in the history
    assert b["days_used"] == 9
    assert b["baseline_wh"] == pytest.approx(8 * np.mean(days) * 1.2)


def test_a_missing_event_read_leaves_the_meter_unsettled():
    r = reads()
    drop = pc.and_(
        pc.equal(r["meter_id"], A),
        pc.equal(r["interval_start"], pa.scalar(EV_START, r.schema.field("interval_start").type)),
    )
    perf = performance(r.filter(pc.invert(drop)), [EVENT], rule=RULE)
    assert one(perf, A)["complete"] is False
    credits = settle(
        perf, pa.table({"account_id": [account_of(A), account_of(B)], "meter_id": [A, B]}), credit_per_kwh=0.5
    )
    assert credits["account_id"].to_pylist() == [account_of(B)]


CONTROL = [f"s000-m{i:05d}" for i in range(100, 112)]  # 12 non-participating meters
CONTROL_RULE = BaselineRule(method=BaselineMethod.CONTROL_GROUP, timezone=ZONE)
HOT = 1.5  # the event day is hot: every meter draws 50 % more all day


def control_reads(*, hot: bool = False) -> pa.Table:
    """Control meters alternate 80 and 120 Wh (mean 100); A draws twice the group, halved in the event."""
    day = 1.0 + (HOT - 1.0) * hot

    def factor(t_us: np.ndarray) -> np.ndarray:
        return np.where(t_us >= _us(dt.datetime(2026, 11, 9, 23, tzinfo=UTC)), day, 1.0)  # 10 Nov, Berlin

    parts = [
        month_reads([m], delivered_wh=lambda t, w=80.0 + 40.0 * (i % 2): w * factor(t), start=HISTORY_START)
        for i, m in enumerate(CONTROL)
    ]
    parts.append(
        month_reads([A], delivered_wh=lambda t: np.where(in_event(t), 100.0, 200.0) * factor(t), start=HISTORY_START)
    )
    return pa.concat_tables(parts)


def test_control_group_baseline_by_hand():
    event = EventWindow("dlc-1110", EV_START, EV_END, (A,), control_meter_ids=tuple(CONTROL))
    a = one(performance(control_reads(), [event], rule=CONTROL_RULE), A)
    # the group's mean is 100 Wh a slot; A drew 200 from midnight until 16:00: factor 2, baseline 8 x 100 x 2
    assert (a["method"], a["days_used"], a["control_meters"]) == ("control-group", 0, 12)
    assert a["adjustment_factor"] == pytest.approx(2.0)
    assert (a["baseline_wh"], a["actual_wh"]) == (pytest.approx(1600.0), pytest.approx(800.0))
    assert a["reduction_wh"] == pytest.approx(800.0)


def test_on_a_hot_event_day_the_control_group_finds_the_shed_the_capped_ten_in_ten_misses():
    true_reduction = 8 * 100.0 * HOT  # A sheds half of its 200 Wh x 1.5 in each of the 8 slots
    reads_ = control_reads(hot=True)
    ten = one(performance(reads_, [EventWindow("e", EV_START, EV_END, (A,))], rule=RULE), A)
    cg = one(performance(reads_, [EventWindow("e", EV_START, EV_END, (A,), tuple(CONTROL))], rule=CONTROL_RULE), A)
    assert cg["reduction_wh"] == pytest.approx(true_reduction)
    assert ten["reduction_wh"] < 0.7 * true_reduction  # the +20 % cap leaves most of the heat in "actual"


def test_the_matched_control_group_compares_a_pv_home_with_pv_homes():
    """Half the group has PV (nothing drawn 08:00-16:00 Berlin, 200 Wh a slot otherwise), half draws 100 Wh flat.

    Both kinds draw 6,400 Wh before the event, so only the shape tells them apart. A PV home sheds
    half of its 200 Wh in the event: true reduction 8 x 100 = 800 Wh. The whole group's ratio would
    give it a baseline of 6,400 x (1,600 + 800) / 12,800 = 1,200 Wh, a reduction of 400.
    """
    solar, plain = [f"s000-m{i:05d}" for i in range(200, 225)], [f"s000-m{i:05d}" for i in range(300, 325)]

    def pv_home(t_us: np.ndarray) -> np.ndarray:
        hour = (t_us // 3_600_000_000) % 24
        return np.where((hour >= 7) & (hour < 15), 0.0, 200.0)

    reads_ = pa.concat_tables(
        [
            month_reads(solar, delivered_wh=pv_home, start=HISTORY_START),
            month_reads(plain, delivered_wh=100.0, start=HISTORY_START),
            month_reads([A], delivered_wh=lambda t: np.where(in_event(t), 100.0, pv_home(t)), start=HISTORY_START),
        ]
    )
    event = EventWindow("e", EV_START, EV_END, (A,), tuple(solar + plain))
    matched = one(performance(reads_, [event], rule=CONTROL_RULE), A)
    assert matched["control_meters"] == 20
    assert matched["baseline_wh"] == pytest.approx(1600.0)
    assert matched["reduction_wh"] == pytest.approx(800.0)
    whole = BaselineRule(method=BaselineMethod.CONTROL_GROUP, timezone=ZONE, control_neighbours=0)
    assert one(performance(reads_, [event], rule=whole), A)["reduction_wh"] == pytest.approx(400.0)


def test_the_placebo_tells_a_shed_from_noise():
    """60 noisy homes; 10 of them shed 30 % in the event. The placebo (control meters settled as if they had
    taken part) centres near zero with a spread well below the real shed, which lies far outside it."""
    rng = np.random.default_rng(5)
    homes = [f"s000-m{i:05d}" for i in range(400, 460)]
    part, group = homes[:10], homes[10:]

    def home(scale: float, shed: bool) -> Callable[[np.ndarray], np.ndarray]:
        def draw(t: np.ndarray) -> np.ndarray:
            load = scale * (100.0 + 50.0 * np.sin(t / 3.6e9 / 24 * 2 * np.pi)) * rng.lognormal(0, 0.1, t.size)
            return np.where(in_event(t) & shed, 0.7 * load, load)

        return draw

    reads_ = pa.concat_tables(
        [month_reads([m], delivered_wh=home(rng.uniform(0.5, 2.0), m in part), start=HISTORY_START) for m in homes]
    )
    event = EventWindow("e", EV_START, EV_END, tuple(part), tuple(group))
    shed = float(pc.sum(performance(reads_, [event], rule=CONTROL_RULE)["reduction_wh"]).as_py())
    noise = placebo(reads_, event, rule=CONTROL_RULE, draws=30)
    assert noise is not None
    assert noise.draws == 30
    assert abs(noise.mean_wh) < 2 * noise.sigma_wh
    assert shed > noise.mean_wh + 4 * noise.sigma_wh
    assert (
        placebo(reads_, EventWindow("e", EV_START, EV_END, tuple(part), tuple(group[:15])), rule=CONTROL_RULE) is None
    )


def test_control_group_needs_enough_complete_control_meters():
    r = control_reads()
    late = pc.and_(
        pc.is_in(r["meter_id"], pa.array(CONTROL[:5])),
        pc.equal(r["interval_start"], pa.scalar(EV_START, r.schema.field("interval_start").type)),
    )
    event = EventWindow("e", EV_START, EV_END, (A,), tuple(CONTROL))
    a = one(performance(r.filter(pc.invert(late)), [event], rule=CONTROL_RULE), A)
    assert (a["complete"], a["control_meters"]) == (False, 7)  # 5 control meters lack a read: 7 < 10
    assert a["reduction_wh"] is None or np.isnan(a["reduction_wh"])
    five = BaselineRule(method=BaselineMethod.CONTROL_GROUP, timezone=ZONE, min_control_meters=5)
    ok = one(performance(r.filter(pc.invert(late)), [event], rule=five), A)
    assert ok["complete"]
    assert ok["reduction_wh"] == pytest.approx(800.0)


def test_control_group_inputs_are_checked():
    with pytest.raises(BaselineInputError, match="needs a control group"):
        performance(control_reads(), [EventWindow("e", EV_START, EV_END, (A,))], rule=CONTROL_RULE)
    with pytest.raises(BaselineInputError, match="cannot be in its control group"):
        EventWindow("e", EV_START, EV_END, (A,), (A, *CONTROL))


def test_mixed_interval_lengths_are_refused():
    r = pa.concat_tables(
        [month_reads([A], start=HISTORY_START), month_reads([B], interval_s=3600, start=HISTORY_START)]
    )
    with pytest.raises(BaselineInputError, match="interval lengths"):
        performance(r, [EVENT], rule=RULE)


def test_cpp_bill_with_dr_credit_by_hand():
    """CPP account A: 8 event intervals x 0.04 kWh at 1.00 = 0.32; the other 2,872 x 0.1 kWh = 287.2 kWh at
    0.20 = 57.44; a DR credit of 0.48 kWh x 0.50 = -0.24. Total 57.52."""
    perf = performance(reads(), [EVENT], rule=RULE)
    enrolments = pa.table({"account_id": [account_of(A)], "meter_id": [A]})
    credits = settle(perf, enrolments, credit_per_kwh=0.5)
    assert credits.schema.equals(DR_CREDITS_SCHEMA)
    cis = make_cis({A: "CPP"})
    run = run_billing(
        cis,
        TableReads(reads()),
        cycle="2026-11",
        account_ids=[account_of(A)],
        events=[CriticalPeakEvent(EV_START, EV_END, "cpp-1110")],
        dr_credits=credits,
    )
    bill = run.bill(account_of(A))
    assert bill.line("critical_peak").amount == Decimal("0.32")
    assert bill.line("off_peak").amount == Decimal("57.44")
    credit = bill.line("dr_credit:cpp-1110")
    assert (credit.quantity, credit.rate, credit.amount) == (0.48, 0.5, Decimal("-0.24"))
    assert credit.meter_ids == (A,)
    assert bill.total == Decimal("57.52")


def test_credits_of_events_outside_the_cycle_wait_for_their_cycle():
    perf = performance(reads(), [EVENT], rule=RULE)
    credits = settle(perf, pa.table({"account_id": [account_of(A)], "meter_id": [A]}), credit_per_kwh=0.5)
    cis = make_cis({A: "FLAT"})
    early = credits.set_column(
        3, "end_at", pa.array([dt.datetime(2026, 10, 30, tzinfo=UTC)], credits.schema.field("end_at").type)
    )
    bill = run_billing(cis, TableReads(reads()), cycle="2026-11", dr_credits=early).bill(account_of(A))
    assert all(not line.bucket.startswith("dr_credit") for line in bill.lines)


def test_event_report_sums_the_event():
    perf = performance(reads(), [EVENT], rule=RULE)
    (report,) = event_reports(perf, requested_w={"cpp-1110": 1_000.0})
    assert report.meters == report.complete == 2
    assert report.reduction_wh == pytest.approx(480 + 8 * 169 * 1.2 - 800)
    assert report.reduction_w == pytest.approx(report.reduction_wh / 2)
    assert report.delivered_share == pytest.approx(report.reduction_w / 1_000.0)


def test_credit_schemas_agree():
    assert CREDITS_SCHEMA.equals(DR_CREDITS_SCHEMA)
