"""Run the physics and the device fleets of a territory over simulated days.

Per chunk of 15-minute steps (one power-grid-model batch call for all steps and replicas):

    profiles -> customer load (+ EV charging) - PV behind the meter (volt-var/volt-watt on
    the previous step's voltage) -> protection operations up to the step's end -> power flow
    -> meters (interval reads, registers, events) -> concentrators (batches, loss, delay)
    -> field IEDs (breakers and reclosers read their feeder-head currents)

What the systems will later see over the fabric comes from here. The summary keeps what an
engineer checks after a simulated day: substation energy against metered energy plus
losses, customer voltages against their limits, outages and meter events, and how long
each part took.
"""

from __future__ import annotations

import datetime as dt
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from gridloom.devices.comms import CommConfig
from gridloom.devices.concentrators import Collection, Concentrators
from gridloom.devices.ev import LEVEL2_W, EvFleet
from gridloom.devices.ieds import IedFleet, IedKind, IedMeasurements, SwitchSpec
from gridloom.devices.meters import IntervalReads, MeterConfig, MeterEventKind, MeterEvents, MeterFleet
from gridloom.devices.pv import PvFleet
from gridloom.devices.storage import HOME_BATTERY, StorageFleet
from gridloom.errors import GridInputError
from gridloom.grid.connectivity import ConnectivityModel, DeviceKind, build_connectivity
from gridloom.grid.faults import FaultState
from gridloom.grid.model import LV_VOLT_LEVEL, District
from gridloom.grid.networks import DEFAULT_DISTRICT, load_district
from gridloom.grid.powerflow import run_batch
from gridloom.grid.profiles import (
    STEP_S,
    CustomerProfiles,
    Variation,
    generation_table,
    generation_window,
    load_table,
    profile_step,
)
from gridloom.grid.protection import Fault, ProtectionResult, simulate_faults
from gridloom.grid.territory import Territory, build_territory
from gridloom.scenario.clock import SimulationClock

FloatArray = npt.NDArray[np.float64]
_US = 1_000_000
VOLTAGE_LIMITS_PU = (0.95, 1.05)  # EN 50160 / ANSI C84.1 range A style service-voltage band
VOLTAGE_BINS_PU = np.round(np.arange(0.90, 1.1001, 0.005), 3)  # histogram of customer voltages


@dataclass(frozen=True)
class ScheduledFault:
    """A fault to inject: on the section below ``device`` (a connectivity id, e.g. ``fuse-1234``)."""

    at: dt.datetime
    device: str
    replica: int = 0
    permanent: bool = True
    repair_after_s: float | None = None


@dataclass(frozen=True)
class SimulationConfig:
    district: str = DEFAULT_DISTRICT
    customers: int = 5_000
    days: float = 1.0
    start_at: dt.datetime = dt.datetime(2026, 7, 1, tzinfo=dt.UTC)
    seed: int = 1
    chunk_steps: int = 8  # steps per power-flow batch (memory grows with steps x customers)
    ev_share: float = 0.08  # LV households with a PEV on a level-2 charger
    battery_share: float = 0.03  # LV households with a home battery (idle until commanded)
    meter: MeterConfig = field(default_factory=MeterConfig)
    comm: CommConfig = field(default_factory=CommConfig)
    variation: Variation = field(default_factory=Variation)
    faults: tuple[ScheduledFault, ...] = ()

    def __post_init__(self) -> None:
        if self.start_at.tzinfo is None:
            raise GridInputError("start_at must be timezone-aware UTC")
        if self.start_at.timestamp() % STEP_S:
            raise GridInputError(f"start_at must fall on a {STEP_S // 60}-minute boundary, not {self.start_at}")
        if self.days <= 0 or self.chunk_steps < 1:
            raise GridInputError("days must be positive and chunk_steps at least 1")
        if not (0 <= self.ev_share <= 1 and 0 <= self.battery_share <= 1):
            raise GridInputError("ev_share and battery_share are shares between 0 and 1")


