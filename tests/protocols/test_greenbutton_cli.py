"""What a user sees from ``gridloom greenbutton export``: files that an independent parser reads back."""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from greenbutton_objects import parse
from typer.testing import CliRunner

from gridloom.cli.commands.greenbutton import app
from gridloom.protocols import greenbutton as gb
from gridloom.store import open_store
from tests.protocols.reads import make_reads

UTC = dt.UTC
NOV = dt.datetime(2026, 11, 1, tzinfo=UTC)  # 01:00 in Berlin
runner = CliRunner()


@pytest.fixture
def store(tmp_path: Path) -> tuple[str, Callable[[pa.Table], None]]:
    """A store (DuckDB file) URL and a function that stores reads in it: originals, then later versions."""
    url = str(tmp_path / "mdms.duckdb")

    def put(reads: pa.Table) -> None:
        with open_store(url) as s:
            s.ingest_reads(reads.filter(pc.equal(reads["version"], 0)))
            later = reads.filter(pc.greater(reads["version"], 0))
            if later.num_rows:
                s.add_versions(later)

    return url, put


def _nov_reads() -> pa.Table:
    days = 3 * 96
    pv = make_reads(
        "meter-a",
        NOV,
        [float(i % 500) for i in range(days)],
        received_wh=[float(i % 7) for i in range(days)],
    )
    other = make_reads("meter-b", NOV, [5.0] * days)
    estimate = make_reads(
        "meter-a", NOV, [42.0], version=1, source="estimated", rule="interpolation", quality=[1 << 18]
    )
    return pa.concat_tables([pv, other, estimate])


def _invoke(args: list[str]) -> Any:
    result = runner.invoke(app, args)
    return result


def test_export_meter_xml_round_trips(store: tuple[str, Callable[[pa.Table], None]], tmp_path: Path) -> None:
    url, put = store
    reads = _nov_reads()
    put(reads)
    out = tmp_path / "a.xml"
    result = _invoke(
        ["export", "--meter", "meter-a", "--store", url, "--output", str(out), "--timezone", "Europe/Berlin"]
    )
    assert result.exit_code == 0, result.output
    assert "meter-a" in result.stderr
    assert str(out) in result.stderr.replace("\n", "")
    (point,) = parse.parse_feed(out)
    assert point.title == "meter-a"
    by_direction = {r.readingType.flowDirection.name: list(r.intervalReadings) for r in point.meterReadings}
    assert set(by_direction) == {"forward", "reverse"}
    forward = by_direction["forward"]
    assert len(forward) == 3 * 96
    assert (forward[0].timePeriod.start, forward[0].value) == (NOV, 42)  # the estimate, version 1
    assert {q.quality.value for q in forward[0].readingQualities} == {9}
    assert [ir.value for ir in forward[1:4]] == [1, 2, 3]
    assert [ir.value for ir in by_direction["reverse"][:8]] == [0, 1, 2, 3, 4, 5, 6, 0]


def test_export_csv_to_stdout_with_a_period(store: tuple[str, Callable[[pa.Table], None]]) -> None:
    url, put = store
    put(_nov_reads())
    # local days in Berlin: 2 November 00:00 CET is 1 November 23:00 UTC
    args = ["export", "--meter", "meter-b", "--store", url, "--format", "csv", "--from", "2026-11-02"]
    result = _invoke([*args, "--to", "2026-11-02", "--timezone", "Europe/Berlin"])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert len(rows) == 96
    assert rows[0]["interval_start_utc"] == "2026-11-01T23:00:00Z"
    assert rows[0]["interval_start_local"] == "2026-11-02T00:00:00+01:00"
    assert rows[-1]["interval_start_local"] == "2026-11-02T23:45:00+01:00"
    assert {r["meter_id"] for r in rows} == {"meter-b"}


