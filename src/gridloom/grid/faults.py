"""Device states over R replicas and who is energised: :class:`FaultState`.

A territory is R replicas of one district; they share one
:class:`~gridloom.grid.connectivity.ConnectivityModel`, and each has its own device states
(``current_closed``, shape ``(R, n_devices)``). A customer is energised iff every device on
its path to the substation is closed.

How that is computed without a loop over customers: devices are numbered in DFS preorder
and customers are sorted by their meter's position, so the customers below device ``d`` are
one contiguous slice ``[lo[d], hi[d])`` of that order. Every open device adds +1 at
``lo[d]`` and -1 at ``hi[d]`` of its replica's row (one ``bincount`` over all open
(replica, device) pairs); a running sum along the row counts the open devices above each
customer, and a customer is energised where that count is 0. The cost is O(R x n_customers)
numpy work whatever the depth of the tree (100 replicas x 5,373 customers: about a
millisecond).

The tree is the network's *normal* radial structure. When a normally-open tie is closed
(a feeder transferred to its neighbour to restore supply), the tree no longer says who
feeds whom; replicas in that state are computed on the bus graph instead (connected
components of the branches whose devices are all closed, one scipy call for all such
replicas). Both paths agree in the normal state; the tests check it.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from scipy.sparse import coo_array
from scipy.sparse.csgraph import connected_components

from gridloom.errors import GridInputError
from gridloom.grid.connectivity import ConnectivityModel, DeviceKind

IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]
IndexLike = int | npt.ArrayLike

_CUSTOMER_KINDS = (DeviceKind.SERVICE_POINT.code, DeviceKind.PREMISE.code, DeviceKind.METER.code)


class FaultState:
    """Open/closed state of every device in R replicas of a district.

    ``current_closed[r, d]`` is True when device ``d`` of replica ``r`` is closed. Change it
    with :meth:`open` / :meth:`close` (indices or arrays of indices, broadcast together).
    """

    def __init__(self, model: ConnectivityModel, n_replicas: int = 1) -> None:
        if n_replicas < 1:
            raise GridInputError(f"n_replicas must be at least 1, got {n_replicas}")
        self.model = model
        self.n_replicas = int(n_replicas)
        self.current_closed: BoolArray = np.tile(model.normal_closed, (self.n_replicas, 1))
        order, lo, hi = model.customer_range()
        self._order = order
        self._lo = lo
        self._hi = hi
        self._customer_supplied = model.supplied[model.customer_meter]
        self._ties = np.flatnonzero(~model.normal_closed).astype(np.int64)
        self._switch_devices = np.flatnonzero(model.switch_row >= 0).astype(np.int64)
        self._frontier_ptr, self._frontier_rows, self._frontier_owner = _frontiers(model)
        n_branches = len(model.branch_ptr) - 1
        self._branch_of_entry = np.repeat(np.arange(n_branches, dtype=np.int64), np.diff(model.branch_ptr))

    # ---------------------------------------------------------------- changing state
    def _validate(self, replica: IndexLike, device: IndexLike) -> tuple[IntArray, IntArray]:
        r = np.asarray(replica, dtype=np.int64)
        d = np.asarray(device, dtype=np.int64)
        if r.size and (r.min() < 0 or r.max() >= self.n_replicas):
            raise GridInputError(f"replica out of range 0..{self.n_replicas - 1}: {r.min()}..{r.max()}")
        if d.size and (d.min() < 0 or d.max() >= self.model.n_devices):
            raise GridInputError(f"device out of range 0..{self.model.n_devices - 1}: {d.min()}..{d.max()}")
        return r, d

    def open(self, replica: IndexLike, device: IndexLike) -> None:
        """Open device(s) in replica(s); arguments broadcast like numpy indices."""
        r, d = self._validate(replica, device)
        self.current_closed[r, d] = False

    def close(self, replica: IndexLike, device: IndexLike) -> None:
        """Close device(s) in replica(s) (closing a tie switches that replica to the graph path)."""
        r, d = self._validate(replica, device)
        self.current_closed[r, d] = True

    def set_closed(self, replica: IndexLike, device: IndexLike, closed: npt.ArrayLike) -> None:
        r, d = self._validate(replica, device)
        self.current_closed[r, d] = np.asarray(closed, dtype=bool)

    def reset(self) -> None:
        """Every device back to its normal state."""
        self.current_closed[:] = self.model.normal_closed

    def copy(self) -> FaultState:
        other = FaultState.__new__(FaultState)
        other.__dict__.update(self.__dict__)
        other.current_closed = self.current_closed.copy()
        return other

    def abnormal(self) -> tuple[IntArray, IntArray]:
        """``(replica, device)`` pairs whose state differs from normal (an operator's "off-normal" list)."""
        r, d = np.nonzero(self.current_closed != self.model.normal_closed)
        return r.astype(np.int64), d.astype(np.int64)

    # ---------------------------------------------------------------- energisation
    def _open_pairs(self) -> tuple[IntArray, IntArray]:
        # flatnonzero + divmod is ~10x faster than a 2-D nonzero on a (100, 27k) array
        flat = np.flatnonzero(~self.current_closed.ravel())
        r, d = np.divmod(flat, self.model.n_devices)
        return r.astype(np.int64), d.astype(np.int64)

    def _meshed_replicas(self) -> IntArray:
        if self.model.meshed_branches:
            return np.arange(self.n_replicas, dtype=np.int64)
        if len(self._ties) == 0:
            return np.empty(0, dtype=np.int64)
        return np.flatnonzero(self.current_closed[:, self._ties].any(axis=1)).astype(np.int64)

    def customer_energized(self) -> BoolArray:
        """``(R, n_customers)``: True where every device between the customer and the substation is closed."""
        model = self.model
        n_c = model.n_customers
        r, d = self._open_pairs()
        width = n_c + 1
        start = np.bincount(r * width + self._lo[d], minlength=self.n_replicas * width)
        stop = np.bincount(r * width + self._hi[d], minlength=self.n_replicas * width)
        open_above = np.cumsum((start - stop).reshape(self.n_replicas, width)[:, :n_c], axis=1)
        out = np.empty((self.n_replicas, n_c), dtype=bool)
        out[:, self._order] = open_above == 0
        out &= self._customer_supplied
        meshed = self._meshed_replicas()
        if len(meshed):
            out[meshed] = self._graph_customers(meshed)
        return out

    def device_energized(self) -> BoolArray:
        """``(R, n_devices)``: True where the device and every device above it are closed.

        In a replica with a closed tie: closed and its bus energised (customer devices: the
        whole service point -> premise -> meter chain closed too).
        """
        n = self.model.n_devices
        r, d = self._open_pairs()
        width = n + 1
        start = np.bincount(r * width + d, minlength=self.n_replicas * width)
        stop = np.bincount(r * width + self.model.subtree_end[d], minlength=self.n_replicas * width)
        open_above = np.cumsum((start - stop).reshape(self.n_replicas, width)[:, :n], axis=1)
        out: BoolArray = (open_above == 0) & self.model.supplied
        meshed = self._meshed_replicas()
        if len(meshed):
            nodes = self._graph_nodes(meshed)
            closed = self.current_closed[meshed]
            dev = closed & nodes[:, self.model.node]
            # a customer's service point -> premise -> meter conduct in series
            m = self.model
            sp, meter = m.customer_service_point, m.customer_meter
            prem = m.parent[meter]
            dev[:, prem] &= dev[:, sp]
            dev[:, meter] &= dev[:, prem]
            out[meshed] = dev
        return out

    def node_energized(self) -> BoolArray:
        """``(R, n_nodes)``: True where the bus is live."""
        model = self.model
        dev = self.device_energized()
        out: BoolArray = np.where(model.node_device >= 0, dev[:, np.maximum(model.node_device, 0)], False)
        meshed = self._meshed_replicas()
        if len(meshed):
            out[meshed] = self._graph_nodes(meshed)
        return out

    def line_energized(self) -> BoolArray:
        """``(R, n_lines)``: True where the line is live from at least its supplied end (for maps)."""
        ld = self.model.line_device
        dev = self.device_energized()
        return np.where(ld >= 0, dev[:, np.maximum(ld, 0)], False)

    # ---------------------------------------------------------------- the graph path
    def _graph_nodes(self, replicas: IntArray) -> BoolArray:
        """Live buses of some replicas by connected components of their conducting branches."""
        m = self.model
        k = len(replicas)
        n = m.n_nodes
        closed = self.current_closed[replicas]
        n_branches = len(m.branch_from)
        # open devices on each branch, all replicas in one bincount
        flat = (np.arange(k, dtype=np.int64)[:, None] * n_branches + self._branch_of_entry[None, :]).ravel()
        weights = (~closed[:, m.branch_devices]).ravel().astype(np.float64)
        open_on = np.bincount(flat, weights=weights, minlength=k * n_branches).reshape(k, n_branches)
        rr, bb = np.nonzero(open_on == 0)
        rows = rr * n + m.branch_from[bb]
        cols = rr * n + m.branch_to[bb]
        graph = coo_array((np.ones(len(rows), dtype=np.int8), (rows, cols)), shape=(k * n, k * n)).tocsr()
        _, labels = connected_components(graph, directed=False)
        labels = np.asarray(labels, dtype=np.int64).reshape(k, n)
        live = np.zeros((k, n), dtype=bool)
        for node, dev in zip(m.source_node, m.source_device, strict=True):
            src_label = labels[:, node]
            live |= (labels == src_label[:, None]) & closed[:, dev][:, None]
        return live

    def _graph_customers(self, replicas: IntArray) -> BoolArray:
        m = self.model
        nodes = self._graph_nodes(replicas)
        closed = self.current_closed[replicas]
        meter = m.customer_meter
        prem = m.parent[meter]
        out: BoolArray = (
            nodes[:, m.customer_node] & closed[:, m.customer_service_point] & closed[:, prem] & closed[:, meter]
        )
        return out

    # ---------------------------------------------------------------- for the power flow
    def switch_closed_for_powerflow(self) -> BoolArray:
        """``(R, n_switches)`` in pandapower switch order, for ``run_batch(switch_closed=...)``.

        Switch-backed devices give their own state. An open substation or service
        transformer (no switch of its own) opens the nearest switches below it, which
        de-energises the same buses. Service points, premises and meters have no switch in
        the net: multiply the customers' loads by :meth:`customer_energized` instead.
        """
        m = self.model
        out = np.tile(m.switch_normal_closed, (self.n_replicas, 1))
        devs = self._switch_devices
        out[:, m.switch_row[devs]] = self.current_closed[:, devs]
        owners = self._frontier_owner
        if len(owners):
            r, j = np.nonzero(~self.current_closed[:, owners])
            if len(r):
                counts = self._frontier_ptr[j + 1] - self._frontier_ptr[j]
                starts = np.repeat(self._frontier_ptr[j], counts)
                offsets = np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)
                out[np.repeat(r, counts), self._frontier_rows[starts + offsets]] = False
        return out


def _frontiers(model: ConnectivityModel) -> tuple[IntArray, IntArray, IntArray]:
    """For each device without a switch (substations, transformers): the nearest switch rows below it."""
    owners = [
        d for d in range(model.n_devices) if model.switch_row[d] < 0 and int(model.kind[d]) not in _CUSTOMER_KINDS
    ]
    ptr = [0]
    rows: list[int] = []
    for d in owners:
        c = d + 1
        end = int(model.subtree_end[d])
        while c < end:  # preorder: skip a whole subtree once a switch is found
            if model.switch_row[c] >= 0:
                rows.append(int(model.switch_row[c]))
                c = int(model.subtree_end[c])
            else:
                c += 1
        ptr.append(len(rows))
    return (
        np.asarray(ptr, dtype=np.int64),
        np.asarray(rows, dtype=np.int64),
        np.asarray(owners, dtype=np.int64),
    )
