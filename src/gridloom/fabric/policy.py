"""What the fabric enforces on each interface, derived from the catalog.

Every interface is signed and source-checked. Beyond that:

- **encryption** where the seed asks for confidentiality (level "required" or above), where
  an end of the interface is in the customer domain (customer data; the customer gateway
  requirement d "All messages must be signed and encrypted"), or where the information is
  about customers, usage, prices, bids or billing;
- **freshness**: a message older than the interface's window is stale. The window follows
  the seed's timing: a few times the stated bound, never under 5 s, so clock skew between
  machines does not reject honest traffic;
- **authorisation**: the sender's role must be at one end of a flow carrying that message
  type, sending in a direction the flow allows (a declared message type, from
  ``catalog/data/messages.yaml``, only in its declared direction);
- **audit**: commands and requests (by message kind) go to the hash-chained audit log.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property

from gridloom.catalog import ActorDomain, Catalog, Interface, SecurityLevel, TimingKind
from gridloom.catalog.messages import MessageType, message_types
from gridloom.errors import NotAuthorised, UnknownMessageType

MIN_FRESHNESS_S = 5.0
FUTURE_SKEW_S = 5.0
_BOUND_FACTOR = 3.0
# Windows for timings the seed states without a number.
_WINDOW_BY_KIND_S = {
    TimingKind.SECONDS: 15.0,
    TimingKind.NEAR_REAL_TIME: 60.0,
    TimingKind.MINUTES: 15 * 60.0,
    TimingKind.HOUR: 2 * 3600.0,
    TimingKind.PERIODIC: 24 * 3600.0,
    TimingKind.HOURS_TO_DAYS: 3 * 86400.0,
    TimingKind.DAY_AHEAD: 2 * 86400.0,
    TimingKind.UNSPECIFIED: 3600.0,
}
# Information that is private to a customer or commercially sensitive, in the seed's words.
_SENSITIVE_WORDS = re.compile(
    r"\b(customer|customers|usage|consumption|meter reading|meter data|metering data|price|prices|pricing|"
    r"bid|bids|billing|bill|account|credit card|payment|tariff|authorization|enrollment|market)\b",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Protection:
    """The protection the fabric applies to one interface, and why."""

    interface: Interface
    encrypt: bool
    encrypt_reason: str
    freshness_s: float
    types: tuple[MessageType, ...] = field(repr=False)

    @cached_property
    def _by_id(self) -> dict[str, list[MessageType]]:
        index: dict[str, list[MessageType]] = {}
        for message_type in self.types:
            index.setdefault(message_type.id, []).append(message_type)
        return index

    @property
    def audited_types(self) -> list[str]:
        return sorted({m.id for m in self.types if m.kind.audited})

    @property
    def senders(self) -> list[str]:
        """Roles that may send on this interface (in some direction)."""
        roles = {m.source for m in self.types} | {m.target for m in self.types if m.bidirectional}
        return sorted(roles)

    def is_audited(self, message_type: str) -> bool:
        """True for commands and requests (unknown types are not audited: they never get far)."""
        return any(m.kind.audited for m in self._by_id.get(message_type, ()))

    def message_type(self, message_type: str) -> list[MessageType]:
        found = self._by_id.get(message_type)
        if not found:
            known = ", ".join(sorted(self._by_id)) or "none"
            raise UnknownMessageType(
                f"message type {message_type!r} is not carried on this interface (it carries: {known})",
                interface=self.interface.id,
            )
        return found

    def authorise(self, message_type: str, sender_role: str, receiver_role: str) -> MessageType:
        """The message type if ``sender_role`` may send it to ``receiver_role``, else NotAuthorised."""
        for candidate in self.message_type(message_type):
            if candidate.allows(sender_role, receiver_role):
                return candidate
        raise NotAuthorised(
            f"role {sender_role!r} may not send {message_type!r} to role {receiver_role!r}",
            interface=self.interface.id,
        )

    def receivers(self, message_type: str, sender_role: str) -> list[str]:
        """Roles ``sender_role`` may send this message type to."""
        roles: set[str] = set()
        for m in self.message_type(message_type):
            if m.source == sender_role:
                roles.add(m.target)
            if m.bidirectional and m.target == sender_role:
                roles.add(m.source)
        return sorted(roles)


def freshness_window_s(interface: Interface) -> float:
    bound = interface.tightest_latency_s
    if bound is not None:
        return max(MIN_FRESHNESS_S, _BOUND_FACTOR * bound)
    kinds = [f.timing.kind for f in interface.flows if f.timing.kind is not TimingKind.UNSPECIFIED]
    if not kinds:
        return _WINDOW_BY_KIND_S[TimingKind.UNSPECIFIED]
    return min(_WINDOW_BY_KIND_S[k] for k in kinds)


def _encryption(interface: Interface, catalog: Catalog) -> tuple[bool, str]:
    level = interface.security.confidentiality.level
    if level >= SecurityLevel.REQUIRED:
        return True, f"the seed asks for confidentiality ({level.name.lower()})"
    customer_ends = sorted(a for a in interface.actors if catalog.actors[a].domain is ActorDomain.CUSTOMER)
    if customer_ends:
        return True, f"customer-side actor ({', '.join(customer_ends)}): customer data, gateway requirement d"
    words = " ".join(i for f in interface.flows for i in f.information) + " " + interface.title
    match = _SENSITIVE_WORDS.search(words)
    if match:
        return True, f"carries {match.group(0).lower()} information"
    if level is SecurityLevel.LOW:
        return False, "the seed rates confidentiality less critical"
    if interface.security.integrity.level > SecurityLevel.NOT_STATED:
        return False, "operational data; the seed asks for integrity, not confidentiality"
    return False, "operational data; the seed states no confidentiality need"


class Policy:
    """Protections for every interface of a catalog, computed once."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self._protections: dict[str, Protection] = {}
        for interface in catalog:
            encrypt, reason = _encryption(interface, catalog)
            self._protections[interface.id] = Protection(
                interface=interface,
                encrypt=encrypt,
                encrypt_reason=reason,
                freshness_s=freshness_window_s(interface),
                types=tuple(message_types(interface, catalog.declared_for(interface.id))),
            )

    def protection(self, interface_id: str) -> Protection:
        found = self._protections.get(interface_id)
        if found is None:
            return self._protections[self.catalog.interface(interface_id).id]  # raises UnknownInterface
        return found

    def __iter__(self) -> Iterator[Protection]:
        return iter(self._protections.values())
