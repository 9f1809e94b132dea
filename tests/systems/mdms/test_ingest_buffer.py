"""The MDMS's ingest buffer: what arrives is stored once, nothing buffered is lost or hidden from a reader."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import pyarrow.compute as pc
import pytest

from gridloom.catalog import Catalog
from gridloom.errors import VeeConfigError, VeeInputError
from gridloom.fabric import CertificateAuthority, Endpoint, Fabric, MemoryTransport, Message, TrustStore
from gridloom.store import MeterDataStore
from gridloom.systems.mdms.editing import edit
from gridloom.systems.mdms.service import Mdms, MdmsActor
from tests.fabric.conftest import SimClock

from .helpers import DAY, Q

US = 1_000_000


def batch(meters: list[str], slot: int, *, wh: float = 100.0) -> dict[str, list[Any]]:
    """One concentrator batch: ``meters``' reads of interval ``slot`` of DAY, as the wire carries them."""
    n = len(meters)
    start_us = int((DAY + slot * Q).timestamp() * US)
    return {
        "meter_id": list(meters),
        "interval_start_us": [start_us] * n,
        "interval_s": [900] * n,
        "energy_delivered_wh": [wh + i for i in range(n)],
        "energy_received_wh": [0.0] * n,
        "reactive_varh": [1.0] * n,
        "voltage_v": [230.0] * n,
        "quality": [0] * n,
    }


METERS = [f"m{i}" for i in range(5)]


def mdms(store: MeterDataStore, clock: SimClock | None = None, **options: Any) -> Mdms:
    return Mdms(store, clock=clock or SimClock(DAY + dt.timedelta(days=1)), **options)


def test_buffered_reads_are_stored_at_flush_and_counted_then(store: MeterDataStore) -> None:
    core = mdms(store, buffer_reads=1_000)
    for slot in range(4):
        assert core.buffer_reads(batch(METERS, slot)) is None  # below the threshold: waits
    assert store.count("reads") == 0
    assert core.ingested == 0
    assert core.buffer.rows == 20
    result = core.flush()
    assert (result.inserted, result.duplicates) == (20, 0)
    assert store.count("reads") == 20
    assert (core.ingested, core.duplicates, core.buffer.rows) == (20, 0, 0)
    assert core.flush().received == 0  # nothing left to store


def test_passing_the_threshold_writes_to_the_store(store: MeterDataStore) -> None:
    core = mdms(store, buffer_reads=12)
    assert core.buffer_reads(batch(METERS, 0)) is None
    assert core.buffer_reads(batch(METERS, 1)) is None
    written = core.buffer_reads(batch(METERS, 2))  # 15 reads >= 12
    assert written is not None
    assert written.inserted == 15
    assert store.count("reads") == 15
    assert core.buffer.rows == 0


def test_behind_the_threshold_the_write_runs_while_more_reads_arrive(store: MeterDataStore) -> None:
    core = mdms(store, buffer_reads=10, write_behind=True)
    core.buffer_reads(batch(METERS, 0))
    assert core.buffer_reads(batch(METERS, 1)) is None  # 10 reads: validated, handed to the writer
    assert core.buffer.rows == 0
    core.buffer_reads(batch(METERS, 2))
    collected = core.buffer_reads(batch(METERS, 3))  # due again: the first write is collected first
    assert collected is not None
    assert collected.inserted == 10
    assert core.ingested == 10
    assert core.flush().inserted == 10  # waits for the second write
    assert store.count("reads") == 20
    assert core.ingested == 20
    core.close()


