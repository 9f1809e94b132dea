"""OpenADR 2.0b events as gridloom describes them, and their translation to and from openleadr's objects.

A :class:`DrEvent` has one or more signals over the same run of equal intervals:

* ``SIMPLE`` / ``level`` — the simple levels 0-3 (normal, moderate, high, special);
* ``ELECTRICITY_PRICE`` / ``price`` — a price per interval: the first interval's is the current
  price, the following ones the future price vector;
* ``LOAD_DISPATCH`` / ``delta`` or ``setpoint`` — a load change (W, negative = reduce) or a target.

Targets name VENs, groups (e.g. a feeder) and resources (e.g. a site's HVAC); a VEN receives an
event when any of them names it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from gridloom.errors import DrInputError


class SignalName(StrEnum):
    SIMPLE = "SIMPLE"
    ELECTRICITY_PRICE = "ELECTRICITY_PRICE"
    LOAD_DISPATCH = "LOAD_DISPATCH"


_TYPES = {
    SignalName.SIMPLE: ("level",),
    SignalName.ELECTRICITY_PRICE: ("price", "priceRelative", "priceMultiplier"),
    SignalName.LOAD_DISPATCH: ("delta", "setpoint", "level"),
}


@dataclass(frozen=True)
class Signal:
    name: SignalName
    type: str
    values: tuple[float, ...]  # one per interval

    def __post_init__(self) -> None:
        object.__setattr__(self, "name", SignalName(self.name))
        if self.type not in _TYPES[self.name]:
            raise DrInputError(
                f"signal {self.name}: type must be one of {', '.join(_TYPES[self.name])}, not {self.type!r}"
            )
        if not self.values:
            raise DrInputError(f"signal {self.name}: give at least one interval value")
        if self.name is SignalName.SIMPLE and any(v not in (0, 1, 2, 3) for v in self.values):
            raise DrInputError("SIMPLE signal levels are 0, 1, 2 or 3")


@dataclass(frozen=True)
class Targets:
    ven_ids: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()
    resources: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.ven_ids or self.groups or self.resources)

    def by_type(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        if self.ven_ids:
            out["ven_id"] = list(self.ven_ids)
        if self.groups:
            out["group_id"] = list(self.groups)
        if self.resources:
            out["resource_id"] = list(self.resources)
        return out


@dataclass(frozen=True)
class DrEvent:
    """An event the VTN distributes: when, what signals, for whom."""

    event_id: str
    program: str  # the market context, a URI naming the DR program (e.g. ``gridloom://programs/cpp``)
    start_at: dt.datetime
    interval: dt.timedelta
    signals: tuple[Signal, ...]
    targets: Targets
    priority: int = 1
    test: bool = False
    response_required: bool = True

    def __post_init__(self) -> None:
        if self.start_at.tzinfo is None or self.start_at.utcoffset() is None:
            raise DrInputError(f"event {self.event_id}: start_at must be timezone-aware (UTC)")
        if self.interval <= dt.timedelta(0):
            raise DrInputError(f"event {self.event_id}: interval must be positive")
        if not self.signals:
            raise DrInputError(f"event {self.event_id}: give at least one signal")
        if len({len(s.values) for s in self.signals}) != 1:
            raise DrInputError(f"event {self.event_id}: every signal needs the same number of intervals")
        if not self.targets:
            raise DrInputError(f"event {self.event_id}: name at least one target (VEN, group or resource)")
        if "://" not in self.program:
            raise DrInputError(f"event {self.event_id}: program must be a URI (market context), got {self.program!r}")

    @property
    def intervals(self) -> int:
        return len(self.signals[0].values)

    @property
    def end_at(self) -> dt.datetime:
        return self.start_at + self.interval * self.intervals


@dataclass(frozen=True)
class ReceivedEvent:
    """An event as a VEN received it (parsed from ``oadrDistributeEvent``)."""

    event_id: str
    program: str
    status: str
    modification_number: int
    start_at: dt.datetime
    intervals: tuple[tuple[dt.datetime, dt.timedelta], ...]
    signals: Mapping[str, tuple[float, ...]]  # signal name -> per-interval values
    targets: Mapping[str, tuple[str, ...]]
    received_at: float  # wall clock (time.time()) when the VEN got it
    extra: Mapping[str, Any] = field(default_factory=dict)

    def value_at(self, name: SignalName | str, at: dt.datetime) -> float | None:
        """The signal's value in the interval holding ``at`` (None outside the event or without that signal)."""
        values = self.signals.get(str(name))
        if values is None:
            return None
        for (start, length), value in zip(self.intervals, values, strict=False):
            if start <= at < start + length:
                return value
        return None


def to_openleadr(event: DrEvent, *, created_at: dt.datetime) -> Any:  # noqa: ANN401 - openleadr is untyped
    """The openleadr ``Event`` object for ``event``."""
    from openleadr import objects

    intervals_at = [event.start_at + event.interval * k for k in range(event.intervals)]
    signals = [
        objects.EventSignal(
            intervals=[
                objects.Interval(dtstart=at, duration=event.interval, signal_payload=float(v), uid=k)
                for k, (at, v) in enumerate(zip(intervals_at, s.values, strict=True))
            ],
            signal_name=s.name.value,
            signal_type=s.type,
            signal_id=f"{event.event_id}-{s.name.value.lower()}",
            # 2.0b rule 14: a SIMPLE signal's currentValue is 0 until the event is active (the event goes out "far")
            current_value=0.0 if s.name is SignalName.SIMPLE else None,
        )
        for s in event.signals
    ]
    return objects.Event(
        event_descriptor=objects.EventDescriptor(
            event_id=event.event_id,
            modification_number=0,
            market_context=event.program,
            event_status="far",
            created_date_time=created_at,
            priority=event.priority,
            test_event=event.test,
        ),
        event_signals=signals,
        targets_by_type=event.targets.by_type(),
        active_period=objects.ActivePeriod(dtstart=event.start_at, duration=event.end_at - event.start_at),
        response_required="always" if event.response_required else "never",
    )


def from_openleadr(event: Mapping[str, Any], *, received_at: float) -> ReceivedEvent:
    """A :class:`ReceivedEvent` from the dict openleadr parses out of ``oadrDistributeEvent``."""
    descriptor = event["event_descriptor"]
    raw_signals = event.get("event_signals") or []
    signals: dict[str, tuple[float, ...]] = {}
    intervals: tuple[tuple[dt.datetime, dt.timedelta], ...] = ()
    for signal in raw_signals:
        ivs = sorted(signal.get("intervals") or [], key=lambda i: i["dtstart"])
        signals[str(signal["signal_name"])] = tuple(float(i["signal_payload"]) for i in ivs)
        intervals = intervals or tuple((i["dtstart"], i["duration"]) for i in ivs)
    targets = event.get("targets_by_type") or {}
    period = event.get("active_period") or {}
    return ReceivedEvent(
        event_id=str(descriptor["event_id"]),
        program=str(descriptor.get("market_context", "")),
        status=str(descriptor.get("event_status", "")),
        modification_number=int(descriptor.get("modification_number", 0)),
        start_at=period.get("dtstart") or (intervals[0][0] if intervals else dt.datetime.now(dt.UTC)),
        intervals=intervals,
        signals=signals,
        targets={str(k): tuple(str(x) for x in (v if isinstance(v, list) else [v])) for k, v in targets.items()},
        received_at=received_at,
    )
