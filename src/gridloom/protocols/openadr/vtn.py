"""An OpenADR 2.0b VTN (the LMS/DRMS side), on openleadr, with gridloom's security in front of it.

openleadr does the protocol (registration, polling, event distribution, opt responses, reports);
gridloom adds what it must not be trusted with (see :mod:`.security`): every request passes an
aiohttp middleware that checks the TLS peer certificate (CA, validity, revocation — per request,
so a revocation cuts a keep-alive connection off at once), that the peer is an enrolled VEN, and
the XML signature and replay protection of the message, before openleadr sees it. Refusals get
the HTTP status on the wire (403, 400) and are counted by reason in :attr:`Vtn.stats`.

Beyond openleadr (whose report, poll and opt services stop short): the VTN asks a VEN for its
``TELEMETRY_STATUS`` or a period of ``HISTORY_USAGE`` when the LMS wants them
(:meth:`Vtn.request_status`, :meth:`Vtn.request_history`: an ``oadrCreateReport`` queued for the
VEN's next poll; :meth:`Vtn.wait_for_report` awaits the answer), keeps what comes back with the
VEN's id, and ignores (counting them in ``stats.reports_ignored``) reports nobody asked that VEN
for. It serves ``EiOpt`` (see :mod:`.opts`): opts on single events update :attr:`Vtn.opts`, and
availability schedules keep a VEN out of events that fall in its unavailable windows
(:meth:`Vtn.targeting`). Every message's ``venID`` must be the VEN whose certificate sent it.

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
import contextvars
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

from gridloom.errors import DrInputError, OpenAdrConfigError, OpenAdrError, OpenAdrRefused
from gridloom.fabric.identity import Clock, utc_now
from gridloom.protocols.openadr.events import DrEvent, to_openleadr
from gridloom.protocols.openadr.opts import EventTargeting, Opt, OptType, opt_from_payload
from gridloom.protocols.openadr.reports import (
    GatewayStatus,
    OfferedReport,
    ReceivedReport,
    ReportName,
    ReportRequest,
    new_id,
)
from gridloom.protocols.openadr.security import (
    BAD_REQUEST,
    FORBIDDEN,
    OADR_NS,
    CertificateCheck,
    MessageGuard,
    TlsFiles,
    message_factory,
    openadr_fingerprint,
    server_context,
)

log = logging.getLogger(__name__)
PATH_PREFIX = "/OpenADR2/Simple/2.0b"
OptHandler = Callable[[str, str, str], Awaitable[None] | None]  # (ven_id, event_id, "optIn" | "optOut")
ReportHandler = Callable[[str, str, str, list[tuple[dt.datetime, float]]], Awaitable[None] | None]
_running: list[Vtn] = []
EI_NS = "http://docs.oasis-open.org/ns/energyinterop/201110"
_peer: contextvars.ContextVar[VenRecord | None] = contextvars.ContextVar("openadr_peer", default=None)
OK, INVALID_ID, INVALID_DATA, NOT_REGISTERED = 200, 452, 454, 463


def _claimed_ven_ids(body: bytes) -> list[str]:
    """The venIDs a message speaks for (not those naming targets or report data sources)."""
    from lxml import etree

    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
    tree = etree.fromstring(body, parser)
    skip = {f"{{{EI_NS}}}eiTarget", f"{{{EI_NS}}}reportDataSource", f"{{{EI_NS}}}reportSubject"}
    root = tree.find(f"{{{OADR_NS}}}oadrSignedObject")
    if root is None:
        return []
    out = []
    for element in root.iter(f"{{{EI_NS}}}venID"):
        parent = element.getparent()
        if parent is None or parent.tag not in skip:
            out.append((element.text or "").strip())
    return out


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
    reports_ignored: Counter[str] = field(default_factory=Counter)  # by reason: not-requested, foreign, ...
    report_requests: int = 0  # oadrCreateReport queued by request_status / request_history
    opts: int = 0  # oadrCreateOpt accepted
    opt_cancels: int = 0  # oadrCancelOpt accepted
    opts_refused: Counter[str] = field(default_factory=Counter)  # oadrCreateOpt / oadrCancelOpt refused, by reason
    left_out: int = 0  # (event, VEN) pairs not sent because of the VEN's unavailability schedule


class Vtn:
    """The VTN. ``await start()``; ``enrol`` VENs; ``create_event``; read ``opts`` and ``reports``.

    Reports on demand: ``request_status`` / ``request_history`` then ``wait_for_report`` (or
    ``fetch_status`` / ``fetch_history``); results in ``received_reports`` and ``statuses``. Opt
    schedules: ``opt_schedules``, ``availability(ven_id)``; ``left_out`` per event.
    """

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
        self.offered: dict[str, dict[str, OfferedReport]] = {}  # ven id -> report name -> what it offered
        self.report_requests: dict[str, ReportRequest] = {}  # reportRequestID -> request
        self.received_reports: dict[str, ReceivedReport] = {}  # reportRequestID -> what came back
        self.statuses: dict[str, ReceivedReport] = {}  # ven id -> its latest TELEMETRY_STATUS
        self.opt_schedules: dict[str, Opt] = {}  # optID -> opt (schedules and event opts) in force
        self.left_out: dict[str, dict[str, str]] = {}  # event id -> ven id -> opt id that kept it out
        self._event_answer: dict[tuple[str, str], str] = {}  # (event, ven) -> its oadrCreatedEvent opt
        self._outbox: dict[str, list[tuple[str, dict[str, Any]]]] = {}  # ven id -> messages for its next poll
        self._waiters: dict[str, asyncio.Event] = {}
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
        from openleadr.service import VTNService

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
            # openleadr's signer uses inclusive c14n and a ReplayProtect aimed at no element: sign per the profile
            VTNService._create_message = message_factory(self.tls)
        server.app.middlewares.append(self._middleware)
        server.app.router.add_post(f"{PATH_PREFIX}/EiOpt", self._ei_opt)  # openleadr serves no EiOpt
        server.add_handler("on_create_party_registration", self._register)
        server.add_handler("on_register_report", self._register_report)
        self._wrap_services(server)
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
            record = self._by_fingerprint.get(fingerprint or openadr_fingerprint(signer))
            if record is None:
                raise OpenAdrRefused("the signing certificate is not enrolled", code=FORBIDDEN, reason="unknown")
            for claimed in _claimed_ven_ids(body):
                if claimed != record.ven_id:
                    raise OpenAdrRefused(
                        f"venID {claimed!r} in a message from {record.ven_id}'s certificate",
                        code=FORBIDDEN,
                        reason="ven-id",
                    )
        except OpenAdrRefused as exc:
            self.stats.refused[exc.reason] += 1
            log.warning("%s refused a request to %s: %s", self.vtn_id, request.path, exc)
            return web.Response(status=exc.code, text=str(exc))
        token = _peer.set(record)
        try:
            response = await handler(request)
        finally:
            _peer.reset(token)
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
    ) -> tuple[Callable[..., Awaitable[None]], dt.timedelta] | None:
        """Subscribe to every offered TELEMETRY_USAGE data point (status and history are asked for on demand)."""
        if measurement == "Status":  # openleadr's name for a TELEMETRY_STATUS data point
            return None

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
    def targeting(self, event: DrEvent) -> EventTargeting:
        """Which enrolled VENs ``event`` targets, less those whose opt-out schedule covers part of it."""
        sent: list[str] = []
        left_out: dict[str, str] = {}
        for record in self.vens.values():
            if not record.targeted_by(event):
                continue
            blocking = self.unavailable(record.ven_id, event.start_at, event.end_at)
            if blocking is None:
                sent.append(record.ven_id)
            else:
                left_out[record.ven_id] = blocking.opt_id
        return EventTargeting(tuple(sent), left_out)

    def create_event(self, event: DrEvent) -> tuple[str, ...]:
        """Queue ``event`` for every enrolled VEN it targets; returns their ids (they get it at their next poll).

        A targeted VEN whose ``optOut`` availability schedule overlaps the event is left out;
        ``left_out[event_id]`` names them with the opt that excluded them.
        """
        if self._server is None:
            raise OpenAdrConfigError(f"VTN {self.vtn_id} is not started")
        if event.event_id in self.events:
            raise DrInputError(f"event {event.event_id} exists; cancel it or use a new id")
        targeting = self.targeting(event)
        targeted = targeting.sent
        self.events[event.event_id] = event
        self.targeted[event.event_id] = targeted
        self.left_out[event.event_id] = dict(targeting.left_out)
        self.opts[event.event_id] = {}
        self.created_at[event.event_id] = time.time()
        created = self.clock()
        for ven_id in targeted:
            self._server.add_raw_event(ven_id=ven_id, event=to_openleadr(event, created_at=created), callback=_ignore)
        if targeting.left_out:
            log.info("%s: event %s not sent to %s (unavailable)", self.vtn_id, event.event_id, dict(targeting.left_out))
        self.stats.events += 1
        self.stats.distributed += len(targeted)
        self.stats.left_out += len(targeting.left_out)
        return targeted

    def cancel_event(self, event_id: str) -> None:
        for ven_id in self.targeted.get(event_id, ()):
            self._server.cancel_event(ven_id, event_id)

    async def _opt(self, ven_id: str, event_id: str, opt_type: str, *, created_event: bool = True) -> None:
        self.opts.setdefault(event_id, {})[ven_id] = str(opt_type)
        if created_event:
            self._event_answer[(event_id, ven_id)] = str(opt_type)
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

    # ------------------------------------------------------------------ opts (EiOpt)
    def availability(self, ven_id: str) -> list[Opt]:
        """The VEN's availability schedules in force (``optOut``: unavailable windows; ``optIn``: available)."""
        return [o for o in self.opt_schedules.values() if o.ven_id == ven_id and o.is_schedule]

    def unavailable(self, ven_id: str, start: dt.datetime, end: dt.datetime) -> Opt | None:
        """The ``optOut`` schedule of the VEN that overlaps [start, end), if any."""
        return next(
            (o for o in self.availability(ven_id) if o.opt_type is OptType.OPT_OUT and o.overlaps(start, end)), None
        )

    async def _ei_opt(self, request: web.Request) -> web.Response:
        """``oadrCreateOpt`` / ``oadrCancelOpt`` (the middleware has checked certificate, signature and venID)."""
        from openleadr.messaging import parse_message
        from openleadr.service import VTNService

        if not request.headers.get("content-type", "").lower().startswith("application/xml"):
            return web.Response(status=BAD_REQUEST, text="the Content-Type must be application/xml")
        record = _peer.get()
        message_type, payload = parse_message(await request.read())
        request_id = payload.get("request_id")
        opt_id = str(payload.get("opt_id") or "")
        if record is None or record.registration_id is None:
            code, text = NOT_REGISTERED, "register first"
        elif message_type == "oadrCreateOpt":
            code, text = await self._create_opt(record, payload)
        elif message_type == "oadrCancelOpt":
            code, text = await self._cancel_opt(record, opt_id)
        else:
            return web.Response(
                status=BAD_REQUEST, text=f"EiOpt takes oadrCreateOpt or oadrCancelOpt, not {message_type}"
            )
        if code != OK:
            reason = "not-registered" if code == NOT_REGISTERED else ("invalid-id" if code == INVALID_ID else "invalid")
            self.stats.opts_refused[reason] += 1
            log.warning("%s: %s %s from %s refused: %s", self.vtn_id, message_type, opt_id, payload.get("ven_id"), text)
        reply = "oadrCreatedOpt" if message_type == "oadrCreateOpt" else "oadrCanceledOpt"
        response = {"response_code": code, "response_description": text, "request_id": request_id}
        # signed like every other answer of this VTN (openleadr keeps its signer on the class)
        message = VTNService._create_message(reply, response=response, opt_id=opt_id)
        return web.Response(text=message, content_type="application/xml")

    async def _create_opt(self, record: VenRecord, payload: dict[str, Any]) -> tuple[int, str]:
        try:
            opt = opt_from_payload(payload)
        except DrInputError as exc:
            return INVALID_DATA, str(exc)
        existing = self.opt_schedules.get(opt.opt_id)
        if existing is not None and existing.ven_id != record.ven_id:
            return INVALID_ID, f"optID {opt.opt_id} belongs to another VEN"
        if opt.event_id is not None:
            if opt.event_id not in self.events or record.ven_id not in self.targeted.get(opt.event_id, ()):
                return INVALID_ID, f"event {opt.event_id} was not sent to {record.ven_id}"
            await self._opt(record.ven_id, opt.event_id, opt.opt_type.value, created_event=False)
        self.opt_schedules[opt.opt_id] = opt
        self.stats.opts += 1
        return OK, "OK"

    async def _cancel_opt(self, record: VenRecord, opt_id: str) -> tuple[int, str]:
        opt = self.opt_schedules.get(opt_id)
        if opt is None or opt.ven_id != record.ven_id:
            return INVALID_ID, f"no opt {opt_id} of {record.ven_id}"
        del self.opt_schedules[opt_id]
        if opt.event_id is not None:  # back to the VEN's answer to the event (or none)
            answer = self._event_answer.get((opt.event_id, record.ven_id))
            if answer is None:
                self.opts.get(opt.event_id, {}).pop(record.ven_id, None)
            else:
                self.opts.setdefault(opt.event_id, {})[record.ven_id] = answer
        self.stats.opt_cancels += 1
        return OK, "OK"

    # ------------------------------------------------------------------ reports on demand
    def _wrap_services(self, server: Any) -> None:  # noqa: ANN401 - openleadr is untyped
        """Put gridloom's handlers in front of openleadr's poll and report services (see the module docstring)."""
        poll, reports = server.services["poll_service"], server.services["report_service"]
        original_poll = poll.handlers["oadrPoll"]
        original_register = reports.handlers["oadrRegisterReport"]
        original_update = reports.handlers["oadrUpdateReport"]

        async def on_poll(payload: dict[str, Any]) -> tuple[str, dict[str, Any]]:
            answer: tuple[str, dict[str, Any]] = await original_poll(payload)
            queued = self._outbox.get(str(payload.get("ven_id")))
            if answer[0] == "oadrResponse" and queued:
                return queued.pop(0)
            return answer

        async def on_register_report(payload: dict[str, Any]) -> Any:  # noqa: ANN401
            self._record_offers(str(payload.get("ven_id")), payload.get("reports") or [])
            return await original_register(payload)

        async def on_update_report(payload: dict[str, Any]) -> tuple[str, dict[str, Any]]:
            theirs = self._take_reports(str(payload.get("ven_id")), payload.get("reports") or [], reports)
            if theirs:
                await original_update({**payload, "reports": theirs})
            return "oadrUpdatedReport", {}

        async def on_created_report(payload: dict[str, Any]) -> None:
            for pending in payload.get("pending_reports") or []:
                request = self.report_requests.get(str(pending.get("report_request_id")))
                if request is not None and request.ven_id == payload.get("ven_id"):
                    request.created = True

        poll.handlers["oadrPoll"] = on_poll
        reports.handlers["oadrRegisterReport"] = on_register_report
        reports.handlers["oadrUpdateReport"] = on_update_report
        reports.handlers["oadrCreatedReport"] = on_created_report

    def _record_offers(self, ven_id: str, reports: list[dict[str, Any]]) -> None:
        offers: dict[str, OfferedReport] = {}
        for report in reports:
            name = str(report.get("report_name", "")).removeprefix("METADATA_")
            descriptions = report.get("report_descriptions") or []
            rates = [d["sampling_rate"] for d in descriptions if d.get("sampling_rate")]
            offers[name] = OfferedReport(
                name=name,
                specifier_id=str(report["report_specifier_id"]),
                resources={
                    str(d["r_id"]): str((d.get("report_data_source") or {}).get("resource_id") or d["r_id"])
                    for d in descriptions
                },
                reading_types={str(d["r_id"]): str(d.get("reading_type", "x-notApplicable")) for d in descriptions},
                min_period=rates[0].get("min_period") if rates else None,
                max_period=rates[0].get("max_period") if rates else None,
            )
        self.offered[ven_id] = offers

    def _take_reports(self, ven_id: str, reports: list[dict[str, Any]], service: Any) -> list[dict[str, Any]]:  # noqa: ANN401
        """Keep the reports answering gridloom's requests; return those answering openleadr's subscriptions."""
        subscribed = {r.report_request_id for r in service.requested_reports.get(ven_id, [])}
        theirs = []
        for report in reports:
            request_id = str(report.get("report_request_id"))
            request = self.report_requests.get(request_id)
            if request is None:
                if request_id in subscribed:
                    theirs.append(report)
                else:
                    self.stats.reports_ignored["not-requested"] += 1
                    log.warning("%s: ignored a report from %s for request %s", self.vtn_id, ven_id, request_id)
                continue
            if request.ven_id != ven_id:
                self.stats.reports_ignored["foreign"] += 1
                continue
            self._receive(request, report)
        return theirs

    def _receive(self, request: ReportRequest, report: dict[str, Any]) -> None:
        offered = self.offered.get(request.ven_id, {}).get(request.name)
        resources = offered.resources if offered is not None else {}
        received = self.received_reports.get(request.request_id)
        if received is None:
            received = ReceivedReport(request.request_id, request.ven_id, request.name, received_at=self.clock())
            self.received_reports[request.request_id] = received
        received.updates += 1
        for interval in report.get("intervals") or []:
            payload = interval.get("report_payload") or {}
            r_id = str(payload.get("r_id"))
            if r_id not in request.r_ids:
                self.stats.reports_ignored["unknown-rid"] += 1
                continue
            resource = resources.get(r_id, r_id)
            status = payload.get("payload_resource_status")
            if status is not None:
                try:
                    received.statuses[resource] = GatewayStatus.from_payload(status)
                except (KeyError, TypeError, ValueError):
                    self.stats.reports_ignored["malformed"] += 1
                continue
            value = payload.get("value")
            if value is None:
                self.stats.reports_ignored["malformed"] += 1
                continue
            received.values.setdefault(resource, []).append((interval["dtstart"], float(value)))
            received.durations.setdefault(resource, []).append(interval.get("duration"))
            self.stats.reports += 1
        if received.statuses:
            self.statuses[request.ven_id] = received
        waiter = self._waiters.get(request.request_id)
        if waiter is not None:
            waiter.set()

    def _offer(self, ven_id: str, name: ReportName) -> OfferedReport:
        if self._server is None:
            raise OpenAdrConfigError(f"VTN {self.vtn_id} is not started")
        record = self.vens.get(ven_id)
        if record is None or record.registration_id is None:
            raise DrInputError(f"VEN {ven_id} is not enrolled and registered")
        offered = self.offered.get(ven_id, {}).get(name)
        if offered is None:
            raise DrInputError(f"VEN {ven_id} does not offer a {name} report")
        return offered

    def _queue_request(
        self,
        offered: OfferedReport,
        request: ReportRequest,
        *,
        report_back: dt.timedelta,
        interval: tuple[dt.datetime, dt.timedelta] | None = None,
    ) -> str:
        specifier: dict[str, Any] = {
            "report_specifier_id": offered.specifier_id,
            "granularity": request.granularity,
            "report_back_duration": report_back,
            "specifier_payloads": [
                {"r_id": r, "reading_type": offered.reading_types.get(r, "x-notApplicable")} for r in request.r_ids
            ],
        }
        if interval is not None:
            specifier["report_interval"] = {"dtstart": interval[0], "duration": interval[1]}
        message = {
            "request_id": new_id("req"),
            "ven_id": request.ven_id,
            "report_requests": [{"report_request_id": request.request_id, "report_specifier": specifier}],
        }
        request.queued_at = self.clock()
        self.report_requests[request.request_id] = request
        self._waiters[request.request_id] = asyncio.Event()
        self._outbox.setdefault(request.ven_id, []).append(("oadrCreateReport", message))
        self.stats.report_requests += 1
        return request.request_id

    def request_status(self, ven_id: str, *, every: dt.timedelta | None = None) -> str:
        """Ask the VEN for its ``TELEMETRY_STATUS`` (at its next poll); returns the reportRequestID.

        Once, or with ``every`` again at that period (``reportBackDuration``); the latest is in
        ``statuses[ven_id]``, and ``received_reports[id].updates`` counts the reports.
        """
        offered = self._offer(ven_id, ReportName.TELEMETRY_STATUS)
        step = every or dt.timedelta(0)
        request = ReportRequest(
            new_id("status"),
            ven_id,
            ReportName.TELEMETRY_STATUS,
            offered.specifier_id,
            tuple(offered.resources),
            granularity=step,
        )
        return self._queue_request(offered, request, report_back=step)

    def request_history(
        self, ven_id: str, start: dt.datetime, end: dt.datetime, *, granularity: dt.timedelta | None = None
    ) -> str:
        """Ask the VEN for its ``HISTORY_USAGE`` intervals in [start, end); returns the reportRequestID.

        ``granularity`` defaults to the shortest interval the VEN offered.
        """
        if start.tzinfo is None or end.tzinfo is None:
            raise DrInputError("history period: start and end must be timezone-aware (UTC)")
        if end <= start:
            raise DrInputError(f"history period: end {end.isoformat()} is not after start {start.isoformat()}")
        offered = self._offer(ven_id, ReportName.HISTORY_USAGE)
        step = granularity or offered.min_period or dt.timedelta(minutes=15)
        request = ReportRequest(
            new_id("history"),
            ven_id,
            ReportName.HISTORY_USAGE,
            offered.specifier_id,
            tuple(offered.resources),
            start_at=start,
            end_at=end,
            granularity=step,
        )
        return self._queue_request(offered, request, report_back=dt.timedelta(0), interval=(start, end - start))

    async def wait_for_report(self, request_id: str, *, timeout_s: float = 30.0) -> ReceivedReport:
        """The answer to a request, once it came (raises :class:`OpenAdrError` after ``timeout_s``)."""
        waiter = self._waiters.get(request_id)
        if waiter is None:
            raise DrInputError(f"no report request {request_id}")
        try:
            await asyncio.wait_for(waiter.wait(), timeout_s)
        except TimeoutError:
            request = self.report_requests[request_id]
            raise OpenAdrError(
                f"VEN {request.ven_id} did not answer report request {request_id} ({request.name}) "
                f"within {timeout_s:g} s"
            ) from None
        return self.received_reports[request_id]

    async def fetch_status(self, ven_id: str, *, timeout_s: float = 30.0) -> ReceivedReport:
        """``request_status`` and wait for it."""
        return await self.wait_for_report(self.request_status(ven_id), timeout_s=timeout_s)

    async def fetch_history(
        self, ven_id: str, start: dt.datetime, end: dt.datetime, *, timeout_s: float = 30.0
    ) -> ReceivedReport:
        """``request_history`` and wait for it."""
        return await self.wait_for_report(self.request_history(ven_id, start, end), timeout_s=timeout_s)
