"""OpenADR 2.0b opt service (``EiOpt``): a VEN's opt schedules and its opts on single events.

A VEN sends ``oadrCreateOpt`` either

* with a ``qualifiedEventID``: it opts in or out of that event after its ``oadrCreatedEvent``
  answer (a customer's override during the event, say) — the VTN's record of who takes part
  follows the latest word; or
* with a ``vavailability`` schedule: ``optOut`` lists windows in which its resources are not
  available for events, ``optIn`` windows in which they are.

and ``oadrCancelOpt`` to withdraw one (by ``optID``); the VTN answers ``oadrCreatedOpt`` /
``oadrCanceledOpt`` with a response code (200, or 452 for an unknown or foreign id, 454 for a
malformed schedule, 463 for an unregistered VEN).

openleadr 0.5.36 has the VEN half only: its server registers no ``EiOpt`` endpoint (its
``OptService`` is a stub that answers nothing), so the VTN serves ``EiOpt`` itself
(:meth:`.Vtn._ei_opt`); and its client takes any answer carrying an ``optID`` as success,
whatever the response code, so :meth:`.Ven.create_opt` checks the code.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from gridloom.errors import DrInputError

Window = tuple[dt.datetime, dt.datetime]  # [start, end), UTC


class OptType(StrEnum):
    OPT_IN = "optIn"
    OPT_OUT = "optOut"


class OptReason(StrEnum):
    ECONOMIC = "economic"
    EMERGENCY = "emergency"
    MUST_RUN = "mustRun"
    NOT_PARTICIPATING = "notParticipating"
    OUTAGE_RUN_STATUS = "outageRunStatus"
    OVERRIDE_STATUS = "overrideStatus"
    PARTICIPATING = "participating"
    SCHEDULE = "x-schedule"


@dataclass(frozen=True)
class Opt:
    """One ``oadrCreateOpt``: about an event (``event_id``) or an availability schedule (``windows``)."""

    opt_id: str
    ven_id: str
    opt_type: OptType
    reason: OptReason | str
    event_id: str | None = None
    modification_number: int = 0
    windows: tuple[Window, ...] = ()
    resource_id: str | None = None  # None: the whole VEN
    market_context: str | None = None
    created_at: dt.datetime | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "opt_type", OptType(self.opt_type))
        if (self.event_id is None) == (not self.windows):
            raise DrInputError(f"opt {self.opt_id}: give either an event id or availability windows, not both")
        for start, end in self.windows:
            if start.tzinfo is None or end.tzinfo is None:
                raise DrInputError(f"opt {self.opt_id}: window times must be timezone-aware (UTC)")
            if end <= start:
                raise DrInputError(f"opt {self.opt_id}: window {start.isoformat()} ends before it starts")

    @property
    def is_schedule(self) -> bool:
        return self.event_id is None

    def overlaps(self, start: dt.datetime, end: dt.datetime) -> bool:
        """Does any window of this schedule overlap [start, end)?"""
        return any(w_start < end and start < w_end for w_start, w_end in self.windows)

    def components(self) -> list[dict[str, Any]]:
        """The ``vavailability`` components (dtstart, duration) openleadr's template writes."""
        return [{"dtstart": s, "duration": e - s} for s, e in self.windows]


@dataclass(frozen=True)
class EventTargeting:
    """Whom an event goes to: ``sent`` VENs, and those ``left_out`` (ven id -> the opt schedule that excludes it)."""

    sent: tuple[str, ...]
    left_out: Mapping[str, str]


def opt_from_payload(payload: Mapping[str, Any]) -> Opt:
    """An :class:`Opt` from openleadr's parse of ``oadrCreateOpt``; raises :class:`DrInputError` if malformed."""
    availability = payload.get("vavailability") or {}
    raw = (availability.get("components") or {}).get("available") or []
    components = raw if isinstance(raw, list) else [raw]
    windows = tuple((c["dtstart"], c["dtstart"] + c["duration"]) for c in components)
    targets = payload.get("targets") or []
    resources = [t.get("resource_id") for t in targets if isinstance(t, Mapping) and t.get("resource_id")]
    try:
        return Opt(
            opt_id=str(payload["opt_id"]),
            ven_id=str(payload["ven_id"]),
            opt_type=OptType(payload["opt_type"]),
            reason=str(payload.get("opt_reason", "")),
            event_id=None if payload.get("event_id") is None else str(payload["event_id"]),
            modification_number=int(payload.get("modification_number") or 0),
            windows=windows,
            resource_id=str(resources[0]) if resources else None,
            market_context=payload.get("market_context"),
            created_at=payload.get("created_date_time"),
        )
    except (KeyError, ValueError, TypeError) as exc:
        raise DrInputError(f"malformed oadrCreateOpt: {exc}") from exc
