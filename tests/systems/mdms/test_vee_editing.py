"""Editing keeps the original and every version; the VEE report counts what VEE and people did."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pytest

from gridloom.devices.meters import QualityFlag
from gridloom.errors import EditRefused
from gridloom.systems.mdms import (
    EditReason,
    Expected,
    VeeFlag,
    edit,
    edit_many,
    estimate,
    summarize,
    validate,
    vee_report,
)

from .helpers import DAY, Q, at, column, concat, day_of, registers

NOW = dt.datetime(2026, 11, 5, 8, 0, tzinfo=dt.UTC)


def versions_of(store, meter: str, start: dt.datetime) -> list[dict]:
    rows = store.reads(meter_ids=[meter], start=start, end=start + dt.timedelta(seconds=1), versions="all").to_pylist()
    return sorted(rows, key=lambda r: r["version"])


def load_day(store, meter: str = "m1", drop=()) -> None:
    checked = validate(day_of(meter, 100.0, drop=drop))
    store.ingest_reads(checked.accepted)
    grid = Expected([meter], DAY, DAY + dt.timedelta(days=1), 900)
    est = estimate(checked, expected=grid)
    if est.num_rows:
        store.add_versions(est)


def test_an_edit_adds_a_version_and_keeps_the_original(store):
    load_day(store)
    stored = edit(
        store,
        meter_id="m1",
        interval_start=at(10),
        values={"energy_delivered_wh": 250.0},
        reason=EditReason.CUSTOMER_READ,
        user="analyst-7",
    )
    assert stored.num_rows == 1
    history = versions_of(store, "m1", at(10))
    assert [(r["version"], r["energy_delivered_wh"], r["source"]) for r in history] == [
        (0, 100.0, "measured"),
        (1, 250.0, "edited"),
    ]
    new = history[1]
    assert new["rule"] == "customer_read"
    assert new["edited_by"] == "analyst-7"
    assert new["quality"] & VeeFlag.EDITED
    assert new["voltage_v"] == 230.0  # values not edited are carried over
    current = store.reads(meter_ids=["m1"], start=at(10), end=at(11)).to_pylist()
    assert [r["energy_delivered_wh"] for r in current] == [250.0]


def test_every_version_is_kept_and_an_edited_estimate_is_no_longer_estimated(store):
    load_day(store, drop={20})
    est = versions_of(store, "m1", at(20))
    assert [(r["source"], r["rule"]) for r in est] == [("estimated", "interpolation")]
    first = est[0]["version"]
    edit(
        store, meter_id="m1", interval_start=at(20), values={"energy_delivered_wh": 90.0}, reason="field_read", user="a"
    )
    edit(
        store, meter_id="m1", interval_start=at(20), values={"energy_delivered_wh": 95.0}, reason="meter_test", user="b"
    )
    history = versions_of(store, "m1", at(20))
    assert [r["version"] for r in history] == [first, first + 1, first + 2]
    assert [r["energy_delivered_wh"] for r in history] == [100.0, 90.0, 95.0]
    assert [r["edited_by"] for r in history] == [None, "a", "b"]
    last = history[-1]
    assert not last["quality"] & VeeFlag.ESTIMATED
    assert not last["quality"] & QualityFlag.ESTIMATED
    assert last["quality"] & VeeFlag.GAP  # why it was estimated in the first place stays visible


def test_edit_many_changes_only_the_columns_given(store):
    load_day(store)
    edits = pa.table(
        {
            "meter_id": ["m1", "m1"],
            "interval_start": [at(1), at(2)],
            "energy_delivered_wh": [10.0, None],
            "voltage_v": [None, 240.0],
        }
    )
    stored = edit_many(store, edits, reason="billing_adjustment", user="ops")
    rows = {r["interval_start"]: r for r in stored.to_pylist()}
    assert (rows[at(1)]["energy_delivered_wh"], rows[at(1)]["voltage_v"]) == (10.0, 230.0)
    assert (rows[at(2)]["energy_delivered_wh"], rows[at(2)]["voltage_v"]) == (100.0, 240.0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"values": {"energy_delivered_wh": 1.0}, "interval_start": at(200)}, "no stored read"),
        ({"values": {"quality": 0}}, "cannot edit quality"),
        ({"values": {}}, "at least one"),
        ({"values": {"energy_delivered_wh": -4.0}}, "not a valid value"),
        ({"values": {"energy_delivered_wh": float("nan")}}, "not finite"),
        ({"values": {"energy_delivered_wh": 1.0}, "reason": "Because I said so"}, "reason code"),
        ({"values": {"energy_delivered_wh": 1.0}, "user": " "}, "user"),
    ],
)
def test_refused_edits_change_nothing(store, kwargs, message):
    load_day(store)
    before = store.reads(versions="all").num_rows
    args = {"meter_id": "m1", "interval_start": at(3), "reason": "other", "user": "u"} | kwargs
    with pytest.raises(EditRefused, match=message):
        edit(store, **args)
    assert store.reads(versions="all").num_rows == before


def test_vee_report_counts_rules_estimates_and_edits(store):
    values = [100.0] * 96
    values[7] = 60_000.0
    checked = validate(concat(day_of("m1", values, drop={30, 31}), day_of("m2", 0.0)), capacity_w=48_000.0)
    store.ingest_reads(checked.accepted)
    grid = Expected(["m1", "m2"], DAY, DAY + dt.timedelta(days=1), 900)
    store.add_versions(estimate(checked, expected=grid))
    edit(store, meter_id="m2", interval_start=at(0), values={"energy_delivered_wh": 1.0}, reason="field_read", user="u")

    report = vee_report(store, start=DAY - dt.timedelta(hours=5), end=DAY + dt.timedelta(days=1), chunk=Q * 7)
    assert report.to_dict() | {"start": None, "end": None} == vee_report(store).to_dict()  # chunks add up
    assert report.intervals == 192
    assert report.estimated == 3  # two gaps and the spike
    assert report.edited == 1
    assert report.measured == 188
    assert report.versions == 190 + 3 + 1
    assert report.flagged["spike"] == 1
    assert report.flagged["gap"] == 2
    assert report.flagged["zero_run"] == 96
    assert report.methods == {"interpolation": 3}
    assert report.edit_reasons == {"field_read": 1}
    assert report.estimated_share == pytest.approx(3 / 192)
    assert report.to_dict()["estimated_share"] == round(3 / 192, 6)


def test_summarize_sorts_what_is_not_in_key_order(store):
    load_day(store, drop={5})
    edit(store, meter_id="m1", interval_start=at(5), values={"energy_delivered_wh": 7.0}, reason="other", user="u")
    everything = store.reads(versions="all")
    backwards = everything.take(pa.array(range(everything.num_rows - 1, -1, -1)))
    assert summarize(backwards) == summarize(everything)
    assert summarize(everything).edited == 1
    assert summarize(everything).estimated == 0


def test_summarize_of_nothing():
    empty = validate(day_of("m1")).reads.slice(0, 0)
    report = summarize(empty)
    assert report.intervals == 0
    assert report.estimated_share == 0.0
    assert report.methods == {}
    assert column(empty, "meter_id") == []


def nightly(store, registers=None) -> int:
    """The MDMS's nightly VEE over the stored day (current versions); returns the new versions stored."""
    grid = Expected(["m1"], DAY, DAY + dt.timedelta(days=1), 900)
    current = store.reads(start=DAY, end=DAY + dt.timedelta(days=1))
    checked = validate(current, expected=grid, registers=registers, capacity_w=48_000.0)
    rows = estimate(checked, expected=grid, registers=registers)
    if rows.num_rows:
        store.add_versions(rows)
    return rows.num_rows


