"""SimBench districts: codes, conversion, index maps and the on-disk cache."""

from __future__ import annotations

import numpy as np
import pytest

from gridloom.errors import UnknownNetwork
from gridloom.grid import DEFAULT_DISTRICT, DISTRICTS, District, load_district, networks

LV = "1-LV-rural1--0-sw"


@pytest.fixture(scope="module")
def district() -> District:
    return load_district(DEFAULT_DISTRICT)


def test_unknown_code_names_close_matches() -> None:
    with pytest.raises(UnknownNetwork) as info:
        load_district("1-MVLV-rural-al-0-sw")
    assert "1-MVLV-rural-all-0-sw" in info.value.suggestions
    assert "did you mean" in str(info.value)


def test_every_offered_district_is_a_simbench_code() -> None:
    import simbench

    assert set(DISTRICTS) <= set(simbench.collect_all_simbench_codes())
    assert DEFAULT_DISTRICT in DISTRICTS


def test_default_district_matches_the_design(district: District) -> None:
    net = district.net
    assert district.n_customers == len(net.load) == 5373
    assert (district.n_nodes, district.n_lines, district.n_switches) == (len(net.bus), len(net.line), len(net.switch))
    assert (district.n_trafos, district.n_gens) == (len(net.trafo), len(net.sgen))
    mv_lv = district.node_volt_level[district.trafo_hv_node] == 5
    assert mv_lv.sum() == 90
    assert set(np.unique(district.customer_volt_level)) <= {5, 7}
    assert len(district.lv_customers) > 5000
    assert np.isfinite(district.node_xy).all()
    assert (district.node_vn_v[district.customer_node[district.lv_customers]] == 400.0).all()
    assert (district.customer_profile != "").all()
    assert (district.gen_profile != "").all()
    # Normally-open switches (ties between feeders) stay open.
    assert (~district.switch_closed_normal).sum() == 6


def test_index_maps_follow_pandapower_row_order(district: District) -> None:
    net = district.net
    np.testing.assert_array_equal(district.customer_node, net.bus.index.get_indexer(net.load.bus))
    np.testing.assert_array_equal(district.gen_node, net.bus.index.get_indexer(net.sgen.bus))
    np.testing.assert_allclose(district.customer_p_ref_w, net.load.p_mw.to_numpy() * 1e6)
    pgm = district.pgm_input
    node_id = district.pgm.node_id
    np.testing.assert_array_equal(pgm["node"]["id"], node_id)
    np.testing.assert_array_equal(pgm["sym_load"]["node"][: district.n_customers], node_id[district.customer_node])
    np.testing.assert_array_equal(pgm["sym_gen"]["node"], node_id[district.gen_node])
    np.testing.assert_array_equal(pgm["line"]["from_node"], node_id[district.line_from_node])
    np.testing.assert_array_equal(pgm["transformer"]["to_node"], node_id[district.trafo_lv_node])
    np.testing.assert_allclose(pgm["node"]["u_rated"], district.node_vn_v)


def test_cache_miss_builds_then_hit_skips_simbench(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = load_district(LV, cache_dir=tmp_path)
    assert networks.cache_path(LV, tmp_path).exists()

    def no_simbench(code: str) -> District:
        raise AssertionError("the cache should have been used")

    monkeypatch.setattr(networks, "build_district", no_simbench)
    second = load_district(LV, cache_dir=tmp_path)
    assert second is not first
    assert repr(second) == repr(first)
    np.testing.assert_array_equal(second.customer_p_ref_w, first.customer_p_ref_w)
    for component, array in first.pgm_input.items():
        assert second.pgm_input[component].tobytes() == array.tobytes()


def test_unreadable_cache_is_rebuilt(tmp_path) -> None:
    path = networks.cache_path(LV, tmp_path)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not a pickle")
    district = load_district(LV, cache_dir=tmp_path)
    assert district.n_customers == 13
    assert load_district(LV, cache_dir=tmp_path).n_customers == 13  # and the cache now holds it


def test_cache_key_follows_code_and_package_versions(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    before = networks.cache_path(LV, tmp_path)
    assert networks.cache_path(DEFAULT_DISTRICT, tmp_path) != before
    monkeypatch.setattr(networks, "version", lambda package: "0.0.0-other")
    assert networks.cache_path(LV, tmp_path) != before


def test_cache_dir_comes_from_the_environment(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRIDLOOM_CACHE_DIR", str(tmp_path))
    assert networks.cache_path(LV).is_relative_to(tmp_path)
