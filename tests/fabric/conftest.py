import datetime as dt
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from gridloom.catalog import Catalog
from gridloom.fabric import (
    AuditLog,
    CertificateAuthority,
    Endpoint,
    Fabric,
    Identity,
    MemoryTransport,
    Message,
    TrustStore,
)

START = dt.datetime(2026, 7, 1, 12, 0, tzinfo=dt.UTC)


class SimClock:
    """A clock the test moves by hand."""

    def __init__(self, start: dt.datetime = START) -> None:
        self.now = start

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += dt.timedelta(seconds=seconds)


@dataclass
class Inbox:
    messages: list[Message] = field(default_factory=list)

    async def __call__(self, message: Message) -> None:
        self.messages.append(message)

    def bodies(self) -> list[object]:
        return [m.body for m in self.messages]


# (role, instance) of every actor the tests use
ACTORS = [
    ("distribution_scada", "scada-1"),
    ("field_ied", "ied-1"),
    ("field_ied", "ied-2"),
    ("cis", "cis-1"),
    ("mdms", "mdms-1"),
    ("ami_headend", "headend-1"),
    ("meter", "meter-1"),
    ("meter", "meter-2"),
]


@dataclass
class Net:
    fabric: Fabric
    ca: CertificateAuthority
    clock: SimClock
    identities: dict[str, Identity]
    inboxes: dict[str, Inbox]
    audit: AuditLog
    auditor: Identity

    def endpoint(self, instance: str) -> Endpoint:
        return self.fabric.endpoints[instance]

    def inbox(self, instance: str) -> list[Message]:
        return self.inboxes[instance].messages


@pytest.fixture
def clock() -> SimClock:
    return SimClock()


@pytest.fixture
def ca(tmp_path: Path, clock: SimClock) -> CertificateAuthority:
    return CertificateAuthority.init(tmp_path / "pki", clock=clock)


@pytest.fixture
async def net(catalog: Catalog, ca: CertificateAuthority, clock: SimClock, tmp_path: Path) -> AsyncIterator[Net]:
    identities = {instance: ca.issue(role, instance, catalog=catalog, clock=clock) for role, instance in ACTORS}
    auditor = ca.issue("auditor", "auditor", clock=clock)
    audit = AuditLog(tmp_path / "audit.jsonl", signing_key=auditor.signing_key, clock=clock)
    async with MemoryTransport() as transport:
        fabric = Fabric(
            catalog=catalog, transport=transport, trust=TrustStore(ca.certificate), clock=clock, audit=audit
        )
        inboxes = {}
        for instance, identity in identities.items():
            inboxes[instance] = Inbox()
            await fabric.attach(identity, inboxes[instance])
        yield Net(fabric, ca, clock, identities, inboxes, audit, auditor)
        await fabric.close()
    audit.close()
