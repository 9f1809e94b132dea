"""Demand response in a scenario run: the DMS's requirement reaches the LMS over DGM-16; direct load control
reaches the customers' ESI through the head-end, critical-peak prices and reliability levels reach their EMS VENs
over OpenADR (TLS, 127.0.0.1); the customers shed during the event, the substation sees it, the LMS settles with
a control group, the DMS gets the compliance, the bills carry the credits, and the report shows it."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gridloom.fabric import CertificateAuthority, MemoryTransport
from gridloom.protocols.openadr import CertificateCheck, Vtn
from gridloom.scenario.demand import DemandResponsePlugin
from gridloom.scenario.runner import Runner, RunOptions, RunResult, run_scenario
from gridloom.scenario.spec import load_scenario
from gridloom.systems.lms.service import Lms

SYSTEMS = "systems: [ami_headend, mdms, cis, lms]\nprograms: {demand_response_share: 0.5}\n"
AFTERNOON = "grid: {customers: 600}\ntime: {start: 2026-07-01T12:00:00Z, days: 0.375}\n" + SYSTEMS  # 12:00-21:00
EVENT = 'timeline:\n  - {at: "17:00", kind: demand_response, duration: 1h}\n'
START, END = dt.datetime(2026, 7, 1, 17, tzinfo=dt.UTC), dt.datetime(2026, 7, 1, 18, tzinfo=dt.UTC)


def run(text: str, out: Path) -> RunResult:
    return asyncio.run(run_scenario(load_scenario(text), RunOptions(out=out)))


@pytest.fixture(scope="module")
def with_event(tmp_path_factory: pytest.TempPathFactory) -> RunResult:
    return run("name: dr\n" + AFTERNOON + EVENT, tmp_path_factory.mktemp("dr") / "run")


@pytest.fixture(scope="module")
def without_event(tmp_path_factory: pytest.TempPathFactory) -> RunResult:
    """The same afternoon, the same enrolment, no event: what the grid would have done."""
    return run("name: no-dr\n" + AFTERNOON + "timeline: []\n", tmp_path_factory.mktemp("no-dr") / "run")


def the_event(result: RunResult) -> dict[str, Any]:
    (event,) = result.metrics["demand_response"]["events"]
    return dict(event)


def test_the_lms_command_goes_through_the_head_end_to_the_esi(with_event: RunResult) -> None:
    m = with_event.metrics
    dr = m["demand_response"]
    assert dr["implemented"] is True
    assert 0 < dr["enrolled"] < dr["eligible"]
    delivered = {row["interface"]: row["delivered"] for row in m["interfaces"]}
    assert delivered["AMI-12c"] == 2  # the LMS's load_control_event to the head-end, and the answer back
    assert delivered["AMI-27"] == 2  # relayed to the ESI, and its confirmation
    assert delivered["DGM-22"] == 2  # the CIS's enrolment to the LMS, the LMS's event records to the CIS
    assert delivered["DGM-16"] == 2  # the DMS's requirement to the LMS, and the LMS's plan back
    assert m["rejections"] == {}
    assert all(row["rejected"] == 0 for row in m["interfaces"])
    assert dr["load_control_relayed_by_headend"] == 1
    event = the_event(with_event)
    assert event["notified_at"] == "2026-07-01T16:00:00+00:00"  # an hour's notice
    assert event["status"] == "planned"
    assert event["meters_confirmed"] == event["meters_commanded"] > 0
    assert event["meters_failed"] == 0
    assert dr["records_received_by_cis"] == event["meters_commanded"]
    kinds = [(e["at"], e["kind"]) for e in m["timeline"]]
    assert ("2026-07-01T16:00:00+00:00", "demand_response") in kinds


def test_the_enrolled_customers_shed_during_the_event_and_catch_up_after(with_event: RunResult) -> None:
    event = the_event(with_event)
    at = [dt.datetime.fromisoformat(t) for t in event["at"]]
    baseline, actual = np.array(event["baseline_kw"]), np.array(event["actual_kw"])
    assert at[0] == START - dt.timedelta(hours=3)
    before = np.array([t < START for t in at])
    during = np.array([START <= t < END for t in at])
    assert during.sum() == 4
    assert actual[before] == pytest.approx(baseline[before])  # nothing changes until the ESI acts
    assert np.all(actual[during] < baseline[during])
    assert np.all(actual[during] <= 0.05 * baseline[during])  # direct load control switches the devices off
    assert event["shed_kw"] == pytest.approx(list(baseline[during] - actual[during]), abs=2e-3)
    # afterwards the devices catch up (the houses cool down again, the tanks reheat), then settle back
    first_after = int(np.flatnonzero(during)[-1]) + 1
    assert actual[first_after] > baseline[first_after]
    assert event["rebound_kwh"] > 0
    assert abs(actual[-1] - baseline[-1]) < 0.2 * event["shed_kw"][0]


def test_the_substation_draws_less_during_the_event(with_event: RunResult, without_event: RunResult) -> None:
    at = [dt.datetime.fromisoformat(t) for t in with_event.metrics["series"]["at"]]
    assert at == [dt.datetime.fromisoformat(t) for t in without_event.metrics["series"]["at"]]
    shed, usual = (np.array(r.metrics["series"]["substation_kw"]) for r in (with_event, without_event))
    before = np.array([t < START for t in at])
    during = np.array([START <= t < END for t in at])
    assert shed[before] == pytest.approx(usual[before])
    less_kwh = float((usual[during] - shed[during]).sum()) * 0.25
    event = the_event(with_event)
    assert event["shed_kwh"] > 0
    assert less_kwh == pytest.approx(event["shed_kwh"], rel=0.1)  # the shed, and the losses it saves
    after = int(np.flatnonzero(during)[-1]) + 1
    assert shed[after] > usual[after]  # the rebound reaches the substation too


def test_no_meter_runs_backwards_for_the_shed(with_event: RunResult, without_event: RunResult) -> None:
    """Each site is sized to its home: a shed never takes more than the customer draws."""
    flagged = with_event.metrics["vee"]["flagged"]
    assert "negative" not in flagged
    assert "reverse_rotation" not in flagged
    assert flagged == without_event.metrics["vee"]["flagged"]


def test_the_settlement_says_what_it_lacks(with_event: RunResult) -> None:
    """The afternoon run has no history (auto: the control group) and no reads of the morning to match it over."""
    settlement = the_event(with_event)["settlement"]
    assert settlement.startswith(
        "not settled: the control-group baseline needs at least 10 control meters with every read of the event's "
        "window ("
    )
    assert the_event(with_event)["compliance_received_by_dms"] == []


def test_the_report_shows_baseline_against_actual(with_event: RunResult) -> None:
    report = with_event.report.read_text(encoding="utf-8")
    section = report[report.index("<h2>Demand response</h2>") : report.index("<h2>Timeline of injected events</h2>")]
    assert "<svg" in section
    assert "dr-1: DLC 17:00-18:00 UTC" in section
    assert "residential LV customers enrolled" in section
    assert "control-group baseline needs at least 10 control meters" in section
    assert "No demand-response system" not in report


def test_an_event_at_the_start_of_the_run_acts_from_the_first_step(tmp_path: Path) -> None:
    """Notice that would fall before the run: the LMS gets the requirement when the run starts; shed_kw
    asks for part of the enrolment only."""
    text = (
        "grid: {customers: 300}\ntime: {start: 2026-07-01T16:00:00Z, days: 0.125}\n" + SYSTEMS
        + 'timeline:\n  - {at: "16:00", kind: demand_response, duration: 30min, shed_kw: 0.3}\n'
    )  # fmt: skip
    result = run(text, tmp_path / "run")
    event = the_event(result)
    assert event["notified_at"] == "2026-07-01T16:00:00+00:00"
    assert event["shed_kw"][0] > 0
    assert 0 < event["meters_commanded"] < result.metrics["demand_response"]["enrolled"]
    assert event["planned_kw"] >= 0.3


def test_an_enrolment_larger_than_a_message_goes_in_pages(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """As on a NATS server with a small max_payload: the CIS pages its enrolment, the LMS assembles it whole."""
    monkeypatch.setattr(MemoryTransport, "max_payload_bytes", 4_000)  # 10 rows a page
    result = run("grid: {customers: 300}\ntime: {days: 0.25}\n" + SYSTEMS + "timeline: []\n", tmp_path / "run")
    dr = result.metrics["demand_response"]
    assert dr["enrolled"] > 20
    assert dr["enrolment_messages"] == -(-dr["enrolled"] // 10)
    assert dr["lms"]["enrolment_pages"] == dr["enrolment_messages"]
    assert dr["lms"]["enrolled"] == dr["enrolled"]  # replaced once, when the last page was in


# --------------------------------------------------------------------------- a whole day with OpenADR and billing
DAY = (
    "name: dr-day\ngrid: {customers: 600}\ntime: {start: 2026-07-01T00:00:00Z, days: 1}\n"
    "systems: [ami_headend, mdms, cis, billing, lms]\n"
    "programs: {demand_response_share: 0.5, reliability_share: 0.15}\n"
    "timeline:\n"
    '  - {at: "15:00", kind: demand_response, program: cpp, duration: 1h}\n'
    '  - {at: "17:00", kind: demand_response, program: dlc, duration: 1h}\n'
    '  - {at: "19:00", kind: demand_response, program: reliability, duration: 1h}\n'
)


@pytest.fixture(scope="module")
def day(tmp_path_factory: pytest.TempPathFactory) -> tuple[Runner, RunResult]:
    runner = Runner(load_scenario(DAY), RunOptions(out=tmp_path_factory.mktemp("dr-day") / "run"))
    return runner, asyncio.run(runner.run())


def events_of(result: RunResult) -> dict[str, dict[str, Any]]:
    return {e["program"]: e for e in result.metrics["demand_response"]["events"]}


def lms_of(runner: Runner) -> Lms:
    (plugin,) = [p for p in runner.plugins if isinstance(p, DemandResponsePlugin)]
    assert plugin.lms is not None
    return plugin.lms


def test_openadr_events_reach_exactly_the_targeted_vens_over_tls(day: tuple[Runner, RunResult]) -> None:
    _, result = day
    dr = result.metrics["demand_response"]
    assert dr["programs"]["cpp"] > 0
    assert dr["programs"]["reliability"] > 0
    adr = dr["openadr"]
    assert adr["vtn"].startswith("https://127.0.0.1:")
    assert adr["vens_enrolled"] == dr["programs"]["cpp"] + dr["programs"]["reliability"]
    assert adr["refused"] == {}
    for program in ("cpp", "reliability"):
        event = events_of(result)[program]
        (event_id,) = event["lms_events"]
        vens = event["openadr"][event_id]
        assert vens["vens_started"] == dr["programs"][program]  # the program's VENs come online for the event
        assert vens["vens_registered"] == vens["vens_started"]
        assert vens["vens_targeted"] == event["lms_events"][event_id] > 0  # the customers the LMS chose
        assert vens["vens_received"] == vens["vens_targeted"]
        assert vens["vens_opted_in"] + vens["vens_opted_out"] == vens["vens_targeted"]
        assert vens["vens_opted_in"] > vens["vens_opted_out"]  # opt-out rates of about 10 %
        assert vens["vens_unanswered"] == 0
        assert vens["vtn_refused"] == 0
        assert 0 < vens["received_p95_s"] < 5  # the VENs poll every second
        assert vens["received_p50_s"] <= vens["replied_p50_s"]
        assert event["meters_commanded"] == 0  # nothing through the head-end
    assert events_of(result)["dlc"]["openadr"] is None


def test_the_openadr_traffic_is_measured_as_dgm18_beside_the_fabric_s(day: tuple[Runner, RunResult]) -> None:
    _, result = day
    rows = {r["interface"]: r for r in result.metrics["interfaces"]}
    dgm18 = rows["DGM-18"]
    targeted = sum(vens["vens_targeted"] for e in events_of(result).values() for vens in (e["openadr"] or {}).values())
    assert dgm18["sent"] == dgm18["delivered"] == targeted > 0
    assert (dgm18["from"], dgm18["to"]) == ("lms", "customer_ems")
    assert "OpenADR" in dgm18["carried_by"]
    assert 0 < dgm18["latency_p50_s"] <= dgm18["latency_p99_s"] < 5
    assert "DGM-18" not in {r["interface"] for r in result.metrics["unimplemented_interfaces"]}
    assert "AMI-10" in rows  # the fabric's own rows are still there
    assert "OpenADR 2.0b over HTTPS" in result.report.read_text()


def test_each_settlement_says_what_the_method_settles_without_an_event(day: tuple[Runner, RunResult]) -> None:
    _, result = day
    for event in events_of(result).values():
        settled = event["settlement"]
        assert settled["method"] == "control-group"  # a one-day run has no history for 10-in-10
        assert settled["placebo_sigma_wh"] > 0  # control meters settled as if they had taken part
        assert abs(settled["placebo_mean_wh"]) < 3 * settled["placebo_sigma_wh"]
    assert "without an event" in result.report.read_text()


def test_the_opted_in_sites_act_on_the_signal_they_received(day: tuple[Runner, RunResult]) -> None:
    _, result = day
    for program in ("cpp", "reliability"):
        event = events_of(result)[program]
        at = [dt.datetime.fromisoformat(t) for t in event["at"]]
        start = dt.datetime.fromisoformat(event["start"])
        baseline, actual = np.array(event["baseline_kw"]), np.array(event["actual_kw"])
        before = np.array([t < start for t in at])
        assert actual[before] == pytest.approx(baseline[before])  # nothing changes before the window
        assert all(s > 0 for s in event["shed_kw"])  # the price / the level makes them shed in every interval
        assert event["rebound_kwh"] > 0


def test_the_dms_asks_over_dgm16_and_receives_the_compliance(day: tuple[Runner, RunResult]) -> None:
    _, result = day
    delivered = {row["interface"]: row["delivered"] for row in result.metrics["interfaces"]}
    assert delivered["DGM-16"] == 6  # three requirements and three answers
    assert delivered["AMI-7"] == 3  # one compliance report per settled event
    for program, event in events_of(result).items():
        settled = event["settlement"]
        assert isinstance(settled, dict), settled
        assert settled["method"] == "control-group"  # one day: no history for 10-in-10
        assert settled["complete"] == settled["meters"] > 0
        (compliance,) = event["compliance_received_by_dms"]
        assert compliance["participants"] == settled["meters"]
        assert compliance["delivered_kw"] == pytest.approx(settled["reduction_w"] / 1000, abs=0.051)
        opted_out = 0 if program == "dlc" else next(iter(event["openadr"].values()))["vens_opted_out"]
        assert compliance["opted_out"] == opted_out


def test_the_bills_carry_the_settled_credits(day: tuple[Runner, RunResult]) -> None:
    runner, result = day
    lms = lms_of(runner)
    (billing,) = runner.billing
    lines = billing.lines.to_pylist()
    credits = [line for line in lines if line["kind"] == "dr_credit"]
    assert credits
    assert all(line["label"].startswith("Demand response credit") for line in credits)
    for program, event in events_of(result).items():
        (event_id,) = event["lms_events"]
        mine = [line for line in credits if line["bucket"].endswith(event_id) or event_id in line["label"]]
        enrolled = set(lms.enrolment.account_id[lms.events[event_id].rows].tolist())
        assert {line["account_id"] for line in mine} <= enrolled
        total = -sum(line["amount_cents"] for line in mine) / 100
        if program == "cpp":  # CPP pays through the tariff's critical-peak rate, not credits
            assert mine == []
            continue
        assert len(mine) == event["settlement"]["accounts_credited"] > 0
        assert total == pytest.approx(event["settlement"]["credits"], abs=0.01 * len(mine))
        if program == "reliability":  # customers who opted out are not paid
            assert len(mine) <= next(iter(event["openadr"].values()))["vens_opted_in"]


def test_cpp_customers_pay_the_critical_peak_rate_during_their_event(day: tuple[Runner, RunResult]) -> None:
    runner, result = day
    lms = lms_of(runner)
    (billing,) = runner.billing
    (event_id,) = events_of(result)["cpp"]["lms_events"]
    targeted = set(lms.enrolment.account_id[lms.events[event_id].rows].tolist())
    critical = [line for line in billing.lines.to_pylist() if line["bucket"] == "critical_peak"]
    assert {line["account_id"] for line in critical} == targeted
    start = dt.datetime(2026, 7, 1, 15, tzinfo=dt.UTC)
    for line in critical:  # the event's hour at the tariff's critical rate (a PV owner may import nothing then)
        assert (line["interval_from"], line["interval_to"]) == (start, start + dt.timedelta(hours=1))
        assert line["rate"] == pytest.approx(1.2)
        assert line["quantity"] >= 0
    assert sum(line["quantity"] for line in critical) > 0
    assert billing.bills.num_rows == 600  # every account billed once


def test_the_vtn_is_stopped_after_the_run(day: tuple[Runner, RunResult]) -> None:
    """openleadr allows one VTN per process: the run's must be gone, so another can start."""
    _, result = day
    ca = CertificateAuthority.load(result.out / "pki")

    async def start_and_stop() -> str:
        vtn = Vtn("LMS-T", tls=None, check=CertificateCheck.of(ca), insecure=True)
        url = await vtn.start()
        await vtn.stop()
        return url

    assert asyncio.run(start_and_stop()).startswith("http://127.0.0.1:")


