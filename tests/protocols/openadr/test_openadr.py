"""OpenADR 2.0b between the LMS's VTN and customer VENs, over TLS with certificates from gridloom's CA."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path

import aiohttp
import pytest

from gridloom.errors import OpenAdrConfigError, OpenAdrRefused
from gridloom.fabric.identity import CertificateAuthority
from gridloom.protocols.openadr import (
    CertificateCheck,
    DrEvent,
    MessageGuard,
    Signal,
    SignalName,
    Targets,
    TlsFiles,
    Ven,
    Vtn,
    client_context,
    openadr_fingerprint,
)
from gridloom.protocols.openadr.security import create_message

pytestmark = pytest.mark.anyio
POLL = dt.timedelta(seconds=1)


class Pki:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.ca = CertificateAuthority.init(folder / "pki")
        self.check = CertificateCheck.of(self.ca)
        self.vtn = TlsFiles.write(self.ca, self.ca.issue_tls("lms", "lms-1", hosts=["127.0.0.1"]), folder / "lms-1")

    def ven_files(self, name: str) -> tuple[TlsFiles, str]:
        tls = self.ca.issue_tls("customer_ems", name)
        return TlsFiles.write(self.ca, tls, self.folder / name), openadr_fingerprint(tls.certificate)


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return Pki(tmp_path)


def vtn_fingerprint(pki: Pki) -> str:
    from cryptography import x509

    return openadr_fingerprint(x509.load_pem_x509_certificate(pki.vtn.cert.read_bytes()))


def level_event(event_id: str, targets: Targets, *, level: int = 2) -> DrEvent:
    return DrEvent(
        event_id=event_id,
        program="gridloom://programs/reliability",
        start_at=dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5),
        interval=dt.timedelta(minutes=30),
        signals=(Signal(SignalName.SIMPLE, "level", (level, level)),),
        targets=targets,
    )


async def started_ven(pki: Pki, vtn: Vtn, name: str, *, groups=(), decide=None, enrol=True, telemetry=None) -> Ven:
    files, fp = pki.ven_files(name)
    if enrol:
        vtn.enrol(name, fingerprint=fp, groups=groups)
    ven = Ven(name, vtn.url, tls=files, check=pki.check, vtn_fingerprint=vtn_fingerprint(pki), decide=decide,
              telemetry=telemetry)  # fmt: skip
    await ven.start()
    return ven


async def wait_until(predicate, timeout_s: float = 10.0) -> bool:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not predicate():
        if loop.time() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True


async def test_an_event_reaches_exactly_the_targeted_vens_and_opt_outs_are_reported(pki: Pki):
    async with Vtn("LMS-1", tls=pki.vtn, check=pki.check, poll_interval=POLL) as vtn:
        assert vtn.url.startswith("https://127.0.0.1:")
        a = await started_ven(pki, vtn, "ems-a", groups=["feeder-1"])
        b = await started_ven(pki, vtn, "ems-b", groups=["feeder-1"], decide=lambda e: False)
        c = await started_ven(pki, vtn, "ems-c", groups=["feeder-2"])
        try:
            assert all(v.registration_id for v in (a, b, c))
            targeted = vtn.create_event(level_event("ev-1", Targets(groups=("feeder-1",))))
            assert set(targeted) == {"ems-a", "ems-b"}
            assert await wait_until(lambda: len(vtn.opts["ev-1"]) == 2)
            assert vtn.opts["ev-1"] == {"ems-a": "optIn", "ems-b": "optOut"}
            assert vtn.opted_out("ev-1") == {"ems-b"}
            await asyncio.sleep(1.5)  # a few more polls: C never gets it
            assert [e.event_id for e in a.events] == ["ev-1"]
            assert c.events == []
            got = a.events[0]
            assert got.signals == {"SIMPLE": (2.0, 2.0)}
            assert got.program == "gridloom://programs/reliability"
            assert vtn.stats.refused == {}
        finally:
            for v in (a, b, c):
                await v.stop()


async def test_price_signal_carries_the_current_price_and_the_future_vector(pki: Pki):
    async with Vtn("LMS-1", tls=pki.vtn, check=pki.check, poll_interval=POLL) as vtn:
        ven = await started_ven(pki, vtn, "ems-p", groups=["rtp"])
        try:
            start = dt.datetime.now(dt.UTC).replace(microsecond=0)
            prices = (0.31, 0.55, 0.92, 0.40)
            vtn.create_event(
                DrEvent("rtp-1", "gridloom://programs/rtp", start, dt.timedelta(hours=1),
                        (Signal(SignalName.ELECTRICITY_PRICE, "price", prices),), Targets(groups=("rtp",)))
            )  # fmt: skip
            assert await wait_until(lambda: bool(ven.events))
            event = ven.events[0]
            assert event.signals["ELECTRICITY_PRICE"] == prices
            assert event.value_at("ELECTRICITY_PRICE", start + dt.timedelta(minutes=10)) == 0.31  # current price
            assert event.value_at("ELECTRICITY_PRICE", start + dt.timedelta(hours=2, minutes=5)) == 0.92
        finally:
            await ven.stop()


async def test_unknown_revoked_and_foreign_certificates_are_refused(pki: Pki, tmp_path: Path):
    async with Vtn("LMS-1", tls=pki.vtn, check=pki.check, poll_interval=POLL) as vtn:
        # issued by our CA but not enrolled by the LMS: refused per request
        stranger = await started_ven(pki, vtn, "ems-stranger", enrol=False)
        assert stranger.registration_id is None
        assert vtn.stats.refused["unknown"] >= 1
        # a certificate from another CA with the same names: the TLS handshake fails
        other = CertificateAuthority.init(tmp_path / "other-ca")
        forged = other.issue_tls("customer_ems", "ems-a")
        files = TlsFiles.write(other, forged, tmp_path / "forged")
        vtn.enrol("ems-a", fingerprint=openadr_fingerprint(forged.certificate))
        ven = Ven("ems-a", vtn.url, tls=files, check=pki.check, vtn_fingerprint=vtn_fingerprint(pki))
        assert not await ven.start()
        assert ven.stats.errors >= 1
        # revoked after registering: its next request on the open connection is refused
        good = await started_ven(pki, vtn, "ems-r")
        assert good.registration_id
        pki.ca.revoke(_tls_cert(pki, "ems-r"))
        before = vtn.stats.refused["revoked"]
        await good.poll()
        assert vtn.stats.refused["revoked"] > before
        for v in (stranger, ven, good):
            await v.stop()


def _tls_cert(pki: Pki, name: str):
    from cryptography import x509

    return x509.load_pem_x509_certificate((pki.folder / name / f"{name}.tls.crt").read_bytes())


async def test_a_revoked_certificate_fails_the_handshake_once_the_crl_is_loaded(pki: Pki):
    files, fp = pki.ven_files("ems-old")
    pki.ca.revoke(_tls_cert(pki, "ems-old"))
    pki.vtn.refresh_crl(pki.ca)
    async with Vtn("LMS-1", tls=pki.vtn, check=pki.check, poll_interval=POLL) as vtn:
        vtn.enrol("ems-old", fingerprint=fp)
        ven = Ven("ems-old", vtn.url, tls=files, check=pki.check, vtn_fingerprint=vtn_fingerprint(pki))
        assert not await ven.start()
        assert vtn.stats.handled == 0
        await ven.stop()


async def test_replayed_altered_and_unsigned_messages_are_refused(pki: Pki):
    async with Vtn("LMS-1", tls=pki.vtn, check=pki.check, poll_interval=POLL) as vtn:
        sent: list[str] = []
        files, fp = pki.ven_files("ems-x")
        vtn.enrol("ems-x", fingerprint=fp)
        ven = Ven("ems-x", vtn.url, tls=files, check=pki.check, vtn_fingerprint=vtn_fingerprint(pki))
        ven._client.add_hook("before_send_xml", sent.append)
        assert await ven.start()
        await ven.stop()
        poll = next(m for m in sent if "oadrPoll" in m)
        altered = poll.replace("ems-x", "ems-y", 1) if "ems-x" in poll else poll.replace("<ei:venID>", "<ei:venID>x", 1)
        unsigned = (
            poll[: poll.index("<ds:Signature")] + poll[poll.index("</ds:Signature>") + 15 :]
            if "<ds:Signature" in poll
            else None
        )
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=client_context(files))) as session:

            async def post(body: str) -> int:
                async with session.post(
                    f"{vtn.url}/OadrPoll", data=body, headers={"content-type": "application/xml"}
                ) as r:
                    await r.read()
                    return r.status

            assert await post(poll) == 403  # the VEN already sent this one
            assert await post(altered) == 403
            assert unsigned is not None
            assert await post(unsigned) == 403
        assert vtn.stats.refused["replay"] >= 1
        assert vtn.stats.refused["signature"] >= 1
        assert vtn.stats.refused["unsigned"] >= 1


async def test_telemetry_usage_reports_reach_the_vtn(pki: Pki):
    async with Vtn("LMS-1", tls=pki.vtn, check=pki.check, poll_interval=POLL,
                   report_sampling=dt.timedelta(seconds=1)) as vtn:  # fmt: skip
        ven = await started_ven(pki, vtn, "ems-t", telemetry=lambda: 1234.5)
        try:
            assert await wait_until(lambda: bool(vtn.reports), timeout_s=15)
            ven_id, resource, _measurement, _, value = vtn.reports[0]
            assert (ven_id, resource, value) == ("ems-t", "site", 1234.5)
        finally:
            await ven.stop()


def test_a_vtn_without_tls_refuses_to_exist(pki: Pki):
    with pytest.raises(OpenAdrConfigError, match="TLS"):
        Vtn("LMS-1", tls=None, check=pki.check)


def test_the_guard_refuses_a_replay_of_a_vtn_message(pki: Pki):
    cert, key = pki.vtn.cert.read_bytes(), pki.vtn.key.read_bytes()
    msg = create_message(
        "oadrResponse",
        cert=cert,
        key=key,
        response={"response_code": 200, "response_description": "OK", "request_id": "r1"},
        ven_id="v1",
    )
    guard = MessageGuard(pki.check)
    guard.verify(msg.encode(), expected_fingerprint=vtn_fingerprint(pki))
    with pytest.raises(OpenAdrRefused, match="received before"):
        guard.verify(msg.encode(), expected_fingerprint=vtn_fingerprint(pki))
    with pytest.raises(OpenAdrRefused) as wrong:
        MessageGuard(pki.check).verify(msg.encode(), expected_fingerprint="00:11")
    assert wrong.value.reason == "fingerprint"
    later = MessageGuard(pki.check, clock=lambda: dt.datetime.now(dt.UTC) + dt.timedelta(hours=1))
    with pytest.raises(OpenAdrRefused) as stale:
        later.verify(msg.encode(), expected_fingerprint=None)
    assert stale.value.reason == "stale"


def test_a_message_signed_with_inclusive_c14n_is_refused(pki: Pki):
    """openleadr's own signer canonicalises inclusively; the 2.0b profile asks for exclusive c14n."""
    from openleadr.messaging import create_message as openleadr_message

    cert, key = pki.vtn.cert.read_bytes(), pki.vtn.key.read_bytes()
    body = {"response_code": 200, "response_description": "OK", "request_id": "r1"}
    msg = openleadr_message("oadrResponse", cert=cert, key=key, response=body, ven_id="v1")
    with pytest.raises(OpenAdrRefused) as refused:
        MessageGuard(pki.check).verify(msg.encode(), expected_fingerprint=vtn_fingerprint(pki))
    assert refused.value.reason == "profile"
