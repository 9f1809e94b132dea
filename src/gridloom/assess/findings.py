"""The rules that turn the seed's requirements and gridloom's enforcement into findings.

Each rule is a small function of one interface, its enforcement and (optionally) what a
running fabric measured on it. A finding says plainly what is met, what is countered and
what is not done yet; nothing is claimed that the fabric does not check.
"""

from __future__ import annotations

from collections.abc import Callable

from gridloom.assess.measurements import Measurement
from gridloom.assess.models import Enforcement, Finding, FindingKind
from gridloom.catalog import Interface, InterfaceStatus, SecurityLevel, SecurityNeed, TimingKind
from gridloom.catalog.messages import MessageKind

GAP, NOTE, COUNTERED, MEASURED = FindingKind.GAP, FindingKind.NOTE, FindingKind.COUNTERED, FindingKind.MEASURED

NOT_SERVED = "no gridloom actor serves this interface yet"
AVAILABILITY_NOT_ENFORCED = "availability is not enforced yet (no redundancy, rate limiting or priority queues)"
NOTHING_AUDITED = "nothing on this interface is classed as a command or request, so nothing is audited"

_NOT_DEFINED = {
    InterfaceStatus.UNDEFINED: "the seed lists this id and leaves it empty",
    InterfaceStatus.MISSING: "the seed lists it under 'Interfaces that are missing' and names only its actors",
    InterfaceStatus.UNKNOWN: "the seed marks it '?'",
    InterfaceStatus.NOT_AN_INTERFACE: "the seed marks it '? not an interface'",
    InterfaceStatus.ERROR: "the seed says it 'appears to be an error'",
}


def _level(need: SecurityNeed) -> str:
    return need.level.name.lower()


def _s(seconds: float) -> str:
    return f"{seconds:.3g} s"


def _traffic(measurement: Measurement | None) -> Measurement | None:
    """The measurement if it shows delivered traffic, else None: no traffic, nothing to judge."""
    return measurement if measurement is not None and measurement.carried_traffic else None


def not_defined(interface: Interface, enforcement: Enforcement) -> Finding:
    """The one finding for an interface the seed does not define."""
    why = _NOT_DEFINED.get(interface.status, f"its status is {interface.status.value!r}")
    if not enforcement.carries:
        return Finding(NOTE, f"not defined by the seed: {why}; nothing to carry")
    # The seed names the two ends but no information: the catalog gives such flows one
    # generic "data" type, so say what the fabric would in fact let through.
    kinds = ", ".join(sorted({m.id for m in enforcement.message_types}))
    return Finding(
        NOTE,
        f"not defined by the seed: {why}; the fabric carries only the generic message type(s) {kinds} "
        f"({'; '.join(enforcement.directions)})",
    )


def confidentiality(interface: Interface, enforcement: Enforcement) -> list[Finding]:
    need = interface.security.confidentiality
    if need.level >= SecurityLevel.REQUIRED:
        if enforcement.encrypted:
            return [
                Finding(
                    NOTE,
                    f"confidentiality asked ({_level(need)}): payload encrypted because {enforcement.encrypt_reason}",
                )
            ]
        return [
            Finding(
                GAP,
                f"confidentiality asked ({_level(need)}) but the payload is not encrypted "
                f"({enforcement.encrypt_reason})",
            )
        ]
    if need.level is SecurityLevel.LOW and not enforcement.encrypted:
        return [Finding(NOTE, "the seed rates confidentiality less critical: payload signed, not encrypted")]
    return []


def integrity(interface: Interface) -> list[Finding]:
    need = interface.security.integrity
    if need.level is SecurityLevel.NOT_STATED:
        return []
    return [
        Finding(
            NOTE,
            f"integrity asked ({_level(need)}): every envelope is signed with the sender's "
            "Ed25519 key and verified before delivery",
        )
    ]


def authentication(interface: Interface) -> list[Finding]:
    need = interface.security.authentication
    if need.level is SecurityLevel.NOT_STATED:
        return []
    return [
        Finding(
            NOTE,
            f"authentication asked ({_level(need)}): the signer's certificate must be issued by "
            "the gridloom CA, valid and not revoked, and the envelope's source and role must match it",
        )
    ]


def non_repudiation(interface: Interface, enforcement: Enforcement) -> list[Finding]:
    need = interface.security.non_repudiation
    if need.level is SecurityLevel.NOT_STATED:
        return []
    audited = enforcement.audited_types
    if not audited:
        return [Finding(GAP, f"non-repudiation asked ({_level(need)}); {NOTHING_AUDITED}")]
    others = sorted({m.id for m in enforcement.message_types if not m.audited and m.kind is not MessageKind.RESPONSE})
    responses = any(m.kind is MessageKind.RESPONSE for m in enforcement.message_types)
    unaudited = [f"the other types ({', '.join(others)})"] if others else []
    unaudited += ["responses"] if responses else []
    text = (
        f"non-repudiation asked ({_level(need)}): commands and requests ({', '.join(audited)}) are written with "
        "their signed frame to the hash-chained audit log (when the fabric runs with one)"
    )
    if unaudited:
        text += f"; {' and '.join(unaudited)} are signed but not audited"
    return [Finding(NOTE, text)]


