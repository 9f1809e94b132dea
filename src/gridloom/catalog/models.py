"""Typed models of the seed's actors, interfaces and vocabularies.

The YAML files under ``data/`` are the single source of truth; these models give them
a shape that the rest of gridloom can rely on. Texts are kept as the seed writes them
(lists of statements); parsed values (timing, security levels, actor ids) sit beside them.
"""

from __future__ import annotations

from enum import IntEnum, StrEnum
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, field_serializer, field_validator, model_validator

from gridloom.catalog.timing import TimingKind, parse_timing


class Strict(BaseModel):
    """Base for catalog models: unknown keys in the data are an error, models are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Domain(StrEnum):
    """The seed's sections; each interface id starts with one of these."""

    AMI = "AMI"  # AMI Systems Use Cases: Actors and Logical Interfaces
    ES = "ES"  # electric storage
    ET = "ET"  # electric transportation
    DGM = "DGM"  # distribution grid management
    DR = "DR"  # demand response (I2G)
    WAS = "WAS"  # wide-area situational awareness


class ActorDomain(StrEnum):
    """NIST conceptual-model domain of an actor (plus ``external`` for parties outside it)."""

    MARKETS = "markets"
    OPERATIONS = "operations"
    SERVICE_PROVIDER = "service_provider"
    CUSTOMER = "customer"
    DISTRIBUTION = "distribution"
    TRANSMISSION = "transmission"
    GENERATION = "generation"
    EXTERNAL = "external"


class InterfaceStatus(StrEnum):
    """How the seed presents an interface."""

    DEFINED = "defined"  # the seed describes it
    UNDEFINED = "undefined"  # the seed lists the id and leaves it empty (ES 5a, ...)
    MISSING = "missing"  # listed under "Interfaces that are missing" (AMI 41-45, GIS-MDMS)
    UNKNOWN = "unknown"  # the seed writes "?" (AMI 22)
    NOT_AN_INTERFACE = "not_an_interface"  # "? not an interface" (AMI 30)
    ERROR = "error"  # "Appears to be an error." (DR 14)


class SecurityLevel(IntEnum):
    """How strongly the seed asks for one security property on an interface.

    ``REQUIRED`` is a property the seed lists without qualifier; ``LOW`` is one it calls
    "less critical"; ``CRITICAL`` one it calls critical. Ordered, so levels compare.
    """

    NOT_STATED = 0
    LOW = 1
    REQUIRED = 2
    HIGH = 3
    CRITICAL = 4


class Actor(Strict):
    id: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    name: str
    domain: ActorDomain
    description: str = ""
    aliases: tuple[str, ...] = ()


class AmbiguousAlias(Strict):
    """A name the seed uses for different actors in different sections ("EMS")."""

    alias: str
    by_domain: dict[Domain, str]
    note: str = ""


class Timing(Strict):
    """A timing requirement as the seed states it, with its parsed machine value.

    ``kind`` and ``max_latency_s`` are always what :func:`parse_timing` makes of the
    statement; data that gives them must agree, so a dump loads back unchanged.
    """

    statement: str = ""
    kind: TimingKind = TimingKind.UNSPECIFIED
    max_latency_s: float | None = None

    @model_validator(mode="before")
    @classmethod
    def _parse_statement(cls, data: Any) -> Any:  # noqa: ANN401 - raw input before validation
        if not isinstance(data, dict):
            return data
        parsed = parse_timing(str(data.get("statement", "")))
        for key, value in (("kind", parsed.kind), ("max_latency_s", parsed.max_latency_s)):
            if key in data and data[key] != value:
                raise ValueError(f"timing {key}={data[key]!r} disagrees with its statement, which means {value!r}")
        return {**data, "kind": parsed.kind, "max_latency_s": parsed.max_latency_s}


class Flow(Strict):
    """One flow of information between two actors on an interface.

    ``bidirectional`` is true where the seed says "between A and B" without a direction.
    """

    source: str
    target: str
    bidirectional: bool = False
    information: tuple[str, ...] = ()
    timing: Timing = Timing()

    def allows(self, sender: str, receiver: str) -> bool:
        """True if ``sender`` may send to ``receiver`` along this flow."""
        if (sender, receiver) == (self.source, self.target):
            return True
        return self.bidirectional and (sender, receiver) == (self.target, self.source)


