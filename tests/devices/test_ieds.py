"""Field IEDs change state on command (and by their own voltage control), and say when."""

import datetime as dt

import numpy as np
import pytest

from gridloom.devices.ieds import (
    TAP_MIN,
    CapacitorSpec,
    Cause,
    IedEventKind,
    IedFleet,
    IedKind,
    RegulatorSpec,
    SwitchSpec,
)
from gridloom.errors import DeviceConfigError, DeviceInputError, UnknownDevice
from gridloom.scenario.clock import SimulationClock

START = dt.datetime(2024, 6, 1, 12, tzinfo=dt.UTC)
START_US = int(START.timestamp() * 1e6)
N_NODES, N_LINES = 6, 5
VN_V = np.array([20_000.0, 20_000.0, 20_000.0, 400.0, 400.0, 400.0])


def _fleet(clock: SimulationClock, *, offset_sigma_s: float = 0.0, seed: int = 0, specs=None) -> IedFleet:
    specs = specs or [
        SwitchSpec(IedKind.BREAKER, node=0, line=0, switch_row=2),
        SwitchSpec(IedKind.RECLOSER, node=1, line=1, switch_row=0),
        SwitchSpec(IedKind.SWITCH, node=2, line=2, switch_row=4, closed=False),
        CapacitorSpec(node=2, q_rated_var=600_000.0, v_on_pu=0.97, v_off_pu=1.03, delay_s=60.0),
        RegulatorSpec(node=1, line=1, v_set_pu=1.0, bandwidth_pu=0.02, delay_s=30.0, intertap_delay_s=5.0),
    ]
    return IedFleet(
        specs,
        node_vn_v=VN_V,
        clock=clock,
        rng=np.random.default_rng(seed),
        ids=[f"dev-{i}" for i in range(len(specs))],
        clock_offset_sigma_s=offset_sigma_s,
        clock_drift_ppm_sigma=0.0 if offset_sigma_s == 0 else 5.0,
    )


def _flow(v: float = 1.0) -> dict[str, np.ndarray]:
    return {
        "node_voltage_pu": np.full(N_NODES, v),
        "line_current_a": np.array([100.0, 80.0, 60.0, 40.0, 20.0]),
        "line_p_w": np.array([3e6, 2.5e6, 2e6, 1e4, 5e3]),
        "line_q_var": np.array([1e6, 8e5, 6e5, 2e3, 1e3]),
    }


def test_commands_change_switch_states_and_nothing_else_does() -> None:
    clock = SimulationClock(START)
    fleet = _fleet(clock)
    before = fleet.closed.copy()
    for v in (0.0, 0.9, 1.0, 1.2):  # measuring and local control leave switching devices alone
        fleet.measure(**_flow(v))
        fleet.control(900.0, node_voltage_pu=np.full(N_NODES, v))
    assert np.array_equal(fleet.closed[:3], before[:3])
    local = fleet.drain_events()  # only the capacitor bank and the regulator acted by themselves
    assert set(fleet.kind[local.ied].tolist()) == {IedKind.CAPACITOR, IedKind.REGULATOR}
    assert set(local.cause.tolist()) == {Cause.LOCAL_CONTROL}
    assert fleet.open(["dev-0", "dev-1"]).tolist() == [0, 1]
    assert fleet.close([2]).tolist() == [2]
    assert fleet.open([0]).size == 0  # already open: no change, no event
    assert fleet.closed[:3].tolist() == [False, False, True]
    events = fleet.drain_events()
    assert events.ied.tolist() == [0, 1, 2]
    assert events.kind.tolist() == [IedEventKind.OPENED, IedEventKind.OPENED, IedEventKind.CLOSED]
    assert events.value.tolist() == [0, 0, 1]
    assert set(events.cause.tolist()) == {Cause.COMMAND}
    assert np.all(events.at_us == START_US)
    with pytest.raises(ValueError, match="read-only"):
        fleet.closed[0] = True


def test_protection_operations_are_commands_with_their_cause() -> None:
    clock = SimulationClock(START)
    fleet = _fleet(clock)
    clock.set(START + dt.timedelta(seconds=1.5))
    fleet.open([1], cause=Cause.PROTECTION)
    events = fleet.drain_events()
    assert events.cause.tolist() == [Cause.PROTECTION]
    assert events.at_us.tolist() == [START_US + 1_500_000]


