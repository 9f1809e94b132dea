"""The OpenADR 2.0b leg of a run's demand response: the LMS's VTN and its customers' EMS VENs, over TLS.

The VTN (the LMS's, instance ``lms-1``) serves on ``127.0.0.1`` (any free port) with a TLS certificate
from the run's CA (``OUT/pki``); each customer in an OpenADR program (``cpp``, ``reliability``) has a
customer EMS VEN (role ``customer_ems``, instance ``ems-<meter>``) with its own TLS certificate from
that CA. Their files are in ``OUT/openadr``. The VTN knows the VENs from the CIS's enrolment (DGM-22:
each row's VEN and its certificate's fingerprint).

OpenADR runs in wall time (TLS, signatures, polling), the scenario in simulated time: the VENs of an
event's program start at the event's notice (simulated), the LMS creates the event, and the runner
waits in wall time (polls every :data:`POLL`, at most :data:`ANSWER_TIMEOUT_S`) until every targeted
VEN has answered; then the VENs stop, so they do not load the rest of the run. Each EMS decides with
its customer's opt-out rate (drawn with the scenario's seed). Registration and polling cost a few tens
of milliseconds of CPU per VEN in the runner's process, so scenarios keep to a few hundred VENs
(:data:`MAX_VENS`).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from cryptography import x509

from gridloom.errors import ScenarioError
from gridloom.fabric import CertificateAuthority
from gridloom.protocols.openadr import CertificateCheck, ReceivedEvent, TlsFiles, Ven, Vtn, openadr_fingerprint

log = logging.getLogger(__name__)
OPENADR_PROGRAMS = ("cpp", "reliability")
POLL = dt.timedelta(seconds=1)
ANSWER_TIMEOUT_S = 30.0
REGISTER_AT_ONCE = 50  # VENs registering concurrently
MAX_VENS = 300
VTN_ID = "LMS-1"
VTN_INSTANCE = "lms-1"


def ven_id(meter_id: str) -> str:
    """The customer EMS VEN's instance id (its certificate's CN and venName)."""
    return f"ems-{meter_id}".lower()


@dataclass
class VenOutcome:
    """What the targeted VENs did with one event (latencies in wall seconds from the event's creation)."""

    vens_started: int = 0
    vens_registered: int = 0
    targeted: int = 0
    received: int = 0
    opted_in: int = 0
    opted_out: int = 0
    unanswered: int = 0
    received_s: list[float] = field(default_factory=list)
    replied_s: list[float] = field(default_factory=list)
    vtn_refused: int = 0
    wall_s: float = 0.0
    decisions: dict[str, str] = field(default_factory=dict)  # VEN -> optIn | optOut, as its EMS decided
    signal: ReceivedEvent | None = None  # the event as a VEN received it (the EMSs act on it)

    def as_dict(self) -> dict[str, Any]:
        def pct(values: list[float], q: float) -> float | None:
            return round(float(np.percentile(values, q)), 3) if values else None

        return {
            "vens_started": self.vens_started,
            "vens_registered": self.vens_registered,
            "vens_targeted": self.targeted,
            "vens_received": self.received,
            "vens_opted_in": self.opted_in,
            "vens_opted_out": self.opted_out,
            "vens_unanswered": self.unanswered,
            "received_p50_s": pct(self.received_s, 50),
            "received_p95_s": pct(self.received_s, 95),
            "replied_p50_s": pct(self.replied_s, 50),
            "replied_p95_s": pct(self.replied_s, 95),
            "vtn_refused": self.vtn_refused,
            "wall_s": round(self.wall_s, 3),
        }


class OpenAdrLeg:
    """The VTN and the VENs' certificates of one run; :meth:`event` runs one event's VENs."""

    def __init__(self, folder: Path, pki: Path) -> None:
        self.folder = folder
        # the run's CA, loaded anew: TLS certificates are judged by the wall clock, the fabric's by simulated time
        self.ca = CertificateAuthority.load(pki)
        self.check = CertificateCheck.of(self.ca)
        self.vtn: Vtn | None = None
        self._vtn_fingerprint = ""
        self._files: dict[str, TlsFiles] = {}
        self.fingerprints: dict[str, str] = {}

    def issue(self, ven_ids: Sequence[str]) -> list[str]:
        """A TLS certificate for each customer EMS; returns their OpenADR fingerprints (for the CIS's enrolment)."""
        if len(ven_ids) > MAX_VENS:
            raise ScenarioError(
                f"{len(ven_ids):,} customers in OpenADR programs need as many VENs in the runner's process (at most "
                f"{MAX_VENS}): lower programs.demand_response_share or programs.reliability_share, or grid.customers"
            )
        out = []
        for ven in ven_ids:
            tls = self.ca.issue_tls("customer_ems", ven, save=False)
            self._files[ven] = TlsFiles.write(self.ca, tls, self.folder / ven)
            self.fingerprints[ven] = openadr_fingerprint(tls.certificate)
            out.append(self.fingerprints[ven])
        return out

    async def start(self) -> Vtn:
        tls = TlsFiles.write(
            self.ca, self.ca.issue_tls("lms", VTN_INSTANCE, hosts=["127.0.0.1"], save=False), self.folder / VTN_INSTANCE
        )
        self._vtn_fingerprint = openadr_fingerprint(x509.load_pem_x509_certificate(tls.cert.read_bytes()))
        vtn = Vtn(VTN_ID, tls=tls, check=self.check, poll_interval=POLL)
        await vtn.start()
        self.vtn = vtn
        return vtn

    async def stop(self) -> None:
        if self.vtn is not None:
            vtn, self.vtn = self.vtn, None
            await vtn.stop()

    async def event(
        self,
        ven_ids: Sequence[str],
        opt_in: Mapping[str, bool],
        create: Callable[[], Awaitable[list[str]]],
    ) -> dict[str, VenOutcome]:
        """Start ``ven_ids``, ``create`` the event(s) (returns their ids), wait for the answers, stop the VENs.

        VENs an event targets that were not among ``ven_ids`` (the LMS may reach beyond the program the DMS's
        urgency pointed to) start once it exists: their latencies include their registration. ``opt_in``: each
        VEN's EMS's decision. Returns per event id what the VENs did.
        """
        vtn = self.vtn
        if vtn is None:
            raise ScenarioError("the LMS's VTN is not started")
        began = time.perf_counter()
        refused_before = sum(vtn.stats.refused.values())
        vens: list[Ven] = []
        registered = 0
        event_ids: list[str] = []

        async def start(names: Sequence[str]) -> int:
            new = [
                Ven(v, vtn.url, tls=self._files[v], check=self.check, vtn_fingerprint=self._vtn_fingerprint,
                    decide=_decide(opt_in.get(v, True)))
                for v in names
            ]  # fmt: skip
            vens.extend(new)
            ok = 0
            for lo in range(0, len(new), REGISTER_AT_ONCE):
                ok += sum(await asyncio.gather(*(v.start() for v in new[lo : lo + REGISTER_AT_ONCE])))
            return ok

        try:
            registered += await start(ven_ids)
            event_ids = await create()
            online = {v.instance for v in vens}
            late = sorted({v for e in event_ids for v in vtn.targeted.get(e, ()) if v not in online})
            registered += await start([v for v in late if v in self._files])
            for event_id in event_ids:
                await vtn.wait_for_responses(event_id, share=1.0, timeout_s=ANSWER_TIMEOUT_S)
        finally:
            for ven in vens:
                await ven.stop()
        outcomes = {}
        for event_id in event_ids:
            targeted = set(vtn.targeted.get(event_id, ()))
            created = vtn.created_at.get(event_id, began)
            opts = vtn.opts.get(event_id, {})
            got = [(v, e) for v in vens if v.instance in targeted for e in v.events if e.event_id == event_id]
            outcome = VenOutcome(
                vens_started=len(vens),
                vens_registered=registered,
                targeted=len(targeted),
                received=len({v.instance for v, _ in got}),
                opted_in=sum(1 for o in opts.values() if o == "optIn"),
                opted_out=sum(1 for o in opts.values() if o == "optOut"),
                unanswered=len(targeted - set(opts)),
                received_s=[e.received_at - created for _, e in got],
                replied_s=[vtn.opt_at[(event_id, v)] - created for v in opts if (event_id, v) in vtn.opt_at],
                vtn_refused=sum(vtn.stats.refused.values()) - refused_before,
                decisions={v.instance: v.decisions[event_id] for v, _ in got if event_id in v.decisions},
                signal=got[0][1] if got else None,
            )
            outcome.wall_s = time.perf_counter() - began
            outcomes[event_id] = outcome
        return outcomes


def _decide(opt_in: bool) -> Callable[[ReceivedEvent], bool]:
    def decide(event: ReceivedEvent) -> bool:
        return opt_in

    return decide
