"""The shape of an assessment: what gridloom enforces on an interface and what it finds.

Plain frozen dataclasses: an assessment is computed, never edited. The seed's side is the
catalog's own :class:`~gridloom.catalog.Interface`, so nothing the seed says is copied twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from gridloom.assess.measurements import Measurement
from gridloom.catalog import Domain, Interface, InterfaceStatus
from gridloom.catalog.messages import MessageKind


class FindingKind(StrEnum):
    GAP = "gap"  # a requirement of the seed gridloom does not (yet) meet
    NOTE = "note"  # how a requirement is met, or what the seed leaves open
    COUNTERED = "countered"  # a threat the seed lists and the fabric check that counters it
    MEASURED = "measured"  # a requirement judged against measurements from a running fabric


@dataclass(frozen=True, slots=True)
class Finding:
    kind: FindingKind
    text: str


@dataclass(frozen=True, slots=True)
class EnforcedMessageType:
    """One message type the fabric lets through, in one direction (or both)."""

    id: str
    kind: MessageKind
    audited: bool
    information: str
    source: str
    target: str
    bidirectional: bool

    @property
    def direction(self) -> str:
        return f"{self.source} {'<->' if self.bidirectional else '->'} {self.target}"


@dataclass(frozen=True, slots=True)
class Enforcement:
    """What the fabric enforces on one interface.

    ``carries`` is false where the seed gives the interface no flows: there is nothing to
    carry, so every claim is ``None`` rather than a promise about traffic that cannot exist.
    """

    carries: bool
    signed: bool | None
    source_validated: bool | None
    revocation_checked: bool | None
    encrypted: bool | None
    encrypt_reason: str
    freshness_s: float | None
    senders: tuple[str, ...]
    message_types: tuple[EnforcedMessageType, ...]

    @property
    def audited_types(self) -> tuple[str, ...]:
        return tuple(sorted({m.id for m in self.message_types if m.audited}))

    @property
    def directions(self) -> tuple[str, ...]:
        """Every ``sender -> receiver`` pair the fabric allows, once each."""
        pairs: dict[str, None] = {}
        for m in self.message_types:
            pairs.setdefault(f"{m.source} -> {m.target}")
            if m.bidirectional:
                pairs.setdefault(f"{m.target} -> {m.source}")
        return tuple(pairs)


@dataclass(frozen=True, slots=True)
class InterfaceAssessment:
    """One interface: the seed's requirements, gridloom's enforcement, and what is missing."""

    interface: Interface
    enforcement: Enforcement
    measurement: Measurement | None
    findings: tuple[Finding, ...]

    @property
    def id(self) -> str:
        return self.interface.id

    @property
    def domain(self) -> Domain:
        return self.interface.domain

    @property
    def status(self) -> InterfaceStatus:
        return self.interface.status

    def count(self, kind: FindingKind) -> int:
        return sum(1 for f in self.findings if f.kind is kind)

    @property
    def gaps(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.kind is FindingKind.GAP)
