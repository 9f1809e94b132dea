"""The district as a tree of operable devices: substation, breakers, reclosers, fuses, meters.

A SimBench net is a bus-branch model: buses, lines, transformers and switches at line or
transformer ends. Operations (OMS, DMS, protection, AMI) think in devices instead: the
breaker at a feeder head, the recloser half way down it, the fuse on each LV feeder, the
service transformer, and the service point, premise and meter of each customer.
:func:`build_connectivity` walks the net once from its external grid(s) over the
normally-closed elements and returns a :class:`ConnectivityModel`: one row per device with
its upstream device (``parent``), so energisation, "who is behind this fuse" and fault
coordination are array look-ups.

Mapping from the pandapower tables (rules are applied in this order to each switch):

- the external grid with every bus it reaches through HV/MV transformers (HV side at or
  above 60 kV) and closed bus-bus switches is one SUBSTATION; switches inside it are not
  devices (the substation is operated as a whole);
- a switch at the MV side of an MV/LV transformer (``et='t'``) is the transformer's primary
  FUSE (what protects an MV/LV substation in practice); the one at its LV side is a SWITCH;
- a switch at a line end on the LV bus of an MV/LV transformer is the FUSE of that LV feeder;
- a circuit breaker (``CB``) at MV is a BREAKER (the feeder heads, and the breakers of
  switching stations);
- on each MV feeder (the devices fed through a breaker, up to the next breaker) one closed
  load-break switch (``LBS``) on the feeder's *trunk* becomes the RECLOSER: the trunk starts
  at the breaker and always continues into the MV branch that carries the most customers;
  the recloser is the trunk LBS whose downstream customers are closest to half the
  feeder's (the electrical middle by load served; at equal distance the upstream one).
  A fault beyond it then spares the upstream half. (By impedance instead, the midpoint of
  two of the eight rural feeders falls on their first bus: they start with a long line.);
- a closed LBS at the start of a lateral (a line leaving a trunk bus that is not itself on
  the trunk) is a SECTIONALIZER (it opens in the dead time of the upstream recloser/breaker);
- every other switch (LS, DS, other LBS, LV CBs) is a SWITCH;
- each MV/LV transformer is a SERVICE_TRANSFORMER between its primary fuse and LV switch;
- each load is a SERVICE_POINT (at its bus) -> PREMISE -> METER.

Normally-open switches (``closed=False``: SimBench operates its MV rings radially) are
devices with ``normal_closed=False`` and no children: the ties. Device indices are in DFS
preorder, so the devices downstream of ``d`` are exactly ``d .. subtree_end[d]-1``, and the
customers downstream of ``d`` are one slice of a precomputed ordering.

All per-element arrays use pandapower row order (positional, 0..n-1), as
everywhere in gridloom: nodes = ``net.bus`` rows, customers = ``net.load`` rows, and so on.
"""

from __future__ import annotations

import difflib
import re
from collections import deque
from dataclasses import dataclass
from enum import StrEnum
from functools import cached_property
from typing import Any

import numpy as np
import numpy.typing as npt

from gridloom.errors import TopologyError, UnknownGridDevice

IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]
FloatArray = npt.NDArray[np.float64]

HV_MIN_KV = 60.0  # a transformer whose HV side is at or above this belongs to the substation
LV_MAX_KV = 1.0  # below this a bus is LV


class DeviceKind(StrEnum):
    """Kinds of devices in the tree; ``kind`` arrays hold :attr:`code` (position in this enum)."""

    SUBSTATION = "substation"
    BREAKER = "breaker"
    RECLOSER = "recloser"
    SECTIONALIZER = "sectionalizer"
    SWITCH = "switch"
    FUSE = "fuse"
    SERVICE_TRANSFORMER = "service_transformer"
    SERVICE_POINT = "service_point"
    PREMISE = "premise"
    METER = "meter"

    @property
    def code(self) -> int:
        return _KIND_CODE[self]

    @property
    def prefix(self) -> str:
        """The prefix of this kind's device ids, e.g. ``fuse`` in ``fuse-17``."""
        return _KIND_PREFIX[self]

    @classmethod
    def from_code(cls, code: int) -> DeviceKind:
        return _KINDS[int(code)]


