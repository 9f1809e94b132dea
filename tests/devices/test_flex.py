"""Customer-side flexible loads: what a utility or a customer would notice when a signal arrives."""

import datetime as dt

import numpy as np
import pytest

from gridloom.devices.flex import FlexFleet, FlexShares
from gridloom.devices.flex_industrial import IndustrialFleet
from gridloom.errors import DeviceConfigError, DeviceInputError

START = dt.datetime(2025, 7, 15, 12, 0, tzinfo=dt.UTC)
STEP_S = 900.0


def run(
    fleet, hours, *, event_from=None, event_to=None, sites=None, outdoor_c=34.0, irradiance=0.6, level=0, price=0.2
):
    loads, indoor = [], []
    n = len(fleet)
    for k in range(int(hours * 3600 / STEP_S)):
        at = START + dt.timedelta(seconds=k * STEP_S)
        if event_from is not None and at == event_from:
            fleet.start_event(np.arange(n) if sites is None else sites)
        if event_to is not None and at == event_to:
            fleet.end_event(np.arange(n) if sites is None else sites)
        step = fleet.step(at, STEP_S, outdoor_c=outdoor_c, irradiance=irradiance, level=level, price_per_kwh=price)
        loads.append(step.load_w)
        indoor.append(step.indoor_c)
    return np.array(loads), np.array(indoor)


def test_an_event_lowers_the_load_of_those_who_did_not_opt_out():
    control, treated = FlexFleet.synthetic(2_000, seed=3), FlexFleet.synthetic(2_000, seed=3)
    ev_start, ev_end = START + dt.timedelta(hours=4), START + dt.timedelta(hours=7)
    base, _ = run(control, 8)
    load, indoor = run(treated, 8, event_from=ev_start, event_to=ev_end)
    during = slice(16, 28)
    reduction = base[during].sum(axis=1) - load[during].sum(axis=1)
    assert reduction.mean() > 0.2 * base[during].sum(axis=1).mean()  # a deep cut of the aggregate
    assert np.all(base[:16] == load[:16])  # nothing changed before the event
    # customers who opted out behaved as if there were no event (their drawn opt-outs were reported)
    out = np.flatnonzero(treated.opted_out) if treated.in_event.any() else None
    assert out is None  # the event ended: the opt-out marks are cleared
    # comfort: nobody's house went above the customer's limit (small tolerance: the unit at full power)
    cooled = treated.sites.hvac_rated_w > 0
    limit = treated.sites.comfort_max_c[cooled]
    assert np.all(indoor[:, cooled] <= limit[None, :] + 0.05)


def test_opted_out_customers_are_unaffected_and_the_rate_is_honoured():
    shares = FlexShares(opt_out_rate_mean=0.3)
    control, treated = (
        FlexFleet.synthetic(5_000, seed=9, shares=shares),
        FlexFleet.synthetic(5_000, seed=9, shares=shares),
    )
    base, _ = run(control, 2)
    treated.start_event(np.arange(5_000))
    opted = treated.opted_out.copy()
    load, _ = run(treated, 2)
    assert 0.25 < opted.mean() < 0.35
    assert np.allclose(base[:, opted], load[:, opted])
    assert (base[:, ~opted].sum() - load[:, ~opted].sum()) > 0


def test_an_event_only_reaches_the_targeted_sites():
    control, treated = FlexFleet.synthetic(500, seed=1), FlexFleet.synthetic(500, seed=1)
    targeted = np.zeros(500, bool)
    targeted[:100] = True
    base, _ = run(control, 1)
    treated.start_event(targeted)
    load, _ = run(treated, 1)
    assert np.array_equal(base[:, 100:], load[:, 100:])


