"""Render an assessment as Markdown, one self-contained HTML file, or JSON.

Markdown and HTML show a summary table (one row per interface), then per interface a
two-column table -- what the seed requires beside what gridloom enforces -- and its
findings. All seed text is escaped; the HTML has inline CSS and no external assets.

JSON is a list with one object per interface, in catalog order. Its keys are stable::

    id            interface id ("AMI-9a")
    domain        seed section: AMI, ES, ET, DGM, DR, WAS
    status        defined | undefined | missing | unknown | not_an_interface | error
    seed          everything the seed says, as the catalog holds it:
                  number, title, description, actors_as_written, actors (actor ids),
                  flows[{source, target, bidirectional, information, timing{statement,
                  kind, max_latency_s}}], media, protocols, security{statement,
                  confidentiality, integrity, availability, authentication,
                  non_repudiation: {level, text}}, vulnerabilities, threats, impacts,
                  constraints, comments, vulnerability_types, threat_types, impact_types,
                  constraint_types, timing_bound_s (tightest numeric bound, or null)
    enforced      signed, source_validated, encrypted, revocation_checked (true/false, or
                  null where there is nothing to carry), encrypt_reason, freshness_s
                  (freshness/replay window, or null), senders (roles that may send),
                  message_types[{id, kind, audited, source, target, bidirectional}]
    measured      null, or what a running fabric measured: interface, delivered, sent,
                  records, rejected, rejections{kind: count}, latency_p50_s, latency_p99_s
    findings      [{kind: gap | note | countered | measured, text}]
"""

from __future__ import annotations

import html
import json
from collections.abc import Callable, Sequence
from enum import StrEnum
from typing import Any

from gridloom.assess.models import EnforcedMessageType, FindingKind, InterfaceAssessment
from gridloom.catalog import Flow, Interface, InterfaceStatus, SecurityLevel
from gridloom.catalog.messages import MessageKind

TITLE = "gridloom assessment: what the seed requires, what gridloom enforces"

# One row of the two-column table: (aspect, what the seed says, what gridloom enforces).
Row = tuple[str, list[str], list[str]]


class ReportFormat(StrEnum):
    MD = "md"
    HTML = "html"
    JSON = "json"


# --- shared content ------------------------------------------------------------------------
def _flat(text: str) -> str:
    """The seed's text on one line: its hard line breaks are layout, not meaning."""
    return " ".join(text.split())


def _yes(value: bool | None) -> str:
    return "-" if value is None else ("yes" if value else "no")


def cia_asked(iface: Interface) -> str:
    sec = iface.security
    levels = (sec.confidentiality.level, sec.integrity.level, sec.availability.level)
    return "/".join("-" if lvl is SecurityLevel.NOT_STATED else lvl.name.lower() for lvl in levels)


def _window(a: InterfaceAssessment) -> str:
    return "-" if a.enforcement.freshness_s is None else f"{a.enforcement.freshness_s:g} s"


def _audited(a: InterfaceAssessment) -> str:
    n = len(a.enforcement.audited_types)
    return "-" if not a.enforcement.carries else (f"{n} type{'s' * (n != 1)}" if n else "none")


def _findings_count(a: InterfaceAssessment) -> str:
    gaps = a.count(FindingKind.GAP)
    return f"{len(a.findings)} ({gaps} gap{'s' * (gaps != 1)})"


def totals(assessments: Sequence[InterfaceAssessment]) -> dict[str, int]:
    """Findings by kind over all assessed interfaces."""
    return {kind.value: sum(a.count(kind) for a in assessments) for kind in FindingKind}


def _totals_line(assessments: Sequence[InterfaceAssessment]) -> str:
    counts = ", ".join(f"{kind} {n}" for kind, n in totals(assessments).items())
    return f"{len(assessments)} interfaces; findings by kind: {counts}."


def _type_line(m: EnforcedMessageType) -> str:
    return f"{m.id} ({m.kind.value}{', audited' if m.audited else ''})"


