"""`gridloom mdms import` as a utility engineer uses it, on DuckDB and PostgreSQL."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from gridloom.cli.commands.mdms import app
from gridloom.errors import ImportRejected
from gridloom.store.importer import read_interval_file

from .conftest import Backend

runner = CliRunner()
HEADER = "meter_id,interval_start,energy_delivered_wh,energy_received_wh,reactive_varh,voltage_v,interval_s\n"


def good_lines(count: int = 20) -> list[str]:
    """One meter's quarter hours from local midnight (UTC+1), some optional fields empty."""
    lines = []
    for i in range(count):
        local = dt.datetime(2026, 11, 1, tzinfo=dt.timezone(dt.timedelta(hours=1))) + dt.timedelta(minutes=15 * i)
        received = "" if i % 2 else "0.5"
        lines.append(f"MTR-1,{local.isoformat()},{100 + i}.25,{received},-3.5,231.2,900\n")
    return lines


def write(tmp_path: Path, lines: list[str], name: str = "reads.csv") -> Path:
    path = tmp_path / name
    path.write_text(HEADER + "".join(lines), encoding="utf-8")
    return path


def run(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_a_csv_file_is_imported_and_a_second_import_stores_nothing_new(tmp_path: Path, backend2: Backend) -> None:
    path = write(tmp_path, good_lines())
    code, out, err = run("import", str(path), "--store", backend2.url)
    assert code == 0, err
    assert "imported 20 reads" in out
    with backend2.open() as store:
        stored = store.reads()
    first = stored.to_pylist()[0]
    assert first["interval_start"] == dt.datetime(2026, 10, 31, 23, 0, tzinfo=dt.UTC)  # offset applied
    assert (first["energy_delivered_wh"], first["energy_received_wh"], first["reactive_varh"]) == (100.25, 0.5, -3.5)
    assert stored.column("energy_received_wh")[1].as_py() is None  # empty field: no value
    assert set(stored.column("source").to_pylist()) == {"imported"}
    code, out, _ = run("import", str(path), "--store", backend2.url)
    assert code == 0
    assert "imported 0 reads" in out
    assert "20 already stored, skipped" in out


def test_a_parquet_file_is_imported(tmp_path: Path, backend2: Backend) -> None:
    table = pa.table(
        {
            "meter_id": ["A", "A", "B"],
            "interval_start": pa.array(
                [dt.datetime(2026, 11, 1, h, tzinfo=dt.UTC) for h in (0, 1, 0)], pa.timestamp("ms", tz="UTC")
            ),
            "energy_delivered_wh": pa.array([1, 2, 3], pa.int64()),
            "interval_s": pa.array([3600, 3600, 3600], pa.int16()),
        }
    )
    path = tmp_path / "reads.parquet"
    pq.write_table(table, path)
    code, _, err = run("import", str(path), "--store", backend2.url)
    assert code == 0, err
    with backend2.open() as store:
        assert store.reads().select(["meter_id", "energy_delivered_wh", "interval_s"]).to_pylist() == [
            {"meter_id": "A", "energy_delivered_wh": 1.0, "interval_s": 3600},
            {"meter_id": "A", "energy_delivered_wh": 2.0, "interval_s": 3600},
            {"meter_id": "B", "energy_delivered_wh": 3.0, "interval_s": 3600},
        ]


def test_a_malformed_row_rejects_the_whole_file(tmp_path: Path, backend2: Backend) -> None:
    before = write(tmp_path, good_lines(3), "earlier.csv")
    assert run("import", str(before), "--store", backend2.url)[0] == 0
    lines = good_lines(30)
    lines[15] = lines[15].replace("115.25", "abc")  # the header is line 1: this is line 17
    lines[20] = lines[20].replace("120.25", "x")
    code, out, err = run("import", str(write(tmp_path, lines)), "--store", backend2.url)
    assert code == 2
    assert "line 17, field energy_delivered_wh: 'abc' is not a number (2 malformed rows in all" in err
    assert "imported" not in out
    with backend2.open() as store:
        assert store.count("reads") == 3  # what was there before, and nothing of the rejected file


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("MTR-1,2026-11-01T05:00:00,1,,,,900\n", "field interval_start: '2026-11-01T05:00:00' has no UTC offset"),
        ("MTR-1,yesterday,1,,,,900\n", "line 7, field interval_start: 'yesterday' is not an ISO 8601 time"),
        ("MTR-1,2026-11-31T05:00:00Z,1,,,,900\n", "field interval_start: '2026-11-31T05:00:00Z' is not a valid"),
        ("MTR-1,2026-11-01T05:00:00Z,-2,,,,900\n", "line 7, field energy_delivered_wh: '-2' is negative"),
        ("MTR-1,2026-11-01T05:00:00Z,,,,,900\n", "line 7, field energy_delivered_wh: missing value"),
        ("MTR-1,2026-11-01T05:00:00Z,1e999,,,,900\n", "line 7, field energy_delivered_wh: '1e999' is not a finite"),
        ("MTR-1,2026-11-01T05:00:00Z,1,,,,15min\n", "line 7, field interval_s: '15min' is not a whole number"),
        ("MTR-1,2026-11-01T05:00:00Z,1,,,[null],900\n", "line 7, field voltage_v: '[null]' is not a number"),
        (",2026-11-01T05:00:00Z,1,,,,900\n", "line 7, field meter_id: missing value"),
        ("MTR-1,2026-11-01T05:00:00Z,1\n", "line 7: 3 fields where the header names 7"),
    ],
)
def test_each_kind_of_fault_names_its_line_and_field(tmp_path: Path, line: str, message: str) -> None:
    lines = good_lines(10)
    lines.insert(5, line)
    code, _, err = run("import", str(write(tmp_path, lines)), "--store", str(tmp_path / "s.duckdb"))
    assert code == 2
    assert message in err
    assert "line 7" in err


