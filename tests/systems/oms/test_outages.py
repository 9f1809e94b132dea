"""Outages located from what the meters send: real protection, real meter fleets, a lossy AMI network."""

import datetime as dt

import numpy as np
import pytest

from gridloom.devices.comms import CommConfig
from gridloom.grid.connectivity import ConnectivityModel, DeviceKind
from gridloom.grid.protection import Fault
from gridloom.systems.oms import OutageStatus
from tests.systems.oms.conftest import START, US, devices, run_outages

REPAIR_S = 3600.0


def first(model: ConnectivityModel, kind: DeviceKind) -> str:
    return str(model.device_id[model.devices_of_kind(kind)[0]])


@pytest.mark.parametrize(
    ("pick", "isolated_by"),
    [
        (lambda m: "xfmr-39", "fuse-1775"),  # a transformer fault blows its primary fuse
        (lambda m: devices(m, DeviceKind.FUSE, customers=(15, 30))[0], None),  # an LV feeder fuse
        (lambda m: first(m, DeviceKind.RECLOSER), None),  # a recloser locks out
        (lambda m: first(m, DeviceKind.BREAKER), None),  # a feeder breaker locks out
    ],
    ids=["transformer", "fuse", "recloser", "breaker"],
)
def test_a_single_outage_is_located_verified_dispatched_and_restored(district, model, pick, isolated_by):
    device = pick(model)
    fault = Fault(replica=0, device=model.index(device), at=START + dt.timedelta(minutes=5), repair_after_s=REPAIR_S)
    run = run_outages(district, model, [fault])
    [result] = run.results
    truth = f"s000-{isolated_by or device}"
    assert f"s000-{model.device_id[result.isolating_device]}" == truth
    [outcome] = run.score.outcomes
    assert outcome.detected
    assert outcome.detection_delay_s is not None
    assert 0 <= outcome.detection_delay_s <= 180
    assert outcome.located
    [record] = run.records()
    assert record.device_id == truth or truth in record.equivalent_devices
    assert f"s000-{device}" in [record.device_id, *record.equivalent_devices]
    assert record.status is OutageStatus.RESTORED
    assert not record.momentary
    assert record.customers == len(result.sustained_customers)
    assert record.confidence >= 0.9
    assert "confirmed" in [e.what for e in record.timeline]  # verification pings agreed
    assert record.work_order_id is not None
    assert record.estimated_restoration_us > record.start_us
    gaps = result.interruptions
    assert abs(record.start_us - gaps.start_us.min()) <= 2 * US  # from the first trip of a reclosing sequence
    assert abs(record.end_us - gaps.end_us.max()) <= 5 * US  # restores carry the meters' own times


@pytest.mark.parametrize("loss", [0.3, 0.5])
def test_half_the_last_gasps_lost_and_batches_out_of_order(district, model, loss):
    fuse = devices(model, DeviceKind.FUSE, customers=(15, 30))[1]
    faults = [
        Fault(replica=0, device=model.index(fuse), at=START + dt.timedelta(minutes=5), repair_after_s=REPAIR_S),
        Fault(replica=0, device=model.index(first(model, DeviceKind.RECLOSER)), at=START + dt.timedelta(minutes=9),
              repair_after_s=REPAIR_S),
    ]  # fmt: skip
    comm = CommConfig(last_gasp_loss_probability=loss, last_gasp_mesh_dependency=0.6)
    run = run_outages(district, model, faults, comm=comm, shuffle_s=20.0, seed=3)
    gasps = run.core.evidence.stats.last_gasps
    out = sum(len(r.sustained_customers) for r in run.results)
    assert gasps < (1 - loss + 0.05) * out  # at least that share was lost on the way
    assert run.score.faults == 2
    assert all(o.located and o.detection_delay_s <= 180 for o in run.score.outcomes)
    assert {r.device_id for r in run.records()} == {o.device for o in run.score.outcomes}


def test_a_single_premise_out_on_the_customers_side(district, model):
    xfmr = model.index("xfmr-39")
    meter = int(model.downstream_customers(xfmr)[10])
    start = START + dt.timedelta(minutes=5, seconds=17)
    lossless = CommConfig(last_gasp_loss_probability=0.0, event_loss_probability=0.0, batch_loss_probability=0.0)
    run = run_outages(district, model, [], premise=[(meter, start, start + dt.timedelta(minutes=40))], comm=lossless)
    [record] = run.records(network=False)
    assert record.kind.value == "premise"
    assert record.device_id == f"s000-m{meter:05d}"
    assert record.customer_side  # its neighbours answered the pings; it did not
    assert record.work_order_id is None  # not a utility outage: no crew
    assert record.status is OutageStatus.RESTORED
    indices = run.core.indices(START, START + dt.timedelta(days=1))
    assert indices.saifi == 0
    assert indices.sustained_outages == 0


