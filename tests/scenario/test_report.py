"""The run report: one self-contained HTML file an engineer can read, made from metrics.json alone."""

from __future__ import annotations

import datetime as dt
import itertools
import math
import re
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from gridloom.scenario.report import SECTIONS, render_report, write_report

START = dt.datetime(2026, 7, 1, tzinfo=dt.UTC)


def sample_metrics(days: int = 1, *, customers: int = 3000) -> dict[str, Any]:
    """A realistic metrics dict (schema 1) of a summer run of a rural district, made by hand."""
    steps = 96 * days
    at = [(START + dt.timedelta(minutes=15 * i)).isoformat() for i in range(steps)]
    hours = [(i % 96) / 4 for i in range(steps)]
    scale = customers / 3000
    # evening peak, morning shoulder, PV trough at noon; MV generation follows the sun
    demand = [
        scale * (900 + 700 * math.exp(-(((h - 19.5) / 2.2) ** 2)) + 350 * math.exp(-(((h - 7.5) / 1.5) ** 2)))
        for h in hours
    ]
    sun = [max(0.0, math.sin(math.pi * (h - 5.5) / 15)) ** 1.5 for h in hours]
    customer_kw = [d - scale * 1100 * s for d, s in zip(demand, sun, strict=True)]
    generation = [-scale * 650 * s for s in sun]
    losses = [0.03 * abs(c) + 4 for c in customer_kw]
    substation = [c + g + lo for c, g, lo in zip(customer_kw, generation, losses, strict=True)]
    v_sub = [1.02 - 0.00002 * p for p in substation]
    p50 = [v - 0.012 + 0.015 * s for v, s in zip(v_sub, sun, strict=True)]
    spread = [0.008 + 0.005 * s for s in sun]  # one standard deviation of customer voltages
    p01 = [v - 2.33 * w for v, w in zip(p50, spread, strict=True)]
    p99 = [v + 2.33 * w for v, w in zip(p50, spread, strict=True)]
    out = [0] * steps
    for i in range(40, 52):  # 10:00 .. 13:00, a fuse out for 3 hours
        out[i] = 12
    out[56] = 310  # 14:00, a recloser trip cleared within the interval
    edges = [round(0.90 + 0.005 * i, 3) for i in range(41)]
    in_bin = [  # customer-intervals per bin (per customer): each interval's voltages spread normally around p50
        sum(
            (math.erf((hi - v) / (w * 2**0.5)) - math.erf((lo - v) / (w * 2**0.5))) / 2
            for v, w in zip(p50, spread, strict=True)
        )
        for lo, hi in itertools.pairwise(edges)
    ]
    counts = [round(customers * x) for x in in_bin]
    violations = sum(c for c, lo in zip(counts, edges, strict=False) if lo < 0.95 or lo >= 1.05)
    tariffs = {"R-FLAT": 0.4, "R-TIER": 0.25, "R-TOU": 0.15, "R-CPP": 0.1, "R-RTP": 0.1}
    by_tariff = {
        t: {
            "bills": round(customers * share),
            "total": f"{customers * share * 2.47 * days:.2f}",
            "energy_kwh": customers * share * 9.1 * days,
        }
        for t, share in tariffs.items()
    }
    interfaces = [
        ("DGM-20", "Between AMI Headend and Meter/HAN Gateway", "meter", "ami_headend", 14400.0, 1900.0, 5100.0),
        ("AMI-10", "Meter reading and meter events", "ami_headend", "mdms", 3600.0, 0.004, 0.011),
        ("DGM-29", "Between AMI Headend and Metering/Billing System", "ami_headend", "mdms", 3600.0, 0.003, 0.009),
        ("AMI-11", "Outage events from meters", "meter", "ami_headend", 20.0, 9.5, 41.0),
        (
            "DGM-19",
            "Between Customer Information System (CIS) and AMI Headend",
            "cis",
            "ami_headend",
            None,
            0.002,
            0.004,
        ),
    ]
    return {
        "schema": 1,
        "scenario": {
            "name": "default",
            "seed": 1,
            "district": "1-MVLV-rural-all-0-sw",
            "customers": customers,
            "substations": 1,
            "feeders": 8,
            "start": START.isoformat(),
            "days": float(days),
            "systems": ["ami_headend", "mdms", "cis", "billing"],
            "description": "One summer day of a rural SimBench district with two faults and a firmware clock jump.",
        },
        "status": "completed",
        "sim": {"steps": steps, "step_s": 900, "end": (START + dt.timedelta(days=days)).isoformat()},
        "grid": {
            "substation_kwh": sum(substation) / 4,
            "generation_mv_kwh": sum(generation) / 4,
            "metered_net_kwh": sum(customer_kw) / 4,
            "losses_kwh": sum(losses) / 4,
            "energy_balance_error": 1.2e-6,
            "voltage_violations": violations,
            "customer_intervals": customers * steps,
            "pv_units": 412,
            "evs": 240,
            "batteries": 90,
        },
        "series": {
            "at": at,
            "substation_kw": substation,
            "customer_kw": customer_kw,
            "generation_mv_kw": generation,
            "losses_kw": losses,
            "substation_voltage_pu": v_sub,
            "voltage_pu_p01": p01,
            "voltage_pu_p50": p50,
            "voltage_pu_p99": p99,
            "customers_out": out,
        },
        "voltage_histogram": {"edges_pu": edges, "counts": counts, "limits_pu": [0.95, 1.05]},
        "ami": {
            "reads_offered": customers * steps,
            "reads_delivered": int(customers * steps * 0.979),
            "reads_stored": int(customers * steps * 0.979),
            "reads_estimated": int(customers * steps * 0.0187),
            "reads_lost_in_field": int(customers * steps * 0.021),
            "completeness_delivered": 0.979,
            "completeness_after_vee": 0.9977,
            "register_reads": customers * days,
            "events_offered": {"LAST_GASP": 322, "POWER_RESTORED": 322},
            "events_delivered": {"LAST_GASP": 241, "POWER_RESTORED": 319},
        },
        "vee": {
            "flagged": {"clock_drift": 5760, "spike": 14, "zero_usage": 220},
            "estimated": 5380,
            "estimated_by_rule": {"interpolation": 5012, "historical_average": 368},
            "unestimated": 691,
        },
        "billing": {
            "cycle": "run 2026-07-01..2026-07-02",
            "bills": customers,
            "issued": customers - 17,
            "held": 17,
            "billed_total": f"{sum(float(b['total']) for b in by_tariff.values()):.2f}",
            "currency": "EUR",
            "energy_delivered_kwh": customers * 9.1 * days,
            "by_tariff": by_tariff,
        },
        "outages": {
            "source": "grid simulation (protection)",
            "customers_served": customers,
            "events": [
                {
                    "device": "fuse-1775",
                    "substation": 0,
                    "kind": "fuse",
                    "cause": "fault",
                    "start": "2026-07-01T10:07:00+00:00",
                    "end": "2026-07-01T13:07:00+00:00",
                    "customers": 12,
                    "customer_minutes": 2160.0,
                    "momentary": False,
                },
                {
                    "device": "rcl-10788",
                    "substation": 0,
                    "kind": "recloser",
                    "cause": "temporary fault",
                    "start": "2026-07-01T14:03:00+00:00",
                    "end": "2026-07-01T14:03:02+00:00",
                    "customers": 310,
                    "customer_minutes": 10.3,
                    "momentary": True,
                },
            ],
            "indices": {"SAIFI": 0.004, "SAIDI_min": 0.72, "CAIDI_min": 180.0, "MAIFI": 0.1033},
        },
        "demand_response": {"implemented": False, "events": []},
        "interfaces": [
            {
                "interface": i,
                "title": title,
                "from": a,
                "to": b,
                "sent": 12 * customers,
                "delivered": 12 * customers,
                "records": customers * steps,
                "rejected": 0,
                "rejections": {},
                "latency_p50_s": p50_s,
                "latency_p99_s": p99_s,
                "required_max_latency_s": req,
                "timing": "Meter reads every hour, within 4 hours" if req else "",
                "meets_timing": None if req is None else p99_s <= req,
            }
            for i, title, a, b, req, p50_s, p99_s in interfaces
        ],
        "unimplemented_interfaces": [
            {"interface": "DGM-1", "from": "iso_rto", "to": "ems", "status": "defined"},
            {"interface": "DR-4", "from": "drms", "to": "customer_ems", "status": "defined"},
            {"interface": "WAS-9", "from": "pmu", "to": "pdc", "status": "undefined"},
        ],
        "rejections": {},
        "drills": [],
        "timeline": [
            {
                "at": "2026-07-01T06:00:00+00:00",
                "kind": "meter_firmware",
                "detail": "clock_jump +600 s on 2 % of meters",
            },
            {"at": "2026-07-01T10:07:00+00:00", "kind": "fault", "detail": "fuse-1775 (substation 0), repair 3h"},
            {"at": "2026-07-01T14:03:00+00:00", "kind": "fault", "detail": "rcl-10788 (substation 0), temporary"},
        ],
        "alarms": [
            {
                "at": "2026-07-01T06:15:00+00:00",
                "severity": "warning",
                "source": "mdms",
                "text": "clock drift on 60 meters (VEE rule clock_drift)",
            },
            {
                "at": "2026-07-01T10:07:02+00:00",
                "severity": "critical",
                "source": "ami_headend",
                "text": "241 last gasps behind fuse-1775",
            },
        ],
        "wall_s": {
            "total": 41.8,
            "physics": 12.1,
            "fleets": 6.3,
            "fabric": 9.7,
            "ami_headend": 3.2,
            "mdms": 5.4,
            "billing": 1.9,
            "report": 0.6,
        },
    }


