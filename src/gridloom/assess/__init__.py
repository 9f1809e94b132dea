"""The seed's assessment made live: for every interface, what the seed requires beside what
gridloom enforces and measures, and what is not met yet."""

from gridloom.assess.assessment import assess, assess_interface, enforcement_of
from gridloom.assess.measurements import Measurement, StatsError, parse_stats, read_stats
from gridloom.assess.models import EnforcedMessageType, Enforcement, Finding, FindingKind, InterfaceAssessment
from gridloom.assess.render import RENDERERS, ReportFormat, render_html, render_json, render_markdown, render_report

__all__ = [
    "RENDERERS",
    "EnforcedMessageType",
    "Enforcement",
    "Finding",
    "FindingKind",
    "InterfaceAssessment",
    "Measurement",
    "ReportFormat",
    "StatsError",
    "assess",
    "assess_interface",
    "enforcement_of",
    "parse_stats",
    "read_stats",
    "render_html",
    "render_json",
    "render_markdown",
    "render_report",
]
