"""The scenario file: which grid, how many customers, which systems and which events, for how long.

A scenario is YAML (``scenario/data/default.yaml`` documents every key) read into pydantic models
that have a default for every field: an empty file is the default scenario under another name
(and without its description). :func:`load_scenario` raises :class:`~gridloom.errors.ScenarioError`
naming the file, the line and the field (``timeline[1].device``) of every problem found.

**Times.** An event's ``at`` is kept as written, normalised: ``"10:07"`` (a UTC clock time on
the run's first day, the UTC date of ``time.start``), ``"D2 10:07"`` (the second day) or an ISO
datetime with a timezone (kept as UTC, ``2026-07-01T10:07:00Z``). ``event.at_datetime(start)``
resolves it; :meth:`Scenario.schedule` gives every event with its UTC time, in time order. So
``gridloom scenario show`` prints times as the user wrote them, and changing the start date moves
relative events with it.

**Durations** are written ``90s``, ``15min``, ``3h`` or ``2d`` and held as float seconds.

**Checks.** Loading checks everything that needs no grid: types, ranges, known district,
systems and tariffs, ``at`` inside the run. :func:`check_devices` also loads the district's
connectivity model (cached on disk) to check the devices and substations that faults name;
``gridloom scenario validate`` and the runner call it.
"""

from __future__ import annotations

import datetime as dt
import difflib
import math
import re
from collections.abc import Iterable, Mapping
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal, Self

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    PrivateAttr,
    StrictBool,
    ValidationError,
    field_validator,
    model_validator,
)

from gridloom.catalog import load_catalog
from gridloom.devices.comms import CommConfig
from gridloom.errors import ScenarioError, UnknownActor, UnknownGridDevice
from gridloom.grid.connectivity import ConnectivityModel, DeviceKind, build_connectivity
from gridloom.grid.model import District
from gridloom.grid.networks import DEFAULT_DISTRICT, DISTRICTS, load_district
from gridloom.grid.territory import MAX_CUSTOMERS, build_territory
from gridloom.systems.cis.build import DEFAULT_TARIFF_SHARES
from gridloom.systems.cis.model import CustomerClass
from gridloom.systems.cis.tariffs import default_tariffs

Loc = tuple[str | int, ...]

#: Systems the runner can run (catalog actor ids), and what each needs beside it.
IMPLEMENTED_SYSTEMS: tuple[str, ...] = ("ami_headend", "mdms", "cis", "billing", "oms", "lms")
SYSTEM_NEEDS: dict[str, tuple[str, ...]] = {
    "mdms": ("ami_headend",),
    "billing": ("mdms", "cis"),
    "oms": ("ami_headend",),
    "lms": ("ami_headend", "cis"),  # direct load control goes through the head-end; the CIS enrols
}
#: The systems of a scenario that names none (``default.yaml`` lists them).
DEFAULT_SYSTEMS: tuple[str, ...] = ("ami_headend", "mdms", "cis", "billing", "oms")
#: The field network always runs, and its meters report through these.
CORE_SYSTEMS: tuple[str, ...] = ("ami_headend", "mdms")
#: Catalogued systems that are planned, with the issue that builds them.
PLANNED_SYSTEMS: dict[str, int] = {}
#: Demand-response programs the LMS knows, and those the scenario runner runs: direct load control through the
#: head-end, critical-peak prices and reliability levels as OpenADR events to the customers' EMS VENs (real-time
#: prices need a market's price vector, which the runner has not).
DR_PROGRAMS: tuple[str, ...] = ("dlc", "cpp", "rtp", "reliability")
RUNNER_DR_PROGRAMS: tuple[str, ...] = ("dlc", "cpp", "reliability")
#: How settlement computes baselines (``programs.baseline``); auto: 10-in-10 with the history, else control-group.
BASELINES: tuple[str, ...] = ("auto", "10-in-10", "high-5-of-10", "control-group")
ATTACKS: tuple[str, ...] = ("replay", "tampered", "forged_identity", "unauthorised_command", "disconnect_flood")
STEP_S = 900.0  # the SimBench load and generation profiles are 15-minute series

_DATA = resources.files("gridloom.scenario") / "data"
_DEFAULT_START = dt.datetime(2026, 7, 1, tzinfo=dt.UTC)
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class _Problems(ValueError):
    """Raised inside validators: problems with paths relative to the validated value.

    pydantic keeps the exception in the error's ``ctx``, so the paths survive to the line lookup.
    """

    def __init__(self, problems: Iterable[tuple[Loc, str]]) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(message for _, message in self.problems))


def _did_you_mean(word: str, options: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(options), n=3, cutoff=0.6)
    return f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""


