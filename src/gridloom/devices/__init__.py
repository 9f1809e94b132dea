"""Simulated field devices as vectorised fleets: a million meters is a set of arrays, not objects.

D1 (this part): AMI meters (:mod:`.meters`), data concentrators (:mod:`.concentrators`) and the
AMI network's losses and delays (:mod:`.comms`), with configurable random distributions
(:mod:`.distributions`). Devices never import systems; they change state only through commands.
"""

from gridloom.devices.comms import CommConfig, last_gasp_loss, survivors
from gridloom.devices.concentrators import BatchKind, Collection, ConcentratorBatch, Concentrators
from gridloom.devices.distributions import Distribution, DistributionKind
from gridloom.devices.meters import (
    IntervalReads,
    MeterConfig,
    MeterEventKind,
    MeterEvents,
    MeterFleet,
    QualityFlag,
    RegisterReads,
    ReverseRotation,
)

__all__ = [
    "BatchKind",
    "Collection",
    "CommConfig",
    "ConcentratorBatch",
    "Concentrators",
    "Distribution",
    "DistributionKind",
    "IntervalReads",
    "MeterConfig",
    "MeterEventKind",
    "MeterEvents",
    "MeterFleet",
    "QualityFlag",
    "RegisterReads",
    "ReverseRotation",
    "last_gasp_loss",
    "survivors",
]