def test_ctrl_c_while_the_vens_answer_stops_the_vtn_and_keeps_the_run(tmp_path: Path) -> None:
    text = (
        "grid: {customers: 300}\ntime: {start: 2026-07-01T14:00:00Z, days: 0.125}\n"
        "systems: [ami_headend, mdms, cis, lms]\nprograms: {demand_response_share: 0.5, reliability_share: 0.5}\n"
        'timeline:\n  - {at: "15:00", kind: demand_response, program: reliability, duration: 1h}\n'
    )

    async def interrupted() -> RunResult:
        runner = Runner(load_scenario(text), RunOptions(out=tmp_path / "run"))
        task = asyncio.create_task(runner.run())

        def registering() -> bool:
            legs = [p.openadr for p in runner.plugins if isinstance(p, DemandResponsePlugin)]
            return any(leg is not None and leg.vtn is not None and leg.vtn.stats.registrations > 0 for leg in legs)

        while not registering():
            await asyncio.sleep(0.02)
        task.cancel()  # what Ctrl-C does to the run
        return await task

    result = asyncio.run(interrupted())
    assert result.interrupted
    assert result.metrics["status"] == "interrupted"
    assert (tmp_path / "run" / "metrics.json").exists()
    ca = CertificateAuthority.load(tmp_path / "run" / "pki")

    async def another_vtn() -> None:  # openleadr allows one per process: the run's is gone
        vtn = Vtn("LMS-T", tls=None, check=CertificateCheck.of(ca), insecure=True)
        await vtn.start()
        await vtn.stop()

    asyncio.run(another_vtn())