def test_blank_lines_are_skipped_and_later_lines_keep_their_numbers(tmp_path: Path) -> None:
    lines = good_lines(6)
    lines.insert(2, "\n")
    lines[5] = lines[5].replace("104.25", "oops")  # line 7 of the file (header, 2 reads, blank, 2 reads, this)
    with pytest.raises(ImportRejected) as rejected:
        read_interval_file(write(tmp_path, lines))
    assert (rejected.value.line, rejected.value.field) == (7, "energy_delivered_wh")


def test_bad_headers_are_refused_with_a_hint(tmp_path: Path) -> None:
    path = tmp_path / "reads.csv"
    path.write_text("meter_id,interval_start,energy_delivered,voltage_v\nM,2026-11-01T00:00Z,1,230\n")
    code, _, err = run("import", str(path), "--store", str(tmp_path / "s.duckdb"))
    assert code == 2
    assert "line 1, field energy_delivered: unknown column" in err
    assert "did you mean 'energy_delivered_wh'" in err
    path.write_text("meter_id,energy_delivered_wh\nM,1\n")
    assert "missing column(s) interval_start" in run("import", str(path), "--store", str(tmp_path / "s.duckdb"))[2]
    assert not (tmp_path / "s.duckdb").exists()  # nothing opened, let alone stored


def test_parquet_faults_name_the_row(tmp_path: Path) -> None:
    path = tmp_path / "reads.parquet"
    naive = pa.array([dt.datetime(2026, 11, 1)] * 2, pa.timestamp("us"))
    pq.write_table(pa.table({"meter_id": ["A", "B"], "interval_start": naive, "energy_delivered_wh": [1.0, 2.0]}), path)
    with pytest.raises(ImportRejected, match="row 1, field interval_start: timestamps without a time zone"):
        read_interval_file(path)
    aware = naive.cast(pa.timestamp("us", tz="UTC"))
    values = pa.table({"meter_id": ["A", "B"], "interval_start": aware, "energy_delivered_wh": [1.0, -2.0]})
    pq.write_table(values, path)
    with pytest.raises(ImportRejected, match=r"row 2, field energy_delivered_wh: -2\.0 is negative"):
        read_interval_file(path)


def test_other_files_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "reads.xlsx"
    path.write_bytes(b"PK")
    code, _, err = run("import", str(path), "--store", str(tmp_path / "s.duckdb"))
    assert code == 2
    assert "unsupported file type" in err
    code, _, err = run("import", str(tmp_path / "missing.csv"), "--store", str(tmp_path / "s.duckdb"))
    assert code == 2
    assert "does not exist" in err
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"not parquet at all")
    assert "is not a readable Parquet file" in run("import", str(broken), "--store", str(tmp_path / "s.duckdb"))[2]


def test_an_unreachable_store_is_reported_without_its_password(tmp_path: Path) -> None:
    url = "postgresql://postgres:hunter2@127.0.0.1:1/test?connect_timeout=2"
    code, _, err = run("import", str(write(tmp_path, good_lines(2))), "--store", url)
    assert code == 2
    assert "cannot reach the PostgreSQL store" in err
    assert "hunter2" not in err