def _flow_types(a: InterfaceAssessment, flow: Flow) -> list[EnforcedMessageType]:
    information = set(flow.information or ("data",))
    return [
        m
        for m in a.enforcement.message_types
        if m.kind is not MessageKind.RESPONSE
        and (m.source, m.target, m.information) in {(flow.source, flow.target, i) for i in information}
    ]


def _timing_lines(flow: Flow) -> list[str]:
    if not flow.timing.statement:
        return []
    bound = "" if flow.timing.max_latency_s is None else f", at most {flow.timing.max_latency_s:g} s"
    return [f"timing: {_flat(flow.timing.statement)} ({flow.timing.kind.value}{bound})"]


def rows(a: InterfaceAssessment) -> list[Row]:
    """The two-column table of one interface: the seed's words beside the fabric's checks."""
    iface, enf, seen = a.interface, a.enforcement, a.measurement
    carry = enf.carries
    out: list[Row] = [
        (
            "actors",
            [*iface.actors_as_written, f"actor ids: {', '.join(iface.actors) or '-'}"],
            [f"roles allowed to send: {', '.join(enf.senders)}", *enf.directions] if carry else ["nothing to carry"],
        )
    ]
    for n, flow in enumerate(iface.flows, 1):
        arrow = "<->" if flow.bidirectional else "->"
        out.append(
            (
                f"flow {n}: {flow.source} {arrow} {flow.target}",
                [*flow.information, *_timing_lines(flow)],
                [_type_line(m) for m in _flow_types(a, flow)],
            )
        )
    responses = [m for m in enf.message_types if m.kind is MessageKind.RESPONSE]
    if responses:
        out.append(("responses", [], [f"{_type_line(m)}: {m.direction}" for m in responses]))
    sec = iface.security
    transport = ["gridloom envelopes over the fabric's transport; the seed's protocols are not spoken yet"]
    out += [
        ("media and protocols", [*iface.media, *iface.protocols], transport if carry else []),
        ("security requirements (seed's words)", list(sec.statement), []),
    ]
    enforced_by_need = {
        "confidentiality": [f"encrypted: {_yes(enf.encrypted)} ({enf.encrypt_reason})"],
        "integrity": [f"signed: {_yes(enf.signed)}, verified on receipt"],
        "availability": ["not enforced (no redundancy, rate limiting or priority queues)"],
        "authentication": [
            f"source validated by CA certificate: {_yes(enf.source_validated)}",
            f"revocation checked: {_yes(enf.revocation_checked)}",
        ],
        "non_repudiation": [f"audited: {', '.join(enf.audited_types) or 'none'}"],
    }
    for name, need in sec.needs().items():
        seed_side = [] if need.level is SecurityLevel.NOT_STATED else [f"{need.level.name.lower()}: {need.text}"]
        out.append((name.replace("_", "-"), seed_side, enforced_by_need[name] if carry else []))
    measured = []
    if seen is not None:
        p99 = "-" if seen.latency_p99_s is None else f"{seen.latency_p99_s:.3g} s"
        measured = [f"measured: {seen.delivered} delivered, {seen.rejected} rejected, p99 {p99}"]
    bound = iface.tightest_latency_s
    out.append(
        (
            "timing",
            [f"tightest numeric bound: {bound:g} s"] if bound is not None else ["no numeric bound"],
            [f"freshness/replay window: {_window(a)}", *measured] if carry else [],
        )
    )
    threats = [*iface.threats, *([f"threat types: {', '.join(iface.threat_types)}"] if iface.threat_types else [])]
    out += [
        ("vulnerabilities", list(iface.vulnerabilities), []),
        ("threats", threats, []),
        ("impacts", list(iface.impacts), []),
        ("constraints", list(iface.constraints), []),
        ("comments", list(iface.comments), []),
    ]
    return [row for row in out if row[1] or row[2]]


