"""The connectivity model the GIS serves (AMI-14 to the OMS, DGM-21 to the DMS), as columns.

One row per *network* device — substation, breakers, reclosers, sectionalizers, switches,
fuses, service transformers — and one row per meter, for a whole service territory (every
replica of the district is a substation of its own; device ids carry the substation as in
``s003-fuse-1775``, meter ids are the territory's ``s003-m01234``):

=====================  =====================================================================
``device_id``          ``s{replica:03d}-{district device id}``
``kind``               :class:`~gridloom.grid.connectivity.DeviceKind` code (value on the wire)
``parent``             row of the upstream device, -1 for a substation; parents come first
``normal_closed``      the device's normal state (False: a normally-open tie)
``current_closed``     its state now, as the GIS knows it (switching orders, blown fuses)
``meter_id``           one row per meter
``meter_device``       row of the network device its service point hangs from (-1: unsupplied)
``meter_transformer``  row of its service transformer (-1: an MV customer)
=====================  =====================================================================

Service points and premises are one per meter in gridloom, so the meter row stands for all
three. :meth:`ConnectivityPayload.parts` cuts the model into messages of whole substations that
stay under a NATS message's size; :meth:`ConnectivityPayload.from_parts` puts them together
again and checks them.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt

from gridloom.errors import ConnectivityDataError
from gridloom.grid.connectivity import ConnectivityModel, DeviceKind
from gridloom.grid.territory import Territory
from gridloom.systems.gis.wire import ConnectivityColumns

IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]
StrArray = npt.NDArray[np.str_]

_CUSTOMER_KINDS = (DeviceKind.SERVICE_POINT, DeviceKind.PREMISE, DeviceKind.METER)
_KIND_VALUES = np.array([k.value for k in DeviceKind], dtype=object)
_KIND_CODE = {k.value: k.code for k in DeviceKind}
DEFAULT_MAX_ROWS = 20_000  # devices + meters per message: well under NATS's 1 MB default


@dataclass(frozen=True, eq=False)
class ConnectivityPayload:
    """A territory's connectivity model as columns (see the module docstring)."""

    district: str
    device_id: StrArray
    kind: npt.NDArray[np.int8]
    parent: IntArray
    normal_closed: BoolArray
    current_closed: BoolArray
    meter_id: StrArray
    meter_device: IntArray
    meter_transformer: IntArray

    def __post_init__(self) -> None:
        self.validate()

    @property
    def n_devices(self) -> int:
        return len(self.device_id)

    @property
    def n_meters(self) -> int:
        return len(self.meter_id)

    def validate(self) -> None:
        """:class:`ConnectivityDataError` naming the column and row when the model is inconsistent."""
        n, m = self.n_devices, self.n_meters
        for name in ("kind", "parent", "normal_closed", "current_closed"):
            if len(getattr(self, name)) != n:
                raise ConnectivityDataError(f"{name} has {len(getattr(self, name))} rows, device_id has {n}")
        for name in ("meter_device", "meter_transformer"):
            if len(getattr(self, name)) != m:
                raise ConnectivityDataError(f"{name} has {len(getattr(self, name))} rows, meter_id has {m}")
        rows = np.arange(n)
        bad = np.flatnonzero((self.parent < -1) | (self.parent >= rows))
        if len(bad):
            d = int(bad[0])
            raise ConnectivityDataError(
                f"parent of device row {d} ({self.device_id[d]}) is {int(self.parent[d])}: "
                "every device must come after its parent (the GIS sends the tree from the substations down)"
            )
        if len(self.kind) and (self.kind.min() < 0 or self.kind.max() >= len(_KIND_VALUES)):
            raise ConnectivityDataError(f"kind holds codes outside 0..{len(_KIND_VALUES) - 1}")
        for name in ("meter_device", "meter_transformer"):
            column = getattr(self, name)
            wrong = np.flatnonzero((column < -1) | (column >= n))
            if len(wrong):
                r = int(wrong[0])
                raise ConnectivityDataError(
                    f"{name} of meter row {r} ({self.meter_id[r]}) is {int(column[r])}, not a device row (0..{n - 1})"
                )
        if len(np.unique(self.meter_id)) != m:
            ids, counts = np.unique(self.meter_id, return_counts=True)
            raise ConnectivityDataError(f"meter ids appear more than once: {', '.join(ids[counts > 1][:5].tolist())}")

    def with_states(self, current_closed: npt.ArrayLike) -> ConnectivityPayload:
        """The same model with new current states (one per device row)."""
        states = np.asarray(current_closed, dtype=bool)
        if states.shape != (self.n_devices,):
            raise ConnectivityDataError(f"current_closed must have shape ({self.n_devices},), got {states.shape}")
        return replace(self, current_closed=states.copy())

    # ----------------------------------------------------------------- on the wire
    def parts(self, *, max_rows: int = DEFAULT_MAX_ROWS, model_id: str | None = None) -> list[ConnectivityColumns]:
        """The model as messages of whole substations, each at most ``max_rows`` rows where a substation allows."""
        if max_rows < 1:
            raise ConnectivityDataError(f"max_rows must be at least 1, got {max_rows}")
        if not self.n_devices:
            raise ConnectivityDataError("the model has no devices: nothing to send")
        model_id = model_id or os.urandom(8).hex()
        roots = np.flatnonzero(self.parent < 0)  # row 0 is always one: parents come first
        bounds = np.append(roots, self.n_devices)
        # meters go with the substation of their device (unsupplied meters with the first part)
        meter_part_of = np.searchsorted(bounds, np.maximum(self.meter_device, 0), side="right") - 1
        meters_per_root = np.bincount(meter_part_of, minlength=len(roots))
        rows = np.diff(bounds) + meters_per_root
        cuts, size = [0], 0
        for i, r in enumerate(rows.tolist()):  # one step per substation
            if size and size + r > max_rows:
                cuts.append(i)
                size = 0
            size += r
        cuts.append(len(roots))
        order = np.argsort(meter_part_of, kind="stable")
        meter_starts = np.searchsorted(meter_part_of[order], np.asarray(cuts))
        out: list[ConnectivityColumns] = []
        for p in range(len(cuts) - 1):
            lo, hi = int(bounds[cuts[p]]), int(bounds[cuts[p + 1]])
            meters = order[meter_starts[p] : meter_starts[p + 1]]
            out.append(
                ConnectivityColumns(
                    model_id=model_id,
                    part=p,
                    parts=len(cuts) - 1,
                    district=self.district,
                    device_offset=lo,
                    device_id=self.device_id[lo:hi].tolist(),
                    kind=_KIND_VALUES[self.kind[lo:hi]].tolist(),
                    parent=self.parent[lo:hi].tolist(),
                    normal_closed=self.normal_closed[lo:hi].tolist(),
                    current_closed=self.current_closed[lo:hi].tolist(),
                    meter_id=self.meter_id[meters].tolist(),
                    meter_device=self.meter_device[meters].tolist(),
                    meter_transformer=self.meter_transformer[meters].tolist(),
                )
            )
        return out

    @classmethod
    def from_parts(cls, parts: Sequence[ConnectivityColumns]) -> ConnectivityPayload:
        """The model from all its parts (any order); :class:`ConnectivityDataError` when one is missing or odd."""
        if not parts:
            raise ConnectivityDataError("no parts: a connectivity model has at least one")
        ordered = sorted(parts, key=lambda p: p.part)
        first = ordered[0]
        if {p.model_id for p in ordered} != {first.model_id}:
            raise ConnectivityDataError("parts of different models (model_id) cannot be put together")
        if [p.part for p in ordered] != list(range(first.parts)) or any(p.parts != first.parts for p in ordered):
            have = sorted(p.part for p in ordered)
            raise ConnectivityDataError(f"model {first.model_id} has {first.parts} parts; got parts {have}")
        offset = 0
        for p in ordered:
            _check_lengths(p)
            if p.device_offset != offset:
                raise ConnectivityDataError(
                    f"part {p.part} of model {first.model_id} starts at device row {p.device_offset}, expected {offset}"
                )
            offset += len(p.device_id)
        unknown = {k for p in ordered for k in p.kind} - _KIND_CODE.keys()
        if unknown:
            raise ConnectivityDataError(f"unknown device kinds {sorted(unknown)}; known: {', '.join(_KIND_CODE)}")

        def cat(name: str, dtype: npt.DTypeLike) -> npt.NDArray[np.generic]:
            values = [np.asarray(getattr(p, name), dtype=dtype) for p in ordered]
            return np.concatenate(values) if values else np.empty(0, dtype=dtype)

        kinds = [k for p in ordered for k in p.kind]
        return cls(
            district=first.district,
            device_id=cat("device_id", np.str_).astype(np.str_),
            kind=np.fromiter(map(_KIND_CODE.__getitem__, kinds), dtype=np.int8, count=len(kinds)),
            parent=cat("parent", np.int64).astype(np.int64),
            normal_closed=cat("normal_closed", bool).astype(bool),
            current_closed=cat("current_closed", bool).astype(bool),
            meter_id=cat("meter_id", np.str_).astype(np.str_),
            meter_device=cat("meter_device", np.int64).astype(np.int64),
            meter_transformer=cat("meter_transformer", np.int64).astype(np.int64),
        )


