"""Distribution state estimation: exact readings recover the power flow, noisy ones are improved on."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from gridloom.errors import GridInputError, NotObservable
from gridloom.grid import (
    DEFAULT_DISTRICT,
    District,
    Measurements,
    PowerFlowResult,
    estimate_state,
    load_district,
    measurements_from_powerflow,
    run_batch,
)

LV = "1-LV-rural1--0-sw"


@pytest.fixture(scope="module")
def lv() -> District:
    return load_district(LV)


@pytest.fixture(scope="module")
def mvlv() -> District:
    return load_district(DEFAULT_DISTRICT)


def truth(
    district: District, n: int, seed: int, switch_closed: np.ndarray | None = None
) -> tuple[PowerFlowResult, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    factor = rng.uniform(0.1, 1.0, (n, district.n_customers))
    q = district.customer_q_ref_var * factor
    gen = district.gen_p_ref_w * rng.uniform(0.0, 0.8, (n, district.n_gens))
    gq = np.zeros_like(gen)
    result = run_batch(
        district,
        load_p_w=district.customer_p_ref_w * factor,
        load_q_var=q,
        gen_p_w=gen,
        gen_q_var=gq,
        switch_closed=switch_closed,
        line_flows=True,
    )
    return result, q, gq


def feeder_heads(district: District) -> np.ndarray:
    """Lines leaving the MV busbar(s) of the HV/MV substation."""
    substation = district.node_volt_level[district.trafo_hv_node] < 5
    busbars = np.unique(district.trafo_lv_node[substation])
    return np.flatnonzero(np.isin(district.line_from_node, busbars))


def test_exact_measurements_recover_the_power_flow_lv(lv: District) -> None:
    result, q, gq = truth(lv, 3, seed=1)
    estimate = estimate_state(lv, measurements_from_powerflow(lv, result, load_q_var=q, gen_q_var=gq))
    assert np.abs(estimate.node_voltage_pu - result.node_voltage_pu).max() < 1e-6
    np.testing.assert_allclose(estimate.customer_p_w, result.customer_p_w, atol=1.0)
    np.testing.assert_allclose(estimate.source_p_w, result.source_p_w, atol=10.0)


def test_exact_measurements_recover_the_power_flow_with_switching(mvlv: District) -> None:
    # Scenario 1: a feeder section opened; scenario 2: the HV bus coupler opened (a bus-bus
    # switch: the estimator then runs a second batch with that configuration).
    switch_closed = np.tile(mvlv.switch_closed_normal, (3, 1))
    lbs = np.flatnonzero(mvlv.switch_closed_normal & (mvlv.net.switch["type"].to_numpy() == "LBS"))
    switch_closed[1, lbs[3]] = False
    switch_closed[2, mvlv.pgm.link_switch[0]] = False
    result, q, gq = truth(mvlv, 3, seed=2, switch_closed=switch_closed)
    heads = feeder_heads(mvlv)
    measured = measurements_from_powerflow(mvlv, result, load_q_var=q, gen_q_var=gq, branch_lines=heads)
    estimate = estimate_state(mvlv, measured, switch_closed=switch_closed)
    np.testing.assert_array_equal(estimate.node_energized, result.node_energized)
    assert np.abs(estimate.node_voltage_pu - result.node_voltage_pu).max() < 1e-6
    np.testing.assert_allclose(estimate.line_p_from_w[:, heads], result.line_p_from_w[:, heads], atol=10.0)
    live = result.customer_energized
    np.testing.assert_allclose(estimate.customer_p_w[live], result.customer_p_w[live], atol=1.0)


def test_noisy_meters_are_improved_on(mvlv: District) -> None:
    result, q, gq = truth(mvlv, 2, seed=3)
    rng = np.random.default_rng(42)
    sigma_pu = 0.005  # a 0.5 % meter voltage error (1 sigma)
    measured = measurements_from_powerflow(
        mvlv, result, load_q_var=q, gen_q_var=gq, rng=rng, voltage_sigma_pu=sigma_pu, power_sigma_w=100.0
    )
    estimate = estimate_state(mvlv, measured)
    nodes = np.asarray(measured.voltage_node)
    true_v = result.node_voltage_pu[:, nodes]
    raw_rms = np.sqrt(np.mean((np.asarray(measured.voltage_pu) - true_v) ** 2))
    estimate_rms = np.sqrt(np.mean((estimate.node_voltage_pu[:, nodes] - true_v) ** 2))
    assert raw_rms == pytest.approx(sigma_pu, rel=0.05)
    assert estimate_rms < 0.2 * raw_rms
    all_nodes_rms = np.sqrt(np.mean((estimate.node_voltage_pu - result.node_voltage_pu) ** 2))
    assert all_nodes_rms < 0.2 * sigma_pu


def test_feeder_head_flows_help_when_few_meters_report(mvlv: District) -> None:
    result, q, gq = truth(mvlv, 2, seed=4)
    pseudo = {"pseudo_customer_p_w": 0.55 * mvlv.customer_p_ref_w, "pseudo_gen_p_w": 0.4 * mvlv.gen_p_ref_w}
    substation = Measurements(
        voltage_node=mvlv.source_node, voltage_pu=result.node_voltage_pu[:, mvlv.source_node], voltage_sigma_pu=1e-3
    )
    with_scada = measurements_from_powerflow(
        mvlv, result, load_q_var=q, gen_q_var=gq, customers=[], with_gens=False, branch_lines=feeder_heads(mvlv)
    )

    def rms(estimate_v: np.ndarray) -> float:
        return float(np.sqrt(np.mean((estimate_v - result.node_voltage_pu) ** 2)))

    blind = rms(estimate_state(mvlv, substation, **pseudo).node_voltage_pu)
    informed = rms(estimate_state(mvlv, with_scada, **pseudo).node_voltage_pu)
    assert informed < 0.6 * blind


def test_without_a_voltage_measurement_the_state_is_not_observable(lv: District) -> None:
    result, q, gq = truth(lv, 1, seed=5)
    measured = measurements_from_powerflow(lv, result, load_q_var=q, gen_q_var=gq)
    no_voltage = Measurements(
        power_customer=measured.power_customer, power_p_w=measured.power_p_w, power_q_var=measured.power_q_var
    )
    with pytest.raises(NotObservable):
        estimate_state(lv, no_voltage)


def test_bad_measurements_are_refused_by_name(lv: District) -> None:
    with pytest.raises(GridInputError, match="voltage_node"):
        estimate_state(lv, Measurements(voltage_node=[lv.n_nodes], voltage_pu=[1.0]))
    with pytest.raises(GridInputError, match="voltage_pu"):
        estimate_state(lv, Measurements(voltage_node=[0, 1], voltage_pu=[1.0]))
    with pytest.raises(GridInputError, match="voltage_pu must be positive"):
        estimate_state(lv, Measurements(voltage_node=[0], voltage_pu=[0.0]))
    measured = Measurements(voltage_node=[0], voltage_pu=[1.0], power_customer=[0], power_p_w=[1.0])
    with pytest.raises(GridInputError, match="power_sigma_w"):
        estimate_state(lv, dataclasses.replace(measured, power_q_var=[0.0], power_sigma_w=0.0))
