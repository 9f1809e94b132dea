"""AMI meters: energy is conserved, outages are reported once, commands change state, clocks drift."""

import datetime as dt

import numpy as np
import pytest

from gridloom.devices import (
    Distribution,
    IntervalReads,
    MeterConfig,
    MeterEventKind,
    MeterEvents,
    MeterFleet,
    QualityFlag,
    ReverseRotation,
)
from gridloom.devices.meters import to_us
from gridloom.errors import DeviceConfigError, DeviceInputError, IntervalOutOfOrder, UnknownDevice

START = dt.datetime(2026, 3, 2, tzinfo=dt.UTC)
STEP = dt.timedelta(minutes=15)
# A meter without randomness: exact clock, exact gain, no noise, no tampering, registers from 0.
IDEAL = MeterConfig(
    clock_drift_ppm=Distribution.constant(0.0),
    clock_sync_error_s=Distribution.constant(0.0),
    energy_gain_error=Distribution.constant(0.0),
    voltage_noise=0.0,
    tamper_rate_per_day=0.0,
    initial_delivered_wh=Distribution.constant(0.0),
    power_restore_report_delay_s=Distribution.constant(0.0),
    last_gasp_delay_s=0.0,
)


def fleet_of(n: int, *, config: MeterConfig = IDEAL, seed: int = 0, **kwargs) -> MeterFleet:
    return MeterFleet([f"meter-{i}" for i in range(n)], rng=np.random.default_rng(seed), config=config, **kwargs)


def measure(fleet: MeterFleet, k: int, *, p_w, energized=None, q_var=None, voltage_v=None, outage_s=None):
    n = fleet.n
    return fleet.measure(
        interval_start_at=START + k * STEP,
        p_w=np.broadcast_to(np.asarray(p_w, float), (n,)),
        q_var=np.zeros(n) if q_var is None else q_var,
        voltage_v=np.full(n, 231.0) if voltage_v is None else voltage_v,
        energized=np.ones(n, bool) if energized is None else energized,
        outage_s=outage_s,
    )


def random_supply(rng: np.random.Generator, steps: int, n: int, *, p_fail: float, p_repair: float) -> np.ndarray:
    """(steps, n) supply states of a two-state Markov chain starting energised, ending energised."""
    on = np.ones((steps, n), bool)
    for k in range(1, steps - 1):
        u = rng.random(n)
        on[k] = np.where(on[k - 1], u >= p_fail, u < p_repair)
    return on


def registers(fleet: MeterFleet) -> dict[str, np.ndarray]:
    r = fleet.register_reads(START + 10_000 * STEP)
    assert len(r) == fleet.n
    return {
        "delivered": r.energy_delivered_wh,
        "received": r.energy_received_wh,
        "varh": r.reactive_delivered_varh - r.reactive_received_varh,
    }


@pytest.mark.parametrize("mode", list(ReverseRotation))
def test_interval_reads_add_up_to_the_register_change_through_outages_and_disconnects(mode: ReverseRotation) -> None:
    rng = np.random.default_rng(11)
    n, steps = 400, 120
    config = MeterConfig(reverse_rotation=mode, tamper_rate_per_day=5.0, last_gasp_delay_s=30.0)
    fleet = fleet_of(n, config=config, net_metered=rng.random(n) < 0.5)
    before = registers(fleet)
    supply = random_supply(rng, steps, n, p_fail=0.05, p_repair=0.4)
    totals = {"delivered": np.zeros(n), "received": np.zeros(n), "varh": np.zeros(n)}
    for k in range(steps):
        if k == 40:
            fleet.remote_disconnect(np.arange(0, n, 7), START + k * STEP + dt.timedelta(minutes=4))
        if k == 80:
            fleet.remote_connect(np.arange(0, n, 7), START + k * STEP + dt.timedelta(minutes=9))
        prev = supply[k - 1] if k else np.ones(n, bool)
        changing = prev != supply[k]
        outage = np.where(changing, rng.uniform(0, 900, n), np.where(supply[k], 0.0, 900.0))
        outage[supply[k] & prev & (rng.random(n) < 0.02)] = 60.0  # momentary interruptions
        reads = measure(
            fleet,
            k,
            p_w=rng.normal(300, 900, n),  # many meters export in some intervals
            q_var=rng.normal(50, 100, n),
            energized=supply[k],
            outage_s=outage,
        )
        assert (np.diff(reads.meter) >= 0).all()  # sorted by meter, a partial interval before the current one
        np.add.at(totals["delivered"], reads.meter, reads.energy_delivered_wh)
        np.add.at(totals["received"], reads.meter, reads.energy_received_wh)
        np.add.at(totals["varh"], reads.meter, reads.reactive_varh)
    after = registers(fleet)
    for name, total in totals.items():
        np.testing.assert_allclose(total, after[name] - before[name], rtol=1e-12, atol=1e-6, err_msg=name)
    assert (totals["delivered"] > 0).all()
    if mode is ReverseRotation.REGISTER:
        assert (totals["received"][~fleet.net_metered] > 0).any()
    else:
        assert (totals["received"][~fleet.net_metered] == 0).all()


