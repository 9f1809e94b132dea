"""Batch power flow: checked against pandapower, energy balance, switching, one batch call."""

from __future__ import annotations

import copy
import warnings

import networkx as nx
import numpy as np
import pytest
from power_grid_model import PowerGridModel

from gridloom.errors import CalculationFailed, GridInputError
from gridloom.grid import DEFAULT_DISTRICT, District, load_district, pandapower_step, pandapower_steps, run_batch
from gridloom.grid.model import LV_VOLT_LEVEL

LV = "1-LV-rural1--0-sw"


@pytest.fixture(scope="module")
def lv() -> District:
    return load_district(LV)


@pytest.fixture(scope="module")
def mvlv() -> District:
    return load_district(DEFAULT_DISTRICT)


def scenarios(district: District, n: int, seed: int) -> dict[str, np.ndarray]:
    """n scenarios of loads between 10 % and 100 % of rated and PV between 0 and 80 %."""
    rng = np.random.default_rng(seed)
    factor = rng.uniform(0.1, 1.0, (n, district.n_customers))
    gen = district.gen_p_ref_w * rng.uniform(0.0, 0.8, (n, district.n_gens))
    return {
        "load_p_w": district.customer_p_ref_w * factor,
        "load_q_var": district.customer_q_ref_var * factor,
        "gen_p_w": gen,
        "gen_q_var": np.zeros_like(gen),
    }


def closed_switch(district: District, kind: str, position: float = 0.5) -> int:
    """A normally closed switch of ``kind`` (CB, LBS, LS), part-way down the list."""
    candidates = np.flatnonzero(district.switch_closed_normal & (district.net.switch["type"].to_numpy() == kind))
    return int(candidates[int(position * (len(candidates) - 1))])


def energized_by_networkx(district: District, switch_closed: np.ndarray) -> np.ndarray:
    """Buses connected to an external grid, from the pandapower tables (independent of gridloom's maps)."""
    net = district.net
    graph = nx.MultiGraph()
    graph.add_nodes_from(net.bus.index)
    switch = net.switch.assign(closed=switch_closed)
    open_ends = set(zip(switch.et[~switch.closed], switch.element[~switch.closed], strict=True))
    for et, table, a, b in (("l", net.line, "from_bus", "to_bus"), ("t", net.trafo, "hv_bus", "lv_bus")):
        for idx, row in table.iterrows():
            if row.in_service and (et, idx) not in open_ends:
                graph.add_edge(row[a], row[b])
    for _, row in switch[(switch.et == "b") & switch.closed].iterrows():
        graph.add_edge(row.bus, row.element)
    live: set[int] = set()
    for bus in net.ext_grid.bus:
        live |= nx.node_connected_component(graph, bus)
    return net.bus.index.isin(list(live))


def test_lv_voltages_match_pandapower(lv: District) -> None:
    inputs = scenarios(lv, 4, seed=1)
    switch_closed = np.tile(lv.switch_closed_normal, (4, 1))
    switch_closed[2, closed_switch(lv, "LS", 0.3)] = False
    result = run_batch(lv, **inputs, switch_closed=switch_closed, source_voltage_pu=np.array([1.0, 1.02, 0.98, 1.05]))
    reference = pandapower_steps(
        lv, **inputs, switch_closed=switch_closed, source_voltage_pu=np.array([1.0, 1.02, 0.98, 1.05])
    )
    assert np.abs(result.node_voltage_pu - reference).max() < 1e-4
    np.testing.assert_array_equal(result.node_energized, reference > 0)
    assert (~result.node_energized[2]).any()


def test_default_district_matches_pandapower_with_a_switch_opened(mvlv: District) -> None:
    inputs = scenarios(mvlv, 2, seed=2)
    switch_closed = np.tile(mvlv.switch_closed_normal, (2, 1))
    switch_closed[1, closed_switch(mvlv, "LBS", 0.4)] = False  # a mid-feeder MV load-break switch
    result = run_batch(mvlv, **inputs, switch_closed=switch_closed)
    for s in range(2):
        reference = pandapower_step(mvlv, **{k: v[s] for k, v in inputs.items()}, switch_closed=switch_closed[s])
        assert np.abs(result.node_voltage_pu[s] - reference).max() < 1e-4
        np.testing.assert_array_equal(result.node_energized[s], reference > 0)
    assert result.node_energized[0].all()
    assert (~result.node_energized[1]).sum() > 10


