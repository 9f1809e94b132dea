"""Locating outages on a hand-built network: the most upstream device whose meters explain the evidence."""

import numpy as np
import pytest

from gridloom.errors import ConnectivityDataError
from gridloom.grid.connectivity import DeviceKind
from gridloom.systems.gis import ConnectivityPayload
from gridloom.systems.oms import InferenceParams, OmsTopology
from gridloom.systems.oms.inference import explain

K = DeviceKind
# row: (id, kind, parent)
DEVICES = [
    ("sub-0", K.SUBSTATION, -1),
    ("brk-1", K.BREAKER, 0),
    ("fuse-2", K.FUSE, 1),  # primary fuse of xfmr-3: the same meters, one node
    ("xfmr-3", K.SERVICE_TRANSFORMER, 2),
    ("sw-4", K.SWITCH, 3),
    ("fuse-5", K.FUSE, 1),
    ("sw-6", K.SWITCH, 5),
    ("brk-7", K.BREAKER, 0),  # the substation's other feeder
    ("fuse-8", K.FUSE, 7),
    ("sw-9", K.SWITCH, 1),  # a normally-open tie
]
# meters 0-5 below sw-4 (xfmr-3), 6-9 below sw-6 (fuse-5), 10-12 below fuse-8
METER_DEVICE = [4] * 6 + [6] * 4 + [8] * 3


def payload(current_closed: list[bool] | None = None) -> ConnectivityPayload:
    n = len(DEVICES)
    return ConnectivityPayload(
        district="hand",
        device_id=np.array([d[0] for d in DEVICES]),
        kind=np.array([d[1].code for d in DEVICES], dtype=np.int8),
        parent=np.array([d[2] for d in DEVICES], dtype=np.int64),
        normal_closed=np.array([True] * (n - 1) + [False]),  # the last row is the tie
        current_closed=np.array(current_closed or [True] * (n - 1) + [False]),
        meter_id=np.array([f"m{i}" for i in range(13)]),
        meter_device=np.array(METER_DEVICE, dtype=np.int64),
        meter_transformer=np.array([3] * 6 + [-1] * 7, dtype=np.int64),
    )


@pytest.fixture
def topo() -> OmsTopology:
    return OmsTopology.from_payload(payload())


def located(topo: OmsTopology, reported: list[int], *, confirmed: list[int] = (), contradicted: list[str] = ()):
    flags = np.zeros(topo.n_nodes, dtype=bool)
    for device in contradicted:
        flags[topo.node_of(device)] = True
    result = explain(
        topo,
        reported=np.asarray(reported, dtype=np.int64),
        confirmed=np.asarray(confirmed, dtype=np.int64),
        in_play=lambda scope: topo.meters_below[scope].astype(float),
        contradicted=lambda scope: flags[scope],
        params=InferenceParams(),
    )
    return [str(topo.node_id[v]) for v in result.nodes], [f"m{m}" for m in result.premises], result


def test_nodes_are_locatable_devices_with_meters_and_equal_ones_are_one(topo: OmsTopology) -> None:
    # preorder; switches only connect; a breaker with a single fuse below it is one node with the fuse
    assert topo.node_id.tolist() == ["sub-0", "brk-1", "fuse-2", "fuse-5", "brk-7"]
    assert topo.equivalent_devices(topo.node_of("xfmr-3")) == ["fuse-2", "xfmr-3"]  # the most upstream names it
    assert topo.equivalent_devices(topo.node_of("fuse-8")) == ["brk-7", "fuse-8"]
    assert topo.meters_below.tolist() == [13, 10, 6, 4, 3]
    assert topo.node_of("sw-9") == -1
    assert sorted(topo.order[topo.lo[2] : topo.hi[2]].tolist()) == [0, 1, 2, 3, 4, 5]
    assert topo.meters_of(["m7", "nope", "m0", "m0-but-far-too-long"]).tolist() == [7, -1, 0, -1]


def test_the_most_upstream_device_explaining_the_evidence(topo: OmsTopology) -> None:
    assert located(topo, [0, 3])[0] == ["fuse-2"]  # 2 of 6 meters of the transformer: lost the rest
    assert located(topo, [0, 3, 7])[0] == ["brk-1"]  # both fuses' meters: the breaker
    nodes, premises, result = located(topo, [4])
    assert nodes == []
    assert premises == ["m4"]
    assert result.premise_confidence[0] > 0.5
    assert located(topo, [4], confirmed=[1])[0] == ["fuse-2"]  # a neighbour did not answer its ping
    _, _, clear = located(topo, [0, 1, 2, 3])
    assert clear.node_confidence[0] > 0.9


def test_a_node_with_a_meter_known_to_have_supply_cannot_be_out(topo: OmsTopology) -> None:
    # a meter below fuse-2 answered a ping after the outage began: neither fuse-2 nor anything above it is out
    nodes, premises, _ = located(topo, [0, 3], contradicted=["fuse-2", "brk-1", "sub-0"])
    assert nodes == []
    assert premises == ["m0", "m3"]


def test_meters_below_an_open_device_are_known_out() -> None:
    states = [True] * 9 + [False]
    states[5] = False  # fuse-5 is open in the GIS (a crew opened it)
    topo = OmsTopology.from_payload(payload(states))
    assert topo.known_out.tolist() == [False] * 6 + [True] * 4 + [False] * 3


def test_a_model_with_a_child_before_its_parent_is_refused() -> None:
    good = payload()
    with pytest.raises(ConnectivityDataError, match=r"device row 1 \(brk-1\).*after its parent"):
        ConnectivityPayload(**{**good.__dict__, "parent": np.array([-1, 2, 1, 2, 3, 1, 5, 0, 7, 1])})