class _Balance(HTMLParser):
    """Counts unclosed and mismatched tags (void elements and SVG self-closing tags excepted)."""

    VOID = frozenset({"meta", "br", "hr", "img", "input", "link", "wbr", "col", "source"})

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.mismatched: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        pass  # <path .../>: opens and closes

    def handle_endtag(self, tag: str) -> None:
        if self.stack and self.stack[-1] == tag:
            self.stack.pop()
        else:
            self.mismatched.append(tag)


@pytest.fixture(scope="module")
def report() -> str:
    return render_report(sample_metrics())


def _row(doc: str, text: str) -> str:
    """The first table row (<tr ...>...</tr>) holding ``text``."""
    return next(r for r in re.findall(r"<tr\b[^>]*>.*?</tr>", doc, flags=re.S) if text in r)


def _svgs(doc: str) -> list[str]:
    return re.findall(r"<svg\b.*?</svg>", doc, flags=re.S)


def test_one_self_contained_document_with_balanced_tags(report: str, tmp_path: Path) -> None:
    path = write_report(sample_metrics(), tmp_path / "report.html")
    assert path.read_text(encoding="utf-8") == report
    assert report.startswith("<!DOCTYPE html>")
    assert report.rstrip().endswith("</html>")
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:|//)""", report, flags=re.I)
    assert "<script" not in report.lower()
    assert "@import" not in report
    assert "<?xml" not in report
    parser = _Balance()
    parser.feed(report)
    parser.close()
    assert parser.stack == []
    assert parser.mismatched == []


