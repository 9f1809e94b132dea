"""The device tree built from SimBench: what an operator would check on the single-line diagram."""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pytest

from gridloom.errors import TopologyError, UnknownGridDevice
from gridloom.grid.connectivity import ConnectivityModel, DeviceKind, build_connectivity
from tests.grid.conftest import LV, load_net


def ids_of(model: ConnectivityModel, kind: DeviceKind) -> list[str]:
    return [str(model.device_id[d]) for d in model.devices_of_kind(kind)]


def test_default_district_has_one_substation_eight_feeders_and_a_meter_per_load(rural):
    net, m = rural
    counts = m.counts()
    assert counts[DeviceKind.SUBSTATION] == 1
    assert counts[DeviceKind.BREAKER] == 8  # the CBs at the MV feeder heads
    assert counts[DeviceKind.RECLOSER] == 8  # one per feeder
    assert counts[DeviceKind.SERVICE_TRANSFORMER] == 90
    for kind in (DeviceKind.SERVICE_POINT, DeviceKind.PREMISE, DeviceKind.METER):
        assert counts[kind] == len(net.load) == 5373
    # every switch is a device, except the six inside the HV/MV substation (bus couplers and
    # the HV/MV transformers' breakers); the feeder-head breakers are devices
    sw = net.switch
    hv_trafos = net.trafo.index[net.trafo.vn_hv_kv >= 60]
    internal = (sw.et == "b") | ((sw.et == "t") & sw.element.isin(hv_trafos))
    assert internal.sum() == 6
    assert set(np.flatnonzero(m.switch_device < 0)) == set(np.flatnonzero(internal.to_numpy()))
    assert m.meshed_branches == 0  # SimBench operates its rings radially


def test_every_customer_path_is_meter_premise_service_point_then_up_to_the_substation(rural):
    _, m = rural
    for c in (0, 1234, 5372):
        path = m.path_to_source(c)
        kinds = [m.kind_of(d) for d in path]
        assert kinds[:3] == [DeviceKind.METER, DeviceKind.PREMISE, DeviceKind.SERVICE_POINT]
        assert kinds[-1] is DeviceKind.SUBSTATION
        assert str(m.device_id[path[0]]) == f"meter-{c}"
        lv_customer = m.node_vn_kv[m.customer_node[c]] < 1
        if lv_customer:
            assert DeviceKind.SERVICE_TRANSFORMER in kinds
            assert DeviceKind.FUSE in kinds
            assert DeviceKind.BREAKER in kinds


def test_tree_is_in_preorder_so_subtrees_are_contiguous(rural):
    _, m = rural
    child = np.flatnonzero(m.parent >= 0)
    assert (m.parent[child] < child).all()
    assert (m.depth[child] == m.depth[m.parent[child]] + 1).all()
    # each device's subtree lies inside its parent's
    assert (m.subtree_end[child] <= m.subtree_end[m.parent[child]]).all()
    assert m.subtree_end[0] == m.n_devices


def test_fuses_sit_on_lv_feeders_leaving_a_transformer_or_on_its_primary(rural):
    net, m = rural
    lv_buses = set(net.trafo.lv_bus[net.trafo.vn_hv_kv < 60])
    hv_side = set(zip(net.trafo.index, net.trafo.hv_bus, strict=True))
    for d in m.devices_of_kind(DeviceKind.FUSE):
        sw = net.switch.iloc[m.switch_row[d]]
        if sw.et == "l":
            assert sw.bus in lv_buses
        else:
            assert sw.et == "t"
            assert (sw.element, sw.bus) in hv_side
    # one primary fuse per service transformer, directly above it
    xfmr = m.devices_of_kind(DeviceKind.SERVICE_TRANSFORMER)
    assert all(m.kind_of(m.parent[x]) is DeviceKind.FUSE for x in xfmr)
    lv_feeder_lines = net.switch[(net.switch.et == "l") & net.switch.bus.isin(lv_buses)]
    assert m.counts()[DeviceKind.FUSE] == len(xfmr) + len(lv_feeder_lines)


def test_reclosers_are_closed_mv_load_break_switches_splitting_their_feeder(rural):
    net, m = rural
    _order, lo, hi = m.customer_range()
    below = hi - lo
    for r in m.devices_of_kind(DeviceKind.RECLOSER):
        sw = net.switch.iloc[m.switch_row[r]]
        assert sw.type == "LBS"
        assert sw.closed
        assert net.bus.vn_kv[sw.bus] > 1
        f = m.feeder_breaker(r)
        assert f >= 0
        assert f != r
        share = below[r] / below[f]
        assert 0 < share < 1
        if below[f] > 400:  # big feeders are split roughly in half
            assert 0.3 < share < 0.7, (m.device_id[r], below[r], below[f])
    feeders = {m.feeder_breaker(r) for r in m.devices_of_kind(DeviceKind.RECLOSER)}
    assert feeders == set(m.devices_of_kind(DeviceKind.BREAKER))


