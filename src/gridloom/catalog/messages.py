"""Message types: what may travel on each interface, in which direction, of which kind.

The seed names the information each flow carries ("Commands to IEDs", "Meter reading and
meter events"). Each information item becomes a message type whose id is the item's words
in snake case (so the catalog stays the single source), and whose kind (command, request,
event, report) follows from those words. Interfaces the seed leaves without information
items carry one generic ``data`` message type per flow. Every request or command may be
answered by ``<type>.response`` in the opposite direction.

The seed's words are too coarse for some systems (AMI 28 carries "Meter reading, events, meter
management" as one item), so gridloom also *declares* readable message types in
``data/messages.yaml`` (:class:`DeclaredMessage`, ids in :class:`DeclaredType`): each on one
interface, in one direction that a flow of the interface allows. :func:`load_declared_messages`
checks them when the catalog loads and :func:`message_types` adds them to the derived ones, so
the fabric authorises, audits and answers them like any other.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Self

from pydantic import Field, ValidationError, model_validator

from gridloom.catalog.models import Flow, Interface, Strict
from gridloom.errors import CatalogDataError

RESPONSE_SUFFIX = ".response"
_MAX_ID_LENGTH = 48


class MessageKind(StrEnum):
    COMMAND = "command"  # changes the state of the receiver or the grid: audited
    REQUEST = "request"  # asks the receiver for something: audited
    RESPONSE = "response"  # answers a command or a request
    EVENT = "event"  # something happened (outage, alarm, meter event)
    REPORT = "report"  # data: readings, models, prices, schedules

    @property
    def audited(self) -> bool:
        """Commands and requests are what non-repudiation is about."""
        return self in (MessageKind.COMMAND, MessageKind.REQUEST)


_KIND_WORDS: tuple[tuple[MessageKind, re.Pattern[str]], ...] = (
    # An answer or confirmation is data about a command, not a command: "Response to CIS
    # requests", "Confirmations on execution of direct controls".
    (MessageKind.REPORT, re.compile(r"^\s*(response|responses|confirmation|confirmations)\b")),
    (MessageKind.COMMAND, re.compile(r"\b(command|commands|control|controls|controlling|dispatch|trigger|triggers)\b")),
    # A bid or offer asks the market to trade: the seed wants it non-repudiable (DGM 2, ET 2).
    (MessageKind.REQUEST, re.compile(r"\b(request|requests|bid|bids|offer|offers)\b")),
    (MessageKind.EVENT, re.compile(r"\b(event|events|alarm|alarms|outage|outages)\b")),
)


def kind_of(information: str) -> MessageKind:
    """The kind of a message carrying ``information``; the first matching rule wins."""
    text = information.lower()
    for kind, pattern in _KIND_WORDS:
        if pattern.search(text):
            return kind
    return MessageKind.REPORT


def message_type_id(information: str) -> str:
    """A stable snake-case id from the seed's words, cut at a word boundary."""
    words = re.findall(r"[a-z0-9]+", information.lower())
    out = ""
    for word in words:
        candidate = f"{out}_{word}" if out else word
        if len(candidate) > _MAX_ID_LENGTH:
            break
        out = candidate
    return out or "data"


@dataclass(frozen=True, slots=True)
class MessageType:
    """One kind of message on one flow of an interface."""

    id: str
    interface: str
    kind: MessageKind
    information: str
    source: str
    target: str
    bidirectional: bool
    declared: bool = False  # declared in data/messages.yaml rather than derived from the seed's words

    def allows(self, sender_role: str, receiver_role: str) -> bool:
        if (sender_role, receiver_role) == (self.source, self.target):
            return True
        return self.bidirectional and (sender_role, receiver_role) == (self.target, self.source)


class DeclaredType(StrEnum):
    """The ids of the declared message types (``data/messages.yaml``) that systems send.

    A test keeps this list equal to the ids in the data, so code never spells them by hand.
    """

    INTERVAL_READS = "interval_reads"
    REGISTER_READS = "register_reads"
    METER_EVENTS = "meter_events"
    ON_DEMAND_READ = "on_demand_read"
    REMOTE_DISCONNECT = "remote_disconnect"
    REMOTE_CONNECT = "remote_connect"
    USAGE_REQUEST = "usage_request"
    CONNECTIVITY_MODEL = "connectivity_model"
    CONNECTIVITY_REQUEST = "connectivity_request"
    WORK_ORDER = "work_order"
    OUTAGE_STATUS = "outage_status"
    RESTORATION_ESTIMATE = "restoration_estimate"

    # demand response (LMS/DRMS, direct load control, aggregator, market)
    LOAD_MANAGEMENT_REQUIREMENT = "load_management_requirement"
    DR_ENROLMENTS = "dr_enrolments"
    DR_EVENT_RECORDS = "dr_event_records"
    DR_COMPLIANCE = "dr_compliance"
    LOAD_CONTROL_EVENT = "load_control_event"
    FLEXIBILITY_BID = "flexibility_bid"
    CLEARING_RESULT = "clearing_result"
    FLEXIBILITY_DISPATCH = "flexibility_dispatch"

    @property
    def response(self) -> str:
        """The id of the answer to this type: ``<id>.response``."""
        return response_type(self.value)