def test_plots_are_inline_svg_with_text_as_text_and_unique_ids(report: str) -> None:
    svgs = _svgs(report)
    assert len(svgs) == 7  # load, voltage, histogram, customers out, VEE, bills, wall time
    ids: list[str] = []
    for svg in svgs:
        root = ET.fromstring(svg)  # well-formed XML on its own
        ids += [el.attrib["id"] for el in root.iter() if "id" in el.attrib]
        assert "<text" in svg  # svg.fonttype none: labels stay searchable text
    assert len(ids) == len(set(ids))
    assert "MV generation" in svgs[0]
    assert "customers out" in svgs[3]


def test_sections_in_the_design_order(report: str) -> None:
    positions = [report.index(f"<h2>{title}</h2>") for _, title, _ in SECTIONS]
    assert positions == sorted(positions)
    assert report.index("Run: default") < positions[0]


def test_headline_figures_and_tables_show_the_metrics(report: str) -> None:
    m = sample_metrics()
    assert "3,000" in report  # customers card
    assert "99.77 %" in report  # completeness after VEE
    assert f"EUR {float(m['billing']['billed_total']):,.2f}" in report
    assert "0.004" in report  # SAIFI
    assert "0.720" in report  # SAIDI
    assert "180.000" in report  # CAIDI
    assert "System Average Interruption Frequency Index" in report
    assert "fuse-1775" in report
    assert "rcl-10788" in report
    assert "momentary" in report
    assert "2026-07-01 10:07" in report
    assert "2026-07-01 13:07" in report
    dgm20 = _row(report, "DGM-20")
    assert "85 min" in dgm20  # p99 of 5,100 s ...
    assert "4 h" in dgm20  # ... against the required 14,400 s
    assert "✓" in dgm20
    assert "R-TOU" in report
    assert "clock_drift" in report
    assert "No demand-response system in this run: add lms to the scenario systems." in report
    assert "No attack drill in this run." in report
    assert "41.8 s" in report


