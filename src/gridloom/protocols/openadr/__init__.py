"""OpenADR 2.0b for demand response: the LMS/DRMS runs a VTN, customer gateways and EMSs run VENs.

- :mod:`.security` — TLS contexts with gridloom's CA and CRL, fingerprints, the message guard
  (signature, signer, replay) that runs in front of openleadr on both sides;
- :mod:`.events` — events, signals (simple levels, prices with their future vector, load dispatch)
  and targets;
- :mod:`.reports` — the reports a VEN offers (``TELEMETRY_USAGE``, ``TELEMETRY_STATUS`` with a
  :class:`GatewayStatus`, ``HISTORY_USAGE``) and what the VTN asked for and received;
- :mod:`.opts` — the opt service: opts on single events and availability schedules;
- :mod:`.vtn` — the VTN (openleadr's server behind gridloom's checks; reports on demand, ``EiOpt``);
- :mod:`.ven` — the VEN (openleadr's client with gridloom's checks; status and history reports,
  opts, clock offset from the VTN's signed timestamps).
"""

from gridloom.protocols.openadr.events import DrEvent, ReceivedEvent, Signal, SignalName, Targets
from gridloom.protocols.openadr.opts import EventTargeting, Opt, OptReason, OptType
from gridloom.protocols.openadr.reports import (
    GatewayStatus,
    LoadControl,
    LoadControlKind,
    OfferedReport,
    ReceivedReport,
    ReportName,
    ReportRequest,
)
from gridloom.protocols.openadr.security import (
    CertificateCheck,
    MessageGuard,
    NonceCache,
    TlsFiles,
    client_context,
    openadr_fingerprint,
    server_context,
)
from gridloom.protocols.openadr.ven import HistorySource, StatusSource, Ven, VenStats
from gridloom.protocols.openadr.vtn import PATH_PREFIX, VenRecord, Vtn, VtnStats

__all__ = [
    "PATH_PREFIX",
    "CertificateCheck",
    "DrEvent",
    "EventTargeting",
    "GatewayStatus",
    "HistorySource",
    "LoadControl",
    "LoadControlKind",
    "MessageGuard",
    "NonceCache",
    "OfferedReport",
    "Opt",
    "OptReason",
    "OptType",
    "ReceivedEvent",
    "ReceivedReport",
    "ReportName",
    "ReportRequest",
    "Signal",
    "SignalName",
    "StatusSource",
    "Targets",
    "TlsFiles",
    "Ven",
    "VenRecord",
    "VenStats",
    "Vtn",
    "VtnStats",
    "client_context",
    "openadr_fingerprint",
    "server_context",
]
