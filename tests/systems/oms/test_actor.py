"""End to end on the fabric: meters -> concentrators -> head-end -> OMS -> pings -> restoration -> crews, customers."""

import datetime as dt
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from gridloom.catalog import Catalog
from gridloom.fabric import AuditLog, CertificateAuthority, Fabric, MemoryTransport, TrustStore
from gridloom.grid.connectivity import ConnectivityModel, DeviceKind
from gridloom.grid.model import District
from gridloom.grid.protection import Fault
from gridloom.grid.territory import build_territory
from gridloom.systems.gis import GisActor
from gridloom.systems.headend import EventSubscription, HeadEnd, HeadEndConfig, MeterNetwork
from gridloom.systems.oms import OutageStatus, load_records
from gridloom.systems.oms.drill import OutageField
from gridloom.systems.oms.service import OmsActor
from tests.fabric.conftest import Inbox, SimClock
from tests.systems.oms.conftest import START, devices

pytestmark = pytest.mark.anyio
REPAIR_S = 1800.0


@dataclass
class Grid:
    fabric: Fabric
    transport: MemoryTransport
    clock: SimClock
    field: OutageField
    network: MeterNetwork
    headend: HeadEnd
    oms: OmsActor
    gis: GisActor
    crew: Inbox
    customers: Inbox
    fuse: str
    fuse_customers: int

    async def settle(self) -> None:
        await self.transport.drain()
        await self.oms.tick()
        await self.transport.drain()

    async def run(self, minutes: int) -> None:
        """Meter one-minute intervals and deliver each batch when it arrives, the OMS ticking along."""
        for k in range(minutes):
            at = START + dt.timedelta(minutes=k)
            self.clock.now = at
            prepared = self.network.prepare(self.field.measure(at))
            for batch in sorted(prepared, key=lambda b: b.arrives_at_us):
                self.clock.now = max(self.clock.now, dt.datetime.fromtimestamp(batch.arrives_at_us / 1e6, dt.UTC))
                await self.network.deliver([batch])
                await self.settle()
            for second in range(5, 61, 5):  # the OMS's clock moves on between batches too
                self.clock.now = max(self.clock.now, at + dt.timedelta(seconds=second))
                await self.settle()


@pytest.fixture
async def grid(catalog: Catalog, district: District, model: ConnectivityModel, tmp_path: Path) -> AsyncIterator[Grid]:
    clock = SimClock(START)
    ca = CertificateAuthority.init(tmp_path / "pki", clock=clock)
    auditor = ca.issue("auditor", "auditor", clock=clock)
    audit = AuditLog(tmp_path / "audit.jsonl", signing_key=auditor.signing_key, clock=clock)

    def issue(role: str, instance: str):
        return ca.issue(role, instance, catalog=catalog, clock=clock)

    territory = build_territory(district, district.n_customers)
    fld = OutageField(model, territory, seed=4)
    fuse = devices(model, DeviceKind.FUSE, customers=(15, 30))[3]
    fault = Fault(replica=0, device=model.index(fuse), at=START + dt.timedelta(minutes=3), repair_after_s=REPAIR_S)
    fld.inject([fault])
    async with MemoryTransport() as transport:
        fabric = Fabric(
            catalog=catalog, transport=transport, trust=TrustStore(ca.certificate), clock=clock, audit=audit
        )
        headend = await HeadEnd.attach(
            fabric,
            issue("ami_headend", "headend-1"),
            config=HeadEndConfig(
                sweep_interval_s=None,
                forward_events_to_mdms=False,
                event_subscriptions=(EventSubscription("AMI-11", group="oms", kinds={"LAST_GASP", "POWER_RESTORE"}),),
            ),
        )
        network = MeterNetwork(fld.fleet, fld.concentrators, headend="headend-1", clock=clock, separate_event_path=True)
        await network.attach(fabric, issue("meter", "dcu-net"))
        headend.register_meters(network.routes())
        crew, customers = Inbox(), Inbox()
        await fabric.attach(issue("field_crew", "crew-1"), crew)
        await fabric.attach(issue("customer_ems", "ems-1"), customers)
        # the OMS attaches first and takes its connectivity model from the GIS (AMI-14)
        oms = await OmsActor.attach(
            fabric, issue("oms", "oms-1"), headend="headend-1", dms_identity=issue("dms", "oms-1-dms"),
            field_crew="crew-1",
        )  # fmt: skip
        assert not oms.ready
        gis = await GisActor.attach(fabric, issue("gis", "gis-1"), fld.payload, max_rows_per_message=4000)
        await transport.drain()
        await oms.wait_ready(timeout_s=5)
        yield Grid(fabric, transport, clock, fld, network, headend, oms, gis, crew, customers, f"s000-{fuse}",
                   len(model.downstream_customers(model.index(fuse))))  # fmt: skip
        await oms.close()
        await fabric.close()
    audit.close()


