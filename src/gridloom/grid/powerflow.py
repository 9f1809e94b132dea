"""Batch power flow of a district with power-grid-model: many scenarios, one calculation.

A scenario is one state of the district (loads, generation, switch states, source voltage).
A day of a territory of R replicas at 15-minute steps is 96 * R scenarios, indexed
``step * R + replica``; all of them go to power-grid-model in one batch call, which reuses
the factorised network for every scenario whose topology is the normal one and rebuilds it
only for the scenarios where a switch differs.

Sign conventions: customer powers use the load reference (+ = consumption), generator
powers the generator reference (+ = injection), ``source_p_w`` is what the external grid
delivers into the district (negative when the district exports).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import numpy.typing as npt
from power_grid_model import CalculationMethod, PowerGridModel, initialize_array
from power_grid_model.errors import PowerGridBatchError, PowerGridError

from gridloom.errors import CalculationFailed, GridInputError
from gridloom.grid.model import (
    SWITCH_ON_LINE,
    SWITCH_ON_LINK,
    SWITCH_ON_TRAFO,
    BoolArray,
    District,
    FloatArray,
    IntArray,
    branch_status,
)

_METHODS = ("newton_raphson", "iterative_current", "linear", "linear_current")


@dataclass(frozen=True)
class PowerFlowResult:
    """Power-flow results; every array has a leading scenario axis."""

    node_voltage_pu: FloatArray  # (n_scenarios, n_nodes); 0 where de-energised
    node_energized: BoolArray  # (n_scenarios, n_nodes)
    customer_voltage_pu: FloatArray  # (n_scenarios, n_customers); 0 where de-energised
    customer_energized: BoolArray  # (n_scenarios, n_customers)
    customer_p_w: FloatArray  # (n_scenarios, n_customers) power actually served (0 when de-energised)
    gen_p_w: FloatArray  # (n_scenarios, n_gens) power actually injected (0 when de-energised)
    line_current_a: FloatArray  # (n_scenarios, n_lines) the larger of the two end currents
    line_loading: FloatArray  # (n_scenarios, n_lines) current / rated current (1.0 = 100 %)
    trafo_loading: FloatArray  # (n_scenarios, n_trafos) apparent power / rated power (1.0 = 100 %)
    source_p_w: FloatArray  # (n_scenarios,) delivered by the external grid(s)
    source_q_var: FloatArray  # (n_scenarios,)
    losses_w: FloatArray  # (n_scenarios,) = source_p_w + gen_p_w.sum(1) - customer_p_w.sum(1)
    # Only with run_batch(..., line_flows=True): flow at each line's from end, + = into the line.
    line_p_from_w: FloatArray | None = None  # (n_scenarios, n_lines)
    line_q_from_var: FloatArray | None = None  # (n_scenarios, n_lines)

    @property
    def n_scenarios(self) -> int:
        return int(self.node_voltage_pu.shape[0])


def as_scenarios(name: str, value: npt.ArrayLike, width: int, n_scenarios: int | None = None) -> FloatArray:
    """``value`` as a C-contiguous (n_scenarios, width) float array; 1-D means one scenario."""
    array = np.asarray(value, dtype=np.float64)
    if array.ndim == 1:
        array = array[None, :]
    if array.ndim != 2 or array.shape[1] != width or (n_scenarios is not None and array.shape[0] != n_scenarios):
        rows = "n_scenarios" if n_scenarios is None else str(n_scenarios)
        raise GridInputError(f"{name} must have shape ({rows}, {width}), not {np.shape(value)}")
    if not np.isfinite(array).all():
        raise GridInputError(f"{name} has NaN or infinite values")
    return np.ascontiguousarray(array)


def as_switch_states(district: District, switch_closed: npt.ArrayLike | None, n_scenarios: int) -> BoolArray | None:
    """(n_scenarios, n_switches) bool, or None when every scenario keeps the net's switch states."""
    if switch_closed is None:
        return None
    array = np.asarray(switch_closed)
    if array.ndim == 1:
        array = np.broadcast_to(array, (n_scenarios, array.shape[0]))
    if array.shape != (n_scenarios, district.n_switches):
        raise GridInputError(
            f"switch_closed must have shape ({n_scenarios}, {district.n_switches}), not {np.shape(switch_closed)}"
        )
    if array.dtype != np.bool_:
        raise GridInputError(f"switch_closed must be bool, not {array.dtype}")
    return array


def pgm_threading(threads: int) -> int:
    """gridloom's ``threads`` (-1 or 0 = all hardware threads, 1 = sequential, n = n threads) for PGM."""
    if threads <= 0:
        return 0
    return -1 if threads == 1 else threads


