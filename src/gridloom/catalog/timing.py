"""Parse the seed's timing statements into a kind and, where the seed gives one, a bound.

The seed writes timing in prose: "Information shall be delivered in 2-4 seconds",
"within an hour after the changes was implemented", "near real-time.  5 minutes",
"within minutes after ...". A number becomes ``max_latency_s`` (the upper end of a
range); prose without a number only sets the ``kind``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache


class TimingKind(StrEnum):
    UNSPECIFIED = "unspecified"
    SECONDS = "seconds"
    NEAR_REAL_TIME = "near_real_time"
    MINUTES = "minutes"
    HOUR = "hour"
    HOURS_TO_DAYS = "hours_to_days"
    DAY_AHEAD = "day_ahead"
    PERIODIC = "periodic"


@dataclass(frozen=True, slots=True)
class ParsedTiming:
    kind: TimingKind
    max_latency_s: float | None


_UNIT_S = {"sec": 1.0, "second": 1.0, "min": 60.0, "minute": 60.0, "hour": 3600.0}
_UNIT = r"(sec|second|min|minute|hour)s?\b"
_RANGE = re.compile(rf"(\d+(?:\.\d+)?)\s*(?:-|\u2013|to)\s*(\d+(?:\.\d+)?)\s*{_UNIT}")  # hyphen, en dash, "to"
_NUMBER = re.compile(rf"(\d+(?:\.\d+)?)\s*{_UNIT}")
_ONE = re.compile(r"\b(?:an|a|one)\s+(sec|second|min|minute|hour)\b")  # singular: "a hours in advance" is not a bound
_KIND_OF_UNIT = {1.0: TimingKind.SECONDS, 60.0: TimingKind.MINUTES, 3600.0: TimingKind.HOUR}

# Prose without a number, tightest first: the first match decides the kind.
_PROSE: tuple[tuple[re.Pattern[str], TimingKind], ...] = (
    (re.compile(r"\b(a few|several|within)\s+seconds\b|\bseconds\b"), TimingKind.SECONDS),
    (re.compile(r"near[\s-]?real[\s-]?time|real[\s-]?time"), TimingKind.NEAR_REAL_TIME),
    (re.compile(r"\bminutes\b"), TimingKind.MINUTES),
    (re.compile(r"hours?[\s-]+(?:to[\s-]+)?days?"), TimingKind.HOURS_TO_DAYS),
    (re.compile(r"day[\s-]ahead"), TimingKind.DAY_AHEAD),
    (re.compile(r"\bhours?\b"), TimingKind.HOUR),
    (re.compile(r"periodic|every\b"), TimingKind.PERIODIC),
)


@lru_cache(maxsize=1024)
def parse_timing(statement: str) -> ParsedTiming:
    """Return the kind and the numeric upper bound (seconds) of a timing statement.

    The tightest bound wins when a statement names several ("day ahead ... or near real
    time" is near real time).
    """
    text = statement.lower()
    bounds: list[float] = []
    for match in _RANGE.finditer(text):
        bounds.append(float(match.group(2)) * _UNIT_S[match.group(3)])
    for match in _NUMBER.finditer(_RANGE.sub(" ", text)):
        bounds.append(float(match.group(1)) * _UNIT_S[match.group(2)])
    for match in _ONE.finditer(text):
        bounds.append(_UNIT_S[match.group(1)])
    if bounds:
        bound = min(bounds)
        kind = next((k for unit, k in sorted(_KIND_OF_UNIT.items(), reverse=True) if bound >= unit), TimingKind.SECONDS)
        if "periodic" in text or "every" in text:
            kind = TimingKind.PERIODIC
        return ParsedTiming(kind, bound)
    for pattern, kind in _PROSE:
        if pattern.search(text):
            return ParsedTiming(kind, None)
    return ParsedTiming(TimingKind.UNSPECIFIED, None)
