"""Distribution state estimation (AMI-9a) with power-grid-model.

From what the utility actually sees — substation and meter voltages, meter powers, SCADA
flows at feeder heads — estimate the voltage of every node and the power of every
customer. Weighted least squares: each measurement counts with 1/sigma²; customers and
generators without a measurement get a pseudo-measurement (by default 0 with a sigma of
their rated power), the usual way to keep a distribution grid observable.

The estimator sees no bus-bus switches: the nodes of a closed one are merged, an open one
is dropped. power-grid-model's estimator cannot factorise a meshed grid with a link next to
its source (the two parallel HV/MV transformers of the SimBench MV grids with their bus
couplers; power-grid-model issue #864), and a closed bus-bus switch has no impedance
anyway. Scenarios are grouped by bus-coupler state, one batch per group (almost always one).

Sign conventions as in :mod:`gridloom.grid.powerflow`; branch flows are measured at a
line's ``from_bus`` end, + = from that bus into the line.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import numpy.typing as npt
from power_grid_model import CalculationMethod, MeasuredTerminalType, PowerGridModel, initialize_array
from power_grid_model.errors import (
    PowerGridBatchError,
    PowerGridError,
    SparseMatrixError,
)

from gridloom.errors import CalculationFailed, GridInputError, NotObservable
from gridloom.grid.model import BoolArray, District, FloatArray, IntArray, RecordArray
from gridloom.grid.powerflow import PowerFlowResult, as_switch_states, pgm_threading, topology_update

_UNSOLVABLE = (
    "the measurements do not determine the state (too few of them, or sigmas so unequal that the"
    " estimator's matrix is numerically singular)"
)
_EMPTY_INT: IntArray = np.zeros(0, dtype=np.int64)
_MIN_POWER_SIGMA_W = 1.0
_MIN_VOLTAGE_SIGMA_PU = 1e-4
# Feeder-head flows are MW: a 1 W sigma next to kW pseudo-measurements makes the gain matrix
# numerically singular (power-grid-model's LU does not pivot), so exact SCADA flows get 100 W.
_MIN_BRANCH_SIGMA_W = 100.0


@dataclass(frozen=True)
class Measurements:
    """What is measured, where, and how well; any subset.

    Index arrays are positional (nodes = ``net.bus`` rows, customers = ``net.load`` rows,
    lines = ``net.line`` rows, gens = ``net.sgen`` rows). Values are (k,) for one scenario
    or (n_scenarios, k); sigmas (standard deviation, in the measured unit) broadcast to the
    values. A power sigma applies to P (W) and Q (var) alike.
    """

    voltage_node: npt.ArrayLike = ()
    voltage_pu: npt.ArrayLike = ()
    voltage_sigma_pu: npt.ArrayLike = 0.005
    power_customer: npt.ArrayLike = ()
    power_p_w: npt.ArrayLike = ()  # load reference: + = consumption
    power_q_var: npt.ArrayLike = ()
    power_sigma_w: npt.ArrayLike = 50.0
    branch_line: npt.ArrayLike = ()  # SCADA flows at feeder heads
    branch_p_w: npt.ArrayLike = ()
    branch_q_var: npt.ArrayLike = ()
    branch_sigma_w: npt.ArrayLike = 1000.0
    gen_index: npt.ArrayLike = ()  # generator reference: + = injection
    gen_p_w: npt.ArrayLike = ()
    gen_q_var: npt.ArrayLike = ()
    gen_sigma_w: npt.ArrayLike = 50.0


@dataclass(frozen=True)
class EstimationResult:
    """The estimated state; every array has a leading scenario axis."""

    node_voltage_pu: FloatArray  # (n_scenarios, n_nodes); 0 where de-energised
    node_energized: BoolArray  # (n_scenarios, n_nodes)
    customer_p_w: FloatArray  # (n_scenarios, n_customers)
    customer_q_var: FloatArray  # (n_scenarios, n_customers)
    gen_p_w: FloatArray  # (n_scenarios, n_gens)
    line_p_from_w: FloatArray  # (n_scenarios, n_lines) at the from end, + = into the line
    line_current_a: FloatArray  # (n_scenarios, n_lines) the larger end current
    source_p_w: FloatArray  # (n_scenarios,)


def measurements_from_powerflow(
    district: District,
    result: PowerFlowResult,
    *,
    load_q_var: npt.ArrayLike,
    gen_q_var: npt.ArrayLike,
    rng: np.random.Generator | None = None,
    customers: npt.ArrayLike | None = None,
    voltage_sigma_pu: float = 0.0,
    power_sigma_w: float = 0.0,
    with_gens: bool = True,
    branch_lines: npt.ArrayLike | None = None,
    branch_sigma_w: float = 0.0,
) -> Measurements:
    """What meters and the substation would report for a power-flow result.

    Voltage at the source node(s) and at every listed customer's node (all customers by
    default), P/Q of those customers and (``with_gens``) of every generator; Gaussian noise
    of the given sigmas (none by default: exact readings). The sigmas declared to the
    estimator are the same, floored at 1e-4 pu, 1 W (meters) and 100 W (feeder flows) so exact
    readings stay usable. A
    customer that is de-energised in a scenario reads 0 W and its voltage is left out for
    all scenarios (meters of dead customers report no voltage). ``load_q_var``/``gen_q_var``
    are the reactive powers given to the power flow (served power is scaled like P).
    ``branch_lines`` adds SCADA flows at those lines' from ends (the result must come from
    ``run_batch(..., line_flows=True)``).
    """
    n = result.n_scenarios
    cust = np.arange(district.n_customers) if customers is None else np.asarray(customers, dtype=np.int64)
    live = result.customer_energized[:, cust].all(axis=0)
    v_nodes = np.concatenate([district.source_node, district.customer_node[cust[live]]])
    voltage = result.node_voltage_pu[:, v_nodes]
    q_load = np.broadcast_to(np.asarray(load_q_var, dtype=np.float64), (n, district.n_customers))[:, cust]
    p_load = result.customer_p_w[:, cust]
    q_load = np.where(result.customer_energized[:, cust], q_load, 0.0)
    gens = np.arange(district.n_gens) if with_gens else _EMPTY_INT
    gen_on = result.node_energized[:, district.gen_node[gens]]
    gen_q = np.broadcast_to(np.asarray(gen_q_var, dtype=np.float64), (n, district.n_gens))[:, gens] * gen_on
    gen_p = result.gen_p_w[:, gens]
    if rng is not None:
        voltage = voltage + rng.normal(0.0, voltage_sigma_pu, voltage.shape)
        p_load = p_load + rng.normal(0.0, power_sigma_w, p_load.shape)
        q_load = q_load + rng.normal(0.0, power_sigma_w, q_load.shape)
        gen_p = gen_p + rng.normal(0.0, power_sigma_w, gen_p.shape)
        gen_q = gen_q + rng.normal(0.0, power_sigma_w, gen_q.shape)
    lines = _EMPTY_INT if branch_lines is None else np.asarray(branch_lines, dtype=np.int64)
    if len(lines) and (result.line_p_from_w is None or result.line_q_from_var is None):
        raise GridInputError("branch_lines needs a power-flow result computed with line_flows=True")
    branch_p = result.line_p_from_w[:, lines] if result.line_p_from_w is not None else np.zeros((n, 0))
    branch_q = result.line_q_from_var[:, lines] if result.line_q_from_var is not None else np.zeros((n, 0))
    if rng is not None and len(lines):
        branch_p = branch_p + rng.normal(0.0, branch_sigma_w, branch_p.shape)
        branch_q = branch_q + rng.normal(0.0, branch_sigma_w, branch_q.shape)
    return Measurements(
        voltage_node=v_nodes,
        voltage_pu=voltage,
        voltage_sigma_pu=max(voltage_sigma_pu, _MIN_VOLTAGE_SIGMA_PU),
        power_customer=cust,
        power_p_w=p_load,
        power_q_var=q_load,
        power_sigma_w=max(power_sigma_w, _MIN_POWER_SIGMA_W),
        gen_index=gens,
        gen_p_w=gen_p,
        gen_q_var=gen_q,
        gen_sigma_w=max(power_sigma_w, _MIN_POWER_SIGMA_W),
        branch_line=lines,
        branch_p_w=branch_p,
        branch_q_var=branch_q,
        branch_sigma_w=max(branch_sigma_w, _MIN_BRANCH_SIGMA_W),
    )


def _index(name: str, value: npt.ArrayLike, size: int) -> IntArray:
    index = np.asarray(value, dtype=np.int64).reshape(-1)
    if ((index < 0) | (index >= size)).any():
        raise GridInputError(f"{name} has indices outside 0..{size - 1}")
    return index


def _values(name: str, value: npt.ArrayLike, k: int) -> FloatArray:
    array = np.asarray(value, dtype=np.float64)
    if array.ndim == 1:
        array = array[None, :]
    if array.ndim != 2 or array.shape[1] != k:
        raise GridInputError(f"{name} must have shape (k,) or (n_scenarios, k) with k = {k}, not {np.shape(value)}")
    if not np.isfinite(array).all():
        raise GridInputError(f"{name} has NaN or infinite values")
    return array


def _sigma(name: str, value: npt.ArrayLike, shape: tuple[int, int]) -> FloatArray:
    sigma = np.asarray(value, dtype=np.float64)
    try:
        out = np.broadcast_to(sigma, shape).astype(np.float64)
    except ValueError as exc:
        raise GridInputError(f"{name} does not broadcast to the values' shape {shape}") from exc
    if not (np.isfinite(out) & (out > 0)).all():
        raise GridInputError(f"{name} must be positive and finite")
    return out


def _merged_nodes(district: District, link_closed: BoolArray) -> IntArray:
    """Representative node of every node, nodes joined by a closed bus-bus switch merged."""
    links = district.pgm_input["link"]
    ends_from = _rows_in(district.pgm.node_id, links["from_node"])
    ends_to = _rows_in(district.pgm.node_id, links["to_node"])
    rep = np.arange(district.n_nodes, dtype=np.int64)
    # A handful of bus-bus switches per district: a loop over them is not a hot path.
    for k in np.flatnonzero(link_closed):
        a, b = int(ends_from[k]), int(ends_to[k])
        while rep[a] != a:
            a = int(rep[a])
        while rep[b] != b:
            b = int(rep[b])
        rep[max(a, b)] = min(a, b)
    while True:  # pointer jumping until every node points at its root
        jumped = rep[rep]
        if np.array_equal(jumped, rep):
            return rep
        rep = jumped


def _se_input(district: District, rep: IntArray) -> dict[str, RecordArray]:
    """The district's input with merged nodes and no links (open ones dropped, closed ones merged)."""
    pgm = district.pgm_input
    node_id = district.pgm.node_id
    rep_id = np.zeros(int(node_id.max()) + 1, dtype=np.int32)
    rep_id[node_id] = node_id[rep]
    out = {k: v.copy() for k, v in pgm.items()}
    out["node"] = pgm["node"][rep == np.arange(district.n_nodes)]
    out["link"] = pgm["link"][:0]
    for component, columns in (
        ("line", ("from_node", "to_node")),
        ("transformer", ("from_node", "to_node")),
        ("source", ("node",)),
        ("sym_load", ("node",)),
        ("sym_gen", ("node",)),
    ):
        for column in columns:
            if len(out[component]):
                out[component][column] = rep_id[out[component][column]]
    return out


