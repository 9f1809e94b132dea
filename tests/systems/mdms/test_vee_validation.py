"""Each VEE validation rule on crafted data: the reads a utility analyst would expect flagged, and no others."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pytest

from gridloom.devices.meters import QualityFlag
from gridloom.errors import VeeConfigError, VeeInputError
from gridloom.systems.mdms import Expected, VeeConfig, VeeFlag, validate

from .helpers import DAY, Q, at, column, concat, day_of, events, reads, registers


def flagged_slots(result, flag: VeeFlag, meter: str = "m1") -> list[int]:
    """Interval numbers (15 min from DAY) of ``meter``'s reads carrying ``flag``."""
    t = result.flagged(flag)
    return sorted(
        int((s - DAY) / Q)
        for m, s in zip(column(t, "meter_id"), column(t, "interval_start"), strict=True)
        if m == meter
    )


# ---------------------------------------------------------------------------------------- gaps
def test_gaps_on_the_expected_grid_include_edges_and_silent_meters():
    batch = concat(day_of("m1", drop={0, 40, 41, 42, 95}), day_of("m2"))
    result = validate(batch, expected=Expected(["m1", "m2", "m3"], DAY, DAY + dt.timedelta(days=1), 900))
    gaps = result.gaps
    m1 = sorted(
        int((s - DAY) / Q)
        for m, s in zip(column(gaps, "meter_id"), column(gaps, "interval_start"), strict=True)
        if m == "m1"
    )
    assert m1 == [0, 40, 41, 42, 95]
    assert column(gaps, "meter_id").count("m3") == 96  # a meter that sent nothing at all
    assert "m2" not in column(gaps, "meter_id")
    assert result.counts["gap"] == 5 + 96
    assert set(column(gaps, "interval_s")) == {900}


def test_without_expected_grid_only_gaps_between_reads_are_found():
    batch = day_of("m1", drop={0, 1, 50, 51, 95})
    result = validate(batch)
    assert sorted(int((s - DAY) / Q) for s in column(result.gaps, "interval_start")) == [50, 51]
    assert any(s.startswith("gap") for s in result.skipped)


def test_a_misaligned_read_fills_its_interval_and_is_not_a_gap():
    batch = reads("m1", [10, 10, 10], slots=[0, 1, 2])
    shifted = batch.set_column(1, "interval_start", pa.array([DAY, DAY + Q + dt.timedelta(seconds=20), at(2)]))
    result = validate(shifted, expected=(["m1"], DAY, at(3), 900))
    assert result.gaps.num_rows == 0


# ---------------------------------------------------------------------------------------- duplicates
def test_a_resent_interval_is_a_duplicate_and_only_the_first_read_is_accepted():
    batch = concat(reads("m1", [100, 200, 300]), reads("m1", [999], slots=[1]), reads("m2", [5, 5]))
    result = validate(batch)
    assert result.counts["duplicate"] == 1
    dup = result.flagged(VeeFlag.DUPLICATE)
    assert column(dup, "energy_delivered_wh") == [999.0]
    accepted = result.accepted
    assert accepted.num_rows == 5
    assert sorted(
        column(accepted.filter(pa.compute.equal(accepted.column("meter_id"), "m1")), "energy_delivered_wh")
    ) == [
        100.0,
        200.0,
        300.0,
    ]


def test_validation_keeps_every_row_in_input_order():
    batch = concat(reads("m2", [1, 2, 3]), reads("m1", [4, 5, 6]))
    result = validate(batch)
    assert column(result.reads, "meter_id") == column(batch, "meter_id")
    assert column(result.reads, "energy_delivered_wh") == column(batch, "energy_delivered_wh")


# ---------------------------------------------------------------------------------------- clock drift
def test_clock_drift_from_the_meter_flag_and_from_stamps_off_the_boundary():
    batch = reads("m1", [1, 1, 1, 1], quality=[0, int(QualityFlag.CLOCK_DRIFT), 0, 0])
    starts = [at(0), at(1), at(2) + dt.timedelta(seconds=90), at(3) + dt.timedelta(seconds=30)]
    batch = batch.set_column(1, "interval_start", pa.array(starts, batch.schema.field("interval_start").type))
    result = validate(batch, config=VeeConfig(clock_drift_threshold_s=60))
    assert flagged_slots(result, VeeFlag.CLOCK_DRIFT) == [1, 2]


