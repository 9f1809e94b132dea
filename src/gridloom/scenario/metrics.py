"""A run's metrics (``metrics.json``, schema 1): everything the report shows, as plain JSON.

Everything but ``wall_s`` depends only on the scenario and its seed, so two runs of the same
scenario give equal metrics; the report is rendered from this dict alone.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from gridloom.catalog import Catalog, Interface, InterfaceStatus
from gridloom.grid.connectivity import DeviceKind
from gridloom.grid.profiles import STEP_S
from gridloom.grid.protection import OperationKind, ProtectionResult
from gridloom.grid.simulate import VOLTAGE_BINS_PU, VOLTAGE_LIMITS_PU, Simulation
from gridloom.systems.cis.tariffs import DEFAULT_CURRENCY

if TYPE_CHECKING:
    from gridloom.fabric import Fabric
    from gridloom.scenario.spec import Scenario
    from gridloom.store import MeterDataStore
    from gridloom.systems.billing.run import BillingRun
    from gridloom.systems.headend import MeterNetwork
    from gridloom.systems.mdms.service import ClosedPeriod, MdmsActor

SCHEMA = 1
_US = 1_000_000


def build(
    *,
    scenario: Scenario,
    status: str,
    simulation: Simulation,
    fabric: Fabric,
    catalog: Catalog,
    mdms: MdmsActor,
    network: MeterNetwork,
    closed: Sequence[ClosedPeriod],
    billing: Sequence[BillingRun],
    timeline: list[dict[str, Any]],
    drills: list[dict[str, Any]],
    alarms: list[dict[str, Any]],
    wall_s: dict[str, float],
    sections: dict[str, dict[str, Any]] | None = None,
    outside_fabric: Sequence[dict[str, Any]] = (),
) -> dict[str, Any]:
    """``sections``: what plugged-in systems report, by key (they may replace a default section);
    ``outside_fabric``: interface rows of traffic the plugged-in systems carried over other protocols."""
    summary = simulation.summary
    end = summary.step_at[-1] + dt.timedelta(seconds=STEP_S) if summary.step_at else scenario.time.start
    supplied = summary.substation_wh + summary.generation_mv_wh
    interfaces = sorted([*interface_rows(fabric, catalog), *outside_fabric], key=lambda r: str(r["interface"]))
    carried = {str(r["interface"]) for r in outside_fabric}
    metrics = {
        "schema": SCHEMA,
        "scenario": {
            "name": scenario.name,
            "description": scenario.description,
            "seed": scenario.seed,
            "district": summary.district,
            "customers": summary.customers,
            "substations": summary.substations,
            "feeders": summary.feeders,
            "start": scenario.time.start.isoformat(),
            "days": scenario.time.days,
            "systems": list(scenario.systems),
        },
        "status": status,
        "sim": {"steps": len(summary.step_at), "step_s": STEP_S, "end": end.isoformat()},
        "grid": {
            "substation_kwh": _r(summary.substation_wh / 1000),
            "generation_mv_kwh": _r(summary.generation_mv_wh / 1000),
            "metered_net_kwh": _r(summary.metered_net_wh / 1000),
            "losses_kwh": _r(summary.losses_wh / 1000),
            "energy_balance_error": _r(summary.energy_balance_error, 6) if supplied else 0.0,
            "voltage_violations": summary.voltage_violations,
            "customer_intervals": int(summary.voltage_histogram.sum()),
            "pv_units": summary.pv_units,
            "evs": summary.evs,
            "batteries": summary.batteries,
        },
        "series": {
            "at": [t.isoformat() for t in summary.step_at],
            "substation_kw": _kw(summary.substation_p_w),
            "customer_kw": _kw(summary.customer_p_w),
            "generation_mv_kw": _kw(summary.generation_mv_p_w),
            "losses_kw": _kw(summary.losses_w),
            "substation_voltage_pu": [_r(v, 5) for v in summary.substation_voltage_pu],
            "voltage_pu_p01": [_r(v, 5) for v in summary.voltage_pu_p01],
            "voltage_pu_p50": [_r(v, 5) for v in summary.voltage_pu_p50],
            "voltage_pu_p99": [_r(v, 5) for v in summary.voltage_pu_p99],
            "customers_out": list(summary.customers_out),
        },
        "voltage_histogram": {
            "edges_pu": [float(e) for e in VOLTAGE_BINS_PU],
            "counts": summary.voltage_histogram.tolist(),
            "limits_pu": list(VOLTAGE_LIMITS_PU),
        },
        "ami": ami_metrics(simulation, mdms, network, closed),
        "vee": vee_metrics(closed, mdms.core.store, simulation.fleets.meters.meter_id.tolist()),
        "billing": billing_metrics(billing),
        "outages": outage_metrics(simulation, end),
        "demand_response": {"implemented": False, "events": []},
        "interfaces": interfaces,
        "unimplemented_interfaces": [
            r
            for r in unimplemented(catalog, {e.role for e in fabric.endpoints.values()})
            if r["interface"] not in carried
        ],
        "rejections": dict(sorted(fabric.stats.total_rejections().items())),
        "drills": drills,
        "timeline": sorted(timeline, key=lambda e: e["at"]),
        "alarms": alarms,
        "wall_s": wall_s,
    }
    metrics.update(sections or {})
    return metrics


def _r(value: float, digits: int = 3) -> float:
    return round(float(value), digits)


def _kw(watts: Sequence[float]) -> list[float]:
    return [_r(w / 1000, 3) for w in watts]


def ami_metrics(
    simulation: Simulation, mdms: MdmsActor, network: MeterNetwork, closed: Sequence[ClosedPeriod]
) -> dict[str, Any]:
    summary, meters = simulation.summary, simulation.fleets.meters
    estimated = sum(c.estimated for c in closed)
    expected = meters.n * len(summary.step_at)
    stored = mdms.ingested
    return {
        "meters": meters.n,
        "concentrators": len(simulation.fleets.concentrators.concentrator_id),
        "reads_expected": expected,
        "reads_withheld_by_firmware": meters.reads_withheld,
        "reads_without_supply": expected - summary.reads_offered - meters.reads_withheld,  # dead meters read nothing
        "reads_offered": summary.reads_offered,
        "reads_delivered": summary.reads_delivered,
        "reads_lost_in_field": summary.reads_offered - summary.reads_delivered,
        "reads_sent": network.stats.records_sent,
        "reads_stored": stored,
        "reads_duplicate": mdms.duplicates,
        "reads_estimated": estimated,
        "completeness_delivered": _r(summary.reads_delivered / expected, 5) if expected else 0.0,
        # after the nightly VEE, what is missing is what it could not estimate
        "completeness_after_vee": _r(1 - sum(c.unestimated for c in closed) / expected, 5) if expected else 0.0,
        "register_reads": mdms.core.store.count("register_reads"),
        "events_offered": dict(sorted(summary.events_offered.items())),
        "events_delivered": dict(sorted(summary.events_delivered.items())),
    }


def vee_metrics(closed: Sequence[ClosedPeriod], store: MeterDataStore, meter_ids: list[str]) -> dict[str, Any]:
    flagged: Counter[str] = Counter()
    for period in closed:
        flagged.update({k: v for k, v in period.flagged.items() if k != "reads"})  # "reads": how many were checked
    by_rule: Counter[str] = Counter()
    if closed:
        current = store.reads(meter_ids=meter_ids, start=closed[0].start, end=closed[-1].end, versions="current")
        estimated = current.filter(pc.equal(current["source"], "estimated"))
        by_rule.update(dict(zip(*_value_counts(estimated["rule"]), strict=True)))
    return {
        "periods": len(closed),
        "flagged": dict(sorted(flagged.items())),
        "estimated": sum(c.estimated for c in closed),
        "estimated_by_rule": dict(sorted(by_rule.items())),
        "unestimated": sum(c.unestimated for c in closed),
    }


def _value_counts(column: Any) -> tuple[list[str], list[int]]:  # noqa: ANN401 - a pyarrow column
    counts = pc.value_counts(column)
    return counts.field("values").to_pylist(), counts.field("counts").to_pylist()


def billing_metrics(runs: Sequence[BillingRun]) -> dict[str, Any] | None:
    """Bills of the run's cycles together, and per tariff."""
    if not runs:
        return None
    bills = pa.concat_tables([run.bills for run in runs])
    issued = bills.filter(pc.equal(bills["status"], "issued"))
    by_tariff: dict[str, dict[str, Any]] = {}
    for tariff in sorted(pc.unique(bills["tariff_id"]).to_pylist()):
        rows = bills.filter(pc.equal(bills["tariff_id"], tariff))
        by_tariff[tariff] = {
            "bills": rows.num_rows,
            "total": _money(rows["total_cents"]),
            "energy_kwh": _r((pc.sum(rows["energy_delivered_wh"]).as_py() or 0) / 1000),
        }
    return {
        "cycle": ", ".join(run.cycle.cycle_id for run in runs),
        "cycles": [run.cycle.cycle_id for run in runs],
        "bills": bills.num_rows,
        "issued": issued.num_rows,
        "held": bills.num_rows - issued.num_rows,
        "billed_total": _money(issued["total_cents"]),
        "currency": DEFAULT_CURRENCY,
        "energy_delivered_kwh": _r((pc.sum(bills["energy_delivered_wh"]).as_py() or 0) / 1000),
        "reads_used": sum(run.reads_used for run in runs),
        "by_tariff": by_tariff,
    }


