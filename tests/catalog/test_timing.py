"""The timing parser turns the seed's prose into the bounds the fabric will enforce."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gridloom.catalog import TimingKind, parse_timing

CASES = [
    # (statement as the seed writes it, kind, max latency in seconds)
    ("Information shall be delivered in 2-4 seconds.", TimingKind.SECONDS, 4.0),
    ("within 1-2 seconds after the SCADA database is updated with new data", TimingKind.SECONDS, 2.0),
    ("within 1-2 sec after received from the field IEDs", TimingKind.SECONDS, 2.0),
    ("within a minute after each DOMA run", TimingKind.MINUTES, 60.0),
    ("Data shall arrive in the DMS database within an hour after the changes was implemented", TimingKind.HOUR, 3600.0),
    ("near real-time.  5 minutes", TimingKind.MINUTES, 300.0),
    ("near real time, within 3 minutes after sustained loss of power.", TimingKind.MINUTES, 180.0),
    ("Periodic data (every 1-5 min) by event data.", TimingKind.PERIODIC, 300.0),
    ("Within minutes after the change of model information.", TimingKind.MINUTES, None),
    ("within an minutes after the change in the field is completed.", TimingKind.MINUTES, None),
    ("within seconds after the need occurs.", TimingKind.SECONDS, None),
    (
        "Real-time data is being exchanged, with time latency requirements of 1 to a few seconds.",
        TimingKind.SECONDS,
        None,
    ),
    ("hours-days ahead notice.", TimingKind.HOURS_TO_DAYS, None),
    # "a hours in advances" is not "within an hour"; the tightest named option wins.
    (
        "may be in a day ahead timeframe, in a hours in advances, or in a near real time via RTP signal",
        TimingKind.NEAR_REAL_TIME,
        None,
    ),
    ("periodically together with kWh and kvar data.", TimingKind.PERIODIC, None),
    ("", TimingKind.UNSPECIFIED, None),
]


@pytest.mark.parametrize(("statement", "kind", "max_latency_s"), CASES)
def test_seed_statements_parse_to_their_bound(statement: str, kind: TimingKind, max_latency_s: float | None) -> None:
    parsed = parse_timing(statement)
    assert parsed.kind is kind
    assert parsed.max_latency_s == max_latency_s


@given(low=st.integers(1, 59), span=st.integers(0, 59), unit=st.sampled_from(["seconds", "minutes", "sec", "min"]))
def test_a_range_is_bounded_by_its_upper_end(low: int, span: int, unit: str) -> None:
    high = low + span
    scale = 1 if unit.startswith("sec") else 60
    assert parse_timing(f"within {low}-{high} {unit} after the event").max_latency_s == high * scale


@given(st.text(max_size=200))
def test_any_text_parses_without_error(text: str) -> None:
    parsed = parse_timing(text)
    assert parsed.max_latency_s is None or parsed.max_latency_s >= 0
