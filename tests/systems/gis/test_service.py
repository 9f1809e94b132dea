"""The GIS on the fabric: the model pushed to the OMS (AMI-14), sent to a DMS that asks (DGM-21)."""

import datetime as dt
from pathlib import Path

import msgspec
import pytest

from gridloom.catalog import Catalog
from gridloom.errors import OmsConfigError
from gridloom.fabric import CertificateAuthority, Fabric, MemoryTransport, TrustStore
from gridloom.systems.gis import ConnectivityColumns, ConnectivityPayload, GisActor, connectivity_payload
from tests.fabric.conftest import Inbox, SimClock

pytestmark = pytest.mark.anyio
START = dt.datetime(2026, 7, 1, tzinfo=dt.UTC)


async def test_push_to_the_oms_and_answer_a_dms(catalog: Catalog, model, tmp_path: Path) -> None:
    clock = SimClock(START)
    ca = CertificateAuthority.init(tmp_path / "pki", clock=clock)

    def issue(role: str, instance: str):
        return ca.issue(role, instance, catalog=catalog, clock=clock)

    payload = connectivity_payload(model, replicas=2)
    async with MemoryTransport() as transport:
        fabric = Fabric(catalog=catalog, transport=transport, trust=TrustStore(ca.certificate), clock=clock)
        oms, dms = Inbox(), Inbox()
        await fabric.attach(issue("oms", "oms-1"), oms)
        await fabric.attach(issue("dms", "dms-1"), dms)
        with pytest.raises(OmsConfigError, match="role 'gis'"):
            GisActor(fabric, issue("oms", "oms-2"), payload)
        gis = await GisActor.attach(fabric, issue("gis", "gis-1"), payload)
        await transport.drain()
        parts = [msgspec.convert(m.body, ConnectivityColumns) for m in oms.messages]
        assert [(m.interface, m.message_type) for m in oms.messages] == [("AMI-14", "connectivity_model")] * 2
        assert ConnectivityPayload.from_parts(parts).n_meters == payload.n_meters
        # a DMS asks on DGM-21: one answer per part, correlated to the request
        [request] = await fabric.endpoints["dms-1"].send("DGM-21", "connectivity_request", {"request_id": "r1"},
                                                         to="gis-1")  # fmt: skip
        await transport.drain()
        assert [m.message_type for m in dms.messages] == ["connectivity_request.response"] * 2
        assert {m.envelope.correlation_id for m in dms.messages} == {request.message_id}
        assert {m.body["request_id"] for m in dms.messages} == {"r1"}
        # switching changes the current states: the OMS gets the model again
        states = payload.current_closed.copy()
        states[5] = False
        await gis.update_states(states)
        await transport.drain()
        latest = [msgspec.convert(m.body, ConnectivityColumns) for m in oms.messages[2:]]
        assert not ConnectivityPayload.from_parts(latest).current_closed[5]
        assert fabric.stats.total_rejections() == {}
        await fabric.close()