def test_an_interface_missing_its_timing_is_marked_failed(report: str) -> None:
    row = _row(report, "AMI-11")
    assert row.startswith('<tr class="miss">')
    assert "✗" in row
    assert "41.0 s" in row
    assert "1 misses its timing requirement" in report
    assert "✓" in _row(report, "AMI-10")
    assert "no requirement" in _row(report, "DGM-19")  # no numeric timing in the seed: a dash, not a pass


def test_not_implemented_interfaces_are_listed(report: str) -> None:
    listing = report[report.index("Catalogued interfaces not implemented yet") :]
    assert "3 catalogued interfaces" in listing
    for iface in ("DGM-1", "DR-4", "WAS-9"):
        assert f"<td>{iface}</td>" in listing


def test_interrupted_run_without_billing_or_outages_renders_with_explanations() -> None:
    m = sample_metrics()
    m["status"] = "interrupted"
    m["sim"] = {"steps": 40, "step_s": 900, "end": "2026-07-01T10:00:00+00:00"}
    m["billing"] = None
    m["outages"]["events"] = []
    m["demand_response"] = {"implemented": False}
    doc = render_report(m)
    assert 'class="badge interrupted"' in doc
    assert 'interrupted at <time datetime="2026-07-01T10:00:00+00:00">2026-07-01 10:00</time>' in doc
    assert "Billing was not part of this run" in doc
    assert "billing not in this run" in doc
    assert "No outage: no protective device operated during the run." in doc


def test_a_run_stopped_at_once_still_renders() -> None:
    empty_series = {key: [] for key in sample_metrics()["series"]}
    m = sample_metrics() | {
        "status": "interrupted",
        "series": empty_series,
        "timeline": [],
        "alarms": [],
        "interfaces": [],
        "unimplemented_interfaces": [],
    }
    m["voltage_histogram"]["counts"] = []
    doc = render_report(m)
    assert _svgs(doc)
    assert "<figure>" in doc
    assert "No load series in the metrics" in doc
    assert "No customer voltages were recorded." in doc
    assert "No interface carried traffic." in doc
    assert "No alarm was raised." in doc


