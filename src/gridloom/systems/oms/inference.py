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


def explain(
    topology: OmsTopology,
    *,
    reported: IntArray,
    confirmed: IntArray,
    in_play: FloatArray,
    contradicted: BoolArray,
    answered: FloatArray | None = None,
    allowed: BoolArray | None = None,
    params: InferenceParams,
) -> Explanation:
    """The cheapest explanation of the evidence.

    ``reported`` / ``confirmed`` are meter rows (disjoint, no repeats); ``in_play`` the number of
    meters below each node that take part (meters owned by other outages or known to be switched
    out do not); ``contradicted`` per node; ``answered`` per node, the meters below that answered a
    ping since the outage began; ``allowed`` (per node) limits where an outage may be.
    """
    k_nodes = topology.n_nodes
    c_r, c_s = params.report_cost, params.silent_cost
    rep_node = topology.meter_node[reported]
    conf_node = topology.meter_node[confirmed]
    direct_k = np.bincount(rep_node[rep_node >= 0], minlength=k_nodes).astype(np.float64)
    direct_f = np.bincount(conf_node[conf_node >= 0], minlength=k_nodes).astype(np.float64)
    k = topology.subtree_sum(direct_k)
    f = topology.subtree_sum(direct_f)
    evidence = (k + f) > 0
    silent = np.maximum(in_play - k - f, 0.0)
    cost_out = params.outage_penalty + k * c_r + silent * c_s
    if answered is not None:
        cost_out += params.contradiction_cost * answered
    impossible = ~evidence | contradicted
    if allowed is not None:
        impossible |= ~allowed
    cost_out[impossible] = np.inf
    alt = direct_k * (params.premise_penalty + c_r) + direct_f * params.premise_penalty
    best = np.zeros(k_nodes)
    parent = topology.node_parent
    for level in topology.levels:
        level = level[evidence[level]]
        if not len(level):
            continue
        b = np.minimum(cost_out[level], alt[level])
        best[level] = b
        up = parent[level]
        keep = up >= 0
        np.add.at(alt, up[keep], b[keep])
    chosen = np.flatnonzero(evidence & (cost_out <= alt + _TIE))
    if len(chosen):
        ends = topology.node_end[chosen]
        reach = np.maximum.accumulate(ends)
        covered = np.concatenate([[False], reach[:-1] > chosen[1:]])
        chosen = chosen[~covered]
    # the margin: the subtree explained from below, or the parent out instead
    down = alt[chosen] - cost_out[chosen]
    up_node = parent[chosen]
    safe = np.maximum(up_node, 0)
    up = np.where(up_node >= 0, cost_out[safe] - alt[safe], np.inf)
    node_confidence = _sigmoid(np.minimum(down, up))
    # premises: reported or confirmed meters not below a chosen node
    candidates = np.concatenate([reported, confirmed])
    cand_node = topology.meter_node[candidates]
    under = np.zeros(len(candidates), dtype=bool)
    if len(chosen):
        at = np.searchsorted(chosen, cand_node, side="right") - 1
        has = (at >= 0) & (cand_node >= 0)
        under[has] = topology.node_end[chosen[at[has]]] > cand_node[has]
    premises = candidates[~under]
    pnode = topology.meter_node[premises]
    psafe = np.maximum(pnode, 0)
    premise_margin = np.where(pnode >= 0, cost_out[psafe] - alt[psafe], np.inf)
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


def subtree_min(topology: OmsTopology, direct: FloatArray) -> FloatArray:
    """Per node: the minimum of ``direct`` (one value per node, inf where none) over its subtree."""
    out = direct.copy()
    parent = topology.node_parent
    for level in topology.levels:
        up = parent[level]
        keep = up >= 0
        np.minimum.at(out, up[keep], out[level[keep]])
    return out


def subtree_max(topology: OmsTopology, direct: FloatArray) -> FloatArray:
    """Per node: the maximum of ``direct`` (one value per node, -inf where none) over its subtree."""
    out = direct.copy()
    parent = topology.node_parent
    for level in topology.levels:
        up = parent[level]
        keep = up >= 0
        np.maximum.at(out, up[keep], out[level[keep]])
    return out


def group_bursts(topology: OmsTopology, evid: IntArray, t_evid: IntArray, *, gap_us: int) -> list[IntArray]:
    """Evidence grouped into bursts: one event, or events at about the same time.

    Interruptions on one feeder more than ``gap_us`` apart are different events (a fuse, then
    the recloser above it). Bursts of different feeders that start together are one (a substation),
    but a burst never takes two of one feeder, so a storm's events do not chain into one.
    """
    if not len(evid):
        return []
    topo, gap = topology, gap_us
    nodes = topo.meter_node[evid]
    branch = np.where(nodes >= 0, topo.node_branch[np.maximum(nodes, 0)], -1 - np.arange(len(evid)))
    root = np.where(nodes >= 0, topo.node_root[np.maximum(nodes, 0)], branch)
    order = np.lexsort((t_evid, branch))
    b_sorted, t_sorted = branch[order], t_evid[order]
    cuts = np.flatnonzero((np.diff(b_sorted) != 0) | (np.diff(t_sorted) > gap)) + 1
    pieces = np.split(order, cuts)
    starts = t_sorted[np.concatenate([[0], cuts])]
    piece_branch = b_sorted[np.concatenate([[0], cuts])]
    piece_root = root[order][np.concatenate([[0], cuts])]
    groups: list[list[int]] = []
    open_groups: dict[int, list[tuple[int, set[int], int]]] = {}  # root -> (first start, branches, group)
    for i in np.lexsort((starts, piece_root)).tolist():  # per substation, in time order
        r, b, t = int(piece_root[i]), int(piece_branch[i]), int(starts[i])
        candidates = open_groups.setdefault(r, [])
        home = next((g for first, seen, g in candidates if t - first <= gap and b not in seen), None)
        if home is None:
            home = len(groups)
            groups.append([])
            candidates.append((t, set(), home))
        groups[home].append(i)
        next(seen for _, seen, g in candidates if g == home).add(b)
        candidates[:] = [c for c in candidates if t - c[0] <= gap]
    return [np.concatenate([pieces[i] for i in members]) for members in groups]
