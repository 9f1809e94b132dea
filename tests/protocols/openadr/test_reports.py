"""OpenADR 2.0b reports on demand: the VTN asks a VEN for its status or a period of its meter history.

Over TLS on 127.0.0.1, certificates from gridloom's CA (fixtures of test_openadr).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import aiohttp
import pytest

from gridloom.errors import DrInputError, OpenAdrError
from gridloom.protocols.openadr import (
    GatewayStatus,
    LoadControl,
    LoadControlKind,
    ReportName,
    TlsFiles,
    Ven,
    Vtn,
    client_context,
)
from gridloom.protocols.openadr.reports import create_signed, status_placeholder, status_replacements
from gridloom.protocols.openadr.security import create_message
from tests.protocols.openadr.test_openadr import POLL, Pki, vtn_fingerprint, wait_until

pytestmark = pytest.mark.anyio
T0 = dt.datetime(2026, 7, 14, tzinfo=dt.UTC)
METER = {T0 + dt.timedelta(minutes=15 * k): 100.0 + k for k in range(96)}  # a day of 15-min Wh readings


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return Pki(tmp_path)


def meter_history(start: dt.datetime, end: dt.datetime) -> list[tuple[dt.datetime, float]]:
    """The site's meter data, as an EMS would read it from its store (a whole day: the VEN keeps the period)."""
    return sorted(METER.items())


class Gateway:
    """A customer gateway whose state changes: the status report must say what it is at the time."""

    def __init__(self) -> None:
        self.online = True
        self.override = False
        self.level = 0.0

    def status(self) -> GatewayStatus:
        return GatewayStatus(
            online=self.online,
            manual_override=self.override,
            load_control=(
                LoadControl(LoadControlKind.LEVEL_OFFSET, self.level, minimum=0, maximum=3, normal=0),
                LoadControl(LoadControlKind.SET_POINT, 24.5),
            ),
        )


async def gateway_ven(pki: Pki, vtn: Vtn, name: str, gateway: Gateway | None = None, *, enrol: bool = True) -> Ven:
    files, fp = pki.ven_files(name)
    if enrol:
        vtn.enrol(name, fingerprint=fp)
    ven = Ven(name, vtn.url, tls=files, check=pki.check, vtn_fingerprint=vtn_fingerprint(pki),
              status=(gateway or Gateway()).status, history=meter_history)  # fmt: skip
    await ven.start()
    return ven


async def test_a_status_request_brings_the_gateways_status_values_to_the_vtn(pki: Pki):
    async with Vtn("LMS-1", tls=pki.vtn, check=pki.check, poll_interval=POLL) as vtn:
        gateway = Gateway()
        ven = await gateway_ven(pki, vtn, "gw-1", gateway)
        try:
            assert set(vtn.offered["gw-1"]) == {"TELEMETRY_STATUS", "HISTORY_USAGE"}
            gateway.override, gateway.level = True, 2.0  # the customer overrode; the gateway sheds at level 2
            got = await vtn.fetch_status("gw-1", timeout_s=10)
            assert got.ven_id == "gw-1"
            assert got.name is ReportName.TELEMETRY_STATUS
            assert got.statuses == {"site": gateway.status()}
            status = vtn.statuses["gw-1"].status
            assert status is not None
            assert status.online
            assert status.manual_override
            level = status.control(LoadControlKind.LEVEL_OFFSET)
            assert level == LoadControl(LoadControlKind.LEVEL_OFFSET, 2.0, 0.0, 3.0, 0.0)
            assert vtn.report_requests[got.request_id].created  # the VEN confirmed with oadrCreatedReport
            gateway.online = False  # a second request sees the change
            again = await vtn.fetch_status("gw-1", timeout_s=10)
            assert again.status is not None
            assert not again.status.online
            assert vtn.stats.reports_ignored == {}
            assert vtn.stats.refused == {}
        finally:
            await ven.stop()


