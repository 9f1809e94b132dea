"""The default SimBench district and its connectivity model, loaded once; outage runs on real protection."""

import datetime as dt
from dataclasses import dataclass

import numpy as np
import pytest

from gridloom.devices.comms import CommConfig
from gridloom.grid.connectivity import ConnectivityModel, DeviceKind, build_connectivity
from gridloom.grid.model import District
from gridloom.grid.networks import load_district
from gridloom.grid.protection import Fault, ProtectionResult
from gridloom.grid.territory import build_territory
from gridloom.systems.oms import OmsConfig, OmsCore, OutageRecord, OutageStatus
from gridloom.systems.oms.drill import DrillScore, FieldConfig, OutageField, replay, score

START = dt.datetime(2026, 7, 1, tzinfo=dt.UTC)
US = 1_000_000


@pytest.fixture(scope="session")
def district() -> District:
    return load_district()


@pytest.fixture(scope="session")
def model(district: District) -> ConnectivityModel:
    return build_connectivity(district)


@dataclass
class Run:
    """One outage run: the field (truth), the OMS core that watched it, and how it scored."""

    field: OutageField
    core: OmsCore
    results: list[ProtectionResult]
    score: DrillScore

    def records(self, *, network: bool = True) -> list[OutageRecord]:
        keep = (OutageStatus.MERGED, OutageStatus.CANCELLED)
        return [r for r in self.core.records() if r.status not in keep and (not network or r.kind.value == "network")]


def run_outages(
    district: District,
    model: ConnectivityModel,
    faults: list[Fault],
    *,
    customers: int | None = None,
    comm: CommConfig | None = None,
    hours: float = 3.0,
    seed: int = 1,
    premise: list[tuple[int, dt.datetime, dt.datetime]] = (),
    shuffle_s: float = 0.0,
    config: OmsConfig | None = None,
) -> Run:
    """Faults through protection, meters (1-minute intervals) and concentrators into a fresh OMS core.

    ``shuffle_s`` delays each batch by a random 0..shuffle_s seconds more, so batches arrive out of order.
    """
    territory = build_territory(district, customers or district.n_customers)
    field_config = FieldConfig() if comm is None else FieldConfig(comm=comm)
    fld = OutageField(model, territory, seed=seed, config=field_config)
    results = fld.inject(faults)
    for meter, start, end in premise:
        fld.premise_outage(meter, start, end)
    end = START + dt.timedelta(hours=hours)
    batches = fld.event_batches(START, end)
    if shuffle_s:
        rng = np.random.default_rng(seed)
        for b in batches:
            object.__setattr__(b, "delay_s", b.delay_s + float(rng.uniform(0, shuffle_s)))
        batches.sort(key=lambda b: b.arrives_at_us)
    core = OmsCore(fld.topology, config=config)
    replay(core, fld, batches, until_us=int(end.timestamp() * US))
    return Run(fld, core, results, score(core, fld, results))


def devices(model: ConnectivityModel, kind: DeviceKind, *, customers: tuple[int, int]) -> list[str]:
    """Ids of devices of ``kind`` with between ``customers[0]`` and ``customers[1]`` customers below."""
    _, lo, hi = model.customer_range()
    found = model.devices_of_kind(kind)
    n = hi[found] - lo[found]
    return [str(model.device_id[d]) for d in found[(n >= customers[0]) & (n <= customers[1])]]
