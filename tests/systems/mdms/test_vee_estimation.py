"""Estimation: which method fills which gap, with what values, and the invariants of interpolation and proration."""

from __future__ import annotations

import datetime as dt
import math

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gridloom.devices.meters import QualityFlag
from gridloom.errors import VeeInputError
from gridloom.systems.mdms import (
    Expected,
    VeeConfig,
    VeeFlag,
    estimate,
    estimate_detailed,
    history_windows,
    validate,
)

from .helpers import DAY, Q, at, column, concat, day_of, events, reads, registers

ONE_DAY = Expected(["m1"], DAY, DAY + dt.timedelta(days=1), 900)
WEEK = dt.timedelta(days=7)


def by_slot(table: pa.Table, meter: str = "m1") -> dict[int, dict]:
    """Estimated rows of ``meter`` keyed by interval number from DAY."""
    return {int((r["interval_start"] - DAY) / Q): r for r in table.to_pylist() if r["meter_id"] == meter}


# ---------------------------------------------------------------------------------------- interpolation
def test_a_short_gap_is_interpolated_between_its_neighbours():
    values = [75.0] * 96
    values[5] = 100.0
    values[6] = 104.0
    batch = day_of("m1", values, drop={1, 2, 3, 4})
    rows = by_slot(estimate(validate(batch), expected=ONE_DAY))
    assert sorted(rows) == [1, 2, 3, 4]
    assert [rows[i]["energy_delivered_wh"] for i in (1, 2, 3, 4)] == pytest.approx([80.0, 85.0, 90.0, 95.0])
    row = rows[2]
    assert row["rule"] == "interpolation"
    assert row["source"] == "estimated"
    assert row["version"] is None  # the store assigns it
    assert row["quality"] == int(VeeFlag.GAP | VeeFlag.ESTIMATED | QualityFlag.ESTIMATED)


def test_a_spike_is_replaced_by_an_estimate_that_keeps_why():
    values = [100.0] * 96
    values[30] = 30_000.0
    checked = validate(day_of("m1", values), capacity_w=48_000.0)
    rows = by_slot(estimate(checked, expected=ONE_DAY))
    assert list(rows) == [30]
    assert rows[30]["energy_delivered_wh"] == pytest.approx(100.0)
    assert rows[30]["quality"] & VeeFlag.SPIKE
    assert rows[30]["quality"] & VeeFlag.ESTIMATED
    assert not rows[30]["quality"] & VeeFlag.GAP


def test_a_gap_at_the_start_interpolates_from_the_previous_day_in_history():
    history = day_of("m1", 40.0, start=DAY - dt.timedelta(days=1))
    batch = day_of("m1", 80.0, drop={0, 1, 2})
    rows = by_slot(estimate(validate(batch), expected=ONE_DAY, history=history))
    assert [rows[i]["energy_delivered_wh"] for i in (0, 1, 2)] == pytest.approx([50.0, 60.0, 70.0])
    assert {rows[i]["rule"] for i in (0, 1, 2)} == {"interpolation"}


def test_a_short_gap_at_the_end_holds_its_one_neighbour():
    rows = by_slot(estimate(validate(day_of("m1", 60.0, drop={94, 95})), expected=ONE_DAY))
    assert [rows[i]["energy_delivered_wh"] for i in (94, 95)] == [60.0, 60.0]
    assert {rows[i]["rule"] for i in (94, 95)} == {"neighbour_hold"}


# ---------------------------------------------------------------------------------------- outages
def test_intervals_inside_a_known_outage_are_zero_not_interpolated():
    batch = day_of("m1", 100.0, drop=set(range(40, 44)))
    outage = pa.table({"meter_id": ["m1"], "start": [at(40) - dt.timedelta(minutes=3)], "end": [at(43)]})
    rows = by_slot(estimate(validate(batch), expected=ONE_DAY, outages=outage))
    # 40-42 lie wholly inside the outage; 43 had supply back from its start
    assert [(rows[i]["rule"], rows[i]["energy_delivered_wh"]) for i in (40, 41, 42)] == [("outage_zero", 0.0)] * 3
    assert rows[43]["rule"] == "interpolation"


