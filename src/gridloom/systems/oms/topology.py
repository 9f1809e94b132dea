"""The OMS's view of the network: the GIS model reduced to the devices an outage can be located at.

Meters tell the OMS *which customers* are out, not which device opened, so the OMS works on
**nodes**: the devices that can isolate a part of the network by themselves (substation, feeder
breaker, recloser, sectionalizer, fuse, service transformer — :data:`LOCATABLE_KINDS`) that have
meters below them. Devices whose meters are exactly those of the device above them cannot be
told apart by meter evidence; they are one node, represented by the most upstream of them
(``node_device``; the others are listed by :meth:`OmsTopology.equivalent_devices`). Switches and
feeder sections between nodes only carry connectivity.

Nodes are numbered in preorder (node ``v``'s subtree is ``v .. node_end[v]-1``) and meters are
ordered by their node, so the meters below node ``v`` are one slice ``order[lo[v]:hi[v]]`` of the
meter order: counts over a subtree are a difference of two prefix sums. Building is vectorised
(pointer jumping instead of walks); a territory of a million meters takes about a second.

Meters under a device that is open *now* in the GIS model (switching, a known open fuse) are
``known_out``: their silence is expected and they are left out of outage inference.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import numpy.typing as npt

from gridloom.errors import ConnectivityDataError
from gridloom.grid.connectivity import DeviceKind
from gridloom.systems.gis.model import ConnectivityPayload

IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

#: Kinds an outage can be located at (each opens by itself, or fails as a whole).
LOCATABLE_KINDS: tuple[DeviceKind, ...] = (
    DeviceKind.SUBSTATION,
    DeviceKind.BREAKER,
    DeviceKind.RECLOSER,
    DeviceKind.SECTIONALIZER,
    DeviceKind.FUSE,
    DeviceKind.SERVICE_TRANSFORMER,
)


def _jump_to(ptr: IntArray, stop: BoolArray) -> IntArray:
    """Follow ``ptr`` from every row until a row where ``stop`` holds (or -1); pointer jumping."""
    out = ptr.copy()
    while True:
        safe = np.maximum(out, 0)
        step = (out >= 0) & ~stop[safe]
        if not step.any():
            return out
        out = np.where(step, out[safe], out)


def _depth(parent: IntArray) -> IntArray:
    """Distance to the root of every row of a forest given by ``parent`` (-1 at roots)."""
    depth = (parent >= 0).astype(np.int64)
    ptr = parent.copy()
    while (ptr >= 0).any():
        safe = np.maximum(ptr, 0)
        has = ptr >= 0
        depth = np.where(has, depth + depth[safe], depth)
        ptr = np.where(has, ptr[safe], -1)
    return depth


def _any_above(parent: IntArray, flag: BoolArray) -> BoolArray:
    """True where ``flag`` holds at the row or at any row above it."""
    acc = flag.copy()
    ptr = parent.copy()
    while (ptr >= 0).any():
        safe = np.maximum(ptr, 0)
        has = ptr >= 0
        acc = acc | (has & acc[safe])
        ptr = np.where(has, ptr[safe], -1)
    return acc


@dataclass(frozen=True, eq=False)
class OmsTopology:
    """Nodes (locatable devices with meters) in preorder, and the meters below each."""

    payload: ConnectivityPayload
    node_device: IntArray  # payload row of the node's device (the most upstream of its equivalents)
    node_parent: IntArray  # -1 at a root
    node_depth: IntArray
    node_end: IntArray  # one past the node's last descendant (preorder)
    lo: IntArray  # the node's meters are order[lo:hi]
    hi: IntArray
    meter_node: IntArray  # per meter (payload row): its lowest node, -1 if none
    meter_pos: IntArray  # per meter: its position in ``order``
    order: IntArray  # meter rows, grouped by node in preorder (meters without a node last)
    device_node: IntArray  # per payload device: the node with exactly its meters (-1: not a node)
    known_out: BoolArray  # per meter: below a device that is open now (or unsupplied)

    @classmethod
    def from_payload(
        cls, payload: ConnectivityPayload, *, kinds: tuple[DeviceKind, ...] = LOCATABLE_KINDS
    ) -> OmsTopology:
        """Reduce a GIS model to nodes; :class:`ConnectivityDataError` if it is unusable."""
        n_dev = payload.n_devices
        rows = np.arange(n_dev, dtype=np.int64)
        parent = payload.parent
        locatable = np.isin(payload.kind, [DeviceKind(k).code for k in kinds])
        # nearest locatable device at or above each device
        at_or_above = _jump_to(np.where(locatable, rows, parent), locatable)
        cparent = np.where(parent >= 0, at_or_above[np.maximum(parent, 0)], -1)
        cparent = np.where(locatable, cparent, -1)
        meter_dev = payload.meter_device
        meter_loc = np.where(meter_dev >= 0, at_or_above[np.maximum(meter_dev, 0)], -1)
        # meters below each locatable device, counted up the locatable tree level by level
        count = np.bincount(meter_loc[meter_loc >= 0], minlength=n_dev).astype(np.int64)
        cand = np.flatnonzero(locatable)
        depth = np.zeros(n_dev, dtype=np.int64)
        depth[cand] = _depth(_local_parent(cand, cparent[cand], n_dev))
        if len(cand):
            by_depth = cand[np.argsort(-depth[cand], kind="stable")]
            levels = np.split(by_depth, np.flatnonzero(np.diff(depth[by_depth])) + 1)
            for level in levels:
                up = cparent[level]
                keep = up >= 0
                np.add.at(count, up[keep], count[level[keep]])
        # a device with the same meters as the one above it is that one (the most upstream represents)
        has = locatable & (count > 0)
        equal = has & (cparent >= 0) & (count[np.maximum(cparent, 0)] == count)
        rep = _jump_to(np.where(equal, cparent, rows), ~equal)
        rep = np.where(has, rep, -1)
        tops = np.flatnonzero(has & ~equal)
        node_of_top = np.full(n_dev, -1, dtype=np.int64)
        node_of_top[tops] = np.arange(len(tops))
        top_parent = np.where(cparent[tops] >= 0, rep[np.maximum(cparent[tops], 0)], -1)
        parent_local = np.where(top_parent >= 0, node_of_top[np.maximum(top_parent, 0)], -1)
        if (parent_local[top_parent >= 0] < 0).any():
            raise ConnectivityDataError("a node's parent is not a node: the model's counts are inconsistent")
        pos = _preorder(parent_local)
        k = len(tops)
        node_device = np.empty(k, dtype=np.int64)
        node_device[pos] = tops
        node_parent = np.full(k, -1, dtype=np.int64)
        node_parent[pos] = np.where(parent_local >= 0, pos[np.maximum(parent_local, 0)], -1)
        node_depth = _depth(node_parent)
        size = np.ones(k, dtype=np.int64)
        if k:
            by_depth = np.argsort(-node_depth, kind="stable")
            levels = np.split(by_depth, np.flatnonzero(np.diff(node_depth[by_depth])) + 1)
            for level in levels:
                up = node_parent[level]
                keep = up >= 0
                np.add.at(size, up[keep], size[level[keep]])
        node_end = np.arange(k, dtype=np.int64) + size
        # meters: their node (in preorder numbering), ordered by it
        node_of_device = np.full(n_dev, -1, dtype=np.int64)
        node_of_device[tops] = pos
        meter_node = np.where(meter_loc >= 0, node_of_device[np.maximum(rep[np.maximum(meter_loc, 0)], 0)], -1)
        key = np.where(meter_node >= 0, meter_node, k)
        order = np.argsort(key, kind="stable").astype(np.int64)
        sorted_key = key[order]
        nodes = np.arange(k, dtype=np.int64)
        lo = np.searchsorted(sorted_key, nodes, side="left").astype(np.int64)
        hi = np.searchsorted(sorted_key, node_end, side="left").astype(np.int64)
        meter_pos = np.empty(payload.n_meters, dtype=np.int64)
        meter_pos[order] = np.arange(payload.n_meters)
        device_node = np.where(has, node_of_device[np.maximum(rep, 0)], -1)
        open_now = ~payload.current_closed
        known_out = np.where(meter_dev >= 0, _any_above(parent, open_now)[np.maximum(meter_dev, 0)], True)
        return cls(
            payload=payload,
            node_device=node_device,
            node_parent=node_parent,
            node_depth=node_depth,
            node_end=node_end,
            lo=lo,
            hi=hi,
            meter_node=meter_node,
            meter_pos=meter_pos,
            order=order,
            device_node=device_node,
            known_out=known_out.astype(bool),
        )

    def warm(self) -> None:
        """Build the look-ups evaluations use (meter id hashes, levels, branches) now, not in a storm."""
        _ = self._id_hashes, self.levels, self.node_branch, self.node_root, self.meters_below

    # ------------------------------------------------------------------ sizes and names
    @property
    def n_nodes(self) -> int:
        return len(self.node_device)

    @property
    def n_meters(self) -> int:
        return self.payload.n_meters

    @cached_property
    def levels(self) -> list[IntArray]:
        """Nodes grouped by depth, deepest first (for bottom-up passes)."""
        if not self.n_nodes:
            return []
        by_depth = np.argsort(-self.node_depth, kind="stable").astype(np.int64)
        return np.split(by_depth, np.flatnonzero(np.diff(self.node_depth[by_depth])) + 1)

    @cached_property
    def node_branch(self) -> IntArray:
        """Per node: its branch, the node just below the root (a feeder); a root is its own branch."""
        rows = np.arange(self.n_nodes, dtype=np.int64)
        shallow = self.node_depth <= 1
        return _jump_to(np.where(shallow, rows, self.node_parent), shallow)

    @cached_property
    def node_root(self) -> IntArray:
        """Per node: the root above it (a substation)."""
        rows = np.arange(self.n_nodes, dtype=np.int64)
        root = self.node_parent < 0
        return _jump_to(np.where(root, rows, self.node_parent), root)

    @cached_property
    def meters_below(self) -> IntArray:
        """Meters below each node."""
        out: IntArray = self.hi - self.lo
        return out

    @cached_property
    def node_kind(self) -> npt.NDArray[np.int8]:
        out: npt.NDArray[np.int8] = self.payload.kind[self.node_device]
        return out

    @cached_property
    def node_id(self) -> npt.NDArray[np.str_]:
        out: npt.NDArray[np.str_] = self.payload.device_id[self.node_device]
        return out

    def kind_of(self, node: int) -> DeviceKind:
        return DeviceKind.from_code(int(self.node_kind[node]))

    def equivalent_devices(self, node: int) -> list[str]:
        """Every locatable device whose meters are exactly this node's (the representative first)."""
        rows = np.flatnonzero(self.device_node == node)
        first = int(self.node_device[node])
        return [str(self.payload.device_id[first])] + [
            str(self.payload.device_id[r]) for r in rows.tolist() if r != first
        ]

    def node_of(self, device_id: str) -> int:
        """The node a device id belongs to (-1 if it has no meters or cannot be located at)."""
        rows = np.flatnonzero(self.payload.device_id == device_id)
        if not len(rows):
            raise ConnectivityDataError(f"no device {device_id!r} in the connectivity model")
        return int(self.device_node[rows[0]])

    # ------------------------------------------------------------------ meter ids
    @cached_property
    def _id_hashes(self) -> tuple[npt.NDArray[np.uint64], IntArray, npt.NDArray[np.uint64]]:
        """Sorted 64-bit hashes of the meter ids, the meter row of each, and the hash multipliers."""
        ids = self.payload.meter_id
        width = max(ids.dtype.itemsize // 4, 1)
        multipliers = np.random.default_rng(1366).integers(1, 2**63, width, dtype=np.uint64) | np.uint64(1)
        hashes = _hash_ids(ids, multipliers)
        order = np.argsort(hashes, kind="stable").astype(np.int64)
        return hashes[order], order, multipliers

    @cached_property
    def meter_index(self) -> dict[str, int]:
        """Meter id -> meter row (for the rare hash collision; lookups by hash are the fast path)."""
        return dict(zip(self.payload.meter_id.tolist(), range(self.n_meters), strict=True))

    def meters_of(self, meter_ids: list[str] | npt.NDArray[np.str_]) -> IntArray:
        """Rows of ``meter_ids``; -1 for ids the model does not have.

        Vectorised: the ids become one fixed-width array, hashed with one multiply-add per
        character column and found by binary search among the model's sorted hashes, then
        compared to the model's ids (a dict settles the rare hash collision).
        """
        n = len(meter_ids)
        if not n or not self.n_meters:
            return np.full(n, -1, dtype=np.int64)
        ids = self.payload.meter_id
        wanted = np.asarray(meter_ids, dtype=np.str_)
        too_long = np.zeros(n, dtype=bool)
        if wanted.dtype.itemsize > ids.dtype.itemsize:
            too_long = np.char.str_len(wanted) > ids.dtype.itemsize // 4
        wanted = wanted.astype(ids.dtype)
        hashes, rows, multipliers = self._id_hashes
        at = np.minimum(np.searchsorted(hashes, _hash_ids(wanted, multipliers)), len(hashes) - 1)
        found = rows[at]
        ok = (ids[found] == wanted) & ~too_long
        out = np.where(ok, found, -1).astype(np.int64)
        retry = np.flatnonzero(~ok & ~too_long)
        if len(retry):
            get = self.meter_index.get
            out[retry] = [get(str(m), -1) for m in wanted[retry].tolist()]
        return out

    # ------------------------------------------------------------------ subtree sums
    def subtree_sum(self, direct: npt.NDArray[np.int64] | npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """Per node: the sum of ``direct`` (one value per node) over its subtree (two prefix sums)."""
        prefix = np.concatenate([[0.0], np.cumsum(direct, dtype=np.float64)])
        out: npt.NDArray[np.float64] = prefix[self.node_end] - prefix[: self.n_nodes]
        return out

    def count_below(self, meters: IntArray) -> IntArray:
        """Per node: how many of ``meters`` (rows, without repeats) are below it."""
        nodes = self.meter_node[meters]
        direct = np.bincount(nodes[nodes >= 0], minlength=self.n_nodes)
        return self.subtree_sum(direct).astype(np.int64)

    # ------------------------------------------------------------------ sparse queries
    def scope(self, nodes: IntArray) -> IntArray:
        """``nodes`` and every node above them, ascending (preorder): where evidence can be explained."""
        found = [np.unique(nodes)]
        current = found[0]
        while len(current):
            up = self.node_parent[current]
            current = np.unique(up[up >= 0])
            found.append(current)
        out: IntArray = np.unique(np.concatenate(found)).astype(np.int64)
        return out

    def count_in(self, sorted_nodes: IntArray, nodes: IntArray) -> IntArray:
        """Per node of ``nodes``: how many entries of ``sorted_nodes`` (node numbers, ascending,
        repeats allowed — e.g. the nodes of some meters) lie in its subtree."""
        out: IntArray = np.searchsorted(sorted_nodes, self.node_end[nodes], "left") - np.searchsorted(
            sorted_nodes, nodes, "left"
        )
        return out

    def reduce_in(
        self,
        sorted_nodes: IntArray,
        values: npt.NDArray[np.float64],
        nodes: IntArray,
        ufunc: np.ufunc,
        empty: float,
    ) -> npt.NDArray[np.float64]:
        """Per node of ``nodes``: ``ufunc`` (np.minimum, np.maximum) over the ``values`` whose
        ``sorted_nodes`` lie in its subtree; ``empty`` where none do."""
        if not len(nodes):
            return np.empty(0)
        lo = np.searchsorted(sorted_nodes, nodes, "left")
        hi = np.searchsorted(sorted_nodes, self.node_end[nodes], "left")
        padded = np.append(values.astype(np.float64), empty)
        idx = np.empty(2 * len(nodes), dtype=np.int64)
        idx[0::2], idx[1::2] = lo, hi
        out: npt.NDArray[np.float64] = ufunc.reduceat(padded, idx)[0::2]
        out[hi <= lo] = empty
        return out

    def within_any(self, sorted_tops: IntArray, nodes: IntArray) -> BoolArray:
        """True for each of ``nodes`` that lies in the subtree of one of ``sorted_tops`` (ascending)."""
        if not len(sorted_tops):
            return np.zeros(len(nodes), dtype=bool)
        reach = np.maximum.accumulate(self.node_end[sorted_tops])
        at = np.searchsorted(sorted_tops, nodes, "right") - 1
        out: BoolArray = (at >= 0) & (reach[np.maximum(at, 0)] > nodes)
        return out


def _hash_ids(ids: npt.NDArray[np.str_], multipliers: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    """One 64-bit hash per fixed-width id: the characters (UTF-32 code units) times the multipliers, summed."""
    chars = np.ascontiguousarray(ids).view(np.uint32).reshape(len(ids), -1).astype(np.uint64)
    out: npt.NDArray[np.uint64] = (chars * multipliers[: chars.shape[1]]).sum(axis=1, dtype=np.uint64)
    return out


def _local_parent(cand: IntArray, cparent: IntArray, n_dev: int) -> IntArray:
    """``cparent`` (device rows) renumbered to positions in ``cand``."""
    local = np.full(n_dev, -1, dtype=np.int64)
    local[cand] = np.arange(len(cand))
    return np.where(cparent >= 0, local[np.maximum(cparent, 0)], -1)


def _preorder(parent: IntArray) -> IntArray:
    """Preorder position of every row of a forest (children in row order), vectorised by depth."""
    k = len(parent)
    if not k:
        return np.empty(0, dtype=np.int64)
    depth = _depth(parent)
    size = np.ones(k, dtype=np.int64)
    by_depth = np.argsort(-depth, kind="stable")
    levels = np.split(by_depth, np.flatnonzero(np.diff(depth[by_depth])) + 1)
    for level in levels:
        up = parent[level]
        keep = up >= 0
        np.add.at(size, up[keep], size[level[keep]])
    # offset of each row among its siblings: sizes of the siblings before it
    key = np.where(parent >= 0, parent, -1)
    sib_order = np.lexsort((np.arange(k), key))
    sorted_key = key[sib_order]
    sizes = size[sib_order]
    csum = np.cumsum(sizes) - sizes
    group_start = np.flatnonzero(np.concatenate([[True], sorted_key[1:] != sorted_key[:-1]]))
    first_of_group = np.repeat(group_start, np.diff(np.append(group_start, k)))
    before = np.empty(k, dtype=np.int64)
    before[sib_order] = csum - csum[first_of_group]
    pos = np.zeros(k, dtype=np.int64)
    roots = parent < 0
    pos[roots] = before[roots]
    for level in reversed(levels):  # top-down
        child = level[parent[level] >= 0]
        pos[child] = pos[parent[child]] + 1 + before[child]
    return pos
