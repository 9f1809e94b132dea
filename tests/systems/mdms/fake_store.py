"""A stand-in for gridloom.store's versioned reads (only used while the real store does not exist)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import pyarrow as pa
import pyarrow.compute as pc

from gridloom.store.schema import READS_SCHEMA


class FakeStore:
    def __init__(self) -> None:
        self.table = READS_SCHEMA.empty_table()

    def ingest_reads(self, reads: pa.Table) -> None:
        self.table = pa.concat_tables([self.table, reads.cast(READS_SCHEMA)])

    def add_versions(self, rows: pa.Table) -> pa.Table:
        out = []
        existing = self.table.to_pylist()
        for r in rows.to_pylist():
            versions = [
                e["version"]
                for e in existing
                if (e["meter_id"], e["interval_start"]) == (r["meter_id"], r["interval_start"])
            ]
            r["version"] = max(versions) + 1 if versions else 0
            r["recorded_at"] = r["recorded_at"] or dt.datetime.now(dt.UTC)
            out.append(r)
            existing.append(r)
        stored = pa.Table.from_pylist(out, schema=READS_SCHEMA)
        self.table = pa.concat_tables([self.table, stored])
        return stored

    def reads(
        self,
        *,
        meter_ids: Sequence[str] | None = None,
        start: dt.datetime | None = None,
        end: dt.datetime | None = None,
        versions: str = "current",
    ) -> pa.Table:
        t = self.table
        if meter_ids is not None:
            t = t.filter(pc.is_in(t.column("meter_id"), value_set=pa.array(list(meter_ids), pa.string())))
        if start is not None:
            t = t.filter(pc.greater_equal(t.column("interval_start"), pa.scalar(start, t.schema.field(1).type)))
        if end is not None:
            t = t.filter(pc.less(t.column("interval_start"), pa.scalar(end, t.schema.field(1).type)))
        if versions == "all":
            return t
        if versions == "original":
            return t.filter(pc.equal(t.column("version"), 0))
        latest = {}
        for i, r in enumerate(t.select(["meter_id", "interval_start", "version"]).to_pylist()):
            k = (r["meter_id"], r["interval_start"])
            if k not in latest or r["version"] > latest[k][0]:
                latest[k] = (r["version"], i)
        return t.take(pa.array(sorted(i for _, i in latest.values()), pa.int64()))