def test_hostile_strings_from_metrics_are_text() -> None:
    m = sample_metrics()
    m["scenario"]["name"] = "<script>alert(1)</script>"
    m["scenario"]["description"] = 'a "quoted" & <b>bold</b> one'
    m["billing"]["by_tariff"]["<img src=x>"] = {"bills": 1, "total": "1.00", "energy_kwh": 2.0}
    m["alarms"][0]["severity"] = '"><script>'
    m["interfaces"][0]["timing"] = '" onmouseover="x'
    doc = render_report(m)
    assert "<script" not in doc
    assert "<img" not in doc
    assert "<b>bold" not in doc
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in doc
    assert "&amp; &lt;b&gt;bold" in doc
    assert 'onmouseover="x' not in doc


def test_demand_response_events_are_plotted_when_the_system_exists() -> None:
    m = sample_metrics()
    at = [(START + dt.timedelta(hours=17, minutes=15 * i)).isoformat() for i in range(8)]
    m["demand_response"] = {
        "implemented": True,
        "events": [
            {
                "name": "evening peak",
                "start": at[0],
                "end": "2026-07-01T19:00:00+00:00",
                "at": at,
                "baseline_kw": [1500.0] * 8,
                "actual_kw": [1300.0] * 8,
                "shed_kw": [200.0] * 7 + [260.0],
            }
        ],
    }
    doc = render_report(m)
    section = doc[doc.index("<h2>Demand response</h2>") : doc.index("<h2>Timeline of injected events</h2>")]
    assert "<svg" in section
    assert "evening peak" in section
    assert "260.0" in section
    assert "No demand-response system yet" not in doc


def test_drills_show_pass_and_fail() -> None:
    m = sample_metrics()
    m["drills"] = [
        {
            "at": "2026-07-01T12:00:00+00:00",
            "attack": "replay",
            "interface": "DGM-20",
            "detail": "",
            "expected": "rejected: replay",
            "outcome": "rejected: replay",
            "passed": True,
        },
        {
            "at": "2026-07-01T12:00:01+00:00",
            "attack": "unauthorised_command",
            "interface": "AMI-28",
            "detail": "",
            "expected": "rejected: not_authorised",
            "outcome": "delivered",
            "passed": False,
        },
    ]
    doc = render_report(m)
    section = doc[doc.index("<h2>Attack drills</h2>") : doc.index("<h2>Alarms</h2>")]
    assert "1 of 2 drills passed." in section
    assert "✓" in section
    assert "✗" in section
    assert "drills 1/2 passed" in doc


KEYS = [
    "scenario",
    "sim",
    "grid",
    "series",
    "ami",
    "vee",
    "billing",
    "outages",
    "demand_response",
    "interfaces",
    "drills",
    "wall_s",
    "voltage_histogram",
]


@pytest.mark.parametrize("key", KEYS)
def test_a_missing_key_leaves_the_rest_readable(key: str) -> None:
    m = sample_metrics()
    del m[key]
    doc = render_report(m)
    assert all(f"<h2>{title}</h2>" in doc for _, title, _ in SECTIONS)


@pytest.mark.parametrize("junk", [None, "garbage", 7, [1, None, "x"], {"x": {"y": None}}])
def test_values_of_the_wrong_type_render_as_dashes(junk: Any) -> None:
    m: dict[str, Any] = {"scenario": {"name": "odd"}} | dict.fromkeys(KEYS[1:], junk)
    m["series"] = {"at": junk, "substation_kw": junk}
    m["outages"] = {"events": [junk], "indices": junk}
    m["interfaces"] = [{"interface": "X-1", "latency_p99_s": junk, "meets_timing": junk, "rejections": junk}]
    doc = render_report(m)
    assert all(f"<h2>{title}</h2>" in doc for _, title, _ in SECTIONS)
    assert "Run: odd" in doc
    assert "X-1" in doc


def test_an_empty_mapping_renders() -> None:
    doc = render_report({})
    assert "unnamed scenario" in doc
    assert "status unknown" in doc


def test_a_week_stays_small() -> None:
    size = len(render_report(sample_metrics(days=7)).encode())
    assert size < 1_500_000