def test_a_read_is_the_demand_integrated_over_the_supplied_part_of_the_interval() -> None:
    fleet = fleet_of(3)
    reads = measure(fleet, 0, p_w=[1200.0, -400.0, 0.0], outage_s=np.array([0.0, 0.0, 0.0]))
    np.testing.assert_allclose(reads.energy_delivered_wh, [300.0, 0.0, 0.0])
    np.testing.assert_allclose(reads.energy_received_wh, [0.0, 100.0, 0.0])
    assert (reads.interval_start_us == to_us(START)).all()
    # A 300 s interruption in the next interval costs a third of its energy and flags the read.
    reads = measure(fleet, 1, p_w=[1200.0, -400.0, 0.0], outage_s=np.array([300.0, 0.0, 0.0]))
    np.testing.assert_allclose(reads.energy_delivered_wh, [200.0, 0.0, 0.0])
    assert reads.flagged(QualityFlag.POWER_OUTAGE_PARTIAL).tolist() == [True, False, False]


def test_a_meter_sends_its_partial_interval_when_power_returns_and_nothing_for_dead_intervals() -> None:
    fleet = fleet_of(2)
    measure(fleet, 0, p_w=1000.0)
    lost = measure(fleet, 1, p_w=1000.0, energized=np.array([False, True]), outage_s=np.array([600.0, 0.0]))
    assert lost.meter.tolist() == [1]
    dead = measure(fleet, 2, p_w=1000.0, energized=np.array([False, True]))
    assert dead.meter.tolist() == [1]
    back = measure(fleet, 3, p_w=1000.0, outage_s=np.array([450.0, 0.0]))
    assert back.meter.tolist() == [0, 0, 1]
    first, second = back.take(np.array([0])), back.take(np.array([1]))
    assert first.interval_start_us[0] == to_us(START + STEP)  # the interval in which supply was lost
    assert second.interval_start_us[0] == to_us(START + 3 * STEP)
    np.testing.assert_allclose([first.energy_delivered_wh[0], second.energy_delivered_wh[0]], [1000 / 12, 125.0])
    assert first.flagged(QualityFlag.POWER_OUTAGE_PARTIAL).all()
    assert second.flagged(QualityFlag.POWER_OUTAGE_PARTIAL).all()
    # No voltage came with the dying interval (the power flow says 0 V): the meter keeps its last reading.
    assert first.voltage_v[0] == pytest.approx(231.0)


def count(events: MeterEvents, kind: MeterEventKind, n: int) -> np.ndarray:
    return np.bincount(events.of_kind(kind).meter, minlength=n)


def test_exactly_one_last_gasp_and_one_restore_per_outage_and_none_for_meters_that_keep_supply() -> None:
    rng = np.random.default_rng(5)
    n, steps = 2000, 60
    fleet = fleet_of(n)
    supply = random_supply(rng, steps, n, p_fail=0.03, p_repair=0.3)
    supply[:, :500] = True  # a quarter of the meters never lose supply
    events = []
    for k in range(steps):
        measure(fleet, k, p_w=500.0, energized=supply[k])
        events.append(fleet.pop_events())
    got = MeterEvents.concat(events)
    outages = ((~supply[1:]) & supply[:-1]).sum(axis=0)
    assert outages.sum() > 1000
    np.testing.assert_array_equal(count(got, MeterEventKind.LAST_GASP, n), outages)
    np.testing.assert_array_equal(count(got, MeterEventKind.POWER_RESTORE, n), outages)
    assert not np.isin(got.meter, np.arange(500)).any()
    # Each last gasp is stamped when supply went (here: the start of the first dead interval).
    gasps = got.of_kind(MeterEventKind.LAST_GASP)
    assert ((gasps.at_us - to_us(START)) % (900 * 1_000_000) == 0).all()


