"""The LMS on the fabric: enrolment from the CIS, a DMS requirement turned into OpenADR events and direct
load control, records to the CIS; and a price event whose reduction the baseline finds in meter reads."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from gridloom.catalog import Catalog
from gridloom.catalog.messages import DeclaredType
from gridloom.devices.flex import FlexFleet
from gridloom.devices.flex_han import EsiGateway
from gridloom.fabric import CertificateAuthority, Fabric, MemoryTransport, Message, TrustStore
from gridloom.fabric.envelope import to_micros
from gridloom.protocols.openadr import CertificateCheck, TlsFiles, Ven, Vtn, openadr_fingerprint
from gridloom.systems.headend import HeadEnd, HeadEndConfig
from gridloom.systems.lms.baseline import BaselineRule
from gridloom.systems.lms.programs import Enrolment, default_programs
from gridloom.systems.lms.service import Lms
from gridloom.systems.lms.wire import Enrolments, Requirement

pytestmark = pytest.mark.anyio


class Inbox:
    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def __call__(self, message: Message) -> None:
        self.messages.append(message)

    def of(self, message_type: str) -> list[Message]:
        return [m for m in self.messages if m.message_type == message_type]


async def settle(predicate, timeout_s: float = 10.0) -> bool:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout_s
    while not predicate():
        if loop.time() > end:
            return False
        await asyncio.sleep(0.05)
    return True


def enrolment_body() -> Enrolments:
    # feeder f1: two reliability customers with gateways (VENs), two DLC customers; f2: one reliability customer
    return Enrolments(
        account_id=["a1", "a2", "a3", "a4", "a5"],
        meter_id=["m1", "m2", "m3", "m4", "m5"],
        program=["reliability", "reliability", "dlc", "dlc", "reliability"],
        ven_id=["ems-1", "ems-2", "", "", "ems-5"],
        feeder=["f1", "f1", "f1", "f1", "f2"],
        capacity_w=[3_000.0, 2_000.0, 4_000.0, 4_000.0, 5_000.0],
        dlc=[False, False, True, True, False],
    )


async def test_a_dms_requirement_becomes_openadr_events_and_direct_load_control(catalog: Catalog, tmp_path: Path):
    ca = CertificateAuthority.init(tmp_path / "pki")
    actors = [("lms", "lms-1"), ("dms", "dms-1"), ("cis", "cis-1"), ("ami_headend", "headend-1"), ("esi", "esi-1")]
    ids = {i: ca.issue(r, i, catalog=catalog) for r, i in actors}
    check = CertificateCheck.of(ca)
    vtn_tls = TlsFiles.write(ca, ca.issue_tls("lms", "lms-1", hosts=["127.0.0.1"]), tmp_path / "vtn")
    from cryptography import x509

    vtn_fp = openadr_fingerprint(x509.load_pem_x509_certificate(vtn_tls.cert.read_bytes()))
    fleet = FlexFleet.synthetic(5, seed=1)
    async with (
        MemoryTransport() as transport,
        Vtn("LMS-1", tls=vtn_tls, check=check, poll_interval=dt.timedelta(seconds=1)) as vtn,
    ):
        fabric = Fabric(catalog=catalog, transport=transport, trust=TrustStore(ca.certificate))
        dms, cis = Inbox(), Inbox()
        await fabric.attach(ids["dms-1"], dms)
        await fabric.attach(ids["cis-1"], cis)
        lms = Lms(fabric, ids["lms-1"], vtn=vtn, headend="headend-1", cis="cis-1", dms="dms-1")
        await lms.start()
        esi = EsiGateway(fabric, ids["esi-1"], fleet, ["m1", "m2", "m3", "m4", "m5"])
        await esi.start()

        # the AMI head-end relays direct load control: AMI-12c in, AMI-27 to the ESIs, their answers back
        headend = await HeadEnd.attach(fabric, ids["headend-1"], config=HeadEndConfig(sweep_interval_s=None))
        vens = []
        for name, group in (("ems-1", "f1"), ("ems-2", "f1"), ("ems-5", "f2")):
            tls = ca.issue_tls("customer_ems", name)
            vtn.enrol(name, fingerprint=openadr_fingerprint(tls.certificate), groups=[group])
            ven = Ven(name, vtn.url, tls=TlsFiles.write(ca, tls, tmp_path / name), check=check, vtn_fingerprint=vtn_fp,
                      decide=(lambda e: False) if name == "ems-2" else None)  # fmt: skip
            assert await ven.start()
            vens.append(ven)
        try:
            await fabric.endpoints["cis-1"].send("DGM-22", DeclaredType.DR_ENROLMENTS, enrolment_body(), to="lms-1")
            assert await settle(lambda: lms.stats.enrolled == 5)
            start = dt.datetime.now(dt.UTC).replace(second=0, microsecond=0) + dt.timedelta(minutes=5)
            req = Requirement("req-1", ["f1"], 8_000.0, to_micros(start), to_micros(start + dt.timedelta(hours=2)),
                              "reliability")  # fmt: skip
            await fabric.endpoints["dms-1"].send("DGM-16", DeclaredType.LOAD_MANAGEMENT_REQUIREMENT, req, to="lms-1")
            assert await settle(lambda: bool(dms.of(DeclaredType.LOAD_MANAGEMENT_REQUIREMENT.response)))
            answer = dms.of(DeclaredType.LOAD_MANAGEMENT_REQUIREMENT.response)[0].body
            # reliability customers on f1 first (3000+2000)*0.9 = 4,500 W, then DLC 4000*0.98 = 3,920 -> 8,420 W
            assert answer["status"] == "planned"
            assert answer["planned_w"] == pytest.approx(4_500 + 3_920)
            assert answer["events"] == ["req-1-reliability", "req-1-dlc"]
            # OpenADR: only the f1 VENs get the event; ems-2 opts out and the VTN knows
            assert await settle(lambda: len(vtn.opts.get("req-1-reliability", {})) == 2)
            assert vtn.opts["req-1-reliability"] == {"ems-1": "optIn", "ems-2": "optOut"}
            assert vens[2].events == []
            assert vens[0].events[0].signals["SIMPLE"][0] == 2.0
            # direct load control went through the head-end to the ESI, which confirmed m3 (the largest first)
            assert await settle(lambda: lms.stats.dlc_meters_done == 1)
            assert lms.events["req-1-dlc"].dlc_done == ["m3"]
            assert headend.stats.load_control_forwarded == 1
            esi.tick(start + dt.timedelta(minutes=1))
            assert fleet.in_event.tolist() == [False, False, True, False, False]
            assert not fleet.opted_out.any()
            # the CIS got the records of who was asked (billing uses them)
            assert await settle(lambda: bool(cis.of(DeclaredType.DR_EVENT_RECORDS)))
            records = cis.of(DeclaredType.DR_EVENT_RECORDS)[0].body
            assert records["account_id"] == ["a1", "a2", "a3"]
            assert records["opt"][2] == "dlc"
        finally:
            for ven in vens:
                await ven.stop()
            await lms.close()
            await fabric.close()


def test_a_price_event_lowers_load_and_the_baseline_shows_it(catalog: Catalog, tmp_path: Path):
    """CPP event 17-19 h UTC on a Tuesday; 12 days of 15-minute reads of 300 homes simulated with the flex fleet."""
    n, step = 300, 900
    treated, control = FlexFleet.synthetic(n, seed=11), FlexFleet.synthetic(n, seed=11)
    start = dt.datetime(2026, 7, 1, tzinfo=dt.UTC)  # a Wednesday
    ev_start, ev_end = dt.datetime(2026, 7, 14, 17, tzinfo=dt.UTC), dt.datetime(2026, 7, 14, 19, tzinfo=dt.UTC)
    meters = [f"m{i:04d}" for i in range(n)]
    rows_t, rows_c, times = [], [], []
    at = start
    while at < dt.datetime(2026, 7, 15, tzinfo=dt.UTC):
        hour = at.hour + at.minute / 60
        outdoor = 24 + 8 * np.sin((hour - 9) / 24 * 2 * np.pi)
        sun = max(0.0, np.sin((hour - 6) / 12 * np.pi))
        price = 1.2 if ev_start <= at < ev_end else 0.24
        rows_t.append(treated.step(at, step, outdoor_c=outdoor, irradiance=sun, price_per_kwh=price).energy_wh(step))
        rows_c.append(control.step(at, step, outdoor_c=outdoor, irradiance=sun, price_per_kwh=0.24).energy_wh(step))
        times.append(to_micros(at))
        at += dt.timedelta(seconds=step)
    energy = np.array(rows_t)  # (steps, sites)
    t = np.repeat(np.array(times), n)
    reads = pa.table(
        {
            "meter_id": pa.array(np.tile(meters, len(times)), pa.string()),
            "interval_start": pa.array(t, pa.int64()).cast(pa.timestamp("us", tz="UTC")),
            "interval_s": pa.array(np.full(t.size, step, np.int32)),
            "energy_delivered_wh": energy.ravel(),
        }
    )
    body = Enrolments(["a" + m for m in meters], meters, ["cpp"] * n, meters, ["f1"] * n, [2_000.0] * n, [False] * n)
    ca = CertificateAuthority.init(tmp_path / "pki")
    fabric = Fabric(catalog=catalog, transport=MemoryTransport(), trust=TrustStore(ca.certificate))
    lms = Lms(fabric, ca.issue("lms", "lms-1", catalog=catalog))  # settlement needs no started endpoint
    lms.enrol(Enrolment.from_body(body, default_programs()))
    from gridloom.systems.lms.service import LmsEvent

    program = default_programs()["cpp"]
    lms.events["cpp-0714"] = LmsEvent("cpp-0714", "r", program, np.arange(n), ev_start, ev_end, 0.0)
    perf, credits = lms.settle(reads, rule=BaselineRule(adjust=False))
    window = slice(times.index(to_micros(ev_start)), times.index(to_micros(ev_end)))
    true_reduction = np.array(rows_c)[window].sum() - energy[window].sum()
    measured = float(pa.compute.sum(perf["reduction_wh"]).as_py())
    assert true_reduction > 0
    assert measured > 0.5 * true_reduction  # the baseline sees most of what the customers actually cut
    assert measured == pytest.approx(true_reduction, rel=0.35)
    assert credits.num_rows == 0 or set(credits["event_id"].to_pylist()) == {"cpp-0714"}