def test_beyond_the_dlc_customers_the_lms_reaches_reliability_vens_beside_the_oms(tmp_path: Path) -> None:
    """Asked for more than direct load control offers, the LMS adds reliability customers: their VENs come
    online for the event. The OMS's DMS (dms-1) and the load-management DMS (dms-2) share the fabric."""
    text = (
        "grid: {customers: 600}\ntime: {start: 2026-07-01T12:00:00Z, days: 0.375}\n"
        "systems: [ami_headend, mdms, cis, oms, lms]\nprograms: {demand_response_share: 0.5, reliability_share: 0.2}\n"
        'timeline:\n  - {at: "17:00", kind: demand_response, program: reliability, duration: 1h}\n'
        '  - {at: "18:00", kind: demand_response, program: dlc, duration: 1h, shed_kw: 1}\n'
    )
    result = run(text, tmp_path / "run")
    assert result.metrics["rejections"] == {}
    event = events_of(result)["dlc"]
    assert set(event["lms_events"]) == {"dr-2-dlc", "dr-2-reliability"}
    assert event["meters_confirmed"] == event["lms_events"]["dr-2-dlc"]
    vens = event["openadr"]["dr-2-reliability"]
    assert vens["vens_targeted"] == vens["vens_received"] == event["lms_events"]["dr-2-reliability"]
    assert vens["vens_started"] == vens["vens_targeted"]  # only those the LMS chose, once the event existed
    assert vens["vens_unanswered"] == 0
    assert event["planned_kw"] >= 1.0
