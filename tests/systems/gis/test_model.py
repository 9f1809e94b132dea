"""The GIS's connectivity model: built from the grid, cut into messages of whole substations, put together."""

import numpy as np
import pytest

from gridloom.errors import ConnectivityDataError
from gridloom.grid.connectivity import DeviceKind
from gridloom.grid.faults import FaultState
from gridloom.grid.territory import build_territory
from gridloom.systems.gis import ConnectivityPayload, connectivity_payload, device_row, territory_payload
from gridloom.systems.oms import OmsTopology


def test_the_territory_model_follows_the_grid(district, model):
    territory = build_territory(district, district.n_customers + 100)  # a second, partial substation
    payload = territory_payload(model, territory)
    network = ~np.isin(model.kind, [DeviceKind.SERVICE_POINT.code, DeviceKind.PREMISE.code, DeviceKind.METER.code])
    assert payload.n_devices == 2 * int(network.sum())
    assert payload.n_meters == territory.customers
    assert payload.meter_id.tolist() == territory.meter_ids().tolist()
    assert (payload.parent < np.arange(payload.n_devices)).all()  # parents first: a tree from the substations down
    # meter 57 of substation 1 hangs from the device its service point hangs from, below its transformer
    c = 57
    row = district.n_customers + c
    sp_parent = str(model.device_id[model.parent[model.customer_service_point[c]]])
    assert payload.device_id[payload.meter_device[row]] == f"s001-{sp_parent}"
    xfmr = [
        d for d in model.ancestors(int(model.customer_meter[c])) if model.kind[d] == DeviceKind.SERVICE_TRANSFORMER.code
    ]
    assert payload.device_id[payload.meter_transformer[row]] == f"s001-{model.device_id[xfmr[0]]}"
    assert device_row(payload, 1, "fuse-1775") == payload.n_devices // 2 + int(
        np.flatnonzero(model.device_id[network] == "fuse-1775")[0]
    )


def test_current_states_come_from_the_field(district, model):
    state = FaultState(model, 1)
    state.open(0, model.index("fuse-1775"))
    payload = connectivity_payload(model, current_closed=state.current_closed)
    row = device_row(payload, 0, "fuse-1775")
    assert not payload.current_closed[row]
    assert payload.normal_closed[row]
    topo = OmsTopology.from_payload(payload)
    assert topo.known_out.sum() == len(model.downstream_customers(model.index("fuse-1775")))


def test_parts_of_whole_substations_put_together_in_any_order(district, model):
    payload = connectivity_payload(model, replicas=3)
    parts = payload.parts(max_rows=20_000)
    assert len(parts) == 3
    assert all(len(p.device_id) == payload.n_devices // 3 for p in parts)
    again = ConnectivityPayload.from_parts(parts[::-1])
    for name in ("device_id", "kind", "parent", "normal_closed", "current_closed", "meter_id", "meter_device"):
        assert np.array_equal(getattr(again, name), getattr(payload, name)), name
    assert len(payload.parts(max_rows=10**9)) == 1
    with pytest.raises(ConnectivityDataError, match=r"has 3 parts; got parts \[0, 2\]"):
        ConnectivityPayload.from_parts([parts[0], parts[2]])
    parts[1].kind[0] = "transformer-ish"
    with pytest.raises(ConnectivityDataError, match="unknown device kinds"):
        ConnectivityPayload.from_parts(parts)
    other = connectivity_payload(model).parts(model_id="another")
    with pytest.raises(ConnectivityDataError, match="different models"):
        ConnectivityPayload.from_parts([*other, parts[0]])