def _money(cents: Any) -> str:  # noqa: ANN401 - a pyarrow column of cents
    return f"{(pc.sum(cents).as_py() or 0) / 100:.2f}"


def outage_metrics(simulation: Simulation, end: dt.datetime) -> dict[str, Any]:
    """Outages as the grid simulation's protection saw them, and IEEE 1366 indices over the run."""
    connectivity, served = simulation.connectivity, simulation.summary.customers
    end_us = round(end.timestamp() * _US)
    events, sustained, customer_minutes, momentary = [], 0, 0.0, 0
    for result in simulation.summary.faults:
        row = _outage_row(result, connectivity.device_id, connectivity.kind, end_us, simulation.district.n_customers,
                          served)  # fmt: skip
        if row is None:
            continue
        events.append(row)
        sustained += row["customers"]
        customer_minutes += row["customer_minutes"]
        momentary += row["momentary_interruptions"]
    saifi = sustained / served if served else 0.0
    saidi = customer_minutes / served if served else 0.0
    return {
        "source": "grid simulation (protection)",
        "customers_served": served,
        "events": events,
        "indices": {
            "SAIFI": _r(saifi, 5),
            "SAIDI_min": _r(saidi, 4),
            "CAIDI_min": _r(saidi / saifi, 3) if saifi else 0.0,
            "MAIFI": _r(momentary / served, 5) if served else 0.0,
        },
    }