def test_outages_shorter_than_the_last_gasp_delay_only_count_as_momentary_interruptions() -> None:
    fleet = fleet_of(4, config=MeterConfig(**{**IDEAL.__dict__, "last_gasp_delay_s": 20.0}))
    measure(fleet, 0, p_w=100.0)
    # Meter 0: 2 s interruption; 1: 60 s interruption; 2: loses supply 5 s before the end and is back
    # 10 s into the next interval (15 s in all); 3: 10 s before the end, back 30 s later (40 s in all).
    measure(
        fleet,
        1,
        p_w=100.0,
        energized=np.array([True, True, False, False]),
        outage_s=np.array([2.0, 60.0, 5.0, 10.0]),
    )
    measure(fleet, 2, p_w=100.0, outage_s=np.array([0.0, 0.0, 10.0, 30.0]))
    events = fleet.pop_events()
    assert count(events, MeterEventKind.LAST_GASP, 4).tolist() == [0, 1, 0, 1]
    assert count(events, MeterEventKind.POWER_RESTORE, 4).tolist() == [0, 1, 0, 1]
    late = events.of_kind(MeterEventKind.LAST_GASP).take(events.of_kind(MeterEventKind.LAST_GASP).meter == 3)
    assert late.at_us[0] == to_us(START + 2 * STEP) - 10_000_000  # stamped when supply went
    assert late.sent_at_us[0] == late.at_us[0] + 20_000_000  # sent once the outage qualified
    assert fleet.register_reads(START + 3 * STEP).momentary_interruptions.tolist() == [1, 0, 1, 0]


def test_remote_disconnect_zeroes_the_reads_reports_an_event_and_connect_restores_service() -> None:
    fleet = fleet_of(3)
    measure(fleet, 0, p_w=1000.0)
    took = fleet.remote_disconnect([0, 1], START + STEP + dt.timedelta(minutes=5))
    assert took.tolist() == [True, True]
    assert fleet.service_connected.tolist() == [False, False, True]
    events = fleet.pop_events()
    assert sorted(events.meter.tolist()) == [0, 1]
    assert (events.kind == MeterEventKind.SERVICE_DISCONNECTED).all()
    assert (events.at_us == to_us(START + STEP + dt.timedelta(minutes=5))).all()

    partly = measure(fleet, 1, p_w=1000.0)  # disconnected 5 minutes into this interval
    np.testing.assert_allclose(partly.energy_delivered_wh, [1000 / 12, 1000 / 12, 250.0])
    off = measure(fleet, 2, p_w=1000.0)
    np.testing.assert_allclose(off.energy_delivered_wh, [0.0, 0.0, 250.0])
    assert off.flagged(QualityFlag.SERVICE_DISCONNECTED).tolist() == [True, True, False]
    np.testing.assert_allclose(off.voltage_v, 231.0)  # it still measures the line side
    assert len(fleet.pop_events()) == 0  # the disconnection is reported once

    assert fleet.remote_connect([1], START + 3 * STEP).tolist() == [True]
    assert fleet.pop_events().kind.tolist() == [MeterEventKind.SERVICE_CONNECTED]
    on = measure(fleet, 3, p_w=1000.0)
    np.testing.assert_allclose(on.energy_delivered_wh, [0.0, 250.0, 250.0])
    assert on.flagged(QualityFlag.SERVICE_DISCONNECTED).tolist() == [True, False, False]


def test_a_meter_without_supply_does_not_take_commands() -> None:
    fleet = fleet_of(2)
    measure(fleet, 0, p_w=1000.0, energized=np.array([False, True]))
    fleet.pop_events()
    assert fleet.remote_disconnect([0, 1], START + STEP).tolist() == [False, True]
    assert fleet.service_connected.tolist() == [True, False]
    assert fleet.sync_clock([0], START + STEP).tolist() == [False]
    assert fleet.pop_events().meter.tolist() == [1]