async def test_a_history_request_brings_exactly_the_intervals_of_the_period(pki: Pki):
    async with Vtn("LMS-1", tls=pki.vtn, check=pki.check, poll_interval=POLL) as vtn:
        ven = await gateway_ven(pki, vtn, "gw-h")
        try:
            start, end = T0 + dt.timedelta(hours=17), T0 + dt.timedelta(hours=19)
            got = await vtn.fetch_history("gw-h", start, end, timeout_s=10)
            assert got.name is ReportName.HISTORY_USAGE
            expected = [(at, v) for at, v in sorted(METER.items()) if start <= at < end]
            assert len(expected) == 8
            assert got.series() == expected  # 17:00 ... 18:45, values 168 ... 175
            assert got.series()[0] == (start, 168.0)
            assert got.durations["site"] == [dt.timedelta(minutes=15)] * 8
            assert ven.stats.reports_sent == 1
        finally:
            await ven.stop()


async def test_requests_need_an_offer_and_unanswered_requests_time_out(pki: Pki):
    async with Vtn("LMS-1", tls=pki.vtn, check=pki.check, poll_interval=POLL) as vtn:
        files, fp = pki.ven_files("plain")
        vtn.enrol("plain", fingerprint=fp)
        ven = Ven("plain", vtn.url, tls=files, check=pki.check, vtn_fingerprint=vtn_fingerprint(pki),
                  telemetry=lambda: 1.0)  # fmt: skip
        await ven.start()
        gw = await gateway_ven(pki, vtn, "gw-t")
        try:
            with pytest.raises(DrInputError, match="does not offer a TELEMETRY_STATUS"):
                vtn.request_status("plain")
            with pytest.raises(DrInputError, match="not enrolled"):
                vtn.request_status("nobody")
            await gw.stop()  # the gateway goes silent
            request_id = vtn.request_status("gw-t")
            with pytest.raises(OpenAdrError, match="did not answer"):
                await vtn.wait_for_report(request_id, timeout_s=1.5)
            assert request_id not in vtn.received_reports
        finally:
            await ven.stop()


async def test_reports_nobody_asked_for_and_reports_in_another_vens_name_are_not_kept(pki: Pki, tmp_path: Path):
    async with Vtn("LMS-1", tls=pki.vtn, check=pki.check, poll_interval=POLL) as vtn:
        a = await gateway_ven(pki, vtn, "gw-a")
        b = await gateway_ven(pki, vtn, "gw-b")
        await b.stop()  # B is asked but does not answer: its request stays open
        request_b = vtn.request_status("gw-b")
        files_a = TlsFiles(*(tmp_path / "gw-a" / f for f in ("gw-a.tls.crt", "gw-a.tls.key", "ca.crt", "crl.pem")))
        cert, key = files_a.cert.read_bytes(), files_a.key.read_bytes()
        specifier = vtn.offered["gw-b"]["TELEMETRY_STATUS"].specifier_id
        r_id = next(iter(vtn.offered["gw-b"]["TELEMETRY_STATUS"].resources))

        def forged_status(ven_id: str, request_id: str) -> str:
            report = {"report_id": "r1", "report_request_id": request_id, "report_specifier_id": specifier,
                      "report_name": "TELEMETRY_STATUS", "created_date_time": dt.datetime.now(dt.UTC),
                      "intervals": [{"dtstart": dt.datetime.now(dt.UTC),
                                     "report_payload": {"r_id": r_id, "value": status_placeholder(0)}}]}  # fmt: skip
            payload = {"request_id": "q1", "ven_id": ven_id, "reports": [report]}
            fake = GatewayStatus(online=False, manual_override=True)
            return create_signed("oadrUpdateReport", payload, cert=cert, key=key, replace=status_replacements([fake]))

        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=client_context(files_a))) as session:

            async def post(body: str) -> tuple[int, str]:
                async with session.post(f"{vtn.url}/EiReport", data=body,
                                        headers={"content-type": "application/xml"}) as r:  # fmt: skip
                    return r.status, await r.text()

            # A's certificate speaking for B: refused before anything is read
            status, _ = await post(forged_status("gw-b", request_b))
            assert status == 403
            assert vtn.stats.refused["ven-id"] == 1
            # A in its own name, answering B's request: not kept
            status, _ = await post(forged_status("gw-a", request_b))
            assert status == 200
            assert vtn.stats.reports_ignored["foreign"] == 1
            # A answering a request nobody made: not kept
            status, _ = await post(forged_status("gw-a", "status-made-up"))
            assert vtn.stats.reports_ignored["not-requested"] == 1
        assert request_b not in vtn.received_reports
        assert "gw-b" not in vtn.statuses
        assert "gw-a" not in vtn.statuses
        await a.stop()