def test_nightly_vee_refines_estimates_only_when_something_new_is_known(store):
    values = [100.0] * 96
    values[60] = 70_000.0  # a spike
    checked = validate(day_of("m1", values, drop={20}), capacity_w=48_000.0)
    store.ingest_reads(checked.accepted)
    assert nightly(store) == 2  # the gap and the spike
    assert nightly(store) == 0  # nothing new: no new versions
    edit(
        store,
        meter_id="m1",
        interval_start=at(21),
        values={"energy_delivered_wh": 130.0},
        reason="field_read",
        user="u",
    )
    regs = registers([("m1", DAY, 0.0), ("m1", DAY + dt.timedelta(days=1), 94 * 100.0 + 30.0 + 400.0)])
    assert nightly(store, regs) == 2  # the register read arrived: both estimates prorated
    assert nightly(store, regs) == 0
    gap = versions_of(store, "m1", at(20))
    assert [(r["version"], r["rule"]) for r in gap] == [(1, "interpolation"), (2, "interpolation+prorated")]
    spike = versions_of(store, "m1", at(60))
    assert [r["version"] for r in spike] == [0, 1, 2]
    assert spike[-1]["quality"] & VeeFlag.SPIKE  # why it was estimated, still on the latest estimate
    day = store.reads(start=DAY, end=DAY + dt.timedelta(days=1))
    assert sum(column(day, "energy_delivered_wh")) == pytest.approx(94 * 100.0 + 30.0 + 400.0)
    assert versions_of(store, "m1", at(21))[-1]["energy_delivered_wh"] == 130.0  # the edit is never re-estimated