def load_update(district: District, load_p_w: FloatArray, load_q_var: FloatArray) -> dict[str, FloatArray]:
    """Columnar ``sym_load`` update: every row, in input order, so no ids are needed."""
    maps = district.pgm
    p = load_p_w * maps.load_p_share[:, 0]
    q = load_q_var * maps.load_p_share[:, 1]
    if len(maps.zi_customer):
        zi = maps.zi_customer
        share = maps.zi_share
        p = np.concatenate([p, load_p_w[:, zi] * share[:, 0], load_p_w[:, zi] * share[:, 2]], axis=1)
        q = np.concatenate([q, load_q_var[:, zi] * share[:, 1], load_q_var[:, zi] * share[:, 3]], axis=1)
    return {"p_specified": p, "q_specified": q}


def topology_update(district: District, switch_closed: BoolArray | None) -> dict[str, dict[str, Any]]:
    """Sparse branch-status updates: only (scenario, branch) pairs that differ from the net.

    Scenarios left out keep the normal topology, so power-grid-model keeps its cached
    factorisation for them.
    """
    if switch_closed is None:
        return {}
    maps = district.pgm
    differs = (switch_closed != maps.switch_closed[None, :]).any(axis=0)
    if not differs.any():
        return {}
    n_scenarios = switch_closed.shape[0]
    update: dict[str, dict[str, Any]] = {}
    for component, kind in (("line", SWITCH_ON_LINE), ("transformer", SWITCH_ON_TRAFO), ("link", SWITCH_ON_LINK)):
        rows: IntArray = np.unique(maps.switch_target_row[differs & (maps.switch_target_kind == kind)])
        if not len(rows):
            continue
        base = district.pgm_input[component]
        status = branch_status(maps, switch_closed, kind, rows)  # (n_scenarios, len(rows), 2)
        normal = np.stack([base["from_status"][rows], base["to_status"][rows]], axis=1).astype(bool)
        scenario, j = np.nonzero((status != normal[None]).any(axis=2))  # sorted by scenario
        data = initialize_array("update", component, len(scenario))
        data["id"] = base["id"][rows[j]]
        data["from_status"] = status[scenario, j, 0]
        data["to_status"] = status[scenario, j, 1]
        indptr = np.zeros(n_scenarios + 1, dtype=np.int64)
        np.cumsum(np.bincount(scenario, minlength=n_scenarios), out=indptr[1:])
        update[component] = {"indptr": indptr, "data": data}
    return update


def source_update(district: District, source_voltage_pu: npt.ArrayLike | None, n_scenarios: int) -> FloatArray:
    """(n_scenarios, n_sources) source set points; None keeps the net's (SimBench: 1.025 pu)."""
    if source_voltage_pu is None:
        return np.broadcast_to(district.pgm.source_u_ref_pu, (n_scenarios, district.n_sources)).copy()
    u = np.asarray(source_voltage_pu, dtype=np.float64)
    if u.ndim == 0:
        u = np.full(n_scenarios, float(u))
    if u.shape != (n_scenarios,) or not np.isfinite(u).all() or (u <= 0).any():
        raise GridInputError(f"source_voltage_pu must be a positive number or shape ({n_scenarios},), not {u.shape}")
    return np.repeat(u[:, None], district.n_sources, axis=1)


def calculate(
    model: PowerGridModel,
    update: dict[str, Any],
    output: dict[str, list[str]],
    *,
    threads: int,
    calculation_method: str,
    max_iterations: int,
    error_tolerance: float,
) -> dict[str, Any]:
    """One power-grid-model batch power flow, its errors turned into :class:`CalculationFailed`."""
    if calculation_method not in _METHODS:
        raise GridInputError(f"calculation_method must be one of {', '.join(_METHODS)}, not {calculation_method!r}")
    try:
        raw = model.calculate_power_flow(
            update_data=update,
            output_component_types=output,  # type: ignore[arg-type]  # PGM's mapping type is invariant
            threading=pgm_threading(threads),
            calculation_method=CalculationMethod[calculation_method],
            max_iterations=max_iterations,
            error_tolerance=error_tolerance,
        )
    except PowerGridBatchError as exc:
        failed = [int(s) for s in exc.failed_scenarios]
        first = exc.error_messages[0].splitlines()[0] if exc.error_messages else str(exc)
        raise CalculationFailed(
            f"power flow failed in {len(failed)} scenario(s), e.g. {first}", scenarios=failed
        ) from exc
    except PowerGridError as exc:
        raise CalculationFailed(f"power flow failed: {str(exc).splitlines()[0]}") from exc
    return cast(dict[str, Any], raw)


