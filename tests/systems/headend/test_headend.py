"""The head-end on a real in-process fabric: reads and events to the MDMS, on-demand reads, and
remote connect/disconnect under its safeguards — refused with a reason, and audited."""

import datetime as dt
from typing import Any

import numpy as np
import pytest

from gridloom.catalog.messages import DeclaredType
from gridloom.errors import HeadEndConfigError, NotAuthorised
from gridloom.fabric import Envelope, Message, sign_frame
from gridloom.fabric.envelope import encode_payload, to_micros
from gridloom.systems.headend import EventSubscription, HeadEnd, HeadEndConfig, Outcome
from tests.systems.headend.conftest import START, Ami, measure

pytestmark = pytest.mark.anyio


def of_type(ami: Ami, instance: str, message_type: str) -> list[Message]:
    return [m for m in ami.inbox(instance).messages if m.message_type == message_type]


async def ask(
    ami: Ami, sender: str, interface: str, message_type: str, meters: list[str], request_id: str = "r-1"
) -> dict[str, Any]:
    """Send a request or command to the head-end; return the latest answer the sender got."""
    [envelope] = await ami.endpoint(sender).send(
        interface,
        message_type,
        {"request_id": request_id, "meter_ids": meters, "reason": "test"},
        to="headend-1",
    )
    await ami.settle()
    answers = of_type(ami, sender, f"{message_type}.response")
    assert answers, f"{sender} got no {message_type}.response"
    assert answers[-1].envelope.correlation_id == envelope.message_id
    assert answers[-1].interface == interface
    return answers[-1].body


def connected(ami: Ami, meters: list[str]) -> list[bool]:
    return ami.fleet.service_connected[ami.fleet.index_of(meters)].tolist()


def audited(ami: Ami, message_type: str) -> list[dict]:
    return [e for e in ami.audit_entries() if e.get("message_type") == message_type]


def decisions_in_audit(ami: Ami) -> list[dict]:
    return [e for e in ami.audit_entries() if e.get("record") == "headend_decision"]


# --- meter data to the MDMS and to subscribers ---------------------------------------------------------------


async def test_reads_flow_from_concentrators_through_the_headend_to_the_mdms(ami: Ami) -> None:
    headend = await ami.start_headend()
    reads = measure(ami.fleet, at=START)
    await ami.network.report(reads, np.random.default_rng(1), at=START)
    await ami.settle()

    got = of_type(ami, "mdms-1", "interval_reads")
    assert len(got) == 3  # one batch per concentrator, each under one signature
    assert {m.interface for m in got} == {"AMI-10"}
    assert {m.envelope.extensions["concentrator"] for m in got} == {"dcu-00000", "dcu-00001", "dcu-00002"}
    assert all(m.envelope.sealed is not None for m in got)  # customer usage: encrypted on AMI-10
    assert all(m.sender.instance == "headend-1" for m in got)
    received = {
        (meter, start): (wh, quality)
        for m in got
        for meter, start, wh, quality in zip(
            m.body["meter_id"],
            m.body["interval_start_us"],
            m.body["energy_delivered_wh"],
            m.body["quality"],
            strict=True,
        )
    }
    sent = {
        (meter, start): (wh, quality)
        for meter, start, wh, quality in zip(
            ami.fleet.meter_id[reads.meter].tolist(),
            reads.interval_start_us.tolist(),
            reads.energy_delivered_wh.tolist(),
            reads.quality.tolist(),
            strict=True,
        )
    }
    assert received == sent
    assert len(received) == 12
    assert sum(m.envelope.records for m in got) == 12
    assert headend.stats.reads_forwarded == 12
    assert ami.fabric.stats["DGM-20"].records == 12
    assert ami.fabric.stats["AMI-10"].records == 12


async def test_reads_go_on_dgm_29_when_configured(ami: Ami) -> None:
    await ami.start_headend(HeadEndConfig(reads_interface="DGM-29", mdms="mdms-1", sweep_interval_s=None))
    await ami.network.report(measure(ami.fleet, at=START), np.random.default_rng(1), at=START)
    await ami.settle()
    assert {m.interface for m in of_type(ami, "mdms-1", "interval_reads")} == {"DGM-29"}