def test_a_write_behind_that_cannot_reach_the_store_keeps_its_reads(
    store: MeterDataStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gridloom.errors import StoreUnavailable

    core = mdms(store, buffer_reads=10, write_behind=True)
    original = store.ingest_reads
    calls = []

    def down(reads: Any) -> Any:
        calls.append(reads.num_rows)
        raise StoreUnavailable("the disk is full")

    monkeypatch.setattr(store, "ingest_reads", down)
    core.buffer_reads(batch(METERS, 0))
    core.buffer_reads(batch(METERS, 1))  # handed to the writer, which fails
    with pytest.raises(StoreUnavailable):
        core.flush()
    assert calls == [10]
    assert core.buffer.rows == 10  # back in the buffer, nothing lost
    monkeypatch.setattr(store, "ingest_reads", original)
    assert core.flush().inserted == 10
    assert store.count("reads") == 10
    core.close()


def test_the_oldest_batch_s_age_triggers_a_write(store: MeterDataStore) -> None:
    clock = SimClock(DAY)
    core = mdms(store, clock, buffer_reads=1_000, max_buffer_age_s=600)
    core.buffer_reads(batch(METERS, 0))
    clock.advance(599)
    assert core.buffer_reads(batch(METERS, 1)) is None
    clock.advance(1)
    assert core.buffer_reads(batch(METERS, 2)) is not None  # the first batch is 10 minutes old
    assert store.count("reads") == 15


def test_duplicates_across_buffered_batches_are_stored_once(store: MeterDataStore) -> None:
    core = mdms(store, buffer_reads=1_000)
    first = batch(METERS, 0, wh=100.0)
    core.buffer_reads(first)
    core.buffer_reads(batch(METERS, 1))
    core.buffer_reads(batch(METERS, 0, wh=999.0))  # a concentrator resends interval 0, other values
    core.buffer_reads(msgspec.msgpack.encode(first))  # and again, as the fabric hands it over
    result = core.flush()
    assert (result.inserted, result.duplicates) == (10, 10)
    stored = store.reads(start=DAY, end=DAY + Q)
    assert stored.column("energy_delivered_wh").to_pylist() == first["energy_delivered_wh"]  # the first wins
    core.buffer_reads(batch(METERS, 1))  # re-delivered after it was stored
    assert core.flush().duplicates == 5
    assert store.count("reads") == 10
    assert (core.ingested, core.duplicates) == (10, 15)


def test_close_period_flushes_first_and_estimates_only_what_never_came(store: MeterDataStore) -> None:
    core = mdms(store, buffer_reads=1_000_000)
    for slot in range(96):
        if slot != 40:  # interval 40 lost on the way
            core.buffer_reads(msgspec.msgpack.encode(batch(METERS, slot)))
    closed = core.close_period(DAY, DAY + dt.timedelta(days=1), METERS)
    assert closed.reads == 5 * 95
    assert closed.estimated == 5
    current = store.reads(start=DAY, end=DAY + dt.timedelta(days=1))
    assert current.num_rows == 5 * 96
    estimated = current.filter(pc.equal(current.column("source"), "estimated"))
    assert set(estimated.column("interval_start").to_pylist()) == {DAY + 40 * Q}


def test_a_late_measured_read_replaces_the_estimate_that_stood_in_for_it(store: MeterDataStore) -> None:
    core = mdms(store, buffer_reads=1_000_000)
    for slot in range(96):
        if slot != 40:  # interval 40 is late: the nightly VEE estimates it
            core.buffer_reads(batch(METERS, slot))
    core.close_period(DAY, DAY + dt.timedelta(days=1), METERS)
    # m0's interval 40 was edited by a person meanwhile: that edit stands
    edit(store, meter_id="m0", interval_start=DAY + 40 * Q, values={"energy_delivered_wh": 55.0},
         reason="customer_read", user="ops")  # fmt: skip
    core.buffer_reads(batch(METERS, 40, wh=500.0))  # the late reads: m0 500, m1 501, ...
    assert core.restate_late_reads() == 0  # still buffered: nothing restated before it is stored
    core.flush()
    at = DAY + 40 * Q
    current = store.reads(meter_ids=METERS, start=at, end=at + Q)
    assert current.column("source").to_pylist() == ["edited", "measured", "measured", "measured", "measured"]
    assert current.column("energy_delivered_wh").to_pylist() == [55.0, 501.0, 502.0, 503.0, 504.0]
    assert current.column("rule").to_pylist()[1:] == ["late_actual"] * 4
    history = store.reads(meter_ids=["m1"], start=at, end=at + Q, versions="all")
    assert history.column("source").to_pylist() == ["measured", "estimated", "measured"]  # every version kept
    assert core.usage(["m1"], at, at + Q).column("energy_delivered_wh").to_pylist() == [501.0]
    core.buffer_reads(batch(METERS, 40, wh=500.0))  # delivered again: stored once, restated once
    core.flush()
    assert store.reads(meter_ids=["m1"], start=at, end=at + Q, versions="all").num_rows == 3


def test_the_nightly_vee_in_meter_chunks_is_the_same_as_in_one(tmp_path: Path) -> None:
    from gridloom.store import open_store

    def day(chunk: int) -> tuple[Any, list[dict[str, Any]]]:
        with open_store(tmp_path / f"chunk-{chunk}.duckdb") as store:
            core = mdms(store, vee_chunk_meters=chunk)
            for slot in range(96):
                present = [m for i, m in enumerate(METERS) if (slot + i) % 7]  # gaps of every length and place
                core.buffer_reads(batch(present, slot, wh=float(slot % 13)))
            closed = core.close_period(DAY, DAY + dt.timedelta(days=1), list(reversed(METERS)))
            return closed, store.reads(versions="all").drop_columns(["recorded_at"]).to_pylist()

    one, rows_one = day(100)
    for chunk in (1, 2):
        chunked, rows = day(chunk)
        assert (chunked.reads, chunked.estimated, chunked.unestimated) == (one.reads, one.estimated, one.unestimated)
        assert chunked.flagged == one.flagged
        assert rows == rows_one


def test_a_malformed_batch_is_refused_on_arrival_and_the_buffer_kept(store: MeterDataStore) -> None:
    core = mdms(store, buffer_reads=1_000)
    core.buffer_reads(batch(METERS, 0))
    uneven = batch(METERS, 1) | {"quality": [0]}
    with pytest.raises(VeeInputError, match="differ in length"):
        core.buffer_reads(uneven)
    with pytest.raises(VeeInputError, match="differ in length"):
        core.buffer_reads(msgspec.msgpack.encode(uneven))
    with pytest.raises(VeeInputError, match="lacks column"):
        core.buffer_reads({k: v for k, v in batch(METERS, 1).items() if k != "voltage_v"})
    with pytest.raises(VeeInputError, match="interval_reads body"):
        core.buffer_reads(b"\x93\x01\x02\x03")  # msgpack, but not a map of columns
    assert core.flush().inserted == 5


def test_a_batch_with_bad_values_is_refused_at_flush_and_the_others_stored(store: MeterDataStore) -> None:
    core = mdms(store, buffer_reads=1_000)
    core.buffer_reads(batch(METERS, 0))
    bad = batch(METERS, 1)
    bad["energy_delivered_wh"][2] = float("nan")  # a store refuses non-finite energy
    core.buffer_reads(msgspec.msgpack.encode(bad))
    texts = batch(METERS, 2)
    texts["quality"][0] = "ok"  # a text where a number belongs
    core.buffer_reads(msgspec.msgpack.encode(texts))
    core.buffer_reads(batch(METERS, 3))
    result = core.flush()
    assert result.inserted == 10
    assert (core.rejected_batches, core.rejected_reads) == (2, 10)
    stored = store.reads()
    assert sorted({s for s in stored.column("interval_start").to_pylist()}) == [DAY, DAY + 3 * Q]
    assert core.buffer.rows == 0


def test_buffer_settings_are_checked(store: MeterDataStore) -> None:
    with pytest.raises(VeeConfigError, match="buffer_reads"):
        mdms(store, buffer_reads=-1)
    with pytest.raises(VeeConfigError, match="max_buffer_age_s"):
        mdms(store, max_buffer_age_s=-5.0)
    with pytest.raises(VeeConfigError, match="vee_chunk_meters"):
        mdms(store, vee_chunk_meters=0)


def test_without_a_buffer_every_batch_is_stored_as_it_arrives(store: MeterDataStore) -> None:
    core = mdms(store, buffer_reads=0)
    assert core.buffer_reads(batch(METERS, 0)) is not None
    assert store.count("reads") == 5


# --- the actor on the fabric ------------------------------------------------------------------------
@dataclass
class Wired:
    actor: MdmsActor
    headend: Endpoint
    billing: Endpoint
    answers: list[Message]
    transport: MemoryTransport


@pytest.fixture
async def wired(catalog: Catalog, store: MeterDataStore, tmp_path: Path) -> AsyncIterator[Wired]:
    clock = SimClock(DAY + dt.timedelta(days=1))
    ca = CertificateAuthority.init(tmp_path / "pki", clock=clock)
    answers: list[Message] = []

    async def keep(message: Message) -> None:
        answers.append(message)

    async def ignore(message: Message) -> None:
        return None

    async with MemoryTransport() as transport:
        fabric = Fabric(catalog=catalog, transport=transport, trust=TrustStore(ca.certificate), clock=clock)
        issue = lambda role, name: ca.issue(role, name, catalog=catalog, clock=clock)  # noqa: E731
        actor = await MdmsActor.attach(fabric, issue("mdms", "mdms-1"), mdms(store, clock, buffer_reads=1_000))
        headend = await fabric.attach(issue("ami_headend", "headend-1"), ignore)
        billing = await fabric.attach(issue("billing", "billing-1"), keep)
        yield Wired(actor, headend, billing, answers, transport)
        await fabric.close()


@pytest.mark.anyio
async def test_a_usage_request_sees_reads_still_in_the_buffer(wired: Wired) -> None:
    for slot in range(3):
        await wired.headend.send("AMI-10", "interval_reads", batch(METERS, slot), to="mdms-1", records=5)
    await wired.transport.drain()
    assert wired.actor.core.buffer.rows == 15  # buffered, not stored yet
    await wired.billing.send(
        "AMI-24", "usage_request",
        {"request_id": "r1", "meter_ids": METERS[:2], "start_us": int(DAY.timestamp() * US),
         "end_us": int((DAY + 3 * Q).timestamp() * US)},
        to="mdms-1",
    )  # fmt: skip
    await wired.transport.drain()
    [answer] = wired.answers
    assert len(answer.body["meter_id"]) == 6  # 2 meters x 3 intervals, all of them
    assert wired.actor.ingested == 15


@pytest.mark.anyio
async def test_the_actor_flushes_on_demand_and_refuses_a_malformed_batch(wired: Wired) -> None:
    await wired.headend.send("AMI-10", "interval_reads", batch(METERS, 0), to="mdms-1", records=5)
    await wired.headend.send("AMI-10", "interval_reads", {"meter_id": ["m0"]}, to="mdms-1", records=1)
    await wired.transport.drain()
    result = await wired.actor.flush()
    assert result.inserted == 5
    assert wired.actor.core.rejected_batches == 1
    assert (wired.actor.ingested, wired.actor.duplicates) == (5, 0)