def estimate_state(
    district: District,
    measurements: Measurements,
    *,
    switch_closed: npt.ArrayLike | None = None,
    pseudo_customer_p_w: npt.ArrayLike | None = None,
    pseudo_gen_p_w: npt.ArrayLike | None = None,
    pseudo_sigma_scale: float = 1.0,
    threads: int = -1,
    calculation_method: str = "newton_raphson",
    max_iterations: int = 50,
    error_tolerance: float = 1e-8,
) -> EstimationResult:
    """Estimate the state of ``district`` for one or many scenarios in one batch calculation.

    Customers and generators without a measurement get a pseudo-measurement:
    ``pseudo_customer_p_w`` / ``pseudo_gen_p_w`` ((n,) or (n_scenarios, n); 0 by default;
    Q pseudo-measured as 0) with sigma = ``pseudo_sigma_scale`` times their rated power. At
    least one voltage measurement is required. Raises :class:`~gridloom.errors.NotObservable`
    when the measurements do not determine the state (power-grid-model cannot tell that apart
    from a numerically singular matrix, which sigmas spanning many orders of magnitude
    cause: give exact readings a realistic sigma, not a tiny one) and
    :class:`~gridloom.errors.CalculationFailed` when the estimator does not converge.
    """
    m = measurements
    v_node = _index("voltage_node", m.voltage_node, district.n_nodes)
    if not len(v_node):
        raise NotObservable("state estimation needs at least one voltage measurement (e.g. the substation bus)")
    v_pu = _values("voltage_pu", m.voltage_pu, len(v_node))
    n = v_pu.shape[0]
    c_idx = _index("power_customer", m.power_customer, district.n_customers)
    c_p = _values("power_p_w", m.power_p_w, len(c_idx)) if len(c_idx) else np.zeros((n, 0))
    c_q = _values("power_q_var", m.power_q_var, len(c_idx)) if len(c_idx) else np.zeros((n, 0))
    g_idx = _index("gen_index", m.gen_index, district.n_gens)
    g_p = _values("gen_p_w", m.gen_p_w, len(g_idx)) if len(g_idx) else np.zeros((n, 0))
    g_q = _values("gen_q_var", m.gen_q_var, len(g_idx)) if len(g_idx) else np.zeros((n, 0))
    b_idx = _index("branch_line", m.branch_line, district.n_lines)
    b_p = _values("branch_p_w", m.branch_p_w, len(b_idx)) if len(b_idx) else np.zeros((n, 0))
    b_q = _values("branch_q_var", m.branch_q_var, len(b_idx)) if len(b_idx) else np.zeros((n, 0))
    n = max(a.shape[0] for a in (v_pu, c_p, c_q, g_p, g_q, b_p, b_q))
    if (v_pu <= 0).any():
        raise GridInputError("voltage_pu must be positive: leave de-energised meters out")

    def scen(name: str, a: FloatArray) -> FloatArray:
        if a.shape[0] not in (1, n):
            raise GridInputError(f"{name} has {a.shape[0]} scenarios, others have {n}")
        return np.broadcast_to(a, (n, a.shape[1]))

    switches = as_switch_states(district, switch_closed, n)
    pgm = district.pgm_input
    maps = district.pgm

    # Voltage sensors (V, line-to-line).
    vn = district.node_vn_v[v_node]
    u_measured = scen("voltage_pu", v_pu) * vn
    u_sigma = _sigma("voltage_sigma_pu", m.voltage_sigma_pu, (n, len(v_node))) * vn

    # Power sensors: one per customer (measured or pseudo), per generator, per branch measurement.
    rated_c = np.maximum(np.abs(district.customer_p_ref_w), _MIN_POWER_SIGMA_W) * pseudo_sigma_scale
    rated_g = np.maximum(np.abs(district.gen_p_ref_w), _MIN_POWER_SIGMA_W) * pseudo_sigma_scale
    load_p = _pseudo("pseudo_customer_p_w", pseudo_customer_p_w, n, district.n_customers)
    load_q = np.zeros((n, district.n_customers))
    load_sigma = np.broadcast_to(rated_c, (n, district.n_customers)).copy()
    load_p[:, c_idx] = scen("power_p_w", c_p)
    load_q[:, c_idx] = scen("power_q_var", c_q)
    load_sigma[:, c_idx] = _sigma("power_sigma_w", m.power_sigma_w, (n, len(c_idx)))
    gen_p = _pseudo("pseudo_gen_p_w", pseudo_gen_p_w, n, district.n_gens)
    gen_q = np.zeros((n, district.n_gens))
    gen_sigma = np.broadcast_to(rated_g, (n, district.n_gens)).copy()
    gen_p[:, g_idx] = scen("gen_p_w", g_p)
    gen_q[:, g_idx] = scen("gen_q_var", g_q)
    gen_sigma[:, g_idx] = _sigma("gen_sigma_w", m.gen_sigma_w, (n, len(g_idx)))
    branch_sigma = _sigma("branch_sigma_w", m.branch_sigma_w, (n, len(b_idx)))
    p_measured = np.concatenate([load_p, gen_p, scen("branch_p_w", b_p)], axis=1)
    q_measured = np.concatenate([load_q, gen_q, scen("branch_q_var", b_q)], axis=1)
    sigma = np.concatenate([load_sigma, gen_sigma, branch_sigma], axis=1)

    power_object = np.concatenate(
        [pgm["sym_load"]["id"][: district.n_customers], pgm["sym_gen"]["id"], pgm["line"]["id"][b_idx]]
    )
    power_terminal = np.concatenate(
        [
            np.full(district.n_customers, MeasuredTerminalType.load),
            np.full(district.n_gens, MeasuredTerminalType.generator),
            np.full(len(b_idx), MeasuredTerminalType.branch_from),
        ]
    )
    if calculation_method not in ("iterative_linear", "newton_raphson"):
        raise GridInputError(
            f"calculation_method must be iterative_linear or newton_raphson, not {calculation_method!r}"
        )

    out = EstimationResult(
        node_voltage_pu=np.zeros((n, district.n_nodes)),
        node_energized=np.zeros((n, district.n_nodes), dtype=bool),
        customer_p_w=np.zeros((n, district.n_customers)),
        customer_q_var=np.zeros((n, district.n_customers)),
        gen_p_w=np.zeros((n, district.n_gens)),
        line_p_from_w=np.zeros((n, district.n_lines)),
        line_current_a=np.zeros((n, district.n_lines)),
        source_p_w=np.zeros(n),
    )
    # The estimator gets no links: closed bus-bus switches are merged, open ones dropped. Their
    # states can differ between scenarios, so there is one batch per link configuration
    # (almost always just one).
    link_closed = np.broadcast_to(maps.switch_closed[maps.link_switch], (n, len(maps.link_switch)))
    if switches is not None:
        link_closed = switches[:, maps.link_switch]
    configs, group = np.unique(link_closed, axis=0, return_inverse=True)
    for g, closed in enumerate(configs):
        idx = np.flatnonzero(group.reshape(-1) == g)
        rep = _merged_nodes(district, closed)
        se_input = _se_input(district, rep)
        voltage_sensor = initialize_array("input", "sym_voltage_sensor", len(v_node))
        voltage_sensor["id"] = maps.next_id + np.arange(len(v_node))
        voltage_sensor["measured_object"] = maps.node_id[rep[v_node]]
        power_sensor = initialize_array("input", "sym_power_sensor", len(power_object))
        power_sensor["id"] = maps.next_id + len(v_node) + np.arange(len(power_object))
        power_sensor["measured_object"] = power_object
        power_sensor["measured_terminal_type"] = power_terminal
        # The first scenario goes into the input; the batch update carries them all (every
        # sensor, in input order, so no ids are needed).
        s0 = idx[0]
        voltage_sensor["u_measured"], voltage_sensor["u_sigma"] = u_measured[s0], u_sigma[s0]
        power_sensor["p_measured"], power_sensor["q_measured"] = p_measured[s0], q_measured[s0]
        power_sensor["p_sigma"] = power_sensor["q_sigma"] = sigma[s0]
        se_input["sym_voltage_sensor"] = voltage_sensor
        se_input["sym_power_sensor"] = power_sensor
        update: dict[str, Any] = {
            "sym_voltage_sensor": {"u_measured": u_measured[idx], "u_sigma": u_sigma[idx]},
            "sym_power_sensor": {
                "p_measured": p_measured[idx],
                "q_measured": q_measured[idx],
                "p_sigma": sigma[idx],
                "q_sigma": sigma[idx],
            },
        }
        topo = topology_update(district, None if switches is None else switches[idx])
        topo.pop("link", None)
        update.update(topo)
        result = _estimate(
            se_input,
            update,
            idx,
            threads=threads,
            calculation_method=calculation_method,
            max_iterations=max_iterations,
            error_tolerance=error_tolerance,
        )
        node_rows = _rows_in(se_input["node"]["id"], maps.node_id[rep])
        energized = result["node"]["energized"].astype(bool)[:, node_rows]
        out.node_energized[idx] = energized
        out.node_voltage_pu[idx] = np.where(energized, result["node"]["u_pu"][:, node_rows], 0.0)
        out.customer_p_w[idx] = result["sym_load"]["p"][:, : district.n_customers]
        out.customer_q_var[idx] = result["sym_load"]["q"][:, : district.n_customers]
        out.gen_p_w[idx] = result["sym_gen"]["p"]
        line = result["line"]
        out.line_p_from_w[idx] = np.nan_to_num(line["p_from"], nan=0.0)
        out.line_current_a[idx] = np.nan_to_num(np.maximum(line["i_from"], line["i_to"]), nan=0.0)
        out.source_p_w[idx] = result["source"]["p"].sum(axis=1)
    return out