async def test_a_row_batch_is_forwarded_as_columns(ami: Ami) -> None:
    await ami.start_headend()
    rows = [
        {
            "meter_id": f"m00{i}",
            "interval_start_us": to_micros(START),
            "interval_s": 900,
            "energy_delivered_wh": 100.0 + i,
            "energy_received_wh": 0.0,
            "reactive_varh": 1.0,
            "voltage_v": 231.0,
            "quality": 0,
        }
        for i in range(2)
    ]
    await ami.endpoint("dcu-00000").send_batch("DGM-20", "interval_reads", rows, to="headend-1")
    await ami.settle()
    [forwarded] = of_type(ami, "mdms-1", "interval_reads")
    assert forwarded.body["meter_id"] == ["m000", "m001"]
    assert forwarded.body["energy_delivered_wh"] == [100.0, 101.0]
    assert forwarded.envelope.records == 2


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ({"meter_id": ["m000", "m001"], "at_us": [1], "kind": ["TAMPER", "TAMPER"]}, "differ in length"),
        ({"meter_id": ["m000"], "kind": ["TAMPER"]}, "at_us"),
        ({"meter_id": ["m000"], "at_us": ["noon"], "kind": ["TAMPER"]}, "at_us"),
    ],
)
async def test_a_malformed_batch_is_dropped_and_counted(ami: Ami, body: dict, problem: str, caplog) -> None:
    headend = await ami.start_headend()
    await ami.endpoint("dcu-00000").send("DGM-20", "meter_events", body, to="headend-1", records=2)
    await ami.settle()
    assert of_type(ami, "mdms-1", "meter_events") == []
    assert headend.stats.malformed == 1
    assert problem in caplog.text


async def test_events_go_to_the_mdms_and_the_subscribers_they_concern(ami: Ami) -> None:
    oms = EventSubscription(interface="AMI-11", group="oms", kinds=frozenset({"LAST_GASP", "POWER_RESTORE"}))
    headend = await ami.start_headend(HeadEndConfig(event_subscriptions=(oms,), sweep_interval_s=None))
    measure(ami.fleet, at=START)
    ami.fleet.remote_disconnect([7], START)  # a switch event, which the OMS does not want
    energized = np.ones(12, bool)
    energized[[0, 1]] = False  # m000 and m001 lose supply: last gasps
    reads = measure(ami.fleet, at=START + dt.timedelta(minutes=15), energized=energized)
    await ami.network.report(reads, np.random.default_rng(2), at=START + dt.timedelta(minutes=15))
    await ami.settle()

    to_mdms = of_type(ami, "mdms-1", "meter_events")
    mdms_events = sorted(
        (mid, kind) for m in to_mdms for mid, kind in zip(m.body["meter_id"], m.body["kind"], strict=True)
    )
    assert mdms_events == [("m000", "LAST_GASP"), ("m001", "LAST_GASP"), ("m007", "SERVICE_DISCONNECTED")]
    to_oms = of_type(ami, "oms-1", "meter_events")
    assert {m.interface for m in to_oms} == {"AMI-11"}
    oms_events = sorted(
        (mid, kind) for m in to_oms for mid, kind in zip(m.body["meter_id"], m.body["kind"], strict=True)
    )
    assert oms_events == [("m000", "LAST_GASP"), ("m001", "LAST_GASP")]
    assert headend.stats.events_forwarded == 3
    assert headend.stats.events_to_subscribers == 2


async def test_register_reads_are_forwarded(ami: Ami) -> None:
    headend = await ami.start_headend()
    measure(ami.fleet, at=START)
    assert await ami.network.send_register_reads(START) == 12
    await ami.settle()
    got = of_type(ami, "mdms-1", "register_reads")
    by_meter = {mid: wh for m in got for mid, wh in zip(m.body["meter_id"], m.body["energy_delivered_wh"], strict=True)}
    truth = ami.fleet.register_reads(START)
    assert by_meter == dict(
        zip(ami.fleet.meter_id[truth.meter].tolist(), truth.energy_delivered_wh.tolist(), strict=True)
    )
    assert headend.stats.register_reads_forwarded == 12