def response_type(message_type: str) -> str:
    """The id of the answer to ``message_type``."""
    return message_type + RESPONSE_SUFFIX


class DeclaredMessage(Strict):
    """One message type gridloom declares on an interface, in one direction (a ``messages.yaml`` entry)."""

    interface: str
    id: str = Field(pattern=r"^[a-z][a-z0-9_]*$", max_length=_MAX_ID_LENGTH)
    kind: MessageKind
    source: str
    target: str
    information: str
    fields: tuple[str, ...] = ()  # the body's keys (columns, for a batch)
    response_fields: tuple[str, ...] = ()  # the keys of ``<id>.response``

    @model_validator(mode="after")
    def _kind_allows_answer(self) -> Self:
        if self.kind is MessageKind.RESPONSE:
            raise ValueError("responses are not declared: every command or request gets '<id>.response'")
        if self.response_fields and not self.kind.audited:
            raise ValueError(f"a {self.kind.value} is not answered, so it has no response_fields")
        return self

    def message_type(self) -> MessageType:
        return MessageType(
            id=self.id,
            interface=self.interface,
            kind=self.kind,
            information=self.information,
            source=self.source,
            target=self.target,
            bidirectional=False,
            declared=True,
        )


def _flow_types(interface_id: str, flow: Flow) -> list[MessageType]:
    items = flow.information or ("data",)
    return [
        MessageType(
            id=message_type_id(item),
            interface=interface_id,
            kind=kind_of(item),
            information=item,
            source=flow.source,
            target=flow.target,
            bidirectional=flow.bidirectional,
        )
        for item in items
    ]


def _ends(interface: Interface) -> str:
    arrows = [f"{f.source} {'<->' if f.bidirectional else '->'} {f.target}" for f in interface.flows]
    return ", ".join(dict.fromkeys(arrows)) or "none"


def load_declared_messages(
    raw: Any,  # noqa: ANN401 - YAML is untyped until validated
    interfaces: Mapping[str, Interface],
    *,
    where: str = "messages.yaml",
) -> dict[str, tuple[DeclaredMessage, ...]]:
    """Validate the declared message types against the interfaces; by interface id.

    Raises :class:`CatalogDataError` naming the entry (number, interface and id) when an entry
    is malformed, names an unknown interface, does not lie on a flow of its interface in the
    declared direction, repeats another entry or reuses an id the seed's words give the interface.
    """
    if not isinstance(raw, dict) or not isinstance(raw.get("messages"), list):
        raise CatalogDataError(f"{where}: expected a mapping with a 'messages' list")
    found: dict[str, list[DeclaredMessage]] = {}
    seen: set[tuple[str, str, str, str]] = set()
    for n, entry in enumerate(raw["messages"], start=1):
        label = f"{where}: entry #{n}"
        if isinstance(entry, dict):
            label += f" ({entry.get('interface', '?')} {entry.get('id', '?')})"
        try:
            declared = DeclaredMessage.model_validate(entry)
        except ValidationError as exc:
            raise CatalogDataError(f"{label}: {exc}") from exc
        interface = interfaces.get(declared.interface)
        if interface is None:
            raise CatalogDataError(f"{label}: unknown interface {declared.interface!r}")
        if not any(flow.allows(declared.source, declared.target) for flow in interface.flows):
            raise CatalogDataError(
                f"{label}: {declared.source} -> {declared.target} does not lie on a flow of {interface.id} "
                f"in that direction (its flows: {_ends(interface)})"
            )
        derived = {m.id for flow in interface.flows for m in _flow_types(interface.id, flow)}
        if declared.id in derived:
            raise CatalogDataError(f"{label}: {interface.id} already carries {declared.id!r} (from the seed's words)")
        key = (declared.interface, declared.id, declared.source, declared.target)
        if key in seen:
            raise CatalogDataError(f"{label}: declared twice ({declared.source} -> {declared.target})")
        seen.add(key)
        found.setdefault(declared.interface, []).append(declared)
    return {interface_id: tuple(entries) for interface_id, entries in found.items()}


def message_types(interface: Interface, declared: Iterable[DeclaredMessage] = ()) -> list[MessageType]:
    """Every message type the interface carries, with the responses its requests allow.

    ``declared`` are the interface's declared types (``catalog.declared_for(interface.id)``);
    they come after the types derived from the seed's words.
    """
    found: list[MessageType] = []
    for flow in interface.flows:
        found.extend(_flow_types(interface.id, flow))
    for entry in declared:
        if entry.interface != interface.id:
            raise ValueError(f"{entry.id!r} is declared on {entry.interface}, not on {interface.id}")
        found.append(entry.message_type())
    responses = [
        MessageType(
            id=response_type(m.id),
            interface=m.interface,
            kind=MessageKind.RESPONSE,
            information=f"response to: {m.information}",
            source=m.target,
            target=m.source,
            bidirectional=m.bidirectional,
            declared=m.declared,
        )
        for m in found
        if m.kind.audited
    ]
    return found + responses
