"""An OpenADR 2.0b VTN (the LMS/DRMS side), on openleadr, with gridloom's security in front of it.

openleadr does the protocol (registration, polling, event distribution, opt responses, reports);
gridloom adds what it must not be trusted with (see :mod:`.security`): every request passes an
aiohttp middleware that checks the TLS peer certificate (CA, validity, revocation — per request,
so a revocation cuts a keep-alive connection off at once), that the peer is an enrolled VEN, and
the XML signature and replay protection of the message, before openleadr sees it. Refusals get
the HTTP status on the wire (403, 400) and are counted by reason in :attr:`Vtn.stats`.

A VTN never serves plain HTTP: without TLS files it refuses to start unless ``insecure=True``
(tests of the protocol itself only), where it still requires signed messages from enrolled VENs.

VENs are enrolled out of band (from the CIS's enrolment, DGM-22): the VEN's instance id (its
certificate's CN, which must also be its ``venName``) and its certificate's OpenADR fingerprint,
with the groups and resources it belongs to. The VEN's ``venID`` is its instance id.

openleadr keeps the VTN's signing key and VEN lookup as class attributes, so one process runs at
most one VTN at a time (a second is refused with :class:`OpenAdrConfigError`).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import io
import logging
import time
import uuid
import warnings
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from cryptography import x509

from gridloom.errors import DrInputError, OpenAdrConfigError, OpenAdrRefused
from gridloom.fabric.identity import Clock, utc_now
from gridloom.protocols.openadr.events import DrEvent, to_openleadr
from gridloom.protocols.openadr.security import (
    FORBIDDEN,
    CertificateCheck,
    MessageGuard,
    TlsFiles,
    openadr_fingerprint,
    server_context,
)

log = logging.getLogger(__name__)
PATH_PREFIX = "/OpenADR2/Simple/2.0b"
OptHandler = Callable[[str, str, str], Awaitable[None] | None]  # (ven_id, event_id, "optIn" | "optOut")
ReportHandler = Callable[[str, str, str, list[tuple[dt.datetime, float]]], Awaitable[None] | None]
_running: list[Vtn] = []


def _ignore(ven_id: str, event_id: str, opt_type: str) -> None:
    """openleadr's per-event callback (kept quiet; the VTN records every VEN's response itself)."""


@dataclass
class VenRecord:
    """An enrolled VEN: its identity, where it belongs, and its registration."""

    ven_id: str  # = instance id = certificate CN = venName
    fingerprint: str  # OpenADR fingerprint of its TLS/signing certificate
    groups: frozenset[str] = frozenset()
    resources: frozenset[str] = frozenset()
    registration_id: str | None = None

    def targeted_by(self, event: DrEvent) -> bool:
        t = event.targets
        return self.ven_id in t.ven_ids or bool(self.groups & set(t.groups)) or bool(self.resources & set(t.resources))


@dataclass
class VtnStats:
    requests: int = 0  # HTTP requests that reached the VTN
    handled: int = 0  # passed every check and answered by openleadr
    refused: Counter[str] = field(default_factory=Counter)  # by reason: revoked, unknown, signature, replay, ...
    registrations: int = 0
    events: int = 0  # events created
    distributed: int = 0  # (event, VEN) pairs queued
    responses: int = 0  # oadrCreatedEvent opt responses received
    reports: int = 0  # report values received


class Vtn:
    """The VTN. ``await start()``; ``enrol`` VENs; ``create_event``; read ``opts`` and ``reports``."""

    def __init__(
        self,
        vtn_id: str,
        *,
        tls: TlsFiles | None,
        check: CertificateCheck,
        host: str = "127.0.0.1",
        port: int = 0,
        poll_interval: dt.timedelta = dt.timedelta(seconds=10),
        clock: Clock = utc_now,
        window_s: float = 300.0,
        insecure: bool = False,
        on_opt: OptHandler | None = None,
        on_report: ReportHandler | None = None,
        report_sampling: dt.timedelta = dt.timedelta(seconds=60),
    ) -> None:
        if tls is None and not insecure:
            raise OpenAdrConfigError(
                f"VTN {vtn_id}: OpenADR needs TLS with client certificates; give tls=TlsFiles(...) "
                "(insecure=True is for protocol tests only)"
            )
        self.vtn_id = vtn_id
        self.tls = tls
        self.host = host
        self.port = port
        self.poll_interval = poll_interval
        self.clock = clock
        self.insecure = insecure
        self._check = check
        self._guard = MessageGuard(check, clock=clock, window_s=window_s)
        self._on_opt = on_opt
        self._on_report = on_report
        self.report_sampling = report_sampling
        self.vens: dict[str, VenRecord] = {}
        self._by_fingerprint: dict[str, VenRecord] = {}
        self.events: dict[str, DrEvent] = {}
        self.created_at: dict[str, float] = {}  # event id -> wall time it was queued
        self.targeted: dict[str, tuple[str, ...]] = {}
        self.opts: dict[str, dict[str, str]] = {}  # event id -> ven id -> optIn/optOut
        self.opt_at: dict[tuple[str, str], float] = {}  # (event, ven) -> wall time the response arrived
        self.reports: list[tuple[str, str, str, dt.datetime, float]] = []  # ven, resource, measurement, at, value
        self.stats = VtnStats()
        self._server: Any = None

    # ------------------------------------------------------------------ enrolment
    def enrol(
        self, ven_id: str, *, fingerprint: str, groups: Iterable[str] = (), resources: Iterable[str] = ()
    ) -> VenRecord:
        """Allow a VEN (its instance id and certificate fingerprint) and say which groups and resources it holds."""
        if not ven_id or not fingerprint:
            raise DrInputError("enrolling a VEN needs its instance id and certificate fingerprint")
        old = self.vens.get(ven_id)
        if old is not None:
            self._by_fingerprint.pop(old.fingerprint, None)
        record = VenRecord(ven_id, fingerprint, frozenset(groups), frozenset(resources))
        self.vens[ven_id] = record
        self._by_fingerprint[fingerprint] = record
        return record

    def unenrol(self, ven_id: str) -> None:
        record = self.vens.pop(ven_id, None)
        if record is not None:
            self._by_fingerprint.pop(record.fingerprint, None)

    # ------------------------------------------------------------------ life cycle
    @property
    def url(self) -> str:
        scheme = "http" if self.tls is None else "https"
        return f"{scheme}://{self.host}:{self.port}{PATH_PREFIX}"

    async def start(self) -> str:
        """Serve on ``host:port`` (port 0: any free port); returns the VTN's URL."""
        from openleadr import OpenADRServer

        if _running:
            raise OpenAdrConfigError(f"VTN {_running[0].vtn_id} already runs in this process (openleadr allows one)")
        cert = key = None
        if self.tls is not None:
            cert, key = str(self.tls.cert), str(self.tls.key)
        elif not self.insecure:
            raise OpenAdrConfigError("a VTN without TLS needs insecure=True")
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            # openleadr stores itself under a plain string key in the aiohttp app (aiohttp warns)
            warnings.simplefilter("ignore", web.NotAppKeyWarning)
            server = OpenADRServer(
                vtn_id=self.vtn_id,
                cert=cert,
                key=key,
                http_host=self.host,
                http_port=self.port,
                requested_poll_freq=self.poll_interval,
                ven_lookup=self._ven_lookup,
                verify_message_signatures=False,  # gridloom's middleware verified them (and refuses unsigned ones)
                show_fingerprint=False,
            )
        if self.tls is not None:
            server.ssl_context = server_context(self.tls)
        server.app.middlewares.append(self._middleware)
        server.add_handler("on_create_party_registration", self._register)
        server.add_handler("on_register_report", self._register_report)
        self._server = server
        with contextlib.redirect_stdout(io.StringIO()):
            await server.run()
        self.port = int(server.app_runner.addresses[0][1])
        _running.append(self)
        return self.url

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.stop()
            self._server = None
        if self in _running:
            _running.remove(self)

    async def __aenter__(self) -> Vtn:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ------------------------------------------------------------------ security in front of openleadr
    @web.middleware
    async def _middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        self.stats.requests += 1
        try:
            fingerprint = None
            if self.tls is not None:
                ssl_object = request.transport.get_extra_info("ssl_object") if request.transport else None
                der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
                if not der:
                    raise OpenAdrRefused("no client certificate", code=FORBIDDEN, reason="certificate")
                peer = x509.load_der_x509_certificate(der)
                self._check.check(peer)
                fingerprint = openadr_fingerprint(peer)
                if fingerprint not in self._by_fingerprint:
                    raise OpenAdrRefused(f"certificate {fingerprint} is not enrolled", code=FORBIDDEN, reason="unknown")
            body = await request.read()
            signer = self._guard.verify(body, expected_fingerprint=fingerprint)
            if fingerprint is None and openadr_fingerprint(signer) not in self._by_fingerprint:
                raise OpenAdrRefused("the signing certificate is not enrolled", code=FORBIDDEN, reason="unknown")
        except OpenAdrRefused as exc:
            self.stats.refused[exc.reason] += 1
            log.warning("%s refused a request to %s: %s", self.vtn_id, request.path, exc)
            return web.Response(status=exc.code, text=str(exc))
        response = await handler(request)
        self.stats.handled += 1
        if response.status == 200 and b"oadrCreatedEvent" in body:
            await self._record_opts(body)
        return response

    async def _record_opts(self, body: bytes) -> None:
        """Opt responses, read from the verified message (openleadr calls back only the first VEN per event)."""
        from openleadr.messaging import parse_message

        message_type, payload = parse_message(body)
        if message_type != "oadrCreatedEvent":
            return
        ven_id = str(payload.get("ven_id"))
        responses = payload.get("event_responses") or []
        for response in responses if isinstance(responses, list) else [responses]:
            await self._opt(ven_id, str(response["event_id"]), str(response["opt_type"]))

    async def _ven_lookup(self, ven_id: str) -> dict[str, Any] | None:
        record = self.vens.get(ven_id)
        if record is None or record.registration_id is None:
            return None
        return {
            "ven_id": record.ven_id,
            "ven_name": record.ven_id,
            "fingerprint": record.fingerprint,
            "registration_id": record.registration_id,
        }

    async def _register(self, payload: dict[str, Any]) -> tuple[str, str] | bool:
        name = str(payload.get("ven_name") or "")
        record = self.vens.get(name)
        fingerprint = payload.get("fingerprint")
        if record is None or (self.tls is not None and fingerprint != record.fingerprint):
            self.stats.refused["registration"] += 1
            log.warning("%s refused the registration of %r (fingerprint %s)", self.vtn_id, name, fingerprint)
            return False
        record.registration_id = record.registration_id or f"reg-{uuid.uuid4().hex[:12]}"
        self.stats.registrations += 1
        return record.ven_id, record.registration_id

    async def _register_report(
        self,
        ven_id: str,
        resource_id: str,
        measurement: str,
        unit: str,
        scale: str,
        min_sampling_interval: dt.timedelta,
        max_sampling_interval: dt.timedelta,
    ) -> tuple[Callable[..., Awaitable[None]], dt.timedelta]:
        async def on_data(data: list[tuple[dt.datetime, float]]) -> None:
            for at, value in data:
                self.reports.append((ven_id, resource_id, measurement, at, float(value)))
            self.stats.reports += len(data)
            if self._on_report is not None:
                result = self._on_report(ven_id, resource_id, measurement, list(data))
                if result is not None:
                    await result

        sampling = max(self.report_sampling, min_sampling_interval or dt.timedelta(0))
        return on_data, sampling

    # ------------------------------------------------------------------ events
    def create_event(self, event: DrEvent) -> tuple[str, ...]:
        """Queue ``event`` for every enrolled VEN it targets; returns their ids (they get it at their next poll)."""
        if self._server is None:
            raise OpenAdrConfigError(f"VTN {self.vtn_id} is not started")
        if event.event_id in self.events:
            raise DrInputError(f"event {event.event_id} exists; cancel it or use a new id")
        targeted = tuple(v.ven_id for v in self.vens.values() if v.targeted_by(event))
        self.events[event.event_id] = event
        self.targeted[event.event_id] = targeted
        self.opts[event.event_id] = {}
        self.created_at[event.event_id] = time.time()
        created = self.clock()
        for ven_id in targeted:
            self._server.add_raw_event(ven_id=ven_id, event=to_openleadr(event, created_at=created), callback=_ignore)
        self.stats.events += 1
        self.stats.distributed += len(targeted)
        return targeted

    def cancel_event(self, event_id: str) -> None:
        for ven_id in self.targeted.get(event_id, ()):
            self._server.cancel_event(ven_id, event_id)

    async def _opt(self, ven_id: str, event_id: str, opt_type: str) -> None:
        self.opts.setdefault(event_id, {})[ven_id] = str(opt_type)
        self.opt_at[(event_id, ven_id)] = time.time()
        self.stats.responses += 1
        if self._on_opt is not None:
            result = self._on_opt(ven_id, event_id, str(opt_type))
            if result is not None:
                await result

    def opted_out(self, event_id: str) -> set[str]:
        return {v for v, opt in self.opts.get(event_id, {}).items() if opt == "optOut"}

    async def wait_for_responses(self, event_id: str, *, share: float = 1.0, timeout_s: float = 30.0) -> int:
        """Wait until ``share`` of the targeted VENs answered the event (or the timeout); returns how many did."""
        want = share * len(self.targeted.get(event_id, ()))
        deadline = time.monotonic() + timeout_s
        while len(self.opts.get(event_id, {})) < want and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        return len(self.opts.get(event_id, {}))