async def test_a_subscription_the_catalog_does_not_allow_is_refused_at_start(ami: Ami) -> None:
    wrong = EventSubscription(interface="AMI-11", group="cis")
    with pytest.raises(
        HeadEndConfigError, match=r"event_subscriptions #1: .*may not send 'meter_events' to role 'cis'"
    ):
        await ami.start_headend(HeadEndConfig(event_subscriptions=(wrong,), sweep_interval_s=None))
    with pytest.raises(HeadEndConfigError, match="role 'ami_headend'"):
        HeadEnd(ami.fabric, ami.identities["cis-1"])


# --- on-demand reads -----------------------------------------------------------------------------------------


async def test_on_demand_read_round_trip_returns_the_meters_registers(ami: Ami) -> None:
    await ami.start_headend()
    energized = np.ones(12, bool)
    energized[9] = False
    measure(ami.fleet, at=START, energized=energized)
    answer = await ask(ami, "cis-1", "DGM-19", "on_demand_read", ["m001", "m005", "m009", "m999"])

    assert answer["status"] == "partial"
    reads = answer["reads"]
    assert reads["meter_id"] == ["m001", "m005"]
    truth = ami.fleet.register_reads(START, meters=[1, 5])
    assert reads["energy_delivered_wh"] == truth.energy_delivered_wh.tolist()
    failures = {f["meter_id"]: f["reason"] for f in answer["failures"]}
    assert failures == {
        "m009": "no answer from the meter (no supply)",
        "m999": "unknown to this head-end (no concentrator has reported it)",
    }
    assert "2 of 4 meters" in answer["reason"]


async def test_on_demand_read_fails_clearly_when_the_concentrator_does_not_answer(ami: Ami) -> None:
    headend = await ami.start_headend()
    measure(ami.fleet, at=START)
    ami.network.offline.add("dcu-00001")
    await ami.endpoint("cis-1").send(
        "DGM-19", "on_demand_read", {"request_id": "r-7", "meter_ids": ["m005"]}, to="headend-1"
    )
    await ami.settle()
    assert of_type(ami, "cis-1", "on_demand_read.response") == []
    ami.clock.advance(29)
    assert await headend.expire_overdue() == 0
    ami.clock.advance(2)
    assert await headend.expire_overdue() == 1
    await ami.settle()
    [answer] = of_type(ami, "cis-1", "on_demand_read.response")
    assert answer.body["request_id"] == "r-7"
    assert answer.body["status"] == "failed"
    assert answer.body["failures"] == [
        {"meter_id": "m005", "reason": "no answer from concentrator dcu-00001 within 30 s"}
    ]
    assert headend.core.in_flight == {}


async def test_the_sweeper_times_out_requests_on_its_own(ami: Ami) -> None:
    import asyncio

    await ami.start_headend(HeadEndConfig(on_demand_timeout_s=5, sweep_interval_s=0.01))
    ami.network.offline.add("dcu-00000")
    await ami.endpoint("cis-1").send(
        "DGM-19", "on_demand_read", {"request_id": "r", "meter_ids": ["m000"]}, to="headend-1"
    )
    await ami.settle()
    ami.clock.advance(6)
    await asyncio.sleep(0.05)
    await ami.settle()
    [answer] = of_type(ami, "cis-1", "on_demand_read.response")
    assert answer.body["status"] == "failed"


async def test_an_on_demand_read_without_meters_is_refused(ami: Ami) -> None:
    await ami.start_headend()
    answer = await ask(ami, "cis-1", "DGM-19", "on_demand_read", [])
    assert (answer["status"], answer["reason"]) == ("refused", "the request names no meters")


# --- remote connect / disconnect -----------------------------------------------------------------------------


