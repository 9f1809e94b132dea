"""The OMS's and the GIS's message bodies have exactly the keys ``catalog/data/messages.yaml`` declares."""

import pytest

from gridloom.catalog import Catalog
from gridloom.systems.gis.wire import ConnectivityColumns, ConnectivityRequest, ConnectivityResponse
from gridloom.systems.oms.wire import (
    MeterEventColumns,
    OutageStatusBody,
    PingRequestBody,
    RestorationEstimateBody,
    WorkOrderBody,
    WorkOrderResponse,
)


@pytest.mark.parametrize(
    ("interface", "message", "body", "response"),
    [
        ("AMI-11", "meter_events", MeterEventColumns, None),
        ("AMI-11", "on_demand_read", PingRequestBody, None),
        ("AMI-14", "connectivity_model", ConnectivityColumns, None),
        ("DGM-21", "connectivity_request", ConnectivityRequest, ConnectivityResponse),
        ("AMI-18", "work_order", WorkOrderBody, WorkOrderResponse),
        ("AMI-18", "outage_status", OutageStatusBody, None),
        ("DGM-27", "restoration_estimate", RestorationEstimateBody, None),
    ],
)
def test_bodies_match_the_declared_fields(catalog: Catalog, interface, message, body, response) -> None:
    [declared] = [
        d
        for d in catalog.declared_for(interface)
        if d.id == message and d.source in ("oms", "gis", "dms", "ami_headend")
    ][:1]
    assert body.__struct_fields__ == declared.fields
    if response is not None:
        assert response.__struct_fields__ == declared.response_fields
