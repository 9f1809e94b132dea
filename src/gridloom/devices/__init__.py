"""Simulated field devices as vectorised fleets: a million meters is a set of arrays, not objects.

AMI meters (:mod:`.meters`), data concentrators (:mod:`.concentrators`) and the AMI network's
losses and delays (:mod:`.comms`), with configurable random distributions (:mod:`.distributions`);
PV inverters with IEEE 1547 volt-var / volt-watt (:mod:`.pv`), home and utility storage
(:mod:`.storage`), PEVs on chargers (:mod:`.ev`) and field IEDs (:mod:`.ieds`). Devices never
import systems; they change state only through commands.
"""

from gridloom.devices.comms import CommConfig, last_gasp_loss, survivors
from gridloom.devices.concentrators import BatchKind, Collection, ConcentratorBatch, Concentrators
from gridloom.devices.distributions import Distribution, DistributionKind
from gridloom.devices.ev import EvBehaviour, EvFleet
from gridloom.devices.ieds import CapacitorSpec, IedFleet, IedKind, RegulatorSpec, SwitchSpec
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
from gridloom.devices.pv import PvFleet, VoltVarCurve, VoltWattCurve
from gridloom.devices.storage import StorageFleet, StorageSpec

__all__ = [
    "BatchKind",
    "CapacitorSpec",
    "Collection",
    "CommConfig",
    "ConcentratorBatch",
    "Concentrators",
    "Distribution",
    "DistributionKind",
    "EvBehaviour",
    "EvFleet",
    "IedFleet",
    "IedKind",
    "IntervalReads",
    "MeterConfig",
    "MeterEventKind",
    "MeterEvents",
    "MeterFleet",
    "PvFleet",
    "QualityFlag",
    "RegisterReads",
    "RegulatorSpec",
    "ReverseRotation",
    "StorageFleet",
    "StorageSpec",
    "SwitchSpec",
    "VoltVarCurve",
    "VoltWattCurve",
    "last_gasp_loss",
    "survivors",
]
