"""SimBench nets and their connectivity models, loaded once per test module."""

import warnings

import pytest

from gridloom.grid.connectivity import build_connectivity

DEFAULT = "1-MVLV-rural-all-0-sw"
LV = "1-LV-rural1--0-sw"


def load_net(code: str):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pandapower/simbench FutureWarnings on import and load
        import simbench

        return simbench.get_simbench_net(code)


@pytest.fixture(scope="module")
def rural():
    net = load_net(DEFAULT)
    return net, build_connectivity(net, code=DEFAULT)


@pytest.fixture(scope="module")
def lv():
    net = load_net(LV)
    return net, build_connectivity(net, code=LV)
