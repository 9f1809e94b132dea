"""EVs arrive, charge within their charger's limit and their need, and leave charged when they can."""

import datetime as dt

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gridloom.devices.distributions import Distribution
from gridloom.devices.ev import (
    HOME_CHARGING,
    LEVEL1_W,
    LEVEL2_W,
    WORKPLACE_CHARGING,
    EvBehaviour,
    EvFleet,
)
from gridloom.errors import DeviceConfigError, DeviceInputError, IntervalOutOfOrder, UnknownDevice

START = dt.datetime(2024, 3, 4, tzinfo=dt.UTC)  # a Monday, midnight UTC


def _ratings(n: int, rng: np.random.Generator) -> np.ndarray:
    return np.where(rng.random(n) < 0.8, LEVEL2_W, LEVEL1_W)


def _run(fleet: EvFleet, steps: int, dt_s: float = 900.0, start: dt.datetime = START) -> np.ndarray:
    out = np.empty((steps, fleet.n))
    for k in range(steps):
        out[k] = fleet.step(start + dt.timedelta(seconds=k * dt_s), dt_s)
    return out


def test_sessions_follow_the_configured_home_charging_distributions() -> None:
    rng = np.random.default_rng(1)
    fleet = EvFleet(np.full(20_000, LEVEL2_W), start_at=START, rng=rng)
    _run(fleet, 4 * 96)
    sessions = fleet.drain_sessions()
    assert len(sessions) == 4 * 20_000  # one per night per EV
    hour = lambda us: (us / 1e6 % 86_400) / 3_600  # noqa: E731
    assert hour(sessions.arrival_us).mean() == pytest.approx(18.0, abs=0.05)
    assert hour(sessions.arrival_us).std() == pytest.approx(1.5, abs=0.05)
    assert hour(sessions.departure_us).mean() == pytest.approx(7.5, abs=0.05)
    assert hour(sessions.departure_us).std() == pytest.approx(1.0, abs=0.05)
    assert np.median(sessions.energy_need_wh) == pytest.approx(8_000.0, rel=0.03)
    assert np.all(sessions.departure_us > sessions.arrival_us)


def test_uncontrolled_charging_peaks_in_the_evening() -> None:
    fleet = EvFleet(np.full(5_000, LEVEL2_W), start_at=START, rng=np.random.default_rng(2))
    total = _run(fleet, 96).sum(axis=1)
    peak_hour = np.argmax(total) / 4
    assert 18.0 <= peak_hour <= 21.0
    assert total[12 * 4] < 0.05 * total.max()  # nobody home at noon


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**32 - 1), st.sampled_from([60.0, 900.0, 3_600.0, 6 * 3_600.0, 86_400.0]))
def test_energy_never_exceeds_the_need_nor_the_limit_times_time(seed: int, dt_s: float) -> None:
    rng = np.random.default_rng(seed)
    n = 200
    behaviour = EvBehaviour(plug_in_probability=0.7)  # skipped nights make bigger needs
    fleet = EvFleet(_ratings(n, rng), start_at=START, rng=rng, behaviour=behaviour)
    delivered0 = fleet.energy_delivered_total_wh.copy()
    steps = int(3 * 86_400 / dt_s)
    drawn_wh = np.zeros(n)
    for k in range(steps):
        at = START + dt.timedelta(seconds=k * dt_s)
        chosen = rng.random(n) < 0.3
        fleet.set_limit(chosen, rng.choice([0.0, 1_000.0, 3_000.0, np.inf], size=int(chosen.sum())))
        step_limit = rng.uniform(0, 8_000.0, n)
        cap = np.minimum(np.minimum(fleet.evse_max_w, fleet.limit_w), step_limit)
        p = fleet.step(at, dt_s, limit_w=step_limit)
        assert np.all(p >= 0)
        assert np.all(p <= cap + 1e-9)  # average power over the step within every limit
        drawn_wh += p * dt_s / 3_600.0
    sessions = fleet.drain_sessions()
    assert np.all(sessions.energy_delivered_wh <= sessions.energy_need_wh + 1e-9)
    assert np.all(fleet.energy_delivered_wh <= fleet.energy_need_wh + 1e-9)
    assert fleet.energy_delivered_total_wh - delivered0 == pytest.approx(drawn_wh)


