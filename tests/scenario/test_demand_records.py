"""The CIS's DR records in a run: the latest row per (event, account) counts; billing gets the settled credits
and, per set of critical-peak events, the accounts asked in them."""

from __future__ import annotations

import datetime as dt

from gridloom.scenario.demand_records import DrRecords
from gridloom.systems.billing import DR_CREDITS_SCHEMA

HOUR_US = 3_600_000_000


def body(event_id: str, program: str, accounts: list[str], reduction_wh: list[float]) -> dict[str, list[object]]:
    n = len(accounts)
    return {
        "event_id": [event_id] * n, "program": [program] * n, "account_id": accounts, "requested_w": [500.0] * n,
        "start_us": [17 * HOUR_US] * n, "end_us": [18 * HOUR_US] * n, "opt": ["optIn"] * n,
        "reduction_wh": reduction_wh, "credit_per_kwh": [0.5 if program != "cpp" else 0.0] * n,
    }  # fmt: skip


def test_the_settled_records_replace_the_dispatched_ones_and_become_credits() -> None:
    records = DrRecords()
    records.add(body("e1", "reliability", ["a", "b"], [0.0, 0.0]))  # at dispatch
    records.add(body("e1", "reliability", ["a", "b"], [600.0, 0.0]))  # settled: b delivered nothing
    assert len(records) == 2
    credits = records.credits({"a": "m-a", "b": "m-b"})
    assert credits is not None
    assert credits.schema == DR_CREDITS_SCHEMA
    start, end = dt.datetime(1970, 1, 1, 17, tzinfo=dt.UTC), dt.datetime(1970, 1, 1, 18, tzinfo=dt.UTC)
    assert credits.to_pylist() == [
        {
            "account_id": "a", "event_id": "e1", "meter_ids": "m-a", "reduction_wh": 600.0, "credit_per_kwh": 0.5,
            "start_at": start, "end_at": end,
        }
    ]  # fmt: skip


def test_critical_peak_accounts_are_grouped_by_the_events_they_were_in() -> None:
    records = DrRecords()
    assert records.credits({}) is None
    assert records.critical_peak() == []
    records.add(body("c1", "cpp", ["x", "y"], [0.0, 0.0]))
    records.add(body("c2", "cpp", ["y", "z"], [0.0, 0.0]))
    records.add(body("d1", "dlc", ["w"], [100.0]))
    groups = {tuple(accounts): [e.event_id for e in events] for accounts, events in records.critical_peak()}
    assert groups == {("x",): ["c1"], ("y",): ["c1", "c2"], ("z",): ["c2"]}
    assert records.credits({"w": "m-w"}) is not None  # no credit line for CPP: its tariff does the work