def test_clock_drift_is_flagged_past_the_threshold_and_cleared_by_a_sync() -> None:
    # 100 ppm fast: 0.09 s per interval, past the 60 s threshold after 667 intervals (~7 days).
    config = MeterConfig(**{**IDEAL.__dict__, "clock_drift_ppm": Distribution.constant(100.0)})
    fleet = fleet_of(2, config=config)
    flagged_from = None
    for k in range(800):
        reads = measure(fleet, k, p_w=100.0)
        if flagged_from is None and reads.flagged(QualityFlag.CLOCK_DRIFT).any():
            flagged_from = k
    assert flagged_from == 666  # the end of interval 666 is 667 intervals in: 60.03 s
    assert fleet.clock_error_s(START + 800 * STEP) == pytest.approx([72.0, 72.0])
    # Events carry the meter's own clock.
    fleet.remote_disconnect([0], START + 800 * STEP)
    event = fleet.pop_events()
    assert event.at_us[0] - to_us(START + 800 * STEP) == 72_000_000
    assert fleet.sync_clock([0, 1], START + 800 * STEP).all()
    reads = measure(fleet, 800, p_w=100.0)
    assert not reads.flagged(QualityFlag.CLOCK_DRIFT).any()
    assert reads.flagged(QualityFlag.CLOCK_SET).all()  # the interval in which the clock was set
    reads = measure(fleet, 801, p_w=100.0)
    assert reads.quality.tolist() == [QualityFlag.SERVICE_DISCONNECTED, 0]


def test_a_firmware_clock_jump_flags_the_meters_reads_until_their_clocks_are_set() -> None:
    fleet = fleet_of(3)
    measure(fleet, 0, p_w=100.0)
    fleet.firmware_clock_jump([1], 600.0)
    reads = measure(fleet, 1, p_w=100.0)
    assert reads.flagged(QualityFlag.CLOCK_DRIFT).tolist() == [False, True, False]
    assert fleet.clock_error_s(START + 2 * STEP)[1] == pytest.approx(600.0)
    fleet.sync_clock([1], START + 2 * STEP)
    assert not measure(fleet, 2, p_w=100.0).flagged(QualityFlag.CLOCK_DRIFT).any()


def test_a_silent_meter_keeps_metering_but_sends_no_reads_until_the_fault_ends() -> None:
    fleet = fleet_of(3)
    fleet.firmware_silence([0, 2], START + 2 * STEP)
    assert measure(fleet, 0, p_w=400.0).meter.tolist() == [1]
    assert measure(fleet, 1, p_w=400.0).meter.tolist() == [1]
    assert fleet.reads_withheld == 4
    assert measure(fleet, 2, p_w=400.0).meter.tolist() == [0, 1, 2]
    assert registers(fleet)["delivered"].tolist() == pytest.approx([300.0, 300.0, 300.0])


def test_a_meter_far_off_stamps_its_reads_with_its_own_interval_boundaries() -> None:
    config = MeterConfig(**{**IDEAL.__dict__, "initial_clock_offset_s": Distribution.constant(-500.0)})
    reads = measure(fleet_of(1, config=config), 4, p_w=100.0)
    assert reads.interval_start_us[0] == to_us(START + 3 * STEP)  # 500 s slow: it is still in the last interval
    assert reads.flagged(QualityFlag.CLOCK_DRIFT).all()


def test_drift_is_drawn_per_meter_from_the_configured_distribution() -> None:
    config = MeterConfig(clock_drift_ppm=Distribution.normal(2.0, 20.0))
    drift = fleet_of(100_000, config=config).clock_drift_ppm
    assert drift.mean() == pytest.approx(2.0, abs=0.3)
    assert drift.std() == pytest.approx(20.0, rel=0.02)


def test_reverse_rotation_is_flagged_each_interval_and_reported_once_per_episode() -> None:
    fleet = fleet_of(2, net_metered=np.array([False, True]))
    flags, events = [], []
    for k, p in enumerate([-500.0, -500.0, 300.0, -500.0]):
        reads = measure(fleet, k, p_w=p)
        flags.append(reads.flagged(QualityFlag.REVERSE_ROTATION).tolist())
        events.append(count(fleet.pop_events(), MeterEventKind.REVERSE_ROTATION, 2).tolist())
    assert flags == [[True, False], [True, False], [False, False], [True, False]]
    assert events == [[1, 0], [0, 0], [0, 0], [1, 0]]
    assert fleet.set_net_metering([0], enrolled=True).all()
    assert not measure(fleet, 4, p_w=-500.0).flagged(QualityFlag.REVERSE_ROTATION).any()


