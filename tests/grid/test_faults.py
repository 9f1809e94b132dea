"""Who is energised after devices open (checked against networkx on the pandapower topology),
and what protection does about faults (reclosing, lockout, fuses, sectionalizers, coordination)."""

from __future__ import annotations

import datetime as dt
import time
import warnings
from contextlib import contextmanager

import networkx as nx
import numpy as np
import pytest

from gridloom.errors import GridInputError
from gridloom.grid.connectivity import DeviceKind
from gridloom.grid.faults import FaultState
from gridloom.grid.protection import (
    Fault,
    OperationKind,
    ProtectionSettings,
    ReclosingSettings,
    TripCurve,
    clearing_device,
    simulate_fault,
    simulate_faults,
)

T0 = dt.datetime(2025, 3, 1, 12, 0, tzinfo=dt.UTC)
US = 1_000_000


@contextmanager
def switched(net, *, open_rows=(), close_rows=(), trafo_out=()):
    """Temporarily change switch states / trafo service in the pandapower net."""
    closed = net.switch.closed.copy()
    in_service = net.trafo.in_service.copy()
    net.switch.loc[net.switch.index[list(open_rows)], "closed"] = False
    net.switch.loc[net.switch.index[list(close_rows)], "closed"] = True
    net.trafo.loc[net.trafo.index[list(trafo_out)], "in_service"] = False
    try:
        yield net
    finally:
        net.switch["closed"] = closed
        net.trafo["in_service"] = in_service


def nx_dead_customers(net, **changes) -> np.ndarray:
    """Loads whose bus is not connected to the external grid, by pandapower's own topology graph."""
    with switched(net, **changes), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pandapower.topology as top

        graph = top.create_nxgraph(net, respect_switches=True)
    live = set()
    for bus in net.ext_grid.bus:
        live |= nx.node_connected_component(graph, bus)
    return np.flatnonzero(~net.load.bus.isin(live).to_numpy())


def dead(state: FaultState, replica: int = 0) -> np.ndarray:
    return np.flatnonzero(~state.customer_energized()[replica])


# ----------------------------------------------------------------- energisation vs networkx
@pytest.mark.parametrize("kind", [DeviceKind.FUSE, DeviceKind.RECLOSER, DeviceKind.BREAKER, DeviceKind.SWITCH])
def test_opening_a_device_deenergises_exactly_what_networkx_finds_behind_its_switch(rural, kind):
    net, m = rural
    rng = np.random.default_rng(hash(kind.value) % 1000)
    candidates = [d for d in m.devices_of_kind(kind) if m.normal_closed[d] and len(m.downstream_customers(d))]
    for d in rng.choice(candidates, size=min(3, len(candidates)), replace=False):
        state = FaultState(m, 3)
        state.open(1, d)
        expected = nx_dead_customers(net, open_rows=[m.switch_row[d]])
        assert len(expected) > 0
        np.testing.assert_array_equal(dead(state, 1), expected)
        np.testing.assert_array_equal(m.downstream_customers(d), expected)
        assert state.customer_energized()[[0, 2]].all()  # other replicas untouched


def test_opening_every_lv_fuse_matches_networkx(lv):
    net, m = lv
    for d in m.devices_of_kind(DeviceKind.FUSE):
        state = FaultState(m)
        state.open(0, d)
        np.testing.assert_array_equal(dead(state), nx_dead_customers(net, open_rows=[m.switch_row[d]]))


def test_a_transformer_out_of_service_deenergises_its_lv_grid(rural):
    net, m = rural
    x = m.devices_of_kind(DeviceKind.SERVICE_TRANSFORMER)[17]
    state = FaultState(m)
    state.open(0, x)
    np.testing.assert_array_equal(dead(state), nx_dead_customers(net, trafo_out=[m.trafo_row[x]]))
    # the power flow sees it as its LV breaker open
    sw = state.switch_closed_for_powerflow()[0]
    off = np.flatnonzero(sw != net.switch.closed.to_numpy())
    assert len(off) == 1
    assert net.switch.et.iloc[off[0]] == "t"
    assert net.switch.element.iloc[off[0]] == m.trafo_row[x]