class SecurityNeed(Strict):
    """One security property: its level (by number or name) and the seed's words for it."""

    level: SecurityLevel = SecurityLevel.NOT_STATED
    text: str = ""

    @field_validator("level", mode="before")
    @classmethod
    def _level_by_name(cls, value: Any) -> Any:  # noqa: ANN401 - raw input before validation
        if isinstance(value, str) and not value.isdigit():
            try:
                return SecurityLevel[value.upper()]
            except KeyError:
                names = ", ".join(level.name.lower() for level in SecurityLevel)
                raise ValueError(f"unknown security level {value!r}; use one of {names}") from None
        return value

    @field_serializer("level")
    def _level_name(self, level: SecurityLevel) -> str:
        return level.name.lower()


class Security(Strict):
    """The seed's "Confidentiality, integrity and availability" row, parsed per property."""

    statement: tuple[str, ...] = ()
    confidentiality: SecurityNeed = SecurityNeed()
    integrity: SecurityNeed = SecurityNeed()
    availability: SecurityNeed = SecurityNeed()
    authentication: SecurityNeed = SecurityNeed()
    non_repudiation: SecurityNeed = SecurityNeed()

    def needs(self) -> dict[str, SecurityNeed]:
        """The five properties by name, in the seed's order."""
        return {
            "confidentiality": self.confidentiality,
            "integrity": self.integrity,
            "availability": self.availability,
            "authentication": self.authentication,
            "non_repudiation": self.non_repudiation,
        }


class Interface(Strict):
    """One logical interface of the seed, with everything the seed says about it."""

    id: str = Field(pattern=r"^(AMI|ES|ET|DGM|DR|WAS)-[A-Za-z0-9-]+$")
    domain: Domain
    number: str  # the label as the seed prints it: "9a", "#20", "18, 20, 16"
    title: str
    status: InterfaceStatus = InterfaceStatus.DEFINED
    description: str = ""
    actors_as_written: tuple[str, ...] = ()
    flows: tuple[Flow, ...] = ()
    media: tuple[str, ...] = ()
    protocols: tuple[str, ...] = ()
    security: Security = Security()
    vulnerabilities: tuple[str, ...] = ()
    threats: tuple[str, ...] = ()
    impacts: tuple[str, ...] = ()
    constraints: tuple[str, ...] = ()
    comments: tuple[str, ...] = ()
    vulnerability_types: tuple[str, ...] = ()
    threat_types: tuple[str, ...] = ()
    impact_types: tuple[str, ...] = ()
    constraint_types: tuple[str, ...] = ()

    @model_validator(mode="after")
    def _id_matches_domain(self) -> Self:
        if not self.id.startswith(f"{self.domain.value}-"):
            raise ValueError(f"interface id {self.id!r} does not start with its domain {self.domain.value!r}")
        if self.status is InterfaceStatus.DEFINED and not self.flows:
            raise ValueError(f"interface {self.id} is defined but has no flows")
        return self

    @property
    def actors(self) -> tuple[str, ...]:
        """Every actor id at either end of any flow, in first-seen order."""
        seen: dict[str, None] = {}
        for flow in self.flows:
            seen.setdefault(flow.source)
            seen.setdefault(flow.target)
        return tuple(seen)

    @property
    def tightest_latency_s(self) -> float | None:
        """The smallest numeric latency bound over all flows, if the seed gives any."""
        bounds = [f.timing.max_latency_s for f in self.flows if f.timing.max_latency_s is not None]
        return min(bounds) if bounds else None


class VocabularyTerm(Strict):
    id: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    name: str
    group: str = ""
    description: str = ""
    source: str = ""  # the reference the seed gives, e.g. "800-82 3-3" or "OWASP"


class Vocabularies(Strict):
    """The seed's "Security Elements": types of vulnerabilities, threats, impacts, constraints."""

    vulnerability_types: tuple[VocabularyTerm, ...]
    threat_types: tuple[VocabularyTerm, ...]
    impact_types: tuple[VocabularyTerm, ...]
    impact_categories: tuple[VocabularyTerm, ...]
    constraint_types: tuple[VocabularyTerm, ...]


class GatewayMessage(Strict):
    id: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    name: str
    direction: str = Field(pattern=r"^(inbound|outbound)$")
    letter: str
    description: str = ""


class GatewayRequirement(Strict):
    letter: str
    text: str


class CustomerGateway(Strict):
    """The "Priority I2G Interfaces" section: the customer gateway's message set."""

    priority_interfaces: tuple[str, ...]
    requirements: tuple[GatewayRequirement, ...]
    messages: tuple[GatewayMessage, ...]