# --------------------------------------------------------------------------- durations and times
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|min|h|d)\s*$")
_UNIT_S = {"s": 1.0, "min": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(value: object) -> float:
    """Seconds of a duration written ``90s``, ``15min``, ``3h`` or ``2d``; ValueError for anything else."""
    if isinstance(value, str) and (match := _DURATION.match(value)):
        seconds = float(match[1]) * _UNIT_S[match[2]]
        if seconds > 0:
            return seconds
        raise ValueError(f"duration {value!r} must be longer than 0")
    # a bare number is refused: 90 could mean seconds or minutes
    raise ValueError(f"{value!r} is not a duration: write a number and a unit, e.g. 90s, 15min, 3h or 2d")


def format_duration(seconds: float) -> str:
    """The shortest way :func:`parse_duration` reads back: 10800 -> ``3h``, 5400 -> ``90min``."""
    for unit in ("d", "h", "min"):
        count = seconds / _UNIT_S[unit]
        if count >= 1 and count == int(count):
            return f"{int(count)}{unit}"
    return f"{seconds:g}s"


Duration = Annotated[
    float, BeforeValidator(parse_duration), PlainSerializer(format_duration, return_type=str, when_used="json")
]
Share = Annotated[float, Field(ge=0.0, le=1.0)]

_AT = re.compile(r"^(?:[Dd](\d+)\s+)?(\d{1,2}):(\d{2})(?::(\d{2}))?$")


def _iso(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def _at_text(value: object) -> str:
    """Normalise an ``at``: ``"9:05"`` -> ``"09:05"``, ``"d2 9:05"`` -> ``"D2 09:05"``, datetimes -> ISO UTC."""
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            raise ValueError(f"{value.isoformat()} has no timezone: add one, e.g. {value.isoformat()}Z")
        return _iso(value)
    if isinstance(value, str):
        text = value.strip()
        if match := _AT.match(text):
            day, hour, minute, second = int(match[1] or 1), int(match[2]), int(match[3]), int(match[4] or 0)
            if day < 1 or hour > 23 or minute > 59 or second > 59:
                raise ValueError(f"{value!r} is not a time of day (days count from D1, hours 00-23)")
            clock = f"{hour:02d}:{minute:02d}" + (f":{second:02d}" if second else "")
            return f"D{day} {clock}" if day > 1 else clock
        try:
            parsed = dt.datetime.fromisoformat(text)
        except ValueError:
            pass
        else:
            return _at_text(parsed)
    raise ValueError(
        f'{value!r} is not a time: write "HH:MM" (day 1), "D2 HH:MM" (day 2) or an ISO datetime with a '
        "timezone such as 2026-07-01T10:07:00Z"
    )


def resolve_at(at: str, start: dt.datetime) -> dt.datetime:
    """The UTC datetime of a normalised ``at`` in a run starting at ``start`` (see the module docstring)."""
    match = _AT.match(at)
    if match is None:
        return dt.datetime.fromisoformat(at).astimezone(dt.UTC)
    midnight = start.astimezone(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    day, hour, minute, second = int(match[1] or 1), int(match[2]), int(match[3]), int(match[4] or 0)
    return midnight + dt.timedelta(days=day - 1, hours=hour, minutes=minute, seconds=second)


At = Annotated[str, BeforeValidator(_at_text)]


# --------------------------------------------------------------------------- models
class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class GridSpec(_Model):
    district: str = DEFAULT_DISTRICT
    customers: int = Field(default=3000, ge=1, le=MAX_CUSTOMERS)

    @field_validator("district")
    @classmethod
    def _known_district(cls, code: str) -> str:
        # Only the listed districts: other SimBench codes would need the grid loaded (seconds) to check.
        if code not in DISTRICTS:
            raise ValueError(
                f"unknown district {code!r}{_did_you_mean(code, DISTRICTS)} (known: {', '.join(DISTRICTS)})"
            )
        return code


class TimeSpec(_Model):
    start: dt.datetime = _DEFAULT_START
    days: float = Field(default=1.0, gt=0, le=366)
    step: Duration = STEP_S

    @field_validator("start", mode="before")
    @classmethod
    def _date_is_midnight(cls, value: object) -> object:
        if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
            return dt.datetime(value.year, value.month, value.day, tzinfo=dt.UTC)
        return value

    @field_validator("start")
    @classmethod
    def _aware_quarter_hour(cls, start: dt.datetime) -> dt.datetime:
        if start.tzinfo is None:
            raise ValueError(f"{start.isoformat()} has no timezone: add one, e.g. {start.isoformat()}Z")
        start = start.astimezone(dt.UTC)
        if start.minute % 15 or start.second or start.microsecond:
            raise ValueError(f"{_iso(start)} is not on a 15-minute boundary (the profiles' steps)")
        return start

    @field_validator("days")
    @classmethod
    def _whole_steps(cls, days: float) -> float:
        steps = days * 86400 / STEP_S
        if abs(steps - round(steps)) > 1e-9:
            raise ValueError(f"{days} days is not a whole number of 15-minute steps (e.g. 0.25, 1, 7)")
        return days

    @field_validator("step")
    @classmethod
    def _fifteen_minutes(cls, step: float) -> float:
        if step != STEP_S:
            raise ValueError(
                f"only 15min is supported, not {format_duration(step)}: the SimBench profiles are 15-minute series"
            )
        return step

    @property
    def end(self) -> dt.datetime:
        return self.start + dt.timedelta(days=self.days)

    @property
    def steps(self) -> int:
        return round(self.days * 86400 / self.step)


def _default_tariff_shares() -> dict[CustomerClass, dict[str, float]]:
    return {klass: dict(shares) for klass, shares in DEFAULT_TARIFF_SHARES.items()}


class CustomersSpec(_Model):
    ev_share: Share = 0.08
    battery_share: Share = 0.03
    #: share of each class's customers on each tariff; classes left out keep the defaults
    tariff_shares: dict[CustomerClass, dict[str, Share]] = Field(default_factory=_default_tariff_shares)

    @field_validator("tariff_shares")
    @classmethod
    def _known_tariffs_summing_to_one(
        cls, shares: dict[CustomerClass, dict[str, float]]
    ) -> dict[CustomerClass, dict[str, float]]:
        tariffs = default_tariffs()
        problems: list[tuple[Loc, str]] = []
        for klass, by_tariff in shares.items():
            for tariff in by_tariff:
                if tariff not in tariffs:
                    hint = _did_you_mean(tariff, tariffs)
                    problems.append(
                        ((klass.value, tariff), f"unknown tariff {tariff!r}{hint} (tariffs: {', '.join(tariffs)})")
                    )
            total = sum(by_tariff.values())
            if not math.isclose(total, 1.0, abs_tol=1e-6):
                problems.append(((klass.value,), f"the {klass.value} tariff shares sum to {total:g}, not 1"))
        if problems:
            raise _Problems(problems)
        return {**_default_tariff_shares(), **shares}


class ProgramsSpec(_Model):
    #: share of the residential LV customers enrolled in demand response, drawn with the seed; above 0 only
    #: with the lms system. Those on a critical-peak tariff are in the cpp program, ``reliability_share`` of the
    #: others in the reliability program (both through their EMS's OpenADR VEN), the rest in direct load control
    demand_response_share: Share = 0.0
    #: share of the enrolled customers not on a critical-peak tariff in the reliability program
    reliability_share: Share = 0.0
    #: the baseline settlement uses: auto (10-in-10 when the run has the days of reads before an event, else
    #: control-group), 10-in-10, high-5-of-10 or control-group (non-enrolled residential LV meters)
    baseline: str = "auto"

    @field_validator("baseline")
    @classmethod
    def _known_baseline(cls, baseline: str) -> str:
        if baseline not in BASELINES:
            raise ValueError(
                f"unknown baseline {baseline!r}{_did_you_mean(baseline, BASELINES)} (baselines: {', '.join(BASELINES)})"
            )
        return baseline


_COMM = CommConfig()


class CommunicationSpec(_Model):
    """The AMI network's losses; maps onto :class:`~gridloom.devices.comms.CommConfig` (delays stay its defaults)."""

    concentrator_size: int = Field(default=_COMM.concentrator_size, ge=1)
    read_loss: Share = _COMM.read_loss_probability
    batch_loss: Share = _COMM.batch_loss_probability
    event_loss: Share = _COMM.event_loss_probability
    last_gasp_loss: Share = _COMM.last_gasp_loss_probability


class _Event(_Model):
    at: At

    def at_datetime(self, start: dt.datetime) -> dt.datetime:
        """When the event happens in a run starting at ``start`` (UTC)."""
        return resolve_at(self.at, start)

    def describe(self) -> str:
        """One line for summaries and the run's timeline."""
        raise NotImplementedError


RandomDevice = Literal["fuse", "recloser", "transformer", "breaker"]
RANDOM_KINDS: dict[str, DeviceKind] = {
    "fuse": DeviceKind.FUSE,
    "recloser": DeviceKind.RECLOSER,
    "transformer": DeviceKind.SERVICE_TRANSFORMER,
    "breaker": DeviceKind.BREAKER,
}
DEFAULT_REPAIR = "2h"


class FaultEvent(_Event):
    """A fault on the section below ``device`` (or a ``random`` device of a kind, drawn with the seed)."""

    kind: Literal["fault"] = "fault"
    device: str | None = None
    random: RandomDevice | None = None
    substation: int = Field(default=0, ge=0)  # territory replica
    temporary: StrictBool = False  # cleared by reclosing: a momentary interruption only
    repair: Duration | None = None  # permanent faults: repaired this long after the fault

    @model_validator(mode="before")
    @classmethod
    def _default_repair(cls, data: object) -> object:
        # Filled here, not as a field default, so that `temporary: true` with a repair is an error.
        if isinstance(data, dict) and data.get("temporary") is not True and data.get("repair") is None:
            return {**data, "repair": DEFAULT_REPAIR}
        return data

    @model_validator(mode="after")
    def _one_device(self) -> Self:
        if self.device is None and self.random is None:
            raise _Problems([((), "name the faulted device (device: fuse-1775) or a kind to draw (random: fuse)")])
        if self.device is not None and self.random is not None:
            raise _Problems([(("random",), "give device or random, not both")])
        if self.temporary and self.repair is not None:
            raise _Problems([(("repair",), "a temporary fault clears itself when reclosed: drop repair")])
        return self

    def describe(self) -> str:
        what = self.device if self.device is not None else f"a random {self.random}"
        how = "temporary" if self.repair is None else f"repair {format_duration(self.repair)}"
        return f"{what} (substation {self.substation}), {how}"


class StormEvent(_Event):
    """``faults`` random faults (fuses, reclosers, transformers) spread over ``duration``."""

    kind: Literal["storm"] = "storm"
    duration: Duration = 7200.0
    faults: int = Field(default=12, ge=1)
    temporary_share: Share = 0.3

    def describe(self) -> str:
        return f"{self.faults} faults over {format_duration(self.duration)}, {self.temporary_share:.0%} temporary"


class MeterFirmwareEvent(_Event):
    """A bad firmware push: clocks jump by ``seconds``, or meters go ``silent`` for ``duration``."""

    kind: Literal["meter_firmware"] = "meter_firmware"
    problem: Literal["clock_jump", "silent"] = "clock_jump"
    share: Share = 0.02  # of the meters, drawn with the seed
    seconds: float | None = Field(default=None, allow_inf_nan=False)  # clock_jump only
    duration: Duration | None = None  # silent only

    @model_validator(mode="before")
    @classmethod
    def _defaults_for_problem(cls, data: object) -> object:
        if isinstance(data, dict):
            if data.get("problem", "clock_jump") == "clock_jump" and data.get("seconds") is None:
                return {**data, "seconds": 600}
            if data.get("problem") == "silent" and data.get("duration") is None:
                return {**data, "duration": "6h"}
        return data

    @model_validator(mode="after")
    def _fields_of_problem(self) -> Self:
        if self.problem == "clock_jump" and self.duration is not None:
            raise _Problems([(("duration",), "a clock jump is instant: drop duration (it is for problem: silent)")])
        if self.problem == "silent" and self.seconds is not None:
            raise _Problems([(("seconds",), "silent meters do not jump: drop seconds (it is for clock_jump)")])
        if self.seconds == 0:
            raise _Problems([(("seconds",), "a clock jump of 0 seconds changes nothing")])
        return self

    def describe(self) -> str:
        if self.problem == "silent" and self.duration is not None:
            return f"{self.share:.1%} of meters silent for {format_duration(self.duration)}"
        return f"{self.share:.1%} of meters' clocks jump by {self.seconds:+g} s"


class AttackDrillEvent(_Event):
    """Attacks the fabric must reject, injected at ``at``."""

    kind: Literal["attack_drill"] = "attack_drill"
    attacks: tuple[
        Literal["replay", "tampered", "forged_identity", "unauthorised_command", "disconnect_flood"], ...
    ] = (
        "replay",
        "tampered",
        "forged_identity",
        "unauthorised_command",
        "disconnect_flood",
    )

    @field_validator("attacks")
    @classmethod
    def _distinct(cls, attacks: tuple[str, ...]) -> tuple[str, ...]:
        if not attacks:
            raise ValueError(f"give at least one attack (or leave attacks out for all: {', '.join(ATTACKS)})")
        for i, attack in enumerate(attacks):
            if attack in attacks[:i]:
                raise _Problems([((i,), f"{attack} is listed twice")])
        return attacks

    def describe(self) -> str:
        return ", ".join(self.attacks)


class DemandResponseEvent(_Event):
    """A demand-response event from ``at`` for ``duration`` (needs the ``lms`` system).

    The DMS sends the LMS the requirement ``notice`` ahead (or when the run starts, if later) and the LMS
    dispatches ``program`` — ``dlc`` (direct load control through the AMI head-end), ``cpp`` (a critical-peak
    price) or ``reliability`` (a simple level), the last two as OpenADR events to the customers' EMS VENs —
    to enrolled customers until ``shed_kw`` is expected (all of the program's customers without it).
    """

    kind: Literal["demand_response"] = "demand_response"
    duration: Duration = 7200.0
    program: str = "dlc"
    shed_kw: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    notice: Duration = 3600.0

    @field_validator("program")
    @classmethod
    def _runner_program(cls, program: str) -> str:
        if program in RUNNER_DR_PROGRAMS:
            return program
        if program in DR_PROGRAMS:
            raise ValueError(
                f"program {program!r} needs a market's real-time price vector, which the scenario runner has not: "
                f"use one of {', '.join(RUNNER_DR_PROGRAMS)}"
            )
        raise ValueError(
            f"unknown program {program!r}{_did_you_mean(program, DR_PROGRAMS)} (the runner runs: "
            f"{', '.join(RUNNER_DR_PROGRAMS)})"
        )

    @field_validator("duration")
    @classmethod
    def _whole_steps(cls, duration: float) -> float:
        if duration % STEP_S:
            raise ValueError(
                f"{format_duration(duration)} is not a whole number of 15-minute steps (the devices act per step)"
            )
        return duration

    def describe(self) -> str:
        how_much = f"{self.shed_kw:g} kW" if self.shed_kw is not None else "every enrolled customer"
        return f"{self.program} for {format_duration(self.duration)}, {how_much}"


TimelineEvent = Annotated[
    FaultEvent | StormEvent | MeterFirmwareEvent | AttackDrillEvent | DemandResponseEvent, Field(discriminator="kind")
]
EVENT_MODELS: dict[str, type[_Event]] = {
    "fault": FaultEvent,
    "storm": StormEvent,
    "meter_firmware": MeterFirmwareEvent,
    "attack_drill": AttackDrillEvent,
    "demand_response": DemandResponseEvent,
}


def _default_timeline() -> tuple[FaultEvent | MeterFirmwareEvent, ...]:
    """The default day's events (``default.yaml`` writes them out; a test keeps the two equal)."""
    return (
        MeterFirmwareEvent(at="06:00", share=0.01, seconds=600),
        FaultEvent.model_validate({"at": "10:07", "device": "fuse-1775", "repair": "3h"}),
        FaultEvent(at="14:03", device="rcl-10788", temporary=True),
    )


class Scenario(_Model):
    """One scenario: see ``scenario/data/default.yaml`` for every key."""

    name: str = "scenario"
    description: str = ""
    seed: int = Field(default=1, ge=0)
    grid: GridSpec = GridSpec()
    time: TimeSpec = TimeSpec()
    systems: tuple[str, ...] = DEFAULT_SYSTEMS
    customers: CustomersSpec = CustomersSpec()
    programs: ProgramsSpec = ProgramsSpec()
    communication: CommunicationSpec = CommunicationSpec()
    timeline: tuple[TimelineEvent, ...] = Field(default_factory=_default_timeline)

    # where it was read from, for error messages (also of check_devices); not part of equality
    _source: str | None = PrivateAttr(default=None)
    _lines: dict[Loc, int] = PrivateAttr(default_factory=dict)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Scenario) and self.model_dump() == other.model_dump()

    __hash__ = None  # type: ignore[assignment]

    @field_validator("name")
    @classmethod
    def _folder_name(cls, name: str) -> str:
        if not _NAME.match(name):
            raise ValueError(f"{name!r}: a name is 1-64 letters, digits, '.', '_' or '-' (it names the run folder)")
        return name

    @field_validator("systems")
    @classmethod
    def _known_systems(cls, systems: tuple[str, ...]) -> tuple[str, ...]:
        catalog = load_catalog()
        problems: list[tuple[Loc, str]] = []
        ids: list[str] = []
        for i, name in enumerate(systems):
            try:
                actor = catalog.resolve_actor(name).id
            except UnknownActor as exc:
                problems.append(((i,), str(exc)))
                continue
            if actor in PLANNED_SYSTEMS:
                named = name if name == actor else f"{name} (catalog actor {actor})"
                problems.append(((i,), f"{named} is not built yet (issue {PLANNED_SYSTEMS[actor]})"))
            elif actor not in IMPLEMENTED_SYSTEMS:
                problems.append(
                    ((i,), f"{actor} is not a system gridloom runs (systems: {', '.join(IMPLEMENTED_SYSTEMS)})")
                )
            elif actor in ids:
                problems.append(((i,), f"{actor} is listed twice"))
            ids.append(actor)
        for i, actor in enumerate(ids):
            missing = [need for need in SYSTEM_NEEDS.get(actor, ()) if need not in ids]
            if missing:
                problems.append(((i,), f"{actor} needs {' and '.join(SYSTEM_NEEDS[actor])}: add {', '.join(missing)}"))
        core_missing = [core for core in CORE_SYSTEMS if core not in ids]
        if core_missing and not problems:
            problems.append(((), f"the meters report to {' and '.join(CORE_SYSTEMS)}: add {', '.join(core_missing)}"))
        if problems:
            raise _Problems(problems)
        return tuple(ids)

    @model_validator(mode="after")
    def _events_in_run(self) -> Self:
        problems: list[tuple[Loc, str]] = []
        start, end = self.time.start, self.end
        span = f"the run, {_iso(start)} to {_iso(end)}"
        for i, event in enumerate(self.timeline):
            at = event.at_datetime(start)
            if not start <= at < end:
                when = event.at if event.at == _iso(at) else f"{event.at} ({_iso(at)})"
                problems.append((("timeline", i, "at"), f"{when} is outside {span}"))
            elif isinstance(event, StormEvent) and at + dt.timedelta(seconds=event.duration) > end:
                problems.append((("timeline", i, "duration"), f"the storm lasts past the end of {span}"))
            elif isinstance(event, DemandResponseEvent):
                problems.extend((("timeline", i, *loc), text) for loc, text in self._demand_response_problems(event))
        if self.programs.demand_response_share > 0 and "lms" not in self.systems:
            problems.append(
                (
                    ("programs", "demand_response_share"),
                    "enrols customers in the LMS's demand response: add lms to systems, or leave it at 0",
                )
            )
        if problems:
            raise _Problems(problems)
        return self

    def _demand_response_problems(self, event: DemandResponseEvent) -> list[tuple[Loc, str]]:
        """What keeps a demand-response event (inside the run) from running; paths relative to the event."""
        at = event.at_datetime(self.time.start)
        if "lms" not in self.systems:
            return [
                (
                    ("kind",),
                    "a demand_response event is run by the LMS: add lms to systems (it needs ami_headend and cis)",
                )
            ]
        if self.programs.demand_response_share == 0:
            return [
                (
                    ("kind",),
                    "no customer is enrolled in demand response: set programs.demand_response_share above 0",
                )
            ]
        if at.timestamp() % STEP_S:
            return [(("at",), f"{event.at} is not on a 15-minute boundary (the devices act per step)")]
        if at + dt.timedelta(seconds=event.duration) > self.end:
            return [(("duration",), f"the event lasts past the end of the run ({_iso(self.end)})")]
        return []

    # ------------------------------------------------------------------ helpers for the runner
    @property
    def end(self) -> dt.datetime:
        """When the run ends (UTC): start + days."""
        return self.time.end

    def schedule(self) -> list[tuple[dt.datetime, TimelineEvent]]:
        """Every timeline event with its UTC time, in time order (file order among equal times)."""
        timed = [(event.at_datetime(self.time.start), i, event) for i, event in enumerate(self.timeline)]
        return [(at, event) for at, _, event in sorted(timed, key=lambda t: (t[0], t[1]))]

    def comm_config(self) -> CommConfig:
        c = self.communication
        return CommConfig(
            concentrator_size=c.concentrator_size,
            read_loss_probability=c.read_loss,
            batch_loss_probability=c.batch_loss,
            event_loss_probability=c.event_loss,
            last_gasp_loss_probability=c.last_gasp_loss,
        )

    def to_yaml(self) -> str:
        """The effective scenario as YAML that :func:`load_scenario` reads back equal."""
        data = self.model_dump(mode="json", exclude_none=True)
        return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=120)

    def with_overrides(
        self, *, customers: int | None = None, days: float | None = None, seed: int | None = None
    ) -> Scenario:
        """A validated copy with the CLI's ``--customers``, ``--days`` and ``--seed`` applied."""
        data = self.model_dump(mode="json", exclude_none=True)
        overridden: list[Loc] = []
        if customers is not None:
            data["grid"]["customers"] = customers
            overridden.append(("grid", "customers"))
        if days is not None:
            data["time"]["days"] = days
            overridden.append(("time", "days"))
        if seed is not None:
            data["seed"] = seed
            overridden.append(("seed",))
        return _validate(data, source=self._source, lines=self._lines, overridden=overridden)


# --------------------------------------------------------------------------- loading
class _Loader(yaml.SafeLoader):
    """YAML 1.1 reads ``10:07`` as the base-60 integer 607; here it stays the string ``"10:07"``."""


_Loader.yaml_implicit_resolvers = {
    first: [
        (tag, regexp) for tag, regexp in resolvers if tag not in ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float")
    ]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:int",
    re.compile(r"^(?:[-+]?0b[0-1_]+|[-+]?0[0-7_]+|[-+]?(?:0|[1-9][0-9_]*)|[-+]?0x[0-9a-fA-F_]+)$"),
    list("-+0123456789"),
)
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+][0-9]+)?|\.[0-9_]+(?:[eE][-+][0-9]+)?"
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
    ),
    list("-+0123456789."),
)


