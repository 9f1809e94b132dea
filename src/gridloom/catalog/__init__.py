"""The seed's actors and logical interfaces as data: the spec the rest of gridloom reads."""

from gridloom.catalog.catalog import Catalog, load_catalog, load_catalog_from
from gridloom.catalog.models import (
    Actor,
    ActorDomain,
    CustomerGateway,
    Domain,
    Flow,
    Interface,
    InterfaceStatus,
    Security,
    SecurityLevel,
    SecurityNeed,
    Timing,
    Vocabularies,
)
from gridloom.catalog.timing import ParsedTiming, TimingKind, parse_timing

__all__ = [
    "Actor",
    "ActorDomain",
    "Catalog",
    "CustomerGateway",
    "Domain",
    "Flow",
    "Interface",
    "InterfaceStatus",
    "ParsedTiming",
    "Security",
    "SecurityLevel",
    "SecurityNeed",
    "Timing",
    "TimingKind",
    "Vocabularies",
    "load_catalog",
    "load_catalog_from",
    "parse_timing",
]
