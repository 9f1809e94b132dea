"""The run report's plots: matplotlib figures rendered as inline SVG.

Every function takes plain arrays (already pulled out of ``metrics.json`` by the report)
and returns one ``<svg>`` element as text, or ``None`` when there is nothing to draw.
Figures are :class:`~matplotlib.figure.Figure` objects, never pyplot, so no global
figure state or GUI backend is involved; text stays text (``svg.fonttype: none``), and
every ``id`` inside an SVG is prefixed with the plot's name so several SVGs can share one
HTML document. Times on the x axes are UTC.
"""

from __future__ import annotations

import io
import re
from collections.abc import Mapping, Sequence

import matplotlib
import numpy as np
import numpy.typing as npt
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import StrMethodFormatter

FloatArray = npt.NDArray[np.float64]
TimeArray = npt.NDArray[np.datetime64]

# Colours: one hue per quantity, used the same way in every plot (and in the report's CSS).
INK = "#1b1f24"
GRID = "#d8dee4"
BLUE = "#1f6feb"
DARK_BLUE = "#0b3d91"
AMBER = "#d4a017"
RED = "#c62828"
GREEN = "#2e7d32"
GREY = "#8c959f"
BAND = "#b6d4fe"

WIDE = (10.0, 3.3)  # inches; the page scales the SVG to its column width
NARROW = (10.0, 2.6)

_RC: dict[str, object] = {
    "svg.fonttype": "none",  # text as <text>, not glyph paths: smaller, selectable, searchable
    "svg.hashsalt": "gridloom",  # stable clip-path/marker ids, so the same metrics give the same report
    "text.parse_math": False,  # names from metrics ("$", "_") are shown as written, never as mathtext
    "font.family": "sans-serif",
    "font.sans-serif": ["DejaVu Sans", "Arial"],  # DejaVu ships with matplotlib: measured = shown
    "font.size": 10,
    "axes.edgecolor": GREY,
    "axes.labelcolor": INK,
    "axes.titlesize": 11,
    "axes.titleweight": "bold",
    "axes.titlelocation": "left",
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "axes.axisbelow": True,  # grid lines behind bars, not across them
    "grid.color": GRID,
    "grid.linewidth": 0.6,
    "xtick.color": INK,
    "ytick.color": INK,
    "legend.frameon": False,
    "legend.fontsize": 9,
    "path.simplify": True,
    "date.converter": "concise",  # "10:00 … Jul 02" on time axes, with the date once as offset
}
# No metadata block: it would carry a date (not reproducible) and external namespace URLs.
_NO_METADATA = {"Date": None, "Creator": None, "Format": None, "Type": None}
_REF = re.compile(r'(\bid="|url\(#|href="#)([^")]+)')


def to_svg(fig: Figure, name: str) -> str:
    """The figure as one ``<svg>`` element, without XML header or DOCTYPE, ids prefixed with ``name``."""
    buf = io.StringIO()
    with matplotlib.rc_context(_RC):
        fig.savefig(buf, format="svg", metadata=_NO_METADATA)
    text = buf.getvalue()
    text = text[text.index("<svg") :]
    text = _REF.sub(lambda m: f"{m.group(1)}{name}-{m.group(2)}", text)
    # matplotlib's pretty-printing splits path data over lines; one line per path is ~15 % smaller.
    return re.sub(r" \n(?=[LMCz])", " ", text).strip()


def _figure(size: tuple[float, float] = WIDE, *, rows: int = 1, cols: int = 1) -> tuple[Figure, list[Axes]]:
    with matplotlib.rc_context(_RC):
        fig = Figure(figsize=size, layout="constrained")
        axes = [fig.add_subplot(rows, cols, i + 1) for i in range(rows * cols)]
    return fig, axes


def _utc_axis(ax: Axes) -> None:
    # The concise date offset names the *last* day ("2026-Jul-02" under a one-day run), which reads
    # as the run's date; the ticks already carry the dates, so the axis just says the time zone.
    ax.xaxis.get_offset_text().set_visible(False)
    ax.set_xlabel("UTC")


def _power_unit(*series: FloatArray) -> tuple[str, float]:
    """kW for a village, MW once the largest value passes 10,000 kW (fewer digits on the axis)."""
    peak = max((float(np.nanmax(np.abs(s))) for s in series if s.size and np.isfinite(s).any()), default=0.0)
    return ("MW", 1e-3) if peak >= 10_000 else ("kW", 1.0)


def territory_load(at: TimeArray, series: Mapping[str, FloatArray]) -> str | None:
    """Substation, customer, MV generation and loss power over time (the keys name the lines)."""
    styles = {
        "substation": (DARK_BLUE, 1.8),
        "customers": (BLUE, 1.2),
        "MV generation": (AMBER, 1.4),
        "losses": (RED, 1.1),
    }
    drawn = {k: v for k, v in series.items() if v.size and np.isfinite(v).any()}
    if not at.size or not drawn:
        return None
    unit, scale = _power_unit(*drawn.values())
    with matplotlib.rc_context(_RC):
        fig, (ax,) = _figure()
        for label, values in drawn.items():
            colour, width = styles.get(label, (GREY, 1.0))
            ax.plot(at[: values.size], values * scale, label=label, color=colour, linewidth=width)
        ax.axhline(0.0, color=GREY, linewidth=0.8)
        ax.set_ylabel(f"power ({unit})")
        _utc_axis(ax)
        ax.legend(loc="upper left", ncols=len(drawn))
    return to_svg(fig, "load")


