"""The meter data store as its users see it, on every backend (see conftest)."""

from __future__ import annotations

import datetime as dt
import itertools
import threading

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gridloom.errors import StoreInputError, StoreUnavailable, UnknownTable
from gridloom.store import EVENTS_SCHEMA, READS_SCHEMA, REGISTER_SCHEMA, MeterDataStore, open_store
from gridloom.store.schema import TIMESTAMP

from .conftest import START, Backend, SimClock, at, reads

KEY = ["meter_id", "interval_start"]
MEASURED = ["interval_s", "energy_delivered_wh", "energy_received_wh", "reactive_varh", "voltage_v", "quality"]


def sorted_rows(table: pa.Table, columns: list[str]) -> list[dict[str, object]]:
    return table.select(columns).sort_by([(c, "ascending") for c in KEY]).to_pylist()


# --- ingest -----------------------------------------------------------------------------------


def test_reads_come_back_exactly_as_ingested(store: MeterDataStore, clock: SimClock) -> None:
    batch = reads(meters=4, intervals=6)
    result = store.ingest_reads(batch)
    assert (result.inserted, result.duplicates) == (24, 0)
    stored = store.reads()
    assert stored.schema == READS_SCHEMA
    assert stored.select(KEY + MEASURED).to_pylist() == batch.select(KEY + MEASURED).to_pylist()  # doubles bit-exact
    assert set(stored.column("version").to_pylist()) == {0}
    assert set(stored.column("source").to_pylist()) == {"measured"}
    assert set(stored.column("recorded_at").to_pylist()) == {clock.now}
    assert stored.column("rule").null_count == 24
    assert store.count("reads") == 24


def test_the_same_batch_delivered_twice_is_stored_once(store: MeterDataStore) -> None:
    batch = reads(meters=5, intervals=8)
    store.ingest_reads(batch)
    again = store.ingest_reads(batch)
    assert (again.inserted, again.duplicates, again.received) == (0, 40, 40)
    assert store.count("reads") == 40
    assert store.reads(versions="all").num_rows == 40


def test_an_overlapping_batch_stores_only_what_is_new(store: MeterDataStore) -> None:
    store.ingest_reads(reads(meters=2, intervals=4))
    overlap = reads(meters=3, intervals=6)  # meters 0-1 intervals 0-3 are stored already
    result = store.ingest_reads(overlap)
    assert (result.inserted, result.duplicates) == (18 - 8, 8)
    assert store.count("reads") == 18


def test_a_redelivered_read_keeps_the_value_stored_first(store: MeterDataStore) -> None:
    store.ingest_reads(reads(meters=1, intervals=2))
    changed = reads(meters=1, intervals=2).set_column(3, "energy_delivered_wh", pa.array([1.0, 2.0]))
    assert store.ingest_reads(changed).duplicates == 2
    assert store.reads().column("energy_delivered_wh").to_pylist() != [1.0, 2.0]


def test_small_deliveries_into_a_large_store_skip_what_is_stored(store: MeterDataStore) -> None:
    # PostgreSQL checks a small batch against a large table by probing the key per row (not a hash
    # join over the whole table): the outcome must be the same
    store.ingest_reads(reads(meters=60, intervals=96))
    for meter in (7, 30, 59):
        day = reads(meters=60, intervals=120).filter(pc.equal(pc.field("meter_id"), f"m{meter:03d}"))
        result = store.ingest_reads(day)
        assert (result.inserted, result.duplicates) == (24, 96)
    assert store.count("reads") == 60 * 96 + 3 * 24
    assert store.ingest_register_reads(_registers([f"r{i}" for i in range(400)], [0, 24, 48])) == 1200
    assert store.ingest_register_reads(_registers(["r5", "new"], [24, 72])) == 3


def test_repeats_inside_one_batch_keep_the_first_delivered(store: MeterDataStore) -> None:
    base = reads(meters=2, intervals=3)
    repeat = base.slice(1, 2).set_column(3, "energy_delivered_wh", pa.array([-1.0, -2.0]))
    shuffled = pa.concat_tables([base.slice(3), repeat, base.slice(0, 3)])  # unsorted, repeats before originals
    result = store.ingest_reads(shuffled)
    assert (result.inserted, result.duplicates) == (6, 2)
    stored = {(r["meter_id"], r["interval_start"]): r["energy_delivered_wh"] for r in store.reads().to_pylist()}
    assert stored[("m000", at(15))] == -1.0  # the repeat came first, so it wins
    assert stored[("m000", at(30))] == -2.0
    assert stored[("m000", at(0))] == base.column("energy_delivered_wh")[0].as_py()


