"""The AMI head-end: concentrators' reads and events to the MDMS, on-demand reads, remote connect/disconnect.

- :class:`HeadEnd` — the actor on the fabric (:mod:`.service`);
- :class:`HeadEndCore` — its logic without the fabric: routes, safeguards, requests in flight (:mod:`.core`);
- :class:`HeadEndConfig`, :class:`EventSubscription` — settings and safeguard thresholds (:mod:`.config`);
- :class:`DecisionLog`, :class:`Decision` — the head-end's record of every switch decision (:mod:`.decisions`);
- :class:`MeterNetwork` — the field side: a meter fleet behind its concentrators (:mod:`.field`);
- the message bodies (:mod:`.wire`), whose keys are the ``fields`` of ``catalog/data/messages.yaml``.
"""

from gridloom.systems.headend.config import EventSubscription, HeadEndConfig
from gridloom.systems.headend.core import (
    HeadEndCore,
    MeterRoutes,
    Operation,
    RateCap,
    Reply,
    SwitchDecision,
    SwitchRequest,
    Verdict,
)
from gridloom.systems.headend.decisions import Decision, DecisionLog, Outcome
from gridloom.systems.headend.field import MeterNetwork, NetworkStats, issue_concentrator_identities
from gridloom.systems.headend.service import HeadEnd, HeadEndStats
from gridloom.systems.headend.wire import (
    EventColumns,
    Failure,
    MeterRequest,
    ReadColumns,
    ReadResponse,
    RegisterColumns,
    Status,
    SwitchResponse,
)

__all__ = [
    "Decision",
    "DecisionLog",
    "EventColumns",
    "EventSubscription",
    "Failure",
    "HeadEnd",
    "HeadEndConfig",
    "HeadEndCore",
    "HeadEndStats",
    "MeterNetwork",
    "MeterRequest",
    "MeterRoutes",
    "NetworkStats",
    "Operation",
    "Outcome",
    "RateCap",
    "ReadColumns",
    "ReadResponse",
    "RegisterColumns",
    "Reply",
    "Status",
    "SwitchDecision",
    "SwitchRequest",
    "SwitchResponse",
    "Verdict",
    "issue_concentrator_identities",
]