def voltage_band(
    at: TimeArray,
    *,
    substation: FloatArray,
    p01: FloatArray,
    p50: FloatArray,
    p99: FloatArray,
    limits: Sequence[float],
) -> str | None:
    """Substation voltage and the p01-p99 band of customer voltages with their median, against the limits."""
    if not at.size or not any(s.size and np.isfinite(s).any() for s in (substation, p01, p50, p99)):
        return None
    with matplotlib.rc_context(_RC):
        fig, (ax,) = _figure()
        n = min(p01.size, p99.size)
        if n:
            ax.fill_between(at[:n], p01[:n], p99[:n], color=BAND, linewidth=0, label="customers p01-p99")
        if p50.size:
            ax.plot(at[: p50.size], p50, color=BLUE, linewidth=1.2, label="customers p50")
        if substation.size:
            ax.plot(at[: substation.size], substation, color=DARK_BLUE, linewidth=1.8, label="substation")
        for i, limit in enumerate(limits):
            ax.axhline(limit, color=RED, linestyle="--", linewidth=1.0, label="limits" if i == 0 else None)
        ax.set_ylabel("voltage (p.u.)")
        _utc_axis(ax)
        ax.legend(loc="upper left", ncols=4)
    return to_svg(fig, "voltage")


def voltage_histogram(edges_pu: FloatArray, counts: FloatArray, limits: Sequence[float]) -> str | None:
    """Customer-interval voltages as bars, bins outside the limits in red."""
    if counts.size == 0 or edges_pu.size != counts.size + 1 or not np.nansum(counts):
        return None
    low, high = (min(limits), max(limits)) if limits else (-np.inf, np.inf)
    centres = (edges_pu[:-1] + edges_pu[1:]) / 2
    colours = [RED if c < low or c > high else BLUE for c in centres]
    with matplotlib.rc_context(_RC):
        fig, (ax,) = _figure(NARROW)
        ax.bar(edges_pu[:-1], counts, width=np.diff(edges_pu), align="edge", color=colours, linewidth=0)
        for limit in limits:
            ax.axvline(limit, color=RED, linestyle="--", linewidth=1.0)
        ax.set_xlabel("voltage (p.u.)")
        ax.set_ylabel("customer-intervals")
        ax.yaxis.set_major_formatter(StrMethodFormatter("{x:,.0f}"))
        ax.grid(axis="x", visible=False)
    return to_svg(fig, "histogram")


def customers_out(at: TimeArray, out: FloatArray) -> str | None:
    """Customers without supply, as a step line (an outage lasts whole intervals)."""
    n = min(at.size, out.size)
    if not n:
        return None
    with matplotlib.rc_context(_RC):
        fig, (ax,) = _figure(NARROW)
        ax.fill_between(at[:n], out[:n], step="post", color=RED, alpha=0.25, linewidth=0)
        ax.step(at[:n], out[:n], where="post", color=RED, linewidth=1.3)
        ax.set_ylim(bottom=0, top=max(1.0, float(np.nanmax(out[:n])) * 1.15))
        ax.set_ylabel("customers out")
        _utc_axis(ax)
    return to_svg(fig, "out")


def bars(
    name: str,
    labels: Sequence[str],
    values: Sequence[float],
    *,
    xlabel: str,
    title: str = "",
    colours: Sequence[str] | None = None,
    value_format: str = "{:,.0f}",
) -> str | None:
    """Horizontal bars, first label on top, each bar labelled with its value."""
    if not labels or not any(v for v in values):
        return None
    height = max(1.4, 0.9 + 0.32 * len(labels))
    with matplotlib.rc_context(_RC):
        fig, (ax,) = _figure((10.0, height))
        y = np.arange(len(labels))
        drawn = ax.barh(y, values, color=list(colours) if colours else BLUE, height=0.62)
        ax.bar_label(drawn, labels=[value_format.format(v) for v in values], padding=3, fontsize=9)
        ax.set_yticks(y, labels=list(labels))
        ax.invert_yaxis()
        ax.set_xlabel(xlabel)
        if title:
            ax.set_title(title)
        ax.grid(axis="y", visible=False)
        ax.margins(x=0.12)
    return to_svg(fig, name)


def demand_response(events: Sequence[tuple[str, TimeArray, FloatArray, FloatArray]]) -> str | None:
    """Baseline against actual load for each demand-response event: (name, at, baseline_kw, actual_kw)."""
    drawn = [e for e in events if e[1].size and (e[2].size or e[3].size)]
    if not drawn:
        return None
    cols = min(3, len(drawn))
    rows = -(-len(drawn) // cols)
    with matplotlib.rc_context(_RC):
        fig, axes = _figure((10.0, 2.6 * rows), rows=rows, cols=cols)
        for ax, (label, at, baseline, actual) in zip(axes, drawn, strict=False):
            n_base, n_act = min(at.size, baseline.size), min(at.size, actual.size)
            ax.plot(at[:n_base], baseline[:n_base], color=GREY, linestyle="--", linewidth=1.3, label="baseline")
            ax.plot(at[:n_act], actual[:n_act], color=BLUE, linewidth=1.6, label="actual")
            n = min(n_base, n_act)
            if n:
                ax.fill_between(
                    at[:n], actual[:n], baseline[:n], where=(baseline[:n] > actual[:n]).tolist(), color=GREEN, alpha=0.2
                )
            ax.set_title(label, fontsize=10)
            ax.set_ylabel("kW")
            _utc_axis(ax)
        for ax in axes[len(drawn) :]:
            ax.set_visible(False)
        axes[0].legend(loc="best")
    return to_svg(fig, "dr")