def test_time_major_batches_are_stored_whole(store: MeterDataStore) -> None:
    batch = reads(meters=4, intervals=3)
    time_major = batch.sort_by([("interval_start", "ascending"), ("meter_id", "ascending")])
    assert store.ingest_reads(time_major).inserted == 12


def test_minimal_batches_get_defaults(store: MeterDataStore, clock: SimClock) -> None:
    batch = pa.table(
        {
            "meter_id": ["a", "b"],
            "interval_start": pa.array([START, START], pa.timestamp("ns", tz="Europe/Berlin")),
            "energy_delivered_wh": [1, 2],  # integers are fine
        }
    )
    store.ingest_reads(batch)
    row = store.reads(meter_ids=["a"]).to_pylist()[0]
    assert row["interval_start"] == START
    assert (row["interval_s"], row["quality"], row["version"], row["source"]) == (900, 0, 0, "measured")
    assert row["recorded_at"] == clock.now
    assert row["voltage_v"] is None


def test_recorded_at_given_by_the_caller_is_kept(store: MeterDataStore) -> None:
    when = dt.datetime(2026, 11, 1, 12, tzinfo=dt.UTC)
    batch = reads(meters=1, intervals=2).append_column("recorded_at", pa.array([when, None], TIMESTAMP))
    store.ingest_reads(batch)
    assert store.reads().column("recorded_at").to_pylist() == [when, SimClock().now]


def test_a_failure_while_writing_stores_nothing(store: MeterDataStore, monkeypatch: pytest.MonkeyPatch) -> None:
    insert = store._insert_new_reads

    def crash_after_insert(batch: pa.Table) -> int:
        insert(batch)  # the rows are written inside the transaction...
        raise RuntimeError("power cut")  # ...and then the process dies before committing

    monkeypatch.setattr(store, "_insert_new_reads", crash_after_insert)
    with pytest.raises(RuntimeError, match="power cut"):
        store.ingest_reads(reads(meters=3, intervals=4))
    assert store.count("reads") == 0
    monkeypatch.undo()
    assert store.ingest_reads(reads(meters=3, intervals=4)).inserted == 12  # and the store still works


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda t: t.drop_columns(["energy_delivered_wh"]), "missing column(s) energy_delivered_wh"),
        (lambda t: t.append_column("energy_recieved_wh", t.column(3)), "did you mean 'energy_received_wh'"),
        (lambda t: t.set_column(1, "interval_start", t.column(1).cast(pa.timestamp("us"))), "without a time zone"),
        (lambda t: t.set_column(3, "energy_delivered_wh", _with(t.column(3), 5, float("nan"))), "not a finite number"),
        (lambda t: t.set_column(0, "meter_id", _with(t.column(0), 2, None)), "meter_id is null at row 2"),
        (lambda t: t.set_column(0, "meter_id", _with(t.column(0), 1, "")), "meter_id is empty at row 1"),
        (lambda t: t.set_column(0, "meter_id", _with(t.column(0), 7, "m\x00")), "NUL character at row 7"),
        (lambda t: t.append_column("version", pa.array([0] * 11 + [1], pa.int32())), "version must be 0"),
        (lambda t: t.append_column("source", pa.array(["estimated"] * 12)), "not one of measured, imported"),
        (lambda t: t.set_column(2, "interval_s", pa.array([900] * 11 + [0], pa.int32())), "must be positive"),
        (lambda t: t.set_column(2, "interval_s", pa.array([1.5] * 12)), "cannot be stored as int32"),
        (lambda t: t.set_column(0, "meter_id", pa.array(range(12))), "must hold text"),
    ],
    ids=[
        "missing",
        "unknown",
        "naive",
        "nan",
        "null-key",
        "empty-key",
        "nul",
        "version",
        "source",
        "interval",
        "fractional",
        "numeric-id",
    ],
)
def test_bad_batches_are_refused_whole(store: MeterDataStore, change: object, message: str) -> None:
    batch = change(reads(meters=3, intervals=4))  # type: ignore[operator]
    with pytest.raises(StoreInputError, match="ingest_reads") as refused:
        store.ingest_reads(batch)
    assert message in str(refused.value)
    assert store.count("reads") == 0