def test_line_currents_and_losses_match_pandapower(lv: District) -> None:
    import pandapower

    inputs = scenarios(lv, 1, seed=3)
    result = run_batch(lv, **inputs, line_flows=True)
    net = copy.deepcopy(lv.net)
    net.load["p_mw"], net.load["q_mvar"] = inputs["load_p_w"][0] / 1e6, inputs["load_q_var"][0] / 1e6
    net.sgen["p_mw"], net.sgen["q_mvar"] = inputs["gen_p_w"][0] / 1e6, 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        pandapower.runpp(net, numba=False)
    np.testing.assert_allclose(result.line_current_a[0], net.res_line.i_ka.to_numpy() * 1e3, rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(result.line_loading[0], net.res_line.loading_percent.to_numpy() / 100, rtol=1e-3)
    np.testing.assert_allclose(result.line_p_from_w[0], net.res_line.p_from_mw.to_numpy() * 1e6, rtol=1e-4, atol=1.0)
    losses = (net.res_line.pl_mw.sum() + net.res_trafo.pl_mw.sum()) * 1e6
    assert result.losses_w[0] == pytest.approx(losses, rel=1e-3)
    assert result.source_p_w[0] == pytest.approx(net.res_ext_grid.p_mw.sum() * 1e6, rel=1e-4)


def test_energy_balance(mvlv: District) -> None:
    inputs = scenarios(mvlv, 3, seed=4)
    result = run_batch(mvlv, **inputs)
    served = result.customer_p_w.sum(axis=1)
    np.testing.assert_allclose(served, inputs["load_p_w"].sum(axis=1))  # everyone energised
    np.testing.assert_allclose(result.gen_p_w, inputs["gen_p_w"])
    balance = result.source_p_w + result.gen_p_w.sum(axis=1) - served - result.losses_w
    np.testing.assert_allclose(balance, 0.0, atol=1e-6)
    # Losses are a few per cent of the power moved, never negative.
    assert (result.losses_w > 0).all()
    assert (result.losses_w < 0.1 * (served + result.gen_p_w.sum(axis=1))).all()


def test_opening_a_switch_deenergises_exactly_the_nodes_behind_it(mvlv: District) -> None:
    inputs = scenarios(mvlv, 4, seed=5)
    switch_closed = np.tile(mvlv.switch_closed_normal, (4, 1))
    feeder_breaker = closed_switch(mvlv, "CB", 0.0)
    lbs = closed_switch(mvlv, "LBS", 0.7)
    lv_switch = int(
        np.flatnonzero(
            mvlv.switch_closed_normal
            & (mvlv.net.switch["type"].to_numpy() == "LS")
            & (mvlv.node_volt_level[mvlv.net.bus.index.get_indexer(mvlv.net.switch.bus)] == LV_VOLT_LEVEL)
        )[100]
    )
    switch_closed[1, feeder_breaker] = False
    switch_closed[2, lbs] = False
    switch_closed[3, lv_switch] = False
    result = run_batch(mvlv, **inputs, switch_closed=switch_closed)
    assert result.node_energized[0].all()
    for s in (1, 2, 3):
        expected = energized_by_networkx(mvlv, switch_closed[s])
        assert (~expected).any()
        np.testing.assert_array_equal(result.node_energized[s], expected)
        dead = ~result.customer_energized[s]
        np.testing.assert_array_equal(dead, ~expected[mvlv.customer_node])
        assert (result.customer_p_w[s][dead] == 0).all()
        assert (result.customer_voltage_pu[s][dead] == 0).all()
        assert (result.customer_voltage_pu[s][~dead] > 0.9).all()


def test_a_batch_is_one_power_grid_model_call(lv: District, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    original = PowerGridModel.calculate_power_flow

    def counting(self: PowerGridModel, **kwargs: object) -> object:
        calls.append(kwargs)
        return original(self, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(PowerGridModel, "calculate_power_flow", counting)
    inputs = scenarios(lv, 50, seed=6)
    switch_closed = np.tile(lv.switch_closed_normal, (50, 1))
    switch_closed[::7, closed_switch(lv, "LS")] = False
    result = run_batch(lv, **inputs, switch_closed=switch_closed)
    assert len(calls) == 1
    assert result.n_scenarios == 50
    # Only the scenarios with the opened switch carry a topology change.
    line_update = calls[0]["update_data"]["line"]
    assert np.count_nonzero(np.diff(line_update["indptr"])) == len(range(0, 50, 7))


def test_source_voltage_sets_the_substation_bus(lv: District) -> None:
    inputs = scenarios(lv, 2, seed=7)
    default = run_batch(lv, **inputs)
    np.testing.assert_allclose(default.node_voltage_pu[:, lv.source_node[0]], 1.025)  # SimBench's set point
    raised = run_batch(lv, **inputs, source_voltage_pu=1.05)
    np.testing.assert_allclose(raised.node_voltage_pu[:, lv.source_node[0]], 1.05)
    assert (raised.customer_voltage_pu > default.customer_voltage_pu).all()


def test_threads_do_not_change_results(lv: District) -> None:
    inputs = scenarios(lv, 20, seed=8)
    sequential = run_batch(lv, **inputs, threads=1)
    parallel = run_batch(lv, **inputs, threads=-1)
    np.testing.assert_array_equal(sequential.node_voltage_pu, parallel.node_voltage_pu)


def test_bad_inputs_are_refused_by_name(lv: District) -> None:
    inputs = scenarios(lv, 2, seed=9)
    with pytest.raises(GridInputError, match="load_q_var"):
        run_batch(lv, **{**inputs, "load_q_var": inputs["load_q_var"][:, :-1]})
    with pytest.raises(GridInputError, match="gen_p_w"):
        run_batch(lv, **{**inputs, "gen_p_w": np.full_like(inputs["gen_p_w"], np.nan)})
    with pytest.raises(GridInputError, match="switch_closed"):
        run_batch(lv, **inputs, switch_closed=np.ones((2, lv.n_switches)))
    with pytest.raises(GridInputError, match="calculation_method"):
        run_batch(lv, **inputs, calculation_method="guess")


def test_a_diverging_scenario_is_named(lv: District) -> None:
    inputs = scenarios(lv, 3, seed=10)
    inputs["load_p_w"][1] *= 1000  # megawatts on a 160 kVA LV grid
    with pytest.raises(CalculationFailed) as info:
        run_batch(lv, **inputs)
    assert info.value.scenarios == [1]
