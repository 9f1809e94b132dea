"""Outage drills: faults through protection, meters and concentrators into an :class:`OmsCore`, and a score.

The field side is the real thing, not a model of it: :func:`~gridloom.grid.protection.simulate_faults`
decides which device operates and when each customer loses and regains supply; a
:class:`~gridloom.devices.meters.MeterFleet` (one-minute intervals, so event times are exact to
the second) turns that into last gasps and power restores; the
:class:`~gridloom.devices.concentrators.Concentrators` lose last gasps (``CommConfig``), gather
events in windows and deliver them late and out of order. :func:`replay` feeds the batches to an
OMS core at their arrival times, evaluates it when it is due, and answers its pings from the true
supply at the time of the ping (after a drawn latency). :func:`score` compares the outages the
OMS recorded with what protection did.

Used by ``benchmarks/oms.py`` (the accuracy drill) and by the OMS tests.
"""

from __future__ import annotations

import datetime as dt
import heapq
import itertools
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from gridloom.devices.comms import CommConfig
from gridloom.devices.concentrators import ConcentratorBatch, Concentrators
from gridloom.devices.distributions import Distribution
from gridloom.devices.meters import EPOCH, MeterConfig, MeterEventKind, MeterFleet, to_us
from gridloom.grid.connectivity import ConnectivityModel, DeviceKind
from gridloom.grid.faults import FaultState
from gridloom.grid.protection import Fault, ProtectionResult, ProtectionSettings, simulate_faults
from gridloom.grid.territory import Territory
from gridloom.systems.gis.model import ConnectivityPayload, territory_payload
from gridloom.systems.oms.core import OmsCore, PingRequest
from gridloom.systems.oms.records import OutageKind, OutageStatus
from gridloom.systems.oms.topology import OmsTopology

IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]
_US = 1_000_000
DRILL_COMM = CommConfig(last_gasp_loss_probability=0.3, last_gasp_mesh_dependency=0.0, batch_loss_probability=0.0)


@dataclass(frozen=True)
class FieldConfig:
    """The field side of a drill: meter intervals, the AMI network, how long a ping takes."""

    interval_s: int = 60
    comm: CommConfig = DRILL_COMM
    ping_latency_s: Distribution = field(default_factory=lambda: Distribution.lognormal(4.0, 0.5))
    protection: ProtectionSettings = field(default_factory=ProtectionSettings)