def test_the_power_flow_sees_the_switch_states() -> None:
    fleet = _fleet(SimulationClock(START))
    base = np.ones(5, dtype=bool)
    assert fleet.switch_closed(base).tolist() == [True, True, True, True, False]
    fleet.open([0])
    fleet.close([2])
    assert fleet.switch_closed(base).tolist() == [True, True, False, True, True]
    with pytest.raises(DeviceInputError):
        fleet.switch_closed(np.ones(3, dtype=bool))


def test_measurements_come_from_the_flow_arrays_with_the_ied_clock() -> None:
    clock = SimulationClock(START, step_s=900.0)
    fleet = _fleet(clock)
    m = fleet.measure(**_flow(1.01))
    assert np.all(m.at_us == START_US)
    assert m.current_a[:2].tolist() == [100.0, 80.0]
    assert m.current_a[2] == 0.0  # the open switch carries nothing, whatever the arrays say
    assert m.p_w[2] == 0.0
    assert m.q_var[2] == 0.0
    assert m.voltage_v[0] == pytest.approx(1.01 * 20_000.0)
    assert m.p_w[1] == 2.5e6
    assert m.q_var[0] == 1e6
    assert m.state.tolist() == [1, 1, 0, 0, 0]  # capacitor out, regulator at tap 0
    assert m.kind.tolist() == [1, 2, 3, 4, 5]
    without_pq = fleet.measure(node_voltage_pu=np.ones(N_NODES), line_current_a=np.ones(N_LINES))
    assert np.isnan(without_pq.p_w[0])
    clock.set(START + dt.timedelta(seconds=900))
    later = fleet.measure(**_flow())
    assert np.all(later.at_us == START_US + 900_000_000)


def test_each_ied_keeps_its_own_time() -> None:
    clock = SimulationClock(START, step_s=3_600.0)
    a = _fleet(clock, offset_sigma_s=0.5, seed=1)
    b = _fleet(clock, offset_sigma_s=0.5, seed=1)
    m = a.measure(**_flow())
    assert len(set(m.at_us.tolist())) == a.n  # no two agree
    assert np.all(np.abs(m.at_us - START_US) < 3_000_000)
    assert np.array_equal(m.at_us, b.measure(**_flow()).at_us)  # deterministic for a seed
    clock.set(START + dt.timedelta(days=10))
    drift_us = a.measure(**_flow()).at_us - (START_US + 10 * 86_400_000_000) - (m.at_us - START_US)
    assert np.all(drift_us != 0)
    assert np.all(np.abs(drift_us) < 86_400 * 10 * 30)


def test_a_capacitor_bank_switches_in_only_after_low_voltage_lasts_the_delay() -> None:
    clock = SimulationClock(START)
    fleet = _fleet(clock)
    fleet.set_auto(["dev-4"], False)  # keep the regulator out of it
    low = np.full(N_NODES, 0.95)
    fleet.control(40.0, node_voltage_pu=low)
    assert not fleet.closed[3]
    fleet.control(10.0, node_voltage_pu=np.full(N_NODES, 1.0))  # back inside the band: timer restarts
    clock.set(START + dt.timedelta(seconds=50))
    fleet.control(40.0, node_voltage_pu=low)
    assert not fleet.closed[3]
    clock.set(START + dt.timedelta(seconds=90))
    fleet.control(40.0, node_voltage_pu=low)  # 80 s below: in after 60 s, at 50 + 60 s
    assert fleet.closed[3]
    events = fleet.drain_events()
    assert events.ied.tolist() == [3]
    assert events.cause.tolist() == [Cause.LOCAL_CONTROL]
    assert events.kind.tolist() == [IedEventKind.CLOSED]
    assert events.at_us.tolist() == [START_US + 110_000_000]
    assert fleet.capacitor_q_var(np.full(N_NODES, 0.95))[3] == pytest.approx(600_000.0 * 0.95**2)
    assert fleet.node_q_var(1.0)[2] == pytest.approx(600_000.0)
    m = fleet.measure(**_flow(1.0))
    assert m.q_var[3] == pytest.approx(600_000.0)
    assert m.current_a[3] == pytest.approx(600_000.0 / (np.sqrt(3) * 20_000.0))