def _with(column: pa.ChunkedArray, row: int, value: object) -> pa.Array:
    values = column.to_pylist()
    values[row] = value
    return pa.array(values, column.type)


# --- versions ---------------------------------------------------------------------------------


def _estimate(meter: str, minutes: int, wh: float, *, source: str = "estimated", rule: str = "linear") -> pa.Table:
    return pa.table(
        {
            "meter_id": [meter],
            "interval_start": pa.array([at(minutes)], TIMESTAMP),
            "energy_delivered_wh": [wh],
            "source": [source],
            "rule": [rule],
            "edited_by": pa.array([None if source == "estimated" else "ops-7"], pa.string()),
        }
    )


def test_versions_never_overwrite_the_original(store: MeterDataStore, clock: SimClock) -> None:
    store.ingest_reads(reads(meters=2, intervals=4))
    original = store.reads(meter_ids=["m001"], start=at(15), end=at(30)).to_pylist()[0]
    clock.now += dt.timedelta(hours=1)
    first = store.add_versions(_estimate("m001", 15, 11.0))
    clock.now += dt.timedelta(hours=1)
    second = store.add_versions(_estimate("m001", 15, 12.0, source="edited", rule="meter_replaced"))
    assert first.schema == READS_SCHEMA
    assert (first.column("version")[0].as_py(), second.column("version")[0].as_py()) == (1, 2)
    assert second.column("recorded_at")[0].as_py() == clock.now
    history = store.reads(meter_ids=["m001"], start=at(15), end=at(30), versions="all").to_pylist()
    assert [(r["version"], r["source"], r["rule"], r["edited_by"]) for r in history] == [
        (0, "measured", None, None),
        (1, "estimated", "linear", None),
        (2, "edited", "meter_replaced", "ops-7"),
    ]
    assert history[0] == original
    current = store.reads(meter_ids=["m001"], versions="current")
    assert current.num_rows == 4
    assert current.column("version").to_pylist() == [0, 2, 0, 0]
    assert current.column("energy_delivered_wh")[1].as_py() == 12.0
    assert store.reads(meter_ids=["m001"], versions="original").to_pylist() == (
        store.reads(meter_ids=["m001"], versions="all").filter(pc.equal(pc.field("version"), 0)).to_pylist()
    )
    assert store.count("reads") == 10


def test_a_new_version_carries_over_what_it_does_not_change(store: MeterDataStore) -> None:
    store.ingest_reads(reads(meters=1, intervals=2))
    before = store.reads(start=at(15)).to_pylist()[0]
    after = store.add_versions(_estimate("m000", 15, 99.0, source="edited", rule="customer_call")).to_pylist()[0]
    for column in ("interval_s", "energy_received_wh", "reactive_varh", "voltage_v", "quality"):
        assert after[column] == before[column], column
    assert after["energy_delivered_wh"] == 99.0


def test_versions_in_one_call_follow_the_given_order(store: MeterDataStore) -> None:
    store.ingest_reads(reads(meters=2, intervals=2))
    rows = pa.concat_tables(
        [_estimate("m001", 15, 5.0), _estimate("m000", 0, 6.0), _estimate("m001", 15, 7.0, rule="history")]
    )
    stored = store.add_versions(rows)
    assert stored.select(["meter_id", "version", "energy_delivered_wh"]).to_pylist() == [
        {"meter_id": "m001", "version": 1, "energy_delivered_wh": 5.0},
        {"meter_id": "m000", "version": 1, "energy_delivered_wh": 6.0},
        {"meter_id": "m001", "version": 2, "energy_delivered_wh": 7.0},
    ]