def test_outage_zeros_stay_zero_when_the_rest_is_prorated():
    batch = day_of("m1", 100.0, drop={10, 40, 41, 42, 43})
    ev = events([("m1", at(40), "LAST_GASP"), ("m1", at(44), "POWER_RESTORE")])
    regs = registers([("m1", DAY, 0.0), ("m1", DAY + dt.timedelta(days=1), 9_100.0 + 250.0)])
    rows = by_slot(estimate(validate(batch), expected=ONE_DAY, registers=regs, events=ev))
    assert [rows[i]["energy_delivered_wh"] for i in (40, 41, 42, 43)] == [0.0] * 4
    assert rows[10]["energy_delivered_wh"] == pytest.approx(250.0)
    assert rows[10]["rule"] == "interpolation+prorated"


# ---------------------------------------------------------------------------------------- like day
def test_a_long_gap_takes_the_average_of_the_same_weekday_of_previous_weeks():
    history = concat(
        day_of("m1", 100.0, start=DAY - WEEK),
        day_of("m1", 200.0, start=DAY - 2 * WEEK, drop=set(range(20, 40))),  # partly missing that week
        day_of("m1", 900.0, start=DAY - dt.timedelta(days=1)),  # yesterday: not a like day
        day_of("m1", 300.0, start=DAY - 3 * WEEK),
    )
    gap = set(range(20, 40))  # 5 h, beyond interpolation
    rows = by_slot(estimate(validate(day_of("m1", 50.0, drop=gap)), expected=ONE_DAY, history=history))
    assert sorted(rows) == sorted(gap)
    assert rows[25]["rule"] == "like_day"
    assert rows[25]["energy_delivered_wh"] == pytest.approx((100.0 + 300.0) / 2)


def test_like_day_needs_the_configured_number_of_weeks():
    history = day_of("m1", 100.0, start=DAY - WEEK)
    gap = set(range(20, 40))
    result = estimate_detailed(
        validate(day_of("m1", 50.0, drop=gap)),
        expected=ONE_DAY,
        history=history,
        config=VeeConfig(like_day_min_weeks=2),
    )
    assert result.rows.num_rows == 0
    assert result.unestimated.num_rows == 20
    assert result.counts["unestimated"] == 20


def test_history_inside_the_grid_is_ignored_the_batch_decides():
    batch = day_of("m1", 50.0, drop={10})
    history = day_of("m1", 999.0)  # the same day, stored with other values
    rows = by_slot(estimate(validate(batch), expected=ONE_DAY, history=history))
    assert rows[10]["energy_delivered_wh"] == pytest.approx(50.0)


def test_history_windows_name_the_like_days_and_the_edges():
    windows = history_windows(ONE_DAY, VeeConfig(like_day_weeks=2, max_interpolation_intervals=4))
    assert windows == [
        (DAY - 2 * WEEK, DAY + dt.timedelta(days=1) - 2 * WEEK),
        (DAY - WEEK, DAY + dt.timedelta(days=1) - WEEK),
        (DAY - dt.timedelta(hours=1), DAY),
        (DAY + dt.timedelta(days=1), DAY + dt.timedelta(days=1, hours=1)),
    ]


# ---------------------------------------------------------------------------------------- registers
def test_estimates_are_prorated_to_the_register_difference():
    batch = day_of("m1", 100.0, drop={10, 11, 12})
    regs = registers([("m1", DAY, 5_000.0), ("m1", DAY + dt.timedelta(days=1, seconds=3), 5_000.0 + 9_600.0 + 60.0)])
    est = estimate(validate(batch, registers=regs), expected=ONE_DAY, registers=regs)
    rows = by_slot(est)
    # Actual 93 x 100 = 9,300 Wh; the register says 9,660: the three estimates share 360 Wh in the interpolated shape.
    assert sum(r["energy_delivered_wh"] for r in rows.values()) == pytest.approx(360.0)
    assert {r["rule"] for r in rows.values()} == {"interpolation+prorated"}


def test_a_long_gap_without_history_takes_an_even_share_of_the_register_difference():
    gap = set(range(40, 60))
    batch = day_of("m1", 100.0, drop=gap)
    regs = registers([("m1", DAY, 0.0), ("m1", DAY + dt.timedelta(days=1), 7_600.0 + 3_000.0)])
    rows = by_slot(estimate(validate(batch), expected=ONE_DAY, registers=regs))
    assert sorted(rows) == sorted(gap)
    assert {r["rule"] for r in rows.values()} == {"register_share"}
    assert [r["energy_delivered_wh"] for r in rows.values()] == pytest.approx([150.0] * 20)