# --- JSON ----------------------------------------------------------------------------------
def assessment_json(a: InterfaceAssessment) -> dict[str, Any]:
    """The JSON object of one interface (keys documented in the module docstring)."""
    iface, enf = a.interface, a.enforcement
    seed = iface.model_dump(mode="json", exclude={"id", "domain", "status"})
    seed["actors"] = list(iface.actors)
    seed["timing_bound_s"] = iface.tightest_latency_s
    return {
        "id": a.id,
        "domain": a.domain.value,
        "status": a.status.value,
        "seed": seed,
        "enforced": {
            "signed": enf.signed,
            "source_validated": enf.source_validated,
            "encrypted": enf.encrypted,
            "encrypt_reason": enf.encrypt_reason,
            "freshness_s": enf.freshness_s,
            "senders": list(enf.senders),
            "message_types": [
                {
                    "id": m.id,
                    "kind": m.kind.value,
                    "audited": m.audited,
                    "source": m.source,
                    "target": m.target,
                    "bidirectional": m.bidirectional,
                }
                for m in enf.message_types
            ],
            "revocation_checked": enf.revocation_checked,
        },
        "measured": None if a.measurement is None else a.measurement.model_dump(mode="json"),
        "findings": [{"kind": f.kind.value, "text": f.text} for f in a.findings],
    }


def render_json(assessments: Sequence[InterfaceAssessment]) -> str:
    return json.dumps([assessment_json(a) for a in assessments], indent=2, ensure_ascii=False) + "\n"


# --- Markdown ------------------------------------------------------------------------------
def _md(text: str) -> str:
    """One table cell: escaped so seed text can neither end the cell nor inject HTML."""
    return html.escape(_flat(text), quote=False).replace("|", "\\|")


def _md_cell(lines: list[str]) -> str:
    return "<br>".join(_md(line) for line in lines)


def _md_row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def render_markdown(assessments: Sequence[InterfaceAssessment]) -> str:
    out = [f"# {TITLE}", "", _totals_line(assessments), ""]
    header = ("id", "actors", "C/I/A asked", "signed", "encrypted", "audited", "window", "findings")
    out += [_md_row(header), _md_row(["---"] * len(header))]
    for a in assessments:
        enf = a.enforcement
        out.append(
            _md_row(
                [
                    f"[{a.id}](#{a.id.lower()})",
                    _md(", ".join(a.interface.actors) or "-"),
                    cia_asked(a.interface),
                    _yes(enf.signed),
                    _yes(enf.encrypted),
                    _audited(a),
                    _window(a),
                    _findings_count(a),
                ]
            )
        )
    for a in assessments:
        iface = a.interface
        out += ["", f'<a id="{a.id.lower()}"></a>', "", f"## {a.id}: {_md(iface.title or '(no title)')}", ""]
        status = "" if iface.status is InterfaceStatus.DEFINED else f", {iface.status.value}"
        out += [f"*{iface.domain.value} {_md(iface.number)}{status}*", ""]
        if iface.description:
            out += [_md(iface.description), ""]
        out += [_md_row(["seed requires", "gridloom enforces"]), _md_row(["---", "---"])]
        for aspect, seed_side, enforced in rows(a):
            left = f"**{_md(aspect)}**" + (f"<br>{_md_cell(seed_side)}" if seed_side else "")
            out.append(_md_row([left, _md_cell(enforced) or "-"]))
        out += ["", "Findings:", ""]
        out += [f"- **{f.kind.value}**: {_md(f.text)}" for f in a.findings]
    return "\n".join(out) + "\n"


