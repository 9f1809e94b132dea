"""Meter data management throughput: reads ingested + validated + estimated + stored per second.

For M meters x one day of 15-minute reads (M x 96), with 1 % of the reads lost on the way:
the MDMS validates each batch of 250,000 reads and stores it (version 0) — the batch size an
ingest buffer would hand it; the actor today ingests each concentrator batch as it comes,
which is slower — then runs the nightly VEE
over the day (validation against the expected grid, estimation of every missing interval,
estimates stored as new versions). Baselines, measured in the same run on the same Arrow
table: a raw DuckDB append (embedded mode; goal ratio >= 0.3) and a raw PostgreSQL COPY.
The full run also times the goal of the embedded mode: 1,000,000 meters x 1 day
(96 million reads) collected, validated and stored in under 5 minutes.

Usage: python benchmarks/mdms.py [--quick] [--postgres postgresql://postgres@127.0.0.1/postgres]
The last line is JSON with every figure.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import resource
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
import psycopg
import pyarrow as pa

from gridloom.store import open_store
from gridloom.store.baselines import raw_append_rate, raw_copy_rate
from gridloom.store.schema import READS_SCHEMA
from gridloom.systems.mdms.service import Mdms

START = dt.datetime(2026, 11, 2, tzinfo=dt.UTC)
INTERVALS = 96


def day_of_reads(meters: int, *, loss: float, rng: np.random.Generator) -> tuple[pa.Table, list[str]]:
    """A day of version-0 reads for ``meters`` meters, with ``loss`` of them missing."""
    ids = np.char.add("s", np.char.zfill(np.arange(meters).astype(str), 7))
    meter = np.repeat(np.arange(meters), INTERVALS)
    slot = np.tile(np.arange(INTERVALS), meters)
    keep = rng.random(meter.size) >= loss
    meter, slot = meter[keep], slot[keep]
    n = meter.size
    start_us = int(START.timestamp() * 1e6) + slot.astype(np.int64) * 900 * 1_000_000
    delivered = rng.lognormal(4.5, 0.6, n)
    table = pa.table(
        {
            "meter_id": pa.array(ids[meter]),
            "interval_start": pa.array(start_us, pa.int64()).cast(READS_SCHEMA.field("interval_start").type),
            "interval_s": pa.array(np.full(n, 900, np.int32)),
            "energy_delivered_wh": pa.array(delivered),
            "energy_received_wh": pa.array(np.zeros(n)),
            "reactive_varh": pa.array(delivered * 0.2),
            "voltage_v": pa.array(np.full(n, 230.0)),
            "quality": pa.array(np.zeros(n, np.uint32)),
            "version": pa.array(np.zeros(n, np.int32)),
            "source": pa.array(np.full(n, "measured")),
            "rule": pa.nulls(n, pa.string()),
            "edited_by": pa.nulls(n, pa.string()),
            "recorded_at": pa.array(np.full(n, start_us.max()), pa.int64()).cast(
                READS_SCHEMA.field("recorded_at").type
            ),
        },
        schema=READS_SCHEMA,
    )
    return table, ids.tolist()


def records(table: pa.Table) -> dict[str, list[object]]:
    """The table as a concentrator batch arrives (columns, times in µs)."""
    out = {name: table.column(name).to_pylist() for name in ("meter_id", "interval_s", "energy_delivered_wh",
           "energy_received_wh", "reactive_varh", "voltage_v", "quality")}  # fmt: skip
    out["interval_start_us"] = table.column("interval_start").cast(pa.int64()).to_pylist()
    return out


def mdms_rate(table: pa.Table, meter_ids: list[str], url: str, *, batch_rows: int) -> tuple[float, float, int]:
    """Reads/s through ingest (per arriving batch) and the nightly VEE; seconds; estimates made."""
    with open_store(url) as store:
        mdms = Mdms(store, clock=lambda: START + dt.timedelta(days=1))
        batches = [records(table.slice(i, batch_rows)) for i in range(0, table.num_rows, batch_rows)]
        began = time.perf_counter()
        for batch in batches:
            mdms.ingest_reads(batch)
        closed = mdms.close_period(START, START + dt.timedelta(days=1), meter_ids)
        seconds = time.perf_counter() - began
    return table.num_rows / seconds, seconds, closed.estimated


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="10,000 meters instead of 100,000; no 1 M run")
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/postgres", help="'' to skip")
    args = parser.parse_args()
    rng = np.random.default_rng(1)
    meters = 10_000 if args.quick else 100_000
    table, ids = day_of_reads(meters, loss=0.01, rng=rng)
    result: dict[str, float | int | None] = {"meters": meters, "reads": table.num_rows}
    with tempfile.TemporaryDirectory() as folder:
        raw = raw_append_rate(table, directory=folder)
        rate, seconds, estimated = mdms_rate(table, ids, str(Path(folder) / "mdms.duckdb"), batch_rows=250_000)
    ratio = rate / raw
    print(f"{meters:,} meters x 1 day = {table.num_rows:,} reads, 1 % lost and estimated ({estimated:,} estimates)")
    print(f"MDMS on DuckDB: {rate:12,.0f} reads/s ({seconds:.1f} s)  raw append {raw:12,.0f}/s  ratio {ratio:.2f}")
    result.update(reads_per_s=round(rate), raw_duckdb_per_s=round(raw), ratio_vs_raw_duckdb=round(ratio, 3))
    result["ratio_vs_raw_copy"] = None
    if args.postgres:
        raw_pg = raw_copy_rate(table, args.postgres)
        schema = f"gridloom_bench_{uuid.uuid4().hex[:8]}"  # a fresh schema: re-runs must not find old reads
        pg_url = f"{args.postgres}?options=-csearch_path%3D{schema}"
        try:
            pg_rate, pg_seconds, _ = mdms_rate(table, ids, pg_url, batch_rows=250_000)
        finally:
            with psycopg.connect(args.postgres, autocommit=True) as conn:
                conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        pg_ratio = pg_rate / raw_pg
        print(f"MDMS on PostgreSQL: {pg_rate:10,.0f} reads/s ({pg_seconds:.1f} s)  raw COPY {raw_pg:,.0f}/s")
        print(f"  ratio {pg_ratio:.2f}")
        result.update(pg_reads_per_s=round(pg_rate), raw_copy_per_s=round(raw_pg), ratio_vs_raw_copy=round(pg_ratio, 3))
    if not args.quick:
        big, big_ids = day_of_reads(1_000_000, loss=0.01, rng=rng)
        with tempfile.TemporaryDirectory() as folder:
            _, big_seconds, _ = mdms_rate(big, big_ids, str(Path(folder) / "mdms.duckdb"), batch_rows=500_000)
        print(f"1,000,000 meters x 1 day on DuckDB: {big_seconds:.0f} s (goal < 300 s)")
        result["seconds_1m_meters_day"] = round(big_seconds, 1)
    result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    print(f"peak memory {result['peak_rss_mb']} MB")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
