"""Meter to bill over the fabric: meters -> concentrators -> head-end -> MDMS (VEE, store) -> billing."""

import datetime as dt
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pytest

from gridloom.catalog import Catalog
from gridloom.devices import CommConfig, ConcentratorBatch, Concentrators, MeterConfig, MeterFleet
from gridloom.fabric import AuditLog, CertificateAuthority, Fabric, MemoryTransport, Message, TrustStore
from gridloom.store import MeterDataStore, open_store
from gridloom.systems.billing import PriceSeries, run_billing
from gridloom.systems.cis import build_cis
from gridloom.systems.headend import HeadEnd, HeadEndConfig, MeterNetwork
from gridloom.systems.mdms.service import Mdms, MdmsActor
from tests.fabric.conftest import SimClock

pytestmark = pytest.mark.anyio
START = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
N_METERS = 40
INTERVALS = 96


@dataclass
class Day:
    fabric: Fabric
    transport: MemoryTransport
    store: MeterDataStore
    mdms: MdmsActor
    meter_ids: list[str]
    offered: int
    delivered_batches: list[ConcentratorBatch]
    network: MeterNetwork


@pytest.fixture
async def day(catalog: Catalog, tmp_path: Path) -> AsyncIterator[Day]:
    """A day of 15-minute reads from 40 meters through a lossy AMI network into the MDMS."""
    clock = SimClock(START)
    ca = CertificateAuthority.init(tmp_path / "pki", clock=clock)
    auditor = ca.issue("auditor", "auditor", clock=clock)
    audit = AuditLog(tmp_path / "audit.jsonl", signing_key=auditor.signing_key, clock=clock)
    store = open_store(tmp_path / "mdms.duckdb")
    meter_ids = [f"s000-m{i:05d}" for i in range(N_METERS)]
    rng = np.random.default_rng(5)
    fleet = MeterFleet(np.array(meter_ids), rng=rng, config=MeterConfig(tamper_rate_per_day=0.0))
    comm = CommConfig(concentrator_size=10, read_loss_probability=0.05)
    concentrators = Concentrators(fleet.meter_id, config=comm)
    async with MemoryTransport() as transport:
        trust = TrustStore(ca.certificate)
        fabric = Fabric(catalog=catalog, transport=transport, trust=trust, clock=clock, audit=audit)
        mdms_identity = ca.issue("mdms", "mdms-1", catalog=catalog, clock=clock)
        mdms = await MdmsActor.attach(fabric, mdms_identity, Mdms(store, clock=clock))
        await HeadEnd.attach(
            fabric, ca.issue("ami_headend", "headend-1", catalog=catalog, clock=clock),
            config=HeadEndConfig(sweep_interval_s=None),
        )  # fmt: skip
        network = MeterNetwork(fleet, concentrators, headend="headend-1", clock=clock)
        await network.attach(fabric, ca.issue("meter", "dcu-net", catalog=catalog, clock=clock))
        offered = 0
        delivered_batches = []
        for k in range(INTERVALS):
            at = START + dt.timedelta(minutes=15 * k)
            clock.now = at + dt.timedelta(minutes=15)
            p_w = 400 + 300 * np.sin(np.arange(N_METERS) + k / 10) ** 2
            reads = fleet.measure(
                interval_start_at=at, p_w=p_w, q_var=p_w * 0.2, voltage_v=np.full(N_METERS, 231.0),
                energized=np.ones(N_METERS, dtype=bool),
            )  # fmt: skip
            collection = await network.report(reads, rng, at=clock.now)
            offered += collection.reads_offered
            delivered_batches += collection.read_batches
            await transport.drain()
        await mdms.flush()  # what is buffered is stored, as before the nightly VEE
        yield Day(fabric, transport, store, mdms, meter_ids, offered, delivered_batches, network)
        await fabric.close()
    audit.close()
    store.close()