def test_nested_outage_a_fuse_still_out_after_its_feeder_is_restored(district, model):
    breaker = model.devices_of_kind(DeviceKind.BREAKER)[0]
    fuses = [
        f for f in devices(model, DeviceKind.FUSE, customers=(15, 30)) if model.is_downstream(model.index(f), breaker)
    ]
    fuse = model.index(fuses[0])
    at = START + dt.timedelta(minutes=5)
    faults = [
        Fault(replica=0, device=fuse, at=at, repair_after_s=2 * REPAIR_S),  # blows, repaired in 2 hours
        Fault(replica=0, device=int(breaker), at=at + dt.timedelta(seconds=4), repair_after_s=1800),  # 30 min
    ]
    run = run_outages(district, model, faults, hours=4)
    records = run.records()
    feeder = next(r for r in records if r.device_id == f"s000-{model.device_id[breaker]}")
    nested = next(r for r in records if r.device_id == f"s000-{model.device_id[fuse]}")
    n_fuse = len(model.downstream_customers(fuse))
    assert nested.parent == feeder.outage_id
    assert nested.customers == n_fuse
    assert feeder.customers == len(model.downstream_customers(breaker)) - n_fuse
    assert nested.start_us <= feeder.start_us + 2 * US  # out since the feeder went: it keeps that start
    assert feeder.status is OutageStatus.RESTORED
    assert nested.status is OutageStatus.RESTORED
    assert abs(feeder.end_us - (faults[1].at.timestamp() + 1800) * US) < 60 * US  # partial restoration
    assert abs(nested.end_us - (at.timestamp() + 2 * REPAIR_S) * US) < 60 * US  # then the fuse
    assert nested.work_order_id is not None
    # each customer is counted once, with its own duration
    indices = run.core.indices(START, START + dt.timedelta(days=1))
    assert indices.customers_interrupted == len(model.downstream_customers(breaker))


def test_a_fuse_that_blew_before_its_feeder_tripped_is_an_outage_of_its_own(district, model):
    breaker = model.devices_of_kind(DeviceKind.BREAKER)[0]
    fuses = [
        f for f in devices(model, DeviceKind.FUSE, customers=(15, 30)) if model.is_downstream(model.index(f), breaker)
    ]
    fuse = model.index(fuses[1])
    at = START + dt.timedelta(minutes=5)
    faults = [
        Fault(replica=0, device=fuse, at=at, repair_after_s=2 * REPAIR_S),
        Fault(replica=0, device=int(breaker), at=at + dt.timedelta(minutes=2), repair_after_s=1800),
    ]
    run = run_outages(district, model, faults, hours=4)
    by_device = {r.device_id: r for r in run.records()}
    own = by_device[f"s000-{model.device_id[fuse]}"]
    feeder = by_device[f"s000-{model.device_id[breaker]}"]
    assert own.parent is None
    assert own.start_us < feeder.start_us - 100 * US
    assert feeder.customers == len(model.downstream_customers(breaker)) - len(model.downstream_customers(fuse))


def test_momentary_interruptions_count_for_maifi_not_as_sustained(district, model):
    recloser = int(model.devices_of_kind(DeviceKind.RECLOSER)[0])
    at = START + dt.timedelta(minutes=5)
    faults = [
        # cleared by the second trip: a 2 s and a 15 s interruption, then the reclose holds
        Fault(replica=0, device=recloser, at=at, permanent=False, trips_to_clear=2),
        # cleared by the first: one 2 s interruption, too short for a last gasp
        Fault(replica=0, device=recloser, at=at + dt.timedelta(minutes=20), permanent=False, trips_to_clear=1),
    ]
    run = run_outages(district, model, faults, hours=1)
    records = run.records()
    assert len(records) == 1
    [record] = records
    assert record.momentary
    assert record.status is OutageStatus.RESTORED
    assert record.device_id == f"s000-{model.device_id[recloser]}"
    assert record.work_order_id is None  # restored before any crew was sent
    indices = run.core.indices(START, START + dt.timedelta(hours=1))
    assert indices.saifi == 0
    assert indices.saidi_min == 0
    assert indices.caidi_min is None
    n = len(model.downstream_customers(recloser))
    assert indices.momentary_events == 1
    assert indices.maifi == pytest.approx(n / district.n_customers, rel=0.02)


def test_outages_in_two_substations_at_once(district, model):
    recloser = int(model.devices_of_kind(DeviceKind.RECLOSER)[1])
    fuse = model.index(devices(model, DeviceKind.FUSE, customers=(15, 30))[2])
    at = START + dt.timedelta(minutes=5)
    faults = [
        Fault(replica=0, device=recloser, at=at, repair_after_s=REPAIR_S),
        Fault(replica=1, device=fuse, at=at + dt.timedelta(seconds=3), repair_after_s=REPAIR_S),
        Fault(replica=1, device=recloser, at=at + dt.timedelta(seconds=5), repair_after_s=REPAIR_S),
    ]
    run = run_outages(district, model, faults, customers=2 * district.n_customers)
    assert run.score.faults == 3
    assert all(o.located and o.detection_delay_s <= 180 for o in run.score.outcomes)
    assert np.isclose(run.score.share("located"), 1.0)
