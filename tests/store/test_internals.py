"""Pieces of the store with invariants of their own: in-batch duplicates, the binary COPY encoder,
the raw baselines."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import psycopg
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gridloom.store.baselines import raw_append_rate, raw_copy_rate
from gridloom.store.conform import first_occurrences
from gridloom.store.postgres import copy_into
from gridloom.store.schema import TIMESTAMP

from .conftest import PG_URL, reads

US = dt.timedelta(microseconds=1)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["a", "b", "ab", "é"]), st.integers(0, 4)), max_size=40))
def test_first_occurrences_keeps_the_first_of_each_key(keys: list[tuple[str, int]]) -> None:
    table = pa.table(
        {
            "meter_id": [m for m, _ in keys],
            "interval_start": pa.array([dt.datetime(2026, 1, 1, tzinfo=dt.UTC) + t * US for _, t in keys], TIMESTAMP),
            "position": list(range(len(keys))),
        }
    )
    kept, dropped = first_occurrences(table, ("meter_id", "interval_start"))
    first: dict[tuple[str, int], int] = {}
    for i, key in enumerate(keys):
        first.setdefault(key, i)
    assert sorted(kept.column("position").to_pylist()) == sorted(first.values())
    assert dropped == len(keys) - len(first)


@settings(max_examples=30, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.one_of(st.none(), st.text(st.characters(blacklist_characters="\x00", blacklist_categories=["Cs"]))),
            st.one_of(st.none(), st.floats(allow_nan=False, width=64)),
            st.one_of(st.none(), st.integers(-(2**31), 2**31 - 1)),
            st.one_of(st.none(), st.integers(0, 2**32 - 1)),
            st.one_of(st.none(), st.datetimes(timezones=st.just(dt.UTC))),
        ),
        max_size=20,
    )
)
def test_binary_copy_round_trips_every_value(rows: list[tuple[object, ...]]) -> None:
    table = pa.table(
        {
            "text": pa.array([r[0] for r in rows], pa.string()),
            "number": pa.array([r[1] for r in rows], pa.float64()),
            "int4": pa.array([r[2] for r in rows], pa.int32()),
            "uint4": pa.array([r[3] for r in rows], pa.uint32()),
            "at": pa.array([r[4] for r in rows], TIMESTAMP),
        }
    )
    with psycopg.connect(PG_URL, autocommit=True) as conn, conn.transaction(), conn.cursor() as cur:
        columns = 'text text, number float8, int4 integer, uint4 bigint, "at" timestamptz'
        cur.execute(f"CREATE TEMP TABLE t ({columns}) ON COMMIT DROP")
        copy_into(cur, "t", table)
        back = cur.execute('SELECT text, number, int4, uint4, "at" FROM t').fetchall()
    assert back == rows


def test_raw_baselines_measure_and_leave_nothing_behind(tmp_path: Path) -> None:
    table = reads(meters=20, intervals=96)
    assert raw_append_rate(table, directory=tmp_path) > 0
    assert list(tmp_path.iterdir()) == []
    assert raw_copy_rate(table, PG_URL) > 0
    with psycopg.connect(PG_URL) as conn:
        left = conn.execute("SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'gridloom_raw_%'").fetchone()
    assert left == (0,)


def test_unsupported_types_are_refused_before_copying() -> None:
    from gridloom.errors import StoreInputError
    from gridloom.store.pgcopy import copy_chunks

    with pytest.raises(StoreInputError, match="no PostgreSQL column type"):
        list(copy_chunks(pa.table({"x": pa.array([[1]])})))
