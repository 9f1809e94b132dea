"""Interval-read bodies decoded from their msgpack bytes (numpy fast paths) give exactly what the
same columns give through Python objects — the reference the fast paths must match."""

from __future__ import annotations

import datetime as dt
from typing import Any

import msgspec
import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gridloom.errors import VeeInputError
from gridloom.systems.mdms.arrival import validate_arrivals
from gridloom.systems.mdms.validation import validate
from gridloom.systems.mdms.vee import VeeConfig, VeeFlag
from gridloom.systems.mdms.wire import READ_COLUMNS, RawBatch, decode_columns, mapping_columns, reads_table

NOW = dt.datetime(2026, 11, 5, tzinfo=dt.UTC)
T0 = int(dt.datetime(2026, 11, 4, tzinfo=dt.UTC).timestamp()) * 1_000_000


def reference(bodies: list[dict[str, Any]]) -> dict[str, pa.Array] | type[VeeInputError]:
    try:
        parts = [mapping_columns(b) for b in bodies]
    except VeeInputError:
        return VeeInputError
    return {name: pa.concat_arrays([p[name] for p in parts]) for name in READ_COLUMNS}


def fast(bodies: list[dict[str, Any]]) -> dict[str, pa.Array] | type[VeeInputError]:
    try:
        return decode_columns([RawBatch.of(msgspec.msgpack.encode(b)) for b in bodies])
    except VeeInputError:
        return VeeInputError


ids = st.one_of(
    st.integers(0, 10**6).map(lambda i: f"s{i:07d}"),  # one length: the fixstr fast path
    st.text(st.characters(blacklist_categories=["Cs"]), max_size=40),  # any text: lengths vary, UTF-8
)
ints = st.one_of(st.integers(0, 127), st.integers(-(2**40), 2**40), st.just(900))
floats = st.one_of(st.floats(allow_nan=False), st.integers(-5, 5), st.none())


@st.composite
def bodies(draw: st.DrawFn) -> list[dict[str, Any]]:
    out = []
    for _ in range(draw(st.integers(1, 4))):
        n = draw(st.integers(0, 20))
        uniform = draw(st.booleans())  # one encoding per column (the common case), or anything

        def column(
            values: st.SearchStrategy[Any], typical: st.SearchStrategy[Any], n: int = n, uniform: bool = uniform
        ) -> list[Any]:
            return draw(st.lists(typical if uniform else values, min_size=n, max_size=n))

        out.append(
            {
                "meter_id": column(ids, st.integers(0, 999).map(lambda i: f"s{i:07d}")),
                "interval_start_us": column(ints, st.integers(0, 96).map(lambda k: T0 + k * 900_000_000)),
                "interval_s": column(ints, st.just(900)),
                "energy_delivered_wh": column(floats, st.floats(0, 1e4)),
                "energy_received_wh": column(floats, st.just(0.0)),
                "reactive_varh": column(floats, st.floats(-1e3, 1e3)),
                "voltage_v": column(floats, st.floats(200, 260)),
                "quality": column(ints, st.integers(0, 127)),
            }
        )
    return out


@settings(max_examples=300, deadline=None)
@given(bodies())
def test_msgpack_columns_decode_as_python_objects_would(batch: list[dict[str, Any]]) -> None:
    expected, got = reference(batch), fast(batch)
    if expected is VeeInputError or got is VeeInputError:
        assert got is expected
        return
    assert isinstance(expected, dict)
    assert isinstance(got, dict)
    for name in READ_COLUMNS:
        assert got[name].type == expected[name].type
        assert got[name].to_pylist() == expected[name].to_pylist(), name


def test_values_that_do_not_fit_are_refused_naming_the_column() -> None:
    body = {name: [0] for name in READ_COLUMNS} | {"meter_id": ["m1"], "interval_s": [2**40]}
    with pytest.raises(VeeInputError, match="interval_s"):
        decode_columns([RawBatch.of(msgspec.msgpack.encode(body))])
    body = {name: [0] for name in READ_COLUMNS} | {"meter_id": [7]}
    with pytest.raises(VeeInputError, match="meter_id"):
        decode_columns([RawBatch.of(msgspec.msgpack.encode(body))])
    bad = msgspec.msgpack.encode({name: [0] for name in READ_COLUMNS} | {"meter_id": ["ab"]})
    not_utf8 = RawBatch.of(bad.replace(b"\xa2ab", b"\xa2\xff\xfe"))
    with pytest.raises(VeeInputError, match="meter_id is not valid UTF-8"):
        decode_columns([not_utf8])


# --- arrival validation equals the full validation ------------------------------------------------
@st.composite
def arrivals(draw: st.DrawFn) -> pa.Table:
    n = draw(st.integers(1, 60))
    meters = [f"m{draw(st.integers(0, 6))}" for _ in range(n)]
    slots = [draw(st.integers(0, 7)) for _ in range(n)]
    energy = st.one_of(st.floats(-5, 3000), st.just(0.0), st.none())
    quality = [draw(st.sampled_from([0, 1, 8, 16, 32, 64, 1 | 8])) for _ in range(n)]
    return reads_table(
        {
            "meter_id": meters,
            "interval_start_us": [T0 + s * 900_000_000 for s in slots],
            "interval_s": [900] * n,
            "energy_delivered_wh": [draw(energy) for _ in range(n)],
            "energy_received_wh": [draw(energy) for _ in range(n)],
            "reactive_varh": [0.0] * n,
            "voltage_v": [230.0] * n,
            "quality": quality,
        },
        recorded_at=NOW,
    )


per_meter = st.one_of(
    st.none(),
    st.floats(0, 5000),
    st.dictionaries(st.sampled_from([f"m{i}" for i in range(8)]), st.floats(0, 5000), max_size=8),
)
net = st.one_of(st.none(), st.booleans(), st.dictionaries(st.sampled_from([f"m{i}" for i in range(8)]), st.booleans()))


@settings(max_examples=300, deadline=None)
@given(arrivals(), per_meter, net)
def test_arrival_validation_sets_the_flags_the_full_validation_sets(
    table: pa.Table, capacity: Any, net_metered: Any
) -> None:
    cfg = VeeConfig()
    fast_path = validate_arrivals(table, config=cfg, capacity_w=capacity, net_metered=net_metered)
    full = validate(table, config=cfg, capacity_w=capacity, net_metered=net_metered).accepted
    # The full validation drops a repeated read; on arrival the store's idempotent ingest does.
    key = list(zip(table.column("meter_id").to_pylist(), table.column("interval_start").to_pylist(), strict=True))
    first = np.array([key.index(k) == i for i, k in enumerate(key)])
    kept = fast_path.filter(pa.array(first))
    assert kept.column("quality").to_pylist() == full.column("quality").to_pylist()
    assert kept.drop_columns(["quality"]).equals(full.drop_columns(["quality"]))
    assert not any(q & VeeFlag.DUPLICATE for q in fast_path.column("quality").to_pylist())