def test_account_export_follows_the_cis(store: tuple[str, Callable[[pa.Table], None]], tmp_path: Path) -> None:
    from gridloom.systems.cis import Cis, default_tariffs, open_database, save_cis

    url, put = store
    put(_nov_reads())
    cis = Cis(tariffs=default_tariffs(), timezone="Europe/Berlin")
    cis.add_premise("prem-1", service_point_id="sp-1")
    cis.install_meter("meter-a", premise_id="prem-1", at=dt.datetime(2020, 1, 1, tzinfo=UTC))
    # the previous occupant moved out on 2 November: what the meter measured before is not the new one's
    moved_in = NOV + dt.timedelta(days=1)
    cis.move_in(
        premise_id="prem-1", customer_id="c-1", at=dt.datetime(2024, 1, 1, tzinfo=UTC), tariff_id="R-FLAT",
        account_id="acct-old",
    )  # fmt: skip
    cis.move_out("acct-old", at=moved_in)
    cis.move_in(premise_id="prem-1", customer_id="c-2", at=moved_in, tariff_id="R-FLAT", account_id="acct-new")
    with open_database(url) as db:
        save_cis(db, cis)
    out = tmp_path / "new.xml"
    result = _invoke(["export", "--account", "acct-new", "--store", url, "--output", str(out)])
    assert result.exit_code == 0, result.output
    (point,) = parse.parse_feed(out)
    forward = next(r for r in point.meterReadings if r.readingType.flowDirection.name == "forward")
    starts = [ir.timePeriod.start for ir in forward.intervalReadings]
    assert starts[0] == moved_in
    assert len(starts) == 2 * 96
    old = tmp_path / "old.xml"
    result = _invoke(["export", "--account", "acct-old", "--store", url, "--output", str(old), "--format", "csv"])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(old.read_text())))
    assert {r["meter_id"] for r in rows} == {"meter-a"}
    assert [r["interval_start_utc"] for r in rows][-1] == "2026-11-01T23:45:00Z"  # until the move-out
    assert len(rows) == 96
    unknown = _invoke(["export", "--account", "acct-nwe", "--store", url])
    assert unknown.exit_code == 2
    assert "acct-new" in unknown.stderr  # did you mean


def test_no_reads_is_a_clear_error(store: tuple[str, Callable[[pa.Table], None]]) -> None:
    url, put = store
    put(_nov_reads())
    result = _invoke(["export", "--meter", "meter-z", "--store", url])
    assert result.exit_code == 2
    assert "no interval reads for meter(s) meter-z" in result.stderr
    result = _invoke(["export", "--meter", "meter-a", "--store", url, "--from", "2027-01-01"])
    assert result.exit_code == 2
    assert "2027-01-01" in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "either --meter"),
        (["--meter", "m", "--account", "a"], "either --meter"),
        (["--meter", "m", "--from", "yesterday"], "--from 'yesterday'"),
        (["--meter", "m", "--timezone", "Mars/Olympus"], "IANA"),
    ],
)
def test_bad_arguments_exit_2_naming_the_option(
    store: tuple[str, Callable[[pa.Table], None]], args: list[str], message: str
) -> None:
    url, put = store
    put(_nov_reads())
    result = _invoke(["export", "--store", url, *args])
    assert result.exit_code == 2
    assert message in result.stderr.replace("\n", " ")


def test_account_without_reads_in_the_period(store: tuple[str, Callable[[pa.Table], None]]) -> None:
    from gridloom.systems.cis import Cis, default_tariffs, open_database, save_cis

    url, put = store
    put(_nov_reads())
    cis = Cis(tariffs=default_tariffs(), timezone="Europe/Berlin")
    cis.add_premise("prem-9", service_point_id="sp-9")
    cis.install_meter("meter-9", premise_id="prem-9", at=dt.datetime(2020, 1, 1, tzinfo=UTC))
    cis.move_in(premise_id="prem-9", customer_id="c-9", at=NOV, tariff_id="R-FLAT", account_id="acct-9")
    with open_database(url) as db:
        save_cis(db, cis)
    result = _invoke(["export", "--account", "acct-9", "--store", url, "--from", "2026-11-01"])
    assert result.exit_code == 2
    assert "no interval reads for account 'acct-9' (meter(s) meter-9)" in result.stderr.replace("\n", " ")


def test_help_names_every_csv_column() -> None:
    result = runner.invoke(app, ["export", "--help"], terminal_width=200)
    assert result.exit_code == 0
    text = " ".join(result.stdout.split())
    for column in gb.CSV_COLUMNS:
        assert column in text