def _parse(text: str, source: str | None) -> tuple[Any, dict[Loc, int]]:
    """The YAML document and the line of every key and list item in it."""
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = " ".join(part for part in (exc.context, exc.problem) if part)
        raise ScenarioError(f"not valid YAML: {problem}", source=source, line=mark.line + 1 if mark else None) from exc
    except (yaml.YAMLError, ValueError) as exc:  # ValueError: e.g. a timestamp with month 13
        raise ScenarioError(f"not valid YAML: {exc}", source=source) from exc
    finally:
        loader.dispose()
    lines: dict[Loc, int] = {}
    if node is not None:
        lines[()] = node.start_mark.line + 1
        _index_lines(node, (), lines, source)
    return data, lines


def _index_lines(node: yaml.Node, path: Loc, lines: dict[Loc, int], source: str | None) -> None:
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if not isinstance(key, yaml.ScalarNode):
                continue
            here = (*path, key.value)
            if here in lines:  # PyYAML would silently keep the last one
                raise ScenarioError(
                    f"key {key.value!r} appears twice (also line {lines[here]})",
                    source=source,
                    line=key.start_mark.line + 1,
                    field=_dotted(here),
                )
            lines[here] = key.start_mark.line + 1
            _index_lines(value, here, lines, source)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            lines[(*path, i)] = item.start_mark.line + 1
            _index_lines(item, (*path, i), lines, source)


