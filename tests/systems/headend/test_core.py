"""The head-end's rules without a fabric: safeguards, routes, requests in flight, the wire bodies."""

import datetime as dt

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gridloom.catalog import Catalog
from gridloom.catalog.messages import DeclaredType
from gridloom.errors import HeadEndConfigError, MalformedBody
from gridloom.systems.headend import (
    EventColumns,
    EventSubscription,
    Failure,
    HeadEndConfig,
    HeadEndCore,
    MeterRequest,
    ReadColumns,
    ReadResponse,
    RegisterColumns,
    Reply,
    Status,
    SwitchRequest,
    SwitchResponse,
    Verdict,
)
from gridloom.systems.headend.decisions import Decision, Outcome
from gridloom.systems.headend.wire import decode_batch

T0 = dt.datetime(2026, 7, 1, tzinfo=dt.UTC)
DISCONNECT = DeclaredType.REMOTE_DISCONNECT
CONNECT = DeclaredType.REMOTE_CONNECT


def core_with(n_meters: int = 100, **config: object) -> HeadEndCore:
    core = HeadEndCore(HeadEndConfig(sweep_interval_s=None, **config))  # type: ignore[arg-type]
    core.routes.register(
        {"dcu-a": [f"m{i}" for i in range(0, n_meters, 2)], "dcu-b": [f"m{i}" for i in range(1, n_meters, 2)]}
    )
    return core


def command(
    meters: range | list[str], request_id: str = "r", requester: str = "cis-1", role: str = "cis", action=DISCONNECT
) -> SwitchRequest:
    ids = tuple(f"m{i}" for i in meters) if isinstance(meters, range) else tuple(meters)
    return SwitchRequest(action, request_id, ids, requester, role)


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


# --- safeguards ------------------------------------------------------------------------------------------------


def test_an_allowed_command_is_planned_per_concentrator() -> None:
    decision = core_with().decide_switch(command(range(4)), T0)
    assert decision.verdict is Verdict.EXECUTE
    assert {k: list(v) for k, v in decision.plan.items()} == {"dcu-a": ["m0", "m2"], "dcu-b": ["m1", "m3"]}


@pytest.mark.parametrize(
    ("request_", "config", "reason"),
    [
        (command(range(2), role="oms"), {}, "role 'oms' may not command remote_disconnect at this head-end"),
        (command(range(2), requester="cis-9"), {"command_instances": {"cis-1"}}, "'cis-9' is not among"),
        (command(range(2), request_id=""), {}, "a request id is required"),
        (command([]), {}, "the command names no meters"),
        (command(range(11)), {"max_meters_per_request": 10}, "11 meters in one request; at most 10"),
        (command(["m1", "zz"]), {}, "1 meters unknown to this head-end: zz"),
        (command(range(6)), {"disconnect_cap_per_hour": 5}, "6 meters is more than the cap of 5 per hour"),
    ],
)
def test_refusals_name_the_reason(request_: SwitchRequest, config: dict, reason: str) -> None:
    decision = core_with(**config).decide_switch(request_, T0)
    assert decision.verdict is Verdict.REFUSE
    assert reason in decision.reason


def test_repeated_meter_ids_count_once() -> None:
    core = core_with(disconnect_cap_per_hour=2, approval_threshold_meters=1)
    decision = core.decide_switch(command(["m1", "m1"]), T0)
    assert decision.verdict is Verdict.EXECUTE
    assert decision.meters == ("m1",)
    assert core.cap_used(DISCONNECT, T0) == 1


def test_approval_needs_the_same_command_from_another_identity_in_time() -> None:
    core = core_with(approval_threshold_meters=3, approval_window_s=60)
    assert core.decide_switch(command(range(4)), T0).verdict is Verdict.AWAIT_APPROVAL
    assert core.awaiting_approval(T0) == ["r"]
    assert core.decide_switch(command(range(4)), at(1)).verdict is Verdict.REFUSE  # same identity
    assert core.decide_switch(command(range(4), requester="cis-2", action=CONNECT), at(2)).verdict is Verdict.REFUSE
    assert core.decide_switch(command(range(5), requester="cis-2"), at(3)).verdict is Verdict.REFUSE
    assert core.awaiting_approval(at(3)) == ["r"]  # refusals of an approval leave the request waiting
    approved = core.decide_switch(command(range(4), requester="mdms-1", role="mdms"), at(4))
    assert approved.verdict is Verdict.EXECUTE
    assert (approved.approver, approved.first.requester if approved.first else None) == ("mdms-1", "cis-1")
    assert core.awaiting_approval(at(4)) == []
    # Past the window, the waiting request is forgotten: a "second" command starts a new pair.
    assert core.decide_switch(command(range(4), request_id="s"), at(10)).verdict is Verdict.AWAIT_APPROVAL
    late = core.decide_switch(command(range(4), request_id="s", requester="cis-2"), at(71))
    assert late.verdict is Verdict.AWAIT_APPROVAL


