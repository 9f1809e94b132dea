"""The fabric: how actors talk. Every message is a signed envelope on a catalogued interface.

An actor attaches to the fabric with its identity and a handler; its :class:`Endpoint`
sends and receives. Sending checks the catalog (interface, message type, direction),
encrypts where the interface needs confidentiality, signs and publishes. Receiving runs
the pipeline below; any failure is a :class:`Rejected` that is counted per interface (and
audited, for commands and requests) and never reaches the handler::

    frame decodes -> signer certificate known, CA-issued, valid now, not revoked
    -> signature over the body -> envelope decodes -> source matches the certificate
    -> interface known -> message type carried -> sender role may send it to this role
    -> addressed to this receiver -> fresh -> not a replay -> decrypts -> body decodes
    -> audit (commands, requests) -> handler -> counted, latency recorded

Subjects: ``<prefix>.<interface>.to.<instance>`` and ``<prefix>.<interface>.group.<role>``;
a broadcast goes to the group subject of every role that may receive it.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature

from gridloom.catalog import Catalog
from gridloom.catalog.messages import MessageKind
from gridloom.errors import DecryptionFailed, NotAuthorised, Rejected, SignatureInvalid, StaleMessage
from gridloom.fabric.audit import AuditLog, frame_text
from gridloom.fabric.envelope import (
    Envelope,
    Frame,
    decode_envelope,
    decode_frame,
    decode_payload,
    encode_envelope,
    encode_frame,
    encode_payload,
    to_micros,
)
from gridloom.fabric.identity import Clock, Identity, Peer, TrustStore, utc_now
from gridloom.fabric.metrics import FabricStats
from gridloom.fabric.policy import FUTURE_SKEW_S, Policy, Protection
from gridloom.fabric.replay import ReplayGuard
from gridloom.fabric.sealing import Recipient, Sealer
from gridloom.fabric.transports.base import Subscription, Transport

log = logging.getLogger(__name__)
_MICROS = 1_000_000


@dataclass(frozen=True, slots=True)
class Message:
    """A message as the receiving actor gets it: verified, decrypted, decoded."""

    envelope: Envelope
    body: Any
    sender: Peer
    kind: MessageKind
    received_at: dt.datetime

    @property
    def interface(self) -> str:
        return self.envelope.interface

    @property
    def message_type(self) -> str:
        return self.envelope.message_type


MessageHandler = Callable[[Message], Awaitable[None]]


def sign_frame(identity: Identity, envelope: Envelope) -> bytes:
    """Encode and sign an envelope as ``identity``: the bytes that travel."""
    body = encode_envelope(envelope)
    return encode_frame(Frame(body=body, signer=identity.fingerprint, signature=identity.sign(body)))


class Fabric:
    """Connects actor endpoints over one transport, under one catalog, CA and clock."""

    def __init__(
        self,
        *,
        catalog: Catalog,
        transport: Transport,
        trust: TrustStore,
        clock: Clock = utc_now,
        audit: AuditLog | None = None,
        prefix: str = "gl",
    ) -> None:
        self.catalog = catalog
        self.policy = Policy(catalog)
        self.transport = transport
        self.trust = trust
        self.clock = clock
        self.audit = audit
        self.prefix = prefix
        self.stats = FabricStats({i.id: i.tightest_latency_s for i in catalog})
        self.endpoints: dict[str, Endpoint] = {}

    def subject_to(self, interface: str, instance: str) -> str:
        return f"{self.prefix}.{interface}.to.{instance}"

    def subject_group(self, interface: str, role: str) -> str:
        return f"{self.prefix}.{interface}.group.{role}"

    async def attach(
        self, identity: Identity, handler: MessageHandler, *, body_types: Mapping[str, type[Any]] | None = None
    ) -> Endpoint:
        """Connect an actor: admit its certificates, subscribe to its subjects, return its endpoint.

        ``body_types`` maps message types to msgspec/dataclass types so bodies arrive typed.
        """
        self.trust.add_identity(identity)
        endpoint = Endpoint(self, identity, handler, dict(body_types or {}))
        await endpoint.start()
        self.endpoints[identity.instance] = endpoint
        return endpoint

    async def close(self) -> None:
        for endpoint in list(self.endpoints.values()):
            await endpoint.close()
        self.endpoints.clear()


class Endpoint:
    """One actor instance's connection to the fabric."""

    def __init__(
        self, fabric: Fabric, identity: Identity, handler: MessageHandler, body_types: dict[str, type[Any]]
    ) -> None:
        self.fabric = fabric
        self.identity = identity
        self._handler = handler
        self._body_types = body_types
        self._sealer = Sealer(
            identity.kex_key, fabric.trust.instance(identity.instance, fabric.clock()).kex_fingerprint
        )
        self._replay = ReplayGuard()
        # Start from the clock so a restarted sender never reuses a sequence a receiver has seen.
        self._sequence = to_micros(fabric.clock())
        self._subscriptions: list[Subscription] = []

    @property
    def instance(self) -> str:
        return self.identity.instance

    @property
    def role(self) -> str:
        return self.identity.role

    async def start(self) -> None:
        fabric = self.fabric
        for subject, durable in (
            (fabric.subject_to("*", self.instance), f"{self.instance}-direct"),
            (fabric.subject_group("*", self.role), f"{self.instance}-group"),
        ):
            self._subscriptions.append(await fabric.transport.subscribe(subject, self.receive, durable=durable))

    async def close(self) -> None:
        """Stop receiving and leave the fabric (its instance may attach again later)."""
        for subscription in self._subscriptions:
            await subscription.stop()
        self._subscriptions.clear()
        if self.fabric.endpoints.get(self.instance) is self:
            del self.fabric.endpoints[self.instance]

    # --- sending ------------------------------------------------------------------------
    def _targets(
        self, protection: Protection, message_type: str, to: str | None, group: str | None
    ) -> list[tuple[str, str, list[Peer]]]:
        """(destination, subject, recipients) for each copy to publish; checks authorisation."""
        fabric, now = self.fabric, self.fabric.clock()
        interface = protection.interface.id
        if to is not None and group is not None:
            raise ValueError("give a destination instance (to=) or a group (group=), not both")
        if to is not None:
            peer = fabric.trust.instance(to, now)
            protection.authorise(message_type, self.role, peer.role)
            return [(f"to:{to}", fabric.subject_to(interface, to), [peer])]
        roles = [group] if group is not None else protection.receivers(message_type, self.role)
        if not roles:
            raise NotAuthorised(f"role {self.role!r} may not send {message_type!r} to anyone", interface=interface)
        targets = []
        for role in roles:
            protection.authorise(message_type, self.role, role)
            peers = fabric.trust.instances_of(role, now)
            targets.append((f"group:{role}", fabric.subject_group(interface, role), peers))
        return targets

    def build(
        self,
        interface: str,
        message_type: str,
        body: object,
        *,
        to: str | None = None,
        group: str | None = None,
        correlation_id: str | None = None,
        extensions: dict[str, Any] | None = None,
        records: int = 1,
    ) -> list[tuple[str, bytes, Envelope]]:
        """Check, encrypt and sign a message; returns (subject, frame, envelope) per copy.

        ``to`` names one instance; ``group`` one role; neither broadcasts to every role the
        catalog lets this sender reach with this message type.
        """
        protection = self.fabric.policy.protection(interface)
        interface = protection.interface.id
        plaintext = encode_payload(body)
        created_at_us = to_micros(self.fabric.clock())
        out = []
        for destination, subject, peers in self._targets(protection, message_type, to, group):
            self._sequence += 1
            envelope = Envelope(
                interface=interface,
                message_type=message_type,
                source=self.instance,
                source_role=self.role,
                destination=destination,
                created_at_us=created_at_us,
                sequence=self._sequence,
                message_id=os.urandom(16).hex(),
                correlation_id=correlation_id,
                records=records,
                extensions=extensions or {},
            )
            if protection.encrypt:
                recipients = [Recipient(p.kex_fingerprint, p.kex_key) for p in peers]
                envelope.payload, envelope.sealed = self._sealer.seal(plaintext, envelope.aad(), recipients)
            else:
                envelope.payload = plaintext
            out.append((subject, sign_frame(self.identity, envelope), envelope))
        return out

    async def send(
        self,
        interface: str,
        message_type: str,
        body: object,
        *,
        to: str | None = None,
        group: str | None = None,
        correlation_id: str | None = None,
        extensions: dict[str, Any] | None = None,
        records: int = 1,
    ) -> list[Envelope]:
        """Send one message; returns the envelope of each copy published."""
        built = self.build(
            interface,
            message_type,
            body,
            to=to,
            group=group,
            correlation_id=correlation_id,
            extensions=extensions,
            records=records,
        )
        return await self.publish(built)

    async def publish(self, built: list[tuple[str, bytes, Envelope]]) -> list[Envelope]:
        """Publish what :meth:`build` made — later, if the message spends time on its way (a backhaul delay)."""
        await self.fabric.transport.publish_many([(subject, frame, env.message_id) for subject, frame, env in built])
        for _, _, envelope in built:
            self.fabric.stats[envelope.interface].sent += 1
        return [envelope for _, _, envelope in built]

    async def send_batch(
        self, interface: str, message_type: str, records: list[Any], *, to: str | None = None, group: str | None = None
    ) -> list[Envelope]:
        """Send many records (e.g. a concentrator's interval reads) under one signature."""
        return await self.send(interface, message_type, records, to=to, group=group, records=len(records))

    # --- receiving ----------------------------------------------------------------------
    async def receive(self, subject: str, data: bytes) -> None:
        """The transport handler: verify, then deliver or reject (rejections are acknowledged)."""
        fabric = self.fabric
        envelope: Envelope | None = None
        try:
            now = fabric.clock()
            now_us = to_micros(now)
            frame = decode_frame(data)
            sender = fabric.trust.signer(frame.signer, now)
            try:
                sender.signing_key.verify(frame.signature, frame.body)
            except InvalidSignature:
                raise SignatureInvalid(
                    f"the signature does not match the frame signed as {sender.instance!r}"
                ) from None
            envelope = decode_envelope(frame.body)
            message = self._accept(envelope, frame, sender, now, now_us)
        except Rejected as exc:
            self._reject(exc, envelope, data)
            return
        if message.kind.audited and fabric.audit is not None:
            fabric.audit.append(self._audit_entry(envelope, "accepted", data))
        began = time.perf_counter()
        await self._handler(message)  # raising here leaves the frame unacknowledged: redelivered
        fabric.stats.handler_seconds[self.role] += time.perf_counter() - began
        self._replay.record(envelope.source, envelope.sequence)
        stats = fabric.stats[envelope.interface]
        stats.delivered += 1
        stats.records += envelope.records
        stats.add_latency((now_us - envelope.created_at_us) / _MICROS)

    def _accept(self, envelope: Envelope, frame: Frame, sender: Peer, now: dt.datetime, now_us: int) -> Message:
        fabric = self.fabric
        if envelope.source != sender.instance or envelope.source_role != sender.role:
            raise NotAuthorised(
                f"signed by {sender.instance!r} ({sender.role}) but claims to come from "
                f"{envelope.source!r} ({envelope.source_role})",
                interface=envelope.interface,
            )
        protection = fabric.policy.protection(envelope.interface)
        message_type = protection.authorise(envelope.message_type, sender.role, self.role)
        if envelope.destination not in (f"to:{self.instance}", f"group:{self.role}"):
            raise NotAuthorised(
                f"addressed to {envelope.destination!r}, not to this receiver", interface=envelope.interface
            )
        age_s = (now_us - envelope.created_at_us) / _MICROS
        if age_s > protection.freshness_s:
            raise StaleMessage(
                f"created {age_s:.1f} s ago; this interface accepts messages up to {protection.freshness_s:g} s old",
                interface=envelope.interface,
            )
        if age_s < -FUTURE_SKEW_S:
            raise StaleMessage(f"created {-age_s:.1f} s in the future (clock skew?)", interface=envelope.interface)
        self._replay.check(envelope.source, envelope.sequence, interface=envelope.interface)
        if envelope.sealed is not None:
            kex_peer = Recipient(sender.kex_fingerprint, sender.kex_key)
            try:
                payload = self._sealer.open(envelope.payload, envelope.aad(), envelope.sealed, kex_peer)
            except DecryptionFailed as exc:
                exc.interface = envelope.interface
                raise
        elif protection.encrypt:
            raise DecryptionFailed(
                f"the interface requires encryption ({protection.encrypt_reason}); refusing a plaintext payload",
                interface=envelope.interface,
            )
        else:
            payload = envelope.payload
        body = decode_payload(payload, self._body_types.get(envelope.message_type))
        return Message(envelope=envelope, body=body, sender=sender, kind=message_type.kind, received_at=now)

    def _reject(self, exc: Rejected, envelope: Envelope | None, data: bytes) -> None:
        fabric = self.fabric
        if envelope is None:
            envelope = _claimed_envelope(data)
        interface = exc.interface or (envelope.interface if envelope is not None else None)
        fabric.stats.rejected(interface, exc.kind)
        log.warning("%s rejected a message: %s: %s", self.instance, exc.kind, exc)
        if envelope is not None and fabric.audit is not None:
            try:
                audited = fabric.policy.protection(envelope.interface).is_audited(envelope.message_type)
            except Rejected:
                audited = False
            if audited:
                fabric.audit.append(self._audit_entry(envelope, f"rejected: {exc.kind}: {exc}", data))

    def _audit_entry(self, envelope: Envelope, outcome: str, data: bytes) -> dict[str, Any]:
        return {
            "receiver": self.instance,
            "interface": envelope.interface,
            "message_type": envelope.message_type,
            "source": envelope.source,
            "source_role": envelope.source_role,
            "message_id": envelope.message_id,
            "sequence": envelope.sequence,
            "created_at": envelope.created_at.isoformat(),
            "outcome": outcome,
            "frame": frame_text(data),
        }


def _claimed_envelope(data: bytes) -> Envelope | None:
    """The envelope a rejected frame claims to carry, to count the rejection on its interface."""
    try:
        return decode_envelope(decode_frame(data).body)
    except Rejected:
        return None