def test_an_estimate_for_a_gap_is_version_1_and_a_late_read_still_lands(store: MeterDataStore) -> None:
    gap = _estimate("m009", 45, 30.0).append_column("interval_s", pa.array([900], pa.int32()))
    assert store.add_versions(gap).column("version").to_pylist() == [1]
    late = reads(meters=10, intervals=4).filter(pc.equal(pc.field("meter_id"), "m009"))
    assert store.ingest_reads(late).inserted == 4  # the measured read arrives after the estimate
    history = store.reads(meter_ids=["m009"], start=at(45), versions="all")
    assert history.select(["version", "source"]).to_pylist() == [
        {"version": 0, "source": "measured"},
        {"version": 1, "source": "estimated"},
    ]
    assert store.reads(meter_ids=["m009"], start=at(45)).column("source").to_pylist() == ["estimated"]


def test_a_caller_cannot_choose_the_version(store: MeterDataStore) -> None:
    store.ingest_reads(reads(meters=1, intervals=1))
    rows = _estimate("m000", 0, 1.0).append_column("version", pa.array([7], pa.int32()))
    assert store.add_versions(rows).column("version").to_pylist() == [1]


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        (_estimate("m000", 0, 1.0).set_column(4, "rule", pa.array([None], pa.string())), "rule is null at row 1"),
        (_estimate("m000", 0, 1.0, source="guessed"), "not one of estimated, edited, measured"),
        (
            _estimate("m000", 0, 1.0, source="edited").set_column(5, "edited_by", pa.array([None], pa.string())),
            "must name who made it",
        ),
        (_estimate("m005", 0, 1.0), "nothing is stored for meter m005"),
    ],
    ids=["no-rule", "unknown-source", "anonymous-edit", "gap-without-interval"],
)
def test_bad_versions_are_refused_whole(store: MeterDataStore, rows: pa.Table, message: str) -> None:
    store.ingest_reads(reads(meters=1, intervals=2))
    with pytest.raises(StoreInputError, match="add_versions") as refused:
        store.add_versions(pa.concat_tables([_estimate("m000", 15, 3.0), rows]))
    assert message in str(refused.value)
    assert store.count("reads") == 2


def test_add_versions_of_nothing_stores_nothing(store: MeterDataStore) -> None:
    empty = _estimate("m000", 0, 1.0).slice(0, 0)
    assert store.add_versions(empty).num_rows == 0
    assert store.count("reads") == 0


# --- queries ----------------------------------------------------------------------------------


def test_queries_select_meters_and_a_half_open_time_range(store: MeterDataStore) -> None:
    store.ingest_reads(reads(meters=4, intervals=8))
    picked = store.reads(meter_ids=["m003", "m001", "nobody"], start=at(30), end=at(90))
    assert picked.select(KEY).to_pylist() == [
        {"meter_id": m, "interval_start": at(t)} for m in ("m001", "m003") for t in (30, 45, 60, 75)
    ]
    assert store.reads(meter_ids=[]).num_rows == 0
    assert store.reads(start=at(120)).num_rows == 0
    assert store.reads(end=at(0)).num_rows == 0
    assert store.reads(start=at(0), end=at(0)).num_rows == 0


def test_bulk_readers_get_the_same_rows_unordered_and_only_the_columns_asked(store: MeterDataStore) -> None:
    store.ingest_reads(reads(meters=4, intervals=8))
    store.add_versions(_estimate("m002", 15, 7.0))
    wanted = pa.array(["m003", "m001", "m002"])  # an Arrow array is taken as it is
    ordered = store.reads(meter_ids=wanted, start=at(15), end=at(90))
    columns = ["meter_id", "interval_start", "energy_delivered_wh", "version"]
    loose = store.reads(meter_ids=wanted, start=at(15), end=at(90), columns=columns, ordered=False)
    assert loose.column_names == columns
    assert loose.schema == pa.schema([READS_SCHEMA.field(c) for c in columns])
    assert (
        sorted(loose.to_pylist(), key=lambda r: (r["meter_id"], r["interval_start"]))
        == ordered.select(columns).to_pylist()
    )
    assert [(r["meter_id"], r["version"]) for r in loose.to_pylist() if r["interval_start"] == at(15)].count(
        ("m002", 1)
    ) == 1  # the current version, once
    with pytest.raises(StoreInputError, match="columns must be"):
        store.reads(columns=["meter", "interval_start"])


