"""Scenario files: what a user writes, what gridloom reads from it, and how it says what is wrong."""

import datetime as dt
from pathlib import Path

import pytest

from gridloom.devices.comms import CommConfig
from gridloom.errors import ScenarioError
from gridloom.grid.connectivity import build_connectivity
from gridloom.grid.networks import load_district
from gridloom.scenario.spec import (
    AttackDrillEvent,
    DemandResponseEvent,
    FaultEvent,
    MeterFirmwareEvent,
    Scenario,
    StormEvent,
    bundled_scenarios,
    check_devices,
    default_scenario,
    format_duration,
    load_bundled,
    load_scenario,
    parse_duration,
)

UTC = dt.UTC
DAY1 = dt.datetime(2026, 7, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def rural():
    district = load_district("1-MVLV-rural-all-0-sw")
    return district, build_connectivity(district)


def _error(text: str) -> ScenarioError:
    with pytest.raises(ScenarioError) as info:
        load_scenario(text)
    return info.value


def _fault(extra: str = "", at: str = "'10:00'", device: str = "fuse-1775") -> str:
    return f"timeline:\n  - at: {at}\n    kind: fault\n    device: {device}\n{extra}"


# --------------------------------------------------------------------------- the default and round trips
def test_default_scenario_is_the_documented_clean_day() -> None:
    s = default_scenario()
    assert s.name == "default"
    assert (s.grid.district, s.grid.customers, s.seed) == ("1-MVLV-rural-all-0-sw", 3000, 1)
    assert (s.time.start, s.end, s.time.steps) == (DAY1, DAY1 + dt.timedelta(days=1), 96)
    assert s.systems == ("ami_headend", "mdms", "cis", "billing", "oms")
    schedule = [(at.strftime("%H:%M"), event) for at, event in s.schedule()]
    assert [(t, e.kind) for t, e in schedule] == [("06:00", "meter_firmware"), ("10:07", "fault"), ("14:03", "fault")]
    firmware, fuse, recloser = (e for _, e in schedule)
    assert isinstance(firmware, MeterFirmwareEvent)
    assert (firmware.problem, firmware.share, firmware.seconds) == ("clock_jump", 0.01, 600)
    assert isinstance(fuse, FaultEvent)
    assert (fuse.device, fuse.temporary, fuse.repair) == ("fuse-1775", False, 3 * 3600)
    assert isinstance(recloser, FaultEvent)
    assert (recloser.device, recloser.temporary, recloser.repair) == ("rcl-10788", True, None)
    assert not any(isinstance(e, AttackDrillEvent) for e in s.timeline)  # a clean run rejects nothing


def test_an_empty_file_is_the_default_scenario_but_for_name_and_description() -> None:
    empty, default = load_scenario(""), default_scenario()
    assert empty.name == "scenario"
    assert empty.model_dump(exclude={"name", "description"}) == default.model_dump(exclude={"name", "description"})
    assert load_scenario("{}") == empty


def test_a_file_without_a_name_is_named_after_it(tmp_path: Path) -> None:
    path = tmp_path / "heatwave.yaml"
    path.write_text("grid: {customers: 10}\n")
    assert load_scenario(path).name == "heatwave"


@pytest.mark.parametrize("name", ["default", "storm"])
def test_to_yaml_reads_back_equal(name: str) -> None:
    scenario = load_bundled(name)
    text = scenario.to_yaml()
    assert load_scenario(text) == scenario
    assert load_scenario(load_scenario(text).to_yaml()).to_yaml() == text


def test_bundled_storm_has_a_storm_a_firmware_problem_and_an_attack_drill() -> None:
    assert {"default", "storm"} <= set(bundled_scenarios())
    storm = load_bundled("storm")
    kinds = {e.kind for e in storm.timeline}
    assert {"storm", "meter_firmware", "attack_drill", "fault"} <= kinds
    firmware = next(e for e in storm.timeline if isinstance(e, MeterFirmwareEvent))
    assert (firmware.problem, firmware.duration, firmware.seconds) == ("silent", 6 * 3600, None)
    drill = next(e for e in storm.timeline if isinstance(e, AttackDrillEvent))
    assert drill.at_datetime(storm.time.start) == DAY1 + dt.timedelta(hours=12)
    assert len(drill.attacks) == 5


def test_bundled_scenarios_name_real_devices_and_substations(rural) -> None:
    district, connectivity = rural
    for name in ("default", "storm"):
        check_devices(load_bundled(name), district=district, connectivity=connectivity)


def test_communication_maps_onto_comm_config() -> None:
    s = load_scenario("communication: {concentrator_size: 200, read_loss: 0.1, last_gasp_loss: 0.5}")
    config = s.comm_config()
    assert (config.concentrator_size, config.read_loss_probability, config.last_gasp_loss_probability) == (
        200,
        0.1,
        0.5,
    )
    defaults = CommConfig()
    assert config.batch_loss_probability == defaults.batch_loss_probability
    assert default_scenario().comm_config() == defaults


# --------------------------------------------------------------------------- times and durations
@pytest.mark.parametrize(
    ("written", "normalised", "when"),
    [
        ("'10:07'", "10:07", DAY1 + dt.timedelta(hours=10, minutes=7)),
        ("10:07", "10:07", DAY1 + dt.timedelta(hours=10, minutes=7)),  # unquoted: not YAML 1.1's base-60 607
        ("'9:05:30'", "09:05:30", DAY1 + dt.timedelta(hours=9, minutes=5, seconds=30)),
        ("D2 10:07", "D2 10:07", DAY1 + dt.timedelta(days=1, hours=10, minutes=7)),
        ("'d1 23:59'", "23:59", DAY1 + dt.timedelta(hours=23, minutes=59)),
        ("2026-07-02T12:00:00+02:00", "2026-07-02T10:00:00Z", DAY1 + dt.timedelta(days=1, hours=10)),
        ("'2026-07-01T10:07:00Z'", "2026-07-01T10:07:00Z", DAY1 + dt.timedelta(hours=10, minutes=7)),
    ],
)
def test_at_forms_resolve_against_the_start(written: str, normalised: str, when: dt.datetime) -> None:
    s = load_scenario(f"time: {{days: 2}}\ntimeline:\n  - {{at: {written}, kind: storm, duration: 15min}}\n")
    (event,) = s.timeline
    assert event.at == normalised
    assert event.at_datetime(s.time.start) == when
    assert s.schedule() == [(when, event)]


def test_relative_times_follow_the_start_date() -> None:
    s = load_scenario("time: {start: 2026-12-24}\ntimeline: [{at: '18:00', kind: storm}]")
    assert s.time.start == dt.datetime(2026, 12, 24, tzinfo=UTC)
    assert s.schedule()[0][0] == dt.datetime(2026, 12, 24, 18, tzinfo=UTC)


def test_schedule_is_in_time_order_whatever_the_file_order() -> None:
    s = load_scenario("timeline: [{at: '16:00', kind: storm}, {at: '06:00', kind: meter_firmware}]")
    assert [e.kind for _, e in s.schedule()] == ["meter_firmware", "storm"]


@pytest.mark.parametrize(
    ("text", "seconds"), [("90s", 90), ("15min", 900), ("3h", 10800), ("2d", 172800), ("1.5h", 5400)]
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds
    assert parse_duration(format_duration(seconds)) == seconds


@pytest.mark.parametrize("bad", ["3 hours", "90", 90, "0s", "-1h", "3m", "", None])
def test_bad_durations_say_how_to_write_one(bad: object) -> None:
    with pytest.raises(ValueError, match=r"duration"):
        parse_duration(bad)


# --------------------------------------------------------------------------- errors name line and field
@pytest.mark.parametrize(
    ("text", "line", "field", "says"),
    [
        pytest.param("seed: 1\ngrid:\n  customers: many\n", 3, "grid.customers", "valid integer", id="wrong type"),
        pytest.param("grid:\n  custmers: 10\n", 2, "grid.custmers", "did you mean 'customers'", id="unknown key"),
        pytest.param(
            _fault("    devcie: x\n"), 5, "timeline[0].devcie", "did you mean 'device'", id="unknown event key"
        ),
        pytest.param(_fault(at="D2 10:00"), 2, "timeline[0].at", "outside the run", id="at after the run"),
        pytest.param(_fault(at="'25:00'"), 2, "timeline[0].at", "not a time of day", id="at not a time"),
        pytest.param(
            _fault("    repair: 3 hours\n"), 5, "timeline[0].repair", "90s, 15min, 3h or 2d", id="bad duration"
        ),
        pytest.param(
            "grid:\n  district: 1-MVLV-rural-all-1-sw\n",
            2,
            "grid.district",
            "known: 1-MVLV-rural-all-0-sw, 1-MVLV-semiurb-all-0-sw",
            id="unknown district",
        ),
        pytest.param(
            "customers:\n  tariff_shares:\n    residential: {R-FLAT: 0.5, R-TOU: 0.4}\n",
            3,
            "customers.tariff_shares.residential",
            "sum to 0.9, not 1",
            id="shares not summing to 1",
        ),
        pytest.param(
            "customers:\n  tariff_shares:\n    residential: {R-FLT: 1.0}\n",
            3,
            "customers.tariff_shares.residential.R-FLT",
            "did you mean 'R-FLAT'",
            id="unknown tariff",
        ),
        pytest.param("customers:\n  ev_share: 1.5\n", 2, "customers.ev_share", "less than or equal to 1", id="share"),
        pytest.param("systems: [oms]\n", 1, "systems[0]", "oms needs ami_headend", id="oms needs head-end"),
        pytest.param(
            "systems:\n  - ami_headend\n  - DRMS\n",
            3,
            "systems[1]",
            "lms needs ami_headend and cis: add cis",
            id="drms",
        ),
        pytest.param("systems: [ami_headend, mdsm]\n", 1, "systems[1]", "did you mean mdms", id="unknown system"),
        pytest.param(
            "systems: [ami_headend, mdms, billing]\n", 1, "systems[2]", "billing needs mdms and cis", id="needs"
        ),
        pytest.param("systems: [mdms]\n", 1, "systems[0]", "mdms needs ami_headend", id="mdms needs head-end"),
        pytest.param("systems: [customer]\n", 1, "systems[0]", "not a system gridloom runs", id="not a system"),
        pytest.param("systems: [ami_headend]\n", 1, "systems", "the meters report to ami_headend and mdms", id="core"),
        pytest.param(
            "timeline:\n  - at: '17:00'\n    kind: demand_response\n",
            3,
            "timeline[0].kind",
            "a demand_response event is run by the LMS: add lms to systems",
            id="demand response without the lms",
        ),
        pytest.param(
            "timeline:\n  - at: '17:00'\n    kind: fualt\n", 3, "timeline[0].kind", "did you mean 'fault'", id="kind"
        ),
        pytest.param("timeline:\n  - kind: storm\n", 2, "timeline[0].at", "missing", id="at missing"),
        pytest.param(
            _fault("    temporary: true\n    repair: 1h\n"), 6, "timeline[0].repair", "drop repair", id="temp"
        ),
        pytest.param(
            "timeline:\n  - {at: '10:00', kind: fault}\n", 2, "timeline[0]", "device: fuse-1775", id="no device"
        ),
        pytest.param(
            "timeline:\n  - at: '23:00'\n    kind: storm\n    duration: 2h\n",
            4,
            "timeline[0].duration",
            "lasts past the end",
            id="storm past the end",
        ),
        pytest.param("time:\n  step: 5min\n", 2, "time.step", "only 15min", id="step"),
        pytest.param("time:\n  start: 2026-07-01T00:07:00Z\n", 2, "time.start", "15-minute boundary", id="start"),
        pytest.param("time:\n  start: 2026-07-01T00:00:00\n", 2, "time.start", "no timezone", id="naive start"),
        pytest.param("time:\n  days: 0.3\n", 2, "time.days", "whole number of 15-minute steps", id="days"),
        pytest.param(
            "programs: {demand_response_share: 0.2}\n", 1, "programs.demand_response_share", "add lms", id="dr"
        ),
        pytest.param("seed: 1\nseed: 2\n", 2, "seed", "appears twice (also line 1)", id="duplicate key"),
        pytest.param("name: my run\n", 1, "name", "names the run folder", id="name"),
    ],
)
def test_each_error_names_line_and_field(text: str, line: int, field: str, says: str) -> None:
    error = _error(text)
    assert (error.line, error.field) == (line, field), str(error)
    assert says in error.message
    assert str(error).startswith(f"line {line}, {field}: ")


def test_the_message_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("name: bad\ngrid:\n  customers: 0\n")
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    assert str(info.value) == f"{path}, line 3, grid.customers: Input should be greater than or equal to 1 (got 0)"
    assert info.value.source == str(path)


@pytest.mark.parametrize(
    ("text", "line"),
    [("grid:\n  customers: 3000\n time: x\n", 3), ("seed: 1\ntimeline: [\n", 3), ("a: 'unclosed\n", 2)],
)
def test_yaml_syntax_errors_give_the_line(text: str, line: int) -> None:
    error = _error(text)
    assert error.line == line
    assert "not valid YAML" in str(error)


def test_every_problem_is_reported_at_once() -> None:
    error = _error("seed: -1\ngrid:\n  customers: 0\n")
    assert [(e.line, e.field) for e in (error, *error.also)] == [(1, "seed"), (3, "grid.customers")]
    assert len(str(error).splitlines()) == 2


def test_not_a_mapping_and_missing_file(tmp_path: Path) -> None:
    assert "pass a Path" in str(_error("storm.yaml"))
    with pytest.raises(ScenarioError, match="no such file"):
        load_scenario(tmp_path / "nope.yaml")


# --------------------------------------------------------------------------- checks against the grid
def test_unknown_device_names_close_ones(rural) -> None:
    district, connectivity = rural
    scenario = load_scenario(_fault(device="fuse-17755"))
    with pytest.raises(ScenarioError) as info:
        check_devices(scenario, district=district, connectivity=connectivity)
    assert (info.value.line, info.value.field) == (4, "timeline[0].device")
    assert "no device 'fuse-17755' in district 1-MVLV-rural-all-0-sw (close: fuse-1775" in str(info.value)


def test_substation_must_exist_in_the_territory(rural) -> None:
    district, connectivity = rural  # 5,373 customers per substation
    text = _fault("    substation: 1\n")
    with pytest.raises(ScenarioError, match=r"no substation 1: 3,000 customers .* make 1 substation") as info:
        check_devices(load_scenario(text), district=district, connectivity=connectivity)
    assert (info.value.line, info.value.field) == (5, "timeline[0].substation")
    bigger = load_scenario("grid: {customers: 6000}\n" + text)
    check_devices(bigger, district=district, connectivity=connectivity)
    # an override that shrinks the territory is caught too, at the event's line
    with pytest.raises(ScenarioError, match="no substation 1"):
        check_devices(bigger.with_overrides(customers=5373), district=district, connectivity=connectivity)


def test_check_devices_loads_no_grid_without_faults(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_loading(code: str) -> None:
        raise AssertionError(f"loaded {code}")

    monkeypatch.setattr("gridloom.scenario.spec.load_district", no_loading)
    check_devices(Scenario(timeline=()))
    check_devices(load_scenario("timeline: [{at: '16:00', kind: storm}]"))


# --------------------------------------------------------------------------- overrides
def test_overrides_return_a_validated_copy() -> None:
    default = default_scenario()
    bigger = default.with_overrides(customers=20_000, days=2, seed=5)
    assert (bigger.grid.customers, bigger.time.days, bigger.seed) == (20_000, 2, 5)
    assert bigger.end == DAY1 + dt.timedelta(days=2)
    assert default.grid.customers == 3000  # unchanged
    assert default.with_overrides() == default


def test_invalid_overrides_are_refused() -> None:
    with pytest.raises(ScenarioError) as info:
        default_scenario().with_overrides(customers=0)
    assert info.value.field == "grid.customers (override)"
    assert info.value.line is None
    # shortening the run leaves the 14:03 fault outside it: said at the fault's line in default.yaml
    with pytest.raises(ScenarioError) as info:
        default_scenario().with_overrides(days=0.5)
    assert info.value.field == "timeline[2].at"
    assert info.value.source is not None
    assert info.value.source.endswith("default.yaml")
    assert info.value.line is not None


def test_storm_event_defaults() -> None:
    (storm,) = load_scenario("timeline: [{at: '16:00', kind: storm}]").timeline
    assert isinstance(storm, StormEvent)
    assert (storm.duration, storm.faults, storm.temporary_share) == (7200, 12, 0.3)


# --------------------------------------------------------------------------- demand response
LMS = "systems: [ami_headend, mdms, cis, lms]\nprograms: {demand_response_share: 0.3}\n"


def test_a_demand_response_event_reads_with_its_defaults() -> None:
    s = load_scenario(LMS + "timeline:\n  - {at: '17:00', kind: demand_response}\n")
    assert s.systems == ("ami_headend", "mdms", "cis", "lms")
    ((at, event),) = s.schedule()
    assert isinstance(event, DemandResponseEvent)
    assert at == DAY1 + dt.timedelta(hours=17)
    assert (event.program, event.duration, event.notice, event.shed_kw) == ("dlc", 7200, 3600, None)
    assert load_scenario(s.to_yaml()) == s


def test_the_bundled_demand_response_scenario_runs_each_program(rural) -> None:
    s = load_bundled("demand_response")
    assert "demand_response" in bundled_scenarios()
    assert (s.grid.customers, s.time.days, s.programs.demand_response_share) == (3000, 1, 0.3)
    assert (s.programs.reliability_share, s.programs.baseline) == (0.1, "auto")
    assert "lms" in s.systems
    assert "billing" in s.systems  # the credits and the critical-peak charges reach the bills
    events = [(at, e) for at, e in s.schedule() if isinstance(e, DemandResponseEvent)]
    windows = [(e.program, at, at + dt.timedelta(seconds=e.duration)) for at, e in events]
    assert windows == [
        ("cpp", DAY1 + dt.timedelta(hours=15), DAY1 + dt.timedelta(hours=17)),
        ("dlc", DAY1 + dt.timedelta(hours=17), DAY1 + dt.timedelta(hours=19)),
        ("reliability", DAY1 + dt.timedelta(hours=19), DAY1 + dt.timedelta(hours=20)),
    ]
    assert load_scenario(s.to_yaml()) == s
    check_devices(s, district=rural[0], connectivity=rural[1])


@pytest.mark.parametrize(
    ("text", "line", "field", "says"),
    [
        pytest.param(
            "systems: [ami_headend, mdms, lms]\n", 1, "systems[2]", "lms needs ami_headend and cis: add cis", id="cis"
        ),
        pytest.param(
            "systems: [ami_headend, mdms, cis, lms]\ntimeline:\n  - {at: '17:00', kind: demand_response}\n",
            3,
            "timeline[0].kind",
            "set programs.demand_response_share above 0",
            id="nobody enrolled",
        ),
        pytest.param(
            LMS + "timeline:\n  - at: '17:00'\n    kind: demand_response\n    program: rtp\n",
            6,
            "timeline[0].program",
            "program 'rtp' needs a market's real-time price vector, which the scenario runner has not: use one of "
            "dlc, cpp, reliability",
            id="real-time prices",
        ),
        pytest.param(
            LMS.replace("0.3}", "0.3, baseline: ten-in-ten}") + "timeline: []\n",
            2,
            "programs.baseline",
            "unknown baseline 'ten-in-ten' (baselines: auto, 10-in-10, high-5-of-10, control-group)",
            id="unknown baseline",
        ),
        pytest.param(
            LMS.replace("0.3}", "0.3, reliability_share: 1.5}") + "timeline: []\n",
            2,
            "programs.reliability_share",
            "less than or equal to 1",
            id="reliability share above one",
        ),
        pytest.param(
            LMS + "timeline:\n  - at: '17:00'\n    kind: demand_response\n    program: dcl\n",
            6,
            "timeline[0].program",
            "unknown program 'dcl'; did you mean 'dlc'?",
            id="unknown program",
        ),
        pytest.param(
            LMS + "timeline:\n  - at: '17:05'\n    kind: demand_response\n",
            4,
            "timeline[0].at",
            "17:05 is not on a 15-minute boundary",
            id="not on a step",
        ),
        pytest.param(
            LMS + "timeline:\n  - at: '17:00'\n    kind: demand_response\n    duration: 20min\n",
            6,
            "timeline[0].duration",
            "20min is not a whole number of 15-minute steps",
            id="duration",
        ),
        pytest.param(
            LMS + "timeline:\n  - at: '23:00'\n    kind: demand_response\n",
            4,
            "timeline[0].duration",
            "the event lasts past the end of the run (2026-07-02T00:00:00Z)",
            id="past the end",
        ),
        pytest.param(
            LMS + "timeline:\n  - at: '17:00'\n    kind: demand_response\n    shed_kw: 0\n",
            6,
            "timeline[0].shed_kw",
            "greater than 0",
            id="shed nothing",
        ),
    ],
)
def test_demand_response_errors_name_line_and_field(text: str, line: int, field: str, says: str) -> None:
    error = _error(text)
    assert (error.line, error.field) == (line, field), str(error)
    assert says in error.message
