"""A real in-process fabric with CA-issued identities: a meter fleet behind three concentrators,
the head-end, an MDMS, two CIS instances and an OMS (inboxes record what reaches them)."""

import datetime as dt
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from gridloom.catalog import Catalog
from gridloom.devices import CommConfig, Concentrators, MeterConfig, MeterFleet
from gridloom.fabric import AuditLog, CertificateAuthority, Endpoint, Fabric, Identity, MemoryTransport, TrustStore
from gridloom.systems.headend import HeadEnd, HeadEndConfig, MeterNetwork, issue_concentrator_identities
from tests.fabric.conftest import Inbox, SimClock

START = dt.datetime(2026, 7, 1, 12, 0, tzinfo=dt.UTC)
N_METERS = 12
PER_CONCENTRATOR = 4
METER_IDS = [f"m{i:03d}" for i in range(N_METERS)]

# (role, instance) of the back-office actors; each gets an inbox
ACTORS = [("mdms", "mdms-1"), ("cis", "cis-1"), ("cis", "cis-2"), ("oms", "oms-1")]


@dataclass
class Ami:
    fabric: Fabric
    transport: MemoryTransport
    ca: CertificateAuthority
    catalog: Catalog
    clock: SimClock
    audit: AuditLog
    fleet: MeterFleet
    concentrators: Concentrators
    network: MeterNetwork
    identities: dict[str, Identity]
    inboxes: dict[str, Inbox]
    start_headend: Callable[..., Awaitable[HeadEnd]]

    def endpoint(self, instance: str) -> Endpoint:
        return self.fabric.endpoints[instance]

    def inbox(self, instance: str) -> Inbox:
        return self.inboxes[instance]

    def audit_entries(self) -> list[dict]:
        import json

        return [json.loads(line)["entry"] for line in self.audit.path.read_text().splitlines()]

    async def settle(self) -> None:
        await self.transport.drain()


def measure(fleet: MeterFleet, *, at: dt.datetime, energized: np.ndarray | None = None):
    """One 15-minute interval ending at ``at``: 1 kW per meter (250 Wh), 230 V."""
    n = fleet.n
    return fleet.measure(
        interval_start_at=at - dt.timedelta(minutes=15),
        p_w=np.full(n, 1000.0),
        q_var=np.full(n, 100.0),
        voltage_v=np.full(n, 230.0),
        energized=np.ones(n, bool) if energized is None else energized,
    )


@pytest.fixture
async def ami(catalog: Catalog, tmp_path: Path) -> AsyncIterator[Ami]:
    clock = SimClock(START)
    ca = CertificateAuthority.init(tmp_path / "pki", clock=clock)
    auditor = ca.issue("auditor", "auditor", clock=clock)
    audit = AuditLog(tmp_path / "audit.jsonl", signing_key=auditor.signing_key, clock=clock)
    fleet = MeterFleet(
        METER_IDS, rng=np.random.default_rng(7), config=MeterConfig(tamper_rate_per_day=0.0, voltage_noise=0.0)
    )
    lossless = CommConfig(
        concentrator_size=PER_CONCENTRATOR,
        read_loss_probability=0.0,
        batch_loss_probability=0.0,
        event_loss_probability=0.0,
        last_gasp_loss_probability=0.0,
        last_gasp_mesh_dependency=0.0,
    )
    concentrators = Concentrators.for_fleet(fleet, config=lossless)
    identities = {instance: ca.issue(role, instance, catalog=catalog, clock=clock) for role, instance in ACTORS}
    identities["headend-1"] = ca.issue("ami_headend", "headend-1", catalog=catalog, clock=clock)
    dcus = issue_concentrator_identities(ca, concentrators, catalog=catalog, clock=clock)
    headends: list[HeadEnd] = []
    async with MemoryTransport() as transport:
        fabric = Fabric(
            catalog=catalog, transport=transport, trust=TrustStore(ca.certificate), clock=clock, audit=audit
        )
        inboxes = {}
        for _, instance in ACTORS:
            inboxes[instance] = Inbox()
            await fabric.attach(identities[instance], inboxes[instance])
        network = MeterNetwork(fleet, concentrators, headend="headend-1", clock=clock)
        await network.attach(fabric, dcus)

        async def start_headend(config: HeadEndConfig | None = None, *, register: bool = True) -> HeadEnd:
            config = config or HeadEndConfig(sweep_interval_s=None)
            headend = await HeadEnd.attach(fabric, identities["headend-1"], config=config)
            if register:
                headend.register_meters(network.routes())
            headends.append(headend)
            return headend

        yield Ami(
            fabric, transport, ca, catalog, clock, audit, fleet, concentrators, network, identities, inboxes,
            start_headend,
        )  # fmt: skip
        for headend in headends:
            await headend.close()
        await network.close()
        await fabric.close()
    audit.close()
