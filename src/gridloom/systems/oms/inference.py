"""Where is the network out? The most upstream devices whose meters explain the evidence.

Each meter in play is *reported* (a last gasp or a power restore: it lost supply), *confirmed
dead* (a verification ping it did not answer), or *silent* (nothing heard). Every hypothesis
"node v is out" has a cost, minus the log of its likelihood under a simple model of AMI
losses — each meter of an out node reports with probability ``q`` (``report_probability``):

    cost_out(v) = λ + k_v·(-log q) + (n_v - k_v - f_v)·(-log(1 - q))

(k reported, f confirmed dead, n meters in play below v; λ = ``outage_penalty``, the prior cost
of one more independent outage). The alternative is that v is fine and its subtree is
explained by outages further down, or by single premises (``premise_penalty`` each: a meter
out on its own, e.g. on the customer's side). A bottom-up pass over the nodes (a handful of
levels) takes, per node, the cheaper of the two; the chosen nodes are those where "v out" wins
with no chosen node above them. Ties go upstream: the most upstream device explaining the
evidence (devices with exactly the same meters are one node already, :mod:`.topology`).

A node is *contradicted* — cannot be out — when a meter below it is known to have had supply
after the outage began (``contradicted``, decided by the caller from its time stamps); a meter
that answered a ping while the outage may already have been over (a momentary whose restores
are still on their way) only weighs against it (``answered``, ``contradiction_cost`` each).

Evidence is explained one *burst* at a time (:func:`bursts`): interruptions on one feeder more
than ``event_gap_s`` apart are different events, so a fuse that blew a minute before the
recloser above it locked out stays an outage of its own.

The confidence of a chosen node is ``1 / (1 + exp(-margin))`` where the margin is how much
worse the nearest competing explanation is (the node's subtree explained from below, or the
node's parent out instead). Everything is numpy over nodes; nothing loops over meters.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from gridloom.systems.oms.topology import OmsTopology

IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]
FloatArray = npt.NDArray[np.float64]
_TIE = 1e-9


@dataclass(frozen=True)
class InferenceParams:
    report_probability: float = 0.5  # q: a meter of an out node gets a last gasp / restore through
    outage_penalty: float = 8.0  # λ: the cost of one more independent network outage
    premise_penalty: float = 11.0  # the cost of one more single-premise outage
    contradiction_cost: float = 4.0  # per meter below that answered a ping after the outage began

    @property
    def report_cost(self) -> float:
        return -math.log(self.report_probability)

    @property
    def silent_cost(self) -> float:
        return -math.log1p(-self.report_probability)


@dataclass(frozen=True, eq=False)
class Explanation:
    """The chosen outages: nodes (preorder numbers) and single premises (meter rows), with confidences."""

    nodes: IntArray
    node_confidence: FloatArray
    premises: IntArray
    premise_confidence: FloatArray


NodeValues = Callable[[IntArray], FloatArray]
NodeFlags = Callable[[IntArray], BoolArray]


def explain(
    topology: OmsTopology,
    *,
    reported: IntArray,
    confirmed: IntArray,
    in_play: NodeValues,
    contradicted: NodeFlags | None = None,
    answered: NodeValues | None = None,
    allowed: NodeFlags | None = None,
    params: InferenceParams,
) -> Explanation:
    """The cheapest explanation of the evidence.

    ``reported`` / ``confirmed`` are meter rows (disjoint, no repeats). The work is over the
    evidence's nodes and their ancestors only (the *scope*, a few per meter at most), so a quiet
    territory of a million meters costs nothing; the caller answers, for an array of scope nodes:
    ``in_play`` the meters below each that take part (meters other outages hold, or known to be
    switched out, do not), ``contradicted`` whether one cannot be out, ``answered`` the meters
    below that answered a ping since the outage began, ``allowed`` where an outage may be.
    """
    c_r, c_s = params.report_cost, params.silent_cost
    rows = np.concatenate([reported, confirmed]).astype(np.int64)
    nodes = topology.meter_node[rows]
    has_node = nodes >= 0
    scope = topology.scope(nodes[has_node])
    n = len(scope)
    rep_sorted = np.sort(topology.meter_node[reported])
    rep_sorted = rep_sorted[np.searchsorted(rep_sorted, 0) :]
    conf_sorted = np.sort(topology.meter_node[confirmed])
    conf_sorted = conf_sorted[np.searchsorted(conf_sorted, 0) :]
    k = topology.count_in(rep_sorted, scope).astype(np.float64)
    f = topology.count_in(conf_sorted, scope).astype(np.float64)
    direct_k = (np.searchsorted(rep_sorted, scope, "right") - np.searchsorted(rep_sorted, scope, "left")).astype(float)
    direct_f = (np.searchsorted(conf_sorted, scope, "right") - np.searchsorted(conf_sorted, scope, "left")).astype(
        float
    )
    silent = np.maximum(in_play(scope) - k - f, 0.0)
    cost_out = params.outage_penalty + k * c_r + silent * c_s
    if answered is not None:
        cost_out += params.contradiction_cost * answered(scope)
    impossible = np.zeros(n, dtype=bool)
    if contradicted is not None:
        impossible |= contradicted(scope)
    if allowed is not None:
        impossible |= ~allowed(scope)
    cost_out[impossible] = np.inf
    alt = direct_k * (params.premise_penalty + c_r) + direct_f * params.premise_penalty
    parent_node = topology.node_parent[scope]
    parent = np.where(parent_node >= 0, np.searchsorted(scope, parent_node), -1)
    depth = topology.node_depth[scope]
    by_depth = np.argsort(-depth, kind="stable")
    for level in np.split(by_depth, np.flatnonzero(np.diff(depth[by_depth])) + 1) if n else []:
        b = np.minimum(cost_out[level], alt[level])
        up = parent[level]
        keep = up >= 0
        np.add.at(alt, up[keep], b[keep])
    local = np.flatnonzero(cost_out <= alt + _TIE)
    chosen = scope[local]
    if len(chosen):
        reach = np.maximum.accumulate(topology.node_end[chosen])
        top = np.concatenate([[True], reach[:-1] <= chosen[1:]])
        chosen, local = chosen[top], local[top]
    # the margin: the subtree explained from below, or the parent out instead
    down = alt[local] - cost_out[local]
    up_local = parent[local]
    safe = np.maximum(up_local, 0)
    up = np.where(up_local >= 0, cost_out[safe] - alt[safe], np.inf)
    node_confidence = _sigmoid(np.minimum(down, up))
    # premises: reported or confirmed meters not below a chosen node
    under = np.zeros(len(rows), dtype=bool)
    if len(chosen):
        at = np.searchsorted(chosen, nodes, side="right") - 1
        inside = (at >= 0) & has_node
        under[inside] = topology.node_end[chosen[at[inside]]] > nodes[inside]
    premises = rows[~under]
    pnode = nodes[~under]
    plocal = np.searchsorted(scope, np.maximum(pnode, 0))
    psafe = np.minimum(plocal, max(n - 1, 0))
    premise_margin = np.where(pnode >= 0, cost_out[psafe] - alt[psafe], np.inf) if n else np.full(len(premises), np.inf)
    order = np.argsort(premises, kind="stable")
    return Explanation(
        nodes=chosen.astype(np.int64),
        node_confidence=node_confidence,
        premises=premises[order].astype(np.int64),
        premise_confidence=_sigmoid(premise_margin)[order],
    )


def _sigmoid(x: FloatArray) -> FloatArray:
    with np.errstate(over="ignore"):
        out: FloatArray = 1.0 / (1.0 + np.exp(-np.clip(x, -50.0, 50.0)))
    return out


def group_bursts(topology: OmsTopology, evid: IntArray, t_evid: IntArray, *, gap_us: int) -> tuple[IntArray, int]:
    """Evidence grouped into bursts — one event, or events at about the same time: the burst of each
    row of ``evid``, and how many bursts there are.

    Interruptions on one feeder more than ``gap_us`` apart are different events (a fuse, then the
    recloser above it). Pieces of different feeders of one substation that start within ``gap_us``
    of a burst's first are one burst (the substation, or a storm's simultaneous faults), but a burst
    never takes two pieces of one feeder, so a storm's events do not chain into one.
    """
    n = len(evid)
    if not n:
        return np.empty(0, dtype=np.int64), 0
    nodes = topology.meter_node[evid]
    has = nodes >= 0
    branch = np.where(has, topology.node_branch[np.maximum(nodes, 0)], -1 - np.arange(n))
    root = np.where(has, topology.node_root[np.maximum(nodes, 0)], branch)
    order = np.lexsort((t_evid, branch))
    b_sorted, t_sorted = branch[order], t_evid[order]
    new_piece = np.concatenate([[True], (np.diff(b_sorted) != 0) | (np.diff(t_sorted) > gap_us)])
    piece_of = np.cumsum(new_piece) - 1
    heads = np.flatnonzero(new_piece)
    starts, piece_branch, piece_root = t_sorted[heads], b_sorted[heads], root[order][heads]
    group_of_piece = np.empty(len(heads), dtype=np.int64)
    group, current_root, first = -1, None, 0
    seen: set[int] = set()
    sweep = np.lexsort((starts, piece_root))  # per substation, in time order
    for i, r, b, t in zip(
        sweep.tolist(), piece_root[sweep].tolist(), piece_branch[sweep].tolist(), starts[sweep].tolist(), strict=True
    ):
        if r != current_root or t - first > gap_us or b in seen:
            group, current_root, first, seen = group + 1, r, t, set()
        seen.add(b)
        group_of_piece[i] = group
    burst_of = np.empty(n, dtype=np.int64)
    burst_of[order] = group_of_piece[piece_of]
    return burst_of, group + 1