async def test_a_report_from_an_unenrolled_vens_certificate_is_refused(pki: Pki):
    async with Vtn("LMS-1", tls=pki.vtn, check=pki.check, poll_interval=POLL) as vtn:
        files, _ = pki.ven_files("stranger")  # our CA issued it, the LMS never enrolled it
        message = create_message(
            "oadrUpdateReport", cert=files.cert.read_bytes(), key=files.key.read_bytes(), request_id="q",
            ven_id="stranger", reports=[],
        )  # fmt: skip
        async with (
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=client_context(files))) as session,
            session.post(f"{vtn.url}/EiReport", data=message, headers={"content-type": "application/xml"}) as r,
        ):
            assert r.status == 403
        assert vtn.stats.refused["unknown"] == 1
        assert vtn.received_reports == {}
        assert vtn.stats.reports == 0


async def test_the_ven_estimates_its_clock_offset_from_the_vtns_signed_timestamps(pki: Pki):
    async with Vtn("LMS-1", tls=pki.vtn, check=pki.check, poll_interval=POLL) as vtn:
        ven = await gateway_ven(pki, vtn, "gw-c")
        try:
            await wait_until(lambda: ven.clock_offset_s is not None)
            offset = ven.clock_offset_s
            assert offset is not None
            assert abs(offset) < 0.5  # same machine, same clock
        finally:
            await ven.stop()


def test_a_status_payload_is_valid_openadr_and_reads_back(pki: Pki):
    from openleadr.messaging import parse_message, validate_xml_schema

    status = Gateway().status()
    interval = {"dtstart": T0, "report_payload": {"r_id": "x", "value": status_placeholder(0)}}
    report = {"report_id": "r", "report_request_id": "rr", "report_specifier_id": "s",
              "report_name": "TELEMETRY_STATUS", "created_date_time": T0, "intervals": [interval]}  # fmt: skip
    message = create_signed("oadrUpdateReport", {"request_id": "q", "ven_id": "v", "reports": [report]},
                            cert=pki.vtn.cert.read_bytes(), key=pki.vtn.key.read_bytes(),
                            replace=status_replacements([status]))  # fmt: skip
    validate_xml_schema(message.encode())
    _, payload = parse_message(message)
    parsed = payload["reports"][0]["intervals"][0]["report_payload"]["payload_resource_status"]
    assert GatewayStatus.from_payload(parsed) == status
    capacity = LoadControlKind.CAPACITY
    with pytest.raises(DrInputError):
        GatewayStatus(True, load_control=(LoadControl(capacity, 1), LoadControl(capacity, 2)))


async def test_a_periodic_status_request_keeps_the_vtns_view_of_the_gateway_current(pki: Pki):
    async with Vtn("LMS-1", tls=pki.vtn, check=pki.check, poll_interval=POLL) as vtn:
        gateway = Gateway()
        ven = await gateway_ven(pki, vtn, "gw-p", gateway)
        try:
            request_id = vtn.request_status("gw-p", every=dt.timedelta(seconds=1))
            first = await vtn.wait_for_report(request_id, timeout_s=10)
            assert first.status == gateway.status()
            gateway.level = 3.0  # the gateway sheds more; the next periodic report says so
            assert await wait_until(lambda: first.updates >= 3, timeout_s=10)
            latest = vtn.statuses["gw-p"].status
            assert latest is not None
            level = LoadControlKind.LEVEL_OFFSET
            assert latest.control(level) == LoadControl(level, 3.0, 0, 3, 0)
        finally:
            await ven.stop()
