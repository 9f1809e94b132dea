"""The district: one SimBench grid, its power-grid-model twin and the index maps between them.

Every per-element array in gridloom follows **pandapower row order** of the district's
tables (customers = rows of ``net.load``, nodes = rows of ``net.bus``, lines, switches,
transformers, generators = rows of ``net.line``, ``net.switch``, ``net.trafo``,
``net.sgen``), positional 0..n-1. :class:`PgmMaps` says where each of those rows lives in
the power-grid-model input, so the physics never searches by id at run time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeAlias

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]
StrArray = npt.NDArray[np.str_]
RecordArray = npt.NDArray[np.void]  # a power-grid-model structured array
# pandapower ships no type information: its net and DataFrames are opaque to the type checker.
PandapowerNet: TypeAlias = Any
Frame: TypeAlias = Any

# What a switch operates, in PgmMaps.switch_target_kind.
SWITCH_ON_LINE = 0
SWITCH_ON_TRAFO = 1
SWITCH_ON_LINK = 2  # a bus-bus switch, a power-grid-model ``link``
# Which end of the branch, in PgmMaps.switch_side (a link's switch opens both ends).
SIDE_FROM = 0
SIDE_TO = 1

LV_VOLT_LEVEL = 7
MV_VOLT_LEVEL = 5


@dataclass(frozen=True)
class PgmMaps:
    """Where the pandapower rows live in the power-grid-model input (all positional)."""

    node_id: IntArray  # (n_nodes,) PGM node id of each bus row
    # sym_load rows: the first n_customers are the constant-power parts in customer order,
    # then a constant-impedance block and a constant-current block for the k customers
    # (zi_customer) whose SimBench load has such a share (none in SimBench today).
    load_p_share: FloatArray  # (n_customers, 2) constant-power share of each customer's [P, Q]
    zi_customer: IntArray  # (k,) customers with a Z or I share
    zi_share: FloatArray  # (k, 4) shares [Z of P, Z of Q, I of P, I of Q]
    line_in_service: BoolArray  # (n_lines,)
    trafo_in_service: BoolArray  # (n_trafos,)
    switch_target_kind: IntArray  # (n_switches,) SWITCH_ON_LINE / _TRAFO / _LINK
    switch_target_row: IntArray  # (n_switches,) row of the line, trafo or link it operates
    switch_side: IntArray  # (n_switches,) SIDE_FROM / SIDE_TO (links: SIDE_FROM)
    switch_closed: BoolArray  # (n_switches,) normal state in the net
    link_switch: IntArray  # (n_links,) the switch row behind each PGM link
    line_i_n_a: FloatArray  # (n_lines,) rated current (A), NaN when unknown
    source_u_ref_pu: FloatArray  # (n_sources,) the net's external-grid set point
    next_id: int  # first id free for sensors


@dataclass(frozen=True)
class District:
    """One SimBench grid used as the unit of a territory.

    ``net`` is the pandapower net as SimBench ships it (keep it unmodified: reference runs,
    connectivity and maps read it); ``pgm_input`` is the power-grid-model input converted
    from it once and cached. Powers are in W / var with the load reference for customers
    (+ = consumption) and the generator reference for generators (+ = injection).
    """

    code: str
    net: PandapowerNet
    pgm_input: dict[str, RecordArray]  # component type -> power-grid-model input array
    n_nodes: int
    n_customers: int
    n_lines: int
    n_switches: int
    n_trafos: int
    n_gens: int
    node_vn_v: FloatArray  # (n_nodes,) nominal line-to-line voltage
    node_volt_level: IntArray  # (n_nodes,) SimBench voltLvl: 1 EHV .. 5 MV, 7 LV (even = transformation)
    node_xy: FloatArray  # (n_nodes, 2) longitude, latitude; NaN where the net has no geodata
    customer_node: IntArray  # (n_customers,) node of each load
    customer_volt_level: IntArray  # (n_customers,) voltLvl of the customer's node: 7 LV, 5 MV
    customer_p_ref_w: FloatArray  # (n_customers,) SimBench rated active power
    customer_q_ref_var: FloatArray  # (n_customers,) SimBench rated reactive power
    customer_profile: StrArray  # (n_customers,) SimBench profile name, e.g. "H0-A", "G1-B", "lv_rural1"
    gen_node: IntArray  # (n_gens,)
    gen_p_ref_w: FloatArray  # (n_gens,) SimBench installed active power
    gen_profile: StrArray  # (n_gens,) e.g. "PV5", "WP4"
    gen_type: StrArray  # (n_gens,) SimBench sgen type, e.g. "PV", "Wind", "Biomass"
    line_from_node: IntArray  # (n_lines,)
    line_to_node: IntArray  # (n_lines,)
    trafo_hv_node: IntArray  # (n_trafos,)
    trafo_lv_node: IntArray  # (n_trafos,)
    source_node: IntArray  # (n_sources,) nodes of the external grids
    pgm: PgmMaps

    @property
    def n_sources(self) -> int:
        return int(self.source_node.shape[0])

    @property
    def switch_closed_normal(self) -> BoolArray:
        """(n_switches,) the switch states as SimBench ships them (normally-open ties are False)."""
        return self.pgm.switch_closed.copy()

    @property
    def lv_customers(self) -> IntArray:
        """Indices of the customers connected at low voltage."""
        return np.flatnonzero(self.customer_volt_level == LV_VOLT_LEVEL)

    def __repr__(self) -> str:
        return (
            f"District({self.code!r}: {self.n_nodes} nodes, {self.n_customers} customers, {self.n_lines} lines, "
            f"{self.n_switches} switches, {self.n_trafos} transformers, {self.n_gens} generators)"
        )


def branch_status(maps: PgmMaps, switch_closed: BoolArray, target_kind: int, rows: IntArray) -> BoolArray:
    """(n_scenarios, len(rows), 2) from/to status of the lines (or trafos, links) ``rows``.

    A branch end is connected when the branch is in service and every switch at that end is
    closed; a bus-bus switch (link) opens both ends. ``switch_closed`` is
    (n_scenarios, n_switches) bool in pandapower switch order.
    """
    n_scenarios = switch_closed.shape[0]
    slot_of_row = np.full(int(rows.max(initial=-1)) + 1, -1, dtype=np.int64)
    slot_of_row[rows] = np.arange(len(rows))
    kind = maps.switch_target_kind
    target = maps.switch_target_row
    sel = np.flatnonzero((kind == target_kind) & (target < len(slot_of_row)))
    sel = sel[slot_of_row[target[sel]] >= 0]
    slot = slot_of_row[target[sel]]
    if target_kind == SWITCH_ON_LINK:
        slots = np.concatenate([slot * 2, slot * 2 + 1])
        sel = np.concatenate([sel, sel])
    else:
        slots = slot * 2 + maps.switch_side[sel]
    open_count = np.zeros((len(rows) * 2, n_scenarios), dtype=np.int32)
    np.add.at(open_count, slots, ~switch_closed[:, sel].T)
    status: BoolArray = (open_count == 0).T.reshape(n_scenarios, len(rows), 2)
    if target_kind == SWITCH_ON_LINE:
        status &= maps.line_in_service[rows][None, :, None]
    elif target_kind == SWITCH_ON_TRAFO:
        status &= maps.trafo_in_service[rows][None, :, None]
    return status
