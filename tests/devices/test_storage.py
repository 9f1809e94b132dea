"""Batteries keep their state of charge in bounds, account for every Wh, and report ES-16b capability."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gridloom.devices.storage import HOME_BATTERY, UTILITY_BATTERY, StorageFleet, StorageSpec
from gridloom.errors import DeviceConfigError, DeviceInputError, UnknownDevice


def _home(n: int = 1, soc_frac: float = 0.5, **overrides) -> StorageFleet:
    spec = HOME_BATTERY
    args = {
        "capacity_wh": np.full(n, spec.capacity_wh),
        "max_charge_w": spec.max_charge_w,
        "max_discharge_w": spec.max_discharge_w,
        "inverter_va": spec.inverter_va,
        "soc_wh": np.full(n, soc_frac * spec.capacity_wh),
        "soc_min_frac": spec.soc_min_frac,
        "soc_max_frac": spec.soc_max_frac,
        "round_trip_efficiency": spec.round_trip_efficiency,
    }
    args.update(overrides)
    return StorageFleet(**args)


commands = st.lists(
    st.tuples(
        st.lists(st.floats(-2e6, 2e6, allow_nan=False), min_size=3, max_size=3),
        st.lists(st.floats(-2e6, 2e6, allow_nan=False), min_size=3, max_size=3),
        st.floats(1.0, 14_400.0),
    ),
    min_size=1,
    max_size=40,
)


@settings(max_examples=200, deadline=None)
@given(commands, st.floats(0.0, 1.0))
def test_state_of_charge_never_leaves_its_band_under_random_commands(sequence, start: float) -> None:
    fleet = StorageFleet.from_specs([(HOME_BATTERY, 2), (UTILITY_BATTERY, 1)], rng=np.random.default_rng(0))
    fleet = StorageFleet(
        capacity_wh=fleet.capacity_wh,
        max_charge_w=fleet.max_charge_w,
        max_discharge_w=fleet.max_discharge_w,
        inverter_va=fleet.inverter_va,
        soc_wh=fleet.soc_min_wh + start * (fleet.soc_max_wh - fleet.soc_min_wh),
        soc_min_frac=[0.05, 0.05, 0.10],
        soc_max_frac=[0.95, 0.95, 0.90],
        fade_per_cycle=[4e-5, 1e-2, 4e-5],  # one battery ages very fast: the band shrinks under it
        self_discharge_per_day=[0.001, 0.5, 0.0005],
    )
    health = fleet.health.copy()
    for p_cmd, q_cmd, dt_s in sequence:
        accepted = fleet.command(np.array(p_cmd), q_var=np.array(q_cmd))
        assert np.all(accepted <= fleet.max_discharge_w)
        assert np.all(accepted >= -fleet.max_charge_w)
        p = fleet.step(dt_s)
        assert np.all(fleet.soc_wh >= fleet.soc_min_wh)
        assert np.all(fleet.soc_wh <= fleet.soc_max_wh)
        assert np.all(np.abs(p) <= np.abs(accepted) + 1e-9)  # never more than asked, same direction
        assert np.all(p * accepted >= 0)
        assert np.all(fleet.p_w**2 + fleet.q_var**2 <= fleet.inverter_va**2 * (1 + 1e-12))
        assert np.all(fleet.health <= health)
        health = fleet.health.copy()


def test_energy_is_accounted_with_the_round_trip_efficiency() -> None:
    fleet = _home(self_discharge_per_day=0.0, fade_per_cycle=0.0)
    soc0 = fleet.soc_wh[0]
    fleet.command(np.array([-4_000.0]))
    assert fleet.step(3_600.0)[0] == -4_000.0
    eta = np.sqrt(0.9)
    assert fleet.soc_wh[0] == pytest.approx(soc0 + 4_000.0 * eta)
    # Discharge until the floor; everything stored above the start comes back times eta.
    fleet.command(np.array([2_000.0]))
    delivered = 0.0
    while fleet.soc_wh[0] > soc0 + 1e-9:
        delivered += fleet.step(60.0)[0] * 60.0 / 3_600.0
        if fleet.soc_wh[0] < soc0:
            break
    assert fleet.energy_charged_wh[0] == pytest.approx(4_000.0)
    assert fleet.energy_discharged_wh[0] == pytest.approx(delivered)
    stored_back = soc0 + 4_000.0 * eta - fleet.soc_wh[0]
    assert delivered == pytest.approx(stored_back * eta)


def test_a_round_trip_returns_the_round_trip_efficiency() -> None:
    fleet = _home(soc_frac=0.05, self_discharge_per_day=0.0, fade_per_cycle=0.0)
    fleet.command(np.array([-5_000.0]))
    for _ in range(40):
        fleet.step(900.0)
    assert fleet.soc_wh[0] == pytest.approx(fleet.soc_max_wh[0])
    fleet.command(np.array([5_000.0]))
    for _ in range(40):
        fleet.step(900.0)
    assert fleet.soc_wh[0] == pytest.approx(fleet.soc_min_wh[0])
    ratio = fleet.energy_discharged_wh[0] / fleet.energy_charged_wh[0]
    assert ratio == pytest.approx(0.90)


def test_setpoints_change_only_by_command_and_output_falls_only_at_the_edges() -> None:
    fleet = _home(soc_frac=0.5)  # about 5.8 kWh to give: four full 15-minute steps at 5 kW
    fleet.command(np.array([5_000.0]))
    outputs = [fleet.step(900.0)[0] for _ in range(8)]
    assert outputs[:4] == [5_000.0] * 4
    assert 0.0 < outputs[4] < 5_000.0  # the last bit above the floor
    assert outputs[5:] == [0.0] * 3  # empty: holds the floor
    assert fleet.soc_wh[0] == pytest.approx(fleet.soc_min_wh[0])
    assert fleet.setpoint_w[0] == 5_000.0  # the operator's decision still stands
    with pytest.raises(ValueError, match="read-only"):
        fleet.setpoint_w[0] = 0.0
    fleet.command(np.array([-1_000.0]), units=[0])
    assert fleet.step(900.0)[0] == -1_000.0


def test_commands_are_clipped_to_ratings_and_bad_ones_refused() -> None:
    fleet = _home(n=3)
    accepted = fleet.command(np.array([1e9, -1e9, 300.0]), q_var=np.array([1e9, 0.0, -1e9]))
    assert accepted.tolist() == [5_000.0, -5_000.0, 300.0]
    assert fleet.setpoint_var.tolist() == [5_800.0, 0.0, -5_800.0]
    fleet.step(60.0)
    assert fleet.q_var[0] == pytest.approx(np.sqrt(5_800.0**2 - 5_000.0**2))  # active power has priority
    assert fleet.q_var[2] == pytest.approx(-np.sqrt(5_800.0**2 - 300.0**2))
    with pytest.raises(DeviceInputError):
        fleet.command(np.array([np.nan, 0.0, 0.0]))
    with pytest.raises(UnknownDevice):
        fleet.command(1.0, units=[3])
    with pytest.raises(DeviceConfigError):
        _home(soc_frac=0.99)  # above soc_max_frac
    with pytest.raises(DeviceConfigError):
        _home(round_trip_efficiency=1.2)


def test_capability_reports_power_energy_and_health_now() -> None:
    fleet = _home(n=2, soc_frac=0.5, self_discharge_per_day=0.0)
    cap = fleet.capability(horizon_s=3_600.0)
    eta = np.sqrt(0.9)
    available = (0.5 - 0.05) * 13_500.0 * eta
    assert cap["energy_available_wh"] == pytest.approx([available, available])
    assert cap["energy_headroom_wh"] == pytest.approx([(0.95 - 0.5) * 13_500.0 / eta] * 2)
    assert cap["discharge_w"].tolist() == [5_000.0, 5_000.0]  # 5.8 kWh left: 5 kW for an hour is fine
    assert cap["soc_frac"] == pytest.approx([0.5, 0.5])
    long = fleet.capability(horizon_s=4 * 3_600.0)
    assert long["discharge_w"] == pytest.approx([available / 4] * 2)
    fleet.command(np.array([3_000.0, 0.0]))
    fleet.step(60.0)
    cap = fleet.capability()
    assert cap["p_w"].tolist() == [3_000.0, 0.0]
    assert cap["q_var_max"] == pytest.approx([np.sqrt(5_800.0**2 - 3_000.0**2), 5_800.0])
    assert cap["health"][0] < 1.0 == cap["health"][1]


def test_health_fades_slowly_with_throughput() -> None:
    fleet = _home(soc_frac=0.05, self_discharge_per_day=0.0)
    for _ in range(100):  # 100 nearly full cycles at 5 kW
        fleet.command(np.array([-5_000.0]))
        for _ in range(12):
            fleet.step(900.0)
        fleet.command(np.array([5_000.0]))
        for _ in range(12):
            fleet.step(900.0)
    cycles = 100 * 0.9  # each cycle moves 90 % of the nameplate in and out
    assert fleet.health[0] == pytest.approx(1.0 - 4e-5 * cycles, rel=1e-3)
    assert fleet.usable_capacity_wh[0] < 13_500.0


def test_self_discharge_drains_slowly_and_stops_at_the_floor() -> None:
    fleet = _home(soc_frac=0.5, self_discharge_per_day=0.01)
    soc0 = fleet.soc_wh[0]
    for _ in range(30):
        fleet.step(86_400.0)
    assert fleet.soc_wh[0] == pytest.approx(soc0 * 0.99**30)
    for _ in range(400):
        fleet.step(86_400.0)
    assert fleet.soc_wh[0] == fleet.soc_min_wh[0]


def test_from_specs_is_deterministic_for_a_seed() -> None:
    a = StorageFleet.from_specs([(HOME_BATTERY, 50), (UTILITY_BATTERY, 2)], rng=np.random.default_rng(3))
    b = StorageFleet.from_specs([(HOME_BATTERY, 50), (UTILITY_BATTERY, 2)], rng=np.random.default_rng(3))
    c = StorageFleet.from_specs([(HOME_BATTERY, 50), (UTILITY_BATTERY, 2)], rng=np.random.default_rng(4))
    assert np.array_equal(a.soc_wh, b.soc_wh)
    assert not np.array_equal(a.soc_wh, c.soc_wh)
    assert a.capacity_wh[-1] == 4_000_000.0
    with pytest.raises(DeviceConfigError):
        StorageFleet.from_specs([], rng=np.random.default_rng(0))
    assert StorageSpec(1.0, 1.0, 1.0, 1.0).round_trip_efficiency == 0.9
