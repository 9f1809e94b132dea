"""An OpenADR 2.0b VEN (a customer gateway or customer EMS), on openleadr's client, with gridloom's checks.

The VEN registers with the VTN, polls it, receives events, answers each with ``optIn`` or
``optOut`` (the customer's EMS decides, :data:`Decide`), and offers a ``TELEMETRY_USAGE`` report of
its site's real power that the VTN may request.

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
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

import aiohttp

from gridloom.errors import OpenAdrConfigError, OpenAdrRefused
from gridloom.fabric.identity import Clock, utc_now
from gridloom.protocols.openadr.events import ReceivedEvent, from_openleadr
from gridloom.protocols.openadr.security import CertificateCheck, MessageGuard, TlsFiles, client_context

log = logging.getLogger(__name__)
Decide = Callable[[ReceivedEvent], bool | Awaitable[bool]]  # True: opt in


@dataclass
class VenStats:
    received: int = 0
    opted_in: int = 0
    opted_out: int = 0
    refused: Counter[str] = field(default_factory=Counter)  # VTN responses refused, by reason
    errors: int = 0  # requests that failed (HTTP status, connection)


def _client_class() -> type[Any]:
    from openleadr import OpenADRClient
    from openleadr.messaging import parse_message

    class GuardedClient(OpenADRClient):  # type: ignore[misc]
        """openleadr's client, with gridloom's TLS context and message checks."""

        gl_guard: MessageGuard
        gl_tls: TlsFiles | None
        gl_vtn_fingerprint: str
        gl_stats: VenStats
        client_session: aiohttp.ClientSession | None

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
            try:
                async with session.post(url, data=message) as response:
                    content = await response.read()
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
            message_type, payload = parse_message(content)
            return message_type, payload

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
        with contextlib.redirect_stdout(io.StringIO()):
            client = _client_class()(
                ven_name=instance,
                vtn_url=vtn_url,
                cert=str(tls.cert),
                key=str(tls.key),
                ca_file=str(tls.ca),
                show_fingerprint=False,
            )
        client.gl_guard = MessageGuard(check, clock=clock, window_s=window_s)
        client.gl_tls = None if insecure and vtn_url.startswith("http:") else tls
        client.gl_vtn_fingerprint = vtn_fingerprint
        client.gl_stats = self.stats
        client.add_handler("on_event", self._on_event)
        client.add_handler("on_update_event", self._on_event)
        if telemetry is not None:
            client.add_report(
                callback=telemetry,
                resource_id=resource_id,
                measurement="power_real",
                unit="W",
                sampling_rate=dt.timedelta(seconds=10),
            )
        self._client = client

    @property
    def ven_id(self) -> str | None:
        return self._client.ven_id  # type: ignore[no-any-return]

    @property
    def registration_id(self) -> str | None:
        return self._client.registration_id  # type: ignore[no-any-return]

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
