"""OpenADR 2.0b for demand response: the LMS/DRMS runs a VTN, customer gateways and EMSs run VENs.

- :mod:`.security` — TLS contexts with gridloom's CA and CRL, fingerprints, the message guard
  (signature, signer, replay) that runs in front of openleadr on both sides;
- :mod:`.events` — events, signals (simple levels, prices with their future vector, load dispatch)
  and targets;
- :mod:`.vtn` — the VTN (openleadr's server behind gridloom's checks);
- :mod:`.ven` — the VEN (openleadr's client with gridloom's checks).
"""

from gridloom.protocols.openadr.events import DrEvent, ReceivedEvent, Signal, SignalName, Targets
from gridloom.protocols.openadr.security import (
    CertificateCheck,
    MessageGuard,
    NonceCache,
    TlsFiles,
    client_context,
    openadr_fingerprint,
    server_context,
)
from gridloom.protocols.openadr.ven import Ven, VenStats
from gridloom.protocols.openadr.vtn import PATH_PREFIX, VenRecord, Vtn, VtnStats

__all__ = [
    "PATH_PREFIX",
    "CertificateCheck",
    "DrEvent",
    "MessageGuard",
    "NonceCache",
    "ReceivedEvent",
    "Signal",
    "SignalName",
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