async def test_an_authorised_disconnect_is_executed_audited_and_logged(ami: Ami) -> None:
    headend = await ami.start_headend()
    measure(ami.fleet, at=START)
    answer = await ask(ami, "cis-1", "DGM-19", "remote_disconnect", ["m000", "m004"], "move-out-17")
    assert answer["status"] == "completed"
    assert sorted(answer["done"]) == ["m000", "m004"]
    assert connected(ami, ["m000", "m004", "m001"]) == [False, False, True]

    # The fabric audited the command where it arrived: the head-end, then each concentrator.
    receivers = sorted((e["receiver"], e["interface"], e["outcome"]) for e in audited(ami, "remote_disconnect"))
    assert receivers == [
        ("dcu-00000", "AMI-28", "accepted"),
        ("dcu-00001", "AMI-28", "accepted"),
        ("headend-1", "DGM-19", "accepted"),
    ]
    # The head-end recorded what it decided, in memory and in the same hash-chained log.
    outcomes = [(d.outcome, d.requester, d.meters) for d in headend.decisions.for_request("move-out-17")]
    assert outcomes == [(Outcome.EXECUTING, "cis-1", 2), (Outcome.COMPLETED, "cis-1", 2)]
    assert [d["outcome"] for d in decisions_in_audit(ami)] == ["executing", "completed"]

    again = await ask(ami, "cis-1", "DGM-19", "remote_connect", ["m000", "m004"], "move-in-18")
    assert again["status"] == "completed"
    assert connected(ami, ["m000", "m004"]) == [True, True]


async def test_a_meter_without_supply_does_not_take_the_command(ami: Ami) -> None:
    await ami.start_headend()
    energized = np.ones(12, bool)
    energized[2] = False
    measure(ami.fleet, at=START, energized=energized)
    answer = await ask(ami, "cis-1", "DGM-19", "remote_disconnect", ["m001", "m002"])
    assert answer["status"] == "partial"
    assert answer["done"] == ["m001"]
    assert answer["failures"] == [{"meter_id": "m002", "reason": "the meter did not take the command (no supply)"}]


async def test_a_role_the_catalog_does_not_allow_is_refused_by_the_fabric_and_audited(ami: Ami) -> None:
    headend = await ami.start_headend()
    # The OMS is no end of DGM-19: its own endpoint refuses to send ...
    with pytest.raises(NotAuthorised, match="role 'oms' may not send 'remote_disconnect'"):
        await ami.endpoint("oms-1").send(
            "DGM-19", "remote_disconnect", {"request_id": "x", "meter_ids": ["m000"]}, to="headend-1"
        )
    # ... and a hand-made frame with its valid signature is rejected by the head-end's fabric endpoint.
    oms = ami.identities["oms-1"]
    envelope = Envelope(
        interface="DGM-19",
        message_type="remote_disconnect",
        source="oms-1",
        source_role="oms",
        destination="to:headend-1",
        created_at_us=to_micros(ami.clock()),
        sequence=1,
        message_id="forged-1",
        payload=encode_payload({"request_id": "x", "meter_ids": ["m000"]}),
    )
    await headend.endpoint.receive("gl.DGM-19.to.headend-1", sign_frame(oms, envelope))
    assert connected(ami, ["m000"]) == [True]
    assert headend.stats.switch_commands == 0
    [entry] = audited(ami, "remote_disconnect")
    assert (entry["source"], entry["receiver"]) == ("oms-1", "headend-1")
    assert entry["outcome"].startswith("rejected: NotAuthorised")
    assert dict(ami.fabric.stats["DGM-19"].rejections) == {"NotAuthorised": 1}


async def test_a_role_the_headend_does_not_allow_is_refused_with_the_reason_and_audited(ami: Ami) -> None:
    headend = await ami.start_headend(HeadEndConfig(command_roles=frozenset({"cis"}), sweep_interval_s=None))
    measure(ami.fleet, at=START)
    # The catalog lets the MDMS command on DGM-29; this head-end's policy does not.
    answer = await ask(ami, "mdms-1", "DGM-29", "remote_disconnect", ["m003"], "bulk-1")
    assert answer["status"] == "refused"
    assert answer["reason"] == "role 'mdms' may not command remote_disconnect at this head-end (allowed roles: cis)"
    assert connected(ami, ["m003"]) == [True]
    assert [e["outcome"] for e in audited(ami, "remote_disconnect")] == ["accepted"]  # the fabric let it through
    [decision] = headend.decisions.for_request("bulk-1")
    assert (decision.outcome, decision.requester_role, decision.reason) == (Outcome.REFUSED, "mdms", answer["reason"])
    assert decisions_in_audit(ami)[0]["outcome"] == "refused"


