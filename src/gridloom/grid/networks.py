"""SimBench districts: load one, convert it to power-grid-model once, and cache the result.

Loading a SimBench grid takes seconds (simbench parses its CSV tables); the conversion to
power-grid-model takes a fraction of that. Both are done once per code and package
versions, then the :class:`~gridloom.grid.model.District` is pickled under the cache
directory (``$GRIDLOOM_CACHE_DIR``, else ``$XDG_CACHE_HOME/gridloom``, else
``~/.cache/gridloom``). A cache that is missing, stale or unreadable is rebuilt; a cache
that cannot be written is skipped (logged, not raised). The cache is a pickle: it is only
ever read from the user's own cache directory, never from a shared or downloaded path.
"""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import json
import logging
import os
import pickle
import tempfile
import warnings
from collections.abc import Iterator
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np

from gridloom.errors import NetworkDataError, UnknownNetwork
from gridloom.grid.model import (
    SIDE_FROM,
    SIDE_TO,
    SWITCH_ON_LINE,
    SWITCH_ON_LINK,
    SWITCH_ON_TRAFO,
    District,
    FloatArray,
    Frame,
    IntArray,
    PandapowerNet,
    PgmMaps,
    RecordArray,
    StrArray,
    branch_status,
)

log = logging.getLogger(__name__)

DEFAULT_DISTRICT = "1-MVLV-rural-all-0-sw"

DISTRICTS: dict[str, str] = {
    "1-MVLV-rural-all-0-sw": "rural MV grid and its LV grids: 90 MV/LV transformers, 5,373 loads (the default)",
    "1-MVLV-semiurb-all-0-sw": "semi-urban MV grid and its LV grids: 110 MV/LV transformers, 8,772 loads",
    "1-MVLV-urban-all-0-sw": "urban MV grid and its LV grids: 133 MV/LV transformers, 11,542 loads",
    "1-MVLV-comm-all-0-sw": "commercial MV grid and its LV grids: 79 MV/LV transformers, 6,860 loads",
    "1-LV-rural1--0-sw": "small rural LV grid: 1 MV/LV transformer, 13 loads",
    "1-LV-rural2--0-sw": "rural LV grid: 1 MV/LV transformer, 99 loads",
    "1-LV-semiurb4--0-sw": "semi-urban LV grid: 1 MV/LV transformer, 41 loads",
    "1-LV-urban6--0-sw": "urban LV grid: 1 MV/LV transformer, 111 loads",
}

# Bump when District/PgmMaps or the conversion changes, so old pickles are not reused.
_CACHE_FORMAT = 1
_VERSIONED_PACKAGES = ("simbench", "pandapower", "power-grid-model", "power-grid-model-io", "numpy", "pandas")
# pandapower treats an external grid as an ideal voltage source in a power flow; power-grid-model
# gives a source an internal impedance from its short-circuit power. 1e14 VA makes it ideal
# for all practical purposes (1e10, the default, shifts a 110 kV bus by 5e-4 pu at 8 MW).
_STIFF_SOURCE_SK_VA = 1e14


