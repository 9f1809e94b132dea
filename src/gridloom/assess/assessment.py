"""The live assessment: for every catalogued interface, the seed's requirements beside what
gridloom enforces, with every requirement not (yet) met stated as a finding.

Pure: the same catalog, policy and stats give the same assessment; nothing is read or run.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from gridloom.assess.findings import findings_for
from gridloom.assess.measurements import Measurement, parse_stats
from gridloom.assess.models import EnforcedMessageType, Enforcement, InterfaceAssessment
from gridloom.catalog import Catalog, Domain, Interface
from gridloom.fabric.policy import Policy, Protection

# The receive pipeline (fabric.py) verifies the signature, the CA-issued certificate, its
# revocation and that the envelope's source matches it on every message of every
# interface: these are properties of the fabric, not of the policy, hence constants here.
_SIGNED = True
_SOURCE_VALIDATED = True
_REVOCATION_CHECKED = True

NOTHING_TO_CARRY = "nothing to carry: the seed defines no flows on this interface"


def enforcement_of(protection: Protection) -> Enforcement:
    """What the fabric enforces on one interface, read from its policy."""
    types = tuple(
        EnforcedMessageType(
            id=m.id,
            kind=m.kind,
            audited=m.kind.audited,
            information=m.information,
            source=m.source,
            target=m.target,
            bidirectional=m.bidirectional,
        )
        for m in protection.types
    )
    if not types:
        return Enforcement(
            carries=False,
            signed=None,
            source_validated=None,
            revocation_checked=None,
            encrypted=None,
            encrypt_reason=NOTHING_TO_CARRY,
            freshness_s=None,
            senders=(),
            message_types=(),
        )
    return Enforcement(
        carries=True,
        signed=_SIGNED,
        source_validated=_SOURCE_VALIDATED,
        revocation_checked=_REVOCATION_CHECKED,
        encrypted=protection.encrypt,
        encrypt_reason=protection.encrypt_reason,
        freshness_s=protection.freshness_s,
        senders=tuple(protection.senders),
        message_types=types,
    )


def assess_interface(
    interface: Interface, policy: Policy, measurement: Measurement | None = None
) -> InterfaceAssessment:
    enforcement = enforcement_of(policy.protection(interface.id))
    return InterfaceAssessment(
        interface=interface,
        enforcement=enforcement,
        measurement=measurement,
        findings=tuple(findings_for(interface, enforcement, measurement)),
    )


def assess(
    catalog: Catalog,
    policy: Policy,
    *,
    stats: Sequence[Mapping[str, Any]] | None = None,
    domain: Domain | str | None = None,
) -> list[InterfaceAssessment]:
    """Assess every catalogued interface (or one section's), in catalog order.

    ``stats`` is the list ``FabricStats.snapshot()`` returns; entries for interfaces not in
    the catalog (the fabric counts unattributable rejections under "(unknown)") are ignored.
    Raises :class:`~gridloom.assess.measurements.StatsError` for malformed stats and
    :class:`~gridloom.errors.UnknownDomain` for an unknown section.
    """
    measured = parse_stats(stats) if stats is not None else {}
    chosen = catalog.select(domain=domain)
    return [assess_interface(i, policy, measured.get(i.id)) for i in chosen]