# --- HTML ----------------------------------------------------------------------------------
_CSS = """
body { font-family: system-ui, sans-serif; margin: 2rem; color: #1b1f24; max-width: 78rem; }
table { border-collapse: collapse; width: 100%; margin: 0.5rem 0 1rem; }
th, td { border: 1px solid #c9d1d9; padding: 0.3rem 0.5rem; text-align: left; vertical-align: top; }
th { background: #eef1f4; }
tr.gap td { background: #fdecea; }
tr.ok td { background: #e9f6ec; }
tr.undefined td { background: #f2f2f2; color: #57606a; }
td.aspect { font-weight: 600; white-space: nowrap; }
details { border: 1px solid #c9d1d9; border-radius: 4px; margin: 0.4rem 0; padding: 0.3rem 0.7rem; }
summary { cursor: pointer; font-weight: 600; }
li.gap { color: #a40e26; }
li.countered { color: #1a7f37; }
li.measured { color: #0550ae; }
.kind { font-variant: small-caps; font-weight: 600; }
.dim { color: #57606a; }
"""


def _h(text: str) -> str:
    return html.escape(_flat(text))


def _h_lines(lines: list[str]) -> str:
    return "<br>".join(_h(line) for line in lines) or '<span class="dim">-</span>'


def _row_class(a: InterfaceAssessment) -> str:
    if a.status is not InterfaceStatus.DEFINED:
        return "undefined"
    return "gap" if a.gaps else "ok"


def _html_summary(assessments: Sequence[InterfaceAssessment]) -> list[str]:
    header = ("id", "actors", "C/I/A asked", "signed", "encrypted", "audited", "window", "findings")
    out = ["<table>", "<tr>" + "".join(f"<th>{h}</th>" for h in header) + "</tr>"]
    for a in assessments:
        cells = [
            f'<a href="#{_h(a.id)}">{_h(a.id)}</a>',
            _h(", ".join(a.interface.actors) or "-"),
            _h(cia_asked(a.interface)),
            _yes(a.enforcement.signed),
            _yes(a.enforcement.encrypted),
            _h(_audited(a)),
            _h(_window(a)),
            _h(_findings_count(a)),
        ]
        out.append(f'<tr class="{_row_class(a)}">' + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return [*out, "</table>"]


def _html_interface(a: InterfaceAssessment) -> list[str]:
    iface = a.interface
    status = "" if iface.status is InterfaceStatus.DEFINED else f", {iface.status.value}"
    out = [
        f'<details id="{_h(a.id)}">',
        f"<summary>{_h(a.id)}: {_h(iface.title or '(no title)')} "
        f'<span class="dim">({len(a.findings)} findings, {a.count(FindingKind.GAP)} gaps)</span></summary>',
        f'<p class="dim">{_h(iface.domain.value)} {_h(iface.number)}{_h(status)}</p>',
    ]
    if iface.description:
        out.append(f"<p>{_h(iface.description)}</p>")
    out += ["<table>", "<tr><th></th><th>seed requires</th><th>gridloom enforces</th></tr>"]
    for aspect, seed_side, enforced in rows(a):
        out.append(
            f'<tr><td class="aspect">{_h(aspect)}</td><td>{_h_lines(seed_side)}</td><td>{_h_lines(enforced)}</td></tr>'
        )
    out += ["</table>", "<ul>"]
    out += [
        f'<li class="{f.kind.value}"><span class="kind">{f.kind.value}</span>: {_h(f.text)}</li>' for f in a.findings
    ]
    return [*out, "</ul>", "</details>"]


def render_html(assessments: Sequence[InterfaceAssessment]) -> str:
    out = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        f"<title>{_h(TITLE)}</title>",
        f"<style>{_CSS}</style>",
        "</head>",
        "<body>",
        f"<h1>{_h(TITLE)}</h1>",
        f"<p>{_h(_totals_line(assessments))}</p>",
        *_html_summary(assessments),
    ]
    for a in assessments:
        out += _html_interface(a)
    return "\n".join([*out, "</body>", "</html>"]) + "\n"


RENDERERS: dict[ReportFormat, Callable[[Sequence[InterfaceAssessment]], str]] = {
    ReportFormat.MD: render_markdown,
    ReportFormat.HTML: render_html,
    ReportFormat.JSON: render_json,
}


def render_report(assessments: Sequence[InterfaceAssessment], fmt: ReportFormat | str) -> str:
    return RENDERERS[ReportFormat(fmt)](assessments)
