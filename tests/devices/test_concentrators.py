"""Concentrators and the AMI network: losses and delays as configured, events on their own path."""

import datetime as dt

import numpy as np
import pytest

from gridloom.devices import (
    BatchKind,
    CommConfig,
    Concentrators,
    Distribution,
    IntervalReads,
    MeterConfig,
    MeterEventKind,
    MeterEvents,
    MeterFleet,
    last_gasp_loss,
)
from gridloom.devices.meters import to_us
from gridloom.errors import DeviceConfigError, UnknownDevice

START = dt.datetime(2026, 3, 2, tzinfo=dt.UTC)
STEP = dt.timedelta(minutes=15)
LOSSLESS = {
    "read_loss_probability": 0.0,
    "batch_loss_probability": 0.0,
    "event_loss_probability": 0.0,
    "last_gasp_loss_probability": 0.0,
    "last_gasp_mesh_dependency": 0.0,
}


def ids(n: int) -> np.ndarray:
    return np.array([f"meter-{i:07d}" for i in range(n)])


def reads_of(meters: np.ndarray) -> IntervalReads:
    m = len(meters)
    return IntervalReads(
        900,
        meters.astype(np.int64),
        np.full(m, to_us(START), np.int64),
        np.arange(m, dtype=float),
        np.zeros(m),
        np.zeros(m),
        np.full(m, 230.0),
        np.zeros(m, np.uint8),
    )


def events_of(meters: np.ndarray, kind: MeterEventKind, sent_at: dt.datetime) -> MeterEvents:
    m = len(meters)
    t = np.full(m, to_us(sent_at), np.int64)
    return MeterEvents(meters.astype(np.int64), t, np.full(m, kind, np.uint8), t)


def delivered_meters(batches) -> np.ndarray:
    parts = [b.reads.meter if b.kind is BatchKind.READS else b.events.meter for b in batches]
    return np.concatenate(parts) if parts else np.empty(0, np.int64)


def within(observed: int, n: int, p: float, sigmas: float = 5.0) -> bool:
    return abs(observed - n * p) < sigmas * np.sqrt(n * p * (1 - p))


def test_every_meter_has_one_concentrator_and_groups_stay_together() -> None:
    n = 1234
    group = np.random.default_rng(0).integers(0, 40, n)  # e.g. the service transformer of each meter
    dcus = Concentrators(ids(n), config=CommConfig(concentrator_size=100), group=group)
    assert dcus.n == 13
    assert dcus.meters_per_concentrator.tolist() == [100] * 12 + [34]
    served = np.concatenate([dcus.meters_of(c) for c in range(dcus.n)])
    assert sorted(served.tolist()) == list(range(n))
    # A transformer's meters span at most two concentrators (when a block boundary cuts through it).
    spans = [len(np.unique(dcus.concentrator_of_meter[group == g])) for g in range(40)]
    assert max(spans) <= 2
    assert sum(s == 1 for s in spans) >= 40 - 12
    with pytest.raises(UnknownDevice):
        dcus.meters_of(13)


def test_read_losses_match_the_configuration_for_many_reads() -> None:
    n = 300_000
    config = CommConfig(concentrator_size=100, read_loss_probability=0.03, batch_loss_probability=0.05)
    dcus = Concentrators(ids(n), config=config)
    batches = dcus.collect_reads(reads_of(np.arange(n)), np.random.default_rng(1), at=START + STEP)
    assert within(dcus.n - len(batches), dcus.n, 0.05)
    sent = sum(dcus.meters_per_concentrator[b.concentrator] for b in batches)
    assert within(sent - sum(len(b) for b in batches), sent, 0.03)
    # Only delivered rows, each in its own concentrator's batch, none twice.
    for b in batches:
        assert (dcus.concentrator_of_meter[b.reads.meter] == b.concentrator).all()
        assert b.concentrator_id == f"dcu-{b.concentrator:05d}"
        assert b.sent_at_us == to_us(START + STEP)
    got = delivered_meters(batches)
    assert len(np.unique(got)) == len(got)


def test_read_batch_delays_follow_the_configured_lognormal() -> None:
    config = CommConfig(concentrator_size=10, read_delay_s=Distribution.lognormal(30.0, 0.5), **LOSSLESS)
    dcus = Concentrators(ids(200_000), config=config)
    batches = dcus.collect_reads(reads_of(np.arange(200_000)), np.random.default_rng(2), at=START)
    delays = np.array([b.delay_s for b in batches])
    assert len(delays) == 20_000
    assert np.median(delays) == pytest.approx(30.0, rel=0.03)
    assert np.log(delays).std() == pytest.approx(0.5, rel=0.03)
    assert all(b.arrives_at == START + dt.timedelta(microseconds=round(b.delay_s * 1e6)) for b in batches[:50])


