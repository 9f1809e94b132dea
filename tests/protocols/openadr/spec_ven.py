"""A minimal OpenADR 2.0b VEN written from the specification, to prove gridloom's VTN interoperates.

Nothing here comes from openleadr (its messaging, templates or client): payloads are built with
lxml in the element order of the Alliance's 2.0b schema, every message sent *and* received is
validated against that schema (``oadr_20b.xsd``; only the schema file is read from openleadr's
package folder), and signatures are written by hand as the profile describes them:

* ``ds:Signature`` is a child of ``oadrPayload``, before ``oadrSignedObject`` (detached);
* ``SignedInfo``: exclusive canonicalisation, ``ecdsa-sha256``, and two references with an
  exclusive-c14n transform and a SHA-256 digest: ``#oadrSignedObject`` and the
  ``ds:SignatureProperties`` holding the ``dsp:ReplayProtect`` (timestamp + nonce) property, whose
  ``ds:SignatureProperty/@Target`` names the signature;
* ``KeyInfo/X509Data`` carries the signer's certificate.

Received signatures are held to the same profile before signxml verifies them; the VTN's
signing certificate must have the configured OpenADR fingerprint and chain to the root.

TLS is 1.2 with the profile's ECC cipher suite (``ECDHE-ECDSA-AES128-SHA256``), a client
certificate chain, ``VERIFY_X509_STRICT`` and host name checking, trusting the root only (the
VTN must send its intermediate).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import importlib.util
import ipaddress
import ssl
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError
from lxml import etree
from signxml import XMLVerifier
from signxml.exceptions import InvalidInput, InvalidSignature

OADR = "http://openadr.org/oadr-2.0b/2012/07"
EI = "http://docs.oasis-open.org/ns/energyinterop/201110"
PYLD = "http://docs.oasis-open.org/ns/energyinterop/201110/payloads"
EMIX = "http://docs.oasis-open.org/ns/emix/2011/06"
POWER = "http://docs.oasis-open.org/ns/emix/2011/06/power"
SCALE = "http://docs.oasis-open.org/ns/emix/2011/06/siscale"
XCAL = "urn:ietf:params:xml:ns:icalendar-2.0"
STRM = "urn:ietf:params:xml:ns:icalendar-2.0:stream"
DS = "http://www.w3.org/2000/09/xmldsig#"
DSP = "http://openadr.org/oadr-2.0b/2012/07/xmldsig-properties"
NSMAP = {"oadr": OADR, "ei": EI, "pyld": PYLD, "emix": EMIX, "power": POWER, "scale": SCALE,
         "xcal": XCAL, "strm": STRM}  # fmt: skip

EXC_C14N = "http://www.w3.org/2001/10/xml-exc-c14n#"
ECDSA_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256"
RSA_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
SHA256 = "http://www.w3.org/2001/04/xmlenc#sha256"
PROPERTIES_TYPE = "http://www.w3.org/2000/09/xmldsig#SignatureProperties"
PROFILE_CIPHERS = "ECDHE-ECDSA-AES128-SHA256"  # TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)


def _schema() -> etree.XMLSchema:
    spec = importlib.util.find_spec("openleadr")  # locates the package folder without importing it
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the OpenADR 2.0b schema files (shipped in openleadr/schema) are not installed")
    path = Path(next(iter(spec.submodule_search_locations))) / "schema" / "oadr_20b.xsd"
    return etree.XMLSchema(etree.parse(str(path)))


SCHEMA = _schema()


class SpecRefused(Exception):
    """The spec VEN refused a message from the VTN (``reason``: schema, signature, certificate, replay, http)."""

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


def q(ns: str, name: str) -> str:
    return f"{{{ns}}}{name}"


def el(ns: str, name: str, *children: etree._Element, text: str | None = None) -> etree._Element:
    element = etree.Element(q(ns, name), nsmap=NSMAP)
    element.extend(children)
    if text is not None:
        element.text = text
    return element


def stamp(at: dt.datetime) -> str:
    return at.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def fingerprint(certificate: x509.Certificate) -> str:
    """OpenADR fingerprint (spec 10.x): the last 20 hex digits of SHA-256 over the DER, colon-separated."""
    digest = hashlib.sha256(certificate.public_bytes(serialization.Encoding.DER)).hexdigest().upper()[-20:]
    return ":".join(digest[i : i + 2] for i in range(0, 20, 2))


def validate(document: etree._Element, *, direction: str) -> None:
    if not SCHEMA.validate(document):
        errors = "; ".join(str(e) for e in list(SCHEMA.error_log)[:3])
        raise SpecRefused(f"{direction} message is not valid OpenADR 2.0b: {errors}", reason="schema")


def _c14n(element: etree._Element) -> bytes:
    return etree.tostring(element, method="c14n", exclusive=True, with_comments=False)


def sign(
    body: etree._Element, *, key: ec.EllipticCurvePrivateKey, certificate: x509.Certificate, now: dt.datetime
) -> etree._Element:
    """``oadrPayload`` with ``body`` in ``oadrSignedObject`` and a detached signature as the profile describes."""
    payload = etree.Element(q(OADR, "oadrPayload"), nsmap={"oadr": OADR, "ds": DS, "dsp": DSP})
    signed_object = etree.SubElement(payload, q(OADR, "oadrSignedObject"), {q(OADR, "Id"): "oadrSignedObject"})
    signed_object.append(body)
    signature_id, properties_id = f"sig-{uuid.uuid4().hex}", f"props-{uuid.uuid4().hex}"
    signature = etree.Element(q(DS, "Signature"), {"Id": signature_id}, nsmap={"ds": DS})
    payload.insert(0, signature)
    signed_info = etree.SubElement(signature, q(DS, "SignedInfo"))
    etree.SubElement(signed_info, q(DS, "CanonicalizationMethod"), Algorithm=EXC_C14N)
    etree.SubElement(signed_info, q(DS, "SignatureMethod"), Algorithm=ECDSA_SHA256)
    value = etree.SubElement(signature, q(DS, "SignatureValue"))
    x509_data = etree.SubElement(etree.SubElement(signature, q(DS, "KeyInfo")), q(DS, "X509Data"))
    der = certificate.public_bytes(serialization.Encoding.DER)
    etree.SubElement(x509_data, q(DS, "X509Certificate")).text = base64.b64encode(der).decode()
    properties = etree.SubElement(etree.SubElement(signature, q(DS, "Object")), q(DS, "SignatureProperties"))
    properties.set("Id", properties_id)
    prop = etree.SubElement(properties, q(DS, "SignatureProperty"), Target=f"#{signature_id}")
    replay = etree.SubElement(prop, q(DSP, "ReplayProtect"), nsmap={"dsp": DSP})
    etree.SubElement(replay, q(DSP, "timestamp")).text = stamp(now)
    etree.SubElement(replay, q(DSP, "nonce")).text = uuid.uuid4().hex
    for uri, target, kind in (
        ("#oadrSignedObject", signed_object, None),
        (f"#{properties_id}", properties, PROPERTIES_TYPE),
    ):
        reference = etree.Element(q(DS, "Reference"), URI=uri)
        if kind is not None:
            reference.set("Type", kind)
        signed_info.append(reference)
        etree.SubElement(etree.SubElement(reference, q(DS, "Transforms")), q(DS, "Transform"), Algorithm=EXC_C14N)
        etree.SubElement(reference, q(DS, "DigestMethod"), Algorithm=SHA256)
        digest = hashlib.sha256(_c14n(target)).digest()
        etree.SubElement(reference, q(DS, "DigestValue")).text = base64.b64encode(digest).decode()
    r, s = decode_dss_signature(key.sign(_c14n(signed_info), ec.ECDSA(hashes.SHA256())))
    value.text = base64.b64encode(r.to_bytes(32, "big") + s.to_bytes(32, "big")).decode()  # XMLDSig: r || s
    return payload


@dataclass
class Received:
    """A verified message from the VTN: its type and the element inside ``oadrSignedObject``."""

    kind: str
    body: etree._Element

    def text(self, path: str) -> str | None:
        return self.body.findtext(path, namespaces=NSMAP)


@dataclass
class SpecVen:
    """One spec VEN: ``await register()``, ``await poll()``; answers events with ``decide``."""

    ven_name: str
    vtn_url: str  # .../OpenADR2/Simple/2.0b
    chain: Path  # own certificate followed by the issuing CA's
    key: Path
    root: Path  # the only trust anchor
    vtn_fingerprint: str
    decide: Callable[[Received], str] = lambda event: "optIn"  # returns optIn / optOut
    clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC)
    window_s: float = 300.0
    ven_id: str | None = None
    registration_id: str | None = None
    vtn_id: str | None = None
    events: list[Received] = field(default_factory=list)
    sent: list[bytes] = field(default_factory=list)
    received: list[bytes] = field(default_factory=list)
    answered: dict[str, str] = field(default_factory=dict)  # event id -> optIn / optOut
    tamper: Callable[[bytes], bytes] | None = None  # test hook: alters each VTN response before checks
    _nonces: set[str] = field(default_factory=set)
    _session: aiohttp.ClientSession | None = None

    def __post_init__(self) -> None:
        pem = self.chain.read_bytes()
        self.certificate = x509.load_pem_x509_certificates(pem)[0]
        key = serialization.load_pem_private_key(self.key.read_bytes(), None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise TypeError("the spec VEN signs with an ECC P-256 key")
        self._key = key
        self._root = x509.load_pem_x509_certificate(self.root.read_bytes())

    # --------------------------------------------------------------- transport
    def tls_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.minimum_version = context.maximum_version = ssl.TLSVersion.TLSv1_2
        context.set_ciphers(PROFILE_CIPHERS)
        context.check_hostname = True
        context.verify_mode = ssl.CERT_REQUIRED
        context.verify_flags |= ssl.VERIFY_X509_STRICT
        context.load_verify_locations(cafile=str(self.root))
        context.load_cert_chain(str(self.chain), str(self.key))
        return context

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _post(self, service: str, body: etree._Element) -> Received | None:
        payload = sign(body, key=self._key, certificate=self.certificate, now=self.clock())
        validate(payload, direction="outgoing")
        data = etree.tostring(payload, xml_declaration=True, encoding="UTF-8")
        self.sent.append(data)
        if self._session is None:
            self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=self.tls_context()))
        async with self._session.post(
            f"{self.vtn_url}/{service}", data=data, headers={"Content-Type": "application/xml"}
        ) as response:
            content = await response.read()
            if response.status != 200:
                raise SpecRefused(f"{service}: HTTP {response.status}: {content[:200]!r}", reason="http")
            content_type = response.headers.get("Content-Type", "")
        if not content.strip():
            return None  # an empty 200 is the answer to an oadrResponse
        if not content_type.startswith("application/xml"):  # simple HTTP transport: XML bodies are application/xml
            raise SpecRefused(f"{service}: the VTN answered with Content-Type {content_type!r}", reason="http")
        if self.tamper is not None:
            content = self.tamper(content)
        self.received.append(content)
        return self.verify(content)

    # --------------------------------------------------------------- checking what the VTN sent
    def verify(self, content: bytes) -> Received:
        try:
            document = etree.fromstring(content, _PARSER)
        except etree.XMLSyntaxError as exc:
            raise SpecRefused(f"not XML: {exc}", reason="schema") from exc
        validate(document, direction="incoming")
        signature = document.find(q(DS, "Signature"))
        if signature is None:
            raise SpecRefused("the VTN's message is not signed", reason="signature")
        self._check_profile(document, signature)
        certificate = self._signer(signature)
        pem = certificate.public_bytes(serialization.Encoding.PEM)
        try:
            results = XMLVerifier().verify(document, x509_cert=pem, expect_references=2)
        except (InvalidSignature, InvalidInput) as exc:
            raise SpecRefused(f"the VTN's signature does not verify: {exc}", reason="signature") from exc
        signed = [
            r.signed_xml
            for r in results
            if r.signed_xml is not None and r.signed_xml.tag == q(OADR, "oadrSignedObject")
        ]
        if len(signed) != 1 or len(signed[0]) != 1:
            raise SpecRefused("the signature does not cover one oadrSignedObject", reason="signature")
        self._check_replay(signature)
        body = signed[0][0]
        return Received(etree.QName(body).localname, body)

    def _check_profile(self, document: etree._Element, signature: etree._Element) -> None:
        """The XMLDSig profile of OpenADR 2.0b: algorithms, what is referenced, the ReplayProtect property."""

        def algorithm(path: str) -> list[str]:
            return [str(e.get("Algorithm")) for e in signature.iterfind(path, namespaces={"ds": DS})]

        problems = []
        if algorithm("ds:SignedInfo/ds:CanonicalizationMethod") != [EXC_C14N]:
            problems.append(
                f"CanonicalizationMethod {algorithm('ds:SignedInfo/ds:CanonicalizationMethod')}, not exclusive c14n"
            )
        if algorithm("ds:SignedInfo/ds:SignatureMethod")[0] not in (ECDSA_SHA256, RSA_SHA256):
            problems.append(f"SignatureMethod {algorithm('ds:SignedInfo/ds:SignatureMethod')}")
        if set(algorithm("ds:SignedInfo/ds:Reference/ds:DigestMethod")) != {SHA256}:
            problems.append("a Reference digest is not SHA-256")
        if set(algorithm("ds:SignedInfo/ds:Reference/ds:Transforms/ds:Transform")) - {EXC_C14N}:
            problems.append(
                f"Reference transforms {algorithm('ds:SignedInfo/ds:Reference/ds:Transforms/ds:Transform')}"
            )
        uris = [r.get("URI", "") for r in signature.iterfind("ds:SignedInfo/ds:Reference", namespaces={"ds": DS})]
        if len(uris) != 2 or "#oadrSignedObject" not in uris:
            problems.append(f"references {uris}, expected #oadrSignedObject and the signature properties")
        replay = signature.find(f"ds:Object//ds:SignatureProperty/{{{DSP}}}ReplayProtect", namespaces={"ds": DS})
        if replay is None:
            problems.append("no dsp:ReplayProtect signature property")
        else:
            prop = replay.getparent()
            target = prop.get("Target") if prop is not None else None
            if not signature.get("Id") or target != f"#{signature.get('Id')}":
                problems.append(
                    f"SignatureProperty Target {target!r} does not name the Signature (Id {signature.get('Id')!r})"
                )
            covered = {u.removeprefix("#") for u in uris}
            holders = [a for a in replay.iterancestors() if a.get("Id") in covered]
            if not holders:
                problems.append("the ReplayProtect property is not covered by a Reference")
        if problems:
            raise SpecRefused(
                "the VTN's signature departs from the OpenADR 2.0b profile: " + "; ".join(problems), reason="profile"
            )

    def _signer(self, signature: etree._Element) -> x509.Certificate:
        texts = [
            t.text or "" for t in signature.iterfind("ds:KeyInfo/ds:X509Data/ds:X509Certificate", namespaces={"ds": DS})
        ]
        if not texts:
            raise SpecRefused("no signing certificate in KeyInfo", reason="certificate")
        certificates = [x509.load_der_x509_certificate(base64.b64decode("".join(t.split()))) for t in texts]
        leaf = certificates[0]
        if fingerprint(leaf) != self.vtn_fingerprint:
            raise SpecRefused(
                f"signed by {fingerprint(leaf)}, not the VTN ({self.vtn_fingerprint})", reason="certificate"
            )
        host = self.vtn_url.split("//", 1)[1].split("/", 1)[0].rsplit(":", 1)[0]
        try:
            name: x509.DNSName | x509.IPAddress = x509.IPAddress(ipaddress.ip_address(host))
        except ValueError:
            name = x509.DNSName(host)
        verifier = PolicyBuilder().store(Store([self._root])).time(self.clock()).build_server_verifier(name)
        try:
            verifier.verify(leaf, certificates[1:])
        except VerificationError as exc:
            raise SpecRefused(
                f"the VTN's signing certificate does not chain to the root: {exc}", reason="certificate"
            ) from exc
        return leaf

    def _check_replay(self, signature: etree._Element) -> None:
        at = signature.findtext(f".//{{{DSP}}}timestamp")
        nonce = signature.findtext(f".//{{{DSP}}}nonce")
        if not at or not nonce:
            raise SpecRefused("ReplayProtect without timestamp or nonce", reason="replay")
        signed_at = dt.datetime.fromisoformat(at.strip().replace("Z", "+00:00"))
        if signed_at.tzinfo is None:
            signed_at = signed_at.replace(tzinfo=dt.UTC)
        if abs((self.clock() - signed_at).total_seconds()) > self.window_s:
            raise SpecRefused(f"the VTN's message was signed at {at}, outside the window", reason="replay")
        if nonce in self._nonces:
            raise SpecRefused("a replayed VTN message (nonce seen before)", reason="replay")
        self._nonces.add(nonce)

    # --------------------------------------------------------------- payloads
    def _response(self, code: int, description: str, request_id: str) -> etree._Element:
        return el(EI, "eiResponse", el(EI, "responseCode", text=str(code)),
                  el(EI, "responseDescription", text=description), el(PYLD, "requestID", text=request_id))  # fmt: skip

    @staticmethod
    def _message(name: str, *children: etree._Element) -> etree._Element:
        message = el(OADR, name, *children)
        message.set(q(EI, "schemaVersion"), "2.0b")
        return message

    @staticmethod
    def _expect(received: Received | None, kind: str) -> Received:
        if received is None or received.kind != kind:
            got = None if received is None else received.kind
            raise SpecRefused(f"expected {kind}, the VTN answered {got}", reason="protocol")
        code = received.text("ei:eiResponse/ei:responseCode")
        if code is not None and not code.startswith("2"):
            raise SpecRefused(f"{kind} carries response code {code}", reason="protocol")
        return received

    async def register(self) -> Received:
        """oadrQueryRegistration, then oadrCreatePartyRegistration (2.0b, simpleHttp, pull, signed)."""
        query = self._message("oadrQueryRegistration", el(PYLD, "requestID", text=uuid.uuid4().hex))
        answer = self._expect(await self._post("EiRegisterParty", query), "oadrCreatedPartyRegistration")
        self.vtn_id = answer.text("ei:vtnID")
        create = self._message(
            "oadrCreatePartyRegistration",
            el(PYLD, "requestID", text=uuid.uuid4().hex),
            el(OADR, "oadrProfileName", text="2.0b"),
            el(OADR, "oadrTransportName", text="simpleHttp"),
            el(OADR, "oadrReportOnly", text="false"),
            el(OADR, "oadrXmlSignature", text="true"),
            el(OADR, "oadrVenName", text=self.ven_name),
            el(OADR, "oadrHttpPullModel", text="true"),
        )
        answer = self._expect(await self._post("EiRegisterParty", create), "oadrCreatedPartyRegistration")
        self.ven_id = answer.text("ei:venID")
        self.registration_id = answer.text("ei:registrationID")
        if not self.ven_id or not self.registration_id:
            raise SpecRefused("the VTN did not register this VEN", reason="protocol")
        return answer

    async def register_reports(self, *, resource_id: str = "site") -> Received:
        """oadrRegisterReport with the METADATA_TELEMETRY_USAGE description of the site's real power."""
        power = el(POWER, "powerReal", el(POWER, "itemDescription", text="RealPower"), el(POWER, "itemUnits", text="W"),
                   el(SCALE, "siScaleCode", text="none"),
                   el(POWER, "powerAttributes", el(POWER, "hertz", text="60"), el(POWER, "voltage", text="230"),
                      el(POWER, "ac", text="true")))  # fmt: skip
        sampling = el(OADR, "oadrSamplingRate", el(OADR, "oadrMinPeriod", text="PT10S"),
                      el(OADR, "oadrMaxPeriod", text="PT1H"), el(OADR, "oadrOnChange", text="false"))  # fmt: skip
        description = el(OADR, "oadrReportDescription", el(EI, "rID", text=f"{resource_id}-power"),
                         el(EI, "reportDataSource", el(EI, "resourceID", text=resource_id)),
                         el(EI, "reportType", text="usage"), power, el(EI, "readingType", text="Direct Read"),
                         sampling)  # fmt: skip
        report = el(OADR, "oadrReport",
                    el(XCAL, "duration", el(XCAL, "duration", text="PT2H")), description,
                    el(EI, "reportRequestID", text="0"), el(EI, "reportSpecifierID", text=f"{self.ven_name}-telemetry"),
                    el(EI, "reportName", text="METADATA_TELEMETRY_USAGE"),
                    el(EI, "createdDateTime", text=stamp(self.clock())))  # fmt: skip
        message = self._message("oadrRegisterReport", el(PYLD, "requestID", text=uuid.uuid4().hex), report,
                                el(EI, "venID", text=self._id()))  # fmt: skip
        answer = self._expect(await self._post("EiReport", message), "oadrRegisteredReport")
        requests = answer.body.findall("oadr:oadrReportRequest", namespaces=NSMAP)
        if requests:
            ids = [r.findtext("ei:reportRequestID", namespaces=NSMAP) or "" for r in requests]
            await self._created_report(ids, answer.text("ei:eiResponse/pyld:requestID") or "")
        return answer

    async def _created_report(self, report_request_ids: list[str], request_id: str) -> None:
        pending = el(OADR, "oadrPendingReports", *(el(EI, "reportRequestID", text=i) for i in report_request_ids))
        message = self._message("oadrCreatedReport", self._response(200, "OK", request_id), pending,
                                el(EI, "venID", text=self._id()))  # fmt: skip
        answer = await self._post("EiReport", message)
        if answer is not None:
            self._expect(answer, "oadrResponse")

    async def poll(self) -> Received | None:
        """oadrPoll once; an oadrDistributeEvent is answered with oadrCreatedEvent (optIn/optOut)."""
        answer = await self._post("OadrPoll", self._message("oadrPoll", el(EI, "venID", text=self._id())))
        if answer is None:
            return None
        if answer.kind == "oadrDistributeEvent":
            await self._created_event(answer)
        elif answer.kind == "oadrRegisterReport":  # the VTN's own reports: acknowledge them
            ack = self._message("oadrRegisteredReport", self._response(200, "OK", answer.text("pyld:requestID") or ""),
                                el(EI, "venID", text=self._id()))  # fmt: skip
            await self._post("EiReport", ack)
        elif answer.kind == "oadrCreateReport":
            ids = [
                e.text or ""
                for e in answer.body.iterfind("oadr:oadrReportRequest/ei:reportRequestID", namespaces=NSMAP)
            ]
            await self._created_report(ids, answer.text("pyld:requestID") or "")
        return answer

    async def _created_event(self, distribute: Received) -> None:
        request_id = distribute.text("pyld:requestID") or ""
        if distribute.text("ei:vtnID") != self.vtn_id:
            raise SpecRefused(f"oadrDistributeEvent from vtnID {distribute.text('ei:vtnID')}", reason="protocol")
        responses = []
        for event in distribute.body.iterfind("oadr:oadrEvent", namespaces=NSMAP):
            ei_event = event.find("ei:eiEvent", namespaces=NSMAP)
            if ei_event is None:
                continue
            event_id = ei_event.findtext("ei:eventDescriptor/ei:eventID", namespaces=NSMAP) or ""
            modification = ei_event.findtext("ei:eventDescriptor/ei:modificationNumber", namespaces=NSMAP) or "0"
            self.events.append(Received("oadrEvent", event))
            if event.findtext("oadr:oadrResponseRequired", namespaces=NSMAP) != "always":
                continue
            opt = self.decide(Received("oadrEvent", event))
            self.answered[event_id] = opt
            responses.append(el(EI, "eventResponse", el(EI, "responseCode", text="200"),
                                el(EI, "responseDescription", text="OK"), el(PYLD, "requestID", text=request_id),
                                el(EI, "qualifiedEventID", el(EI, "eventID", text=event_id),
                                   el(EI, "modificationNumber", text=modification)),
                                el(EI, "optType", text=opt)))  # fmt: skip
        if not responses:
            return
        created = el(PYLD, "eiCreatedEvent", self._response(200, "OK", request_id),
                     el(EI, "eventResponses", *responses), el(EI, "venID", text=self._id()))  # fmt: skip
        answer = await self._post("EiEvent", self._message("oadrCreatedEvent", created))
        if answer is not None:
            self._expect(answer, "oadrResponse")

    def _id(self) -> str:
        if self.ven_id is None:
            raise SpecRefused("not registered", reason="protocol")
        return self.ven_id