@pytest.mark.parametrize("versions", ["current", "all"])
def test_meter_ids_can_come_back_dictionary_encoded(store: MeterDataStore, versions: str) -> None:
    store.ingest_reads(reads(meters=4, intervals=8))
    store.add_versions(_estimate("m002", 15, 7.0))
    wanted = ["m003", "m001", "m002", "m001", "nobody"]
    plain = store.reads(meter_ids=wanted, versions=versions)  # type: ignore[arg-type]
    coded = store.reads(meter_ids=wanted, versions=versions, dictionary=True, ordered=False)  # type: ignore[arg-type]
    column = coded.column("meter_id")
    assert pa.types.is_dictionary(column.type)
    assert sorted(column.chunk(0).dictionary.to_pylist()) == ["m001", "m002", "m003", "nobody"]
    decoded = coded.set_column(0, "meter_id", column.cast(pa.string()))
    key = ["meter_id", "interval_start", "version"]
    assert sorted(decoded.to_pylist(), key=lambda r: [r[k] for k in key]) == plain.to_pylist()
    with pytest.raises(StoreInputError, match="dictionary=True needs meter_ids"):
        store.reads(dictionary=True)


def test_as_of_shows_what_an_earlier_bill_saw(store: MeterDataStore, clock: SimClock) -> None:
    store.ingest_reads(reads(meters=1, intervals=2))
    billed_at = clock.now + dt.timedelta(minutes=1)
    clock.now += dt.timedelta(days=3)
    store.add_versions(_estimate("m000", 0, 42.0, source="edited", rule="rebill"))
    then = store.reads(as_of=billed_at)
    assert then.column("version").to_pylist() == [0, 0]
    assert store.reads().column("version").to_pylist() == [1, 0]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"versions": "latest"}, "versions must be"),
        ({"start": dt.datetime(2026, 11, 1)}, "timezone-aware"),
        ({"start": at(60), "end": at(0)}, "is before start"),
        ({"meter_ids": "m000"}, "lists of strings"),
    ],
)
def test_bad_queries_are_refused(store: MeterDataStore, kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(StoreInputError, match=message):
        store.reads(**kwargs)  # type: ignore[arg-type]


def test_count_names_the_tables_it_knows(store: MeterDataStore) -> None:
    with pytest.raises(UnknownTable, match="did you mean reads"):
        store.count("read")


# --- register reads and events ----------------------------------------------------------------


def _registers(meters: list[str], hours: list[int]) -> pa.Table:
    rows = [(m, h) for m in meters for h in hours]
    return pa.table(
        {
            "meter_id": [m for m, _ in rows],
            "read_at": pa.array([START + dt.timedelta(hours=h) for _, h in rows], TIMESTAMP),
            "energy_delivered_wh": [1000.0 * h + 0.1 for _, h in rows],
            "energy_received_wh": [None] * len(rows),
        }
    )


def test_register_reads_are_stored_once_and_filtered(store: MeterDataStore) -> None:
    assert store.ingest_register_reads(_registers(["a", "b"], [0, 24])) == 4
    assert store.ingest_register_reads(_registers(["a", "b", "c"], [0, 24])) == 2
    got = store.register_reads(meter_ids=["a", "c"], start=START, end=START + dt.timedelta(hours=24))
    assert got.schema == REGISTER_SCHEMA
    assert got.select(["meter_id", "energy_delivered_wh", "quality"]).to_pylist() == [
        {"meter_id": "a", "energy_delivered_wh": 0.1, "quality": 0},
        {"meter_id": "c", "energy_delivered_wh": 0.1, "quality": 0},
    ]
    assert store.count("register_reads") == 6


def test_events_are_stored_once_and_filtered_by_kind(store: MeterDataStore, clock: SimClock) -> None:
    events = pa.table(
        {
            "meter_id": ["a", "a", "b", "a"],
            "at": pa.array([at(5), at(5), at(7), at(5)], TIMESTAMP),
            "kind": ["LAST_GASP", "TAMPER", "LAST_GASP", "LAST_GASP"],  # the last repeats the first
        }
    )
    assert store.ingest_events(events) == 3
    assert store.ingest_events(events) == 0
    gasps = store.events(kinds=["LAST_GASP"])
    assert gasps.schema == EVENTS_SCHEMA
    assert gasps.select(["meter_id", "kind"]).to_pylist() == [
        {"meter_id": "a", "kind": "LAST_GASP"},
        {"meter_id": "b", "kind": "LAST_GASP"},
    ]
    assert set(gasps.column("received_at").to_pylist()) == {clock.now}
    assert store.events(meter_ids=["a"], start=at(6)).num_rows == 0
    assert store.count("events") == 3


# --- lifetime, concurrency, opening -----------------------------------------------------------


def test_data_survives_closing_and_reopening(backend: Backend) -> None:
    with backend.open() as first:
        first.ingest_reads(reads(meters=2, intervals=2))
        first.add_versions(_estimate("m000", 0, 5.0))
    with backend.open() as again:
        assert again.count("reads") == 5
        assert again.ingest_reads(reads(meters=2, intervals=2)).duplicates == 4


def test_two_writers_delivering_the_same_batch_store_it_once(backend: Backend) -> None:
    batch = reads(meters=50, intervals=96)
    stores = [backend.open(), backend.open()]
    results = []

    def deliver(store: MeterDataStore) -> None:
        results.append(store.ingest_reads(batch))

    threads = [threading.Thread(target=deliver, args=(s,)) for s in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for opened in stores:
        opened.close()
    assert sorted(r.inserted for r in results) == [0, 4800]
    assert sum(r.duplicates for r in results) == 4800
    with backend.open() as check:
        assert check.count("reads") == 4800


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    keys=st.lists(st.tuples(st.integers(0, 3), st.integers(0, 5)), min_size=1, max_size=30),
    values=st.lists(st.floats(allow_nan=False, allow_infinity=False, width=64), min_size=30, max_size=30),
    cuts=st.lists(st.integers(0, 30), max_size=4),
    again=st.booleans(),
)
def test_any_delivery_stores_each_interval_once_with_the_first_value(
    store: MeterDataStore, keys: list[tuple[int, int]], values: list[float], cuts: list[int], again: bool
) -> None:
    prefix = f"h{store.count('reads')}-"  # each example writes its own meters
    batch = pa.table(
        {
            "meter_id": [f"{prefix}{m}" for m, _ in keys],
            "interval_start": pa.array([at(15 * i) for _, i in keys], TIMESTAMP),
            "energy_delivered_wh": values[: len(keys)],
        }
    )
    edges = sorted({0, len(keys), *(c for c in cuts if c <= len(keys))})
    parts = [batch.slice(a, b - a) for a, b in itertools.pairwise(edges)] + ([batch] if again else [])
    results = [store.ingest_reads(part) for part in parts]
    first: dict[tuple[str, dt.datetime], float] = {}
    for row in batch.to_pylist():
        first.setdefault((row["meter_id"], row["interval_start"]), row["energy_delivered_wh"])
    stored = store.reads(meter_ids=sorted({k[0] for k in first}))
    assert {(r["meter_id"], r["interval_start"]): r["energy_delivered_wh"] for r in stored.to_pylist()} == first
    assert sum(r.inserted for r in results) == len(first)
    assert sum(r.received for r in results) == sum(p.num_rows for p in parts)


def test_open_store_refuses_what_it_cannot_open(tmp_path: object) -> None:
    with pytest.raises(StoreUnavailable, match="unsupported store URL scheme 'mysql'"):
        open_store("mysql://root:secret@db/x")
    with pytest.raises(StoreUnavailable, match="cannot reach the PostgreSQL store") as refused:
        open_store("postgresql://postgres:hunter2@127.0.0.1:1/test?connect_timeout=2")
    assert "hunter2" not in str(refused.value)


def test_a_store_from_a_newer_gridloom_is_not_touched(backend: Backend) -> None:
    with backend.open() as opened:
        opened.ingest_reads(reads(meters=1, intervals=1))
    _set_schema_version(backend, "99")
    with pytest.raises(StoreUnavailable, match="newer gridloom"):
        backend.open()


def _set_schema_version(backend: Backend, value: str) -> None:
    if backend.name == "postgres":
        import psycopg

        with psycopg.connect(backend.url, autocommit=True) as conn:
            conn.execute("UPDATE gridloom_store_meta SET value = %s WHERE key = 'schema_version'", (value,))
    else:
        import duckdb

        con = duckdb.connect(backend.url)
        con.execute("UPDATE gridloom_store_meta SET value = $v WHERE key = 'schema_version'", {"v": value}).fetchall()
        con.close()