def test_the_cap_is_checked_again_when_the_approval_arrives() -> None:
    core = core_with(approval_threshold_meters=3, disconnect_cap_per_hour=6)
    assert core.decide_switch(command(range(4), request_id="big"), T0).verdict is Verdict.AWAIT_APPROVAL
    assert core.decide_switch(command(range(10, 13), request_id="small"), at(1)).verdict is Verdict.EXECUTE
    late = core.decide_switch(command(range(4), request_id="big", requester="cis-2"), at(2))
    assert late.verdict is Verdict.REFUSE
    assert "3 already commanded in the last hour" in late.reason
    assert core.awaiting_approval(at(2)) == []


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(1, 12), st.floats(0, 2000), st.booleans()),
        min_size=1,
        max_size=40,
    ),
    st.integers(1, 20),
)
def test_no_sliding_hour_ever_holds_more_disconnects_than_the_cap(steps, cap: int) -> None:
    """Whatever the senders do, meters commanded to disconnect within any hour stay within the cap."""
    core = core_with(n_meters=500, disconnect_cap_per_hour=cap, approval_threshold_meters=6)
    now, executed, next_meter = T0, [], 0
    for n, (size, gap_s, second_identity) in enumerate(steps):
        now += dt.timedelta(seconds=gap_s)
        meters = range(next_meter, next_meter + size)
        next_meter += size
        request_id = f"r{n}"
        decision = core.decide_switch(command(meters, request_id), now)
        if decision.verdict is Verdict.AWAIT_APPROVAL and second_identity:
            decision = core.decide_switch(command(meters, request_id, requester="cis-2"), now)
        if decision.verdict is Verdict.EXECUTE:
            executed.append((now, len(decision.meters)))
    for start, _ in executed:
        in_hour = sum(count for t, count in executed if start <= t < start + dt.timedelta(hours=1))
        assert in_hour <= cap


def test_a_restart_restores_the_cap_and_the_spent_request_ids() -> None:
    decisions = [
        Decision(at(0), "h", "old", "remote_disconnect", Outcome.EXECUTING, "", 3, "cis-1", "cis", "DGM-19", "x"),
        Decision(at(-7200), "h", "older", "remote_disconnect", Outcome.EXECUTING, "", 4, "cis-1", "cis", "DGM-19", "y"),
        Decision(at(1), "h", "no", "remote_disconnect", Outcome.REFUSED, "", 9, "cis-1", "cis", "DGM-19", "z"),
    ]
    core = core_with(disconnect_cap_per_hour=5)
    assert core.restore(decisions, at(10)) == 2
    assert core.cap_used(DISCONNECT, at(10)) == 3
    assert "already executed" in core.decide_switch(command(range(1), "older"), at(10)).reason
    assert core.decide_switch(command(range(3), "new"), at(10)).verdict is Verdict.REFUSE
    assert Decision.from_entry(decisions[0].to_entry()) == decisions[0]


def test_config_is_checked() -> None:
    with pytest.raises(HeadEndConfigError, match="disconnect_cap_per_hour must be a positive integer"):
        HeadEndConfig(disconnect_cap_per_hour=0)
    with pytest.raises(HeadEndConfigError, match="reads_interface must be AMI-10 or DGM-29"):
        HeadEndConfig(reads_interface="AMI-24")
    with pytest.raises(HeadEndConfigError, match="on_demand_timeout_s must be a positive number"):
        HeadEndConfig(on_demand_timeout_s=float("nan"))
    with pytest.raises(HeadEndConfigError, match="exactly one of to="):
        EventSubscription(to="oms-1", group="oms")


# --- requests in flight ---------------------------------------------------------------------------------------


