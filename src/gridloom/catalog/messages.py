"""Message types: what may travel on each interface, in which direction, of which kind.

The seed names the information each flow carries ("Commands to IEDs", "Meter reading and
meter events"). Each information item becomes a message type whose id is the item's words
in snake case (so the catalog stays the single source), and whose kind (command, request,
event, report) follows from those words. Interfaces the seed leaves without information
items carry one generic ``data`` message type per flow. Every request or command may be
answered by ``<type>.response`` in the opposite direction.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from gridloom.catalog.models import Flow, Interface

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

    def allows(self, sender_role: str, receiver_role: str) -> bool:
        if (sender_role, receiver_role) == (self.source, self.target):
            return True
        return self.bidirectional and (sender_role, receiver_role) == (self.target, self.source)


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


def message_types(interface: Interface) -> list[MessageType]:
    """Every message type the interface carries, with the responses its requests allow."""
    found: list[MessageType] = []
    for flow in interface.flows:
        found.extend(_flow_types(interface.id, flow))
    responses = [
        MessageType(
            id=m.id + RESPONSE_SUFFIX,
            interface=m.interface,
            kind=MessageKind.RESPONSE,
            information=f"response to: {m.information}",
            source=m.target,
            target=m.source,
            bidirectional=m.bidirectional,
        )
        for m in found
        if m.kind.audited
    ]
    return found + responses