def test_every_feasible_session_is_done_by_departure_and_infeasible_ones_charge_throughout() -> None:
    rng = np.random.default_rng(5)
    n = 4_000
    rating = _ratings(n, rng)
    behaviour = EvBehaviour(daily_energy_wh=Distribution.lognormal(14_000.0, 0.6))  # some level-1 cars fall short
    fleet = EvFleet(rating, start_at=START, rng=rng, behaviour=behaviour)
    _run(fleet, 3 * 96)
    s = fleet.drain_sessions()
    dwell_h = (s.departure_us - s.arrival_us) / 3.6e9
    possible_wh = rating[s.evse] * dwell_h
    feasible = s.energy_need_wh <= possible_wh
    assert feasible.mean() > 0.5
    assert (~feasible).sum() > 10
    assert s.energy_delivered_wh[feasible] == pytest.approx(s.energy_need_wh[feasible])
    assert s.energy_delivered_wh[~feasible] == pytest.approx(possible_wh[~feasible])


def test_a_car_charges_as_soon_as_it_plugs_in_and_reports_its_state() -> None:
    begin = START + dt.timedelta(hours=9)
    fleet = EvFleet(np.array([LEVEL2_W]), start_at=begin, rng=np.random.default_rng(8))
    assert not fleet.plugged[0]
    assert np.isnan(fleet.soc[0])
    arrival = dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(microseconds=int(fleet.arrival_us[0]))
    minutes_before = int((arrival - begin).total_seconds() // 60)
    idle = _run(fleet, minutes_before, 60.0, begin)
    assert np.all(idle == 0.0)
    at = begin + dt.timedelta(minutes=minutes_before)
    first = fleet.step(at, 60.0)[0]
    share = (at + dt.timedelta(minutes=1) - arrival).total_seconds() / 60.0
    assert first == pytest.approx(LEVEL2_W * share)  # from the second it plugs in
    assert fleet.plugged[0]
    soc = [fleet.soc[0]]
    for k in range(1, 30):
        assert fleet.step(at + dt.timedelta(minutes=k), 60.0)[0] == LEVEL2_W
        soc.append(fleet.soc[0])
    assert np.all(np.diff(soc) > 0)
    assert 0.0 < soc[-1] <= 0.9
    assert fleet.energy_delivered_wh[0] == pytest.approx(LEVEL2_W * (29 + share) / 60)


def test_a_limit_holds_until_the_next_command() -> None:
    behaviour = EvBehaviour(arrival_hour=Distribution.constant(20.0), daily_energy_wh=Distribution.constant(40_000.0))
    at = START + dt.timedelta(hours=23)  # plugged in since 20:00 with 40 kWh to charge: still charging
    fleet = EvFleet(np.full(3, LEVEL2_W), start_at=at, rng=np.random.default_rng(9), behaviour=behaviour)
    assert fleet.energy_delivered_wh == pytest.approx([3 * LEVEL2_W] * 3)
    assert fleet.plugged.all()
    fleet.set_limit([0], 0.0)
    fleet.set_limit(np.array([False, True, False]), 2_000.0)
    for _ in range(2):
        p = fleet.step(at, 60.0)
        at += dt.timedelta(seconds=60)
        assert p == pytest.approx([0.0, 2_000.0, LEVEL2_W])
    fleet.set_limit([0, 1], np.inf)
    assert fleet.step(at, 60.0) == pytest.approx([LEVEL2_W] * 3)
    with pytest.raises(DeviceInputError):
        fleet.set_limit([0], -5.0)
    with pytest.raises(UnknownDevice):
        fleet.set_limit([3], 5.0)


def test_workplace_charging_happens_in_the_day() -> None:
    fleet = EvFleet(
        np.full(2_000, LEVEL2_W), start_at=START, rng=np.random.default_rng(4), behaviour=WORKPLACE_CHARGING
    )
    total = _run(fleet, 96).sum(axis=1)
    assert 8.0 <= np.argmax(total) / 4 <= 11.0
    assert total[: 4 * 4].sum() == 0.0  # nobody at work before 04:00


def test_the_fleet_is_deterministic_for_a_seed_and_refuses_to_go_back_in_time() -> None:
    a = EvFleet(np.full(500, LEVEL2_W), start_at=START, rng=np.random.default_rng(11))
    b = EvFleet(np.full(500, LEVEL2_W), start_at=START, rng=np.random.default_rng(11))
    c = EvFleet(np.full(500, LEVEL2_W), start_at=START, rng=np.random.default_rng(12))
    pa, pb, pc = _run(a, 96), _run(b, 96), _run(c, 96)
    assert np.array_equal(pa, pb)
    assert not np.array_equal(pa, pc)
    with pytest.raises(IntervalOutOfOrder):
        a.step(START, 900.0)
    with pytest.raises(DeviceConfigError):
        EvFleet(np.array([LEVEL2_W]), start_at=dt.datetime(2024, 1, 1), rng=np.random.default_rng(0))
    with pytest.raises(DeviceConfigError):
        EvBehaviour(plug_in_probability=0.0)
    assert HOME_CHARGING.departure_day_offset == 1
