"""The VEE report: what validation flagged, how much is estimated and by which method, what people edited."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from gridloom.systems.mdms._arrays import qualities
from gridloom.systems.mdms.editing import VersionedReads
from gridloom.systems.mdms.vee import VALIDATION_FLAGS, VeeFlag


@dataclass(frozen=True)
class VeeReport:
    """A summary of stored interval data between ``start`` and ``end``.

    ``intervals``: intervals stored (current versions), of which ``measured`` / ``estimated`` /
    ``edited`` by the source of their current version; ``versions``: every version stored;
    ``flagged``: reads as received (original versions) failing each validation rule — ``gap``
    counts the gaps filled by an estimate; ``methods``: current estimates per method (rule);
    ``edit_reasons``: current edits per reason code.
    """

    start: dt.datetime | None
    end: dt.datetime | None
    intervals: int
    measured: int
    estimated: int
    edited: int
    versions: int
    flagged: dict[str, int] = field(default_factory=dict)
    methods: dict[str, int] = field(default_factory=dict)
    edit_reasons: dict[str, int] = field(default_factory=dict)

    @property
    def estimated_share(self) -> float:
        """Share of intervals whose current value is an estimate."""
        return self.estimated / self.intervals if self.intervals else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "start": self.start.isoformat() if self.start else None,
            "end": self.end.isoformat() if self.end else None,
            "intervals": self.intervals,
            "measured": self.measured,
            "estimated": self.estimated,
            "edited": self.edited,
            "estimated_share": round(self.estimated_share, 6),
            "versions": self.versions,
            "flagged": self.flagged,
            "methods": self.methods,
            "edit_reasons": self.edit_reasons,
        }


def vee_report(store: VersionedReads, *, start: dt.datetime | None = None, end: dt.datetime | None = None) -> VeeReport:
    """The VEE report of the reads stored in [start, end) (all of them when not given)."""
    current = store.reads(start=start, end=end, versions="current")
    original = store.reads(start=start, end=end, versions="original")
    versions = store.reads(start=start, end=end, versions="all").num_rows
    return summarize(current, original, versions=versions, start=start, end=end)


def summarize(
    current: pa.Table,
    original: pa.Table,
    *,
    versions: int,
    start: dt.datetime | None = None,
    end: dt.datetime | None = None,
) -> VeeReport:
    """The report from the current and the original versions of the same reads (READS_SCHEMA)."""
    source = current.column("source").cast(pa.string())
    is_estimated = pc.fill_null(pc.equal(source, "estimated"), False)
    is_edited = pc.fill_null(pc.equal(source, "edited"), False)
    estimated = int(pc.sum(is_estimated).as_py() or 0)
    edited = int(pc.sum(is_edited).as_py() or 0)

    q = qualities(original)
    flagged = {(f.name or "").lower(): int(np.count_nonzero(q & np.uint32(f))) for f in VALIDATION_FLAGS}
    filled = qualities(current.filter(is_estimated))
    flagged["gap"] = int(np.count_nonzero(filled & np.uint32(VeeFlag.GAP)))
    return VeeReport(
        start=start,
        end=end,
        intervals=current.num_rows,
        measured=current.num_rows - estimated - edited,
        estimated=estimated,
        edited=edited,
        versions=versions,
        flagged=flagged,
        methods=_value_counts(current.filter(is_estimated).column("rule")),
        edit_reasons=_value_counts(current.filter(is_edited).column("rule")),
    )


def _value_counts(column: pa.ChunkedArray) -> dict[str, int]:
    if not len(column):
        return {}
    counts = pc.value_counts(column.cast(pa.string()).combine_chunks())
    out = {str(v["values"]): int(v["counts"]) for v in counts.to_pylist()}
    return dict(sorted(out.items(), key=lambda kv: (-kv[1], kv[0])))