def test_last_gasps_are_lost_more_often_the_more_of_the_neighbourhood_is_dead() -> None:
    n, size = 400_000, 200
    config = CommConfig(
        concentrator_size=size,
        event_loss_probability=0.01,
        last_gasp_loss_probability=0.2,
        last_gasp_mesh_dependency=0.5,
        batch_loss_probability=0.0,
    )
    dcus = Concentrators(ids(n), config=config)
    rng = np.random.default_rng(3)
    energized = np.ones(n, bool)
    energized[: n // 2] = False  # a wide outage: the first half of the concentrators are entirely dead
    wide = np.arange(0, n // 2)
    isolated = np.arange(n // 2, n, size)  # one dead meter in each of the other concentrators
    energized[isolated] = False
    gasps = events_of(np.concatenate([wide, isolated]), MeterEventKind.LAST_GASP, START)
    batches = dcus.forward_events(gasps, rng, energized=energized)
    got = delivered_meters(batches)
    wide_delivered = int((got < n // 2).sum())
    p_wide = float(last_gasp_loss(config, 1.0))
    assert p_wide == pytest.approx(0.2 + 0.8 * 0.5)
    assert within(len(wide) - wide_delivered, len(wide), p_wide)
    p_isolated = float(last_gasp_loss(config, 1 / size))
    assert within(len(isolated) - (len(got) - wide_delivered), len(isolated), p_isolated)
    # Other events keep their own, lower loss rate.
    restores = events_of(np.arange(n), MeterEventKind.POWER_RESTORE, START)
    got = delivered_meters(dcus.forward_events(restores, rng, energized=energized))
    assert within(n - len(got), n, 0.01)


def test_events_travel_in_small_fast_batches_apart_from_reads() -> None:
    n = 5000
    meter_config = MeterConfig(tamper_rate_per_day=0.0, last_gasp_delay_s=0.0)
    fleet = MeterFleet(ids(n), rng=np.random.default_rng(4), config=meter_config)
    dcus = Concentrators.for_fleet(fleet, config=CommConfig(concentrator_size=500, **LOSSLESS))
    rng = np.random.default_rng(5)
    supply = np.ones(n, bool)
    supply[1000:2000] = False
    p, q, v = np.full(n, 500.0), np.zeros(n), np.full(n, 230.0)
    reads = fleet.measure(interval_start_at=START, p_w=p, q_var=q, voltage_v=v, energized=supply)
    outcome = dcus.collect(reads, fleet.pop_events(), rng, at=START + STEP, energized=fleet.energized)
    assert outcome.reads_offered == outcome.reads_delivered == n - 1000
    assert outcome.events_offered == outcome.events_delivered == 1000
    for b in outcome.event_batches:
        assert b.kind is BatchKind.EVENTS
        assert b.reads is None
        assert (b.events.kind == MeterEventKind.LAST_GASP).all()
        assert 0 <= b.sent_at_us - b.events.sent_at_us.max() <= 2_000_000  # the 2 s gathering window
    # The outage is known at the head-end within seconds, long before the interval's reads are even sent.
    last_gasp_arrival = max(b.arrives_at for b in outcome.event_batches)
    assert last_gasp_arrival < START + dt.timedelta(minutes=1)
    assert min(b.arrives_at for b in outcome.read_batches) >= START + STEP
    arrivals = [b.arrives_at_us for b in outcome.event_batches]
    assert arrivals == sorted(arrivals)


def test_batches_become_plain_records_for_a_message_payload() -> None:
    n = 50
    fleet = MeterFleet(ids(n), rng=np.random.default_rng(6))
    dcus = Concentrators.for_fleet(fleet, config=CommConfig(concentrator_size=20, **LOSSLESS))
    reads = fleet.measure(
        interval_start_at=START,
        p_w=np.full(n, 400.0),
        q_var=np.zeros(n),
        voltage_v=np.full(n, 230.0),
        energized=np.arange(n) != 7,
    )
    batch = dcus.collect_reads(reads, np.random.default_rng(7), at=START + STEP)[0]
    records = batch.to_records()
    assert set(map(len, records.values())) == {19}
    assert records["meter_id"][:2] == ["meter-0000000", "meter-0000001"]
    assert all(isinstance(x, float) for x in records["energy_delivered_wh"])
    assert records["interval_s"][0] == 900
    event_batch = dcus.forward_events(fleet.pop_events(), np.random.default_rng(8))[0]
    assert event_batch.to_records() == {
        "meter_id": ["meter-0000007"],
        "at_us": [int(event_batch.events.at_us[0])],
        "kind": ["LAST_GASP"],
    }


def test_the_same_seed_gives_the_same_batches() -> None:
    def run(seed: int) -> list[tuple[int, float, list[int]]]:
        n = 20_000
        dcus = Concentrators(ids(n), config=CommConfig(concentrator_size=300))
        rng = np.random.default_rng(seed)
        batches = dcus.collect_reads(reads_of(np.arange(n)), rng, at=START)
        batches += dcus.forward_events(events_of(np.arange(0, n, 3), MeterEventKind.LAST_GASP, START), rng)
        return [(b.concentrator, b.delay_s, delivered_meters([b]).tolist()) for b in batches]

    assert run(9) == run(9)
    assert run(9) != run(10)


def test_bad_configuration_is_refused() -> None:
    with pytest.raises(DeviceConfigError, match="read_loss_probability"):
        CommConfig(read_loss_probability=1.5)
    with pytest.raises(DeviceConfigError, match="concentrator_size"):
        CommConfig(concentrator_size=0)
    with pytest.raises(DeviceConfigError, match="event_delay_s"):
        CommConfig(event_delay_s=Distribution.normal(1.0, 1.0))
    with pytest.raises(UnknownDevice):
        Concentrators(ids(10)).collect_reads(reads_of(np.arange(11)), np.random.default_rng(0), at=START)