def load_scenario(source: Path | str) -> Scenario:
    """A scenario from a file (a :class:`~pathlib.Path`) or from YAML text (a ``str``).

    A file without ``name`` is named after the file (``storm.yaml`` -> ``storm``). Raises
    :class:`~gridloom.errors.ScenarioError` naming file, line and field of every problem.
    """
    if isinstance(source, Path):
        where: str | None = str(source)
        try:
            text = source.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ScenarioError("no such file", source=where) from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ScenarioError(f"cannot read it: {exc}", source=where) from exc
    else:
        where, text = None, source
    data, lines = _parse(text, where)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        hint = " (to load a file, pass a Path)" if isinstance(data, str) and data.endswith((".yaml", ".yml")) else ""
        raise ScenarioError(
            f"a scenario is a mapping of keys (name, grid, time, systems, timeline, ...), not {type(data).__name__}"
            + hint,
            source=where,
            line=lines.get(()),
        )
    if isinstance(source, Path) and "name" not in data and _NAME.match(source.stem):
        data = {**data, "name": source.stem}
    return _validate(data, source=where, lines=lines)


def bundled_scenarios() -> list[str]:
    """Names of the scenarios shipped with gridloom (``default``, ``storm``, ...)."""
    return sorted(p.name.removesuffix(".yaml") for p in _DATA.iterdir() if p.name.endswith(".yaml"))


