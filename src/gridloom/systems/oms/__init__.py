"""Outage management (OMS): detect, locate, verify and restore outages from meter events, at storm scale.

- :class:`OmsCore` — the logic without the fabric: evidence in, evaluations out (:mod:`.core`; its parts
  :mod:`.base`, :mod:`.location`, :mod:`.restoration`), on an :class:`OmsTopology` — the GIS model reduced
  to the devices an outage can be located at (:mod:`.topology`); the inference that explains the evidence
  (:mod:`.inference`); what the OMS heard from each meter (:mod:`.evidence`);
- :class:`OmsConfig` (:mod:`.config`) and what an evaluation asks to send (:mod:`.actions`);
- :class:`OutageRecord` and the records file (:mod:`.records`); IEEE 1366 indices (:mod:`.indices`);
- :class:`OmsActor` — the actor on the fabric (:mod:`.service`) and the message bodies (:mod:`.wire`);
- outage drills: faults through protection, meters and concentrators into an OMS, scored (:mod:`.drill`).
"""

from gridloom.systems.oms.actions import (
    CustomerNotice,
    OmsActions,
    PingPurpose,
    PingRequest,
    StatusUpdate,
    WorkOrder,
    WorkOrderAction,
)
from gridloom.systems.oms.config import OmsConfig
from gridloom.systems.oms.core import OmsCore
from gridloom.systems.oms.indices import ReliabilityIndices, reliability_indices
from gridloom.systems.oms.inference import InferenceParams
from gridloom.systems.oms.records import (
    OutageKind,
    OutageRecord,
    OutageStatus,
    TimelineEntry,
    load_records,
    save_records,
)
from gridloom.systems.oms.service import OmsActor
from gridloom.systems.oms.topology import LOCATABLE_KINDS, OmsTopology

__all__ = [
    "LOCATABLE_KINDS",
    "CustomerNotice",
    "InferenceParams",
    "OmsActions",
    "OmsActor",
    "OmsConfig",
    "OmsCore",
    "OmsTopology",
    "OutageKind",
    "OutageRecord",
    "OutageStatus",
    "PingPurpose",
    "PingRequest",
    "ReliabilityIndices",
    "StatusUpdate",
    "TimelineEntry",
    "WorkOrder",
    "WorkOrderAction",
    "load_records",
    "reliability_indices",
    "save_records",
]