def test_closing_a_tie_restores_a_dead_feeder_end_like_networkx(rural):
    """Feeder transfer: open feeder 5's breaker, close the loop tie from feeder 1."""
    net, m = rural
    tie_row = int(np.flatnonzero(net.switch.name.to_numpy() == "MV1.101 loop_line_switch 1.2")[0])
    tie = m.switch_device[tie_row]
    brk_row = int(np.flatnonzero(net.switch.name.to_numpy() == "MV1.101 Switch 79")[0])  # feeder 5 head
    brk = m.switch_device[brk_row]
    assert m.kind_of(brk) is DeviceKind.BREAKER
    assert not m.normal_closed[tie]
    state = FaultState(m, 2)
    state.open(0, brk)
    out_before = dead(state)
    assert len(out_before) == len(m.downstream_customers(brk))
    state.close(0, tie)
    expected = nx_dead_customers(net, open_rows=[brk_row], close_rows=[tie_row])
    np.testing.assert_array_equal(dead(state), expected)
    assert len(expected) < len(out_before)  # the tie picked up part of the feeder
    # node energisation agrees with the customers
    nodes = state.node_energized()[0]
    assert (nodes[m.customer_node] == state.customer_energized()[0]).all()


def test_random_switching_agrees_with_networkx(rural):
    net, m = rural
    rng = np.random.default_rng(3)
    switches = np.flatnonzero((m.switch_row >= 0) & m.normal_closed)
    picks = rng.choice(switches, size=40, replace=False)
    state = FaultState(m)
    state.open(0, picks)
    np.testing.assert_array_equal(dead(state), nx_dead_customers(net, open_rows=m.switch_row[picks]))


def test_meter_disconnect_affects_only_that_customer_and_no_switch(rural):
    net, m = rural
    state = FaultState(m)
    state.open(0, m.index("meter-42"))
    assert list(dead(state)) == [42]
    assert (state.switch_closed_for_powerflow()[0] == net.switch.closed.to_numpy()).all()


def test_switch_states_for_the_power_flow_follow_devices_per_replica(rural):
    net, m = rural
    state = FaultState(m, 4)
    fuse = m.devices_of_kind(DeviceKind.FUSE)[5]
    state.open([1, 3], fuse)
    sw = state.switch_closed_for_powerflow()
    assert sw.shape == (4, len(net.switch))
    row = m.switch_row[fuse]
    assert list(sw[:, row]) == [True, False, True, False]
    sw[:, row] = True
    assert (sw == net.switch.closed.to_numpy()).all()
    state.reset()
    assert state.customer_energized().all()
    assert len(state.abnormal()[0]) == 0


def test_energisation_of_100_replicas_is_vectorised(rural):
    """Sanity bound, not a benchmark: a per-customer Python loop would take ~1 s here."""
    _, m = rural
    state = FaultState(m, 100)
    rng = np.random.default_rng(1)
    state.open(rng.integers(0, 100, 500), rng.integers(0, m.n_devices, 500))
    state.customer_energized()
    t = time.perf_counter()
    for _ in range(5):
        out = state.customer_energized()
    per_call = (time.perf_counter() - t) / 5
    assert out.shape == (100, 5373)
    assert per_call < 0.1


def test_bad_indices_are_refused(lv):
    _, m = lv
    state = FaultState(m, 2)
    with pytest.raises(GridInputError, match="replica"):
        state.open(2, 0)
    with pytest.raises(GridInputError, match="device"):
        state.close(0, m.n_devices)
    with pytest.raises(GridInputError):
        FaultState(m, 0)


# ----------------------------------------------------------------- protection
def mv_section_below(m, device: int) -> int:
    """An MV switch a few devices below ``device`` on the same feeder, not behind another protective device."""
    for d in m.downstream_devices(device)[1:]:
        mv_switch = m.kind_of(d) is DeviceKind.SWITCH and m.node_vn_kv[m.node[d]] > 1
        if mv_switch and clearing_device(m, d) == device and len(m.downstream_customers(d)) > 0:
            return int(d)
    raise AssertionError("no section found")


