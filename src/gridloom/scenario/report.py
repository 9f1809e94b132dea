"""The HTML report of a run: one self-contained file made from ``metrics.json`` alone.

:func:`render_report` turns a metrics mapping (schema 1, see ``run_design``/README) into
one HTML document with inline CSS and inline SVG plots (:mod:`gridloom.scenario.plots`);
it needs no network, no JavaScript and no other file. :func:`write_report` writes it.

The report reads metrics leniently: a missing key, a ``null`` or a value of the wrong type
(an interrupted run, billing switched off, a metrics file from an older or newer schema)
leaves a dash or an explanatory sentence in its place, never an exception. Every string
taken from the metrics is escaped.
"""

from __future__ import annotations

import datetime as dt
import html
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import numpy as np

from gridloom.scenario import plots

MISSING = "—"
_ROW_LIMIT = 300  # longer tables (alarms of a storm, hundreds of faults) are cut; metrics.json has them all

_CSS = """
:root { --ink: #1b1f24; --dim: #57606a; --line: #d0d7de; --soft: #f6f8fa; --blue: #1f6feb;
        --red: #c62828; --green: #2e7d32; --amber: #9a6700; }
* { box-sizing: border-box; }
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", Arial, sans-serif;
       color: var(--ink); margin: 0; background: #fff; }
main { max-width: 72rem; margin: 0 auto; padding: 1.5rem 2rem 3rem; }
h1 { font-size: 1.7rem; margin: 0 0 0.2rem; }
h2 { font-size: 1.2rem; margin: 2.2rem 0 0.6rem; padding-bottom: 0.25rem; border-bottom: 2px solid var(--line); }
h3 { font-size: 1rem; margin: 1.2rem 0 0.4rem; }
p { margin: 0.4rem 0; }
.dim { color: var(--dim); }
.small { font-size: 0.85rem; }
.badge { display: inline-block; padding: 0.05rem 0.6rem; border-radius: 1rem; font-size: 0.85rem;
         font-weight: 600; vertical-align: middle; margin-left: 0.5rem; }
.badge.completed { background: #dafbe1; color: var(--green); }
.badge.interrupted { background: #fff8c5; color: var(--amber); }
.badge.other { background: var(--soft); color: var(--dim); }
.banner { background: #fff8c5; border-left: 4px solid #d4a72c; padding: 0.5rem 0.8rem; margin: 0.8rem 0; }
.cards { display: grid; grid-template-columns: repeat(4, 1fr); gap: 0.75rem; margin: 1rem 0; }
.card { border: 1px solid var(--line); border-radius: 8px; padding: 0.7rem 0.9rem; background: var(--soft); }
.card .label { font-size: 0.8rem; text-transform: uppercase; letter-spacing: 0.04em; color: var(--dim); }
.card .value { font-size: 1.6rem; font-weight: 650; font-variant-numeric: tabular-nums; line-height: 1.25; }
.card .sub { font-size: 0.85rem; color: var(--dim); }
nav { font-size: 0.85rem; margin: 0.6rem 0 0; display: flex; flex-wrap: wrap; gap: 0.2rem 1rem; }
nav a { color: var(--blue); text-decoration: none; white-space: nowrap; }
table { border-collapse: collapse; margin: 0.5rem 0 1rem; font-size: 0.9rem; }
th, td { padding: 0.3rem 0.6rem; border-bottom: 1px solid var(--line); text-align: left; vertical-align: top; }
th { background: var(--soft); font-weight: 600; border-bottom: 2px solid var(--line); }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.nowrap { white-space: nowrap; }
tr.miss td { background: #ffebe9; }
time, .pair { white-space: nowrap; }
.pass { color: var(--green); font-weight: 700; }
.fail { color: var(--red); font-weight: 700; }
.na { color: var(--dim); }
.sev-critical, .sev-error { color: var(--red); font-weight: 600; }
.sev-warning { color: var(--amber); font-weight: 600; }
figure { margin: 0.6rem 0 1rem; }
figure svg { width: 100%; height: auto; display: block; }
details { margin: 0.5rem 0; }
summary { cursor: pointer; font-weight: 600; }
dl.defs { display: grid; grid-template-columns: max-content 1fr; gap: 0.2rem 1rem; font-size: 0.88rem; }
dl.defs dt { font-weight: 600; }
dl.defs dd { margin: 0; color: var(--dim); }
footer { margin-top: 3rem; font-size: 0.8rem; color: var(--dim); }
@media print { main { max-width: none; } .cards { grid-template-columns: repeat(4, 1fr); } }
"""

# IEEE 1366 in one line each; the run's values cover the simulated period only (not annualised).
INDEX_DEFINITIONS: tuple[tuple[str, str, str, str], ...] = (  # (metrics key, name, unit, definition)
    (
        "SAIFI", "SAIFI", "",
        "System Average Interruption Frequency Index: sustained customer interruptions (over 5 min) "
        "/ customers served.",
    ),
    (
        "SAIDI_min", "SAIDI", "min",
        "System Average Interruption Duration Index: customer-minutes of sustained interruptions / customers served.",
    ),
    (
        "CAIDI_min", "CAIDI", "min",
        "Customer Average Interruption Duration Index: SAIDI / SAIFI, the mean time to restore a customer.",
    ),
    (
        "MAIFI", "MAIFI", "",
        "Momentary Average Interruption Frequency Index: momentary customer interruptions (under 5 min) "
        "/ customers served.",
    ),
)  # fmt: skip


