"""Move-in/move-out splits usage at the move time; every line traces back to the exact reads behind it."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gridloom.errors import BillingInputError, NoUsageData, UnknownCisRecord
from gridloom.systems.billing import RatingInputs, TableReads, run_billing, trace_line

from .conftest import CYCLE_START, RECORDED_AT, account_of, make_cis, month_reads

UTC = dt.UTC
M = "s000-m00001"
PREMISE = "prem-s000-00001"


def test_move_out_and_move_in_split_the_month() -> None:
    # the first occupant leaves at local midnight of 16 November (15 Nov 23:00 UTC), the next moves in then:
    # each gets 1,440 intervals = 144 kWh and half the cycle: blocks of 50/50/above and half the 5.00 charge
    # new occupant: 50 x 0.20 + 50 x 0.30 + 44 x 0.40 = 10.00 + 15.00 + 17.60 = 42.60 + 2.50 = 45.10
    cis = make_cis({M: "TIER"})
    move = dt.datetime(2026, 11, 15, 23, tzinfo=UTC)
    cis.move_out(account_of(M), at=move)
    new = cis.move_in(premise_id=PREMISE, customer_id="cust-new", at=move, tariff_id="TIER", customer_name="New")
    run = run_billing(cis, TableReads(month_reads([M])), cycle="2026-11")
    old_bill, new_bill = run.bill(account_of(M)), run.bill(new)
    for bill in (old_bill, new_bill):
        assert bill.intervals == 1440
        assert bill.energy_delivered_wh == 144_000.0
        assert bill.line("fixed").quantity == 0.5
        assert bill.line("fixed").amount == Decimal("2.50")
        assert [x.quantity for x in bill.lines if x.kind == "tier"] == [50.0, 50.0, 44.0]
        assert bill.total == Decimal("45.10")
    assert old_bill.period_end_at == new_bill.period_start_at == move
    assert new_bill.line("tier:1").interval_from == move


def test_move_inside_an_interval_splits_that_interval_by_time() -> None:
    # a move at 10:05 UTC splits the 10:00-10:15 interval 1/3 : 2/3 between the two accounts
    cis = make_cis({M: "FLAT"})
    move = dt.datetime(2026, 11, 20, 10, 5, tzinfo=UTC)
    cis.move_out(account_of(M), at=move)
    new = cis.move_in(premise_id=PREMISE, customer_id="cust-new", at=move, tariff_id="FLAT")
    run = run_billing(cis, TableReads(month_reads([M], delivered_wh=300.0)), cycle="2026-11")
    old_wh, new_wh = run.bill(account_of(M)).energy_delivered_wh, run.bill(new).energy_delivered_wh
    assert old_wh + new_wh == pytest.approx(2880 * 300.0)  # nothing lost or counted twice
    whole_before = (move - CYCLE_START) // dt.timedelta(minutes=15)  # intervals entirely before the move
    assert old_wh == pytest.approx(whole_before * 300.0 + 100.0)
    assert run.unbilled_wh == 0.0


def test_vacant_premise_usage_is_unbilled_and_reported() -> None:
    cis = make_cis({M: "FLAT"})
    cis.move_out(account_of(M), at=dt.datetime(2026, 11, 25, 23, tzinfo=UTC))  # 25 of 30 days
    run = run_billing(cis, TableReads(month_reads([M])), cycle="2026-11")
    bill = run.bill(account_of(M))
    assert bill.intervals == 2400
    assert bill.line("fixed").amount == Decimal("8.33")  # 10.00 x 25/30
    assert run.unbilled_wh == pytest.approx(480 * 100.0)


@settings(max_examples=25, deadline=None)
@given(minutes=st.integers(min_value=1, max_value=30 * 24 * 60 - 1))
def test_any_move_time_conserves_energy(minutes: int) -> None:
    cis = make_cis({M: "FLAT"})
    move = CYCLE_START + dt.timedelta(minutes=minutes)
    cis.move_out(account_of(M), at=move)
    new = cis.move_in(premise_id=PREMISE, customer_id="cust-new", at=move, tariff_id="FLAT")
    run = run_billing(cis, TableReads(month_reads([M], delivered_wh=90.0)), cycle="2026-11")
    total = sum(run.bill(a).energy_delivered_wh for a in (account_of(M), new))
    assert total == pytest.approx(2880 * 90.0)
    shares = [run.bill(a).line("fixed").quantity for a in (account_of(M), new)]
    assert sum(shares) == pytest.approx(1.0, abs=2e-6)


def test_every_line_names_its_meters_intervals_and_versions() -> None:
    cis = make_cis({M: "TOU", "s000-m00002": "FLAT"})
    reads = month_reads([M, "s000-m00002"])
    # an estimate (version 1) for 4 intervals of meter 1 on 2 November, 18:00-19:00 local (a peak hour)
    est = month_reads([M], start=dt.datetime(2026, 11, 2, 17, tzinfo=UTC), end=dt.datetime(2026, 11, 2, 18, tzinfo=UTC),
                      version=1, source="estimated", delivered_wh=200.0)  # fmt: skip
    run = run_billing(cis, TableReads(pa.concat_tables([reads, est])), cycle="2026-11")
    bill = run.bill(account_of(M))
    peak = bill.line("period:peak")
    assert peak.meter_ids == (M,)
    assert peak.versions == {0: 332, 1: 4}
    assert peak.estimated_intervals == 4
    assert peak.quantity == pytest.approx(33.6 + 0.4)
    assert bill.line("off_peak").versions == {0: 2544}
    assert bill.estimated_share == pytest.approx(4 / 2880)
    assert bill.reads_as_of == RECORDED_AT


def test_trace_returns_the_reads_as_billed_even_after_a_later_edit(cycle) -> None:
    cis = make_cis({M: "FLAT"})
    reads = month_reads([M])
    run = run_billing(cis, TableReads(reads), cycle=cycle)
    first = run.bill(account_of(M))
    # later, a user edits one interval (version 1, recorded after the bill)
    edit = month_reads([M], start=dt.datetime(2026, 11, 5, 12, tzinfo=UTC),
                       end=dt.datetime(2026, 11, 5, 12, 15, tzinfo=UTC), version=1, source="edited",
                       delivered_wh=1000.0,
                       recorded_at=RECORDED_AT + dt.timedelta(days=3))  # fmt: skip
    source = TableReads(pa.concat_tables([reads, edit]))
    inputs = RatingInputs(cycle)
    rows = trace_line(first, first.line("energy"), cis=cis, source=source, inputs=inputs)
    assert rows.num_rows == 2880
    assert set(rows["version"].to_pylist()) == {0}
    assert pc.sum(rows["energy_delivered_wh"]).as_py() / 1000 == first.line("energy").quantity
    # a re-run uses the edit, and says so
    second = run_billing(cis, source, cycle=cycle).bill(account_of(M))
    assert second.line("energy").versions == {0: 2879, 1: 1}
    assert second.line("energy").edited_intervals == 1
    assert second.line("energy").quantity == pytest.approx(288.9)
    rows2 = trace_line(second, second.line("energy"), cis=cis, source=source, inputs=inputs)
    assert pc.sum(rows2["energy_delivered_wh"]).as_py() == pytest.approx(288_900.0)
    assert trace_line(second, second.line("fixed"), cis=cis, source=source, inputs=inputs).num_rows == 0


def test_trace_of_demand_line_is_the_peak_interval(cycle) -> None:
    def usage(t_us: np.ndarray) -> np.ndarray:
        return np.where(t_us == t_us.min() + 900_000_000 * 100, 700.0, 100.0)

    cis = make_cis({M: "DEMAND"})
    source = TableReads(month_reads([M], delivered_wh=usage))
    bill = run_billing(cis, source, cycle=cycle).bill(account_of(M))
    rows = trace_line(bill, bill.line("demand"), cis=cis, source=source, inputs=RatingInputs(cycle))
    assert rows["energy_delivered_wh"].to_pylist() == [700.0]
    assert bill.line("demand").quantity == 2.8


def test_incomplete_data_holds_the_bill() -> None:
    cis = make_cis({M: "FLAT", "s000-m00002": "FLAT"})
    full = month_reads(["s000-m00002"])
    half = month_reads([M], end=dt.datetime(2026, 11, 15, 23, tzinfo=UTC))
    run = run_billing(cis, TableReads(pa.concat_tables([full, half])), cycle="2026-11")
    held = run.bill(account_of(M))
    assert held.status == "held"
    assert "50.0 % of the expected intervals" in (held.hold_reason or "")
    assert run.bill(account_of("s000-m00002")).status == "issued"
    assert run.summary()["held"] == 1


def test_unknown_account_is_refused_with_close_matches() -> None:
    cis = make_cis({M: "FLAT"})
    with pytest.raises(
        UnknownCisRecord, match=r"unknown account 'acct-s000-00001-02'; did you mean acct-s000-00001-01"
    ):
        run_billing(cis, TableReads(month_reads([M])), cycle="2026-11", account_ids=["acct-s000-00001-02"])


def test_cycle_without_data_is_refused() -> None:
    cis = make_cis({M: "FLAT"})
    with pytest.raises(NoUsageData, match="no interval reads in cycle 2026-12"):
        run_billing(cis, TableReads(month_reads([M])), cycle="2026-12")
    with pytest.raises(NoUsageData, match=f"for account\\(s\\) {account_of(M)}"):
        run_billing(cis, TableReads(month_reads([M])), cycle="2026-12", account_ids=[account_of(M)])


@pytest.mark.parametrize("text", ["2026-13", "Nov 2026", "2026-1", ""])
def test_malformed_cycle_is_refused(text: str) -> None:
    cis = make_cis({M: "FLAT"})
    with pytest.raises(BillingInputError, match="write a month as YYYY-MM"):
        run_billing(cis, TableReads(month_reads([M])), cycle=text)


def test_two_versions_of_one_interval_are_refused(cycle) -> None:
    from gridloom.systems.billing import rate_accounts

    cis = make_cis({M: "FLAT"})
    reads = month_reads([M])
    doubled = pa.concat_tables([reads, reads.slice(0, 1)])
    with pytest.raises(BillingInputError, match="pass only the current versions"):
        rate_accounts(doubled, cis=cis, account_ids=[account_of(M)], inputs=RatingInputs(cycle))