class OutageField:
    """The truth of a territory: its grid and protection, its meters and their concentrators."""

    def __init__(
        self, model: ConnectivityModel, territory: Territory, *, seed: int = 1, config: FieldConfig | None = None
    ) -> None:
        self.model = model
        self.territory = territory
        self.config = config or FieldConfig()
        self.payload: ConnectivityPayload = territory_payload(model, territory)
        self.topology = OmsTopology.from_payload(self.payload)
        self.rng = np.random.default_rng([seed, 11])
        meter_config = MeterConfig(interval_s=self.config.interval_s, tamper_rate_per_day=0.0, voltage_noise=0.0)
        ids = territory.meter_ids()
        self.fleet = MeterFleet(ids, rng=np.random.default_rng([seed, 12]), config=meter_config)
        group = np.where(self.payload.meter_transformer >= 0, self.payload.meter_transformer, self.payload.meter_device)
        self.concentrators = Concentrators(ids, config=self.config.comm, group=group)
        self.results: list[ProtectionResult] = []
        self.premise_outages: list[tuple[int, int, int]] = []  # (meter row, start µs, end µs)
        self._state = FaultState(model, territory.replicas)
        self._normal = self._state.copy()

    @property
    def n_district(self) -> int:
        return self.model.n_customers

    def inject(self, faults: list[Fault]) -> list[ProtectionResult]:
        """Run protection for ``faults`` (after those injected before); returns their results."""
        results = simulate_faults(self.model, faults, state=self._state, settings=self.config.protection)
        self.results.extend(results)
        return results

    def premise_outage(self, meter: int, start: dt.datetime, end: dt.datetime) -> None:
        """One premise without supply from ``start`` to ``end`` (its own side: the network is fine)."""
        self.premise_outages.append((int(meter), to_us(start), to_us(end)))

    def energized_at(self, at_us: int) -> BoolArray:
        """Supply of every meter at ``at_us`` (operations up to then applied to the normal state)."""
        state = self._normal.copy()  # copying skips FaultState's set-up
        until = EPOCH + dt.timedelta(microseconds=at_us)
        for result in self.results:
            result.apply(state, until=until)
        out: BoolArray = state.customer_energized().ravel()[: self.territory.customers]
        for meter, start, end in self.premise_outages:
            if start <= at_us < end:
                out[meter] = False
        return out

    def _outage_s(self, s: int, e: int) -> npt.NDArray[np.float64]:
        seconds = np.zeros(self.territory.customers)
        for result in self.results:
            gaps = result.interruptions
            stop = np.where(gaps.end_us < 0, e, gaps.end_us)
            overlap = (np.minimum(stop, e) - np.maximum(gaps.start_us, s)).clip(min=0) / _US
            who = gaps.replica * self.n_district + gaps.customer
            keep = (overlap > 0) & (who < self.territory.customers)
            np.add.at(seconds, who[keep], overlap[keep])
        for meter, start, end in self.premise_outages:
            seconds[meter] += max(min(end, e) - max(start, s), 0) / _US
        return np.minimum(seconds, (e - s) / _US)

    def change_slots(self, start: dt.datetime, end: dt.datetime) -> list[dt.datetime]:
        """Starts of the meter intervals in [start, end) in which supply changes (and the ones after)."""
        step = self.config.interval_s * _US
        s0, e0 = to_us(start), to_us(end)
        changes = [to_us(op.at) for result in self.results for op in result.operations]
        for result in self.results:
            gaps = result.interruptions
            changes += gaps.start_us.tolist() + gaps.end_us[gaps.end_us >= 0].tolist()
        changes += [t for _, begin, stop in self.premise_outages for t in (begin, stop)]
        slots = sorted({(t - s0) // step + k for t in changes if s0 <= t < e0 for k in (0, 1)})
        return [EPOCH + dt.timedelta(microseconds=s0 + slot * step) for slot in slots]

    def measure(self, at: dt.datetime) -> list[ConcentratorBatch]:
        """Meter the interval starting ``at`` and forward its events: the batches that got through."""
        s = to_us(at)
        e = s + self.config.interval_s * _US
        ones = np.ones(self.territory.customers)
        energized = self.energized_at(e)
        self.fleet.measure(
            interval_start_at=at, p_w=ones * 1000.0, q_var=ones * 100.0, voltage_v=ones * 230.0,
            energized=energized, outage_s=self._outage_s(s, e),
        )  # fmt: skip
        return self.concentrators.forward_events(self.fleet.pop_events(), self.rng, energized=energized)

    def event_batches(self, start: dt.datetime, end: dt.datetime) -> list[ConcentratorBatch]:
        """Meter the intervals in which supply changes and forward their events; batches by arrival."""
        batches: list[ConcentratorBatch] = []
        for at in self.change_slots(start, end):
            measured = self.fleet.measured_until
            if measured is None or at >= measured:
                batches += self.measure(at)
        batches.sort(key=lambda b: (b.arrives_at_us, b.concentrator))
        return batches


@dataclass
class ReplayStats:
    batches: int = 0
    events: int = 0
    evaluations: int = 0
    ping_rounds: int = 0
    meters_pinged: int = 0


def replay(core: OmsCore, fld: OutageField, batches: list[ConcentratorBatch], *, until_us: int) -> ReplayStats:
    """Feed ``batches`` to ``core`` at their arrival times, evaluate when due, answer pings; up to ``until_us``."""
    stats = ReplayStats()
    order = itertools.count()
    queue: list[tuple[int, int, ConcentratorBatch | PingRequest]] = [(b.arrives_at_us, next(order), b) for b in batches]
    heapq.heapify(queue)
    latency = fld.config.ping_latency_s
    while True:
        next_item = queue[0][0] if queue else None
        due = core.due_us
        if due is not None and (next_item is None or due <= next_item):
            if due > until_us:
                break
            actions = core.evaluate(due)
            stats.evaluations += 1
            for ping in actions.pings:
                answered = due + round(float(latency.sample(fld.rng, 1)[0]) * _US)
                heapq.heappush(queue, (answered, next(order), ping))
            continue
        if next_item is None or next_item > until_us:
            break
        at, _, item = heapq.heappop(queue)
        if isinstance(item, ConcentratorBatch):
            events = item.events
            if events is not None:
                core.add_events(events.meter, events.at_us, events.kind, now_us=at)
                stats.events += len(events)
            stats.batches += 1
        else:
            alive = fld.energized_at(at)[item.meters]
            core.add_pings(item.meters, alive, at_us=at, request_id=item.request_id)
            stats.ping_rounds += 1
            stats.meters_pinged += len(item.meters)
    return stats


@dataclass(frozen=True)
class FaultOutcome:
    """How the OMS did on one fault."""

    device: str  # the device protection left open (territory id)
    start_us: int
    customers: int
    detected: bool
    detection_delay_s: float | None
    located: bool  # at the device or one with exactly its meters
    located_exact: bool
    predicted: str | None
    gasps_in_time: int = -1  # last gasps of its customers that reached the OMS within 3 minutes (-1: not counted)


@dataclass(frozen=True)
class DrillScore:
    outcomes: list[FaultOutcome]

    @property
    def faults(self) -> int:
        return len(self.outcomes)

    def share(self, what: str) -> float:
        if not self.outcomes:
            return 0.0
        return sum(bool(getattr(o, what)) for o in self.outcomes) / len(self.outcomes)

    @property
    def detected_within_3min_share(self) -> float:
        ok = [o for o in self.outcomes if o.detection_delay_s is not None and o.detection_delay_s <= 180.0]
        return len(ok) / len(self.outcomes) if self.outcomes else 0.0

    @property
    def detected_within_3min_share_told(self) -> float:
        """The same, among the outages at least one last gasp of which reached the OMS within 3 minutes
        (the others — a customer or two whose every last gasp was lost — no meter evidence can show in time)."""
        told = [o for o in self.outcomes if o.gasps_in_time != 0]
        ok = [o for o in told if o.detection_delay_s is not None and o.detection_delay_s <= 180.0]
        return len(ok) / len(told) if told else 0.0

    @property
    def silent(self) -> int:
        """Outages no last gasp of which reached the OMS within 3 minutes."""
        return sum(o.gasps_in_time == 0 for o in self.outcomes)

    @property
    def mean_detection_delay_s(self) -> float | None:
        delays = [o.detection_delay_s for o in self.outcomes if o.detection_delay_s is not None]
        return float(np.mean(delays)) if delays else None


def score(
    core: OmsCore, fld: OutageField, results: list[ProtectionResult], batches: list[ConcentratorBatch] | None = None
) -> DrillScore:
    """Match each sustained outage protection caused to the OMS's records: detected when, located where.

    With the ``batches`` the OMS was given, each outcome also counts the last gasps of its customers
    that reached the OMS within 3 minutes of the outage.
    """
    topo = fld.topology
    gasp_meter, gasp_at, gasp_arrival = _gasps(batches or [])
    records = [r for r in core.records() if r.status is not OutageStatus.CANCELLED and not r.customer_side]
    rec_node = [topo.node_of(r.device_id) if r.kind is OutageKind.NETWORK else -1 for r in records]
    rec_meters: list[set[int]] = []
    for r, v in zip(records, rec_node, strict=True):
        if v >= 0:
            rec_meters.append(set(topo.order[topo.lo[v] : topo.hi[v]].tolist()))
        else:
            rec_meters.append({int(topo.meter_index[r.device_id])} if r.device_id in topo.meter_index else set())
    outcomes = []
    n = fld.n_district
    for result in results:
        gaps = result.interruptions
        sustained = ~gaps.momentary
        who = gaps.replica[sustained] * n + gaps.customer[sustained]
        keep = who < fld.territory.customers
        if not keep.any() or result.isolating_device < 0:
            continue
        # the outage began with the fault's first interruption (a reclosing sequence's first trip)
        start = int(gaps.start_us[np.isin(gaps.replica * n + gaps.customer, who[keep])].min())
        # only customers who had supply when the fault came (another outage may have them already)
        before = fld.energized_at(to_us(result.fault.at) - _US)
        customers = {c for c in who[keep].tolist() if before[c]}
        if not customers:
            continue
        device = f"s{result.fault.replica:03d}-{fld.model.device_id[result.isolating_device]}"
        truth_node = topo.node_of(device)
        matched = [
            i
            for i, r in enumerate(records)
            if rec_meters[i] & customers and start - 60 * _US <= r.start_us <= start + 600 * _US
        ]
        detected_at = min((records[i].detected_us for i in matched), default=None)
        # located: where the sustained part ended up (a momentary parent hands it to a nested outage)
        final = [i for i in matched if records[i].status is not OutageStatus.MERGED and not records[i].momentary]
        best = max(final, key=lambda i: len(rec_meters[i] & customers), default=None)
        predicted = records[best].device_id if best is not None else None
        told = -1
        if batches is not None:
            hit = (gasp_at >= start - 10 * _US) & (gasp_arrival <= start + 180 * _US)
            told = int(np.isin(gasp_meter[hit], np.fromiter(customers, dtype=np.int64)).sum())
        outcomes.append(
            FaultOutcome(
                device=device,
                start_us=start,
                customers=len(customers),
                detected=detected_at is not None,
                detection_delay_s=None if detected_at is None else (detected_at - start) / _US,
                located=best is not None and rec_node[best] == truth_node,
                located_exact=predicted == device,
                predicted=predicted,
                gasps_in_time=told,
            )
        )
    return DrillScore(outcomes)


def _gasps(batches: list[ConcentratorBatch]) -> tuple[IntArray, IntArray, IntArray]:
    """Meter, meter time and arrival of every last gasp in ``batches``."""
    parts = [
        (b.events.meter, b.events.at_us, np.full(len(b.events), b.arrives_at_us, dtype=np.int64), b.events.kind)
        for b in batches
        if b.events is not None and len(b.events)
    ]
    if not parts:
        empty = np.empty(0, dtype=np.int64)
        return empty, empty, empty
    meter, at, arrival, kind = (np.concatenate(column) for column in zip(*parts, strict=True))
    gasp = kind == MeterEventKind.LAST_GASP
    return meter[gasp], at[gasp], arrival[gasp]


def random_faults(
    model: ConnectivityModel,
    territory: Territory,
    rng: np.random.Generator,
    *,
    count: int,
    start: dt.datetime,
    repair_s: tuple[float, float] = (1800.0, 5400.0),
    gap_s: tuple[float, float] = (600.0, 1800.0),
) -> list[Fault]:
    """``count`` permanent faults at random devices (a kind drawn first, then a device of it), one at a
    time per substation, each repaired before the next one there."""
    kinds = [
        DeviceKind.BREAKER, DeviceKind.RECLOSER, DeviceKind.SECTIONALIZER, DeviceKind.SWITCH, DeviceKind.FUSE,
        DeviceKind.SERVICE_TRANSFORMER,
    ]  # fmt: skip
    n = model.n_customers
    _, lo, hi = model.customer_range()
    active = territory.active
    by_kind = {k: model.devices_of_kind(k) for k in kinds}
    by_kind = {k: d[hi[d] > lo[d]] for k, d in by_kind.items()}
    clock = [start] * territory.replicas
    faults: list[Fault] = []
    order, _, _ = model.customer_range()
    while len(faults) < count:
        replica = int(rng.integers(territory.replicas))
        kind = kinds[int(rng.integers(len(kinds)))]
        devices = by_kind[kind]
        if not len(devices):
            continue
        device = int(devices[int(rng.integers(len(devices)))])
        customers = order[lo[device] : hi[device]]
        if not active[replica, customers % n].any():
            continue
        at = clock[replica] + dt.timedelta(seconds=float(rng.uniform(*gap_s)))
        at = at.replace(microsecond=0)
        repair = float(rng.uniform(*repair_s))
        faults.append(Fault(replica=replica, device=device, at=at, permanent=True, repair_after_s=repair))
        clock[replica] = at + dt.timedelta(seconds=repair)
    return faults