def availability(interface: Interface, measurement: Measurement | None) -> list[Finding]:
    need = interface.security.availability
    if need.level is SecurityLevel.NOT_STATED:
        return []
    bound, seen = interface.tightest_latency_s, _traffic(measurement)
    asked = f"availability asked ({_level(need)})"
    if seen is not None and seen.latency_p99_s is not None and bound is not None:
        p99 = seen.latency_p99_s
        if p99 <= bound:
            return [
                Finding(
                    MEASURED,
                    f"{asked}: measured: p99 {_s(p99)} within {_s(bound)} over {seen.delivered} delivered messages",
                )
            ]
        return [Finding(GAP, f"{asked}: {AVAILABILITY_NOT_ENFORCED}; measured p99 {_s(p99)} exceeds {_s(bound)}")]
    return [Finding(GAP, f"{asked}: {AVAILABILITY_NOT_ENFORCED}")]


def timing(interface: Interface, enforcement: Enforcement, measurement: Measurement | None) -> list[Finding]:
    bound, seen = interface.tightest_latency_s, _traffic(measurement)
    if bound is None:
        kinds = sorted({f.timing.kind.value for f in interface.flows} - {TimingKind.UNSPECIFIED.value})
        if not kinds or enforcement.freshness_s is None:
            return []
        return [
            Finding(
                NOTE,
                f"timing stated without a number ({', '.join(kinds)}): nothing to measure against; "
                f"messages older than {enforcement.freshness_s:g} s are refused",
            )
        ]
    if seen is None or seen.latency_p99_s is None:
        return [Finding(GAP, f"timing bound {bound:g} s not yet measured on a running system")]
    p99 = seen.latency_p99_s
    if p99 <= bound:
        return [
            Finding(
                MEASURED,
                f"measured: p99 {_s(p99)} within the {bound:g} s timing bound over {seen.delivered} delivered messages",
            )
        ]
    return [
        Finding(
            GAP,
            f"measured: p99 {_s(p99)} exceeds the {bound:g} s timing bound over {seen.delivered} delivered messages",
        )
    ]


def _replay(enforcement: Enforcement) -> Finding:
    return Finding(
        COUNTERED,
        "replay: each receiver refuses a (sender, sequence) pair it has already accepted and any message older "
        f"than {enforcement.freshness_s:g} s (the memory of seen sequences is per receiver and in memory, so "
        "after a restart only the freshness window bounds a replay)",
    )


def _man_in_the_middle(enforcement: Enforcement) -> Finding:
    if enforcement.encrypted:
        return Finding(COUNTERED, "man-in-the-middle: signatures stop tampering; the payload is encrypted")
    return Finding(
        COUNTERED,
        "man-in-the-middle: signatures stop tampering; the payload is not encrypted here "
        f"({enforcement.encrypt_reason}), so it can be read on the way",
    )


def _masquerade(enforcement: Enforcement) -> Finding:
    return Finding(
        COUNTERED,
        "masquerade: only certificates issued by the gridloom CA and not revoked are accepted, and the "
        "envelope's source and role must match the signer's certificate",
    )


def _repudiation(enforcement: Enforcement) -> Finding:
    audited = enforcement.audited_types
    if not audited:
        return Finding(GAP, f"repudiation is a listed threat, but {NOTHING_AUDITED}")
    return Finding(
        COUNTERED,
        f"repudiation: commands and requests ({', '.join(audited)}) are kept with their signed frame "
        "in the hash-chained audit log",
    )


# The seed's threat types (vocabularies.yaml) that a fabric check answers.
_COUNTERS: dict[str, Callable[[Enforcement], Finding]] = {
    "replay": _replay,
    "man_in_the_middle": _man_in_the_middle,
    "masquerade": _masquerade,
    "repudiation": _repudiation,
}


def threats(interface: Interface, enforcement: Enforcement) -> list[Finding]:
    """Which fabric check counters each threat the seed tags, in the seed's order."""
    return [_COUNTERS[t](enforcement) for t in interface.threat_types if t in _COUNTERS]


def rejections(measurement: Measurement | None) -> list[Finding]:
    if measurement is None or measurement.rejected == 0:
        return []
    by_kind = ", ".join(f"{kind}: {n}" for kind, n in sorted(measurement.rejections.items()))
    detail = f" ({by_kind})" if by_kind else ""
    return [Finding(MEASURED, f"measured: the fabric rejected {measurement.rejected} message(s){detail}")]


def served(measurement: Measurement | None) -> list[Finding]:
    if _traffic(measurement) is not None:
        return []
    return [Finding(GAP, NOT_SERVED)]


def findings_for(interface: Interface, enforcement: Enforcement, measurement: Measurement | None) -> list[Finding]:
    """Every finding for one interface, in the order a reader of the seed's table meets them."""
    if interface.status is not InterfaceStatus.DEFINED:
        return [not_defined(interface, enforcement)]
    return [
        *confidentiality(interface, enforcement),
        *integrity(interface),
        *authentication(interface),
        *non_repudiation(interface, enforcement),
        *availability(interface, measurement),
        *timing(interface, enforcement, measurement),
        *threats(interface, enforcement),
        *rejections(measurement),
        *served(measurement),
    ]
