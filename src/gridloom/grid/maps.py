"""A district or feeder as one self-contained HTML page with an inline SVG map.

Lines are drawn between their buses' SimBench coordinates (lon/lat projected with the
cosine of the mean latitude), live lines dark and de-energised ones grey. Every device is
one SVG ``<circle>`` carrying ``data-device`` (its id), coloured by kind; an open device is
drawn hollow, a de-energised one grey. No external assets: the page opens offline, and a few
lines of inline script give wheel zoom and drag pan. (A PNG would need matplotlib, which
gridloom does not depend on.)
"""

from __future__ import annotations

import html
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import numpy.typing as npt

from gridloom.errors import GridInputError
from gridloom.grid.connectivity import ConnectivityModel, DeviceKind
from gridloom.grid.faults import FaultState

BoolArray = npt.NDArray[np.bool_]
FloatArray = npt.NDArray[np.float64]

KIND_COLOUR: dict[DeviceKind, str] = {
    DeviceKind.SUBSTATION: "#6a3d9a",
    DeviceKind.BREAKER: "#e31a1c",
    DeviceKind.RECLOSER: "#ff7f00",
    DeviceKind.SECTIONALIZER: "#b8860b",
    DeviceKind.SWITCH: "#1f78b4",
    DeviceKind.FUSE: "#33a02c",
    DeviceKind.SERVICE_TRANSFORMER: "#b15928",
    DeviceKind.SERVICE_POINT: "#8fb9d9",
    DeviceKind.PREMISE: "#b39bc8",
    DeviceKind.METER: "#7fbf5f",
}
# radius in px: operations-relevant devices larger than the thousands of customer devices
KIND_RADIUS: dict[DeviceKind, float] = {
    DeviceKind.SUBSTATION: 9.0,
    DeviceKind.BREAKER: 6.0,
    DeviceKind.RECLOSER: 6.0,
    DeviceKind.SECTIONALIZER: 5.0,
    DeviceKind.SWITCH: 1.6,
    DeviceKind.FUSE: 3.0,
    DeviceKind.SERVICE_TRANSFORMER: 4.5,
    DeviceKind.SERVICE_POINT: 1.4,
    DeviceKind.PREMISE: 1.4,
    DeviceKind.METER: 1.4,
}
_DEAD = "#b0b0b0"
_MARGIN_PX = 20.0

_SCRIPT = """
(function () {
  var svg = document.getElementById('grid-map');
  var vb = svg.viewBox.baseVal, drag = null;
  svg.addEventListener('wheel', function (e) {
    e.preventDefault();
    var k = e.deltaY > 0 ? 1.2 : 1 / 1.2, r = svg.getBoundingClientRect();
    var x = vb.x + (e.clientX - r.left) / r.width * vb.width;
    var y = vb.y + (e.clientY - r.top) / r.height * vb.height;
    vb.x = x - (x - vb.x) * k; vb.y = y - (y - vb.y) * k; vb.width *= k; vb.height *= k;
  });
  svg.addEventListener('mousedown', function (e) { drag = [e.clientX, e.clientY]; });
  window.addEventListener('mouseup', function () { drag = null; });
  svg.addEventListener('mousemove', function (e) {
    if (!drag) return;
    var r = svg.getBoundingClientRect();
    vb.x -= (e.clientX - drag[0]) / r.width * vb.width; vb.y -= (e.clientY - drag[1]) / r.height * vb.height;
    drag = [e.clientX, e.clientY];
  });
})();
"""


def _project(lonlat: FloatArray, width_px: float) -> tuple[FloatArray, float]:
    """Equirectangular projection into ``width_px``; returns (xy px, height px)."""
    finite = np.isfinite(lonlat).all(axis=1)
    if not finite.any():
        raise GridInputError("the selection has no coordinates to draw (net.bus.geo is empty)")
    lon, lat = lonlat[:, 0], lonlat[:, 1]
    lat0 = float(np.nanmean(lat[finite]))
    x = lon * np.cos(np.radians(lat0))
    y = -lat
    x0, x1 = float(np.nanmin(x[finite])), float(np.nanmax(x[finite]))
    y0, y1 = float(np.nanmin(y[finite])), float(np.nanmax(y[finite]))
    span = max(x1 - x0, y1 - y0, 1e-9)
    scale = (width_px - 2 * _MARGIN_PX) / span
    out = np.column_stack(((x - x0) * scale + _MARGIN_PX, (y - y0) * scale + _MARGIN_PX))
    return out, (y1 - y0) * scale + 2 * _MARGIN_PX