@contextlib.contextmanager
def quiet_grid_libraries() -> Iterator[None]:
    """Silence the FutureWarning/DeprecationWarning noise pandapower, simbench and pandas emit.

    Only these two categories, and only around calls into those libraries: gridloom's own
    warnings still surface (and fail the tests, where warnings are errors).
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        yield


def default_cache_dir() -> Path:
    env = os.environ.get("GRIDLOOM_CACHE_DIR")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "gridloom"


def cache_path(code: str, cache_dir: Path | None = None) -> Path:
    """Where the district ``code`` is cached for the installed package versions."""
    versions = {}
    for package in _VERSIONED_PACKAGES:
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            versions[package] = "absent"
    key = json.dumps({"format": _CACHE_FORMAT, "code": code, "versions": versions}, sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return (cache_dir or default_cache_dir()) / "districts" / f"{code}-{digest}.pickle"


def load_district(code: str = DEFAULT_DISTRICT, *, cache_dir: Path | None = None, use_cache: bool = True) -> District:
    """The district ``code`` (a SimBench code, see :data:`DISTRICTS`), from the cache when possible.

    Raises :class:`~gridloom.errors.UnknownNetwork` (with close matches) for a code SimBench
    does not know, :class:`~gridloom.errors.NetworkDataError` if the grid cannot be converted.
    """
    _check_code(code)
    path = cache_path(code, cache_dir)
    if use_cache:
        cached = _read_cache(path, code)
        if cached is not None:
            return cached
    district = build_district(code)
    if use_cache:
        _write_cache(path, district)
    return district


def _check_code(code: str) -> None:
    if code in DISTRICTS:
        return
    with quiet_grid_libraries():
        import simbench

        all_codes: list[str] = list(simbench.collect_all_simbench_codes())
    if code in all_codes:
        return
    candidates = list(DISTRICTS) + [c for c in all_codes if c not in DISTRICTS]
    raise UnknownNetwork(code, difflib.get_close_matches(code, candidates, n=3, cutoff=0.6))


def _read_cache(path: Path, code: str) -> District | None:
    try:
        with path.open("rb") as handle, quiet_grid_libraries():
            district = pickle.load(handle)  # noqa: S301 - our own cache file, see the module docstring
    except FileNotFoundError:
        return None
    except (OSError, pickle.UnpicklingError, EOFError, AttributeError, ImportError, TypeError, ValueError) as exc:
        log.warning("ignoring unreadable district cache %s: %s", path, exc)
        return None
    if not isinstance(district, District) or district.code != code:
        log.warning("ignoring district cache %s: it holds something else", path)
        return None
    return district


def _write_cache(path: Path, district: District) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Write then rename, so a concurrent reader never sees half a file.
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", delete=False) as handle:
            pickle.dump(district, handle, protocol=pickle.HIGHEST_PROTOCOL)
            tmp = Path(handle.name)
        os.replace(tmp, path)
    except OSError as exc:
        log.warning("could not cache district %s at %s: %s", district.code, path, exc)


def build_district(code: str) -> District:
    """Load ``code`` from SimBench and convert it (no cache). Takes a few seconds."""
    with quiet_grid_libraries():
        import simbench

        try:
            net = simbench.get_simbench_net(code)
        except (ValueError, KeyError, OSError) as exc:
            raise NetworkDataError(f"SimBench could not load {code!r}: {exc}") from exc
    return district_from_net(code, net)


def district_from_net(code: str, net: PandapowerNet) -> District:
    """Convert a pandapower net (SimBench style) into a :class:`District`.

    Fills missing transformer vector groups with ``Dyn5`` in ``net`` (SimBench leaves them
    empty; Dyn5 matches its 150° phase shift, and power-grid-model-io needs one).
    """
    from power_grid_model import ComponentType, initialize_array

    with quiet_grid_libraries():
        from power_grid_model_io.converters import PandaPowerConverter

    if len(net.trafo3w):
        raise NetworkDataError(f"{code}: three-winding transformers are not supported")
    if len(net.ext_grid) == 0:
        raise NetworkDataError(f"{code}: the net has no external grid to feed it")
    net.trafo["vector_group"] = net.trafo["vector_group"].fillna("Dyn5")
    converter = PandaPowerConverter()  # one converter per conversion: convert() keeps state
    with quiet_grid_libraries():
        try:
            converted, _ = converter.load_input_data(net, make_extra_info=False)
        except (ValueError, KeyError, TypeError, NotImplementedError, RuntimeError) as exc:
            raise NetworkDataError(f"{code}: power-grid-model-io could not convert the net: {exc}") from exc
    pgm: dict[str, RecordArray] = {ComponentType(k).value: v for k, v in converted.items()}
    for component in ("node", "line", "link", "transformer", "source", "sym_load", "sym_gen"):
        if component not in pgm:  # the converter leaves out what the net does not have
            pgm[component] = initialize_array("input", component, 0)

    def ids(table: str, name: str | None = None) -> IntArray:
        # The converter's id for each pandapower row, in row order.
        series = converter.idx[(table, name)]
        return np.asarray(series.loc[net[table].index].to_numpy(), dtype=np.int64)

    def reorder(component: str, wanted: IntArray) -> RecordArray:
        array = pgm[component]
        if not len(wanted):
            return array[:0]
        order = np.argsort(array["id"])
        pos = np.searchsorted(array["id"], wanted, sorter=order)
        rows = order[np.minimum(pos, len(order) - 1)]
        if not np.array_equal(array["id"][rows], wanted):
            raise NetworkDataError(f"{code}: converted {component} ids do not match the pandapower rows")
        return array[rows]

    node_id = ids("bus")
    pgm["node"] = reorder("node", node_id)
    pgm["line"] = reorder("line", ids("line"))
    pgm["transformer"] = reorder("transformer", ids("trafo"))
    pgm["source"] = reorder("source", ids("ext_grid"))
    pgm["source"]["sk"] = _STIFF_SOURCE_SK_VA
    pgm["sym_gen"] = reorder("sym_gen", ids("sgen")) if len(net.sgen) else pgm["sym_gen"]

    bus_index = net.bus.index

    def node_of(bus_labels: Frame, what: str) -> IntArray:
        rows = np.asarray(bus_index.get_indexer(bus_labels), dtype=np.int64)
        if (rows < 0).any():
            raise NetworkDataError(f"{code}: a {what} refers to a bus that is not in net.bus")
        return rows

    # Loads: one constant-power row per customer; Z and I rows only for customers that have them.
    load = net.load
    n_customers = len(load)
    p_share = 1.0 - (_col(load, "const_z_p_percent") + _col(load, "const_i_p_percent")) / 100.0
    q_share = 1.0 - (_col(load, "const_z_q_percent") + _col(load, "const_i_q_percent")) / 100.0
    zi_share = np.stack(
        [
            _col(load, c) / 100.0
            for c in ("const_z_p_percent", "const_z_q_percent", "const_i_p_percent", "const_i_q_percent")
        ],
        axis=1,
    )
    zi_customer = np.flatnonzero((zi_share != 0).any(axis=1)).astype(np.int64)
    if n_customers:
        power_rows = reorder("sym_load", ids("load", "const_power"))
        z_rows = reorder("sym_load", ids("load", "const_impedance")[zi_customer])
        i_rows = reorder("sym_load", ids("load", "const_current")[zi_customer])
        pgm["sym_load"] = np.concatenate([power_rows, z_rows, i_rows])
    scaling = _col(load, "scaling", 1.0)
    customer_p_ref_w = load["p_mw"].to_numpy(dtype=np.float64) * scaling * 1e6
    customer_q_ref_var = load["q_mvar"].to_numpy(dtype=np.float64) * scaling * 1e6

    switch = net.switch
    kind, row, side = _switch_targets(code, net)
    link_switch = np.flatnonzero(kind == SWITCH_ON_LINK).astype(np.int64)
    if len(link_switch):
        link_ids = converter.idx[("switch", "b2b_switches")].loc[switch.index[link_switch]]
        pgm["link"] = reorder("link", np.asarray(link_ids.to_numpy(), dtype=np.int64))
    switch_closed = switch["closed"].to_numpy(dtype=bool)

    line_in_service = _col(net.line, "in_service", 1.0).astype(bool)
    trafo_in_service = _col(net.trafo, "in_service", 1.0).astype(bool)
    maps = PgmMaps(
        node_id=node_id,
        load_p_share=np.stack([p_share, q_share], axis=1),
        zi_customer=zi_customer,
        zi_share=zi_share[zi_customer],
        line_in_service=line_in_service,
        trafo_in_service=trafo_in_service,
        switch_target_kind=kind,
        switch_target_row=row,
        switch_side=side,
        switch_closed=switch_closed,
        link_switch=link_switch,
        line_i_n_a=pgm["line"]["i_n"].astype(np.float64),
        source_u_ref_pu=pgm["source"]["u_ref"].astype(np.float64),
        next_id=int(max(int(a["id"].max()) for a in pgm.values() if len(a)) + 1),
    )
    _check_statuses(code, pgm, maps)

    sgen = net.sgen
    node_volt_level = _col(net.bus, "voltLvl", 0.0).astype(np.int64)
    customer_node = node_of(load["bus"], "load")
    return District(
        code=code,
        net=net,
        pgm_input=pgm,
        n_nodes=len(net.bus),
        n_customers=n_customers,
        n_lines=len(net.line),
        n_switches=len(switch),
        n_trafos=len(net.trafo),
        n_gens=len(sgen),
        node_vn_v=net.bus["vn_kv"].to_numpy(dtype=np.float64) * 1e3,
        node_volt_level=node_volt_level,
        node_xy=_bus_xy(net),
        customer_node=customer_node,
        customer_volt_level=node_volt_level[customer_node],
        customer_p_ref_w=customer_p_ref_w,
        customer_q_ref_var=customer_q_ref_var,
        customer_profile=_str_col(load, "profile"),
        gen_node=node_of(sgen["bus"], "generator"),
        gen_p_ref_w=sgen["p_mw"].to_numpy(dtype=np.float64) * _col(sgen, "scaling", 1.0) * 1e6,
        gen_profile=_str_col(sgen, "profile"),
        gen_type=_str_col(sgen, "type"),
        line_from_node=node_of(net.line["from_bus"], "line"),
        line_to_node=node_of(net.line["to_bus"], "line"),
        trafo_hv_node=node_of(net.trafo["hv_bus"], "transformer"),
        trafo_lv_node=node_of(net.trafo["lv_bus"], "transformer"),
        source_node=node_of(net.ext_grid["bus"], "external grid"),
        pgm=maps,
    )


def _col(frame: Frame, column: str, default: float = 0.0) -> FloatArray:
    if column not in frame:
        return np.full(len(frame), default, dtype=np.float64)
    # astype, not fillna: SimBench keeps some numeric columns (voltLvl) as object dtype.
    values = np.asarray(frame[column].astype("float64").to_numpy(), dtype=np.float64)
    return np.where(np.isnan(values), default, values)


def _str_col(frame: Frame, column: str) -> StrArray:
    if column not in frame:
        return np.full(len(frame), "", dtype=np.str_)
    return np.asarray(frame[column].fillna("").astype(str).to_numpy(dtype=np.str_), dtype=np.str_)


def _bus_xy(net: PandapowerNet) -> FloatArray:
    if "geo" not in net.bus:
        return np.full((len(net.bus), 2), np.nan)
    # SimBench stores GeoJSON points: {"type":"Point", "coordinates":[lon, lat]}.
    pattern = r'"coordinates"\s*:\s*\[\s*([-+0-9.eE]+)\s*,\s*([-+0-9.eE]+)'
    xy = net.bus["geo"].astype(str).str.extract(pattern).astype(float).to_numpy(dtype=np.float64)
    return np.asarray(xy, dtype=np.float64)


def _switch_targets(code: str, net: PandapowerNet) -> tuple[IntArray, IntArray, IntArray]:
    """For each switch row: what it operates (line, trafo, link), which row, which end."""
    switch = net.switch
    n = len(switch)
    kind = np.full(n, -1, dtype=np.int64)
    row = np.full(n, -1, dtype=np.int64)
    side = np.full(n, SIDE_FROM, dtype=np.int64)
    et = switch["et"].to_numpy(dtype=str)
    bus = switch["bus"].to_numpy()
    element = switch["element"].to_numpy()
    for letter, table, k, from_col, to_col in (
        ("l", net.line, SWITCH_ON_LINE, "from_bus", "to_bus"),
        ("t", net.trafo, SWITCH_ON_TRAFO, "hv_bus", "lv_bus"),
    ):
        sel = np.flatnonzero(et == letter)
        rows = np.asarray(table.index.get_indexer(element[sel]), dtype=np.int64)
        if (rows < 0).any():
            raise NetworkDataError(f"{code}: a switch refers to a {letter!r} element that does not exist")
        at_from = table[from_col].to_numpy()[rows] == bus[sel]
        at_to = table[to_col].to_numpy()[rows] == bus[sel]
        if not (at_from | at_to).all():
            raise NetworkDataError(f"{code}: a switch sits at a bus its element does not touch")
        kind[sel], row[sel] = k, rows
        side[sel] = np.where(at_from, SIDE_FROM, SIDE_TO)
    links = np.flatnonzero(et == "b")
    kind[links] = SWITCH_ON_LINK
    row[links] = np.arange(len(links))
    if (kind < 0).any():
        raise NetworkDataError(f"{code}: switches of types {sorted(set(et[kind < 0]))} are not supported")
    return kind, row, side


def _check_statuses(code: str, pgm: dict[str, RecordArray], maps: PgmMaps) -> None:
    # Our switch -> branch-end map must reproduce the converter's statuses exactly.
    closed = maps.switch_closed[None, :]
    for component, kind in (("line", SWITCH_ON_LINE), ("transformer", SWITCH_ON_TRAFO), ("link", SWITCH_ON_LINK)):
        array = pgm.get(component)
        if array is None or not len(array):
            continue
        status = branch_status(maps, closed, kind, np.arange(len(array), dtype=np.int64))[0]
        expected = np.stack([array["from_status"], array["to_status"]], axis=1).astype(bool)
        if not np.array_equal(status, expected):
            raise NetworkDataError(f"{code}: switch states do not map onto {component} statuses as expected")
