"""The scenario runner end to end: the default scenario's invariants, determinism, drills, Ctrl-C."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from typer.testing import CliRunner

from gridloom.catalog import Catalog
from gridloom.cli.app import app
from gridloom.fabric import CertificateAuthority
from gridloom.fabric.audit import verify
from gridloom.scenario.runner import RunOptions, RunResult, run_scenario
from gridloom.scenario.spec import default_scenario, load_scenario
from gridloom.store import open_store
from tests.store.conftest import PG_URL, pg_schema_url

SMALL = """
name: small
grid: {customers: 600}
time: {days: 0.25}
timeline:
  - {at: "01:00", kind: meter_firmware, problem: clock_jump, share: 0.05, seconds: 900}
  - {at: "02:10", kind: fault, device: fuse-1775, repair: 1h}
"""


def run(scenario_text: str | None, out: Path, **options: Any) -> RunResult:
    scenario = load_scenario(scenario_text) if scenario_text is not None else default_scenario()
    return asyncio.run(run_scenario(scenario, RunOptions(out=out, **options)))


@pytest.fixture(scope="module")
def default_run(tmp_path_factory: pytest.TempPathFactory) -> RunResult:
    """The scenario `make run` runs, once for the module."""
    return run(None, tmp_path_factory.mktemp("default") / "run")


def test_the_default_run_writes_its_folder(default_run: RunResult) -> None:
    out = default_run.out
    for name in ("metrics.json", "report.html", "mdms.duckdb", "audit.jsonl", "scenario.yaml", "pki"):
        assert (out / name).exists(), name
    assert json.loads((out / "metrics.json").read_text()) == default_run.metrics
    assert load_scenario(out / "scenario.yaml") == default_scenario()
    report = (out / "report.html").read_text()
    assert "default" in report
    assert "DGM-20" in report


def test_every_simulated_read_is_stored_or_accounted_for(default_run: RunResult) -> None:
    ami = default_run.metrics["ami"]
    assert ami["reads_expected"] == 3000 * 96
    # a meter without supply for a whole interval has nothing to send (a partial interval comes later)
    without_supply = ami["reads_expected"] - ami["reads_offered"] - ami["reads_withheld_by_firmware"]
    assert ami["reads_without_supply"] == without_supply
    assert 0 < without_supply <= sum(default_run.metrics["series"]["customers_out"])
    # the configured communication loss (2 % per read, 0.2 % per batch) is what goes missing
    assert ami["reads_offered"] == ami["reads_delivered"] + ami["reads_lost_in_field"]
    assert 0.005 < ami["reads_lost_in_field"] / ami["reads_offered"] < 0.05
    assert ami["reads_delivered"] == ami["reads_stored"] + ami["reads_duplicate"]
    with open_store(default_run.out / "mdms.duckdb") as store:
        measured = store.reads(versions="all")
        assert sum(1 for s in measured.column("source").to_pylist() if s == "measured") == ami["reads_stored"]
    # the nightly VEE estimates what did not arrive, but for the few gaps it has no rule for
    vee = default_run.metrics["vee"]
    assert vee["estimated"] >= 0.99 * ami["reads_lost_in_field"]
    assert ami["completeness_after_vee"] == pytest.approx(1 - vee["unestimated"] / ami["reads_expected"], abs=1e-5)
    assert ami["completeness_after_vee"] > 0.999


def test_energy_balances_and_voltages_stay_in_their_limits(default_run: RunResult) -> None:
    grid = default_run.metrics["grid"]
    assert abs(grid["energy_balance_error"]) < 0.005
    assert grid["customer_intervals"] > 0.99 * 3000 * 96  # every customer with supply, every interval
    assert len(default_run.metrics["series"]["substation_kw"]) == 96


def test_a_clean_run_uses_only_catalogued_interfaces_and_rejects_nothing(
    default_run: RunResult, catalog: Catalog
) -> None:
    m = default_run.metrics
    carried = {row["interface"] for row in m["interfaces"]}
    assert {"DGM-20", "AMI-10", "AMI-24"} <= carried
    for interface in carried:
        catalog.interface(interface)  # raises for anything not in the catalog
    assert m["rejections"] == {}
    assert all(row["rejected"] == 0 for row in m["interfaces"])
    assert m["drills"] == []
    # DGM-20's latency is the backhaul's delay (seconds to minutes), AMI-10 forwards at once
    dgm20 = next(row for row in m["interfaces"] if row["interface"] == "DGM-20")
    assert 1 < dgm20["latency_p50_s"] < dgm20["latency_p99_s"] < 900
    unimplemented = {row["interface"] for row in m["unimplemented_interfaces"]}
    assert not carried & unimplemented
    assert len(unimplemented) > 100


def test_the_default_day_has_its_outages_firmware_problem_and_bills(default_run: RunResult) -> None:
    m = default_run.metrics
    fuse, recloser = m["outages"]["events"]
    assert (fuse["device"], fuse["momentary"]) == ("fuse-1775", False)
    assert fuse["customers"] > 0
    assert fuse["end"] == "2026-07-01T13:07:00+00:00"  # repaired after 3 h
    assert recloser["momentary"]
    assert recloser["customers"] == 0
    indices = m["outages"]["indices"]
    assert indices["SAIFI"] == pytest.approx(fuse["customers"] / 3000, abs=1e-5)
    assert indices["SAIDI_min"] == pytest.approx(fuse["customer_minutes"] / 3000, abs=1e-3)
    assert indices["MAIFI"] > 0
    assert m["vee"]["flagged"]["clock_drift"] > 0  # the firmware push made clocks jump
    assert [e["kind"] for e in m["timeline"]] == ["meter_firmware", "fault", "fault"]
    bills = m["billing"]
    assert bills["bills"] == bills["issued"] == 3000
    assert sum(t["bills"] for t in bills["by_tariff"].values()) == 3000
    assert float(bills["billed_total"]) > 0


def test_the_audit_log_of_a_run_verifies(default_run: RunResult) -> None:
    auditor = CertificateAuthority.load(default_run.out / "pki").load_identity("auditor")
    report = verify(default_run.out / "audit.jsonl", public_key=auditor.signing_key.public_key())
    assert report.head_checked
    assert report.entries > 0  # usage requests (billing's AMI-24) are audited


def without_wall_times(metrics: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in metrics.items() if k != "wall_s"}


def test_same_seed_same_metrics_another_seed_other_metrics(tmp_path: Path) -> None:
    first = run(SMALL, tmp_path / "a")
    again = run(SMALL, tmp_path / "b")
    assert without_wall_times(first.metrics) == without_wall_times(again.metrics)
    other = run(SMALL + "seed: 2\n", tmp_path / "c")
    assert other.metrics["grid"] != first.metrics["grid"]


def test_an_attack_drill_is_refused_counted_and_audited(tmp_path: Path) -> None:
    result = run(SMALL + '  - {at: "03:00", kind: attack_drill}\n', tmp_path / "drill")
    m = result.metrics
    assert [d["attack"] for d in m["drills"]] == [
        "replay", "tampered", "forged_identity", "unauthorised_command", "disconnect_flood",
    ]  # fmt: skip
    assert all(d["passed"] for d in m["drills"]), m["drills"]
    assert m["rejections"] == {"CertificateInvalid": 1, "NotAuthorised": 1, "ReplayDetected": 1, "SignatureInvalid": 1}
    # the disconnect commands that were refused are in the audit log, and the log verifies
    audit = (result.out / "audit.jsonl").read_text()
    assert "rejected: NotAuthorised" in audit
    assert verify(result.out / "audit.jsonl").entries > 0
    # nothing the attacker sent reached a meter
    assert m["ami"]["reads_delivered"] == m["ami"]["reads_stored"] + m["ami"]["reads_duplicate"]


def test_a_scenario_with_an_error_is_refused_with_its_line_and_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "name: bad\ngrid:\n  customers: 600\ntimeline:\n  - {at: '10:00', kind: fault, device: fuse-99999}\n"
    )
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["run", str(bad), "--out", str(out)])
    assert result.exit_code == 2
    assert "line 5" in result.output
    assert "timeline[0].device" in result.output
    assert not out.exists()  # nothing written for a refused scenario


def test_ctrl_c_stops_the_run_and_keeps_a_readable_store_and_audit_log(tmp_path: Path) -> None:
    scenario = tmp_path / "slow.yaml"
    scenario.write_text(SMALL)
    out = tmp_path / "run"
    gridloom = Path(sys.executable).with_name("gridloom")
    # --realtime at 900x: one 15-minute step per wall second, so the run is surely interrupted mid-way
    process = subprocess.Popen(
        [str(gridloom), "run", str(scenario), "--out", str(out), "--realtime", "--speed", "900"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env={**os.environ, "COLUMNS": "120"},
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while not (out / "mdms.duckdb").exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(4)  # a few steps in
    process.send_signal(signal.SIGINT)
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 130, output.decode()
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["status"] == "interrupted"
    assert 0 < metrics["sim"]["steps"] < 24
    with open_store(out / "mdms.duckdb") as store:
        assert store.count("reads") == metrics["ami"]["reads_stored"] + metrics["vee"]["estimated"] > 0
    verify(out / "audit.jsonl")  # raises if the chain were broken
    assert (out / "report.html").exists()


def _nats_up() -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", 4222)) == 0


@pytest.fixture
def pg_url() -> Iterator[str]:
    schema = f"test_run_{uuid.uuid4().hex[:12]}"
    yield pg_schema_url(schema)
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


@pytest.mark.skipif(not _nats_up(), reason="NATS JetStream is not listening on 127.0.0.1:4222")
def test_the_distributed_mode_runs_over_jetstream_and_postgresql(tmp_path: Path, pg_url: str) -> None:
    result = run(SMALL, tmp_path / "nats", bus="nats://127.0.0.1:4222", store=pg_url)
    m = result.metrics
    assert m["status"] == "completed"
    assert m["rejections"] == {}
    assert m["ami"]["reads_delivered"] == m["ami"]["reads_stored"] + m["ami"]["reads_duplicate"]
    assert m["ami"]["completeness_after_vee"] > 0.999
    assert not (result.out / "mdms.duckdb").exists()
    with open_store(pg_url) as store:
        assert store.count("reads") == m["ami"]["reads_stored"] + m["vee"]["estimated"]


def test_the_oms_detects_locates_and_restores_the_default_days_outage(default_run: RunResult) -> None:
    m = default_run.metrics
    oms, physics = m["oms"], m["outages"]
    [outage] = oms["outages"]  # the fuse; the recloser's temporary fault is momentary (no last gasp)
    assert outage["predicted_device"] == "s000-fuse-1775"
    assert outage["status"] == "restored"
    assert outage["customers"] == physics["events"][0]["customers"]
    detected = dt.datetime.fromisoformat(outage["detected_at"]) - dt.datetime.fromisoformat(outage["start"])
    assert detected < dt.timedelta(minutes=3)  # the seed's outage row: within 3 minutes
    assert oms["indices"]["saifi"] == pytest.approx(physics["indices"]["SAIFI"], abs=1e-4)
    assert oms["indices"]["saidi_min"] == pytest.approx(physics["indices"]["SAIDI_min"], rel=0.01)
    assert oms["crew_orders_received"] == oms["work_orders"] > 0  # AMI-18 to the field crews' tool
    assert oms["customer_notices_received"] > 0  # DGM-27 restoration estimates
    carried = {row["interface"] for row in m["interfaces"]}
    assert {"AMI-11", "AMI-14", "AMI-18", "AMI-28", "DGM-27"} <= carried
    assert "What the OMS saw" in (default_run.out / "report.html").read_text()
    assert (default_run.out / "oms_outages.json").exists()  # for gridloom oms report RUN_FOLDER


def test_gridloom_run_takes_a_bundled_scenario_by_name(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["run", "nonesuch", "--out", str(tmp_path / "run")])
    assert result.exit_code == 2
    assert "bundled scenarios: default," in " ".join(result.output.split())