async def test_the_hourly_cap_holds_against_an_authorised_sender(ami: Ami) -> None:
    headend = await ami.start_headend(HeadEndConfig(disconnect_cap_per_hour=5, sweep_interval_s=None))
    measure(ami.fleet, at=START)
    first = await ask(ami, "cis-1", "DGM-19", "remote_disconnect", ["m000", "m001", "m002", "m003"], "a")
    assert first["status"] == "completed"
    ami.clock.advance(1800)
    over = await ask(ami, "cis-1", "DGM-19", "remote_disconnect", ["m004", "m005"], "b")
    assert over["status"] == "refused"
    assert over["reason"] == "2 more meters would exceed the cap of 5 per hour (4 already commanded in the last hour)"
    assert connected(ami, ["m004", "m005"]) == [True, True]
    # Another authorised identity meets the same cap; connects are not capped by default.
    assert (await ask(ami, "cis-2", "DGM-19", "remote_disconnect", ["m004", "m005"], "c"))["status"] == "refused"
    assert (await ask(ami, "cis-2", "DGM-19", "remote_connect", ["m000"], "d"))["status"] == "completed"
    assert [d.outcome for d in headend.decisions.entries if d.request_id in "bc"] == [Outcome.REFUSED] * 2
    # An hour after the first, the cap has room again.
    ami.clock.advance(1801)
    assert (await ask(ami, "cis-1", "DGM-19", "remote_disconnect", ["m004", "m005"], "e"))["status"] == "completed"


async def test_a_large_request_waits_for_a_second_distinct_approver(ami: Ami) -> None:
    headend = await ami.start_headend(HeadEndConfig(approval_threshold_meters=3, sweep_interval_s=None))
    measure(ami.fleet, at=START)
    meters = ["m000", "m001", "m004", "m005", "m008"]
    held = await ask(ami, "cis-1", "DGM-19", "remote_disconnect", meters, "bulk-9")
    assert held["status"] == "awaiting_approval"
    assert "5 meters is more than 3: waiting for a second approver" in held["reason"]
    assert connected(ami, meters) == [True] * 5

    same = await ask(ami, "cis-1", "DGM-19", "remote_disconnect", meters, "bulk-9")
    assert same["status"] == "refused"
    assert "the second approver must be another identity than 'cis-1'" in same["reason"]
    other = await ask(ami, "cis-2", "DGM-19", "remote_disconnect", meters[:4], "bulk-9")
    assert other["status"] == "refused"
    assert "does not match request 'bulk-9'" in other["reason"]
    assert connected(ami, meters) == [True] * 5

    approved = await ask(ami, "cis-2", "DGM-19", "remote_disconnect", list(reversed(meters)), "bulk-9")
    assert approved["status"] == "completed"
    assert connected(ami, meters) == [False] * 5
    # The first requester hears the outcome too.
    assert of_type(ami, "cis-1", "remote_disconnect.response")[-1].body["status"] == "completed"
    outcomes = [(d.outcome, d.requester, d.approver) for d in headend.decisions.for_request("bulk-9")]
    assert outcomes == [
        (Outcome.AWAITING_APPROVAL, "cis-1", None),
        (Outcome.REFUSED, "cis-1", None),
        (Outcome.REFUSED, "cis-2", None),
        (Outcome.EXECUTING, "cis-1", "cis-2"),
        (Outcome.COMPLETED, "cis-1", "cis-2"),
    ]
    # Every one of the four commands is in the fabric's audit log.
    assert [e["source"] for e in audited(ami, "remote_disconnect") if e["receiver"] == "headend-1"] == [
        "cis-1",
        "cis-1",
        "cis-2",
        "cis-2",
    ]
    # The request id is spent.
    reused = await ask(ami, "cis-1", "DGM-19", "remote_disconnect", ["m002"], "bulk-9")
    assert "was already executed" in reused["reason"]


