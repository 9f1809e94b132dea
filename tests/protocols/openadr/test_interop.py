"""Interoperability: an OpenADR 2.0b VEN written from the specification (``spec_ven``) against gridloom's VTN.

The spec VEN shares no code with openleadr or gridloom's OpenADR package: if these tests pass,
another 2.0b implementation that keeps to the schema, the XMLDSig profile and the certificate
profile can connect as a VEN.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ssl
import subprocess
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, SignatureAlgorithmOID
from lxml import etree

from gridloom.fabric.identity import CertificateAuthority
from gridloom.protocols.openadr import (
    CertificateCheck,
    DrEvent,
    MessageGuard,
    Signal,
    SignalName,
    Targets,
    TlsFiles,
    Vtn,
    openadr_fingerprint,
)
from gridloom.protocols.openadr.security import message_factory

from .spec_ven import DS, EI, NSMAP, OADR, SpecRefused, SpecVen, fingerprint, sign, validate

pytestmark = pytest.mark.anyio
POLL = dt.timedelta(seconds=1)


@dataclass
class Site:
    folder: Path
    ca: CertificateAuthority
    vtn_files: TlsFiles

    @property
    def root(self) -> Path:
        return self.ca.tls_authority().root_path

    @property
    def vtn_fingerprint(self) -> str:
        return openadr_fingerprint(x509.load_pem_x509_certificate(self.vtn_files.cert.read_bytes()))

    def spec_ven(self, vtn: Vtn, name: str, *, ca: CertificateAuthority | None = None, enrol: bool = True,
                 decide: Callable[..., str] | None = None) -> SpecVen:  # fmt: skip
        issuer = ca or self.ca
        tls = issuer.issue_tls("customer_ems", name)
        files = TlsFiles.write(issuer, tls, self.folder / f"spec-{name}")
        if enrol:
            vtn.enrol(name, fingerprint=openadr_fingerprint(tls.certificate), groups=["feeder-7"])
        assert files.chain is not None
        ven = SpecVen(name, vtn.url, files.chain, files.key, self.root, self.vtn_fingerprint)
        if decide is not None:
            ven.decide = decide
        return ven


@pytest.fixture
def site(tmp_path: Path) -> Site:
    ca = CertificateAuthority.init(tmp_path / "pki")
    vtn_files = TlsFiles.write(ca, ca.issue_tls("lms", "lms-1", hosts=["127.0.0.1"]), tmp_path / "lms-1")
    return Site(tmp_path, ca, vtn_files)


@pytest.fixture
async def vtn(site: Site) -> AsyncIterator[Vtn]:
    async with Vtn("LMS-1", tls=site.vtn_files, check=CertificateCheck.of(site.ca), poll_interval=POLL) as server:
        yield server


async def poll_until(ven: SpecVen, kind: str, *, timeout_s: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while loop.time() < deadline:
        answer = await ven.poll()
        if answer is not None and answer.kind == kind:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"no {kind} within {timeout_s} s")


async def test_the_spec_ven_registers_polls_gets_a_price_event_and_its_opt_out_is_recorded(site: Site, vtn: Vtn):
    ven = site.spec_ven(vtn, "ems-spec", decide=lambda event: "optOut")
    try:
        await ven.register()
        assert ven.vtn_id == "LMS-1"
        assert ven.ven_id == "ems-spec"
        assert ven.registration_id == vtn.vens["ems-spec"].registration_id
        registered = await ven.register_reports()
        assert registered.text("ei:eiResponse/ei:responseCode") == "200"
        idle = await ven.poll()  # no event queued yet
        assert idle is not None
        assert idle.kind in {"oadrResponse", "oadrCreateReport", "oadrRegisterReport"}
        start = dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(minutes=10)
        prices = (0.31, 0.55, 0.92)
        vtn.create_event(
            DrEvent("rtp-7", "gridloom://programs/rtp", start, dt.timedelta(minutes=30),
                    (Signal(SignalName.ELECTRICITY_PRICE, "price", prices),), Targets(groups=("feeder-7",)))
        )  # fmt: skip
        await poll_until(ven, "oadrDistributeEvent")
        assert vtn.opts["rtp-7"] == {"ems-spec": "optOut"}
        assert vtn.opted_out("rtp-7") == {"ems-spec"}
        assert vtn.stats.refused == {}
        (event,) = ven.events
        ns = NSMAP
        assert event.text("ei:eiEvent/ei:eventDescriptor/ei:eventID") == "rtp-7"
        assert event.text("ei:eiEvent/ei:eventDescriptor/ei:eiMarketContext/emix:marketContext") == (
            "gridloom://programs/rtp"
        )
        dtstart = event.text("ei:eiEvent/ei:eiActivePeriod/xcal:properties/xcal:dtstart/xcal:date-time")
        assert dtstart is not None
        assert dt.datetime.fromisoformat(dtstart.replace("Z", "+00:00")) == start
        signal = event.body.find("ei:eiEvent/ei:eiEventSignals/ei:eiEventSignal", ns)
        assert signal is not None
        assert signal.findtext("ei:signalName", namespaces=ns) == "ELECTRICITY_PRICE"
        assert signal.findtext("ei:signalType", namespaces=ns) == "price"
        intervals = signal.findall("strm:intervals/ei:interval", ns)
        values = [
            float(i.findtext("ei:signalPayload/ei:payloadFloat/ei:value", namespaces=ns) or "nan") for i in intervals
        ]
        durations = [i.findtext("xcal:duration/xcal:duration", namespaces=ns) for i in intervals]
        assert values == list(prices)
        assert durations == ["PT30M"] * 3
    finally:
        await ven.close()


async def test_every_message_either_way_is_schema_valid_and_signed_per_the_profile(site: Site, vtn: Vtn):
    ven = site.spec_ven(vtn, "ems-audit")
    try:
        await ven.register()
        vtn.create_event(
            DrEvent("lvl-1", "gridloom://programs/reliability", dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5),
                    dt.timedelta(minutes=15), (Signal(SignalName.SIMPLE, "level", (2, 3)),),
                    Targets(ven_ids=("ems-audit",)))
        )  # fmt: skip
        await poll_until(ven, "oadrDistributeEvent")
        assert vtn.opts["lvl-1"] == {"ems-audit": "optIn"}
        kinds = set()
        for raw in [*ven.sent, *ven.received]:
            document = etree.fromstring(raw)
            validate(document, direction="recorded")
            signature = document[0]
            assert signature.tag == f"{{{DS}}}Signature"  # detached, before oadrSignedObject
            kinds.add(etree.QName(document[1][0]).localname)
        assert {"oadrCreatePartyRegistration", "oadrPoll", "oadrCreatedEvent", "oadrCreatedPartyRegistration",
                "oadrDistributeEvent", "oadrResponse"} <= kinds  # fmt: skip
    finally:
        await ven.close()


async def test_a_vtn_response_that_fails_schema_or_signature_is_refused(site: Site, vtn: Vtn):
    ven = site.spec_ven(vtn, "ems-wary")
    try:
        ven.tamper = lambda raw: raw.replace(b"LMS-1", b"LMS-X", 1)  # the signed vtnID changes
        with pytest.raises(SpecRefused) as altered:
            await ven.register()
        assert altered.value.reason == "signature"
        ven.tamper = lambda raw: raw.replace(b"oadrCreatedPartyRegistration", b"oadrCreatedPartyRegistrations")
        with pytest.raises(SpecRefused) as invalid:
            await ven.register()
        assert invalid.value.reason == "schema"
        ven.tamper = None
        await ven.register()
        replayed = ven.received[-1]
        with pytest.raises(SpecRefused) as replay:
            ven.verify(replayed)
        assert replay.value.reason == "replay"
    finally:
        await ven.close()


async def test_a_message_signed_by_another_key_than_the_vtns_is_refused(site: Site, vtn: Vtn):
    ven = site.spec_ven(vtn, "ems-pin")
    stranger = site.ca.issue_tls("lms", "lms-2", hosts=["127.0.0.1"])
    body = etree.Element(f"{{{OADR}}}oadrResponse", nsmap=NSMAP)
    body.set(f"{{{EI}}}schemaVersion", "2.0b")
    response = etree.SubElement(body, f"{{{EI}}}eiResponse")
    for tag, text in (("responseCode", "200"), ("responseDescription", "OK")):
        etree.SubElement(response, f"{{{EI}}}{tag}").text = text
    etree.SubElement(response, "{http://docs.oasis-open.org/ns/energyinterop/201110/payloads}requestID").text = "r"
    forged = sign(body, key=stranger.key, certificate=stranger.certificate, now=dt.datetime.now(dt.UTC))
    with pytest.raises(SpecRefused) as refused:
        ven.verify(etree.tostring(forged))
    assert refused.value.reason == "certificate"
    await ven.close()


async def test_a_spec_ven_with_a_foreign_or_revoked_certificate_cannot_connect(site: Site, vtn: Vtn):
    other = CertificateAuthority.init(site.folder / "other-ca")
    foreign = site.spec_ven(vtn, "ems-foreign", ca=other)  # enrolled by fingerprint, but another CA
    with pytest.raises((ssl.SSLError, OSError, SpecRefused)):
        await foreign.register()
    await foreign.close()
    revoked = site.spec_ven(vtn, "ems-revoked")
    await revoked.register()
    site.ca.revoke(x509.load_pem_x509_certificate(revoked.chain.read_bytes()))
    with pytest.raises(SpecRefused) as refused:  # the open connection: refused per request
        await revoked.poll()
    assert refused.value.reason == "http"
    assert "403" in str(refused.value)
    await revoked.close()
    site.vtn_files.refresh_crl(site.ca)
    assert vtn.stats.refused["revoked"] >= 1
    stranger = site.spec_ven(vtn, "ems-unknown", enrol=False)
    with pytest.raises(SpecRefused, match="403"):
        await stranger.register()
    await stranger.close()


async def test_a_revoked_spec_ven_fails_the_tls_handshake_once_the_vtn_has_the_crl(site: Site):
    tls = site.ca.issue_tls("customer_ems", "ems-gone")
    files = TlsFiles.write(site.ca, tls, site.folder / "gone")
    site.ca.revoke(tls.certificate)
    site.vtn_files.refresh_crl(site.ca)
    async with Vtn("LMS-1", tls=site.vtn_files, check=CertificateCheck.of(site.ca), poll_interval=POLL) as vtn:
        vtn.enrol("ems-gone", fingerprint=openadr_fingerprint(tls.certificate))
        assert files.chain is not None
        ven = SpecVen("ems-gone", vtn.url, files.chain, files.key, site.root, site.vtn_fingerprint)
        with pytest.raises((ssl.SSLError, OSError)):
            await ven.register()
        await ven.close()
        assert vtn.stats.handled == 0


def test_every_certificate_in_the_chain_is_ecdsa_sha256_p256_and_passes_openssl_strict(site: Site, tmp_path: Path):
    authority = site.ca.tls_authority()
    leaf = x509.load_pem_x509_certificate(site.vtn_files.cert.read_bytes())
    for certificate in (authority.root, authority.issuing, leaf):
        assert certificate.signature_algorithm_oid == SignatureAlgorithmOID.ECDSA_WITH_SHA256
        key = certificate.public_key()
        assert isinstance(key, ec.EllipticCurvePublicKey)
        assert key.curve.name == "secp256r1"
    assert authority.root.issuer == authority.root.subject
    assert authority.issuing.issuer == authority.root.subject
    assert leaf.issuer == authority.issuing.subject
    assert authority.issuing.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    usage = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(usage) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    crl = x509.load_pem_x509_crl(site.vtn_files.crl.read_bytes())
    assert crl.issuer == authority.issuing.subject
    assert crl.signature_algorithm_oid == SignatureAlgorithmOID.ECDSA_WITH_SHA256
    assert crl.is_signature_valid(authority.issuing.public_key())
    # Python's ssl with X509_STRICT builds and accepts the chain (root is the only anchor) ...
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.verify_flags |= ssl.VERIFY_X509_STRICT | ssl.VERIFY_CRL_CHECK_LEAF
    context.load_verify_locations(cafile=str(authority.root_path))
    context.load_verify_locations(cafile=str(authority.crl_path))
    # ... and so does the openssl command line, in strict mode with the CRL
    result = subprocess.run(
        ["openssl", "verify", "-x509_strict", "-crl_check", "-CAfile", str(authority.root_path),
         "-untrusted", str(authority.issuing_path), "-CRLfile", str(authority.crl_path), str(site.vtn_files.cert)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("OK")
    assert fingerprint(leaf) == site.vtn_fingerprint  # the spec VEN's own fingerprint agrees with gridloom's


def test_gridloom_s_profile_signature_is_accepted_by_gridloom_s_own_guard(site: Site):
    """Wiring :func:`message_factory` into the VTN (or a gridloom VEN) keeps gridloom's receivers working."""
    make = message_factory(site.vtn_files)
    message = make("oadrResponse", response={"response_code": 200, "response_description": "OK", "request_id": "r1"},
                   ven_id="ems-1")  # fmt: skip
    signer = MessageGuard(CertificateCheck.of(site.ca)).verify(
        message.encode(), expected_fingerprint=site.vtn_fingerprint
    )
    assert openadr_fingerprint(signer) == site.vtn_fingerprint
    document = etree.fromstring(message.encode())
    canonicalisation = document.find(f"{{{DS}}}Signature/{{{DS}}}SignedInfo/{{{DS}}}CanonicalizationMethod")
    assert canonicalisation is not None
    assert canonicalisation.get("Algorithm") == "http://www.w3.org/2001/10/xml-exc-c14n#"
