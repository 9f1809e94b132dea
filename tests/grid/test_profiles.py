"""Profiles keep the calendar, and no two customers read alike."""

import datetime as dt
import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gridloom.grid.profiles import (
    STEPS_PER_DAY,
    CustomerProfiles,
    ProfileTable,
    generation_table,
    generation_window,
    load_table,
    profile_step,
)


@pytest.fixture(scope="module")
def net():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import simbench

        return simbench.get_simbench_net("1-LV-semiurb4--0-sw")


@given(st.datetimes(min_value=dt.datetime(2020, 1, 1), max_value=dt.datetime(2035, 12, 31), timezones=st.just(dt.UTC)))
def test_a_date_maps_to_the_same_weekday_and_time_near_the_same_day_of_year(at: dt.datetime) -> None:
    step = profile_step(at)
    day, slot = divmod(step, STEPS_PER_DAY)
    simbench_day = dt.date(2016, 1, 1) + dt.timedelta(days=day)
    assert simbench_day.weekday() == at.weekday()
    assert slot == (at.hour * 3600 + at.minute * 60 + at.second) // 900
    assert abs(day - (at.timetuple().tm_yday - 1)) <= 7


def test_naive_times_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        profile_step(dt.datetime(2026, 7, 1, 12))


def test_customers_differ_but_average_to_their_profile(net) -> None:
    table = load_table(net.profiles)
    n = 4000
    profiles = CustomerProfiles(
        table,
        profile=np.full(n, "H0-A", dtype=object),
        p_ref_w=np.full(n, 3000.0),
        q_ref_var=np.full(n, 1000.0),
        replicas=1,
        rng=np.random.default_rng(7),
    )
    first = profile_step(dt.datetime(2026, 1, 14, tzinfo=dt.UTC))
    p_w, q_var = profiles.window(first, STEPS_PER_DAY)
    assert p_w.shape == (STEPS_PER_DAY, 1, n)
    daily = p_w[:, 0, :].sum(axis=0)
    assert len(np.unique(np.round(daily, 6))) == n, "two customers read alike"
    expected = table.p[first : first + STEPS_PER_DAY, table.names.index("H0-A")].sum() * 3000.0
    assert daily.mean() == pytest.approx(expected, rel=0.03)
    assert (p_w > 0).all()
    # Q follows P's variation: the profile type's Q/P ratio holds customer by customer
    column = table.names.index("H0-A")
    rows = first + profiles.shift[0]
    ratio = table.q[rows, column] * 1000.0 / (table.p[rows, column] * 3000.0)
    assert np.allclose(q_var[0, 0] / p_w[0, 0], ratio)


def test_same_seed_same_profiles(net) -> None:
    table = load_table(net.profiles)

    def draw() -> np.ndarray:
        profiles = CustomerProfiles(
            table,
            profile=np.array(["H0-B", "G1-A"], dtype=object),
            p_ref_w=np.array([3000.0, 10_000.0]),
            q_ref_var=np.array([900.0, 3000.0]),
            replicas=3,
            rng=np.random.default_rng(42),
        )
        return profiles.window(100, 8)[0]

    assert np.array_equal(draw(), draw())


def test_unknown_profile_names_are_refused(net) -> None:
    table = load_table(net.profiles)
    with pytest.raises(KeyError, match="XX-9"):
        table.columns(["H0-A", "XX-9"])


def test_pv_is_zero_at_night_and_positive_at_noon(net) -> None:
    table: ProfileTable = generation_table(net.profiles)
    pv = next(name for name in table.names if name.startswith("PV"))
    midnight = profile_step(dt.datetime(2026, 6, 21, 0, tzinfo=dt.UTC))
    day = generation_window(table, profile=[pv], p_ref_w=np.array([10_000.0]), first_step=midnight, steps=96)
    assert day[0, 0] == 0.0
    assert day[48, 0] > 2000.0
    assert (day <= 10_000.0).all()