def _check_lengths(part: ConnectivityColumns) -> None:
    n = len(part.device_id)
    for name in ("kind", "parent", "normal_closed", "current_closed"):
        if len(getattr(part, name)) != n:
            raise ConnectivityDataError(f"part {part.part}: {name} has {len(getattr(part, name))} rows, expected {n}")
    m = len(part.meter_id)
    for name in ("meter_device", "meter_transformer"):
        if len(getattr(part, name)) != m:
            raise ConnectivityDataError(f"part {part.part}: {name} has {len(getattr(part, name))} rows, expected {m}")


def _nearest_of_kind(parent: IntArray, is_kind: BoolArray) -> IntArray:
    """For each device: the nearest device at or above it that ``is_kind`` (-1: none), by pointer jumping."""
    rows = np.arange(len(parent), dtype=np.int64)
    ptr = np.where(is_kind, rows, parent)
    while True:
        safe = np.maximum(ptr, 0)
        step = (ptr >= 0) & ~is_kind[safe]
        if not step.any():
            return ptr
        ptr = np.where(step, ptr[safe], ptr)


def connectivity_payload(
    model: ConnectivityModel,
    *,
    replicas: int = 1,
    customers: int | None = None,
    meter_ids: npt.ArrayLike | None = None,
    current_closed: npt.ArrayLike | None = None,
) -> ConnectivityPayload:
    """The connectivity model of ``replicas`` substations built from one district's ``model``.

    ``customers`` (default: all of every replica) connects only the first ones, as a territory
    does; ``meter_ids`` names them (default: ``s{replica:03d}-m{customer:05d}``). ``current_closed``
    is the ``(replicas, model.n_devices)`` state of every device (e.g. ``FaultState.current_closed``);
    default: the normal state.
    """
    if replicas < 1:
        raise ConnectivityDataError(f"replicas must be at least 1, got {replicas}")
    n_c = model.n_customers
    total = replicas * n_c if customers is None else int(customers)
    if not 0 <= total <= replicas * n_c:
        raise ConnectivityDataError(f"customers must be within 0..{replicas * n_c} for {replicas} replicas")
    network = ~np.isin(model.kind, [k.code for k in _CUSTOMER_KINDS])
    rows = np.flatnonzero(network).astype(np.int64)
    new_of = np.full(model.n_devices, -1, dtype=np.int64)
    new_of[rows] = np.arange(len(rows))
    n_net = len(rows)
    parent = np.where(model.parent[rows] >= 0, new_of[np.maximum(model.parent[rows], 0)], -1)
    kind = model.kind[rows].astype(np.int8)
    xfmr = _nearest_of_kind(parent, kind == DeviceKind.SERVICE_TRANSFORMER.code)
    sp_parent = model.parent[model.customer_service_point]
    customer_device = np.where(sp_parent >= 0, new_of[np.maximum(sp_parent, 0)], -1)
    customer_xfmr = np.where(customer_device >= 0, xfmr[np.maximum(customer_device, 0)], -1)

    offsets = (np.arange(replicas, dtype=np.int64) * n_net)[:, None]
    prefixes = np.char.add(np.char.add("s", np.char.zfill(np.arange(replicas).astype(str), 3)), "-")
    device_id = np.char.add(np.repeat(prefixes, n_net), np.tile(model.device_id[rows].astype(np.str_), replicas))
    tiled_parent = np.where(parent[None, :] >= 0, parent[None, :] + offsets, -1).ravel()
    if current_closed is None:
        current = np.tile(model.normal_closed[rows], replicas)
    else:
        states = np.asarray(current_closed, dtype=bool)
        if states.shape != (replicas, model.n_devices):
            raise ConnectivityDataError(
                f"current_closed must have shape ({replicas}, {model.n_devices}), got {states.shape}"
            )
        current = states[:, rows].ravel()
    index = np.arange(total, dtype=np.int64)
    replica, local = index // n_c, index % n_c
    if meter_ids is None:
        ids = np.char.add(
            np.char.add("s", np.char.zfill(replica.astype(str), 3)),
            np.char.add("-m", np.char.zfill(local.astype(str), 5)),
        )
    else:
        ids = np.asarray(meter_ids, dtype=np.str_)
        if ids.shape != (total,):
            raise ConnectivityDataError(f"meter_ids must have {total} ids, got shape {ids.shape}")

    def shift(device: IntArray) -> IntArray:
        return np.where(device >= 0, device + replica * n_net, -1).astype(np.int64)

    return ConnectivityPayload(
        district=model.code,
        device_id=device_id.astype(np.str_),
        kind=np.tile(kind, replicas),
        parent=tiled_parent.astype(np.int64),
        normal_closed=np.tile(model.normal_closed[rows], replicas),
        current_closed=current,
        meter_id=ids.astype(np.str_),
        meter_device=shift(customer_device[local]),
        meter_transformer=shift(customer_xfmr[local]),
    )


def territory_payload(
    model: ConnectivityModel, territory: Territory, *, current_closed: npt.ArrayLike | None = None
) -> ConnectivityPayload:
    """The connectivity model of a whole territory (its replicas and customers, its meter ids)."""
    return connectivity_payload(
        model,
        replicas=territory.replicas,
        customers=territory.customers,
        meter_ids=territory.meter_ids(),
        current_closed=current_closed,
    )


def device_row(payload: ConnectivityPayload, replica: int, device_id: str) -> int:
    """The payload row of a district device (e.g. ``fuse-1775``) in one replica."""
    wanted = f"s{replica:03d}-{device_id}"
    hits = np.flatnonzero(payload.device_id == wanted)
    if not len(hits):
        raise ConnectivityDataError(f"no device {wanted!r} in the connectivity model")
    return int(hits[0])
