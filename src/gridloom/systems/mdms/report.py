"""The VEE report: what validation flagged, how much is estimated and by which method, what people edited."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
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


def vee_report(
    store: VersionedReads,
    *,
    start: dt.datetime | None = None,
    end: dt.datetime | None = None,
    chunk: dt.timedelta = dt.timedelta(days=1),
) -> VeeReport:
    """The VEE report of the reads stored in [start, end) (all of them when not given).

    With both bounds the store is read ``chunk`` at a time (a day of every version), so a month's
    report never holds the month in memory.
    """
    if start is None or end is None or chunk <= dt.timedelta(0):
        return _report(_Tally.of(store.reads(start=start, end=end, versions="all")), start, end)
    tally = _Tally()
    at = start
    while at < end:
        upto = min(at + chunk, end)
        tally.add(_Tally.of(store.reads(start=at, end=upto, versions="all")))
        at = upto
    return _report(tally, start, end)


def summarize(versions: pa.Table, *, start: dt.datetime | None = None, end: dt.datetime | None = None) -> VeeReport:
    """The report of ``versions``: every version of some intervals (READS_SCHEMA), as ``reads(versions="all")``."""
    return _report(_Tally.of(versions), start, end)


@dataclass
class _Tally:
    intervals: int = 0
    estimated: int = 0
    edited: int = 0
    versions: int = 0
    flagged: Counter[str] = field(default_factory=Counter)
    methods: Counter[str] = field(default_factory=Counter)
    edit_reasons: Counter[str] = field(default_factory=Counter)

    @classmethod
    def of(cls, versions: pa.Table) -> _Tally:
        table = _in_key_order(versions)
        n = table.num_rows
        version = table.column("version").cast(pa.int64()).fill_null(0)
        original = table.filter(pc.equal(version, 0))
        current = table.filter(pa.array(_last_of_each_interval(table), pa.bool_()))
        source = current.column("source").cast(pa.string())
        is_estimated = pc.fill_null(pc.equal(source, "estimated"), False)
        is_edited = pc.fill_null(pc.equal(source, "edited"), False)
        q = qualities(original)
        flagged = Counter({(f.name or "").lower(): int(np.count_nonzero(q & np.uint32(f))) for f in VALIDATION_FLAGS})
        # A gap has no original row: count the estimates that filled one.
        flagged["gap"] = int(np.count_nonzero(qualities(current.filter(is_estimated)) & np.uint32(VeeFlag.GAP)))
        return cls(
            intervals=current.num_rows,
            estimated=int(pc.sum(is_estimated).as_py() or 0),
            edited=int(pc.sum(is_edited).as_py() or 0),
            versions=n,
            flagged=flagged,
            methods=_value_counts(current.filter(is_estimated).column("rule")),
            edit_reasons=_value_counts(current.filter(is_edited).column("rule")),
        )

    def add(self, other: _Tally) -> None:
        self.intervals += other.intervals
        self.estimated += other.estimated
        self.edited += other.edited
        self.versions += other.versions
        self.flagged.update(other.flagged)
        self.methods.update(other.methods)
        self.edit_reasons.update(other.edit_reasons)


def _report(tally: _Tally, start: dt.datetime | None, end: dt.datetime | None) -> VeeReport:
    def ranked(counts: Counter[str]) -> dict[str, int]:
        return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))

    flagged = {(f.name or "").lower(): tally.flagged.get((f.name or "").lower(), 0) for f in VALIDATION_FLAGS}
    return VeeReport(
        start=start,
        end=end,
        intervals=tally.intervals,
        measured=tally.intervals - tally.estimated - tally.edited,
        estimated=tally.estimated,
        edited=tally.edited,
        versions=tally.versions,
        flagged=flagged,
        methods=ranked(tally.methods),
        edit_reasons=ranked(tally.edit_reasons),
    )


def _in_key_order(table: pa.Table) -> pa.Table:
    """``table`` ordered by meter, interval and version (the store's order; sorted only if it is not)."""
    if table.num_rows < 2:
        return table
    m, t = table.column("meter_id"), table.column("interval_start")
    v = table.column("version").cast(pa.int64()).fill_null(0)
    n = table.num_rows
    m0, m1, t0, t1, v0, v1 = m.slice(0, n - 1), m.slice(1), t.slice(0, n - 1), t.slice(1), v.slice(0, n - 1), v.slice(1)
    same_m, same_t = pc.equal(m1, m0), pc.equal(t1, t0)
    back = pc.or_(pc.less(m1, m0), pc.and_(same_m, pc.or_(pc.less(t1, t0), pc.and_(same_t, pc.less(v1, v0)))))
    if not pc.any(back).as_py():
        return table
    keys = [("meter_id", "ascending"), ("interval_start", "ascending"), ("version", "ascending")]
    return table.take(pc.sort_indices(table, sort_keys=keys))


def _last_of_each_interval(table: pa.Table) -> npt.NDArray[np.bool_]:
    """Rows (in key order) that are the highest version of their interval: the current ones."""
    n = table.num_rows
    last = np.ones(n, bool)
    if n > 1:
        m, t = table.column("meter_id"), table.column("interval_start")
        same = pc.and_(pc.equal(m.slice(1), m.slice(0, n - 1)), pc.equal(t.slice(1), t.slice(0, n - 1)))
        last[:-1] = ~np.asarray(same.to_numpy(zero_copy_only=False), bool)
    return last


def _value_counts(column: pa.ChunkedArray) -> Counter[str]:
    if not len(column):
        return Counter()
    counts = pc.value_counts(column.cast(pa.string()).combine_chunks())
    return Counter({str(v["values"]): int(v["counts"]) for v in counts.to_pylist()})