def test_pool_and_ev_catch_up_after_an_event():
    fleet = FlexFleet.synthetic(3_000, seed=5, shares=FlexShares(opt_out_rate_mean=0.01))
    run(fleet, 24, event_from=START + dt.timedelta(hours=5), event_to=START + dt.timedelta(hours=9))
    s = fleet.sites
    # a full local day later every pool ran its hours (the day rolled at midnight, so look at today's run)
    has_pool = s.pool_w > 0
    assert np.all(fleet.pool_run_s[has_pool] <= s.pool_hours[has_pool] * 3600 + 1)
    # cars were charged by their departure: nothing left to put in at 12:00 the next day
    assert np.all(fleet.ev_need_wh[s.ev_charger_w > 0] < 1.0)


def test_high_price_moves_price_responsive_customers_only():
    fleet, control = FlexFleet.synthetic(2_000, seed=2), FlexFleet.synthetic(2_000, seed=2)
    at = START
    high = fleet.step(at, STEP_S, outdoor_c=33.0, price_per_kwh=1.0)
    low = control.step(at, STEP_S, outdoor_c=33.0, price_per_kwh=0.1)
    sensitive = np.isfinite(fleet.sites.price_threshold_per_kwh)
    assert np.array_equal(high.responding, sensitive)
    assert high.load_w[sensitive].sum() < low.load_w[sensitive].sum()
    assert np.allclose(high.load_w[~sensitive], low.load_w[~sensitive])


def test_export_limit_curtails_pv():
    fleet = FlexFleet.synthetic(1_000, seed=4, shares=FlexShares(pv=1.0, battery=0.0))
    step = fleet.step(START, STEP_S, outdoor_c=20.0, irradiance=1.0, base_w=200.0, export_limit_w=0.0)
    assert np.all(step.load_w >= -1e-9)
    assert step.pv_curtailed_w.sum() > 0


def test_bad_inputs_are_named():
    fleet = FlexFleet.synthetic(10)
    with pytest.raises(DeviceInputError, match="level"):
        fleet.step(START, STEP_S, outdoor_c=30.0, level=5)
    with pytest.raises(DeviceInputError, match="outdoor_c"):
        fleet.step(START, STEP_S, outdoor_c=np.zeros(3))
    with pytest.raises(DeviceInputError, match="timezone"):
        fleet.step(dt.datetime(2025, 1, 1), STEP_S, outdoor_c=30.0)
    with pytest.raises(DeviceConfigError, match="opt_out_rate_mean"):
        FlexShares(opt_out_rate_mean=2.0)


def test_industrial_sites_move_load_to_cheap_hours_and_lower_their_cost():
    fleet = IndustrialFleet.synthetic(300, seed=1)
    prices = np.full(24, 0.12)
    prices[17:21] = 0.6
    prices[0:5] = 0.05
    plan = fleet.schedule(prices)
    planned_cost = (fleet.sites.planned_w / 1000.0 * prices).sum(axis=1)
    assert np.all(plan.cost(prices) <= planned_cost + 1e-6)
    assert np.allclose(plan.production_w.sum(axis=1), fleet.sites.planned_w.sum(axis=1))  # production kept
    assert plan.load_w[:, 17:21].sum() < fleet.sites.planned_w[:, 17:21].sum()
    assert np.all(plan.production_w <= fleet.sites.capacity_w[:, None] + 1e-6)


def test_industrial_commitments_follow_payment_and_are_delivered():
    fleet = IndustrialFleet.synthetic(200, seed=2)
    hours = np.zeros(24, bool)
    hours[18:20] = True
    cheap = fleet.negotiate(hours, 1e9, payment_per_kwh=0.05)
    rich = fleet.negotiate(hours, 1e9, payment_per_kwh=1.0)
    assert cheap.total_w < rich.total_w
    assert np.all(rich.committed_w[fleet.sites.reservation_per_kwh > 1.0] == 0)
    flat = np.full(24, 0.1)
    plan = fleet.schedule(flat, commitment=rich)
    delivered = fleet.sites.planned_w[:, 18:20] - plan.load_w[:, 18:20]
    assert np.all(delivered >= rich.committed_w[:, None] - 1e-6)