# --- lenient access: metrics may come from an interrupted run or another schema version ----------------
def _map(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _list(value: object) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else []


def _num(value: object) -> float | None:
    """A finite number, or None (bools, strings that are not numbers, NaN and null are not figures)."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float | Decimal):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return None
    else:
        return None
    return number if math.isfinite(number) else None


def _floats(value: object) -> np.ndarray[Any, np.dtype[np.float64]]:
    """A JSON list of numbers as floats; null or non-numbers become NaN (a gap in the line)."""
    return np.array([(v if (v := _num(x)) is not None else np.nan) for x in _list(value)], dtype=np.float64)


def _when(value: object) -> dt.datetime | None:
    if not isinstance(value, str):
        return None
    try:
        at = dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    return at.astimezone(dt.UTC) if at.tzinfo else at.replace(tzinfo=dt.UTC)


def _times(value: object) -> np.ndarray[Any, np.dtype[np.datetime64]]:
    """ISO timestamps as naive-UTC datetime64 (what matplotlib plots), cut at the first unreadable one."""
    out: list[np.datetime64] = []
    for raw in _list(value):
        at = _when(raw)
        if at is None:
            break  # the series after it could not be placed in time
        out.append(np.datetime64(at.replace(tzinfo=None), "s"))
    return np.array(out, dtype="datetime64[s]")


# --- formatting ------------------------------------------------------------------------------------------
def _e(value: object) -> str:
    return html.escape(str(value))


def _text(value: object, default: str = MISSING) -> str:
    """An escaped string from the metrics, or the default for null/empty."""
    return default if value is None or value == "" else _e(value)


def _int(value: object) -> str:
    number = _num(value)
    return MISSING if number is None else f"{number:,.0f}"


def _fixed(value: object, digits: int = 1) -> str:
    number = _num(value)
    return MISSING if number is None else f"{number:,.{digits}f}"


def _general(value: object) -> str:
    """Three significant digits, in exponent form when tiny (a balance error of 1.2e-06)."""
    number = _num(value)
    return MISSING if number is None else f"{number:.3g}"


def _pct(value: object, digits: int = 2) -> str:
    """A fraction (0..1) as a percentage."""
    number = _num(value)
    return MISSING if number is None else f"{number * 100:.{digits}f} %"


def _energy(kwh: object) -> str:
    number = _num(kwh)
    if number is None:
        return MISSING
    return f"{number / 1000:,.2f} MWh" if abs(number) >= 10_000 else f"{number:,.1f} kWh"


def _money(value: object, currency: object) -> str:
    try:
        amount = f"{Decimal(str(value)):,.2f}"
    except InvalidOperation:
        return _text(value)
    return f"{_e(currency)} {amount}" if currency else amount


def _duration(seconds: object) -> str:
    """A latency or duration the way an engineer would say it: 850 ms, 2.4 s, 12 min, 4 h."""
    s = _num(seconds)
    if s is None:
        return MISSING
    if s < 1:
        return f"{s * 1000:.0f} ms"
    if s < 120:
        return f"{s:.1f} s"
    if s < 7200:
        return f"{s / 60:.0f} min"
    if s < 3 * 86400:
        return f"{s / 3600:.1f} h".replace(".0 h", " h")
    return f"{s / 86400:.1f} d"


def _time(value: object) -> str:
    at = _when(value)
    if at is None:
        return _text(value)
    shown = at.strftime("%Y-%m-%d %H:%M") + (f":{at.second:02d}" if at.second else "")
    return f'<time datetime="{at.isoformat()}">{shown}</time>'


def _mark(ok: object) -> str:
    if ok is True:
        return '<span class="pass" title="meets">✓</span>'
    if ok is False:
        return '<span class="fail" title="fails">✗</span>'
    return '<span class="na" title="no requirement or no measurement">—</span>'


def _counts(value: object) -> str:
    """{"replay": 2, "tampered": 1} as "replay 2, tampered 1" (zeros left out)."""
    parts = [f"{_e(k)} {_int(v)}" for k, v in _map(value).items() if _num(v)]
    return ", ".join(parts) or MISSING


def _plural(n: float | None, word: str) -> str:
    count = n or 0
    return f"{count:,.0f} {word}{'' if count == 1 else 's'}"


# --- building blocks -------------------------------------------------------------------------------------
Column = tuple[str, bool]  # (heading, numeric: right-aligned)


def _table(columns: Sequence[Column], rows: Iterable[Sequence[str]], *, classes: Sequence[str] = ()) -> list[str]:
    """An HTML table; cells are already-escaped HTML. ``classes`` are per-row CSS classes."""
    head = "".join(f'<th class="num">{h}</th>' if num else f"<th>{h}</th>" for h, num in columns)
    out = ["<table>", f"<thead><tr>{head}</tr></thead>", "<tbody>"]
    for i, row in enumerate(rows):
        css = f' class="{classes[i]}"' if i < len(classes) and classes[i] else ""
        cells = "".join(
            f'<td class="num">{c}</td>' if num else f"<td>{c}</td>" for c, (_, num) in zip(row, columns, strict=False)
        )
        out.append(f"<tr{css}>{cells}</tr>")
    return [*out, "</tbody>", "</table>"]


def _cut(items: list[Any]) -> tuple[list[Any], str]:
    if len(items) <= _ROW_LIMIT:
        return items, ""
    return items[:_ROW_LIMIT], f'<p class="dim small">… and {len(items) - _ROW_LIMIT:,} more in metrics.json.</p>'


def _figure(svg: str | None, empty: str) -> list[str]:
    return [f"<figure>{svg}</figure>"] if svg else [f'<p class="dim">{_e(empty)}</p>']


def _card(label: str, value: str, sub: str = "") -> str:
    return (
        f'<div class="card"><div class="label">{label}</div><div class="value">{value}</div>'
        f'<div class="sub">{sub or "&nbsp;"}</div></div>'
    )


# --- sections --------------------------------------------------------------------------------------------
def _sim_seconds(m: Mapping[str, Any]) -> float | None:
    sim = _map(m.get("sim"))
    steps, step_s = _num(sim.get("steps")), _num(sim.get("step_s"))
    if steps is not None and step_s is not None:
        return steps * step_s
    start, end = _when(_map(m.get("scenario")).get("start")), _when(sim.get("end"))
    return (end - start).total_seconds() if start and end else None


def _headline(m: Mapping[str, Any]) -> list[str]:
    sc, sim, grid = _map(m.get("scenario")), _map(m.get("sim")), _map(m.get("grid"))
    status = m.get("status")
    css = status if status in ("completed", "interrupted") else "other"
    out = [
        f"<h1>Run: {_text(sc.get('name'), 'unnamed scenario')}"
        f'<span class="badge {css}">{_text(status, "status unknown")}</span></h1>'
    ]
    if sc.get("description"):
        out.append(f'<p class="dim">{_e(sc.get("description"))}</p>')
    days = _num(sc.get("days"))
    facts = [
        f"district {_text(sc.get('district'))}",
        f"from {_time(sc.get('start'))} UTC",
        f"{days:g} day{'' if days == 1 else 's'}" if days is not None else "",
        f"seed {_text(sc.get('seed'))}",
        f"systems: {', '.join(_e(s) for s in _list(sc.get('systems'))) or MISSING}",
    ]
    out.append(f'<p class="small">{" · ".join(f for f in facts if f)}</p>')
    if status == "interrupted":
        out.append(
            f'<div class="banner">This run was interrupted at {_time(sim.get("end"))} UTC '
            f"(step {_int(sim.get('steps'))}); every figure covers the simulated time up to then.</div>"
        )
    out += _cards(m, sc, grid)
    return out


def _cards(m: Mapping[str, Any], sc: Mapping[str, Any], grid: Mapping[str, Any]) -> list[str]:
    ami, billing, outages = _map(m.get("ami")), m.get("billing"), _map(m.get("outages"))
    events = [_map(e) for e in _list(outages.get("events"))]
    momentary = sum(1 for e in events if e.get("momentary") is True)
    indices = _map(outages.get("indices"))
    rejected = sum(v for v in (_num(x) for x in _map(m.get("rejections")).values()) if v)
    drills = [_map(d) for d in _list(m.get("drills"))]
    passed = sum(1 for d in drills if d.get("passed") is True)
    wall, sim_s = _num(_map(m.get("wall_s")).get("total")), _sim_seconds(m)
    speed = f"{sim_s / wall:,.0f}&times; faster than real time" if wall and sim_s else ""
    n_sub, n_feed = _num(sc.get("substations")), _num(sc.get("feeders"))
    bills = _map(billing)
    cards = [
        _card(
            "customers",
            _int(sc.get("customers")),
            " · ".join(x for x in (n_sub and _plural(n_sub, "substation"), n_feed and _plural(n_feed, "feeder")) if x),
        ),
        _card(
            "energy at substations",
            _energy(grid.get("substation_kwh")),
            f"metered net {_energy(grid.get('metered_net_kwh'))} · losses {_energy(grid.get('losses_kwh'))}",
        ),
        _card(
            "voltage violations",
            _int(grid.get("voltage_violations")),
            f"of {_int(grid.get('customer_intervals'))} customer-intervals",
        ),
        _card(
            "data completeness",
            _pct(ami.get("completeness_after_vee")),
            f"after VEE · {_pct(ami.get('completeness_delivered'))} delivered",
        ),
        _card(
            "bills",
            _int(bills.get("bills")) if billing is not None else MISSING,
            f"{_money(bills.get('billed_total'), bills.get('currency'))} · {_int(bills.get('held'))} held"
            if billing is not None
            else "billing not in this run",
        ),
        _card(
            "outages",
            f"{len(events) - momentary:,} sustained",
            f"{momentary:,} momentary · SAIDI {_fixed(indices.get('SAIDI_min'), 1)} min",
        ),
        _card(
            "messages rejected",
            f"{rejected:,.0f}",
            f"drills {passed}/{len(drills)} passed" if drills else "no attack drill in this run",
        ),
        _card("wall time", _duration(wall), speed),
    ]
    return ['<div class="cards">', *cards, "</div>"]


def _load(m: Mapping[str, Any]) -> list[str]:
    s, grid = _map(m.get("series")), _map(m.get("grid"))
    at = _times(s.get("at"))
    svg = plots.territory_load(
        at,
        {
            "substation": _floats(s.get("substation_kw")),
            "customers": _floats(s.get("customer_kw")),
            "MV generation": _floats(s.get("generation_mv_kw")),
            "losses": _floats(s.get("losses_kw")),
        },
    )
    rows = [
        ("energy drawn at the substations", _energy(grid.get("substation_kwh"))),
        ("generation on the MV network", _energy(grid.get("generation_mv_kwh"))),
        ("customers' net metered energy", _energy(grid.get("metered_net_kwh"))),
        ("losses", _energy(grid.get("losses_kwh"))),
        ("energy balance error", _general(grid.get("energy_balance_error"))),
        ("PV units · EVs · batteries", " · ".join(_int(grid.get(k)) for k in ("pv_units", "evs", "batteries"))),
    ]
    return [
        '<p class="dim small">Power at the substations, the customers\' net load, MV-connected generation '
        "(negative load) and network losses, per 15-minute interval.</p>",
        *_figure(svg, "No load series in the metrics (the run stopped before its first step)."),
        *_table((("over the run", False), ("", True)), rows),
    ]


def _voltage(m: Mapping[str, Any]) -> list[str]:
    s = _map(m.get("series"))
    limits = _limits(m)
    svg = plots.voltage_band(
        _times(s.get("at")),
        substation=_floats(s.get("substation_voltage_pu")),
        p01=_floats(s.get("voltage_pu_p01")),
        p50=_floats(s.get("voltage_pu_p50")),
        p99=_floats(s.get("voltage_pu_p99")),
        limits=limits,
    )
    band = "&ndash;".join(f"{x:.2f}" for x in limits) or MISSING
    return [
        f'<p class="dim small">The shaded band holds 98 % of customers at each interval (p01 to p99), the line in it '
        f"is the median customer; dashed lines are the limits ({band} p.u.).</p>",
        *_figure(svg, "No voltage series in the metrics."),
    ]


def _limits(m: Mapping[str, Any]) -> list[float]:
    raw = _list(_map(m.get("voltage_histogram")).get("limits_pu"))
    return [x for x in (_num(v) for v in raw) if x is not None]


def _histogram(m: Mapping[str, Any]) -> list[str]:
    hist = _map(m.get("voltage_histogram"))
    edges, counts, limits = _floats(hist.get("edges_pu")), _floats(hist.get("counts")), _limits(m)
    svg = plots.voltage_histogram(edges, counts, limits)
    out = _figure(svg, "No customer voltages were recorded.")
    if svg and limits and edges.size == counts.size + 1:
        centres = (edges[:-1] + edges[1:]) / 2
        outside = float(np.nansum(counts[(centres < min(limits)) | (centres > max(limits))]))
        total = float(np.nansum(counts))
        out.append(
            f"<p>{outside / total * 100:.2f} % of {total:,.0f} customer-intervals lie outside "
            f"{min(limits):.2f}&ndash;{max(limits):.2f} p.u.</p>"
        )
    return out


def _customers_out(m: Mapping[str, Any]) -> list[str]:
    s = _map(m.get("series"))
    out = _floats(s.get("customers_out"))
    svg = plots.customers_out(_times(s.get("at")), out)
    lines = _figure(svg, "No customers-out series in the metrics.")
    if svg and not np.nansum(out):
        lines.append("<p>No customer lost supply during the run.</p>")
    elif svg:
        lines.append(f"<p>At most {np.nanmax(out):,.0f} customers were out at once.</p>")
    return lines


def _vee(m: Mapping[str, Any]) -> list[str]:
    ami, vee = _map(m.get("ami")), _map(m.get("vee"))
    rows = [
        ("interval reads offered by meters", _int(ami.get("reads_offered"))),
        ("lost in the field network", _int(ami.get("reads_lost_in_field"))),
        ("delivered to the head-end", _int(ami.get("reads_delivered"))),
        ("stored by the MDMS", _int(ami.get("reads_stored"))),
        ("estimated by VEE", _int(ami.get("reads_estimated"))),
        ("register reads", _int(ami.get("register_reads"))),
        ("completeness as delivered", _pct(ami.get("completeness_delivered"))),
        ("completeness after VEE", _pct(ami.get("completeness_after_vee"))),
    ]
    offered, delivered = _map(ami.get("events_offered")), _map(ami.get("events_delivered"))
    event_rows = [(_e(k), _int(offered.get(k)), _int(delivered.get(k))) for k in dict.fromkeys([*offered, *delivered])]
    labels: list[str] = []
    values: list[float] = []
    colours: list[str] = []
    for group, key, colour in (("flagged", "flagged", plots.AMBER), ("estimated", "estimated_by_rule", plots.BLUE)):
        for rule, count in _map(vee.get(key)).items():
            labels.append(f"{group}: {rule}")
            values.append(_num(count) or 0.0)
            colours.append(colour)
    if (unestimated := _num(vee.get("unestimated"))) is not None:
        labels.append("left unestimated")
        values.append(unestimated)
        colours.append(plots.RED)
    svg = plots.bars("vee", labels, values, title="VEE actions", xlabel="reads", colours=colours)
    out = [*_table((("AMI interval data", False), ("", True)), rows)]
    if event_rows:
        out += _table((("meter event", False), ("offered", True), ("delivered", True)), event_rows)
    return [*out, *_figure(svg, "VEE flagged and estimated nothing.")]


def _bills(m: Mapping[str, Any]) -> list[str]:
    billing = m.get("billing")
    if billing is None or not isinstance(billing, Mapping):
        return [
            '<p class="dim">Billing was not part of this run (its scenario did not include the billing system).</p>'
        ]
    cur = billing.get("currency")
    by_tariff = _map(billing.get("by_tariff"))
    out = [
        f"<p>Cycle {_text(billing.get('cycle'))}: {_int(billing.get('bills'))} bills, "
        f"{_int(billing.get('issued'))} issued, {_int(billing.get('held'))} held for review; "
        f"{_money(billing.get('billed_total'), cur)} for {_energy(billing.get('energy_delivered_kwh'))}.</p>"
    ]
    if not by_tariff:
        return [*out, '<p class="dim">No bill by tariff in the metrics.</p>']
    labels = [str(t) for t in by_tariff]
    totals = [_num(_map(v).get("total")) or 0.0 for v in by_tariff.values()]
    unit = f" ({cur})" if isinstance(cur, str) and cur else ""
    svg = plots.bars("bills", labels, totals, title="Billed by tariff", xlabel=f"billed{unit}", value_format="{:,.2f}")
    rows = []
    for tariff, raw in by_tariff.items():
        row = _map(raw)
        n, total = _num(row.get("bills")), _num(row.get("total"))
        mean = _money(f"{total / n:.2f}", cur) if n and total is not None else MISSING
        rows.append((_e(tariff), _int(n), _energy(row.get("energy_kwh")), _money(row.get("total"), cur), mean))
    columns = (("tariff", False), ("bills", True), ("energy", True), ("billed", True), ("per bill", True))
    return [*out, *_figure(svg, "Nothing was billed."), *_table(columns, rows)]


def _outages(m: Mapping[str, Any]) -> list[str]:
    outages = _map(m.get("outages"))
    events = [_map(e) for e in _list(outages.get("events"))]
    out = [
        f'<p class="dim small">Source: {_text(outages.get("source"))}; '
        f"{_int(outages.get('customers_served'))} customers served.</p>"
    ]
    if events:
        shown, more = _cut(events)
        rows = [
            (
                f'{_text(e.get("device"))} <span class="dim">{_text(e.get("kind"), "")}</span>',
                _int(e.get("substation")),
                _text(e.get("cause")),
                _time(e.get("start")),
                _time(e.get("end")) if e.get("end") else '<span class="fail">not restored</span>',
                _int(e.get("customers")),
                _fixed(e.get("customer_minutes"), 0),
                "momentary" if e.get("momentary") is True else "",
            )
            for e in shown
        ]
        columns = (
            ("device", False), ("substation", True), ("cause", False), ("start (UTC)", False), ("end (UTC)", False),
            ("customers", True), ("customer-minutes", True), ("momentary", False),
        )  # fmt: skip
        out += [*_table(columns, rows), more]
    else:
        out.append("<p>No outage: no protective device operated during the run.</p>")
    indices = _map(outages.get("indices"))
    index_rows = [(name, _fixed(indices.get(key), 3), unit) for key, name, unit, _ in INDEX_DEFINITIONS]
    days = _num(_map(m.get("scenario")).get("days"))
    period = f"the run's {days:g} day{'' if days == 1 else 's'}" if days is not None else "the run"
    out += [
        f"<h3>Reliability indices (IEEE 1366) over {period}, not annualised</h3>",
        *_table((("index", False), ("value", True), ("unit", False)), index_rows),
        '<dl class="defs">',
        *(f"<dt>{name}</dt><dd>{text}</dd>" for _, name, _, text in INDEX_DEFINITIONS),
        "</dl>",
    ]
    return out + _oms(m)


def _oms(m: Mapping[str, Any]) -> list[str]:
    """What the OMS detected from the meters' last gasps, beside what protection did (above)."""
    oms = _map(m.get("oms"))
    if not oms:
        return ["<h3>Outage management</h3>", '<p class="dim">No OMS ran in this scenario (systems: oms).</p>']
    records = [_map(r) for r in _list(oms.get("outages"))]
    delay = _map(oms.get("detection_delay_s"))
    out = [
        "<h3>What the OMS saw</h3>",
        f"<p>From {_int(_map(oms.get('events')).get('last_gasps'))} last gasps and "
        f"{_int(_map(oms.get('events')).get('restores'))} power restores (through the head-end, AMI-11) and "
        f"{_int(_map(oms.get('pings')).get('meters'))} meters pinged: {_plural(len(records), 'outage')}, mean "
        f"detection delay {_duration(delay.get('mean'))}; {_int(oms.get('work_orders'))} work orders to the field "
        f"crews (AMI-18), {_int(oms.get('restoration_estimates'))} restoration estimates to customers (DGM-27).</p>",
    ]
    if records:
        shown, more = _cut(records)
        rows = [
            (
                _text(r.get("predicted_device")),
                _text(r.get("device_kind"), ""),
                _time(r.get("start")),
                _time(r.get("detected_at")),
                _time(r.get("end")) if r.get("end") else '<span class="fail">open</span>',
                _int(r.get("customers")),
                _fixed(r.get("confidence"), 2),
                _text(r.get("status")),
            )
            for r in shown
        ]
        columns = (
            ("located at", False), ("kind", False), ("start (UTC)", False), ("detected (UTC)", False),
            ("restored (UTC)", False), ("customers", True), ("confidence", True), ("status", False),
        )  # fmt: skip
        out += [*_table(columns, rows), more]
    indices = _map(oms.get("indices"))
    if indices:
        keys = (("saifi", "SAIFI", ""), ("saidi_min", "SAIDI", "min"), ("caidi_min", "CAIDI", "min"),
                ("maifi", "MAIFI", ""))  # fmt: skip
        out += [
            '<p class="small">The OMS\'s indices, from its own records (meters send no last gasp for an '
            "interruption shorter than a few seconds, so the OMS's MAIFI misses what only protection saw):</p>",
            *_table(
                (("index", False), ("value", True), ("unit", False)),
                [(name, _fixed(indices.get(key), 3), unit) for key, name, unit in keys],
            ),
        ]
    return out


def _demand_response(m: Mapping[str, Any]) -> list[str]:
    dr = _map(m.get("demand_response"))
    if dr.get("implemented") is not True:
        return ['<p class="dim">No demand-response system in this run: add lms to the scenario systems.</p>']
    events = [_map(e) for e in _list(dr.get("events"))]
    intro = []
    if "enrolled" in dr:
        programs = _map(dr.get("programs"))
        where = ", ".join(f"{_int(n)} in {_text(p)}" for p, n in programs.items() if n) if programs else ""
        intro = [
            f"<p>{_int(dr.get('enrolled'))} of {_int(dr.get('eligible'))} residential LV customers enrolled"
            f"{f' ({where})' if where else ''}. The DMS sends the LMS each event's requirement (DGM-16); the LMS "
            "commands the DLC customers' HAN devices through the head-end (AMI-12c, relayed to their ESI on AMI-27) "
            "and sends critical-peak prices and reliability levels to the other customers' EMS VENs through its "
            "OpenADR VTN. Baseline: the program's customers' devices as they would have run without the event; "
            "actual: as they ran.</p>"
        ]
    adr = _map(dr.get("openadr"))
    if adr:
        refused = sum(int(v) for v in _map(adr.get("refused")).values())
        intro.append(
            f"<p>OpenADR 2.0b: VTN at {_text(adr.get('vtn'))} (TLS, certificates from the run's CA), "
            f"{_int(adr.get('vens_enrolled'))} VENs enrolled by certificate fingerprint, "
            f"{_int(adr.get('registrations'))} registrations, {_int(adr.get('requests'))} requests, "
            f"{refused} refused.</p>"
        )
    if not events:
        return [*intro, "<p>No demand-response event in this run.</p>"]
    svg = plots.demand_response(
        [
            (str(e.get("name") or f"event {i + 1}"), _times(e.get("at")), _floats(e.get("baseline_kw")),
             _floats(e.get("actual_kw")))
            for i, e in enumerate(events)
        ]
    )  # fmt: skip
    rows = []
    for i, e in enumerate(events):
        shed = e.get("shed_kw")
        series = _floats(shed)
        if series.size and np.isfinite(series).any():
            peak, mean = f"{np.nanmax(series):,.1f}", f"{np.nanmean(series):,.1f}"
        else:
            peak, mean = _fixed(shed), MISSING
        settlement = e.get("settlement")
        settled = _map(settlement)
        reduction_wh = _num(settled.get("reduction_wh"))
        settled_text = (
            f"{_energy(None if reduction_wh is None else reduction_wh / 1000)} reduced ({_text(settled.get('method'))})"
            if settled
            else _text(settlement)
        )
        noise_wh, bias_wh = _num(settled.get("placebo_sigma_wh")), _num(settled.get("placebo_mean_wh"))
        if noise_wh is not None and bias_wh is not None:
            settled_text += f"; without an event: {bias_wh / 1000:+,.1f} ± {noise_wh / 1000:,.1f} kWh"
        rows.append((_text(e.get("name"), f"event {i + 1}"), _time(e.get("start")), _time(e.get("end")), peak, mean,
                     _int(e.get("meters_confirmed")), settled_text))  # fmt: skip
    columns = (("event", False), ("start (UTC)", False), ("end (UTC)", False), ("peak shed kW", True),
               ("mean shed kW", True), ("meters confirmed", True), ("settlement", False))  # fmt: skip
    note = (
        '<p>Settlement is measured from the meters\' reads against the baseline; "without an event" is what the '
        "same method settles, in the same window, for as many control meters that did nothing (mean ± 1 sigma of 20 "
        "such groups): a reduction inside that band cannot be told from noise.</p>"
    )
    out = [*intro, *_figure(svg, "The events carry no baseline or actual series."), *_table(columns, rows), note]
    return out + _openadr_events(events) + _compliance(events)


def _openadr_events(events: list[Mapping[str, Any]]) -> list[str]:
    """What the VENs did with each OpenADR event (latencies in wall time)."""
    rows = []
    for e in events:
        for event_id, o in _map(e.get("openadr")).items():
            v = _map(o)
            rows.append((_text(event_id), _int(v.get("vens_targeted")), _int(v.get("vens_received")),
                         _int(v.get("vens_opted_in")), _int(v.get("vens_opted_out")), _int(v.get("vens_unanswered")),
                         _fixed(v.get("received_p95_s"), 2), _fixed(v.get("replied_p95_s"), 2),
                         _int(v.get("vtn_refused"))))  # fmt: skip
    if not rows:
        return []
    columns = (("OpenADR event", False), ("VENs targeted", True), ("received", True), ("opted in", True),
               ("opted out", True), ("unanswered", True), ("received p95 s", True), ("replied p95 s", True),
               ("VTN refused", True))  # fmt: skip
    return ["<h3>OpenADR events and the VENs' answers</h3>", *_table(columns, rows)]


def _compliance(events: list[Mapping[str, Any]]) -> list[str]:
    """The LMS's compliance reports the DMS received (AMI-7)."""
    rows = [
        (_text(c.get("event_id")), _fixed(c.get("requested_kw"), 1), _fixed(c.get("delivered_kw"), 1),
         _int(c.get("participants")), _int(c.get("opted_out")))
        for e in events for c in (_map(x) for x in _list(e.get("compliance_received_by_dms")))
    ]  # fmt: skip
    if not rows:
        return []
    columns = (("event", False), ("requested kW", True), ("delivered kW", True), ("participants", True),
               ("opted out", True))  # fmt: skip
    return ["<h3>Compliance the DMS received (AMI-7)</h3>", *_table(columns, rows)]


def _timeline(m: Mapping[str, Any]) -> list[str]:
    events = [_map(e) for e in _list(m.get("timeline"))]
    if not events:
        return ["<p>No event was injected: the scenario's timeline is empty.</p>"]
    shown, more = _cut(events)
    rows = [(_time(e.get("at")), _text(e.get("kind")), _text(e.get("detail"))) for e in shown]
    return [*_table((("at (UTC)", False), ("kind", False), ("detail", False)), rows), more]


def _drills(m: Mapping[str, Any]) -> list[str]:
    drills = [_map(d) for d in _list(m.get("drills"))]
    if not drills:
        return ["<p>No attack drill in this run.</p>"]
    passed = sum(1 for d in drills if d.get("passed") is True)
    rows = [
        (
            _time(d.get("at")),
            _text(d.get("attack")),
            _text(d.get("interface")),
            _text(d.get("expected")),
            _text(d.get("outcome")),
            _mark(d.get("passed")),
        )
        for d in drills
    ]
    columns = (("at (UTC)", False), ("attack", False), ("interface", False), ("expected", False),
               ("outcome", False), ("pass", False))  # fmt: skip
    classes = ["miss" if d.get("passed") is False else "" for d in drills]
    return [f"<p>{passed} of {len(drills)} drills passed.</p>", *_table(columns, rows, classes=classes)]


def _alarms(m: Mapping[str, Any]) -> list[str]:
    alarms = [_map(a) for a in _list(m.get("alarms"))]
    if not alarms:
        return ["<p>No alarm was raised.</p>"]
    shown, more = _cut(alarms)
    rows = [
        (
            _time(a.get("at")),
            f'<span class="sev-{_e(str(a.get("severity", "")).lower())}">{_text(a.get("severity"))}</span>',
            _text(a.get("source")),
            _text(a.get("text")),
        )
        for a in shown
    ]
    columns = (("at (UTC)", False), ("severity", False), ("source", False), ("alarm", False))
    return [f"<p>{len(alarms):,} alarms.</p>", *_table(columns, rows), more]


def _interfaces(m: Mapping[str, Any]) -> list[str]:
    ifaces = [_map(i) for i in _list(m.get("interfaces"))]
    out: list[str] = []
    if ifaces:
        failing = sum(1 for i in ifaces if i.get("meets_timing") is False)
        rows = [
            (
                f'<span title="{_e(i.get("timing") or "")}">{_text(i.get("interface"))}</span>',
                _text(i.get("title")) + (f" <em>({_text(i.get('carried_by'))})</em>" if i.get("carried_by") else ""),
                f'<span class="pair">{_text(i.get("from"))} → {_text(i.get("to"))}</span>',
                _int(i.get("sent")),
                _int(i.get("delivered")),
                _int(i.get("records")),
                _duration(i.get("latency_p50_s")),
                _duration(i.get("latency_p99_s")),
                _duration(i.get("required_max_latency_s")),
                _mark(i.get("meets_timing")),
                _counts(i.get("rejections")),
            )
            for i in ifaces
        ]
        columns = (
            ("interface", False), ("title", False), ("from → to", False), ("sent", True), ("delivered", True),
            ("records", True), ("p50", True), ("p99", True), ("required", True), ("meets timing", False),
            ("rejected", False),
        )  # fmt: skip
        classes = ["miss" if i.get("meets_timing") is False else "" for i in ifaces]
        verdict = (
            "all meet their timing"
            if not failing
            else f"{failing} {'misses its' if failing == 1 else 'miss their'} timing requirement"
        )
        out += [
            f"<p>{len(ifaces)} interfaces carried traffic; {verdict}. Latency is from sending to delivery "
            "(p50/p99 of messages; the fabric's in simulated time, other protocols' as noted); "
            "the requirement is the seed's timing for the interface "
            "(hover the id for its wording).</p>",
            *_table(columns, rows, classes=classes),
        ]
    else:
        out.append("<p>No interface carried traffic.</p>")
    return [*out, *_unimplemented(m)]


def _unimplemented(m: Mapping[str, Any]) -> list[str]:
    missing = [_map(i) for i in _list(m.get("unimplemented_interfaces"))]
    out = ["<h3>Catalogued interfaces not implemented yet</h3>"]
    if missing:
        rows = [
            (_text(i.get("interface")), _text(i.get("from")), _text(i.get("to")), _text(i.get("status")))
            for i in missing
        ]
        columns = (("interface", False), ("from", False), ("to", False), ("catalog status", False))
        out += [
            "<details>",
            f"<summary>{len(missing):,} catalogued interfaces carried no traffic because their systems "
            "are not built yet</summary>",
            *_table(columns, rows),
            "</details>",
        ]
    else:
        out.append('<p class="dim">None listed.</p>')
    return out


def _wall_time(m: Mapping[str, Any]) -> list[str]:
    wall = _map(m.get("wall_s"))
    parts = {str(k): v for k, v in ((k, _num(v)) for k, v in wall.items() if k != "total") if v is not None}
    total = _num(wall.get("total"))
    if total is not None and (rest := total - sum(parts.values())) > 0.01 * total:
        parts["other"] = rest  # time outside the measured parts (setup, writing files)
    ordered = sorted(parts.items(), key=lambda kv: -kv[1])
    svg = plots.bars(
        "wall",
        [k for k, _ in ordered],
        [v for _, v in ordered],
        xlabel="seconds",
        value_format="{:,.1f} s",
        colours=[plots.GREY if k == "other" else plots.DARK_BLUE for k, _ in ordered],
    )
    head = f"<p>{_duration(total)} in total.</p>" if total is not None else ""
    return [head, *_figure(svg, "No wall-time figures in the metrics.")]


Section = tuple[str, str, Callable[[Mapping[str, Any]], list[str]]]
SECTIONS: tuple[Section, ...] = (
    ("load", "Territory load", _load),
    ("voltage", "Substation voltage and customer voltage spread", _voltage),
    ("histogram", "Customer voltages against the limits", _histogram),
    ("out", "Customers out over time", _customers_out),
    ("vee", "Data completeness and VEE", _vee),
    ("bills", "Bills", _bills),
    ("outages", "Outages and reliability", _outages),
    ("dr", "Demand response", _demand_response),
    ("timeline", "Timeline of injected events", _timeline),
    ("drills", "Attack drills", _drills),
    ("alarms", "Alarms", _alarms),
    ("interfaces", "Interfaces", _interfaces),
    ("wall", "Where the wall time went", _wall_time),
)


def render_report(metrics: Mapping[str, Any]) -> str:
    """The run's report as one self-contained HTML document (inline CSS and SVG, no external references)."""
    m = _map(metrics)
    name = _map(m.get("scenario")).get("name")
    out = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>gridloom run: {_text(name, 'unnamed scenario')}</title>",
        f"<style>{_CSS}</style>",
        "</head>",
        "<body>",
        "<main>",
        *_headline(m),
        "<nav>" + "".join(f'<a href="#{key}">{title}</a>' for key, title, _ in SECTIONS) + "</nav>",
    ]
    for key, title, section in SECTIONS:
        out += [f'<section id="{key}">', f"<h2>{title}</h2>", *section(m), "</section>"]
    out += [
        f"<footer>gridloom run report · metrics schema {_text(m.get('schema'), '?')} · "
        "all times UTC · the figures come from metrics.json beside this file.</footer>",
        "</main>",
        "</body>",
        "</html>",
    ]
    return "\n".join(line for line in out if line) + "\n"


def write_report(metrics: Mapping[str, Any], path: Path) -> Path:
    """Render the report and write it to ``path`` (UTF-8); returns the path."""
    path.write_text(render_report(metrics), encoding="utf-8")
    return path