def render_html(
    model: ConnectivityModel,
    *,
    state: FaultState | None = None,
    replica: int = 0,
    root: int | str | None = None,
    kinds: Iterable[DeviceKind | str] | None = None,
    title: str | None = None,
    width_px: int = 1200,
) -> str:
    """The map as an HTML document (a string).

    ``state``/``replica`` give the device states to show (default: the normal state);
    ``root`` (a device index or id, e.g. a breaker) draws only what it feeds; ``kinds``
    limits the device kinds drawn (lines are always drawn).
    """
    if state is not None and not 0 <= replica < state.n_replicas:
        raise GridInputError(f"replica {replica} out of range 0..{state.n_replicas - 1}")
    if state is None:
        state, replica = FaultState(model, 1), 0
        shown_replica = False
    else:
        shown_replica = True
    closed = state.current_closed[replica]
    dev_live = state.device_energized()[replica]

    n = model.n_devices
    selected = np.ones(n, dtype=bool)
    if root is not None:
        r = model.index(root) if isinstance(root, str) else int(model.ancestors(int(root))[0])
        selected[:] = False
        selected[r : model.subtree_end[r]] = True
    if kinds is not None:
        codes = [DeviceKind(k).code for k in kinds]
        selected &= np.isin(model.kind, codes)

    # lines in the selection: those fed from a selected device (or all, without a root)
    ld = model.line_device
    in_sel = np.ones(model.n_lines, dtype=bool) if root is None else (ld >= 0) & _subtree_mask(model, root)[ld]
    node_sel = np.zeros(model.n_nodes, dtype=bool)
    node_sel[model.line_from[in_sel]] = True
    node_sel[model.line_to[in_sel]] = True
    node_sel[model.node[selected]] = True

    pts = np.vstack((model.node_xy[node_sel], model.xy[selected]))
    pts_px, height = _project(pts, width_px)
    n_nodes_sel = int(node_sel.sum())
    node_px = np.full((model.n_nodes, 2), np.nan)
    node_px[node_sel] = pts_px[:n_nodes_sel]
    dev_px = pts_px[n_nodes_sel:]
    # an open device is drawn in its colour while its upstream side is live, grey otherwise
    upstream_live = np.where(model.parent >= 0, dev_live[np.maximum(model.parent, 0)], True)

    # a line is live from its supplied end (a tie line up to its open switch)
    line_live = np.where(ld >= 0, dev_live[np.maximum(ld, 0)], False)
    paths: dict[bool, list[str]] = {True: [], False: []}
    for i in np.flatnonzero(in_sel):
        a, b = node_px[model.line_from[i]], node_px[model.line_to[i]]
        if np.isfinite(a).all() and np.isfinite(b).all():
            paths[bool(line_live[i])].append(f"M{a[0]:.1f} {a[1]:.1f}L{b[0]:.1f} {b[1]:.1f}")

    circles = []
    for j, d in enumerate(np.flatnonzero(selected)):
        x, y = dev_px[j]
        if not (np.isfinite(x) and np.isfinite(y)):
            continue
        kind = DeviceKind.from_code(int(model.kind[d]))
        live = bool(dev_live[d])
        is_closed = bool(closed[d])
        colour = KIND_COLOUR[kind] if live or (not is_closed and upstream_live[d]) else _DEAD
        fill = colour if is_closed else "#ffffff"
        state_word = "closed" if is_closed else "open"
        dev_id = html.escape(str(model.device_id[d]))
        circles.append(
            f'<circle class="dev {kind.value} {state_word} {"live" if live else "dead"}" data-device="{dev_id}" '
            f'cx="{x:.1f}" cy="{y:.1f}" r="{KIND_RADIUS[kind]}" fill="{fill}" stroke="{colour}">'
            f"<title>{dev_id} {kind.value} {state_word}{'' if live else ' de-energised'}</title></circle>"
        )

    counts = np.bincount(model.kind[selected].astype(np.int64), minlength=len(DeviceKind))
    legend = "".join(
        f'<li><span class="sw" style="background:{KIND_COLOUR[k]}"></span>{k.value.replace("_", " ")}: '
        f"{int(counts[k.code])}</li>"
        for k in DeviceKind
        if counts[k.code]
    )
    cust = model.customer_meter
    cust_sel = selected[cust] if root is None else _subtree_mask(model, root)[cust]
    n_out = int((cust_sel & ~dev_live[cust]).sum())
    heading = html.escape(title or f"{model.code or 'district'}" + (f" — replica {replica}" if shown_replica else ""))
    live_path = "".join(paths[True])
    dead_path = "".join(paths[False])
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f"<title>{heading}</title><style>"
        "body{font-family:sans-serif;margin:12px;color:#222}"
        "#grid-map{border:1px solid #ccc;background:#fcfcfc;width:100%;height:auto;cursor:grab}"
        ".legend{list-style:none;padding:0;display:flex;flex-wrap:wrap;gap:14px;font-size:13px}"
        ".sw{display:inline-block;width:11px;height:11px;border-radius:50%;margin-right:4px;vertical-align:middle}"
        ".dev{stroke-width:1}.dev.open{stroke-width:2}"
        "</style></head><body>"
        f"<h1>{heading}</h1>"
        f"<p>{int(selected.sum())} devices, {int(cust_sel.sum())} customers, {n_out} without supply. "
        "Hollow: open device. Grey: de-energised. Wheel to zoom, drag to pan.</p>"
        f'<ul class="legend">{legend}</ul>'
        f'<svg id="grid-map" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width_px} {height:.0f}" '
        f'width="{width_px}" height="{height:.0f}">'
        f'<path class="lines live" d="{live_path}" stroke="#444" stroke-width="0.8" fill="none"/>'
        f'<path class="lines dead" d="{dead_path}" stroke="{_DEAD}" stroke-width="0.8" '
        'stroke-dasharray="3 2" fill="none"/>'
        f'<g class="devices">{"".join(circles)}</g>'
        "</svg>"
        f"<script>{_SCRIPT}</script>"
        "</body></html>\n"
    )


def _subtree_mask(model: ConnectivityModel, root: int | str) -> BoolArray:
    r = model.index(root) if isinstance(root, str) else int(root)
    mask = np.zeros(model.n_devices, dtype=bool)
    mask[r : model.subtree_end[r]] = True
    return mask


def write_html(
    path: str | Path,
    model: ConnectivityModel,
    *,
    state: FaultState | None = None,
    replica: int = 0,
    root: int | str | None = None,
    kinds: Iterable[DeviceKind | str] | None = None,
    title: str | None = None,
    width_px: int = 1200,
) -> Path:
    """Write :func:`render_html` to ``path``; returns the path."""
    out = Path(path)
    page = render_html(model, state=state, replica=replica, root=root, kinds=kinds, title=title, width_px=width_px)
    out.write_text(page, encoding="utf-8")
    return out