def test_when_the_reads_already_exceed_the_register_the_estimates_are_zero_and_flagged():
    batch = day_of("m1", 100.0, drop={10})
    regs = registers([("m1", DAY, 0.0), ("m1", DAY + dt.timedelta(days=1), 9_000.0)])
    rows = by_slot(estimate(validate(batch), expected=ONE_DAY, registers=regs))
    assert rows[10]["energy_delivered_wh"] == 0.0
    assert rows[10]["quality"] & VeeFlag.REGISTER_MISMATCH


def test_an_incomplete_register_span_leaves_the_estimates_alone():
    batch = day_of("m1", 100.0, drop={10})
    regs = registers([("m1", DAY - dt.timedelta(days=1), 0.0), ("m1", DAY + dt.timedelta(days=1), 50_000.0)])
    rows = by_slot(estimate(validate(batch), expected=ONE_DAY, registers=regs))  # yesterday's reads unknown
    assert rows[10]["energy_delivered_wh"] == pytest.approx(100.0)
    assert rows[10]["rule"] == "interpolation"


def test_received_energy_is_prorated_to_the_received_register():
    received = [10.0] * 96
    batch = reads("pv", [0.0] * 96, received=received)
    batch = batch.filter(
        pa.compute.not_equal(batch.column("interval_start"), pa.scalar(at(50), batch.schema.field(1).type))
    )
    regs = registers(
        [("pv", DAY, 0.0), ("pv", DAY + dt.timedelta(days=1), 0.0)], received=[1_000.0, 1_000.0 + 950.0 + 25.0]
    )
    rows = by_slot(
        estimate(validate(batch), expected=(["pv"], DAY, DAY + dt.timedelta(days=1), 900), registers=regs), "pv"
    )
    assert rows[50]["energy_received_wh"] == pytest.approx(25.0)
    assert rows[50]["energy_delivered_wh"] == 0.0


# ---------------------------------------------------------------------------------------- other cases
def test_unusable_reads_are_never_neighbours():
    values = [100.0] * 96
    values[9] = 50_000.0  # a spike next to the gap
    batch = day_of("m1", values, drop={10})
    rows = by_slot(estimate(validate(batch, capacity_w=48_000.0), expected=ONE_DAY))
    assert sorted(rows) == [9, 10]
    assert rows[10]["energy_delivered_wh"] == pytest.approx(100.0)


def test_duplicates_and_meters_outside_the_grid_are_left_alone():
    batch = concat(day_of("m1"), reads("m1", [5.0], slots=[3]), day_of("other", drop={7}))
    assert estimate(validate(batch), expected=ONE_DAY).num_rows == 0


def test_a_silent_meter_is_estimated_from_history_alone():
    history = day_of("m9", 123.0, start=DAY - WEEK)
    grid = Expected(["m1", "m9"], DAY, DAY + dt.timedelta(days=1), 900)
    est = estimate(validate(day_of("m1")), expected=grid, history=history)
    assert column(est, "meter_id") == ["m9"] * 96
    assert set(column(est, "energy_delivered_wh")) == {123.0}


def test_reads_of_another_interval_length_are_refused():
    batch = reads("m1", [1.0] * 4, interval_s=3600)
    with pytest.raises(VeeInputError, match="interval_s"):
        estimate(validate(batch), expected=ONE_DAY)


def test_estimated_rows_fit_the_reads_schema_and_sort_by_meter_and_time():
    grid = Expected(["b", "a"], DAY, DAY + dt.timedelta(days=1), 900)
    est = estimate(validate(concat(day_of("b", drop={5, 2}), day_of("a", drop={9}))), expected=grid)
    assert [
        (m, int((s - DAY) / Q)) for m, s in zip(column(est, "meter_id"), column(est, "interval_start"), strict=True)
    ] == [
        ("a", 9),
        ("b", 2),
        ("b", 5),
    ]


# ---------------------------------------------------------------------------------------- properties
energies = st.floats(min_value=0.0, max_value=20_000.0, allow_nan=False, allow_infinity=False)


@settings(max_examples=200, deadline=None)
@given(
    values=st.lists(energies, min_size=4, max_size=96),
    data=st.data(),
)
def test_interpolated_values_lie_between_their_neighbours_and_are_never_negative(values, data):
    n = len(values)
    max_gap = 8
    start = data.draw(st.integers(min_value=1, max_value=n - 2))
    length = data.draw(st.integers(min_value=1, max_value=min(max_gap, n - 1 - start)))
    gap = set(range(start, start + length))
    keep = [i for i in range(n) if i not in gap]
    batch = reads("m1", [values[i] for i in keep], slots=keep)
    grid = Expected(["m1"], DAY, DAY + n * Q, 900)
    est = estimate(validate(batch), expected=grid, config=VeeConfig(max_interpolation_intervals=max_gap))
    lo, hi = sorted((values[start - 1], values[start + length]))
    got = column(est, "energy_delivered_wh")
    assert len(got) == length
    assert set(column(est, "rule")) == {"interpolation"}
    for v in got:
        assert v >= 0.0
        assert lo - 1e-9 <= v <= hi + 1e-9