async def test_every_read_is_stored_once_and_every_lost_read_is_estimated(day: Day) -> None:
    store, mdms, meter_ids, offered = day.store, day.mdms, day.meter_ids, day.offered
    delivered = sum(len(b) for b in day.delivered_batches)
    assert offered == N_METERS * INTERVALS
    assert 0 < offered - delivered < 0.15 * offered  # the network lost some reads
    assert store.count("reads") == delivered == mdms.ingested
    # Re-delivery (a concentrator resends a batch) stores nothing twice.
    await day.network.send_batches(day.delivered_batches[:3])
    await day.transport.drain()
    await mdms.flush()
    assert store.count("reads") == delivered
    assert mdms.ingested == delivered  # counted once stored
    assert mdms.duplicates == sum(len(b) for b in day.delivered_batches[:3])
    # The nightly VEE fills every gap with an estimate, flagged and traceable to its rule.
    closed = mdms.core.close_period(START, START + dt.timedelta(days=1), meter_ids)
    assert closed.estimated == offered - delivered
    current = store.reads(meter_ids=meter_ids, start=START, end=START + dt.timedelta(days=1), versions="current")
    assert current.num_rows == N_METERS * INTERVALS
    estimated = current.filter(pc.equal(current.column("source"), "estimated"))
    assert estimated.num_rows == offered - delivered
    assert all(rule for rule in estimated.column("rule").to_pylist())
    assert day.fabric.stats.total_rejections() == {}


async def test_billing_asks_the_mdms_for_usage_over_ami_24(day: Day, catalog: Catalog, tmp_path: Path) -> None:
    fabric, meter_ids = day.fabric, day.meter_ids
    answers: list[Message] = []

    async def keep(message: Message) -> None:
        answers.append(message)

    ca = CertificateAuthority.load(tmp_path / "pki")
    billing = await fabric.attach(ca.issue("billing", "billing-1", catalog=catalog, clock=fabric.clock), keep)
    await billing.send(
        "AMI-24", "usage_request",
        {"request_id": "r1", "meter_ids": meter_ids[:2], "start_us": int(START.timestamp() * 1e6),
         "end_us": int((START + dt.timedelta(hours=6)).timestamp() * 1e6)},
        to="mdms-1",
    )  # fmt: skip
    await day.transport.drain()
    [answer] = answers
    assert answer.message_type == "usage_request.response"
    assert set(answer.body["meter_id"]) <= set(meter_ids[:2])
    assert 0 < len(answer.body["meter_id"]) <= 2 * 24
    assert answer.envelope.sealed is not None  # usage is customer data: encrypted on the wire


async def test_a_bill_from_what_the_mdms_stored(day: Day) -> None:
    store, mdms, meter_ids = day.store, day.mdms, day.meter_ids
    mdms.core.close_period(START, START + dt.timedelta(days=1), meter_ids)
    cis = build_cis(np.array(meter_ids), seed=1)
    hours = [(START + dt.timedelta(hours=h), 0.12 + 0.05 * (17 <= h % 24 < 21)) for h in range(24 * 30)]
    run = run_billing(cis, store, cycle="2026-11", min_coverage=0.0, prices=PriceSeries.from_pairs(hours))
    assert run.bills.num_rows == N_METERS
    account = run.bills.column("account_id")[0].as_py()
    bill = run.bill(account)
    meter = bill.lines[0].meter_ids[0] if bill.lines[0].meter_ids else meter_ids[0]
    reads = store.reads(meter_ids=[meter], start=START, end=START + dt.timedelta(days=1), versions="current")
    # The bill's energy is what the MDMS holds for the meter, estimates included and traceable.
    assert bill.energy_delivered_wh == pytest.approx(pc.sum(reads.column("energy_delivered_wh")).as_py(), rel=1e-6)
    assert bill.total > 0
    assert any(line.estimated_intervals for line in bill.lines) or bill.estimated_share == 0