_KINDS: tuple[DeviceKind, ...] = tuple(DeviceKind)
_KIND_CODE: dict[DeviceKind, int] = {k: i for i, k in enumerate(_KINDS)}
_KIND_PREFIX: dict[DeviceKind, str] = {
    DeviceKind.SUBSTATION: "sub",
    DeviceKind.BREAKER: "brk",
    DeviceKind.RECLOSER: "rcl",
    DeviceKind.SECTIONALIZER: "sec",
    DeviceKind.SWITCH: "sw",
    DeviceKind.FUSE: "fuse",
    DeviceKind.SERVICE_TRANSFORMER: "xfmr",
    DeviceKind.SERVICE_POINT: "sp",
    DeviceKind.PREMISE: "prem",
    DeviceKind.METER: "meter",
}
#: Kinds that interrupt fault current by themselves (used by protection coordination).
PROTECTIVE_KINDS: frozenset[DeviceKind] = frozenset(
    {DeviceKind.SUBSTATION, DeviceKind.BREAKER, DeviceKind.RECLOSER, DeviceKind.FUSE}
)

_SUB, _BRK, _RCL, _SEC, _SW, _FUSE, _XFMR, _SP, _PREM, _METER = (k.code for k in _KINDS)


@dataclass(frozen=True, eq=False)
class ConnectivityModel:
    """One district's devices as a radial tree (replicas of the district share it).

    Device arrays have one row per device, in DFS preorder from the substation(s):
    ``subtree_end[d]`` is one past the last device downstream of ``d``.
    """

    code: str
    device_id: npt.NDArray[np.str_]
    kind: npt.NDArray[np.int8]  # DeviceKind codes
    parent: IntArray  # upstream device, -1 for a substation (or a customer on an unsupplied bus)
    switch_row: IntArray  # pandapower switch row operating the device, -1 if none
    trafo_row: IntArray  # pandapower trafo row (service transformer, substation's first HV/MV trafo), else -1
    customer: IntArray  # customer (net.load row) of a service point, premise or meter, else -1
    normal_closed: BoolArray
    xy: FloatArray  # (n_devices, 2) lon, lat
    node: IntArray  # bus the device sits at
    depth: IntArray  # 0 at a substation
    subtree_end: IntArray
    supplied: BoolArray  # False for devices hanging off buses the source cannot reach at all
    # network arrays, pandapower row order
    node_xy: FloatArray  # (n_nodes, 2) lon, lat; NaN where the bus has no geo
    node_vn_kv: FloatArray
    node_device: IntArray  # device whose energisation energises the bus (-1: never supplied)
    line_from: IntArray
    line_to: IntArray
    line_device: IntArray  # device whose energisation energises the line (-1: not supplied)
    switch_device: IntArray  # (n_switches,) device operated by each switch row, -1 if none
    switch_normal_closed: BoolArray  # (n_switches,) net.switch.closed
    customer_node: IntArray  # (n_customers,)
    customer_meter: IntArray  # (n_customers,) meter device
    customer_service_point: IntArray
    # the normally-closed loops (should be none for SimBench) and all conducting branches,
    # for the meshed fallback used when a tie is closed: branch k joins branch_from/to and
    # conducts iff every device branch_devices[branch_ptr[k]:branch_ptr[k+1]] is closed.
    branch_from: IntArray
    branch_to: IntArray
    branch_ptr: IntArray
    branch_devices: IntArray
    source_node: IntArray  # bus of each substation's external grid
    source_device: IntArray  # the substation device of each external grid
    meshed_branches: int  # closed loops found in the normal state (0 = radial)

    # ---------------------------------------------------------------- sizes
    @property
    def n_devices(self) -> int:
        return len(self.device_id)

    @property
    def n_customers(self) -> int:
        return len(self.customer_meter)

    @property
    def n_nodes(self) -> int:
        return len(self.node_xy)

    @property
    def n_lines(self) -> int:
        return len(self.line_from)

    @property
    def n_switches(self) -> int:
        return len(self.switch_device)

    def counts(self) -> dict[DeviceKind, int]:
        """Number of devices of each kind."""
        n = np.bincount(self.kind.astype(np.int64), minlength=len(_KINDS))
        return {k: int(n[k.code]) for k in _KINDS}

    def kind_of(self, device: int) -> DeviceKind:
        return DeviceKind.from_code(int(self.kind[self._check(device)]))

    def devices_of_kind(self, kind: DeviceKind | str) -> IntArray:
        return np.flatnonzero(self.kind == DeviceKind(kind).code).astype(np.int64)

    # ---------------------------------------------------------------- lookups
    @cached_property
    def _index_by_id(self) -> dict[str, int]:
        return {str(d): i for i, d in enumerate(self.device_id)}

    def index(self, device_id: str) -> int:
        """Device index of an id such as ``"fuse-17"``; :class:`UnknownGridDevice` with close matches."""
        try:
            return self._index_by_id[device_id]
        except KeyError:
            close = difflib.get_close_matches(device_id, list(self._index_by_id), n=3)
            raise UnknownGridDevice(device_id, close) from None

    def _check(self, device: int) -> int:
        d = int(device)
        if not 0 <= d < self.n_devices:
            raise UnknownGridDevice(str(device), [], detail=f"device index out of range 0..{self.n_devices - 1}")
        return d

    def device_of_switch(self, switch_row: int) -> int:
        """Device operated by a pandapower switch row (-1 if the switch is not a device)."""
        return int(self.switch_device[switch_row])

    # ---------------------------------------------------------------- tree queries
    @cached_property
    def _customer_order(self) -> tuple[IntArray, IntArray, IntArray]:
        # customers sorted by their meter's preorder position: the customers downstream of a
        # device are then one contiguous slice [lo[d], hi[d]) of ``order``.
        order = np.argsort(self.customer_meter, kind="stable").astype(np.int64)
        sorted_meter = self.customer_meter[order]
        starts = np.arange(self.n_devices, dtype=np.int64)
        lo = np.searchsorted(sorted_meter, starts, side="left").astype(np.int64)
        hi = np.searchsorted(sorted_meter, self.subtree_end, side="left").astype(np.int64)
        return order, lo, hi

    def customer_range(self) -> tuple[IntArray, IntArray, IntArray]:
        """``(order, lo, hi)``: customers downstream of device d are ``order[lo[d]:hi[d]]``."""
        return self._customer_order

    def downstream_customers(self, device: int) -> IntArray:
        """Customer indices (net.load rows, ascending) fed through ``device``."""
        d = self._check(device)
        order, lo, hi = self._customer_order
        return np.sort(order[lo[d] : hi[d]])

    def downstream_devices(self, device: int) -> IntArray:
        """The device itself and every device below it."""
        d = self._check(device)
        return np.arange(d, self.subtree_end[d], dtype=np.int64)

    def is_downstream(self, device: int, of: int) -> bool:
        """True if ``device`` is ``of`` or below it."""
        return bool(of <= device < self.subtree_end[of])

    def ancestors(self, device: int) -> IntArray:
        """``device`` and every device above it, up to its substation."""
        d = self._check(device)
        out = [d]
        while self.parent[d] >= 0:
            d = int(self.parent[d])
            out.append(d)
        return np.asarray(out, dtype=np.int64)

    def path_to_source(self, customer: int) -> IntArray:
        """Devices from the customer's meter up to its substation (meter first)."""
        if not 0 <= int(customer) < self.n_customers:
            raise UnknownGridDevice(f"meter-{customer}", [], detail=f"customer out of range 0..{self.n_customers - 1}")
        return self.ancestors(int(self.customer_meter[customer]))

    def feeder_breaker(self, device: int) -> int:
        """Nearest BREAKER at or above ``device`` (-1 if none)."""
        for d in self.ancestors(device):
            if self.kind[d] == _BRK:
                return int(d)
        return -1

    def section_of_node(self, node: int) -> int:
        """The device whose closing energises bus ``node``: a fault at the bus lies just below it."""
        return int(self.node_device[node])

    def section_of_line(self, line_row: int) -> int:
        """The device whose closing energises line ``line_row`` (-1 if the line is not supplied)."""
        return int(self.line_device[line_row])

    # ---------------------------------------------------------------- export
    def to_dict(self, *, closed: BoolArray | None = None, energized: BoolArray | None = None) -> dict[str, Any]:
        """GIS-style export: every device with kind, parent id, state and coordinates.

        ``closed``/``energized`` are one replica's ``(n_devices,)`` states (default: normal state).
        """
        state = self.normal_closed if closed is None else np.asarray(closed, dtype=bool)
        devices = []
        for d in range(self.n_devices):
            p = int(self.parent[d])
            entry: dict[str, Any] = {
                "id": str(self.device_id[d]),
                "kind": _KINDS[int(self.kind[d])].value,
                "parent": str(self.device_id[p]) if p >= 0 else None,
                "closed": bool(state[d]),
                "normal_closed": bool(self.normal_closed[d]),
                "lon": _float_or_none(self.xy[d, 0]),
                "lat": _float_or_none(self.xy[d, 1]),
                "node": int(self.node[d]),
            }
            if self.switch_row[d] >= 0:
                entry["switch_row"] = int(self.switch_row[d])
            if self.trafo_row[d] >= 0:
                entry["trafo_row"] = int(self.trafo_row[d])
            if self.customer[d] >= 0:
                entry["customer"] = int(self.customer[d])
            if energized is not None:
                entry["energized"] = bool(energized[d])
            devices.append(entry)
        return {"district": self.code, "counts": {k.value: n for k, n in self.counts().items()}, "devices": devices}

    def to_geojson(self, *, closed: BoolArray | None = None, energized: BoolArray | None = None) -> dict[str, Any]:
        """The devices as a GeoJSON FeatureCollection of points (properties as in :meth:`to_dict`)."""
        features = []
        for entry in self.to_dict(closed=closed, energized=energized)["devices"]:
            lon, lat = entry.pop("lon"), entry.pop("lat")
            geometry = None if lon is None or lat is None else {"type": "Point", "coordinates": [lon, lat]}
            features.append({"type": "Feature", "id": entry["id"], "geometry": geometry, "properties": entry})
        return {"type": "FeatureCollection", "features": features}


