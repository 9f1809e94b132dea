"""pandapower as the independent reference for :func:`gridloom.grid.powerflow.run_batch`.

pandapower solves the same SimBench net with its own Newton-Raphson (PYPOWER-derived);
power-grid-model solves the converted model. Agreement to 1e-4 pu shows the conversion and
the index maps are right. This is slow (~70 ms a step on the default district): it is a
cross-check and a benchmark baseline, never the hot path.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from gridloom.errors import CalculationFailed
from gridloom.grid.model import District, FloatArray, PandapowerNet
from gridloom.grid.networks import quiet_grid_libraries
from gridloom.grid.powerflow import as_scenarios, as_switch_states, run_batch, source_update


def _working_copy(district: District) -> PandapowerNet:
    # The district's net stays untouched; the profiles are not needed for a power flow.
    with quiet_grid_libraries():
        import pandapower

        tables = {k: v for k, v in district.net.items() if k != "profiles"}
        return copy.deepcopy(pandapower.pandapowerNet(tables))


def pandapower_steps(
    district: District,
    *,
    load_p_w: npt.ArrayLike,
    load_q_var: npt.ArrayLike,
    gen_p_w: npt.ArrayLike,
    gen_q_var: npt.ArrayLike,
    switch_closed: npt.ArrayLike | None = None,
    source_voltage_pu: npt.ArrayLike | None = None,
) -> FloatArray:
    """(n_scenarios, n_nodes) node voltages in pu by pandapower, one ``runpp`` per scenario.

    Same arguments and conventions as :func:`~gridloom.grid.powerflow.run_batch`;
    de-energised nodes are 0 (pandapower reports NaN). ``scaling`` is set to 1: the powers
    given are the actual ones.
    """
    p = as_scenarios("load_p_w", load_p_w, district.n_customers)
    n_scenarios = p.shape[0]
    q = as_scenarios("load_q_var", load_q_var, district.n_customers, n_scenarios)
    gp = as_scenarios("gen_p_w", gen_p_w, district.n_gens, n_scenarios)
    gq = as_scenarios("gen_q_var", gen_q_var, district.n_gens, n_scenarios)
    switches = as_switch_states(district, switch_closed, n_scenarios)
    u_ref = source_update(district, source_voltage_pu, n_scenarios)

    net = _working_copy(district)
    net.load["scaling"] = 1.0
    net.sgen["scaling"] = 1.0
    out = np.zeros((n_scenarios, district.n_nodes))
    with quiet_grid_libraries():
        import pandapower

        for s in range(n_scenarios):  # the reference loop; run_batch never loops
            net.load["p_mw"] = p[s] / 1e6
            net.load["q_mvar"] = q[s] / 1e6
            net.sgen["p_mw"] = gp[s] / 1e6
            net.sgen["q_mvar"] = gq[s] / 1e6
            net.ext_grid["vm_pu"] = u_ref[s]
            if switches is not None:
                net.switch["closed"] = switches[s]
            try:
                pandapower.runpp(net, numba=False)
            except pandapower.powerflow.LoadflowNotConverged as exc:
                raise CalculationFailed(f"pandapower did not converge in scenario {s}", scenarios=[s]) from exc
            out[s] = np.nan_to_num(net.res_bus["vm_pu"].to_numpy(dtype=np.float64), nan=0.0)
    return out


def pandapower_step(
    district: District,
    *,
    load_p_w: npt.ArrayLike,
    load_q_var: npt.ArrayLike,
    gen_p_w: npt.ArrayLike,
    gen_q_var: npt.ArrayLike,
    switch_closed: npt.ArrayLike | None = None,
    source_voltage_pu: float | None = None,
) -> FloatArray:
    """(n_nodes,) node voltages in pu of one scenario by pandapower (``runpp(numba=False)``)."""
    voltages = pandapower_steps(
        district,
        load_p_w=np.asarray(load_p_w, dtype=np.float64).reshape(1, -1),
        load_q_var=np.asarray(load_q_var, dtype=np.float64).reshape(1, -1),
        gen_p_w=np.asarray(gen_p_w, dtype=np.float64).reshape(1, -1),
        gen_q_var=np.asarray(gen_q_var, dtype=np.float64).reshape(1, -1),
        switch_closed=None if switch_closed is None else np.asarray(switch_closed).reshape(1, -1),
        source_voltage_pu=None if source_voltage_pu is None else np.array([source_voltage_pu]),
    )
    return np.asarray(voltages[0], dtype=np.float64)


def benchmark_power_flow(
    district: District,
    *,
    rng: np.random.Generator,
    steps: int = 96,
    replicas: int = 1,
    pandapower_samples: int = 5,
    threads: int = -1,
    calculation_method: str = "newton_raphson",
    timer: Callable[[], float] = time.perf_counter,
) -> dict[str, float]:
    """Time :func:`run_batch` on ``steps * replicas`` scenarios against pandapower's ``runpp``.

    Loads are drawn between 10 % and 100 % of rated, generation between 0 and 80 %. Returns
    figures named with units: ``run_batch_s`` (the whole batch), ``run_batch_per_scenario_ms``,
    ``pandapower_per_step_ms`` (mean over ``pandapower_samples`` scenarios, 0 to skip),
    ``pandapower_day_s`` (that times ``steps * replicas``, the loop run_batch replaces) and
    ``speedup``.
    """
    n = steps * replicas
    factor = rng.uniform(0.1, 1.0, (n, district.n_customers))
    load_p = district.customer_p_ref_w * factor
    load_q = district.customer_q_ref_var * factor
    gen_p = district.gen_p_ref_w * rng.uniform(0.0, 0.8, (n, district.n_gens))
    gen_q = np.zeros((n, district.n_gens))
    start = timer()
    run_batch(
        district,
        load_p_w=load_p,
        load_q_var=load_q,
        gen_p_w=gen_p,
        gen_q_var=gen_q,
        threads=threads,
        calculation_method=calculation_method,
    )
    batch_s = timer() - start
    figures = {
        "scenarios": float(n),
        "customers": float(district.n_customers * replicas),
        "run_batch_s": batch_s,
        "run_batch_per_scenario_ms": 1e3 * batch_s / n,
    }
    if pandapower_samples > 0:
        k = pandapower_samples
        start = timer()
        pandapower_steps(district, load_p_w=load_p[:k], load_q_var=load_q[:k], gen_p_w=gen_p[:k], gen_q_var=gen_q[:k])
        per_step = (timer() - start) / pandapower_samples
        figures["pandapower_per_step_ms"] = 1e3 * per_step
        figures["pandapower_day_s"] = per_step * n
        figures["speedup"] = per_step * n / batch_s
    return figures