def test_coordination_picks_the_nearest_upstream_protective_device(rural):
    _, m = rural
    protective = {DeviceKind.FUSE, DeviceKind.RECLOSER, DeviceKind.BREAKER, DeviceKind.SUBSTATION}
    rng = np.random.default_rng(11)
    for d in rng.integers(0, m.n_devices, 200):
        c = clearing_device(m, int(d))
        path = list(m.ancestors(int(d)))
        assert c in path
        assert m.kind_of(c) in protective
        between = path[: path.index(c)]
        assert not any(m.kind_of(x) in protective for x in between)
    # concrete cases
    rcl = m.devices_of_kind(DeviceKind.RECLOSER)[0]
    brk = m.feeder_breaker(rcl)
    assert clearing_device(m, mv_section_below(m, rcl)) == rcl
    assert clearing_device(m, mv_section_below(m, brk)) == brk
    x = m.devices_of_kind(DeviceKind.SERVICE_TRANSFORMER)[0]
    assert m.kind_of(clearing_device(m, x)) is DeviceKind.FUSE  # the transformer's primary fuse
    meter = m.index("meter-100")
    lv_fuse = clearing_device(m, meter)
    assert m.kind_of(lv_fuse) is DeviceKind.FUSE
    assert m.node_vn_kv[m.node[lv_fuse]] < 1


def test_temporary_fault_below_a_recloser_gives_only_momentary_interruptions(rural):
    _, m = rural
    rcl = int(m.devices_of_kind(DeviceKind.RECLOSER)[1])
    state = FaultState(m, 2)
    res = simulate_fault(m, Fault(1, mv_section_below(m, rcl), T0, permanent=False), state=state)
    assert res.clearing_device == rcl
    assert res.isolating_device == -1
    assert not res.locked_out
    assert [(o.device, o.kind) for o in res.operations] == [(rcl, OperationKind.OPEN), (rcl, OperationKind.CLOSE)]
    fast = ProtectionSettings().recloser
    assert res.operations[0].at == T0 + dt.timedelta(seconds=fast.fast_clear_s)
    assert (res.operations[1].at - res.operations[0].at).total_seconds() == fast.reclose_intervals_s[0]
    behind = m.downstream_customers(rcl)
    assert set(res.interruptions.customer) == set(behind)
    assert res.interruptions.momentary.all()
    assert len(res.interruptions) == len(behind)
    assert (res.interruptions.replica == 1).all()
    assert len(res.sustained_customers) == 0
    assert len(res.momentary_customers) == len(behind)
    res.apply(state)
    assert state.customer_energized().all()  # the reclose held


def test_permanent_fault_below_a_recloser_locks_it_out_after_its_shots(rural):
    _, m = rural
    rcl = int(m.devices_of_kind(DeviceKind.RECLOSER)[1])
    state = FaultState(m)
    res = simulate_fault(m, Fault(0, mv_section_below(m, rcl), T0), state=state)
    kinds = [o.kind for o in res.operations]
    assert kinds == [OperationKind.OPEN, OperationKind.CLOSE] * 2 + [OperationKind.OPEN, OperationKind.LOCKOUT]
    assert {o.device for o in res.operations} == {rcl}
    assert [o.reason for o in res.operations if o.kind is OperationKind.OPEN] == [
        "fast trip 1",
        "fast trip 2",
        "slow trip 3",
    ]
    assert res.locked_out
    assert res.isolating_device == rcl
    c = int(m.downstream_customers(rcl)[0])
    seen = res.interruptions.of_customer(c)
    assert [mom for _, _, mom in seen] == [True, True, False]
    assert seen[-1][1] == -1  # not restored: no repair time given
    res.apply(state)
    np.testing.assert_array_equal(dead(state), m.downstream_customers(rcl))


def test_repair_closes_the_locked_out_recloser_and_ends_the_interruption(rural):
    _, m = rural
    rcl = int(m.devices_of_kind(DeviceKind.RECLOSER)[2])
    res = simulate_fault(m, Fault(0, mv_section_below(m, rcl), T0, repair_after_s=5400))
    assert res.operations[-1].kind is OperationKind.CLOSE
    assert res.operations[-1].device == rcl
    last = res.interruptions.of_customer(int(m.downstream_customers(rcl)[0]))[-1]
    _start, end, momentary = last
    assert not momentary
    assert end == (T0 - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)) // dt.timedelta(microseconds=1) + 5400 * US
    state = FaultState(m)
    res.apply(state)
    assert state.customer_energized().all()