def test_a_capacitor_bank_holds_inside_its_deadband_and_leaves_above_it() -> None:
    clock = SimulationClock(START)
    specs = [CapacitorSpec(node=2, q_rated_var=300_000.0, v_on_pu=0.97, v_off_pu=1.03, delay_s=60.0, closed=True)]
    fleet = _fleet(clock, specs=specs)
    for v in (0.98, 1.00, 1.02, 1.029):
        fleet.control(3_600.0, node_voltage_pu=np.full(N_NODES, v))
    assert fleet.closed[0]
    fleet.control(59.0, node_voltage_pu=np.full(N_NODES, 1.04))
    assert fleet.closed[0]
    fleet.control(900.0, node_voltage_pu=np.full(N_NODES, 1.04))
    assert not fleet.closed[0]
    fleet.control(900.0, node_voltage_pu=np.full(N_NODES, 1.04))  # already out: nothing more
    assert fleet.drain_events().kind.tolist() == [IedEventKind.OPENED]
    fleet.set_auto([0], False)
    fleet.control(900.0, node_voltage_pu=np.full(N_NODES, 0.9))
    assert not fleet.closed[0]  # manual: only commands move it


def test_a_regulator_taps_only_after_the_voltage_stays_out_of_band_for_the_delay() -> None:
    clock = SimulationClock(START)
    fleet = _fleet(clock)
    high = np.full(N_NODES, 1.04)
    fleet.control(20.0, node_voltage_pu=high)
    fleet.control(9.0, node_voltage_pu=high)
    assert fleet.tap[4] == 0  # 29 s out of band, delay 30 s
    fleet.control(1.0, node_voltage_pu=np.full(N_NODES, 1.005))  # inside 1.0 +- 0.01
    clock.set(START + dt.timedelta(seconds=30))
    fleet.control(20.0, node_voltage_pu=high)
    assert fleet.tap[4] == 0  # the timer restarted
    fleet.drain_events()
    clock.set(START + dt.timedelta(seconds=50))
    fleet.control(900.0, node_voltage_pu=high)
    # 1.04 * (1 - 0.00625 k) <= 1.01 needs k = 5: first after 10 more s, then every 5 s
    assert fleet.tap[4] == -5
    events = fleet.drain_events()
    assert events.value.tolist() == [-1, -2, -3, -4, -5]
    offsets_s = (events.at_us - START_US) / 1e6
    assert offsets_s.tolist() == [60.0, 65.0, 70.0, 75.0, 80.0]
    assert fleet.tap_ratio()[4] == pytest.approx(1 - 5 * 0.00625)
    fleet.control(900.0, node_voltage_pu=high * fleet.tap_ratio()[4])  # the next flow is in band
    assert fleet.tap[4] == -5
    fleet.control(36_000.0, node_voltage_pu=np.full(N_NODES, 1.5))
    assert fleet.tap[4] == TAP_MIN  # stops at the end of its range


def test_sequential_regulators_wait_the_full_delay_for_each_step() -> None:
    clock = SimulationClock(START)
    fleet = _fleet(clock, specs=[RegulatorSpec(node=0, delay_s=30.0)])
    fleet.control(100.0, node_voltage_pu=np.full(N_NODES, 0.96))
    assert fleet.tap[0] == 3  # raised at 30, 60, 90 s (and 0.96 * 1.01875 is still low)
    fleet.set_tap([0], 2)
    assert fleet.drain_events().cause.tolist()[-1] == Cause.COMMAND
    fleet.set_voltage_setpoint([0], 0.97)  # conservation voltage reduction: 0.96 * 1.0125 is in band
    fleet.control(900.0, node_voltage_pu=np.full(N_NODES, 0.96) * 1.0125)
    assert fleet.tap[0] == 2


def test_wrong_commands_and_settings_are_refused() -> None:
    fleet = _fleet(SimulationClock(START))
    with pytest.raises(DeviceInputError):
        fleet.open([4])  # a regulator has no contact to open
    with pytest.raises(DeviceInputError):
        fleet.set_tap([0], 1)  # a breaker has no taps
    with pytest.raises(DeviceInputError):
        fleet.set_tap([4], 17)
    with pytest.raises(UnknownDevice):
        fleet.open(["dev-9"])
    with pytest.raises(UnknownDevice):
        fleet.close([7])
    with pytest.raises(DeviceInputError):
        fleet.control(900.0, node_voltage_pu=np.ones(3))
    with pytest.raises(DeviceConfigError):
        _fleet(SimulationClock(START), specs=[CapacitorSpec(node=0, q_rated_var=1.0, v_on_pu=1.0, v_off_pu=0.99)])
    with pytest.raises(DeviceConfigError):
        _fleet(SimulationClock(START), specs=[SwitchSpec(IedKind.CAPACITOR, node=0)])
    with pytest.raises(DeviceConfigError):
        _fleet(SimulationClock(START), specs=[SwitchSpec(IedKind.BREAKER, node=N_NODES)])