async def test_an_approval_after_the_window_starts_over(ami: Ami) -> None:
    await ami.start_headend(HeadEndConfig(approval_threshold_meters=1, approval_window_s=60, sweep_interval_s=None))
    measure(ami.fleet, at=START)
    assert (await ask(ami, "cis-1", "DGM-19", "remote_disconnect", ["m000", "m001"], "w"))[
        "status"
    ] == "awaiting_approval"
    ami.clock.advance(61)
    late = await ask(ami, "cis-2", "DGM-19", "remote_disconnect", ["m000", "m001"], "w")
    assert late["status"] == "awaiting_approval"  # cis-2's command is now the first of a new pair
    assert connected(ami, ["m000", "m001"]) == [True, True]


async def test_the_cap_survives_a_restart_of_the_headend(ami: Ami) -> None:
    config = HeadEndConfig(disconnect_cap_per_hour=5, sweep_interval_s=None)
    first = await ami.start_headend(config)
    measure(ami.fleet, at=START)
    assert (await ask(ami, "cis-1", "DGM-19", "remote_disconnect", ["m000", "m001", "m002", "m003"], "a"))[
        "status"
    ] == "completed"
    await first.close()
    ami.clock.advance(60)
    second = await ami.start_headend(config)
    assert second.core.cap_used(DeclaredType.REMOTE_DISCONNECT, ami.clock()) == 4
    refused = await ask(ami, "cis-1", "DGM-19", "remote_disconnect", ["m004", "m005"], "b")
    assert "4 already commanded in the last hour" in refused["reason"]
    reused = await ask(ami, "cis-1", "DGM-19", "remote_disconnect", ["m004"], "a")
    assert "was already executed" in reused["reason"]


async def test_a_malformed_command_is_refused_and_logged(ami: Ami) -> None:
    headend = await ami.start_headend()
    await ami.endpoint("cis-1").send(
        "DGM-19", "remote_disconnect", {"request_id": "r-9", "meter_ids": "m000"}, to="headend-1"
    )
    await ami.settle()
    [answer] = of_type(ami, "cis-1", "remote_disconnect.response")
    assert answer.body["status"] == "refused"
    assert answer.body["reason"].startswith("malformed command:")
    assert "meter_ids" in answer.body["reason"]
    assert answer.body["request_id"] == "r-9"
    assert headend.decisions.entries[-1].outcome is Outcome.REFUSED


async def test_a_command_for_unknown_meters_is_refused_whole(ami: Ami) -> None:
    await ami.start_headend()
    measure(ami.fleet, at=START)
    answer = await ask(ami, "cis-1", "DGM-19", "remote_disconnect", ["m000", "x1", "x2"])
    assert answer["status"] == "refused"
    assert answer["reason"] == "2 meters unknown to this head-end: x1, x2"
    assert connected(ami, ["m000"]) == [True]


async def test_routes_are_learnt_from_the_batches_concentrators_send(ami: Ami) -> None:
    headend = await ami.start_headend(register=False)
    measure(ami.fleet, at=START)
    assert (await ask(ami, "cis-1", "DGM-19", "on_demand_read", ["m006"]))["status"] == "failed"
    reads = measure(ami.fleet, at=START + dt.timedelta(minutes=15))
    await ami.network.report(reads, np.random.default_rng(3), at=START + dt.timedelta(minutes=15))
    await ami.settle()
    assert headend.core.routes.via("m006") == "dcu-00001"
    assert (await ask(ami, "cis-1", "DGM-19", "on_demand_read", ["m006"], "r-2"))["status"] == "completed"


async def test_a_concentrator_answers_only_for_its_own_meters(ami: Ami) -> None:
    headend = await ami.start_headend()
    measure(ami.fleet, at=START)
    headend.register_meters({"dcu-00000": ["m005"]})  # a wrong provisioned route wins over the learnt one
    answer = await ask(ami, "cis-1", "DGM-19", "on_demand_read", ["m001", "m005"])
    assert answer["status"] == "partial"
    assert answer["reads"]["meter_id"] == ["m001"]
    assert answer["failures"] == [{"meter_id": "m005", "reason": "not served by dcu-00000"}]