def load_file_or_bundled(file: str) -> Scenario:
    """A scenario file, or a bundled scenario by name when no such file exists (``storm``)."""
    path = Path(file)
    if not path.exists():
        if file in bundled_scenarios():
            return load_bundled(file)
        raise ScenarioError(f"no such file (bundled scenarios: {', '.join(bundled_scenarios())})", source=file)
    return load_scenario(path)


def load_bundled(name: str) -> Scenario:
    """A scenario shipped with gridloom, by name."""
    names = bundled_scenarios()
    if name not in names:
        raise ScenarioError(f"no bundled scenario {name!r}{_did_you_mean(name, names)} (bundled: {', '.join(names)})")
    with resources.as_file(_DATA / f"{name}.yaml") as path:
        return load_scenario(path)


def default_scenario() -> Scenario:
    """The default scenario (``scenario/data/default.yaml``): 3,000 customers, one summer day, two faults."""
    return load_bundled("default")


def _validate(
    data: Mapping[str, Any], *, source: str | None, lines: Mapping[Loc, int], overridden: Iterable[Loc] = ()
) -> Scenario:
    replaced = set(overridden)
    try:
        scenario = Scenario.model_validate(data)
    except ValidationError as exc:
        raise _error(_problems_of(exc), source=source, lines=lines, overridden=replaced) from exc
    scenario._source = source
    # an overridden value's line in the file no longer holds the value in force
    scenario._lines = {loc: line for loc, line in lines.items() if loc not in replaced}
    return scenario


