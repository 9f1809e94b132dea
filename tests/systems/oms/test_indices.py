"""IEEE 1366 indices on a hand-computed example, the records file, and ``gridloom oms report``."""

import datetime as dt
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gridloom.cli import app
from gridloom.errors import OutageRecordsError
from gridloom.systems.oms import OutageKind, OutageRecord, OutageStatus, load_records, reliability_indices, save_records

T0 = dt.datetime(2026, 7, 1, tzinfo=dt.UTC)
MIN = 60_000_000
runner = CliRunner()


def record(n: int, start_min: float, minutes: float | None, customers: int, **kw) -> OutageRecord:
    start = int(T0.timestamp() * 1e6 + start_min * MIN)
    fields = {
        "outage_id": f"out-{n:06d}", "kind": OutageKind.NETWORK, "status": OutageStatus.RESTORED,
        "device_id": f"s000-fuse-{n}", "device_kind": "fuse", "predicted_device_id": f"s000-fuse-{n}",
        "start_us": start, "detected_us": start + 20_000_000,
        "end_us": -1 if minutes is None else start + int(minutes * MIN), "customers": customers, "confidence": 0.99,
    }  # fmt: skip
    fields.update(kw)
    return OutageRecord(**fields)


# 1,000 customers served; the day of 2026-07-01:
RECORDS = [
    record(1, 0, 60, 100),  # 100 customers x 60 min
    record(2, 120, 30, 50),  # 50 x 30
    record(3, 200, 0.5, 200, momentary=True),  # a reclosing sequence: 200 momentary interruptions
    record(4, 300, 40, 1, kind=OutageKind.PREMISE, customer_side=True),  # the customer's own side: not counted
    record(5, 310, 45, 80, status=OutageStatus.MERGED),  # merged into another: not counted
    record(6, 320, None, 90, status=OutageStatus.CANCELLED),  # no outage after all
    record(7, 23 * 60 + 30, None, 10, status=OutageStatus.CONFIRMED),  # still open at the end: 30 min so far
    record(8, -30, 60, 400),  # began the day before: not in the period
]


def test_saifi_saidi_caidi_maifi_by_hand() -> None:
    indices = reliability_indices(RECORDS, customers_served=1000, start=T0, end=T0 + dt.timedelta(days=1))
    # sustained: 100 + 50 + 10 customers; 100*60 + 50*30 + 10*30 customer minutes
    assert indices.sustained_outages == 3
    assert indices.open_outages == 1
    assert indices.customers_interrupted == 160
    assert indices.customer_minutes == pytest.approx(6000 + 1500 + 300)
    assert indices.saifi == pytest.approx(0.16)
    assert indices.saidi_min == pytest.approx(7.8)
    assert indices.caidi_min == pytest.approx(48.75)
    assert indices.maifi == pytest.approx(0.2)
    assert indices.momentary_events == 1


def test_any_period_counts_the_interruptions_that_began_in_it() -> None:
    first_hour = reliability_indices(RECORDS, customers_served=1000, start=T0, end=T0 + dt.timedelta(hours=1))
    assert first_hour.customers_interrupted == 100
    assert first_hour.saidi_min == pytest.approx(6.0)
    before = reliability_indices(RECORDS, customers_served=1000, start=T0 - dt.timedelta(days=1), end=T0)
    assert before.customers_interrupted == 400
    as_of = reliability_indices(
        RECORDS,
        customers_served=1000,
        start=T0,
        end=T0 + dt.timedelta(days=2),
        as_of=T0 + dt.timedelta(hours=23, minutes=40),
    )
    assert as_of.customer_minutes == pytest.approx(6000 + 1500 + 100)  # the open one: 10 minutes so far
    nothing = reliability_indices([], customers_served=1000, start=T0, end=T0 + dt.timedelta(days=1))
    assert nothing.saifi == 0
    assert nothing.caidi_min is None


def test_bad_periods_and_counts_are_refused() -> None:
    with pytest.raises(OutageRecordsError, match="not after"):
        reliability_indices(RECORDS, customers_served=10, start=T0, end=T0)
    with pytest.raises(OutageRecordsError, match="customers_served"):
        reliability_indices(RECORDS, customers_served=0, start=T0, end=T0 + dt.timedelta(days=1))


def test_records_file_round_trip_and_errors(tmp_path: Path) -> None:
    path = save_records(tmp_path / "oms_outages.json", RECORDS, customers_served=1000)
    loaded, served = load_records(path)
    assert served == 1000
    assert loaded == RECORDS
    with pytest.raises(OutageRecordsError, match="no such file"):
        load_records(tmp_path / "missing.json")
    (tmp_path / "other.json").write_text(json.dumps({"format": "something else"}))
    with pytest.raises(OutageRecordsError, match="not an OMS outage-records file"):
        load_records(tmp_path / "other.json")
    broken = json.loads(path.read_text())
    del broken["records"][2]["customers"]
    (tmp_path / "broken.json").write_text(json.dumps(broken))
    with pytest.raises(OutageRecordsError, match=r"record #3: KeyError"):
        load_records(tmp_path / "broken.json")


def test_oms_report_command(tmp_path: Path) -> None:
    save_records(tmp_path / "oms_outages.json", RECORDS, customers_served=1000)
    result = runner.invoke(app, ["oms", "report", str(tmp_path), "--from", "2026-07-01", "--to", "2026-07-01"])
    assert result.exit_code == 0, result.output
    assert "SAIFI" in result.output
    assert "0.1600" in result.output
    assert "48.8 min" in result.output
    result = runner.invoke(
        app, ["oms", "report", str(tmp_path / "oms_outages.json"), "--from", "2026-07-01", "--to", "2026-07-01",
              "--format", "json", "--outages"],
    )  # fmt: skip
    document = json.loads(result.output)
    assert document["indices"]["saidi_min"] == pytest.approx(7.8)
    assert [o["outage_id"] for o in document["outages"]] == ["out-000001", "out-000002", "out-000003", "out-000004",
                                                                "out-000006", "out-000007"]  # fmt: skip
    result = runner.invoke(app, ["oms", "report", str(tmp_path), "--from", "July"])
    assert result.exit_code == 2
    assert "--from 'July' is not a day" in result.output
    result = runner.invoke(app, ["oms", "report", str(tmp_path / "nowhere")])
    assert result.exit_code == 2
    assert "no such" in result.output