# ---------------------------------------------------------------------------------------- spikes
def test_spike_against_the_premises_history_peak():
    history = concat(
        day_of("m1", 200.0, start=DAY - dt.timedelta(days=7)), day_of("m2", 50.0, start=DAY - dt.timedelta(days=7))
    )
    values = [200.0] * 96
    values[10], values[20] = 601.0, 599.0  # 3 x 200 = 600 Wh
    small = [50.0] * 96
    small[30] = 450.0  # 9 x its peak, but 1.8 kW average: under the 2 kW floor
    result = validate(concat(day_of("m1", values), day_of("m2", small)), history=history)
    assert flagged_slots(result, VeeFlag.SPIKE) == [10]
    assert flagged_slots(result, VeeFlag.SPIKE, "m2") == []


def test_spike_against_the_service_capacity():
    values = [100.0] * 96
    values[5] = 12_100.0  # 48.4 kW average in 15 minutes
    values[6] = 11_900.0
    capacity = pa.table({"meter_id": ["m1"], "capacity_w": [48_000.0]})
    result = validate(day_of("m1", values), capacity_w=capacity)
    assert flagged_slots(result, VeeFlag.SPIKE) == [5]
    assert flagged_slots(validate(day_of("m1", values), capacity_w={"m1": 48_000.0}), VeeFlag.SPIKE) == [5]


def test_history_inside_the_batch_window_does_not_hide_a_spike():
    values = [100.0] * 96
    values[7] = 5_000.0
    batch = day_of("m1", values)
    history = concat(day_of("m1", 100.0, start=DAY - dt.timedelta(days=7)), batch)  # the batch itself, stored
    assert flagged_slots(validate(batch, history=history), VeeFlag.SPIKE) == [7]


def test_spike_rule_is_reported_skipped_without_history_or_capacity():
    result = validate(day_of("m1"))
    assert result.counts["spike"] == 0
    assert any(s.startswith("spike") for s in result.skipped)


# ---------------------------------------------------------------------------------------- negative
def test_negative_values_and_received_energy_on_meters_not_net_metered():
    received = [0.0] * 4
    received[2] = 150.0
    batch = concat(
        reads("m1", [10, -5, 10, 10], received=received),
        reads("pv", [10, 10, 10, 10], received=received),
    )
    result = validate(batch, net_metered={"m1": False, "pv": True})
    assert flagged_slots(result, VeeFlag.NEGATIVE) == [1, 2]
    assert flagged_slots(result, VeeFlag.NEGATIVE, "pv") == []
    table = pa.table({"meter_id": ["m1", "pv"], "net_metered": [False, True]})
    assert validate(batch, net_metered=table).counts["negative"] == 2


def test_without_net_metering_data_only_impossible_negatives_are_flagged():
    result = validate(reads("m1", [10, -5, 10], received=[0, 0, 150]))
    assert flagged_slots(result, VeeFlag.NEGATIVE) == [1]
    assert any("net_metered" in s for s in result.skipped)


# ---------------------------------------------------------------------------------------- zero runs
def test_a_day_of_zeros_is_a_zero_run_but_a_shorter_run_is_not():
    stuck = day_of("stuck", 0.0)
    values = [100.0] * 96
    for i in range(1, 95):  # 94 zero intervals = 23.5 h
        values[i] = 0.0
    almost = day_of("m1", values)
    result = validate(concat(stuck, almost))
    assert len(flagged_slots(result, VeeFlag.ZERO_RUN, "stuck")) == 96
    assert flagged_slots(result, VeeFlag.ZERO_RUN, "m1") == []
    assert result.counts["zero_run"] == 96