def _outage_row(
    result: ProtectionResult,
    device_id: np.ndarray[Any, Any],
    kind: np.ndarray[Any, Any],
    end_us: int,
    n_district: int,
    customers: int,
) -> dict[str, Any] | None:
    fault, gaps = result.fault, result.interruptions
    if round(fault.at.timestamp() * _US) >= end_us:
        return None  # after the run (an interrupted run)
    gaps = gaps.of_territory(n_district, customers)
    lasting = ~gaps.momentary
    stop = np.where(gaps.end_us < 0, end_us, np.minimum(gaps.end_us, end_us))
    minutes = float(((stop - gaps.start_us)[lasting]).clip(min=0).sum()) / 60 / _US
    sustained = bool(lasting.any())
    if sustained:  # restored when every sustained interruption ended within the run
        ends = gaps.end_us[lasting]
        last = int(ends.max()) if (ends >= 0).all() and ends.max() <= end_us else -1
    else:  # no served customer lost supply for long: restored when the protection last closed (reclose, repair)
        closes = [op.at for op in result.operations if op.kind is OperationKind.CLOSE]
        last = round(max(closes).timestamp() * _US) if closes and max(closes).timestamp() * _US <= end_us else -1
    device = int(result.isolating_device if result.isolating_device >= 0 else result.clearing_device)
    return {
        "device": str(device_id[fault.device]),
        "operated": str(device_id[device]) if device >= 0 else None,
        "kind": list(DeviceKind)[int(kind[device])].value if device >= 0 else None,
        "substation": fault.replica,
        "cause": "permanent fault" if fault.permanent else "temporary fault",
        "start": fault.at.isoformat(),
        "end": dt.datetime.fromtimestamp(last / _US, dt.UTC).isoformat() if last >= 0 else None,
        "customers": int(np.unique(gaps.territory_index(n_district)[lasting]).size),
        "customer_minutes": _r(minutes, 1),
        "momentary_interruptions": int(np.count_nonzero(gaps.momentary)),
        "momentary": bool(gaps.momentary.any()) and not sustained,
    }


def interface_rows(fabric: Fabric, catalog: Catalog) -> list[dict[str, Any]]:
    rows = []
    for row in fabric.stats.snapshot():
        iface_id = row["interface"]
        try:
            interface = catalog.interface(iface_id)
        except Exception:  # noqa: BLE001 - "(unknown)": frames that named no catalogued interface
            rows.append({**row, "title": "not a catalogued interface", "from": "", "to": "", "timing": ""})
            continue
        latency = {k: (_r(v, 3) if isinstance(v, float) else v) for k, v in row.items() if k.startswith("latency")}
        rows.append({**row, **latency, **interface_facts(catalog, interface)})
    return rows


def interface_facts(catalog: Catalog, interface: Interface) -> dict[str, Any]:
    """An interface row's title, direction (gridloom's first declared message on it, else the seed's first
    flow) and the seed's timing words."""
    declared = catalog.declared_for(interface.id)
    flow = declared[0] if declared else (interface.flows[0] if interface.flows else None)
    return {
        "title": interface.title,
        "from": flow.source if flow else "",
        "to": flow.target if flow else "",
        "timing": "; ".join(dict.fromkeys(f.timing.statement for f in interface.flows if f.timing.statement)),
    }


def unimplemented(catalog: Catalog, running: set[str]) -> list[dict[str, Any]]:
    """Interfaces of the seed no gridloom system of the run speaks (declared messages between ``running`` roles)."""
    out = []
    for interface in catalog:
        if interface.status is not InterfaceStatus.DEFINED:
            continue
        declared = catalog.declared_for(interface.id)
        if any(m.source in running and m.target in running for m in declared):
            continue
        flow = interface.flows[0]
        out.append(
            {"interface": interface.id, "title": interface.title, "from": flow.source, "to": flow.target,
             "status": "not implemented yet"}
        )  # fmt: skip
    return out