@dataclass
class SimulationSummary:
    """What a simulated span produced; per-step arrays have one value per 15-minute step."""

    district: str
    customers: int
    substations: int
    feeders: int
    pv_units: int
    evs: int
    batteries: int
    step_at: list[dt.datetime] = field(default_factory=list)
    substation_p_w: list[float] = field(default_factory=list)  # all substations together
    generation_mv_p_w: list[float] = field(default_factory=list)  # MV-connected generators
    customer_p_w: list[float] = field(default_factory=list)  # served, net of PV behind the meter
    losses_w: list[float] = field(default_factory=list)
    voltage_pu_p01: list[float] = field(default_factory=list)
    voltage_pu_p50: list[float] = field(default_factory=list)
    voltage_pu_p99: list[float] = field(default_factory=list)
    customers_out: list[int] = field(default_factory=list)
    substation_voltage_pu: list[float] = field(default_factory=list)  # MV busbar, mean over substations
    voltage_histogram: npt.NDArray[np.int64] = field(
        default_factory=lambda: np.zeros(len(VOLTAGE_BINS_PU) - 1, dtype=np.int64)
    )  # customer intervals with supply per VOLTAGE_BINS_PU bin (out-of-range values are not counted)
    metered_net_wh: float = 0.0  # sum over interval reads: delivered - received
    reads_offered: int = 0
    reads_delivered: int = 0
    read_batches: int = 0
    events_offered: Counter[str] = field(default_factory=Counter)
    events_delivered: Counter[str] = field(default_factory=Counter)
    ied_measurements: int = 0
    voltage_violations: int = 0  # customer intervals outside VOLTAGE_LIMITS_PU
    faults: list[ProtectionResult] = field(default_factory=list)
    seconds: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))  # wall time per part

    @property
    def substation_wh(self) -> float:
        return float(np.sum(self.substation_p_w)) * STEP_S / 3600

    @property
    def generation_mv_wh(self) -> float:
        return float(np.sum(self.generation_mv_p_w)) * STEP_S / 3600

    @property
    def losses_wh(self) -> float:
        return float(np.sum(self.losses_w)) * STEP_S / 3600

    @property
    def energy_balance_error(self) -> float:
        """(substation + MV generation - metered - losses) / substation + MV generation."""
        supplied = self.substation_wh + self.generation_mv_wh
        return (supplied - self.metered_net_wh - self.losses_wh) / supplied


class _Fleets:
    """The territory's devices and where they sit."""

    def __init__(
        self, territory: Territory, connectivity: ConnectivityModel, config: SimulationConfig, clock: SimulationClock
    ) -> None:
        district = territory.district
        rng = np.random.default_rng([config.seed, 1])
        n, replicas = district.n_customers, territory.replicas
        lv_active = territory.active & (district.customer_volt_level == LV_VOLT_LEVEL)[None, :]
        # PV behind a customer's meter: each LV generator belongs to the first customer at its node.
        first_customer_at = np.full(district.n_nodes, n, dtype=np.int64)
        np.minimum.at(first_customer_at, district.customer_node, np.arange(n))
        owner = np.where(first_customer_at < n, first_customer_at, -1)[district.gen_node]
        self.pv_gen = np.flatnonzero((owner >= 0) & (district.node_volt_level[district.gen_node] == LV_VOLT_LEVEL))
        self.pv_owner = owner[self.pv_gen]
        self.mv_gen = np.setdiff1d(np.arange(district.n_gens), self.pv_gen)
        pv_active = territory.active[:, self.pv_owner]  # (R, n_pv)
        self.pv = PvFleet(np.tile(district.gen_p_ref_w[self.pv_gen], replicas) * pv_active.ravel())
        # EVs and home batteries at LV households, drawn once.
        self.ev_customer = np.flatnonzero((rng.random((replicas, n)) < config.ev_share) & lv_active)
        self.evs = EvFleet(np.full(self.ev_customer.size, LEVEL2_W), start_at=config.start_at, rng=rng)
        battery_customer = np.flatnonzero((rng.random((replicas, n)) < config.battery_share) & lv_active)
        self.batteries = StorageFleet.from_specs([(HOME_BATTERY, battery_customer.size)], rng=rng)
        # Meters: one per connected customer, grouped under concentrators by service transformer.
        customers = territory.customer_index
        xfmr_of_customer = _service_transformer_of(connectivity, district)
        group = (
            territory.replica_of(customers) * (int(xfmr_of_customer.max()) + 2)
            + xfmr_of_customer[territory.local_of(customers)]
        )
        net_metered = np.zeros(territory.customers, dtype=bool)
        net_metered[(np.arange(replicas)[:, None] * n + self.pv_owner[None, :])[pv_active]] = True
        self.meters = MeterFleet(
            territory.meter_ids(), rng=np.random.default_rng([config.seed, 2]), config=config.meter,
            net_metered=net_metered,
        )  # fmt: skip
        self.concentrators = Concentrators.for_fleet(self.meters, config=config.comm, group=group)
        self.comm_rng = np.random.default_rng([config.seed, 5])
        # Feeder-head breakers and reclosers report to SCADA.
        self.ieds = _switching_ieds(territory, connectivity, config, clock)