def test_a_zero_run_across_a_gap_or_a_disconnection_is_broken():
    quality = [0] * 96
    quality[48] = int(QualityFlag.SERVICE_DISCONNECTED)
    disconnected = reads("m1", [0.0] * 96, quality=quality)
    gapped = day_of("m2", 0.0, drop={48})
    result = validate(concat(disconnected, gapped), config=VeeConfig(zero_run_s=12 * 3600 + 900))
    assert flagged_slots(result, VeeFlag.ZERO_RUN) == []
    assert flagged_slots(result, VeeFlag.ZERO_RUN, "m2") == []
    shorter = validate(concat(disconnected, gapped), config=VeeConfig(zero_run_s=12 * 3600))
    # 0-47 last 12 h and are flagged; 49-95 only 11.75 h
    assert flagged_slots(shorter, VeeFlag.ZERO_RUN) == list(range(48))
    assert flagged_slots(shorter, VeeFlag.ZERO_RUN, "m2") == list(range(48))


# ---------------------------------------------------------------------------------------- registers
def test_register_mismatch_flags_the_span_whose_intervals_do_not_add_up():
    batch = concat(day_of("m1", 100.0), day_of("m2", 100.0))
    end = DAY + dt.timedelta(days=1, seconds=7)  # read 7 s after midnight: counts up to midnight
    regs = registers(
        [
            ("m1", DAY, 1_000_000.0),
            ("m1", end, 1_000_000.0 + 9_600.0 + 50.0),  # within 100 Wh
            ("m2", DAY, 2_000_000.0),
            ("m2", end, 2_000_000.0 + 9_600.0 + 500.0),  # 500 Wh more than the intervals
        ]
    )
    result = validate(batch, registers=regs)
    assert flagged_slots(result, VeeFlag.REGISTER_MISMATCH) == []
    assert len(flagged_slots(result, VeeFlag.REGISTER_MISMATCH, "m2")) == 96


def test_register_span_with_missing_intervals_is_flagged_only_when_the_reads_exceed_it():
    batch = concat(day_of("m1", 100.0, drop={10, 11}), day_of("m2", 100.0, drop={10, 11}))
    end = DAY + dt.timedelta(days=1)
    regs = registers(
        [("m1", DAY, 0.0), ("m1", end, 9_700.0), ("m2", DAY, 0.0), ("m2", end, 9_000.0)]  # m2: 9,400 read > 9,000
    )
    result = validate(batch, registers=regs)
    assert flagged_slots(result, VeeFlag.REGISTER_MISMATCH) == []
    assert len(flagged_slots(result, VeeFlag.REGISTER_MISMATCH, "m2")) == 94


# ---------------------------------------------------------------------------------------- outages
def test_consumption_inside_a_known_outage():
    values = [100.0] * 96
    values[41] = 0.0
    batch = day_of("m1", values)
    outages = pa.table({"meter_id": ["m1"], "start": [at(40)], "end": [at(44) + dt.timedelta(minutes=5)]})
    result = validate(batch, outages=outages)
    # 40, 42, 43 lie wholly inside and show consumption; 41 is zero; 44 is only partly inside.
    assert flagged_slots(result, VeeFlag.DURING_OUTAGE) == [40, 42, 43]


def test_outages_told_by_last_gasp_and_power_restore_events():
    batch = concat(day_of("m1", 100.0), day_of("m2", 100.0))
    ev = events(
        [
            ("m1", at(20) - dt.timedelta(seconds=30), "LAST_GASP"),
            ("m1", at(22) + dt.timedelta(seconds=10), "POWER_RESTORE"),
            ("m2", at(90), "LAST_GASP"),  # no restore yet: still out
        ]
    )
    result = validate(batch, events=ev)
    assert flagged_slots(result, VeeFlag.DURING_OUTAGE) == [20, 21]
    assert flagged_slots(result, VeeFlag.DURING_OUTAGE, "m2") == [90, 91, 92, 93, 94, 95]
    assert (
        validate(batch, outages=pa.table({"meter_id": ["m1"], "start": [at(94)], "end": [None]})).counts[
            "during_outage"
        ]
        == 2
    )