async def test_meters_to_oms_to_crews_and_customers(grid: Grid, tmp_path: Path) -> None:
    await grid.run(minutes=40)
    [record] = [r for r in grid.oms.records() if r.status is not OutageStatus.CANCELLED]
    assert record.device_id == grid.fuse
    assert record.customers == grid.fuse_customers
    assert record.status is OutageStatus.RESTORED
    assert "confirmed" in [e.what for e in record.timeline]
    assert (record.detected_us - record.start_us) / 1e6 < 180
    assert abs(record.end_us / 1e6 - (START + dt.timedelta(minutes=3)).timestamp() - REPAIR_S) < 60
    # the pings went through the head-end (AMI-11 -> AMI-28 -> concentrators) and came back
    assert grid.headend.stats.on_demand_requests >= 1
    assert grid.oms.stats.ping_answers == grid.oms.stats.ping_requests
    # events travelled on their own path: the head-end's group subject, not its own
    subjects = {subject for batch in grid.network.prepare(grid.field.measure(START + dt.timedelta(minutes=50)))
                for subject, _, _ in batch.built}  # fmt: skip
    assert subjects <= {"gl.DGM-20.group.ami_headend"}
    # crews: a work order, closed at restoration, and the outage's status along the way (AMI-18)
    orders = [m.body for m in grid.crew.messages if m.message_type == "work_order"]
    assert [o["action"] for o in orders] == ["create", "close"]
    assert orders[0]["device_id"] == grid.fuse
    assert orders[0]["estimated_restoration_us"] > orders[0]["started_at_us"]
    statuses = [s for m in grid.crew.messages if m.message_type == "outage_status" for s in m.body["status"]]
    assert statuses[0] == "suspected"
    assert statuses[-1] == "restored"
    # customers: the estimated restoration, then the restoration (DGM-27, encrypted: customer data)
    notices = [m for m in grid.customers.messages if m.message_type == "restoration_estimate"]
    assert [n.body["status"] for n in notices] == ["out", "restored"]
    assert len(notices[0].body["meter_ids"]) == grid.fuse_customers
    assert all(n.envelope.sealed is not None for n in notices)
    assert grid.fabric.stats.total_rejections() == {}
    # the run report's view, and the records file the CLI reads
    metrics = grid.oms.as_metrics()
    assert metrics["outages"][0]["device"] == grid.fuse
    assert metrics["indices"]["sustained_outages"] == 1
    path = grid.oms.save(tmp_path / "oms_outages.json")
    records, served = load_records(path)
    assert served == grid.field.territory.customers
    assert records[0].device_id == grid.fuse


async def test_malformed_events_are_counted_and_nothing_else_happens(grid: Grid) -> None:
    endpoint = grid.fabric.endpoints["headend-1"]
    await endpoint.send("AMI-11", "meter_events", {"meter_id": ["s000-m00001"], "at_us": [1, 2], "kind": []},
                        to="oms-1")  # fmt: skip
    await endpoint.send("AMI-11", "meter_events", {"meter_id": "not a list"}, to="oms-1")
    await grid.settle()
    assert grid.oms.stats.malformed == 2
    assert grid.oms.records() == []
