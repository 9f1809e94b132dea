"""The OMS's nodes on the real district: the meters below each are exactly the customers the grid feeds there."""

import numpy as np

from gridloom.systems.gis import connectivity_payload
from gridloom.systems.oms import OmsTopology


def test_meters_below_every_node_are_the_devices_customers(model):
    topo = OmsTopology.from_payload(connectivity_payload(model, replicas=2))
    assert topo.n_nodes > 0
    assert not topo.known_out.any()
    assert (topo.node_parent < np.arange(topo.n_nodes)).all()  # preorder
    n = model.n_customers
    for v in range(0, topo.n_nodes, 7):
        device = str(topo.node_id[v])
        replica, district_id = int(device[1:4]), device[5:]
        expected = model.downstream_customers(model.index(district_id)) + replica * n
        assert np.array_equal(np.sort(topo.order[topo.lo[v] : topo.hi[v]]), expected), device
        for other in topo.equivalent_devices(v)[1:]:  # the devices it stands for have the very same customers
            assert np.array_equal(model.downstream_customers(model.index(other[5:])) + replica * n, expected)


def test_meter_ids_are_found_in_bulk(model):
    payload = connectivity_payload(model, replicas=2)
    topo = OmsTopology.from_payload(payload)
    rows = np.random.default_rng(1).integers(0, payload.n_meters, 5000)
    ids = payload.meter_id[rows].tolist()
    assert np.array_equal(topo.meters_of(ids), rows)
    assert topo.meters_of(["s009-m00001", "", "s000-m00001x"]).tolist() == [-1, -1, -1]