def test_tampers_happen_at_the_configured_rate_and_flag_their_interval() -> None:
    n, steps, rate = 100_000, 8, 0.96  # 1 % per meter per interval
    config = MeterConfig(**{**IDEAL.__dict__, "tamper_rate_per_day": rate})
    fleet = fleet_of(n, config=config)
    tampers = flagged = 0
    for k in range(steps):
        reads = measure(fleet, k, p_w=100.0)
        events = fleet.pop_events().of_kind(MeterEventKind.TAMPER)
        assert set(events.meter.tolist()) == set(reads.meter[reads.flagged(QualityFlag.TAMPER)].tolist())
        tampers += len(events)
        flagged += int(reads.flagged(QualityFlag.TAMPER).sum())
    p = -np.expm1(-rate / 96)
    expected, sd = n * steps * p, np.sqrt(n * steps * p * (1 - p))
    assert abs(tampers - expected) < 5 * sd
    assert flagged == tampers


def run_fleet(seed: int) -> tuple[IntervalReads, MeterEvents]:
    rng = np.random.default_rng(seed + 1000)
    fleet = fleet_of(3000, config=MeterConfig(tamper_rate_per_day=2.0), seed=seed)
    all_reads, all_events = [], []
    for k in range(10):
        supply = rng.random(3000) > 0.05
        all_reads.append(measure(fleet, k, p_w=rng.normal(400, 300, 3000), energized=supply))
        all_events.append(fleet.pop_events())
    return IntervalReads.concat(all_reads, interval_s=900), MeterEvents.concat(all_events)


def test_a_seed_gives_the_same_reads_and_events_and_another_seed_does_not() -> None:
    (r1, e1), (r2, e2), (r3, _) = run_fleet(1), run_fleet(1), run_fleet(2)
    for name in ("meter", "interval_start_us", "energy_delivered_wh", "voltage_v", "quality"):
        np.testing.assert_array_equal(getattr(r1, name), getattr(r2, name))
    for name in ("meter", "at_us", "kind", "sent_at_us"):
        np.testing.assert_array_equal(getattr(e1, name), getattr(e2, name))
    assert not np.array_equal(r1.energy_delivered_wh, r3.energy_delivered_wh)


def test_bad_inputs_are_refused_with_the_argument_named() -> None:
    fleet = fleet_of(3)
    with pytest.raises(DeviceInputError, match="p_w must have shape"):
        fleet.measure(
            interval_start_at=START, p_w=np.zeros(4), q_var=np.zeros(3), voltage_v=np.zeros(3), energized=np.ones(3)
        )
    with pytest.raises(DeviceInputError, match="voltage_v has 1 non-finite"):
        measure(fleet, 0, p_w=0.0, voltage_v=np.array([230.0, np.nan, 230.0]))
    with pytest.raises(DeviceInputError, match="outage_s"):
        measure(fleet, 0, p_w=0.0, outage_s=np.array([0.0, 901.0, 0.0]))
    with pytest.raises(DeviceInputError, match="timezone-aware"):
        fleet.measure(
            interval_start_at=dt.datetime(2026, 1, 1),
            p_w=np.zeros(3),
            q_var=np.zeros(3),
            voltage_v=np.zeros(3),
            energized=np.ones(3, bool),
        )
    measure(fleet, 5, p_w=0.0)
    with pytest.raises(IntervalOutOfOrder):
        measure(fleet, 5, p_w=0.0)
    with pytest.raises(IntervalOutOfOrder):
        fleet.remote_disconnect([0], START)
    with pytest.raises(UnknownDevice, match=r"\[3\]"):
        fleet.remote_disconnect([3], START + 6 * STEP)
    with pytest.raises(UnknownDevice, match="meter-9"):
        fleet.index_of(["meter-2", "meter-9"])
    assert fleet.index_of(["meter-2", "meter-0"]).tolist() == [2, 0]
    with pytest.raises(DeviceConfigError, match="tamper_rate_per_day"):
        MeterConfig(tamper_rate_per_day=-1.0)
    with pytest.raises(DeviceConfigError, match="median"):
        Distribution.lognormal(0.0, 1.0)
