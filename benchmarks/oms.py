"""Outage management: an accuracy drill on real protection and meters, and a storm through the fabric.

Drill: a territory of at least 10,000 customers (two substations of the default SimBench district),
permanent faults at random devices (a kind drawn first — breaker, recloser, sectionalizer, switch,
fuse, service transformer — then a device; one fault at a time per substation, repaired 30-90 min
later). Protection decides what opens and when; a meter fleet on one-minute intervals sends last
gasps and power restores; concentrators lose 30 % of the last gasps (1 % of the restores), gather
events for 2 s and deliver them after a lognormal backhaul delay (median 2 s), meters delay
restores by 0-30 s; the backhaul loses no whole batch (see DRILL_COMM). The
OMS core takes the batches at their arrival times, evaluates when due and gets its pings answered
from the true supply after a lognormal latency (median 4 s). Figures: the share of outages
detected within 3 minutes of the first interruption (goal: 100 %), the share located at the device
protection left open or one with exactly its customers, which meter evidence cannot tell apart
(goal: at least 95 %), the mean detection delay.

Storm: faults take out most customers of a large territory within a few minutes and crews restore
them within the next quarter hour; the concentrators' event batches (the same network model) go as
AMI-11 ``meter_events`` envelopes, signed by a head-end identity, through the in-process fabric to
the OMS actor, in arrival order, the simulated clock following the arrivals: about 500,000 events
(425,000 customers). The OMS's pings are answered from the true supply at the time of the ping (the
time that takes is the field's and is not counted). Baseline, measured in the same run: the same
envelopes read off the transport by an endpoint that verifies and decodes them and does nothing
else (goal: OMS rate / baseline rate at least 0.5). None lost: the OMS took in every event it was
sent, and the transport dropped nothing.

Usage: python benchmarks/oms.py [--quick]. The last line is JSON with every figure.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import tempfile
import time
from pathlib import Path

import msgspec
import numpy as np
import numpy.typing as npt

from gridloom.catalog import load_catalog
from gridloom.devices.comms import CommConfig
from gridloom.devices.concentrators import ConcentratorBatch
from gridloom.fabric import CertificateAuthority, Endpoint, Fabric, MemoryTransport, Message, TrustStore
from gridloom.grid.connectivity import ConnectivityModel, DeviceKind, build_connectivity
from gridloom.grid.model import District
from gridloom.grid.networks import load_district
from gridloom.grid.protection import Fault
from gridloom.grid.territory import build_territory
from gridloom.systems.oms import OmsCore
from gridloom.systems.oms.drill import FieldConfig, OutageField, random_faults, replay, score
from gridloom.systems.oms.service import OmsActor
from gridloom.systems.oms.wire import MeterEventColumns, PingRequestBody

START = dt.datetime(2026, 7, 1, tzinfo=dt.UTC)
US = 1_000_000
# 30 % of last gasps lost, each on its own; restores and other events 1 %; no whole backhaul batch lost
# (a feeder behind one concentrator whose only event batch is lost has an outage no AMI-based OMS sees
# until the restores come: that is the backhaul's availability, not the OMS's accuracy)
DRILL_COMM = CommConfig(last_gasp_loss_probability=0.3, last_gasp_mesh_dependency=0.0, batch_loss_probability=0.0)


class Clock:
    def __init__(self, now: dt.datetime) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now


# --- the accuracy drill --------------------------------------------------------------------------
def drill(district: District, model: ConnectivityModel, *, customers: int, faults: int, seed: int) -> dict[str, float]:
    territory = build_territory(district, customers)
    fld = OutageField(model, territory, seed=seed, config=FieldConfig(comm=DRILL_COMM))
    chosen = random_faults(model, territory, np.random.default_rng([seed, 21]), count=faults, start=START)
    results = fld.inject(chosen)
    end = max(f.at for f in chosen) + dt.timedelta(hours=2)
    began = time.perf_counter()
    batches = fld.event_batches(START, end)
    field_s = time.perf_counter() - began
    core = OmsCore(fld.topology)
    began = time.perf_counter()
    stats = replay(core, fld, batches, until_us=int(end.timestamp() * US))
    oms_s = time.perf_counter() - began
    result = score(core, fld, results, batches)
    kinds: dict[str, int] = {}
    for o in result.outcomes:
        kind = o.device.split("-")[1]
        kinds[kind] = kinds.get(kind, 0) + 1
    missed = [o for o in result.outcomes if not o.located or (o.detection_delay_s or 1e9) > 180]
    print(
        f"drill: {territory.customers:,} customers, {result.faults} outages scored (isolated by {kinds}), "
        f"{stats.events:,} events in {stats.batches:,} batches, {stats.ping_rounds:,} ping rounds "
        f"({stats.meters_pinged:,} meters); field {field_s:.1f} s, OMS {oms_s:.1f} s "
        f"({core.stats.evaluations:,} evaluations)"
    )
    for o in missed:
        why = " (no last gasp reached the OMS in time)" if o.gasps_in_time == 0 else ""
        print(f"  missed: {o.device} ({o.customers} customers) -> {o.predicted}, delay {o.detection_delay_s}{why}")
    figures = {
        "drill_customers": territory.customers,
        "drill_outages": result.faults,
        "detected_within_3min_share": round(result.detected_within_3min_share, 4),
        "detected_within_3min_share_told": round(result.detected_within_3min_share_told, 4),
        "drill_outages_silent": result.silent,
        "located_share": round(result.share("located"), 4),
        "located_exact_share": round(result.share("located_exact"), 4),
        "mean_detection_delay_s": round(result.mean_detection_delay_s or 0.0, 2),
        "max_detection_delay_s": round(max(o.detection_delay_s or 0.0 for o in result.outcomes), 2),
    }
    print(
        f"  detected within 3 min: {figures['detected_within_3min_share']:.1%} (goal 100 %; "
        f"{figures['detected_within_3min_share_told']:.1%} of the outages a last gasp told of in time, "
        f"{result.silent} had none through); located: "
        f"{figures['located_share']:.1%} (goal >= 95 %; at the very device {figures['located_exact_share']:.1%}); "
        f"mean detection delay {figures['mean_detection_delay_s']:.1f} s (max {figures['max_detection_delay_s']:.1f} s)"
    )
    return figures


# --- the storm -----------------------------------------------------------------------------------
def storm_batches(
    district: District, model: ConnectivityModel, *, customers: int, seed: int
) -> tuple[OutageField, list[ConcentratorBatch]]:
    """Most feeder breakers and a few reclosers and fuses of every substation fail within 4 minutes;
    crews restore them 8-16 minutes later. The concentrators' event batches, in arrival order."""
    territory = build_territory(district, customers)
    fld = OutageField(model, territory, seed=seed, config=FieldConfig(comm=DRILL_COMM))
    rng = np.random.default_rng([seed, 31])
    heads = [int(d) for d in model.devices_of_kind(DeviceKind.BREAKER)]
    others = [int(d) for k in (DeviceKind.RECLOSER, DeviceKind.FUSE) for d in model.devices_of_kind(k)]
    faults = []
    for replica in range(territory.replicas):
        for device in [*heads[: len(heads) * 3 // 4], *rng.choice(others, size=6, replace=False).tolist()]:
            at = START + dt.timedelta(seconds=float(rng.uniform(0, 240)))
            repair = float(rng.uniform(480, 960))
            faults.append(Fault(replica=replica, device=device, at=at.replace(microsecond=0), repair_after_s=repair))
    fld.inject(faults)
    return fld, fld.event_batches(START, START + dt.timedelta(minutes=30))


class FieldHeadEnd:
    """Answers the OMS's pings from the true supply at the time of the ping, as the head-end and the
    meter network would; the time it takes is the field's, not the OMS's, and is taken off."""

    def __init__(self, fld: OutageField, clock: Clock) -> None:
        self.fld = fld
        self.clock = clock
        self.seconds = 0.0
        self.endpoint: Endpoint | None = None
        self._supply: tuple[int, npt.NDArray[np.bool_]] | None = None

    async def handle(self, message: Message) -> None:
        began = time.perf_counter()
        if message.message_type == "on_demand_read" and self.endpoint is not None:
            request = msgspec.msgpack.decode(message.body, type=PingRequestBody)
            now_us = int(self.clock().timestamp() * US)
            second = now_us // US * US
            if self._supply is None or self._supply[0] != second:
                self._supply = (second, self.fld.energized_at(second))
            rows = self.fld.topology.meters_of(request.meter_ids)
            alive = self._supply[1][rows]
            ids = np.asarray(request.meter_ids)
            answer = {
                "request_id": request.request_id,
                "status": "completed" if alive.all() else ("partial" if alive.any() else "failed"),
                "reads": {"meter_id": ids[alive].tolist(), "read_at_us": [now_us] * int(alive.sum())},
                "failures": [
                    {"meter_id": m, "reason": "no answer from the meter (no supply)"} for m in ids[~alive].tolist()
                ],
            }
            await self.endpoint.send(
                "AMI-11", "on_demand_read.response", answer, to=message.sender.instance,
                correlation_id=message.envelope.message_id,
            )  # fmt: skip
        self.seconds += time.perf_counter() - began


async def storm(fld: OutageField, batches: list[ConcentratorBatch]) -> dict[str, float]:
    catalog = load_catalog()
    events = sum(len(b) for b in batches)
    with tempfile.TemporaryDirectory() as folder:
        clock = Clock(START)
        ca = CertificateAuthority.init(Path(folder) / "pki", clock=clock)

        def issue(role: str, instance: str):  # noqa: ANN202
            return ca.issue(role, instance, catalog=catalog, clock=clock, save=False)

        async with MemoryTransport() as transport:
            fabric = Fabric(catalog=catalog, transport=transport, trust=TrustStore(ca.certificate), clock=clock)
            field_headend = FieldHeadEnd(fld, clock)
            headend = await fabric.attach(
                issue("ami_headend", "headend-1"), field_headend.handle, body_types={"on_demand_read": msgspec.Raw}
            )
            field_headend.endpoint = headend
            # the events come through a head-end of their own: signed up front, they must not look like
            # replays of the ping answers the other one signs meanwhile
            events_from = await fabric.attach(issue("ami_headend", "headend-2"), _nothing)
            read = 0

            async def baseline_handler(message: Message) -> None:
                nonlocal read
                read += len(msgspec.msgpack.decode(message.body, type=MeterEventColumns).meter_id)

            await fabric.attach(issue("oms", "oms-base"), baseline_handler, body_types={"meter_events": msgspec.Raw})
            oms = await OmsActor.attach(fabric, issue("oms", "oms-1"), connectivity=fld.payload, headend="headend-1")
            assert oms.core.topology is not None
            print(
                f"storm: {fld.territory.customers:,} customers ({oms.core.topology.n_nodes:,} locatable nodes), "
                f"{events:,} events in {len(batches):,} concentrator batches over "
                f"{(batches[-1].arrives_at_us - batches[0].arrives_at_us) / 60e6:.1f} simulated minutes"
            )
            built = {
                to: [
                    (
                        b.arrives_at_us,
                        events_from.build("AMI-11", "meter_events", b.to_records(), to=to, records=len(b)),
                    )
                    for b in batches
                ]
                for to in ("oms-base", "oms-1")
            }
            seconds = {}
            for to in ("oms-base", "oms-1"):
                began = time.perf_counter()
                for arrives_us, frames in built[to]:
                    clock.now = max(clock.now, dt.datetime.fromtimestamp(arrives_us / US, dt.UTC))
                    await events_from.publish(frames)
                    await transport.drain()
                if to == "oms-1":  # the clock runs on: the OMS finishes what it started
                    end = clock.now + dt.timedelta(minutes=30)
                    while oms.due_at is not None and oms.due_at <= end:
                        clock.now = max(clock.now, oms.due_at)
                        await oms.tick()
                        await transport.drain()
                seconds[to] = time.perf_counter() - began - (field_headend.seconds if to == "oms-1" else 0.0)
                clock.now = START
            oms.core.take_queued()
            taken = oms.core.evidence.stats.events
            lost = events - taken + oms.core.evidence.stats.unknown_meters
            dropped = transport.dropped
            records = oms.records()
            rejected = sum(fabric.stats.total_rejections().values())
            await oms.close()
            await fabric.close()
    base_rate, oms_rate = events / seconds["oms-base"], events / seconds["oms-1"]
    sustained = [r for r in records if r.counts_as_interruption and not r.momentary]
    print(
        f"  reading off the transport: {base_rate:,.0f} events/s; the OMS: {oms_rate:,.0f} events/s "
        f"(ratio {oms_rate / base_rate:.2f}, goal >= 0.5); {oms.core.stats.evaluations} evaluations took "
        f"{oms.core.stats.evaluation_s:.2f} s; {len(sustained):,} outages recorded; events read {read:,}, "
        f"taken by the OMS {taken:,}, lost {lost}, dropped by the transport {dropped}, rejected {rejected}"
    )
    return {
        "storm_events": events,
        "storm_events_per_s": round(oms_rate),
        "transport_events_per_s": round(base_rate),
        "storm_ratio_vs_transport": round(oms_rate / base_rate, 3),
        "storm_events_lost": int(lost),
        "storm_messages_dropped": int(dropped),
        "storm_outages": len(sustained),
        "storm_evaluation_s": round(oms.core.stats.evaluation_s, 3),
    }


async def _nothing(message: Message) -> None:
    """The events' head-end receives nothing the benchmark needs."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller sizes, well under a minute")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    district = load_district()
    model = build_connectivity(district)
    faults, storm_customers = (20, 42_500) if args.quick else (120, 425_000)  # about 50,000 / 500,000 events
    figures = drill(district, model, customers=10_000, faults=faults, seed=args.seed)
    fld, batches = storm_batches(district, model, customers=storm_customers, seed=args.seed)
    figures |= asyncio.run(storm(fld, batches))
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