def _estimate(
    se_input: dict[str, RecordArray],
    update: dict[str, Any],
    scenarios: IntArray,
    *,
    threads: int,
    calculation_method: str,
    max_iterations: int,
    error_tolerance: float,
) -> dict[str, Any]:
    """One power-grid-model batch state estimation, its errors turned into gridloom's."""
    output = {
        "node": ["u_pu", "energized"],
        "sym_load": ["p", "q"],
        "sym_gen": ["p"],
        "line": ["p_from", "i_from", "i_to"],
        "source": ["p"],
    }
    try:
        raw = PowerGridModel(se_input).calculate_state_estimation(
            update_data=update,
            output_component_types=output,  # type: ignore[arg-type]  # PGM's mapping type is invariant
            threading=pgm_threading(threads),
            calculation_method=CalculationMethod[calculation_method],
            max_iterations=max_iterations,
            error_tolerance=error_tolerance,
        )
    except PowerGridBatchError as exc:
        failed = [int(scenarios[s]) for s in exc.failed_scenarios]
        message = exc.error_messages[0].splitlines()[0] if exc.error_messages else str(exc)
        if exc.errors and all(isinstance(e, SparseMatrixError) for e in exc.errors):
            raise NotObservable(f"{_UNSOLVABLE} (scenarios {failed[:5]}): {message}") from exc
        raise CalculationFailed(
            f"state estimation failed in {len(failed)} scenario(s): {message}", scenarios=failed
        ) from exc
    except SparseMatrixError as exc:  # NotObservableError is a SparseMatrixError
        raise NotObservable(f"{_UNSOLVABLE}: {str(exc).splitlines()[0]}") from exc
    except PowerGridError as exc:
        raise CalculationFailed(f"state estimation failed: {str(exc).splitlines()[0]}") from exc
    return cast(dict[str, Any], raw)


def _pseudo(name: str, value: npt.ArrayLike | None, n: int, width: int) -> FloatArray:
    if value is None:
        return np.zeros((n, width))
    array = _values(name, value, width)
    if array.shape[0] not in (1, n):
        raise GridInputError(f"{name} has {array.shape[0]} scenarios, the measurements have {n}")
    return np.broadcast_to(array, (n, width)).copy()


def _rows_in(ids: npt.NDArray[Any], wanted: npt.NDArray[Any]) -> IntArray:
    order = np.argsort(ids)
    return np.asarray(order[np.searchsorted(ids, wanted, sorter=order)], dtype=np.int64)


def _keep_ids(sparse: dict[str, Any], ids: npt.NDArray[Any]) -> dict[str, Any]:
    """A sparse batch update without the rows whose id is not in ``ids``."""
    data, indptr = sparse["data"], sparse["indptr"]
    keep = np.isin(data["id"], ids)
    kept_before = np.concatenate([[0], np.cumsum(keep)])
    return {"indptr": kept_before[indptr].astype(np.int64), "data": data[keep]}
