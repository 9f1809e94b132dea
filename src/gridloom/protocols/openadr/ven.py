"""An OpenADR 2.0b VEN (a customer gateway or customer EMS), on openleadr's client, with gridloom's checks.

The VEN registers with the VTN, polls it, receives events, answers each with ``optIn`` or
``optOut`` (the customer's EMS decides, :data:`Decide`), and offers up to three reports (see
:mod:`.reports`): ``TELEMETRY_USAGE`` (its site's real power, ``telemetry=``), ``TELEMETRY_STATUS``
(``status=``, a :class:`~.reports.GatewayStatus`) and ``HISTORY_USAGE`` (``history=``, its interval
meter data for a period the VTN names). It can change its mind about an event, or tell the VTN
when it is unavailable, with ``oadrCreateOpt`` (:meth:`Ven.create_opt`, :meth:`Ven.cancel_opt`).

Time: OpenADR 2.0b has no time-sync message. Each signed VTN message carries the VTN's clock in
its ``ReplayProtect`` timestamp; the VEN compares it with the midpoint of its own request and
keeps the median of recent samples as :attr:`Ven.clock_offset_s` (VTN clock minus ours, seconds).
A VEN whose clock is off by more than the replay window refuses the VTN's messages as stale, so
the estimate serves within that window (the gateway corrects a drift before it grows past it).

openleadr's client trusts whatever its fingerprint check and module-global nonce cache let
through; here every response from the VTN passes gridloom's :class:`~.security.MessageGuard`
(CA-issued, unrevoked signer whose fingerprint is the VTN's, valid signature over the message
read, fresh and not replayed) before it is parsed, and TLS uses gridloom's context (the VTN's
certificate must chain to our CA, match the host and not be on the CRL). A refused response is
dropped, counted in ``stats`` and logged, as if it never came.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import io
import logging
import statistics
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

import aiohttp

from gridloom.errors import DrInputError, OpenAdrConfigError, OpenAdrError, OpenAdrRefused
from gridloom.fabric.identity import Clock, utc_now
from gridloom.protocols.openadr.events import ReceivedEvent, from_openleadr
from gridloom.protocols.openadr.opts import Opt, OptReason, OptType, Window
from gridloom.protocols.openadr.reports import (
    GatewayStatus,
    ReportName,
    create_signed,
    new_id,
    status_placeholder,
    status_replacements,
)
from gridloom.protocols.openadr.security import (
    DSP_NS,
    CertificateCheck,
    MessageGuard,
    TlsFiles,
    client_context,
    message_factory,
)

log = logging.getLogger(__name__)
# openleadr polls from an APScheduler job: "skipped, already running" when a poll outlasts the interval, and the
# cancellation of a poll in flight when a VEN stops, are not news for the user (VenStats counts failed requests).
logging.getLogger("apscheduler").setLevel(logging.CRITICAL)
Decide = Callable[[ReceivedEvent], bool | Awaitable[bool]]  # True: opt in
StatusSource = Callable[[], GatewayStatus]
HistorySource = Callable[[dt.datetime, dt.datetime], Sequence[tuple[dt.datetime, float]]]  # [start, end) -> values


@dataclass
class VenStats:
    received: int = 0
    opted_in: int = 0
    opted_out: int = 0
    refused: Counter[str] = field(default_factory=Counter)  # VTN responses refused, by reason
    errors: int = 0  # requests that failed (HTTP status, connection)
    reports_sent: int = 0  # TELEMETRY_STATUS and HISTORY_USAGE reports sent on request
    opts_sent: int = 0  # oadrCreateOpt / oadrCancelOpt the VTN accepted


def _client_class() -> type[Any]:
    from openleadr import OpenADRClient
    from openleadr.messaging import parse_message

    class GuardedClient(OpenADRClient):  # type: ignore[misc]
        """openleadr's client, with gridloom's TLS context and message checks."""

        gl_guard: MessageGuard
        gl_tls: TlsFiles | None
        gl_vtn_fingerprint: str
        gl_stats: VenStats
        gl_offsets: deque[float]
        gl_own_reports: dict[str, ReportName]  # report specifier id -> the reports gridloom answers itself
        gl_answer: Callable[[dict[str, Any], list[dict[str, Any]]], Awaitable[None]]
        client_session: aiohttp.ClientSession | None

        async def create_report(self, response_payload: dict[str, Any]) -> None:
            """oadrCreateReport: openleadr handles TELEMETRY_USAGE, gridloom TELEMETRY_STATUS and HISTORY_USAGE."""
            requests = response_payload.get("report_requests") or []
            mine = [r for r in requests if r["report_specifier"]["report_specifier_id"] in self.gl_own_reports]
            rest = [r for r in requests if r not in mine]
            if rest:
                await super().create_report({**response_payload, "report_requests": rest})
            if mine:
                await self.gl_answer(response_payload, mine)

        async def _ensure_client_session(self) -> None:
            if not self.client_session:
                connector = aiohttp.TCPConnector(ssl=client_context(self.gl_tls)) if self.gl_tls else None
                self.client_session = aiohttp.ClientSession(
                    connector=connector,
                    headers={"content-type": "application/xml"},
                    timeout=aiohttp.ClientTimeout(sock_connect=10, sock_read=30),
                )

        async def _perform_request(self, service: str, message: str) -> tuple[Any, Any]:
            await self._ensure_client_session()
            session = self.client_session
            if session is None:
                raise OpenAdrConfigError(f"{self.ven_name}: no HTTP session")
            url = f"{self.vtn_url}/{service}"
            await self._execute_hooks("before_send_xml", message)
            sent_at = time.time()
            try:
                async with session.post(url, data=message) as response:
                    content = await response.read()
                    answered_at = time.time()
                    if response.status != HTTPStatus.OK:
                        self.gl_stats.errors += 1
                        log.warning("%s: %s answered %s: %s", self.ven_name, url, response.status, content[:200])
                        return None, {}
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                self.gl_stats.errors += 1
                log.warning("%s: request to %s failed: %s", self.ven_name, url, exc)
                return None, {}
            if not content:
                return None, {}
            try:
                self.gl_guard.verify(content, expected_fingerprint=self.gl_vtn_fingerprint)
            except OpenAdrRefused as exc:
                self.gl_stats.refused[exc.reason] += 1
                log.warning("%s refused a message from the VTN: %s", self.ven_name, exc)
                return None, {}
            self._clock_sample(content, (sent_at + answered_at) / 2)
            message_type, payload = parse_message(content)
            return message_type, payload

        def _clock_sample(self, content: bytes, local_s: float) -> None:
            from lxml import etree

            parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
            stamp = etree.fromstring(content, parser).findtext(f".//{{{DSP_NS}}}timestamp")
            if stamp:
                signed_at = dt.datetime.fromisoformat(stamp.strip().replace("Z", "+00:00"))
                if signed_at.tzinfo is None:
                    signed_at = signed_at.replace(tzinfo=dt.UTC)
                self.gl_offsets.append(signed_at.timestamp() - local_s)

    return GuardedClient


class Ven:
    """One VEN. ``await start()`` registers and starts polling; ``events`` holds what arrived."""

    def __init__(
        self,
        instance: str,
        vtn_url: str,
        *,
        tls: TlsFiles | None,
        check: CertificateCheck,
        vtn_fingerprint: str,
        decide: Decide | None = None,
        telemetry: Callable[[], float] | None = None,
        resource_id: str = "site",
        clock: Clock = utc_now,
        window_s: float = 300.0,
        insecure: bool = False,
        status: StatusSource | None = None,
        history: HistorySource | None = None,
        history_interval: dt.timedelta = dt.timedelta(minutes=15),
        history_measurement: str = "energy_real",
        history_days: int = 35,
    ) -> None:
        if tls is None and not insecure:
            raise OpenAdrConfigError(f"VEN {instance}: OpenADR needs TLS with a client certificate; give tls=")
        if tls is None:
            raise OpenAdrConfigError(f"VEN {instance}: even in insecure mode a VEN signs its messages: give tls=")
        self.instance = instance
        self.vtn_url = vtn_url
        self.tls = tls
        self.decide = decide
        self.stats = VenStats()
        self.events: list[ReceivedEvent] = []
        self.decisions: dict[str, str] = {}
        self.opts: dict[str, Opt] = {}  # optID -> opt the VTN accepted and that is not cancelled
        self.resource_id = resource_id
        self._status = status
        self._history = history
        self._history_interval = history_interval
        self._signing = ((tls.chain or tls.cert).read_bytes(), tls.key.read_bytes())
        with contextlib.redirect_stdout(io.StringIO()):
            client = _client_class()(
                ven_name=instance,
                vtn_url=vtn_url,
                cert=str(tls.cert),
                key=str(tls.key),
                ca_file=str(tls.ca),
                show_fingerprint=False,
            )
        client._create_message = message_factory(tls)  # sign per the 2.0b profile, not openleadr's way
        client.gl_guard = MessageGuard(check, clock=clock, window_s=window_s)
        client.gl_tls = None if insecure and vtn_url.startswith("http:") else tls
        client.gl_vtn_fingerprint = vtn_fingerprint
        client.gl_stats = self.stats
        client.gl_offsets = deque(maxlen=16)
        client.gl_own_reports = {}
        client.gl_answer = self._answer_report_requests
        client.add_handler("on_event", self._on_event)
        client.add_handler("on_update_event", self._on_event)
        if telemetry is not None:
            client.add_report(
                callback=telemetry,
                resource_id=resource_id,
                measurement="power_real",
                unit="W",
                report_duration=dt.timedelta(hours=1),
                sampling_rate=dt.timedelta(seconds=10),
            )
        if status is not None:
            from openleadr import objects

            specifier, _ = client.add_report(
                callback=status,
                resource_id=resource_id,
                report_name=ReportName.TELEMETRY_STATUS.value,
                reading_type="x-notApplicable",
                report_type="x-resourceStatus",
                report_duration=dt.timedelta(hours=1),
                sampling_rate=objects.SamplingRate(dt.timedelta(seconds=1), dt.timedelta(hours=1), on_change=True),
            )
            client.gl_own_reports[specifier] = ReportName.TELEMETRY_STATUS
        if history is not None:

            def history_window(
                date_from: dt.datetime, date_to: dt.datetime, sampling_interval: dt.timedelta
            ) -> Sequence[tuple[dt.datetime, float]]:
                return history(date_from, date_to)

            specifier, _ = client.add_report(
                callback=history_window,
                resource_id=resource_id,
                measurement=history_measurement,
                data_collection_mode="full",
                report_name=ReportName.HISTORY_USAGE.value,
                report_duration=dt.timedelta(days=history_days),
                report_dtstart=clock() - dt.timedelta(days=history_days),
                sampling_rate=history_interval,
            )
            client.gl_own_reports[specifier] = ReportName.HISTORY_USAGE
        self._client = client

    @property
    def ven_id(self) -> str | None:
        return self._client.ven_id  # type: ignore[no-any-return]

    @property
    def registration_id(self) -> str | None:
        return self._client.registration_id  # type: ignore[no-any-return]

    @property
    def clock_offset_s(self) -> float | None:
        """VTN clock minus this VEN's, seconds (median of the last signed VTN answers; None before any)."""
        offsets = self._client.gl_offsets
        return statistics.median(offsets) if offsets else None

    async def start(self) -> bool:
        """Register and start polling; False if the VTN did not register this VEN."""
        await self._client.run()
        return self._client.registration_id is not None

    async def poll(self) -> None:
        """Poll once now (besides the schedule)."""
        await self._client._poll()

    async def stop(self) -> None:
        client = self._client
        if client.scheduler.running:
            client.scheduler.shutdown(wait=False)
        if client.report_queue_task:
            client.report_queue_task.cancel()
        if client.client_session is not None:
            await client.client_session.close()
        await asyncio.sleep(0)

    async def _on_event(self, raw: dict[str, Any]) -> str:
        event = from_openleadr(raw, received_at=time.time())
        self.events.append(event)
        self.stats.received += 1
        opt_in = True
        if self.decide is not None:
            result = self.decide(event)
            opt_in = bool(await result) if isinstance(result, Awaitable) else bool(result)
        opt = "optIn" if opt_in else "optOut"
        self.decisions[event.event_id] = opt
        if opt_in:
            self.stats.opted_in += 1
        else:
            self.stats.opted_out += 1
        return opt

    # ------------------------------------------------------------------ reports gridloom answers itself
    async def _answer_report_requests(self, message: dict[str, Any], requests: list[dict[str, Any]]) -> None:
        """Confirm (oadrCreatedReport), then send each TELEMETRY_STATUS / HISTORY_USAGE report asked for."""
        client = self._client
        request_id = message.get("request_id") or (message.get("response") or {}).get("request_id")
        created = client._create_message(
            "oadrCreatedReport",
            response={"response_code": 200, "response_description": "OK", "request_id": request_id},
            ven_id=client.ven_id,
            pending_reports=[{"report_request_id": r["report_request_id"]} for r in requests],
        )
        await client._perform_request("EiReport", created)
        for request in requests:
            specifier = request["report_specifier"]
            name = client.gl_own_reports[specifier["report_specifier_id"]]
            r_ids = [str(p["r_id"]) for p in specifier.get("specifier_payloads") or []]
            if name is ReportName.TELEMETRY_STATUS:
                await self._send_status(request["report_request_id"], specifier, r_ids)
                every = specifier.get("report_back_duration") or dt.timedelta(0)
                if every > dt.timedelta(0):  # periodic status: again every reportBackDuration
                    job = client.scheduler.add_job(
                        self._send_status,
                        trigger="interval",
                        seconds=every.total_seconds(),
                        args=(request["report_request_id"], specifier, r_ids),
                    )
                    client.report_requests.append(
                        {"report_request_id": request["report_request_id"], "r_ids": [], "job": job,
                         "report_specifier_id": specifier["report_specifier_id"]}
                    )  # fmt: skip
            else:
                await self._send_history(request["report_request_id"], specifier, r_ids)

    def _own_r_ids(self, specifier_id: str, r_ids: list[str]) -> list[str]:
        from openleadr import utils

        report = utils.find_by(self._client.reports, "report_specifier_id", specifier_id)
        known = {d.r_id for d in report.report_descriptions} if report else set()
        return [r for r in r_ids if r in known]

    async def _send_status(self, report_request_id: str, specifier: dict[str, Any], r_ids: list[str]) -> None:
        if self._status is None:
            return
        now = dt.datetime.now(dt.UTC)
        statuses, intervals = [], []
        for r_id in self._own_r_ids(specifier["report_specifier_id"], r_ids):
            statuses.append(self._status())
            placeholder = status_placeholder(len(statuses) - 1)
            intervals.append({"dtstart": now, "report_payload": {"r_id": r_id, "value": placeholder}})
        await self._send_report(
            report_request_id, specifier, ReportName.TELEMETRY_STATUS, intervals, now, status_replacements(statuses)
        )

    async def _send_history(self, report_request_id: str, specifier: dict[str, Any], r_ids: list[str]) -> None:
        period = specifier.get("report_interval")
        if self._history is None or not period:
            log.warning("%s: a HISTORY_USAGE request without a reportInterval", self.instance)
            return
        start, end = period["dtstart"], period["dtstart"] + period["duration"]
        step = specifier.get("granularity") or self._history_interval
        values = [(at, float(v)) for at, v in self._history(start, end) if start <= at < end]
        intervals = [
            {"dtstart": at, "duration": step, "report_payload": {"r_id": r_id, "value": value}}
            for r_id in self._own_r_ids(specifier["report_specifier_id"], r_ids)
            for at, value in sorted(values)
        ]
        await self._send_report(report_request_id, specifier, ReportName.HISTORY_USAGE, intervals, start, {})

    async def _send_report(
        self,
        report_request_id: str,
        specifier: dict[str, Any],
        name: ReportName,
        intervals: list[dict[str, Any]],
        start: dt.datetime,
        replace: dict[str, str],
    ) -> None:
        report = {
            "report_id": new_id("rep"),
            "report_request_id": report_request_id,
            "report_specifier_id": specifier["report_specifier_id"],
            "report_name": name.value,
            "dtstart": start,
            "created_date_time": dt.datetime.now(dt.UTC),
            "intervals": intervals,
        }
        payload = {"request_id": new_id("req"), "ven_id": self._client.ven_id, "reports": [report]}
        if replace:  # the status payload: openleadr's template writes floats only
            cert, key = self._signing
            message = create_signed("oadrUpdateReport", payload, cert=cert, key=key, replace=replace)
        else:
            message = self._client._create_message("oadrUpdateReport", **payload)
        message_type, _ = await self._client._perform_request("EiReport", message)
        if message_type == "oadrUpdatedReport":
            self.stats.reports_sent += 1

    # ------------------------------------------------------------------ opts (EiOpt)
    async def create_opt(
        self,
        opt_type: OptType | str,
        *,
        event_id: str | None = None,
        windows: Sequence[Window] = (),
        reason: OptReason | str | None = None,
        resource_id: str | None = None,
        market_context: str | None = None,
    ) -> str:
        """Send ``oadrCreateOpt``: opt in or out of an event already answered, or an availability schedule.

        ``windows`` with ``optOut``: times the VEN is unavailable for events; with ``optIn``: times
        it is available. Returns the optID the VTN acknowledged; raises :class:`OpenAdrRefused`
        with the VTN's response code if it refused, :class:`OpenAdrError` if it did not answer.
        """
        from openleadr import objects

        if self._client.ven_id is None:
            raise OpenAdrConfigError(f"VEN {self.instance}: register before sending opts")
        kind = OptType(opt_type)
        if reason is None:
            if event_id is None:
                reason = OptReason.SCHEDULE
            else:
                reason = OptReason.PARTICIPATING if kind is OptType.OPT_IN else OptReason.OVERRIDE_STATUS
        modification = 0
        if event_id is not None:
            seen = [e for e in self.events if e.event_id == event_id]
            if not seen:
                raise DrInputError(f"VEN {self.instance} received no event {event_id}")
            modification = seen[-1].modification_number
        opt = Opt(
            opt_id=new_id("opt"),
            ven_id=self._client.ven_id,
            opt_type=kind,
            reason=str(reason),
            event_id=event_id,
            modification_number=modification,
            windows=tuple(windows),
            resource_id=resource_id,
            market_context=market_context,
            created_at=dt.datetime.now(dt.UTC),
        )
        target = {"resource_id": resource_id} if resource_id else {"ven_id": self._client.ven_id}
        payload: dict[str, Any] = {
            "request_id": new_id("req"),
            "ven_id": opt.ven_id,
            "opt_id": opt.opt_id,
            "opt_type": kind.value,
            "opt_reason": str(reason),
            "created_date_time": opt.created_at,
            "market_context": market_context,
            "targets": [objects.Target(**target)],
        }
        if event_id is not None:
            payload.update(event_id=event_id, modification_number=modification)
        else:
            payload["vavailability"] = {"components": opt.components()}
        await self._exchange("oadrCreateOpt", payload, "oadrCreatedOpt", opt.opt_id)
        self.opts[opt.opt_id] = opt
        if event_id is not None:
            self.decisions[event_id] = kind.value
            self._client.responded_events[event_id] = kind.value  # a re-sent event gets the new answer
        return opt.opt_id

    async def cancel_opt(self, opt_id: str) -> None:
        """Send ``oadrCancelOpt`` for an opt this VEN created (raises like :meth:`create_opt`)."""
        if opt_id not in self.opts:
            raise DrInputError(f"VEN {self.instance} has no opt {opt_id}")
        payload = {"request_id": new_id("req"), "ven_id": self._client.ven_id, "opt_id": opt_id}
        await self._exchange("oadrCancelOpt", payload, "oadrCanceledOpt", opt_id)
        del self.opts[opt_id]

    async def _exchange(self, message_type: str, payload: dict[str, Any], answer: str, opt_id: str) -> None:
        message = self._client._create_message(message_type, **payload)
        reply_type, reply = await self._client._perform_request("EiOpt", message)
        if reply_type != answer:
            raise OpenAdrError(f"VEN {self.instance}: no {answer} for {message_type} {opt_id} (got {reply_type})")
        response = reply.get("response") or {}
        code = int(response.get("response_code", 0))
        if code != 200 or reply.get("opt_id") != opt_id:
            raise OpenAdrRefused(
                f"the VTN refused {message_type} {opt_id}: {response.get('response_description')}",
                code=code,
                reason="opt",
            )
        self.stats.opts_sent += 1
