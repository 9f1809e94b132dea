"""Direct load control through the head-end: the LMS's (AMI-12c) and the DMS's own for local conditions (DGM-31),
each relayed to the customers' ESI (AMI-27) and answered to whoever asked, on the interface it came by."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from gridloom.catalog import Catalog
from gridloom.catalog.messages import DeclaredType
from gridloom.devices.flex import FlexFleet
from gridloom.devices.flex_han import EsiGateway
from gridloom.errors import NotAuthorised
from gridloom.fabric import CertificateAuthority, Fabric, MemoryTransport, TrustStore
from gridloom.fabric.envelope import to_micros
from gridloom.systems.headend import HeadEnd, HeadEndConfig
from gridloom.systems.lms.wire import LoadControl
from tests.fabric.conftest import Inbox

pytestmark = pytest.mark.anyio
START = dt.datetime(2026, 7, 1, 17, tzinfo=dt.UTC)
METERS = ["m1", "m2", "m3"]


def shed(event_id: str, meters: list[str]) -> LoadControl:
    return LoadControl(event_id, meters, "shed", 100.0, to_micros(START), to_micros(START + dt.timedelta(hours=1)))


async def test_the_dms_sheds_through_the_head_end_and_gets_the_answer_on_dgm31(catalog: Catalog, tmp_path: Path):
    ca = CertificateAuthority.init(tmp_path / "pki")
    actors = [("dms", "dms-1"), ("lms", "lms-1"), ("ami_headend", "headend-1"), ("esi", "esi-1")]
    ids = {i: ca.issue(r, i, catalog=catalog) for r, i in actors}
    fleet = FlexFleet.synthetic(len(METERS), seed=1)
    async with MemoryTransport() as transport:
        fabric = Fabric(catalog=catalog, transport=transport, trust=TrustStore(ca.certificate))
        dms, lms = Inbox(), Inbox()
        await fabric.attach(ids["dms-1"], dms)
        await fabric.attach(ids["lms-1"], lms)
        headend = await HeadEnd.attach(fabric, ids["headend-1"], config=HeadEndConfig(sweep_interval_s=None))
        esi = EsiGateway(fabric, ids["esi-1"], fleet, METERS)
        await esi.start()
        try:
            body = shed("overload-f1", ["m1", "m3", "m9"])
            await fabric.endpoints["dms-1"].send("DGM-31", DeclaredType.LOAD_CONTROL_EVENT, body, to="headend-1")
            await transport.drain()
            (answer,) = [m for m in dms.messages if m.message_type == DeclaredType.LOAD_CONTROL_EVENT.response]
            assert answer.interface == "DGM-31"
            assert (answer.body["status"], answer.body["done"], answer.body["failures"]) == (
                "partial", ["m1", "m3"], ["m9"]
            )  # fmt: skip
            assert lms.messages == []  # the LMS did not ask, so it hears nothing
            assert headend.stats.load_control_forwarded == 1
            esi.tick(START + dt.timedelta(minutes=1))
            assert fleet.in_event.tolist() == [True, False, True]

            # the LMS's own command still comes back to it on AMI-12c
            await fabric.endpoints["lms-1"].send("AMI-12c", DeclaredType.LOAD_CONTROL_EVENT, shed("dlc-1", ["m2"]),
                                                 to="headend-1")  # fmt: skip
            await transport.drain()
            (back,) = [m for m in lms.messages if m.message_type == DeclaredType.LOAD_CONTROL_EVENT.response]
            assert (back.interface, back.body["done"]) == ("AMI-12c", ["m2"])
            assert len(dms.messages) == 1

            # DGM-31 is the DMS's: the LMS may not use it (refused before it leaves, nothing relayed)
            with pytest.raises(NotAuthorised, match="DGM-31"):
                await fabric.endpoints["lms-1"].send("DGM-31", DeclaredType.LOAD_CONTROL_EVENT, shed("x", ["m2"]),
                                                     to="headend-1")  # fmt: skip
            await transport.drain()
            assert headend.stats.load_control_forwarded == 2
        finally:
            await esi.close()
            await headend.close()