def test_an_operation_completes_when_every_concentrator_answered() -> None:
    core = core_with()
    reply = Reply("DGM-19", "cis-1", "msg-1")
    op = core.start(DeclaredType.ON_DEMAND_READ, "r", {"dcu-a": ["m0"], "dcu-b": ["m1", "m3"]}, [reply], T0)
    part_a, part_b = op.parts
    reads = RegisterColumns(["m0", "m9"], [1, 1], [10.0, 99.0], [0.0, 0.0], [0.0, 0.0], [0.0, 0.0], [0, 0])
    assert core.answer(part_a, "dcu-b", ReadResponse(part_a, Status.COMPLETED, reads=reads)) is None  # wrong sender
    assert core.stray_answers == 1
    assert core.answer(part_a, "dcu-a", ReadResponse(part_a, Status.COMPLETED, reads=reads)) is None
    failures = [Failure("m3", "no answer from the meter (no supply)")]
    one = RegisterColumns(["m1"], [2], [20.0], [0.0], [0.0], [0.0], [0])
    done = core.answer(part_b, "dcu-b", ReadResponse(part_b, Status.PARTIAL, reads=one, failures=failures))
    assert done is op
    response = op.read_response()
    assert response.status is Status.PARTIAL
    assert response.reads.meter_id == ["m0", "m1"]  # m9 was not asked of dcu-a: dropped
    assert response.reads.energy_delivered_wh == [10.0, 20.0]
    assert response.failures == failures
    assert core.in_flight == {}
    assert core.answer(part_b, "dcu-b", ReadResponse(part_b, Status.COMPLETED)) is None  # late duplicate


def test_meters_a_concentrator_says_nothing_about_fail() -> None:
    core = core_with()
    op = core.start(DISCONNECT, "r", {"dcu-a": ["m0", "m2"]}, [], T0)
    [part] = op.parts
    finished = core.answer(part, "dcu-a", SwitchResponse(part, Status.COMPLETED, done=["m0"]))
    assert finished is op
    assert op.switch_response().failures == [Failure("m2", "the concentrator did not confirm it")]
    assert op.status is Status.PARTIAL


def test_overdue_operations_fail_the_silent_concentrators_meters() -> None:
    core = core_with(command_timeout_s=60)
    op = core.start(CONNECT, "r", {"dcu-a": ["m0"], "dcu-b": ["m1"]}, [], T0)
    part_a, _ = op.parts
    core.answer(part_a, "dcu-a", SwitchResponse(part_a, Status.COMPLETED, done=["m0"]))
    assert core.overdue(at(59)) == []
    [late] = core.overdue(at(60))
    assert late.done == ["m0"]
    assert late.failures == [Failure("m1", "no answer from concentrator dcu-b within 60 s")]
    assert late.status is Status.PARTIAL
    assert core.in_flight == {}


# --- the wire ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("interface", "message_type", "body", "response"),
    [
        ("DGM-20", "interval_reads", ReadColumns, None),
        ("AMI-10", "interval_reads", ReadColumns, None),
        ("DGM-20", "register_reads", RegisterColumns, None),
        ("DGM-20", "meter_events", EventColumns, None),
        ("DGM-19", "on_demand_read", MeterRequest, ReadResponse),
        ("AMI-28", "on_demand_read", MeterRequest, ReadResponse),
        ("DGM-19", "remote_disconnect", MeterRequest, SwitchResponse),
        ("DGM-29", "remote_connect", MeterRequest, SwitchResponse),
    ],
)
def test_bodies_have_the_fields_the_catalog_declares(catalog: Catalog, interface, message_type, body, response) -> None:
    [declared] = [m for m in catalog.declared_for(interface) if m.id == message_type]
    assert body.__struct_fields__ == declared.fields
    assert (response.__struct_fields__ if response else ()) == declared.response_fields


def test_batches_decode_from_columns_or_rows_and_uneven_columns_are_refused() -> None:
    columns = {"meter_id": ["a", "b"], "at_us": [1, 2], "kind": ["TAMPER", "LAST_GASP"]}
    batch, columnar = decode_batch(msgspec.msgpack.encode(columns), EventColumns)
    assert columnar
    assert batch == EventColumns(**columns)
    rows = [{"meter_id": "a", "at_us": 1, "kind": "TAMPER"}, {"meter_id": "b", "at_us": 2, "kind": "LAST_GASP"}]
    batch, columnar = decode_batch(msgspec.msgpack.encode(rows), EventColumns)
    assert not columnar
    assert batch == EventColumns(**columns)
    with pytest.raises(MalformedBody, match="columns differ in length: meter_id has 2 values, kind has 1"):
        decode_batch(msgspec.msgpack.encode({**columns, "kind": ["TAMPER"]}), EventColumns)
    with pytest.raises(MalformedBody, match="at_us"):
        decode_batch(msgspec.msgpack.encode([{"meter_id": "a", "kind": "TAMPER"}]), EventColumns)
