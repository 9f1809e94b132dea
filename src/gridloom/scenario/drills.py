"""Attack drills: what an attacker on the AMI network tries, and whether the stack refuses it.

Each attack puts frames on the wire as an attacker could (published straight to the transport,
bypassing the sender-side checks a legitimate endpoint makes) and is judged by what the
receivers did, read from the fabric's own counters:

``replay``               a concentrator batch captured on the wire, sent again — ReplayDetected
``tampered``             the captured batch with one byte of its payload changed — SignatureInvalid
``forged_identity``      a head-end "disconnect" signed by a certificate from another CA — CertificateInvalid
``unauthorised_command`` a trusted customer-side device (role customer_ems) orders a concentrator to
                         disconnect its meters — NotAuthorised (only the head-end commands meters)
``disconnect_flood``     a trusted CIS asks the head-end to disconnect 60 meters at once — held for a
                         second, distinct approver (HeadEndConfig), no meter disconnected
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gridloom.catalog import Catalog
from gridloom.catalog.messages import DeclaredType
from gridloom.fabric import CertificateAuthority, Envelope, Fabric, Identity, Message
from gridloom.fabric.envelope import encode_payload
from gridloom.fabric.fabric import sign_frame
from gridloom.systems.headend import MeterNetwork

ATTACKS = ("replay", "tampered", "forged_identity", "unauthorised_command", "disconnect_flood")
FLOOD_METERS = 60


@dataclass(frozen=True)
class DrillResult:
    attack: str
    interface: str
    detail: str
    expected: str
    outcome: str

    @property
    def passed(self) -> bool:
        return self.outcome == self.expected

    def as_dict(self) -> dict[str, Any]:
        return {
            "attack": self.attack,
            "interface": self.interface,
            "detail": self.detail,
            "expected": self.expected,
            "outcome": self.outcome,
            "passed": self.passed,
        }


@dataclass
class Captured:
    """A frame seen on the wire (the runner keeps the last concentrator batch it published)."""

    subject: str
    frame: bytes


class _Drill:
    def __init__(
        self,
        fabric: Fabric,
        ca: CertificateAuthority,
        catalog: Catalog,
        *,
        headend: str,
        network: MeterNetwork,
        captured: Captured | None,
        validity: dt.timedelta,
    ) -> None:
        self.fabric = fabric
        self.ca = ca
        self.catalog = catalog
        self.headend = headend
        self.network = network
        self.captured = captured
        self.validity = validity

    def _rejections(self) -> Counter[tuple[str, str]]:
        return Counter(
            {
                (row["interface"], kind): n
                for row in self.fabric.stats.snapshot()
                for kind, n in row["rejections"].items()
            }
        )

    async def _outcome_of(self, publish: list[tuple[str, bytes]]) -> str:
        """Publish raw frames, let the receivers work, and name what they did."""
        before = self._rejections()
        for subject, frame in publish:
            await self.fabric.transport.publish(subject, frame, message_id=os.urandom(16).hex())
        await self.fabric.transport.drain()
        new = self._rejections() - before
        if not new:
            return "accepted"
        return "rejected: " + ", ".join(sorted({kind for _, kind in new}))

    def _issue(self, role: str, instance: str, ca: CertificateAuthority | None = None) -> Identity:
        issuer = ca or self.ca
        return issuer.issue(role, instance, catalog=self.catalog, clock=self.fabric.clock, validity=self.validity,
                            save=False)  # fmt: skip

    def _command_frame(self, identity: Identity, destination: str, body: dict[str, Any]) -> tuple[str, bytes]:
        """A remote_disconnect on AMI-28 to one concentrator, crafted and signed by ``identity``."""
        now_us = round(self.fabric.clock().timestamp() * 1_000_000)
        envelope = Envelope(
            interface="AMI-28",
            message_type=DeclaredType.REMOTE_DISCONNECT.value,
            source=identity.instance,
            source_role=identity.role,
            destination=f"to:{destination}",
            created_at_us=now_us,
            sequence=now_us,
            message_id=os.urandom(16).hex(),
        )
        envelope.payload = encode_payload(body)
        return self.fabric.subject_to("AMI-28", destination), sign_frame(identity, envelope)

    def _victim(self) -> tuple[str, list[str]]:
        """A concentrator's fabric instance and the meters it serves."""
        instance, meters = next(iter(self.network.routes().items()))
        return instance, meters

    async def attack(self, name: str) -> DrillResult:
        if name == "replay":
            if self.captured is None:
                return DrillResult(name, "DGM-20", "no frame captured yet", "rejected: ReplayDetected", "skipped")
            outcome = await self._outcome_of([(self.captured.subject, self.captured.frame)])
            return DrillResult(name, "DGM-20", "a captured concentrator batch sent again",
                               "rejected: ReplayDetected", outcome)  # fmt: skip
        if name == "tampered":
            if self.captured is None:
                return DrillResult(name, "DGM-20", "no frame captured yet", "rejected: SignatureInvalid", "skipped")
            frame = bytearray(self.captured.frame)
            frame[len(frame) // 2] ^= 0x01  # inside the signed body: the payload
            outcome = await self._outcome_of([(self.captured.subject, bytes(frame))])
            return DrillResult(name, "DGM-20", "a captured batch with one byte changed",
                               "rejected: SignatureInvalid", outcome)  # fmt: skip
        victim, meters = self._victim()
        body = {"request_id": f"drill-{name}", "meter_ids": meters[:5], "reason": "drill"}
        if name == "forged_identity":
            with tempfile.TemporaryDirectory() as folder:
                rogue_ca = CertificateAuthority.init(Path(folder) / "rogue", clock=self.fabric.clock)
                rogue = self._issue("ami_headend", self.headend, rogue_ca)
            outcome = await self._outcome_of([self._command_frame(rogue, victim, body)])
            return DrillResult(name, "AMI-28", f"a disconnect of 5 meters signed as {self.headend!r} by another CA",
                               "rejected: CertificateInvalid", outcome)  # fmt: skip
        if name == "unauthorised_command":
            insider = self._issue("customer_ems", "drill-customer-ems")
            self.fabric.trust.add_identity(insider)  # a provisioned customer device, compromised
            outcome = await self._outcome_of([self._command_frame(insider, victim, body)])
            return DrillResult(name, "AMI-28", "a customer EMS orders a concentrator to disconnect 5 meters",
                               "rejected: NotAuthorised", outcome)  # fmt: skip
        if name == "disconnect_flood":
            return await self._flood()
        raise ValueError(f"unknown attack {name!r}; choose from {', '.join(ATTACKS)}")

    async def _flood(self) -> DrillResult:
        answers: asyncio.Queue[Message] = asyncio.Queue()

        async def keep(message: Message) -> None:
            await answers.put(message)

        cis = await self.fabric.attach(self._issue("cis", "drill-cis"), keep)
        meters = [m for ids in self.network.routes().values() for m in ids][:FLOOD_METERS]
        switched = self.network.stats.meters_switched
        try:
            await cis.send(
                "DGM-19", DeclaredType.REMOTE_DISCONNECT,
                {"request_id": "drill-flood", "meter_ids": meters, "reason": "drill"}, to=self.headend,
            )  # fmt: skip
            await self.fabric.transport.drain()
            answer = answers.get_nowait() if not answers.empty() else None
        finally:
            await cis.close()
        status = answer.body.get("status") if answer is not None and isinstance(answer.body, dict) else None
        done = self.network.stats.meters_switched - switched
        outcome = f"held: {status}" if status and done == 0 else f"{done} meters disconnected ({status})"
        return DrillResult("disconnect_flood", "DGM-19", f"one CIS asks to disconnect {len(meters)} meters at once",
                           "held: awaiting_approval", outcome)  # fmt: skip


async def run_drill(
    fabric: Fabric,
    ca: CertificateAuthority,
    catalog: Catalog,
    *,
    attacks: tuple[str, ...] | list[str],
    headend: str,
    network: MeterNetwork,
    captured: Captured | None,
    validity: dt.timedelta,
) -> list[DrillResult]:
    """Run ``attacks`` against the running stack; each result says what was expected and what happened."""
    drill = _Drill(fabric, ca, catalog, headend=headend, network=network, captured=captured, validity=validity)
    return [await drill.attack(name) for name in attacks]