def test_normally_open_switches_are_leaf_ties(rural):
    net, m = rural
    open_rows = np.flatnonzero(~net.switch.closed.to_numpy())
    assert len(open_rows) == 6
    ties = m.switch_device[open_rows]
    assert (ties >= 0).all()
    assert not m.normal_closed[ties].any()
    assert (m.subtree_end[ties] == ties + 1).all()  # nothing hangs below a tie
    assert set(np.flatnonzero(~m.normal_closed)) == set(ties)


def test_sectionalizers_are_first_switches_of_laterals_below_a_breaker(rural):
    net, m = rural
    secs = m.devices_of_kind(DeviceKind.SECTIONALIZER)
    assert len(secs) > 0
    for s in secs:
        assert net.switch.type.iloc[m.switch_row[s]] == "LBS"
        assert m.feeder_breaker(s) >= 0
        assert len(m.downstream_customers(s)) > 0


def test_downstream_customers_are_those_whose_path_passes_the_device(rural):
    _, m = rural
    rng = np.random.default_rng(7)
    for d in [*m.devices_of_kind(DeviceKind.BREAKER)[:2], *rng.integers(0, m.n_devices, 20)]:
        expected = [c for c in range(0, m.n_customers, 7) if d in set(m.path_to_source(c))]
        got = m.downstream_customers(int(d))
        assert list(got[got % 7 == 0]) == expected


def test_lv_grid_hangs_its_transformer_below_the_external_grid(lv):
    net, m = lv
    assert m.counts()[DeviceKind.SUBSTATION] == 1
    assert m.counts()[DeviceKind.SERVICE_TRANSFORMER] == 1
    assert m.counts()[DeviceKind.METER] == len(net.load) == 13
    (x,) = m.devices_of_kind(DeviceKind.SERVICE_TRANSFORMER)
    assert m.kind_of(m.parent[x]) is DeviceKind.FUSE
    assert m.kind_of(m.parent[m.parent[x]]) is DeviceKind.SUBSTATION
    assert len(m.downstream_customers(int(x))) == 13
    assert m.counts()[DeviceKind.BREAKER] == 0
    assert m.counts()[DeviceKind.RECLOSER] == 0


def test_ids_are_stable_row_based_and_lookups_suggest_close_matches(rural):
    _, m = rural
    assert len(set(m.device_id.tolist())) == m.n_devices
    assert m.index("meter-5012") == m.customer_meter[5012]
    brk = ids_of(m, DeviceKind.BREAKER)[0]
    assert m.switch_row[m.index(brk)] == int(brk.split("-")[1])
    with pytest.raises(UnknownGridDevice) as err:
        m.index("meter-50120")
    assert "meter-5012" in err.value.suggestions
    with pytest.raises(UnknownGridDevice):
        m.downstream_customers(m.n_devices)


def test_gis_export_lists_every_device_with_parent_state_and_coordinates(lv):
    _, m = lv
    doc = m.to_dict()
    assert len(doc["devices"]) == m.n_devices
    by_id = {d["id"]: d for d in doc["devices"]}
    for entry in doc["devices"]:
        assert entry["parent"] is None or entry["parent"] in by_id
        assert entry["closed"] == entry["normal_closed"]
        assert -180 <= entry["lon"] <= 180
        assert -90 <= entry["lat"] <= 90
    geo = m.to_geojson()
    assert geo["type"] == "FeatureCollection"
    assert len(geo["features"]) == m.n_devices
    json.dumps(geo)  # serialisable as is


def test_a_district_object_is_accepted_as_well_as_a_bare_net(lv):
    net, m = lv

    @dataclass(frozen=True)
    class FakeDistrict:  # what matters of gridloom.grid.model.District: .code and .net
        code: str
        net: object

    built = build_connectivity(FakeDistrict(code=LV, net=net))
    assert built.code == LV
    assert built.device_id.tolist() == m.device_id.tolist()
    assert (built.parent == m.parent).all()


def test_a_net_without_external_grid_is_refused(lv):
    broken = load_net(LV)
    broken.ext_grid = broken.ext_grid.iloc[0:0]
    with pytest.raises(TopologyError, match="external grid"):
        build_connectivity(broken, code="broken")