def _float_or_none(v: float) -> float | None:
    return None if np.isnan(v) else float(v)


# ==================================================================== building
_GEO_POINT = re.compile(r"\[\s*([-+0-9.eE]+)\s*,\s*([-+0-9.eE]+)")


def _positions(index: object, values: object) -> IntArray:
    """Positional rows of ``values`` (labels) in ``index`` (a pandas Index); -1 where absent."""
    ix: Any = index
    return np.asarray(ix.get_indexer(values), dtype=np.int64)


def _node_xy(frame: object) -> FloatArray:
    bus: Any = frame
    xy = np.full((len(bus), 2), np.nan)
    if "geo" not in bus.columns:
        return xy
    for i, g in enumerate(bus["geo"].to_numpy()):
        if isinstance(g, str):
            m = _GEO_POINT.search(g)
            if m:
                xy[i] = float(m.group(1)), float(m.group(2))
    return xy


@dataclass
class _Branch:
    """A line, transformer or bus-bus switch between two buses, with the switches at each end."""

    a: int
    b: int
    in_service: bool
    ends: tuple[list[int], list[int]]  # switch rows at a, at b
    trafo: int = -1  # service transformer row (a device in the middle), else -1
    line: int = -1


class _Builder:
    def __init__(self, pp_net: object, code: str) -> None:
        net: Any = pp_net  # pandapower ships no type information
        self.code = code
        bus, line, trafo, switch = net.bus, net.line, net.trafo, net.switch
        self.n_nodes = len(bus)
        self.node_vn_kv = bus["vn_kv"].to_numpy(dtype=float)
        self.node_in_service = bus["in_service"].to_numpy(dtype=bool)
        self.node_xy = _node_xy(bus)

        self.line_from = _positions(bus.index, line["from_bus"])
        self.line_to = _positions(bus.index, line["to_bus"])
        self.line_in_service = line["in_service"].to_numpy(dtype=bool)
        self.trafo_hv = _positions(bus.index, trafo["hv_bus"])
        self.trafo_lv = _positions(bus.index, trafo["lv_bus"])
        self.trafo_in_service = trafo["in_service"].to_numpy(dtype=bool)

        self.sw_bus = _positions(bus.index, switch["bus"])
        self.sw_et = switch["et"].to_numpy(dtype=str)
        self.sw_type = switch["type"].fillna("").to_numpy(dtype=str)
        self.sw_closed = switch["closed"].to_numpy(dtype=bool)
        element = switch["element"].to_numpy()
        self.sw_element = np.full(len(switch), -1, dtype=np.int64)
        for et, index in (("l", line.index), ("t", trafo.index), ("b", bus.index)):
            m = self.sw_et == et
            if m.any():
                self.sw_element[m] = _positions(index, element[m])
        self.customer_node = _positions(bus.index, net.load["bus"])
        eg = net.ext_grid
        eg = eg[eg["in_service"].to_numpy(dtype=bool)] if "in_service" in eg.columns else eg
        self.ext_nodes = _positions(bus.index, eg["bus"])
        if len(self.ext_nodes) == 0:
            raise TopologyError(f"{code or 'network'}: no in-service external grid to feed the district from")

        hv_kv = self.node_vn_kv[self.trafo_hv]
        lv_kv = self.node_vn_kv[self.trafo_lv]
        self.trafo_is_sub = hv_kv >= HV_MIN_KV
        self.trafo_is_service = (hv_kv >= LV_MAX_KV) & (lv_kv < LV_MAX_KV) & ~self.trafo_is_sub
        self.service_lv_nodes = set(self.trafo_lv[self.trafo_is_service & self.trafo_in_service].tolist())

        # device columns, filled in creation (BFS) order and renumbered to preorder at the end
        self.d_kind: list[int] = []
        self.d_parent: list[int] = []
        self.d_switch: list[int] = []
        self.d_trafo: list[int] = []
        self.d_customer: list[int] = []
        self.d_closed: list[bool] = []
        self.d_node: list[int] = []
        self.d_toward: list[int] = []  # bus the device leans toward on the map (-1: none)
        self.d_branch: list[int] = []  # branch index the device sits on (-1: none)
        self.d_lbs: list[bool] = []
        self.switch_device = np.full(len(self.sw_bus), -1, dtype=np.int64)
        self.trafo_device = np.full(len(self.trafo_hv), -1, dtype=np.int64)

    def _add(
        self,
        kind: int,
        parent: int,
        node: int,
        *,
        switch: int = -1,
        trafo: int = -1,
        customer: int = -1,
        closed: bool = True,
        toward: int = -1,
        branch: int = -1,
        lbs: bool = False,
    ) -> int:
        for column, value in (
            (self.d_kind, kind),
            (self.d_parent, parent),
            (self.d_node, node),
            (self.d_switch, switch),
            (self.d_trafo, trafo),
            (self.d_customer, customer),
            (self.d_toward, toward),
            (self.d_branch, branch),
        ):
            column.append(int(value))
        self.d_closed.append(bool(closed))
        self.d_lbs.append(bool(lbs))
        return len(self.d_kind) - 1

    # ------------------------------------------------------------ substations
    def substations(self) -> IntArray:
        """Union of buses reached from each external grid over HV/MV trafos and closed bus-bus switches."""
        adj: list[list[int]] = [[] for _ in range(self.n_nodes)]
        for t in np.flatnonzero(self.trafo_is_sub & self.trafo_in_service):
            t_sw = np.flatnonzero((self.sw_et == "t") & (self.sw_element == t))
            if self.sw_closed[t_sw].all():
                adj[self.trafo_hv[t]].append(int(self.trafo_lv[t]))
                adj[self.trafo_lv[t]].append(int(self.trafo_hv[t]))
        for s in np.flatnonzero((self.sw_et == "b") & self.sw_closed):
            a, b = int(self.sw_bus[s]), int(self.sw_element[s])
            adj[a].append(b)
            adj[b].append(a)
        sub_of = np.full(self.n_nodes, -1, dtype=np.int64)
        n_sub = 0
        for start in self.ext_nodes:
            if sub_of[start] >= 0:
                continue  # two external grids in one substation
            sub_of[start] = n_sub
            queue = deque([int(start)])
            while queue:
                u = queue.popleft()
                for v in adj[u]:
                    if sub_of[v] < 0:
                        sub_of[v] = n_sub
                        queue.append(v)
            n_sub += 1
        return sub_of

    # ------------------------------------------------------------ branches
    def branches(self, sub_of: IntArray) -> list[_Branch]:
        ends_by_line: dict[int, tuple[list[int], list[int]]] = {}
        ends_by_trafo: dict[int, tuple[list[int], list[int]]] = {}
        for s in range(len(self.sw_bus)):
            et, el, at = self.sw_et[s], int(self.sw_element[s]), int(self.sw_bus[s])
            if el < 0:
                continue
            if et == "l":
                ends = ends_by_line.setdefault(el, ([], []))
                ends[0 if at == self.line_from[el] else 1].append(s)
            elif et == "t":
                ends = ends_by_trafo.setdefault(el, ([], []))
                ends[0 if at == self.trafo_hv[el] else 1].append(s)
        out: list[_Branch] = []
        for i in range(len(self.line_from)):
            a, b = int(self.line_from[i]), int(self.line_to[i])
            ends = ends_by_line.get(i, ([], []))
            out.append(_Branch(a, b, bool(self.line_in_service[i]), ends, line=i))
        for t in range(len(self.trafo_hv)):
            a, b = int(self.trafo_hv[t]), int(self.trafo_lv[t])
            if sub_of[a] >= 0 and sub_of[a] == sub_of[b]:
                continue
            ends = ends_by_trafo.get(t, ([], []))
            out.append(_Branch(a, b, bool(self.trafo_in_service[t]), ends, trafo=t))
        for sw in np.flatnonzero(self.sw_et == "b").tolist():
            a, b = int(self.sw_bus[sw]), int(self.sw_element[sw])
            if sub_of[a] >= 0 and sub_of[a] == sub_of[b]:
                continue
            out.append(_Branch(a, b, True, ([int(sw)], [])))
        for br in out:
            br.in_service = br.in_service and bool(self.node_in_service[br.a] and self.node_in_service[br.b])
        return out

    # ------------------------------------------------------------ kinds by local rules
    def switch_kind(self, s: int) -> int:
        et, node = self.sw_et[s], int(self.sw_bus[s])
        if et == "t":
            t = int(self.sw_element[s])
            if self.trafo_is_service[t]:
                return _FUSE if node == self.trafo_hv[t] else _SW
            return _BRK
        if et == "l" and node in self.service_lv_nodes:
            return _FUSE
        if self.sw_type[s] == "CB" and self.node_vn_kv[node] >= LV_MAX_KV:
            return _BRK
        return _SW

    # ------------------------------------------------------------ walk
    def walk(self) -> None:
        sub_of = self.substations()
        self.sub_of = sub_of
        branches = self.branches(sub_of)
        self.branch_list = branches
        incident: list[list[int]] = [[] for _ in range(self.n_nodes)]
        for k, br in enumerate(branches):
            incident[br.a].append(k)
            incident[br.b].append(k)

        self.node_device = np.full(self.n_nodes, -1, dtype=np.int64)
        self.branch_chain: list[list[int]] = [[] for _ in branches]  # devices on each branch, upstream first
        traversed = np.zeros(len(branches), dtype=bool)
        self.traversed = traversed
        self.branch_up = np.full(len(branches), -1, dtype=np.int64)  # bus the branch was first reached from
        self.meshed = 0
        self.source_device: list[int] = []
        self.source_node: list[int] = []
        queue: deque[int] = deque()
        n_sub = int(sub_of.max()) + 1
        for k in range(n_sub):
            members = np.flatnonzero(sub_of == k)
            first_ext = int(next(n for n in self.ext_nodes if sub_of[n] == k))
            sub_trafos = np.flatnonzero(self.trafo_is_sub & np.isin(self.trafo_hv, members))
            d = self._add(_SUB, -1, first_ext, trafo=int(sub_trafos[0]) if len(sub_trafos) else -1)
            for t in sub_trafos:
                self.trafo_device[t] = d
            self.source_device.append(d)
            self.source_node.append(first_ext)
            for n in members:
                self.node_device[n] = d
                queue.append(int(n))
        while queue:
            u = queue.popleft()
            for k in incident[u]:
                br = branches[k]
                if traversed[k] or not br.in_service:
                    continue
                forward = br.a == u
                v = br.b if forward else br.a
                near, far = (br.ends[0], br.ends[1]) if forward else (br.ends[1], br.ends[0])
                parent = int(self.node_device[u])
                conducting = True
                chain: list[tuple[str, int]] = [("s", s) for s in sorted(near)]
                if br.trafo >= 0:
                    chain.append(("t", br.trafo))
                chain += [("s", s) for s in sorted(far)]
                for what, row in chain:
                    if what == "t":
                        if self.trafo_device[row] >= 0:
                            conducting = False
                            break
                        kind = _XFMR if self.trafo_is_service[row] else _SW
                        parent = self._add(kind, parent, v, trafo=row, toward=u, branch=k)
                        self.trafo_device[row] = parent
                        continue
                    if self.switch_device[row] >= 0:  # reached from the other side through a tie
                        conducting = False
                        break
                    at = int(self.sw_bus[row])
                    other = v if at == u else u
                    closed = bool(self.sw_closed[row])
                    parent = self._add(
                        self.switch_kind(row),
                        parent,
                        at,
                        switch=row,
                        closed=closed,
                        toward=other,
                        branch=k,
                        lbs=self.sw_type[row] == "LBS",
                    )
                    self.switch_device[row] = parent
                    if not closed:
                        conducting = False
                        break
                if self.branch_up[k] < 0:
                    self.branch_up[k] = u
                if not conducting:
                    continue
                traversed[k] = True
                if self.node_device[v] >= 0:
                    self.meshed += 1  # a closed loop: v already fed another way
                    continue
                self.node_device[v] = parent
                queue.append(v)
        for d, k in enumerate(self.d_branch):
            if k >= 0:
                self.branch_chain[k].append(d)

    def customers(self) -> None:
        n = len(self.customer_node)
        self.customer_sp = np.empty(n, dtype=np.int64)
        self.customer_meter = np.empty(n, dtype=np.int64)
        for c in range(n):
            node = int(self.customer_node[c])
            sp = self._add(_SP, int(self.node_device[node]), node, customer=c)
            prem = self._add(_PREM, sp, node, customer=c)
            self.customer_sp[c] = sp
            self.customer_meter[c] = self._add(_METER, prem, node, customer=c)

    # ------------------------------------------------------------ reclosers and sectionalizers
    def protection_roles(self) -> None:
        kind = np.asarray(self.d_kind, dtype=np.int64)
        parent = np.asarray(self.d_parent, dtype=np.int64)
        n = len(kind)
        # customers below each device (parents are created before their children)
        below = (kind == _METER).astype(np.int64)
        for d in range(n - 1, -1, -1):
            if parent[d] >= 0:
                below[parent[d]] += below[d]
        children: list[list[int]] = [[] for _ in range(n)]
        for d in range(n):
            if parent[d] >= 0:
                children[parent[d]].append(d)
        mv_node = self.node_vn_kv >= LV_MAX_KV
        for f in np.flatnonzero(kind == _BRK):
            # trunk: from the breaker, always into the MV branch device carrying most customers
            trunk = [int(f)]
            while True:
                nxt = [
                    c
                    for c in children[trunk[-1]]
                    if self.d_branch[c] >= 0 and kind[c] not in (_XFMR, _BRK) and mv_node[self.d_node[c]]
                ]
                nxt = [c for c in nxt if below[c] > 0]
                if not nxt:
                    break
                trunk.append(max(nxt, key=lambda c: (below[c], -c)))
            trunk_branches = {self.d_branch[d] for d in trunk}
            trunk_nodes: set[int] = set()
            for k in trunk_branches:
                trunk_nodes.update((self.branch_list[k].a, self.branch_list[k].b))
            half = below[f] / 2.0
            best_d, best_key = -1, (np.inf, 0)
            for i, d in enumerate(trunk):
                if self.d_lbs[d] and self.d_closed[d] and kind[d] == _SW:
                    key = (abs(float(below[d]) - half), i)  # at equal distance the upstream one
                    if key < best_key:
                        best_d, best_key = d, key
            if best_d >= 0:
                self.d_kind[best_d] = _RCL
            # laterals: the first device of a conducting branch leaving a trunk bus, off the trunk
            for node in trunk_nodes:
                for k in self.branches_from.get(node, []):
                    if k in trunk_branches or not self.traversed[k]:
                        continue
                    d = self.branch_chain[k][0]
                    if self.d_node[d] == node and self.d_lbs[d] and self.d_closed[d] and self.d_kind[d] == _SW:
                        self.d_kind[d] = _SEC

    @cached_property
    def branches_from(self) -> dict[int, list[int]]:
        """Branches with devices, keyed by the bus they were first reached from."""
        out: dict[int, list[int]] = {}
        for k, chain in enumerate(self.branch_chain):
            if chain:
                out.setdefault(int(self.branch_up[k]), []).append(k)
        return out

    # ------------------------------------------------------------ finish
    def finish(self) -> ConnectivityModel:
        n = len(self.d_kind)
        parent = np.asarray(self.d_parent, dtype=np.int64)
        children: list[list[int]] = [[] for _ in range(n)]
        roots: list[int] = []
        for d in range(n):
            (children[parent[d]] if parent[d] >= 0 else roots).append(d)
        # preorder: substations first (in order), then customers on unsupplied buses
        order: list[int] = []
        depth_old = np.zeros(n, dtype=np.int64)
        stack = list(reversed(roots))
        while stack:
            d = stack.pop()
            order.append(d)
            for c in reversed(children[d]):
                depth_old[c] = depth_old[d] + 1
                stack.append(c)
        old = np.asarray(order, dtype=np.int64)
        new_of = np.empty(n, dtype=np.int64)
        new_of[old] = np.arange(n)

        def remap(a: IntArray) -> IntArray:
            return np.where(a >= 0, new_of[np.maximum(a, 0)], -1).astype(np.int64)

        size = np.ones(n, dtype=np.int64)
        for d in reversed(order):
            if parent[d] >= 0:
                size[parent[d]] += size[d]
        kind = np.asarray(self.d_kind, dtype=np.int8)[old]
        switch_row = np.asarray(self.d_switch, dtype=np.int64)[old]
        trafo_row = np.asarray(self.d_trafo, dtype=np.int64)[old]
        customer = np.asarray(self.d_customer, dtype=np.int64)[old]
        node = np.asarray(self.d_node, dtype=np.int64)[old]
        toward = np.asarray(self.d_toward, dtype=np.int64)[old]
        ids = np.empty(n, dtype=object)
        for i in range(n):
            kd = _KINDS[int(kind[i])]
            if kd is DeviceKind.SUBSTATION:
                num = self.source_device.index(int(old[i]))
            elif customer[i] >= 0:
                num = int(customer[i])
            elif switch_row[i] >= 0:
                num = int(switch_row[i])
            else:
                num = int(trafo_row[i])
            ids[i] = f"{kd.prefix}-{num}"
        xy = self.node_xy[node].copy()
        lean = toward >= 0
        # switches drawn a little along their branch, so several at one bus stay apart
        xy[lean] += 0.2 * (self.node_xy[toward[lean]] - xy[lean])
        is_x = kind == _XFMR
        xy[is_x] = 0.5 * (self.node_xy[node[is_x]] + self.node_xy[toward[is_x]])

        supplied_old = np.zeros(n, dtype=bool)
        for d in order:  # parents come first in preorder
            supplied_old[d] = self.d_kind[d] == _SUB or (parent[d] >= 0 and supplied_old[parent[d]])
        node_device = remap(self.node_device)
        line_device = np.full(len(self.line_from), -1, dtype=np.int64)
        # a line is energised from its supplied end: through the devices at that end
        # (or straight from the bus when that end has no switch)
        for k, br in enumerate(self.branch_list):
            if br.line < 0 or self.branch_up[k] < 0:
                continue
            u = int(self.branch_up[k])
            at_u = [d for d in self.branch_chain[k] if self.d_node[d] == u and self.d_switch[d] >= 0]
            if at_u and not all(self.d_closed[d] for d in at_u):
                other = br.b if u == br.a else br.a
                at_o = [d for d in self.branch_chain[k] if self.d_node[d] == other and self.d_switch[d] >= 0]
                if at_o and all(self.d_closed[d] for d in at_o):
                    line_device[br.line] = new_of[at_o[-1]]
                    continue
            line_device[br.line] = new_of[at_u[-1]] if at_u else node_device[u]
        # branches that conduct when their devices are closed (ties included), for the meshed fallback
        b_from: list[int] = []
        b_to: list[int] = []
        b_ptr: list[int] = [0]
        b_dev: list[int] = []
        # a substation's buses are one node electrically: always-conducting pseudo-branches
        for src in self.source_node:
            for member in np.flatnonzero(self.sub_of == self.sub_of[src]):
                if member != src:
                    b_from.append(int(src))
                    b_to.append(int(member))
                    b_ptr.append(len(b_dev))
        for k, br in enumerate(self.branch_list):
            if not br.in_service:
                continue
            b_from.append(br.a)
            b_to.append(br.b)
            b_dev.extend(int(new_of[d]) for d in self.branch_chain[k])
            b_ptr.append(len(b_dev))
        return ConnectivityModel(
            code=self.code,
            device_id=ids.astype(str),
            kind=kind,
            parent=remap(parent[old]),
            switch_row=switch_row,
            trafo_row=trafo_row,
            customer=customer,
            normal_closed=np.asarray(self.d_closed, dtype=bool)[old],
            xy=xy,
            node=node,
            depth=depth_old[old],
            subtree_end=(np.arange(n) + size[old]).astype(np.int64),
            supplied=supplied_old[old],
            node_xy=self.node_xy,
            node_vn_kv=self.node_vn_kv,
            node_device=node_device,
            line_from=self.line_from,
            line_to=self.line_to,
            line_device=line_device,
            switch_device=remap(self.switch_device),
            switch_normal_closed=self.sw_closed.copy(),
            customer_node=self.customer_node,
            customer_meter=new_of[self.customer_meter],
            customer_service_point=new_of[self.customer_sp],
            branch_from=np.asarray(b_from, dtype=np.int64),
            branch_to=np.asarray(b_to, dtype=np.int64),
            branch_ptr=np.asarray(b_ptr, dtype=np.int64),
            branch_devices=np.asarray(b_dev, dtype=np.int64),
            source_node=np.asarray(self.source_node, dtype=np.int64),
            source_device=new_of[np.asarray(self.source_device, dtype=np.int64)],
            meshed_branches=self.meshed,
        )


def build_connectivity(district: object, *, code: str | None = None) -> ConnectivityModel:
    """Build the device tree of a district (a :class:`~gridloom.grid.model.District` or a pandapower net).

    Takes well under a second for the default district; replicas share the result.
    Raises :class:`~gridloom.errors.TopologyError` when there is no external grid.
    """
    net = getattr(district, "net", district)
    name = code if code is not None else str(getattr(district, "code", ""))
    builder = _Builder(net, name)
    builder.walk()
    builder.customers()
    builder.protection_roles()
    return builder.finish()
