"""A bill for each tariff kind, checked against figures computed by hand (see each test's comment)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import numpy as np
import pyarrow as pa
import pytest

from gridloom.errors import BillingInputError, MissingPrices
from gridloom.systems.billing import (
    BillingCycle,
    CriticalPeakEvent,
    PriceSeries,
    TableReads,
    run_billing,
)

from .conftest import CYCLE_START, N_INTERVALS, ZONE, account_of, make_cis, month_reads

UTC = dt.UTC
M = "s000-m00001"


def bill_for(tariff: str, reads: pa.Table | None = None, **kwargs: object):
    cis = make_cis({M: tariff}, net_metered=kwargs.pop("net_metered", ()))  # type: ignore[arg-type]
    run = run_billing(cis, TableReads(reads if reads is not None else month_reads([M])), cycle="2026-11", **kwargs)  # type: ignore[arg-type]
    return run.bill(account_of(M))


def test_cycle_is_the_local_calendar_month() -> None:
    cycle = BillingCycle.month("2026-11", timezone=ZONE)
    assert cycle.start_at == dt.datetime(2026, 10, 31, 23, tzinfo=UTC)
    assert cycle.end_at == dt.datetime(2026, 11, 30, 23, tzinfo=UTC)
    # March has the spring-forward day: 31 days of 24 h less one hour
    march = BillingCycle.month("2027-03", timezone=ZONE)
    assert march.end_at - march.start_at == dt.timedelta(days=31, hours=-1)


def test_flat() -> None:
    # 2,880 intervals x 100 Wh = 288.000 kWh x 0.25 = 72.00; customer charge 10.00 -> 82.00
    bill = bill_for("FLAT")
    assert bill.status == "issued"
    assert bill.line("energy").quantity == 288.0
    assert bill.line("energy").amount == Decimal("72.00")
    assert bill.line("fixed").amount == Decimal("10.00")
    assert bill.total == Decimal("82.00")
    assert bill.intervals == bill.intervals_expected == N_INTERVALS


def test_tiered_inclining_blocks() -> None:
    # 288 kWh: 100 x 0.20 = 20.00, next 100 x 0.30 = 30.00, last 88 x 0.40 = 35.20; + 5.00 = 90.20
    bill = bill_for("TIER")
    assert [(x.bucket, x.quantity, x.amount) for x in bill.lines if x.kind == "tier"] == [
        ("tier:1", 100.0, Decimal("20.00")),
        ("tier:2", 100.0, Decimal("30.00")),
        ("tier:3", 88.0, Decimal("35.20")),
    ]
    assert bill.total == Decimal("90.20")


def test_tiered_below_the_first_block_has_one_line() -> None:
    # 2,880 x 25 Wh = 72 kWh, all in block 1: 72 x 0.20 = 14.40 + 5.00 = 19.40
    bill = bill_for("TIER", month_reads([M], delivered_wh=25.0))
    assert [x.bucket for x in bill.lines] == ["fixed", "tier:1"]
    assert bill.total == Decimal("19.40")


def test_time_of_use_by_local_hour_and_weekday() -> None:
    # November 2026 has 21 weekdays; peak 17-21 h local = 16 intervals a weekday -> 336 intervals
    # peak 336 x 0.1 kWh = 33.6 kWh x 0.40 = 13.44; off-peak 254.4 kWh x 0.10 = 25.44; total 38.88
    bill = bill_for("TOU")
    peak, off = bill.line("period:peak"), bill.line("off_peak")
    assert (peak.intervals, peak.quantity, peak.amount) == (336, 33.6, Decimal("13.44"))
    assert (off.intervals, off.quantity, off.amount) == (2544, 254.4, Decimal("25.44"))
    assert bill.total == Decimal("38.88")


def test_time_of_use_peak_is_local_not_utc() -> None:
    # only the 16:00-20:00 UTC hours (17-21 h in Berlin, UTC+1) of weekdays carry usage: all of it is peak
    def usage(t_us: np.ndarray) -> np.ndarray:
        at = t_us // 1_000_000
        hour_utc = (at // 3600) % 24
        weekday = ((at // 86400) + 3) % 7  # 1970-01-01 was a Thursday (3)
        return np.where((hour_utc >= 16) & (hour_utc < 20) & (weekday < 5), 1000.0, 0.0)

    bill = bill_for("TOU", month_reads([M], delivered_wh=usage))
    assert bill.line("period:peak").quantity == 336.0  # 336 intervals x 1 kWh
    assert bill.line("off_peak").quantity == 0.0


def test_critical_peak_event_window() -> None:
    # event 10 Nov 17:00-19:00 local = 16:00-18:00 UTC: 8 intervals x 0.1 kWh = 0.8 kWh x 1.00 = 0.80
    # the other 287.2 kWh at 0.20 = 57.44; total 58.24
    event = CriticalPeakEvent(
        dt.datetime(2026, 11, 10, 16, tzinfo=UTC), dt.datetime(2026, 11, 10, 18, tzinfo=UTC), "e1"
    )
    bill = bill_for("CPP", events=[event])
    cpp = bill.line("critical_peak")
    assert (cpp.intervals, cpp.quantity, cpp.amount) == (8, 0.8, Decimal("0.80"))
    assert cpp.interval_from == dt.datetime(2026, 11, 10, 16, tzinfo=UTC)
    assert cpp.interval_to == dt.datetime(2026, 11, 10, 18, tzinfo=UTC)
    assert bill.line("off_peak").amount == Decimal("57.44")
    assert bill.total == Decimal("58.24")
    # no events: everything at the base rate, 288 x 0.20 = 57.60
    assert bill_for("CPP").total == Decimal("57.60")


def test_real_time_price_per_hour() -> None:
    # 720 hours, 0.4 kWh each; prices alternate 0.10 / 0.20 per hour:
    # 360 x 0.4 x 0.10 + 360 x 0.4 x 0.20 = 14.40 + 28.80 = 43.20; adder 288 x 0.05 = 14.40 -> 57.60
    prices = PriceSeries.from_pairs(
        (CYCLE_START + dt.timedelta(hours=h), 0.10 if h % 2 == 0 else 0.20) for h in range(720)
    )
    bill = bill_for("RTP", prices=prices)
    line = bill.line("real_time")
    assert line.quantity == 288.0
    assert line.amount == Decimal("57.60")
    assert line.rate == pytest.approx(0.20)
    assert bill.total == Decimal("57.60")


def test_real_time_without_prices_for_used_hours_is_refused() -> None:
    prices = PriceSeries.from_pairs((CYCLE_START + dt.timedelta(hours=h), 0.1) for h in range(700))
    with pytest.raises(MissingPrices, match="no price for 2026-11-30T03:00:00") as info:
        bill_for("RTP", prices=prices)
    assert len(info.value.hours) == 20
    with pytest.raises(MissingPrices, match="give an hourly price series"):
        bill_for("RTP")


def test_net_metering_credits_received_energy() -> None:
    # delivered 288 kWh x 0.25 = 72.00; received 2,880 x 50 Wh = 144 kWh x 0.07 = 10.08 credit
    # total 72.00 + 10.00 fixed - 10.08 = 71.92
    reads = month_reads([M], received_wh=50.0)
    bill = bill_for("FLAT", reads, net_metered=(M,))
    credit = bill.line("net_metering")
    assert (credit.quantity, credit.amount) == (144.0, Decimal("-10.08"))
    assert bill.total == Decimal("71.92")
    assert bill.energy_received_wh == 144_000.0


def test_received_energy_is_not_credited_without_enrolment() -> None:
    bill = bill_for("FLAT", month_reads([M], received_wh=50.0))
    assert "net_metering" not in [x.bucket for x in bill.lines]
    assert bill.total == Decimal("82.00")


def test_demand_charge_on_the_highest_15_minutes() -> None:
    # one interval of 500 Wh in 15 min = 2.0 kW, the rest 100 Wh: demand 2.0 x 10.00 = 20.00
    # energy 2,879 x 0.1 + 0.5 = 288.4 kWh x 0.10 = 28.84; total 48.84
    def usage(t_us: np.ndarray) -> np.ndarray:
        peak = int(
            (dt.datetime(2026, 11, 20, 11, 30, tzinfo=UTC) - dt.datetime(1970, 1, 1, tzinfo=UTC)).total_seconds()
        )
        return np.where(t_us == peak * 1_000_000, 500.0, 100.0)

    bill = bill_for("DEMAND", month_reads([M], delivered_wh=usage))
    demand = bill.line("demand")
    assert (demand.quantity, demand.unit, demand.amount) == (2.0, "kW", Decimal("20.00"))
    assert demand.interval_from == dt.datetime(2026, 11, 20, 11, 30, tzinfo=UTC)
    assert demand.intervals == 1
    assert bill.peak_demand_w == pytest.approx(2000.0)
    assert bill.total == Decimal("48.84")


def test_demand_from_5_minute_reads_is_the_15_minute_average() -> None:
    # 5-minute reads of 100 Wh: 300 Wh per 15 min = 1.2 kW; one 5-minute read of 400 Wh -> 600 Wh = 2.4 kW
    def usage(t_us: np.ndarray) -> np.ndarray:
        at = int((dt.datetime(2026, 11, 3, 8, 5, tzinfo=UTC) - dt.datetime(1970, 1, 1, tzinfo=UTC)).total_seconds())
        return np.where(t_us == at * 1_000_000, 400.0, 100.0)

    bill = bill_for("DEMAND", month_reads([M], delivered_wh=usage, interval_s=300))
    demand = bill.line("demand")
    assert demand.quantity == 2.4
    assert demand.intervals == 3  # the three 5-minute reads of 08:00-08:15
    assert demand.interval_from == dt.datetime(2026, 11, 3, 8, tzinfo=UTC)
    assert demand.amount == Decimal("24.00")


def test_demand_is_coincident_over_the_accounts_meters() -> None:
    # a second meter at the same premise (e.g. a heat-pump meter): 100 Wh + 100 Wh in each 15 minutes = 0.8 kW
    cis = make_cis({M: "DEMAND"})
    cis.install_meter("s000-m90001", premise_id="prem-s000-00001", at=dt.datetime(2026, 1, 1, tzinfo=UTC))
    run = run_billing(cis, TableReads(month_reads([M, "s000-m90001"])), cycle="2026-11")
    bill = run.bill(account_of(M))
    assert bill.line("demand").quantity == 0.8
    assert bill.line("demand").meter_ids == (M, "s000-m90001")
    assert bill.line("energy").quantity == 576.0


def test_net_metering_credit_ends_with_the_occupancy() -> None:
    # the PV owner moves out after 10 days (local midnight 11 Nov): 960 intervals x 50 Wh = 48 kWh x 0.07 = 3.36
    cis = make_cis({M: "FLAT"}, net_metered=(M,))
    cis.move_out(account_of(M), at=dt.datetime(2026, 11, 10, 23, tzinfo=UTC))
    run = run_billing(cis, TableReads(month_reads([M], received_wh=50.0)), cycle="2026-11")
    credit = run.bill(account_of(M)).line("net_metering")
    assert (credit.quantity, credit.amount, credit.intervals) == (48.0, Decimal("-3.36"), 960)


def test_a_short_cycle_carries_its_days_share_of_the_monthly_charges() -> None:
    # 3 of November's 30 days: share 0.1. FLAT: 288 intervals x 100 Wh = 28.8 kWh x 0.25 = 7.20,
    # customer charge 10.00 x 0.1 = 1.00 -> 8.20.
    start, end = CYCLE_START + dt.timedelta(days=10), CYCLE_START + dt.timedelta(days=13)
    cycle = BillingCycle.span("run", start, end, timezone=ZONE)
    assert cycle.charge_share == pytest.approx(0.1)
    reads = month_reads([M], start=start, end=end)
    flat = run_billing(make_cis({M: "FLAT"}), TableReads(reads), cycle=cycle).bill(account_of(M))
    assert flat.line("energy").amount == Decimal("7.20")
    assert flat.line("fixed").amount == Decimal("1.00")
    assert flat.total == Decimal("8.20")

    def peak(t_us: np.ndarray) -> np.ndarray:
        return np.where(t_us == t_us.min(), 500.0, 100.0)  # 2.0 kW in the first interval

    demand = run_billing(make_cis({M: "DEMAND"}), TableReads(month_reads([M], start=start, end=end, delivered_wh=peak)),
                         cycle=cycle).bill(account_of(M))  # fmt: skip
    # 2.0 kW x (10.00 x 0.1) = 2.00; energy 287 x 0.1 + 0.5 = 29.2 kWh x 0.10 = 2.92
    assert demand.line("demand").amount == Decimal("2.00")
    assert demand.total == Decimal("4.92")


def test_a_short_cycle_must_stay_in_one_month() -> None:
    with pytest.raises(BillingInputError, match="within one month"):
        BillingCycle.span("run", CYCLE_START, CYCLE_START + dt.timedelta(days=40), timezone=ZONE)
    with pytest.raises(BillingInputError, match="before the end"):
        BillingCycle.span("run", CYCLE_START, CYCLE_START, timezone=ZONE)


def test_the_cycles_covering_a_span_are_whole_months_and_short_cycles_at_the_ends() -> None:
    start = CYCLE_START + dt.timedelta(days=20)  # 2026-11-21 local midnight
    cycles = BillingCycle.covering(start, start + dt.timedelta(days=50), timezone=ZONE)
    assert [c.cycle_id for c in cycles] == ["2026-11-21..2026-12-01", "2026-12", "2027-01-01..2027-01-10"]
    assert [round(c.charge_share, 3) for c in cycles] == [0.333, 1.0, 0.29]
    assert cycles[0].end_at == cycles[1].start_at
    assert cycles[1].end_at == cycles[2].start_at