def _service_transformer_of(connectivity: ConnectivityModel, district: District) -> npt.NDArray[np.int64]:
    """Service-transformer device of each customer (its substation for MV customers)."""
    substation = connectivity.devices_of_kind(DeviceKind.SUBSTATION)[0]
    result = np.full(district.n_customers, substation, dtype=np.int64)
    for xfmr in connectivity.devices_of_kind(DeviceKind.SERVICE_TRANSFORMER):
        result[connectivity.downstream_customers(xfmr)] = xfmr
    return result


def _switching_ieds(
    territory: Territory, connectivity: ConnectivityModel, config: SimulationConfig, clock: SimulationClock
) -> IedFleet:
    district = territory.district
    kinds = {DeviceKind.BREAKER.code: IedKind.BREAKER, DeviceKind.RECLOSER.code: IedKind.RECLOSER}
    devices = np.flatnonzero(np.isin(connectivity.kind, list(kinds)))
    specs, ids = [], []
    for replica in range(territory.replicas):
        for device in devices:
            row = int(connectivity.switch_row[device])
            line = int(district.net.switch.element.iloc[row]) if district.net.switch.et.iloc[row] == "l" else -1
            specs.append(
                SwitchSpec(
                    kind=kinds[int(connectivity.kind[device])],
                    node=replica * district.n_nodes + int(connectivity.node[device]),
                    line=replica * district.n_lines + line if line >= 0 else -1,
                    switch_row=row,
                )
            )
            ids.append(f"s{replica:03d}-{connectivity.device_id[device]}")
    return IedFleet(
        specs,
        node_vn_v=np.tile(district.node_vn_v, territory.replicas),
        clock=clock,
        rng=np.random.default_rng([config.seed, 3]),
        ids=ids,
    )


def _outage_seconds(
    results: list[ProtectionResult], n_district: int, customers: int, start_us: int, end_us: int
) -> FloatArray:
    """Seconds each customer was without supply inside [start, end) according to protection."""
    seconds = np.zeros(customers)
    for result in results:
        gaps = result.interruptions
        stop = np.where(gaps.end_us < 0, end_us, gaps.end_us)
        overlap = (np.minimum(stop, end_us) - np.maximum(gaps.start_us, start_us)).clip(min=0) / _US
        who = gaps.replica * n_district + gaps.customer
        keep = (overlap > 0) & (who < customers)
        np.add.at(seconds, who[keep], overlap[keep])
    return np.minimum(seconds, (end_us - start_us) / _US)


@dataclass(frozen=True)
class StepResult:
    """What one 15-minute step produced in the field: the meters' reads and events and what the
    concentrators got through (batches stamped with their arrival times), and the IED readings."""

    at: dt.datetime  # interval start
    reads: IntervalReads
    events: MeterEvents
    collection: Collection
    ied: IedMeasurements

    @property
    def end(self) -> dt.datetime:
        return self.at + dt.timedelta(seconds=STEP_S)