# ---------------------------------------------------------------------------------------- tamper, reverse
def test_tamper_and_reverse_rotation_from_meter_bits_and_events():
    quality = [0] * 96
    quality[3] = int(QualityFlag.TAMPER)
    quality[70] = int(QualityFlag.REVERSE_ROTATION)
    batch = reads("m1", [100.0] * 96, quality=quality)
    ev = events([("m1", at(12) + dt.timedelta(minutes=7), "TAMPER"), ("m1", at(50), "REVERSE_ROTATION")])
    result = validate(batch, events=ev)
    assert flagged_slots(result, VeeFlag.TAMPER) == [3, 12]
    assert flagged_slots(result, VeeFlag.REVERSE_ROTATION) == [50, 70]


# ---------------------------------------------------------------------------------------- flags, config, input
def test_revalidation_replaces_vee_flags_and_keeps_the_meters_bits():
    values = [100.0] * 96
    values[5] = 20_000.0
    first = validate(day_of("m1", values), capacity_w=48_000.0)
    assert first.counts["spike"] == 1
    edited = first.reads.set_column(3, "energy_delivered_wh", pa.array([100.0] * 96))
    q = [int(v) | int(QualityFlag.POWER_OUTAGE_PARTIAL) for v in column(edited, "quality")]
    edited = edited.set_column(7, "quality", pa.array(q, pa.uint32()))
    again = validate(edited, capacity_w=48_000.0)
    assert again.counts["spike"] == 0
    assert all(v == int(QualityFlag.POWER_OUTAGE_PARTIAL) for v in column(again.reads, "quality"))


def test_minimal_imported_columns_are_enough():
    table = pa.table(
        {
            "meter_id": ["m1", "m1"],
            "interval_start": pa.array([DAY, at(1)], pa.timestamp("s", tz="UTC")),
            "energy_delivered_wh": [1, 2],
        }
    )
    result = validate(table)
    assert result.reads.schema.names[:4] == ["meter_id", "interval_start", "interval_s", "energy_delivered_wh"]
    assert column(result.reads, "interval_s") == [900, 900]


@pytest.mark.parametrize(
    ("table", "message"),
    [
        (pa.table({"meter_id": ["m"], "energy_delivered_wh": [1.0]}), "interval_start"),
        (
            pa.table({"meter_id": ["m"], "interval_start": ["yesterday"], "energy_delivered_wh": [1.0]}),
            "interval_start",
        ),
        (pa.table({"meter_id": [None], "interval_start": [DAY], "energy_delivered_wh": [1.0]}), "meter_id"),
    ],
)
def test_unusable_input_is_refused_naming_the_column(table, message):
    with pytest.raises(VeeInputError, match=message):
        validate(table)


def test_bad_thresholds_and_grids_are_refused():
    with pytest.raises(VeeConfigError, match="spike_history_factor"):
        VeeConfig(spike_history_factor=-1)
    with pytest.raises(VeeConfigError, match="zero_run_s"):
        VeeConfig(zero_run_s=1.5)  # type: ignore[arg-type]
    with pytest.raises(VeeInputError, match="boundary"):
        validate(day_of("m1"), expected=(["m1"], DAY + dt.timedelta(minutes=7), DAY + dt.timedelta(days=1), 900))
    with pytest.raises(VeeInputError, match="timezone-aware"):
        validate(day_of("m1"), expected=(["m1"], DAY.replace(tzinfo=None), DAY + dt.timedelta(days=1), 900))


def test_empty_batch():
    result = validate(reads("m1", []), expected=(["m1"], DAY, at(4), 900))
    assert result.reads.num_rows == 0
    assert result.counts["gap"] == 4


def test_an_expected_meter_named_twice_counts_once():
    result = validate(day_of("m1", drop={4}), expected=(["m1", "m1"], DAY, DAY + dt.timedelta(days=1), 900))
    assert result.counts["gap"] == 1


def test_reads_that_do_not_fit_the_expected_grid_are_refused():
    hourly = reads("m1", [400.0] * 24, interval_s=3600)
    with pytest.raises(VeeInputError, match="3600 s long"):
        validate(hourly, expected=(["m1"], DAY, DAY + dt.timedelta(days=1), 900))
    assert validate(hourly, expected=(["m1"], DAY, DAY + dt.timedelta(days=1), 3600)).counts["gap"] == 0