@settings(max_examples=200, deadline=None)
@given(
    values=st.lists(energies, min_size=2, max_size=96),
    extra=st.floats(min_value=0.0, max_value=1e6, allow_nan=False),
    reading=st.floats(min_value=0.0, max_value=1e9, allow_nan=False),
    data=st.data(),
)
def test_estimates_plus_actual_intervals_sum_to_the_register_difference(values, extra, reading, data):
    n = len(values)
    missing = data.draw(st.sets(st.integers(min_value=0, max_value=n - 1), min_size=1, max_size=n))
    keep = [i for i in range(n) if i not in missing]
    actual = sum(values[i] for i in keep)
    end = DAY + n * Q
    regs = registers([("m1", DAY, reading), ("m1", end, reading + actual + extra)])
    batch = reads("m1", [values[i] for i in keep], slots=keep)
    grid = Expected(["m1"], DAY, end, 900)
    est = estimate(validate(batch), expected=grid, registers=regs)
    got = column(est, "energy_delivered_wh")
    assert len(got) == len(missing)
    assert all(v >= 0.0 and math.isfinite(v) for v in got)
    delta = (reading + actual + extra) - reading
    assert abs(actual + sum(got) - delta) <= 1e-6


@settings(max_examples=50, deadline=None)
@given(seed=st.integers(min_value=0, max_value=2**32 - 1))
def test_results_do_not_depend_on_the_order_reads_arrive_in(seed):
    import numpy as np

    rng = np.random.default_rng(seed)
    parts = []
    for m in ("a", "b", "c"):
        values = rng.gamma(2.0, 50.0, 96)
        values[rng.integers(0, 96)] = 60_000.0  # a spike each
        drop = set(rng.choice(96, size=rng.integers(0, 30), replace=False).tolist())
        parts.append(day_of(m, values, drop=drop))
    batch = concat(*parts)
    shuffled = batch.take(pa.array(rng.permutation(batch.num_rows)))
    grid = Expected(["a", "b", "c"], DAY, DAY + dt.timedelta(days=1), 900)
    history = concat(*(day_of(m, 80.0, start=DAY - WEEK) for m in ("a", "b", "c")))

    def run(table):
        checked = validate(table, expected=grid, capacity_w=48_000.0)
        flags = dict(
            zip(
                zip(column(checked.reads, "meter_id"), column(checked.reads, "interval_start"), strict=True),
                column(checked.reads, "quality"),
                strict=True,
            )
        )
        est = estimate(checked, expected=grid, history=history)
        return flags, est.to_pylist()

    assert run(batch) == run(shuffled)
    assert run(batch)[1] == estimate(validate(batch, capacity_w=48_000.0), expected=grid, history=history).to_pylist()


@settings(max_examples=100, deadline=None)
@given(
    values=st.lists(energies, min_size=8, max_size=96),
    extra=st.floats(min_value=0.0, max_value=1e5, allow_nan=False),
    with_registers=st.booleans(),
    data=st.data(),
)
def test_estimating_again_over_the_estimates_changes_nothing(values, extra, with_registers, data):
    n = len(values)
    missing = data.draw(st.sets(st.integers(min_value=0, max_value=n - 1), min_size=1, max_size=n - 1))
    keep = [i for i in range(n) if i not in missing]
    end = DAY + n * Q
    regs = None
    if with_registers:
        regs = registers([("m1", DAY, 0.0), ("m1", end, sum(values[i] for i in keep) + extra)])
    grid = Expected(["m1"], DAY, end, 900)
    checked = validate(reads("m1", [values[i] for i in keep], slots=keep), expected=grid, registers=regs)
    first = estimate(checked, expected=grid, registers=regs)
    current = concat(checked.accepted, first.cast(checked.accepted.schema))
    again = estimate_detailed(validate(current, expected=grid, registers=regs), expected=grid, registers=regs)
    assert again.rows.num_rows == 0
    assert again.counts["unchanged"] == first.num_rows