class Simulation:
    """The physics and the device fleets of a territory; :meth:`steps` advances it step by step.

    ``summary`` grows as the steps run. Between two steps a caller may act on the fleets
    (``fleets.meters``...) — a scenario runner injects its timeline there.
    """

    def __init__(
        self,
        config: SimulationConfig,
        *,
        district: District | None = None,
        connectivity: ConnectivityModel | None = None,
        realtime: bool = False,
        speed: float = 1.0,
    ) -> None:
        """``connectivity``: the district's model, when the caller has built it already."""
        began = time.perf_counter()
        self.config = config
        self.clock = SimulationClock(config.start_at, step_s=STEP_S, realtime=realtime, speed=speed)
        self.chunk_steps = 1 if realtime else config.chunk_steps
        self.district = district = district or load_district(config.district)
        self.territory = build_territory(district, config.customers)
        self.connectivity = connectivity or build_connectivity(district)
        self.fleets = _Fleets(self.territory, self.connectivity, config, self.clock)
        self._loads = CustomerProfiles(
            load_table(district.net.profiles),
            profile=district.customer_profile,
            p_ref_w=district.customer_p_ref_w,
            q_ref_var=district.customer_q_ref_var,
            replicas=self.territory.replicas,
            rng=np.random.default_rng([config.seed, 4]),
            variation=config.variation,
        )
        self._generation = generation_table(district.net.profiles)
        faults = [
            Fault(replica=f.replica, device=self.connectivity.index(f.device), at=f.at, permanent=f.permanent,
                  repair_after_s=f.repair_after_s)
            for f in config.faults
        ]  # fmt: skip
        self._state = FaultState(self.connectivity, self.territory.replicas)
        results = simulate_faults(self.connectivity, faults, state=self._state.copy()) if faults else []
        fleets = self.fleets
        self.summary = SimulationSummary(
            district=district.code,
            customers=self.territory.customers,
            substations=self.territory.replicas,
            feeders=self.territory.replicas * len(self.connectivity.devices_of_kind(DeviceKind.BREAKER)),
            pv_units=int(np.count_nonzero(fleets.pv.rated_w)),
            evs=fleets.ev_customer.size,
            batteries=fleets.batteries.capacity_wh.size,
            faults=results,
        )
        self.total_steps = round(config.days * 86_400 / STEP_S)
        # Changes to the customers' demand that systems cause (demand response): W per customer of the
        # territory for the step starting at the given time, or None. Called before each step's power flow;
        # a caller that needs to react between steps sets ``chunk_steps`` to 1.
        self.load_adjustment: Callable[[dt.datetime], FloatArray | None] | None = None
        self.summary.seconds["setup"] += time.perf_counter() - began

    def steps(self, progress: Callable[[int, int], None] | None = None) -> Iterator[StepResult]:
        """Run every step, yielding each one's field output; ``progress(done, total)`` after each chunk."""
        config, district, territory, fleets, summary = (
            self.config, self.district, self.territory, self.fleets, self.summary,
        )  # fmt: skip
        sim_clock, results, state = self.clock, summary.faults, self._state
        clock = time.perf_counter
        replicas, n = territory.replicas, district.n_customers
        total_steps = self.total_steps
        previous_v = np.ones((replicas, district.n_nodes))
        done = 0
        while done < total_steps:
            chunk_at = config.start_at + dt.timedelta(seconds=done * STEP_S)
            to_midnight = (86_400 - (chunk_at.hour * 3600 + chunk_at.minute * 60)) // STEP_S
            steps = min(self.chunk_steps, total_steps - done, to_midnight)
            sim_clock.pace_to(done)
            first = profile_step(chunk_at)

            tick = clock()
            load_p, load_q = self._loads.window(first, steps)  # (S, R, n)
            load_p *= territory.active
            load_q *= territory.active
            available = generation_window(
                self._generation, profile=district.gen_profile, p_ref_w=district.gen_p_ref_w, first_step=first,
                steps=steps,
            )  # (S, n_gens)  # fmt: skip
            summary.seconds["profiles"] += clock() - tick

            step_at = [chunk_at + dt.timedelta(seconds=s * STEP_S) for s in range(steps)]
            switch_closed = np.empty((steps, replicas, district.n_switches), dtype=bool)
            energized = np.empty((steps, replicas, n), dtype=bool)
            gen_p = np.zeros((steps, replicas, district.n_gens))
            gen_q = np.zeros_like(gen_p)
            tick = clock()
            for s, at in enumerate(step_at):
                state.reset()
                for result in results:
                    result.apply(state, until=at + dt.timedelta(seconds=STEP_S))
                switch_closed[s] = state.switch_closed_for_powerflow()
                energized[s] = state.customer_energized()
                ev_p = fleets.evs.step(at, STEP_S)
                load_p[s].reshape(-1)[fleets.ev_customer] += ev_p
                if self.load_adjustment is not None and (delta := self.load_adjustment(at)) is not None:
                    load_p[s].reshape(-1)[territory.customer_index] += delta
                fleets.batteries.step(STEP_S)
                # PV behind the meter follows volt-var / volt-watt on the last voltage it saw.
                pv_v = previous_v[:, district.gen_node[fleets.pv_gen]].ravel()
                pv_avail = np.tile(available[s, fleets.pv_gen], replicas) * (fleets.pv.rated_w > 0)
                pv_p, pv_q = fleets.pv.dispatch(available_p_w=pv_avail, voltage_pu=np.where(pv_v > 0, pv_v, 1.0))
                owner = (np.arange(replicas)[:, None] * n + fleets.pv_owner[None, :]).ravel()
                np.subtract.at(load_p[s].reshape(-1), owner, pv_p)
                np.subtract.at(load_q[s].reshape(-1), owner, pv_q)
                gen_p[s][:, fleets.mv_gen] = available[s, fleets.mv_gen]
            summary.seconds["fleets"] += clock() - tick

            tick = clock()
            scenarios = steps * replicas
            served_p = load_p * energized
            flow = run_batch(
                district,
                load_p_w=served_p.reshape(scenarios, n),
                load_q_var=(load_q * energized).reshape(scenarios, n),
                gen_p_w=gen_p.reshape(scenarios, -1),
                gen_q_var=gen_q.reshape(scenarios, -1),
                switch_closed=switch_closed.reshape(scenarios, -1),
            )
            summary.seconds["power flow"] += clock() - tick

            node_v = flow.node_voltage_pu.reshape(steps, replicas, district.n_nodes)
            customer_v = flow.customer_voltage_pu.reshape(steps, replicas, n)
            customer_on = flow.customer_energized.reshape(steps, replicas, n)
            customer_p = flow.customer_p_w.reshape(steps, replicas, n)
            phase_v = district.node_vn_v[district.customer_node] / np.sqrt(3)
            active = territory.customer_index
            busbar = int(self.connectivity.node[self.connectivity.devices_of_kind(DeviceKind.SUBSTATION)[0]])
            for s, at in enumerate(step_at):
                tick = clock()
                sim_clock.set(at)
                start_us = round(at.timestamp() * _US)
                outage_s = _outage_seconds(results, n, territory.customers, start_us, start_us + STEP_S * _US)
                p = customer_p[s].reshape(-1)[active]
                reads = fleets.meters.measure(
                    interval_start_at=at,
                    p_w=p,
                    q_var=(load_q[s] * customer_on[s]).reshape(-1)[active],
                    voltage_v=(customer_v[s] * phase_v).reshape(-1)[active],
                    energized=customer_on[s].reshape(-1)[active],
                    outage_s=outage_s,
                )
                events = fleets.meters.pop_events()
                collected = fleets.concentrators.collect(
                    reads, events, fleets.comm_rng, at=at + dt.timedelta(seconds=STEP_S),
                    energized=fleets.meters.energized,
                )  # fmt: skip
                summary.metered_net_wh += float(reads.energy_delivered_wh.sum() - reads.energy_received_wh.sum())
                summary.reads_offered += collected.reads_offered
                summary.reads_delivered += collected.reads_delivered
                summary.read_batches += len(collected.read_batches)
                summary.events_offered.update(MeterEventKind(k).name for k in events.kind)
                for batch in collected.event_batches:
                    if batch.events is not None:
                        summary.events_delivered.update(MeterEventKind(k).name for k in batch.events.kind)
                v_on = customer_v[s].reshape(-1)[active][customer_on[s].reshape(-1)[active]]
                summary.voltage_violations += int(
                    np.count_nonzero((v_on < VOLTAGE_LIMITS_PU[0]) | (v_on > VOLTAGE_LIMITS_PU[1]))
                )
                summary.voltage_histogram += np.histogram(v_on, bins=VOLTAGE_BINS_PU)[0]
                summary.step_at.append(at)
                summary.voltage_pu_p01.append(float(np.percentile(v_on, 1)) if v_on.size else 0.0)
                summary.voltage_pu_p50.append(float(np.percentile(v_on, 50)) if v_on.size else 0.0)
                summary.voltage_pu_p99.append(float(np.percentile(v_on, 99)) if v_on.size else 0.0)
                supplied = int(np.count_nonzero(customer_on[s].reshape(-1)[active]))
                summary.customers_out.append(territory.customers - supplied)
                rows = slice(s * replicas, (s + 1) * replicas)
                summary.substation_p_w.append(float(flow.source_p_w[rows].sum()))
                summary.substation_voltage_pu.append(float(node_v[s][:, busbar].mean()))
                summary.generation_mv_p_w.append(float(flow.gen_p_w[rows].sum()))
                summary.customer_p_w.append(float(p.sum()))
                summary.losses_w.append(float(flow.losses_w[rows].sum()))
                ied = fleets.ieds.measure(
                    node_voltage_pu=node_v[s].reshape(-1),
                    line_current_a=flow.line_current_a[rows].reshape(-1),
                )
                summary.ied_measurements += len(ied)
                summary.seconds["meters and comms"] += clock() - tick
                yield StepResult(at=at, reads=reads, events=events, collection=collected, ied=ied)
            previous_v = node_v[-1]
            done += steps
            if progress is not None:
                progress(done, total_steps)


def simulate(
    config: SimulationConfig,
    *,
    district: District | None = None,
    progress: Callable[[int, int], None] | None = None,
    realtime: bool = False,
    speed: float = 1.0,
) -> SimulationSummary:
    """Simulate ``config.days`` of the territory; ``progress(done_steps, total_steps)`` after each chunk.

    By default it runs as fast as the machine allows; ``realtime`` paces every 15-minute step
    to the wall clock (``speed`` 60: an hour a minute), for demonstrations.
    """
    simulation = Simulation(config, district=district, realtime=realtime, speed=speed)
    for _ in simulation.steps(progress):
        pass
    return simulation.summary
