"""The secured fabric: envelopes on catalogued interfaces, signed, encrypted where needed,
source-checked, replay-checked, authorised by role, audited, over pluggable transports."""

from gridloom.fabric.audit import AuditLog, AuditReport, verify
from gridloom.fabric.envelope import Envelope, Frame, json_view
from gridloom.fabric.fabric import Endpoint, Fabric, Message, MessageHandler, sign_frame
from gridloom.fabric.identity import CertificateAuthority, Identity, Peer, TrustStore
from gridloom.fabric.policy import Policy, Protection
from gridloom.fabric.transports.base import Transport
from gridloom.fabric.transports.memory import MemoryTransport

__all__ = [
    "AuditLog",
    "AuditReport",
    "CertificateAuthority",
    "Endpoint",
    "Envelope",
    "Fabric",
    "Frame",
    "Identity",
    "MemoryTransport",
    "Message",
    "MessageHandler",
    "Peer",
    "Policy",
    "Protection",
    "Transport",
    "TrustStore",
    "json_view",
    "sign_frame",
    "verify",
]
