"""The LMS's enrolment from the CIS in pages (DGM-22), its VENs enrolled at the VTN by certificate fingerprint,
and settlement against a control group of meters that took no part."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from gridloom.catalog import Catalog
from gridloom.catalog.messages import DeclaredType
from gridloom.fabric import CertificateAuthority, Endpoint, Fabric, MemoryTransport, TrustStore
from gridloom.fabric.envelope import to_micros
from gridloom.protocols.openadr import CertificateCheck, Vtn
from gridloom.systems.lms.baseline import BaselineMethod, BaselineRule
from gridloom.systems.lms.service import FINGERPRINT_KEY, Lms
from gridloom.systems.lms.wire import Enrolments, Requirement
from tests.systems.billing.conftest import month_reads

pytestmark = pytest.mark.anyio
UTC = dt.UTC


def rows(n: int, *, program: str = "dlc", first: int = 0) -> Enrolments:
    ids = range(first, first + n)
    return Enrolments(
        account_id=[f"a{i}" for i in ids], meter_id=[f"m{i}" for i in ids], program=[program] * n,
        ven_id=[f"ems-{i}" if program != "dlc" else "" for i in ids], feeder=["f1"] * n, capacity_w=[1000.0] * n,
        dlc=[program == "dlc"] * n,
    )  # fmt: skip


def page(body: Enrolments, lo: int, hi: int) -> Enrolments:
    return Enrolments(*(getattr(body, name)[lo:hi] for name in Enrolments.__struct_fields__))


class Setup:
    def __init__(self, catalog: Catalog, tmp_path: Path, *, vtn: Vtn | None = None) -> None:
        self.ca = CertificateAuthority.init(tmp_path / "pki")
        self.catalog = catalog
        self.vtn = vtn

    async def start(self, transport: MemoryTransport) -> tuple[Lms, Endpoint]:
        fabric = Fabric(catalog=self.catalog, transport=transport, trust=TrustStore(self.ca.certificate))
        lms = Lms(fabric, self.ca.issue("lms", "lms-1", catalog=self.catalog), vtn=self.vtn)
        await lms.start()

        async def ignore(message: object) -> None:
            return None

        cis = await fabric.attach(self.ca.issue("cis", "cis-1", catalog=self.catalog), ignore)
        return lms, cis


async def test_an_enrolment_in_pages_replaces_the_old_one_when_its_last_page_is_in(catalog: Catalog, tmp_path: Path):
    setup = Setup(catalog, tmp_path)
    async with MemoryTransport() as transport:
        lms, cis = await setup.start(transport)
        await cis.send("DGM-22", DeclaredType.DR_ENROLMENTS, rows(2), to="lms-1")  # a whole one, no pages
        await transport.drain()
        assert lms.enrolment.account_id.tolist() == ["a0", "a1"]
        body = rows(7, first=10)
        parts = [(0, 3), (6, 7), (3, 6)]  # page 0, page 2, page 1: out of order
        for k, (lo, hi) in zip((0, 2, 1), parts, strict=True):
            ext = {"enrolment": "e-2", "page": k, "pages": 3}
            await cis.send("DGM-22", DeclaredType.DR_ENROLMENTS, page(body, lo, hi), to="lms-1", extensions=ext)
            await transport.drain()
            if k != 1:
                assert lms.enrolment.account_id.tolist() == ["a0", "a1"]  # the old one holds until the last page
        assert lms.enrolment.account_id.tolist() == [f"a{i}" for i in range(10, 17)]  # in page order
        assert lms.stats.enrolment_pages == 3


async def test_a_page_out_of_range_is_refused_and_the_enrolment_kept(catalog: Catalog, tmp_path: Path):
    setup = Setup(catalog, tmp_path)
    async with MemoryTransport() as transport:
        lms, cis = await setup.start(transport)
        await cis.send("DGM-22", DeclaredType.DR_ENROLMENTS, rows(2), to="lms-1")
        ext = {"enrolment": "e-3", "page": 4, "pages": 2}
        await cis.send("DGM-22", DeclaredType.DR_ENROLMENTS, rows(1, first=5), to="lms-1", extensions=ext)
        await transport.drain()
        assert lms.enrolment.account_id.tolist() == ["a0", "a1"]


async def test_vens_are_enrolled_at_the_vtn_by_the_fingerprints_of_the_enrolment(catalog: Catalog, tmp_path: Path):
    ca = CertificateAuthority.init(tmp_path / "vtn-pki")
    vtn = Vtn("LMS-1", tls=None, check=CertificateCheck.of(ca), insecure=True)  # enrolment needs no server
    setup = Setup(catalog, tmp_path, vtn=vtn)
    async with MemoryTransport() as transport:
        _, cis = await setup.start(transport)
        body = rows(3, program="cpp")
        fingerprints = ["AA:01", "AA:02", "AA:03"]
        await cis.send("DGM-22", DeclaredType.DR_ENROLMENTS, body, to="lms-1",
                       extensions={FINGERPRINT_KEY: fingerprints})  # fmt: skip
        await transport.drain()
        assert {v: (r.fingerprint, set(r.groups)) for v, r in vtn.vens.items()} == {
            "ems-0": ("AA:01", {"cpp", "f1"}), "ems-1": ("AA:02", {"cpp", "f1"}), "ems-2": ("AA:03", {"cpp", "f1"}),
        }  # fmt: skip
        # the next enrolment drops ems-2: the VTN refuses it from then on
        await cis.send("DGM-22", DeclaredType.DR_ENROLMENTS, page(body, 0, 2), to="lms-1",
                       extensions={FINGERPRINT_KEY: fingerprints[:2]})  # fmt: skip
        await transport.drain()
        assert set(vtn.vens) == {"ems-0", "ems-1"}


async def test_a_one_day_event_settles_against_the_control_group(catalog: Catalog, tmp_path: Path):
    """Twelve control meters use 100 Wh every 15 minutes all day; the two participants use 200 Wh (twice the
    group: the adjustment ratio is 2), and 50 Wh during the 17:00-18:00 reliability event. Baseline 4 x 200 =
    800 Wh, actual 4 x 50 = 200 Wh: 600 Wh each, at the reliability program's credit of 0.50/kWh."""
    setup = Setup(catalog, tmp_path)
    day, start = dt.datetime(2026, 7, 1, tzinfo=UTC), dt.datetime(2026, 7, 1, 17, tzinfo=UTC)
    end = start + dt.timedelta(hours=1)
    lo_us, hi_us = to_micros(start), to_micros(end)

    def participant(t_us: np.ndarray) -> np.ndarray:
        return np.where((t_us >= lo_us) & (t_us < hi_us), 50.0, 200.0)

    control = [f"c{i}" for i in range(12)]
    reads = month_reads(["m0", "m1"], delivered_wh=participant, start=day, end=day + dt.timedelta(days=1))
    reads = pa.concat_tables([reads, month_reads(control, start=day, end=day + dt.timedelta(days=1))])
    async with MemoryTransport() as transport:
        lms, cis = await setup.start(transport)
        await cis.send("DGM-22", DeclaredType.DR_ENROLMENTS, rows(2, program="reliability"), to="lms-1")
        await transport.drain()
        await lms.dispatch(Requirement("r1", ["f1"], 1500.0, lo_us, hi_us, "reliability"))
        rule = BaselineRule(method=BaselineMethod.CONTROL_GROUP, timezone="UTC")
        # a participant in the list is left out of its own event's group
        perf, credits = lms.settle(reads, rule=rule, control_meter_ids=[*control, "m0"])
    assert perf["complete"].to_pylist() == [True, True]
    assert perf["control_meters"].to_pylist() == [12, 12]
    assert perf["baseline_wh"].to_pylist() == pytest.approx([800.0, 800.0])
    assert credits["reduction_wh"].to_pylist() == pytest.approx([600.0, 600.0])
    assert credits["credit_per_kwh"].to_pylist() == [0.5, 0.5]