# --------------------------------------------------------------------------- error messages
def _dotted(loc: Loc) -> str:
    """``("timeline", 1, "device")`` -> ``timeline[1].device``."""
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


def _strip(loc: Loc) -> Loc:
    """Drop what pydantic adds to a ``loc`` that is not in the file: the union tag and ``[key]``."""
    parts = list(loc)
    if len(parts) >= 3 and parts[0] == "timeline" and isinstance(parts[1], int) and parts[2] in EVENT_MODELS:
        del parts[2]
    return tuple(p for p in parts if p != "[key]")


def _keys_at(raw_loc: Loc) -> list[str]:
    """The keys allowed in the mapping at ``raw_loc`` (a pydantic loc, union tag included)."""
    model: type[BaseModel] | None = None
    if raw_loc == ():
        model = Scenario
    elif len(raw_loc) == 3 and raw_loc[0] == "timeline" and isinstance(raw_loc[2], str):
        model = EVENT_MODELS.get(raw_loc[2])
    elif len(raw_loc) == 1 and isinstance(raw_loc[0], str) and raw_loc[0] in Scenario.model_fields:
        annotation = Scenario.model_fields[raw_loc[0]].annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            model = annotation
    return list(model.model_fields) if model is not None else []


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _problems_of(exc: ValidationError) -> list[tuple[Loc, str]]:
    problems: list[tuple[Loc, str]] = []
    for err in exc.errors():
        raw = tuple(err["loc"])
        loc = _strip(raw)
        ctx = err.get("ctx") or {}
        error = ctx.get("error")
        kind = err["type"]
        if isinstance(error, _Problems):
            problems.extend(((*loc, *path), message) for path, message in error.problems)
        elif isinstance(error, ValueError):  # our validators' messages, without pydantic's "Value error, "
            problems.append((loc, str(error)))
        elif kind == "extra_forbidden":
            key = str(raw[-1])
            allowed = _keys_at(raw[:-1])
            listed = f" (keys here: {', '.join(allowed)})" if allowed else ""
            problems.append((loc, f"unknown key {key!r}{_did_you_mean(key, allowed)}{listed}"))
        elif kind == "union_tag_invalid":
            tag = str(ctx.get("tag"))
            problems.append(
                (
                    (*loc, "kind"),
                    f"unknown kind {tag!r}{_did_you_mean(tag, EVENT_MODELS)} (kinds: {', '.join(EVENT_MODELS)})",
                )
            )
        elif kind == "union_tag_not_found":
            problems.append(((*loc, "kind"), f"every event needs a kind: {', '.join(EVENT_MODELS)}"))
        elif kind == "missing":
            problems.append((loc, "missing (required)"))
        else:
            problems.append((loc, f"{err['msg']} (got {_short(err['input'])})"))
    return problems


