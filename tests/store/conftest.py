"""One store suite, every backend: DuckDB (as shipped, and with PRIMARY KEYs) and PostgreSQL.

PostgreSQL runs on ``GRIDLOOM_PG_URL`` (default ``postgresql://postgres@127.0.0.1:5432/test``, as
CI has it); each test gets a schema of its own (through the URL's search_path) and drops it.
"""

from __future__ import annotations

import datetime as dt
import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import psycopg
import pyarrow as pa
import pytest
from psycopg import sql

from gridloom.store import MeterDataStore, open_store
from gridloom.store.duckdb import DuckDBStore
from gridloom.store.schema import TIMESTAMP

PG_URL = os.environ.get("GRIDLOOM_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
START = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
BACKENDS = ["duckdb", "duckdb-keys", "postgres"]


class SimClock:
    """A clock the test sets by hand."""

    def __init__(self, now: dt.datetime = dt.datetime(2026, 11, 2, 6, 0, tzinfo=dt.UTC)) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now


@dataclass
class Backend:
    name: str
    url: str  # what open_store and the CLI take; reopening it finds the same data

    def open(self, clock: Callable[[], dt.datetime] | None = None) -> MeterDataStore:
        return open_store(self.url, clock=clock)


def pg_schema_url(schema: str) -> str:
    return f"{PG_URL}?options=-csearch_path%3D{schema}"


@pytest.fixture
def pg_url() -> Iterator[str]:
    schema = f"test_store_{uuid.uuid4().hex[:12]}"
    yield pg_schema_url(schema)
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def _backend(name: str, tmp_path: Path, pg_url: str) -> Backend:
    if name == "postgres":
        return Backend(name, pg_url)
    path = tmp_path / "meter data" / "store.duckdb"
    if name == "duckdb-keys":  # tables are created with their PRIMARY KEYs; later opens keep them
        DuckDBStore(path, key_constraint=True).close()
    return Backend(name, str(path))


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path, pg_url: str) -> Backend:
    return _backend(request.param, tmp_path, pg_url)


@pytest.fixture(params=["duckdb", "postgres"])
def backend2(request: pytest.FixtureRequest, tmp_path: Path, pg_url: str) -> Backend:
    """The two kinds of database (for the slower, CLI-level tests)."""
    return _backend(request.param, tmp_path, pg_url)


@pytest.fixture
def clock() -> SimClock:
    return SimClock()


@pytest.fixture
def store(backend: Backend, clock: SimClock) -> Iterator[MeterDataStore]:
    with backend.open(clock) as opened:
        yield opened


def reads(
    meters: int = 3,
    intervals: int = 4,
    *,
    start: dt.datetime = START,
    prefix: str = "m",
    seed: int = 0,
    interval_s: int = 900,
) -> pa.Table:
    """Measured reads, meter-major, with values that do not round nicely and some nulls."""
    rng = np.random.default_rng(seed)
    n = meters * intervals
    ids = [f"{prefix}{i:03d}" for i in range(meters) for _ in range(intervals)]
    t0 = int(start.timestamp() * 1_000_000)
    starts = t0 + np.tile(np.arange(intervals, dtype=np.int64) * interval_s * 1_000_000, meters)
    voltage = rng.normal(230.0, 2.0, n)
    return pa.table(
        {
            "meter_id": pa.array(ids, pa.string()),
            "interval_start": pa.array(starts, TIMESTAMP),
            "interval_s": pa.array(np.full(n, interval_s, np.int32)),
            "energy_delivered_wh": rng.gamma(2.0, 60.0, n),
            "energy_received_wh": pa.array(np.where(np.arange(n) % 3 == 0, np.nan, rng.random(n)), from_pandas=True),
            "reactive_varh": rng.normal(0.0, 30.0, n),
            "voltage_v": voltage,
            "quality": pa.array(np.arange(n, dtype=np.uint32) % 4),
        }
    )


def at(minutes: int) -> dt.datetime:
    return START + dt.timedelta(minutes=minutes)