def test_fault_behind_a_fuse_blows_only_that_fuse(rural):
    _, m = rural
    c = 2500
    fuse = clearing_device(m, m.index(f"sp-{c}"))
    res = simulate_fault(m, Fault(0, m.index(f"sp-{c}"), T0, permanent=False))  # temporary faults blow fuses too
    assert [(o.device, o.kind) for o in res.operations] == [(fuse, OperationKind.OPEN)]
    assert res.operations[0].reason == "fuse blown"
    np.testing.assert_array_equal(np.sort(res.interruptions.customer), m.downstream_customers(fuse))
    assert not res.interruptions.momentary.any()
    assert (res.interruptions.end_us == -1).all()


def test_sectionalizer_opens_in_the_dead_time_and_limits_the_outage(rural):
    _, m = rural
    sec = int(m.devices_of_kind(DeviceKind.SECTIONALIZER)[0])
    clearing = clearing_device(m, sec)
    assert m.kind_of(clearing) in {DeviceKind.RECLOSER, DeviceKind.BREAKER}
    res = simulate_fault(m, Fault(0, sec, T0))
    assert res.isolating_device == sec
    assert not res.locked_out
    opens = [o for o in res.operations if o.device == sec]
    assert len(opens) == 1
    assert opens[0].kind is OperationKind.OPEN
    closes = [o for o in res.operations if o.device == clearing and o.kind is OperationKind.CLOSE]
    assert opens[0].at < closes[-1].at  # opened while the upstream device was open
    beyond = set(m.downstream_customers(sec).tolist())
    assert set(res.sustained_customers.tolist()) == beyond
    assert set(res.momentary_customers.tolist()) == set(m.downstream_customers(clearing).tolist()) - beyond
    state = FaultState(m)
    res.apply(state)
    assert set(dead(state).tolist()) == beyond


def test_breaker_sequence_uses_its_own_settings(rural):
    _, m = rural
    brk = int(m.devices_of_kind(DeviceKind.BREAKER)[0])
    settings = ProtectionSettings(
        breaker=ReclosingSettings(trip_curves=(TripCurve.SLOW,), reclose_intervals_s=(), slow_clear_s=0.3)
    )
    res = simulate_fault(m, Fault(0, mv_section_below(m, brk), T0), settings=settings)
    assert [o.kind for o in res.operations] == [OperationKind.OPEN, OperationKind.LOCKOUT]
    assert res.operations[0].at == T0 + dt.timedelta(seconds=0.3)


def test_fault_on_a_dead_section_does_nothing(rural):
    _, m = rural
    rcl = int(m.devices_of_kind(DeviceKind.RECLOSER)[0])
    state = FaultState(m)
    state.open(0, m.feeder_breaker(rcl))
    res = simulate_fault(m, Fault(0, mv_section_below(m, rcl), T0), state=state)
    assert res.clearing_device == -1
    assert res.operations == ()
    assert len(res.interruptions) == 0


def test_faults_in_sequence_do_not_count_customers_already_out(rural):
    _, m = rural
    rcl = int(m.devices_of_kind(DeviceKind.RECLOSER)[0])
    brk = m.feeder_breaker(rcl)
    state = FaultState(m)
    first, second = simulate_faults(
        m,
        [Fault(0, mv_section_below(m, brk), T0 + dt.timedelta(hours=1)), Fault(0, mv_section_below(m, rcl), T0)],
        state=state,
    )
    assert first.clearing_device == rcl
    assert second.clearing_device == brk
    assert set(second.interruptions.customer.tolist()) == set(m.downstream_customers(brk).tolist()) - set(
        m.downstream_customers(rcl).tolist()
    )
    assert not state.customer_energized()[0, m.downstream_customers(brk)].any()


def test_invalid_settings_and_faults_are_refused():
    with pytest.raises(GridInputError, match="intervals"):
        ReclosingSettings(trip_curves=(TripCurve.FAST, TripCurve.SLOW), reclose_intervals_s=())
    with pytest.raises(GridInputError, match="timezone"):
        Fault(0, 0, dt.datetime(2025, 1, 1))
    with pytest.raises(GridInputError):
        ProtectionSettings(sectionalizer_counts=0)