def _line_of(loc: Loc, lines: Mapping[Loc, int]) -> int | None:
    """The line of ``loc``, else of the closest enclosing key that is in the file."""
    for n in range(len(loc), -1, -1):
        if loc[:n] in lines:
            return lines[loc[:n]]
    return None


def _error(
    problems: list[tuple[Loc, str]], *, source: str | None, lines: Mapping[Loc, int], overridden: set[Loc]
) -> ScenarioError:
    errors = [
        ScenarioError(
            message,
            source=source,
            line=None if loc in overridden else _line_of(loc, lines),
            field=_dotted(loc) + (" (override)" if loc in overridden else "") if loc else None,
        )
        for loc, message in problems
    ]
    first = errors[0]
    return ScenarioError(first.message, source=source, line=first.line, field=first.field, also=errors[1:])


# --------------------------------------------------------------------------- checks against the grid
def check_devices(
    scenario: Scenario, *, district: District | None = None, connectivity: ConnectivityModel | None = None
) -> None:
    """Check the devices and substations the timeline's faults name against the district's grid.

    Loads the district and its connectivity model unless given (the runner passes its own);
    returns at once when no event names a device. Raises :class:`~gridloom.errors.ScenarioError`.
    """
    faults = [(i, e) for i, e in enumerate(scenario.timeline) if isinstance(e, FaultEvent)]
    if not faults:
        return
    code = scenario.grid.district
    if district is None:
        district = load_district(code)
    if connectivity is None:
        connectivity = build_connectivity(district)
    substations = build_territory(district, scenario.grid.customers).replicas  # cheap: arrays are lazy
    counts = connectivity.counts()
    problems: list[tuple[Loc, str]] = []
    for i, event in faults:
        if event.substation >= substations:
            problems.append(
                (
                    ("timeline", i, "substation"),
                    f"no substation {event.substation}: {scenario.grid.customers:,} customers of {code} make "
                    f"{substations} substation(s), numbered from 0",
                )
            )
        if event.device is not None:
            try:
                connectivity.index(event.device)
            except UnknownGridDevice as exc:
                close = f" (close: {', '.join(exc.suggestions)})" if exc.suggestions else ""
                problems.append((("timeline", i, "device"), f"no device {event.device!r} in district {code}{close}"))
        elif event.random is not None and counts[RANDOM_KINDS[event.random]] == 0:
            problems.append((("timeline", i, "random"), f"district {code} has no {event.random} to fault"))
    if problems:
        raise _error(problems, source=scenario._source, lines=scenario._lines, overridden=set())
