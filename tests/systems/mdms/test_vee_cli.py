"""``gridloom mdms vee-report``: what an operator sees about VEE in a store."""

from __future__ import annotations

import datetime as dt
import json

from typer.testing import CliRunner

from gridloom.cli.commands.mdms import app
from gridloom.store import open_store
from gridloom.systems.mdms import Expected, edit, estimate, validate

from .helpers import DAY, at, concat, day_of

runner = CliRunner()


def make_store(path) -> str:
    url = str(path / "store.duckdb")
    values = [100.0] * 96
    values[7] = 60_000.0
    checked = validate(concat(day_of("m1", values, drop={30, 31}), day_of("m2", 50.0)), capacity_w=48_000.0)
    with open_store(url) as store:
        store.ingest_reads(checked.accepted)
        store.add_versions(estimate(checked, expected=Expected(["m1", "m2"], DAY, DAY + dt.timedelta(days=1), 900)))
        edit(
            store,
            meter_id="m2",
            interval_start=at(3),
            values={"energy_delivered_wh": 1.0},
            reason="field_read",
            user="u",
        )
    return url


def test_vee_report_as_json(tmp_path):
    url = make_store(tmp_path)
    result = runner.invoke(
        app, ["vee-report", "--store", url, "--from", "2026-11-04", "--to", "2026-11-04", "--format", "json"]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["intervals"] == 192
    assert report["estimated"] == 3
    assert report["edited"] == 1
    assert report["flagged"]["spike"] == 1
    assert report["flagged"]["gap"] == 2
    assert report["methods"] == {"interpolation": 3}
    assert report["start"] == "2026-11-04T00:00:00+00:00"
    assert report["end"] == "2026-11-05T00:00:00+00:00"


def test_vee_report_as_tables_and_outside_the_data(tmp_path):
    url = make_store(tmp_path)
    result = runner.invoke(app, ["vee-report", "--store", url])
    assert result.exit_code == 0, result.output
    assert "192 intervals" in result.output
    assert "3 estimated (1.56%)" in result.output
    assert "interpolation" in result.output
    assert "field_read" in result.output
    later = runner.invoke(
        app, ["vee-report", "--store", url, "--from", "2026-12-01T00:00:00+01:00", "--format", "json"]
    )
    assert later.exit_code == 0, later.output
    assert json.loads(later.output)["intervals"] == 0


def test_vee_report_refuses_a_bad_period(tmp_path):
    url = make_store(tmp_path)
    result = runner.invoke(app, ["vee-report", "--store", url, "--from", "yesterday"])
    assert result.exit_code == 2
    assert "--from 'yesterday' is not a day" in result.output
    backwards = runner.invoke(app, ["vee-report", "--store", url, "--from", "2026-11-05", "--to", "2026-11-01"])
    assert backwards.exit_code == 2
    assert "must come after" in backwards.output


def test_vee_report_does_not_create_a_store(tmp_path):
    missing = tmp_path / "nowhere.duckdb"
    result = runner.invoke(app, ["vee-report", "--store", str(missing)])
    assert result.exit_code == 2
    assert "no store at" in result.output
    assert not missing.exists()