def run_batch(
    district: District,
    *,
    load_p_w: npt.ArrayLike,
    load_q_var: npt.ArrayLike,
    gen_p_w: npt.ArrayLike,
    gen_q_var: npt.ArrayLike,
    switch_closed: npt.ArrayLike | None = None,
    source_voltage_pu: npt.ArrayLike | None = None,
    threads: int = -1,
    calculation_method: str = "newton_raphson",
    max_iterations: int = 20,
    error_tolerance: float = 1e-8,
    line_flows: bool = False,
) -> PowerFlowResult:
    """Power flow of every scenario of ``district`` in one power-grid-model batch calculation.

    ``load_p_w``/``load_q_var``: (n_scenarios, n_customers), consumption of each customer
    (``net.load`` row order, load reference); ``gen_p_w``/``gen_q_var``: (n_scenarios,
    n_gens), injection of each ``net.sgen`` row. ``switch_closed``: (n_scenarios, n_switches)
    bool in ``net.switch`` row order (or (n_switches,) for all scenarios); None keeps the
    net's states. ``source_voltage_pu``: a number or (n_scenarios,); None keeps the net's
    external-grid set point (1.025 pu in SimBench). ``threads``: -1/0 = all hardware
    threads, 1 = sequential, n = n threads. ``line_flows`` adds P/Q at every line's from
    end (SCADA feeder-head flows; off by default: it is two more arrays of n_scenarios x
    n_lines). Raises :class:`~gridloom.errors.GridInputError`
    for arrays of the wrong shape and :class:`~gridloom.errors.CalculationFailed` (naming the
    scenarios) when the calculation does not converge.
    """
    p = as_scenarios("load_p_w", load_p_w, district.n_customers)
    n_scenarios = p.shape[0]
    if n_scenarios == 0:
        raise GridInputError("load_p_w has no scenarios")
    q = as_scenarios("load_q_var", load_q_var, district.n_customers, n_scenarios)
    gp = as_scenarios("gen_p_w", gen_p_w, district.n_gens, n_scenarios)
    gq = as_scenarios("gen_q_var", gen_q_var, district.n_gens, n_scenarios)
    switches = as_switch_states(district, switch_closed, n_scenarios)

    update: dict[str, Any] = {"source": {"u_ref": source_update(district, source_voltage_pu, n_scenarios)}}
    if district.n_customers:
        update["sym_load"] = load_update(district, p, q)
    if district.n_gens:
        update["sym_gen"] = {"p_specified": gp, "q_specified": gq}
    update.update(topology_update(district, switches))

    # Ask only for what is returned: output volume, not the solver, dominates large batches.
    i_n = district.pgm.line_i_n_a
    rated = bool(np.isfinite(i_n).all() and (i_n > 0).all())
    output: dict[str, list[str]] = {
        "node": ["u_pu", "energized"],
        "source": ["p", "q"],
        "line": (["loading"] if rated else ["loading", "i_from", "i_to"])
        + (["p_from", "q_from"] if line_flows else []),
        "transformer": ["loading"],
    }
    zi = len(district.pgm.zi_customer) > 0
    if zi:  # voltage-dependent loads: the served power must come from the solver
        output["sym_load"] = ["p"]
    result = calculate(
        PowerGridModel(district.pgm_input),
        update,
        output,
        threads=threads,
        calculation_method=calculation_method,
        max_iterations=max_iterations,
        error_tolerance=error_tolerance,
    )

    # power-grid-model reports 0 (not NaN) voltage and loading for de-energised elements, and
    # energized as int8 0/1: used as they are, the 100k-customer batch skips ~1 s of copies.
    node = result["node"]
    energized = node["energized"].view(np.bool_)
    voltage = node["u_pu"]
    customer_energized = energized[:, district.customer_node]
    load_on = district.pgm_input["sym_load"]["status"][: district.n_customers].astype(bool)
    if zi:
        n = district.n_customers
        k = len(district.pgm.zi_customer)
        served = result["sym_load"]["p"]
        customer_p = served[:, :n].copy()
        np.add.at(customer_p.T, district.pgm.zi_customer, served[:, n : n + k].T + served[:, n + k :].T)
    else:
        customer_p = p * (customer_energized & load_on)
    gen_on = district.pgm_input["sym_gen"]["status"].astype(bool)
    gen_served = gp * (energized[:, district.gen_node] & gen_on)
    line = result["line"]
    loading = line["loading"]
    current = loading * i_n if rated else np.maximum(line["i_from"], line["i_to"])
    source_p = result["source"]["p"].sum(axis=1)
    return PowerFlowResult(
        node_voltage_pu=voltage,
        node_energized=energized,
        customer_voltage_pu=voltage[:, district.customer_node],
        customer_energized=customer_energized,
        customer_p_w=customer_p,
        gen_p_w=gen_served,
        line_current_a=current,
        line_loading=loading,
        trafo_loading=result["transformer"]["loading"],
        source_p_w=source_p,
        source_q_var=result["source"]["q"].sum(axis=1),
        losses_w=source_p + gen_served.sum(axis=1) - customer_p.sum(axis=1),
        line_p_from_w=line["p_from"] if line_flows else None,
        line_q_from_var=line["q_from"] if line_flows else None,
    )
