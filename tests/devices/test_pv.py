"""PV inverters follow IEEE 1547-2018 volt-var (Cat B) and volt-watt, and never exceed their VA rating."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gridloom.devices.pv import PvFleet, VoltVarCurve, VoltWattCurve, volt_var_q_pu, volt_watt_p_pu
from gridloom.errors import DeviceConfigError, DeviceInputError, UnknownDevice

VA = 5_000.0


def _one(**kwargs) -> PvFleet:
    return PvFleet(np.array([VA]), **kwargs)


# (voltage pu, expected Q as a fraction of rated VA): the Cat B breakpoints, points between
# them (linear interpolation by hand) and the flat ends.
VOLT_VAR_CASES = [
    (0.92, 0.44),
    (0.98, 0.0),
    (1.02, 0.0),
    (1.08, -0.44),
    (0.95, 0.22),  # half-way from V1 to V2
    (0.935, 0.33),  # a quarter of the way from V1 to V2
    (1.00, 0.0),  # in the deadband
    (1.05, -0.22),  # half-way from V3 to V4
    (1.065, -0.33),
    (0.88, 0.44),  # below V1: held at Q1
    (1.15, -0.44),  # above V4: held at Q4
]


@pytest.mark.parametrize(("v_pu", "q_frac"), VOLT_VAR_CASES)
def test_volt_var_follows_the_category_b_curve(v_pu: float, q_frac: float) -> None:
    fleet = _one(volt_watt_enabled=False)
    p, q = fleet.dispatch(available_p_w=np.array([0.0]), voltage_pu=np.array([v_pu]))
    assert q[0] == pytest.approx(q_frac * VA, abs=1e-6)
    assert p[0] == 0.0
    assert volt_var_q_pu(v_pu) == pytest.approx(q_frac, abs=1e-12)


def test_positive_q_injects_when_the_voltage_is_low_and_absorbs_when_high() -> None:
    fleet = _one()
    _, q = fleet.dispatch(available_p_w=np.zeros(2), voltage_pu=np.array([0.93, 1.07]))
    assert q[0] > 0 > q[1]


# (voltage pu, expected P limit as a fraction of rated power) for a generation-only unit
VOLT_WATT_CASES = [(1.00, 1.0), (1.06, 1.0), (1.07, 0.8), (1.08, 0.6), (1.09, 0.4), (1.10, 0.2), (1.14, 0.2)]


@pytest.mark.parametrize(("v_pu", "p_frac"), VOLT_WATT_CASES)
def test_volt_watt_curtails_above_1_06_pu(v_pu: float, p_frac: float) -> None:
    fleet = _one(volt_var_enabled=False)
    p, q = fleet.dispatch(available_p_w=np.array([VA]), voltage_pu=np.array([v_pu]))
    assert p[0] == pytest.approx(p_frac * VA, rel=1e-9)
    assert q[0] == 0.0
    assert volt_watt_p_pu(v_pu) == pytest.approx(p_frac)


def test_volt_watt_goes_to_zero_for_units_that_can_absorb_active_power() -> None:
    fleet = PvFleet(np.array([VA, VA]), can_absorb_p=np.array([False, True]), volt_var_enabled=False)
    p, _ = fleet.dispatch(available_p_w=np.full(2, VA), voltage_pu=np.full(2, 1.10))
    assert p == pytest.approx([0.2 * VA, 0.0])
    p, _ = fleet.dispatch(available_p_w=np.full(2, VA), voltage_pu=np.full(2, 1.08))
    assert p == pytest.approx([0.6 * VA, 0.5 * VA])


def test_volt_watt_only_limits_it_never_raises_output_above_what_the_sun_gives() -> None:
    fleet = _one(volt_var_enabled=False)
    p, _ = fleet.dispatch(available_p_w=np.array([1_000.0]), voltage_pu=np.array([1.08]))
    assert p[0] == 1_000.0  # the 60 % limit (3 kW) is above the available 1 kW


def test_reactive_power_has_priority_within_the_va_rating() -> None:
    fleet = _one()
    p, q = fleet.dispatch(available_p_w=np.array([VA]), voltage_pu=np.array([0.90]))
    assert q[0] == pytest.approx(0.44 * VA)
    assert p[0] == pytest.approx(np.sqrt(1 - 0.44**2) * VA)  # about 89.8 % of the sun's power


@given(
    st.lists(st.floats(0.80, 1.20), min_size=1, max_size=50),
    st.floats(0.0, 1.5),
    st.floats(0.5, 1.5),
)
def test_the_va_rating_is_never_exceeded(voltages: list[float], sun: float, va_ratio: float) -> None:
    n = len(voltages)
    rated = np.full(n, 4_000.0)
    fleet = PvFleet(rated, inverter_va=rated * va_ratio)
    p, q = fleet.dispatch(available_p_w=np.full(n, sun * 4_000.0), voltage_pu=np.array(voltages))
    assert np.all(p * p + q * q <= fleet.inverter_va**2 * (1 + 1e-12))
    assert np.all(p >= 0)
    assert np.all(p <= np.minimum(rated, sun * 4_000.0) + 1e-9)


def test_a_large_random_fleet_stays_within_va_and_broadcasts_over_steps() -> None:
    rng = np.random.default_rng(7)
    n, steps = 10_000, 4
    rated = rng.uniform(2_000, 10_000, n)
    fleet = PvFleet(rated, inverter_va=rated * rng.uniform(0.9, 1.2, n))
    voltage = rng.uniform(0.85, 1.15, (steps, n))
    p, q = fleet.dispatch(available_p_w=rng.uniform(0, 1.2, (steps, n)) * rated, voltage_pu=voltage)
    assert p.shape == q.shape == (steps, n)
    assert np.all(np.hypot(p, q) <= fleet.inverter_va * (1 + 1e-12))
    one_p, one_q = fleet.dispatch(
        available_p_w=np.asarray(rng.uniform(0, 1.2, n) * rated), voltage_pu=np.asarray(voltage[2])
    )
    assert one_p.shape == (n,)
    assert np.array_equal(one_q, fleet.dispatch(available_p_w=np.zeros(n), voltage_pu=voltage[2])[1])


def test_a_de_energised_inverter_ceases_to_energise() -> None:
    fleet = PvFleet(np.full(2, VA))
    p, q = fleet.dispatch(available_p_w=np.full(2, VA), voltage_pu=np.array([0.0, 1.0]))
    assert p.tolist() == [0.0, VA]
    assert q.tolist() == [0.0, 0.0]


def test_commands_change_modes_curves_and_limits_of_the_units_named_only() -> None:
    fleet = PvFleet(np.full(3, VA))
    fleet.set_p_limit([1], 1_500.0)
    fleet.set_modes(np.array([False, False, True]), volt_var=False)
    fleet.set_volt_var([0], VoltVarCurve(q1_pu=0.30, q4_pu=-0.30))
    p, q = fleet.dispatch(available_p_w=np.full(3, VA), voltage_pu=np.full(3, 0.90))
    assert q == pytest.approx([0.30 * VA, 0.44 * VA, 0.0])
    assert p[1] == 1_500.0
    assert p[2] == VA
    fleet.set_p_limit([1], np.inf)
    fleet.set_volt_watt([2], VoltWattCurve(v1_pu=1.03, v2_pu=1.07))
    p, _ = fleet.dispatch(available_p_w=np.full(3, VA), voltage_pu=np.full(3, 1.05))
    assert p[2] == pytest.approx(0.6 * VA)
    assert p[1] == pytest.approx(np.sqrt(1 - 0.22**2) * VA)  # Q -0.22 at 1.05, reactive priority
    assert not fleet.volt_var_enabled.flags.writeable  # settings change by command only


def test_bad_settings_and_commands_are_refused() -> None:
    with pytest.raises(DeviceConfigError):
        VoltVarCurve(v2_pu=0.90)
    with pytest.raises(DeviceConfigError):
        VoltWattCurve(p2_pu=1.5)
    with pytest.raises(DeviceConfigError):
        PvFleet(np.array([-1.0]))
    fleet = PvFleet(np.full(2, VA))
    with pytest.raises(UnknownDevice):
        fleet.set_p_limit([5], 100.0)
    with pytest.raises(DeviceInputError):
        fleet.set_p_limit([0], np.nan)
    with pytest.raises(DeviceInputError):
        fleet.dispatch(available_p_w=np.full(2, VA), voltage_pu=np.array([1.0, np.nan]))


def test_units_with_different_curves_each_follow_their_own() -> None:
    rng = np.random.default_rng(3)
    curves = [
        VoltVarCurve(v1_pu=0.90 + d, v2_pu=0.97 + d, v3_pu=1.03 - d, v4_pu=1.10 - d, q1_pu=q, q4_pu=-q)
        for d, q in zip(rng.uniform(0, 0.02, 20), rng.uniform(0.1, 0.6, 20), strict=True)
    ]
    fleet = PvFleet(np.full(20, VA), volt_watt_enabled=False)
    for i, curve in enumerate(curves):
        fleet.set_volt_var([i], curve)
    v = rng.uniform(0.85, 1.15, (5, 20))
    _, q = fleet.dispatch(available_p_w=np.zeros((5, 20)), voltage_pu=v)
    expected = np.stack([volt_var_q_pu(v[:, i], c) * VA for i, c in enumerate(curves)], axis=1)
    assert q == pytest.approx(expected)
