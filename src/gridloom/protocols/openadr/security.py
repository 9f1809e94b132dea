"""OpenADR 2.0b security, done by gridloom rather than left to openleadr.

OpenADR 2.0b runs over TLS with X.509 client certificates; messages may carry an XML signature
(XMLDSig, detached, over ``#oadrSignedObject``, with a ``ReplayProtect`` property of a timestamp
and a nonce). gridloom requires all of it, on both sides, and checks it itself:

1. TLS: TLS 1.2 or newer, the peer's certificate chains to gridloom's OpenADR root through the
   issuing CA, passes OpenSSL's strict X.509 checks (``VERIFY_X509_STRICT``) and is not on the
   issuing CA's CRL (:func:`server_context`, :func:`client_context`);
2. per request, again (a keep-alive connection outlives a revocation): the peer certificate
   validates leaf → issuing CA → root (ECDSA signatures, validity, constraints, key usage), is
   valid now and not revoked (:class:`CertificateCheck`);
3. the message parses against the OpenADR 2.0b schema and carries a signature (unsigned
   messages are refused: openleadr's own check of that is an ``assert``);
4. the signing certificate is the TLS peer's (VTN side) or the VTN's known one (VEN side), and
   is itself issued by our CA and not revoked;
5. the signature is canonicalised with exclusive c14n (the profile's; openleadr's inclusive
   signatures are refused), verifies (signxml), and covers the one ``oadrSignedObject`` the
   receiver reads (no signature wrapping);
6. the ``ReplayProtect`` property the signature covers (one elsewhere is not read): its timestamp
   lies within ``window_s`` of the injected clock and its nonce was not seen before
   (:class:`NonceCache`, per receiver — openleadr's cache is a module global with a fixed
   5-second window).

Certificates follow the OpenADR 2.0 certificate profile (ECC P-256, ECDSA with SHA-256): gridloom's
keystore holds an OpenADR root and an issuing CA (:class:`~gridloom.fabric.identity.TlsAuthority`);
every endpoint presents its certificate followed by the issuing CA's, and trusts the root.

gridloom signs what it sends as the 2.0b XMLDSig profile says (:func:`sign_payload`,
:func:`create_message`): a detached ``ds:Signature`` before ``oadrSignedObject`` in
``oadrPayload``, exclusive canonicalisation, SHA-256 digests, ``ecdsa-sha256`` with the TLS key,
and the ``dsp:ReplayProtect`` property in a ``ds:SignatureProperty`` whose ``Target`` names the
signature. (openleadr's own signer uses inclusive c14n and a ``Target`` that names nothing: the VTN's
and the VEN's openleadr objects are given :func:`message_factory` instead.)

Fingerprints in OpenADR are the last 10 bytes of the SHA-256 of the certificate's DER, as
colon-separated hex (:func:`openadr_fingerprint`); a VTN knows each VEN's fingerprint out of
band (from enrolment), as the specification requires.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import heapq
import shutil
import ssl
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError
from lxml import etree
from signxml.algorithms import CanonicalizationMethod, DigestAlgorithm, SignatureConstructionMethod, SignatureMethod
from signxml.exceptions import InvalidInput, InvalidSignature
from signxml.signer import XMLSigner
from signxml.verifier import XMLVerifier

from gridloom.errors import OpenAdrConfigError, OpenAdrRefused
from gridloom.fabric.identity import CertificateAuthority, Clock, TlsIdentity, utc_now

OADR_NS = "http://openadr.org/oadr-2.0b/2012/07"
DSIG_NS = "http://www.w3.org/2000/09/xmldsig#"
DSP_NS = "http://openadr.org/oadr-2.0b/2012/07/xmldsig-properties"
FORBIDDEN = 403
BAD_REQUEST = 400
EXCLUSIVE_C14N = "http://www.w3.org/2001/10/xml-exc-c14n#"
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)


def openadr_fingerprint(certificate: x509.Certificate) -> str:
    """OpenADR's certificate fingerprint: the last 10 bytes of SHA-256(DER), upper-case hex, colon-separated."""
    digest = hashlib.sha256(certificate.public_bytes(serialization.Encoding.DER)).hexdigest()
    return ":".join(digest[i : i + 2].upper() for i in range(44, 64, 2))


@dataclass(frozen=True)
class TlsFiles:
    """The files a TLS endpoint needs.

    ``cert`` is the endpoint's own certificate (it also signs XML with it), ``key`` its key, ``ca``
    the trust file (the OpenADR root and issuing CA), ``crl`` the issuing CA's CRL and ``chain``
    the certificate followed by the issuing CA's, which the endpoint presents in the handshake
    (without it, ``cert`` alone is presented and the peer finds the issuing CA in its trust file).
    """

    cert: Path
    key: Path
    ca: Path
    crl: Path
    chain: Path | None = None

    @classmethod
    def write(cls, ca: CertificateAuthority, tls: TlsIdentity, folder: Path) -> TlsFiles:
        """Write ``tls``'s certificate, chain and key beside the OpenADR trust file and the current CRL."""
        folder = Path(folder)
        cert, key = tls.write(folder)
        authority = ca.tls_authority()
        ca_copy, crl_copy = folder / "ca.crt", folder / "crl.pem"
        shutil.copyfile(authority.trust_path, ca_copy)
        shutil.copyfile(authority.crl_path, crl_copy)
        return cls(cert, key, ca_copy, crl_copy, tls.chain_path(folder))

    def refresh_crl(self, ca: CertificateAuthority) -> None:
        """Copy the issuing CA's current CRL (after a revocation)."""
        shutil.copyfile(ca.tls_authority().crl_path, self.crl)


def _load_trust(context: ssl.SSLContext, files: TlsFiles) -> None:
    try:
        context.load_verify_locations(cafile=str(files.ca))
        context.load_verify_locations(cafile=str(files.crl))  # a PEM CRL is accepted here
        context.load_cert_chain(str(files.chain or files.cert), str(files.key))
    except (OSError, ssl.SSLError) as exc:
        raise OpenAdrConfigError(f"cannot load the TLS files {files}: {exc}") from exc
    context.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF | ssl.VERIFY_X509_STRICT
    context.minimum_version = ssl.TLSVersion.TLSv1_2


def server_context(files: TlsFiles) -> ssl.SSLContext:
    """A VTN's TLS context: client certificates required, chained to our root, checked against the CRL."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.verify_mode = ssl.CERT_REQUIRED
    _load_trust(context, files)
    return context


def client_context(files: TlsFiles) -> ssl.SSLContext:
    """A VEN's TLS context: the VTN's certificate must chain to our root, match the host and not be revoked."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = True
    _load_trust(context, files)
    return context


class CertificateCheck:
    """Is a certificate ours (leaf → issuing CA → root), valid at this moment and not revoked?

    The path is validated by cryptography's RFC 5280 verifier (signatures, validity of every
    certificate, basic constraints, key usage, extended key usage ``clientAuth``), against the
    OpenADR root only: the issuing CA is an intermediate, never a trust anchor. ``revoked`` (the
    issuing CA's CRL serials) is called on every check, so a revocation takes effect on the next
    message.
    """

    def __init__(
        self,
        root: x509.Certificate,
        *,
        intermediates: Iterable[x509.Certificate],
        revoked: Callable[[], Iterable[int]],
        clock: Clock = utc_now,
    ) -> None:
        if root.issuer != root.subject:
            raise OpenAdrConfigError("the OpenADR trust anchor must be a self-signed root certificate")
        self._store = Store([root])
        self._intermediates = list(intermediates)
        self._revoked = revoked
        self._clock = clock

    @classmethod
    def of(cls, ca: CertificateAuthority, *, clock: Clock = utc_now) -> CertificateCheck:
        authority = ca.tls_authority()
        return cls(authority.root, intermediates=[authority.issuing], revoked=ca.tls_revoked_serials, clock=clock)

    def check(self, certificate: x509.Certificate) -> None:
        who = certificate.subject.rfc4514_string()
        now = self._clock()
        if not certificate.not_valid_before_utc <= now <= certificate.not_valid_after_utc:
            raise OpenAdrRefused(f"certificate of {who} is not valid now", code=FORBIDDEN, reason="expired")
        verifier = PolicyBuilder().store(self._store).time(now).build_client_verifier()
        try:
            verifier.verify(certificate, self._intermediates)
        except VerificationError as exc:
            raise OpenAdrRefused(
                f"certificate of {who} does not chain to gridloom's OpenADR root: {exc}", code=FORBIDDEN, reason="ca"
            ) from exc
        if certificate.serial_number in set(self._revoked()):
            raise OpenAdrRefused(f"certificate of {who} is revoked", code=FORBIDDEN, reason="revoked")


def sign_payload(
    signed_object: bytes, *, key_pem: bytes, cert_pem: bytes, clock: Clock = utc_now, passphrase: bytes | None = None
) -> bytes:
    """``oadrPayload`` holding ``signed_object`` (an ``oadrSignedObject``) and its XML signature, per the 2.0b profile.

    ``cert_pem`` may hold the signer's certificate followed by its intermediates; all go into
    ``KeyInfo/X509Data``, the signer's first.
    """
    try:
        tree = etree.fromstring(signed_object, _PARSER)
        key = serialization.load_pem_private_key(key_pem, password=passphrase)
    except (etree.XMLSyntaxError, ValueError) as exc:
        raise OpenAdrConfigError(f"cannot sign an OpenADR message: {exc}") from exc
    if isinstance(key, ec.EllipticCurvePrivateKey):
        method = SignatureMethod.ECDSA_SHA256
    elif isinstance(key, rsa.RSAPrivateKey):
        method = SignatureMethod.RSA_SHA256
    else:
        raise OpenAdrConfigError("OpenADR 2.0b signs with ECC P-256 or RSA keys only")
    signature_id = f"sig-{uuid.uuid4().hex}"
    replay = etree.Element(
        f"{{{DSP_NS}}}ReplayProtect",
        {"Id": f"{signature_id}-replay", "Target": f"#{signature_id}"},
        nsmap={"dsp": DSP_NS},
    )
    etree.SubElement(replay, f"{{{DSP_NS}}}timestamp").text = (
        clock().astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    )
    etree.SubElement(replay, f"{{{DSP_NS}}}nonce").text = uuid.uuid4().hex
    signer = XMLSigner(
        method=SignatureConstructionMethod.detached,
        signature_algorithm=method,
        digest_algorithm=DigestAlgorithm.SHA256,
        c14n_algorithm=CanonicalizationMethod.EXCLUSIVE_XML_CANONICALIZATION_1_0,
    )
    signature = signer.sign(tree, key=key, cert=cert_pem.decode(), reference_uri="#oadrSignedObject",
                            signature_properties=replay)  # fmt: skip
    signature.set("Id", signature_id)  # the Signature's own Id is not digested; the Target above is
    # Joined as text, not by moving elements into a new tree: lxml would rewrite namespace prefixes
    # of moved elements (a default namespace becomes an ancestor's prefix), and the digest with them.
    return b"".join(
        (
            b'<?xml version="1.0" encoding="utf-8"?>\n',
            f'<oadr:oadrPayload xmlns:oadr="{OADR_NS}">'.encode(),
            etree.tostring(signature),
            etree.tostring(tree),
            b"</oadr:oadrPayload>",
        )
    )


def create_message(
    message_type: str,
    cert: bytes | None = None,
    key: bytes | None = None,
    passphrase: str | None = None,
    disable_signature: bool = False,
    **message_payload: Any,  # noqa: ANN401 - openleadr's template variables
) -> str:
    """openleadr's ``create_message`` with the signature of :func:`sign_payload` (openleadr renders the body)."""
    if not cert or not key or disable_signature:
        raise OpenAdrConfigError(f"{message_type}: gridloom signs every OpenADR message; give a certificate and key")
    signed_object = render_signed_object(message_type, message_payload)
    passphrase_bytes = passphrase.encode() if passphrase else None
    return sign_payload(signed_object.encode(), key_pem=key, cert_pem=cert, passphrase=passphrase_bytes).decode()


def render_signed_object(message_type: str, payload: Mapping[str, Any]) -> str:
    """The ``oadrSignedObject`` of a message, rendered by openleadr's template (after its preflight checks)."""
    from openleadr import messaging, utils

    ready = messaging.preflight_message(message_type, dict(payload))
    return str(utils.flatten_xml(messaging.TEMPLATES.get_template(f"{message_type}.xml").render(**ready)))


def message_factory(files: TlsFiles) -> Callable[..., str]:
    """What openleadr's ``_create_message`` should be for an endpoint with ``files``: :func:`create_message` bound
    to its certificate chain (``KeyInfo`` carries the issuing CA too, so a VEN trusting only the root can
    validate the signer) and key (for the VTN: ``VTNService._create_message = message_factory(tls)``; for a VEN's
    client: ``client._create_message = message_factory(tls)``)."""
    return partial(create_message, cert=(files.chain or files.cert).read_bytes(), key=files.key.read_bytes())


@dataclass
class NonceCache:
    """Nonces seen within the replay window; each receiver has its own (never a module global)."""

    window_s: float = 300.0
    _seen: set[str] = field(default_factory=set)
    _expiry: list[tuple[float, str]] = field(default_factory=list)

    def add(self, nonce: str, now_s: float) -> bool:
        """Record a nonce; False if it was seen within the window (a replay)."""
        while self._expiry and self._expiry[0][0] < now_s:
            _, old = heapq.heappop(self._expiry)
            self._seen.discard(old)
        if nonce in self._seen:
            return False
        self._seen.add(nonce)
        heapq.heappush(self._expiry, (now_s + 2 * self.window_s, nonce))
        return True

    def __len__(self) -> int:
        return len(self._seen)


def _certificate(b64: str) -> x509.Certificate:
    try:
        return x509.load_der_x509_certificate(base64.b64decode("".join(b64.split()), validate=True))
    except (ValueError, binascii.Error) as exc:
        raise OpenAdrRefused(f"unreadable signing certificate: {exc}", code=FORBIDDEN, reason="certificate") from exc


class MessageGuard:
    """Verifies received OpenADR messages (steps 3-6 of the module docstring); raises :class:`OpenAdrRefused`."""

    def __init__(
        self,
        check: CertificateCheck,
        *,
        clock: Clock = utc_now,
        window_s: float = 300.0,
        nonces: NonceCache | None = None,
    ) -> None:
        self.check = check
        self.clock = clock
        self.window_s = window_s
        self.nonces = nonces if nonces is not None else NonceCache(window_s)
        self._verifier = XMLVerifier()

    def verify(self, content: bytes, *, expected_fingerprint: str | None) -> x509.Certificate:
        """Check a received message; returns the certificate that signed it."""
        # Imported here: openleadr compiles the 2.0b schema when its messaging module loads.
        from openleadr.messaging import validate_xml_schema

        try:
            tree = validate_xml_schema(content)
        except etree.XMLSyntaxError as exc:
            raise OpenAdrRefused(f"not an OpenADR 2.0b message: {exc}", code=BAD_REQUEST, reason="schema") from exc
        signature = tree.find(f"{{{OADR_NS}}}oadrSignedObject/../{{{DSIG_NS}}}Signature")
        if signature is None:
            signature = tree.find(f".//{{{DSIG_NS}}}Signature")
        cert_text = tree.findtext(f".//{{{DSIG_NS}}}X509Certificate")
        if signature is None or not cert_text:
            raise OpenAdrRefused(
                "unsigned message: gridloom requires XML signatures", code=FORBIDDEN, reason="unsigned"
            )
        method = signature.find(f"{{{DSIG_NS}}}SignedInfo/{{{DSIG_NS}}}CanonicalizationMethod")
        if method is None or method.get("Algorithm") != EXCLUSIVE_C14N:
            raise OpenAdrRefused(
                "the signature is not canonicalised with exclusive c14n, as the OpenADR 2.0b profile requires",
                code=FORBIDDEN,
                reason="profile",
            )
        certificate = _certificate(cert_text)
        self.check.check(certificate)
        if expected_fingerprint is not None and openadr_fingerprint(certificate) != expected_fingerprint:
            raise OpenAdrRefused(
                f"signed with certificate {openadr_fingerprint(certificate)}, expected {expected_fingerprint}",
                code=FORBIDDEN,
                reason="fingerprint",
            )
        try:
            self._verifier.verify(tree, x509_cert=certificate, expect_references=2)
        except (InvalidSignature, InvalidInput) as exc:
            raise OpenAdrRefused(
                f"the XML signature does not verify: {exc}", code=FORBIDDEN, reason="signature"
            ) from exc
        # the element the signature's reference points at must be the one object the receiver parses
        ids = ("Id", f"{{{OADR_NS}}}Id")
        signed = [e for e in tree.iter() if any(e.get(a) == "oadrSignedObject" for a in ids)]
        if len(signed) != 1 or signed[0] is not tree.find(f"{{{OADR_NS}}}oadrSignedObject"):
            raise OpenAdrRefused("the signature does not cover the message read", code=FORBIDDEN, reason="signature")
        self._replay(signature)
        return certificate

    def _replay(self, signature: etree._Element) -> None:
        """The ReplayProtect property the signature covers (one placed elsewhere in the message is not read)."""
        referenced = {
            str(r.get("URI", "")).removeprefix("#")
            for r in signature.iterfind(f"{{{DSIG_NS}}}SignedInfo/{{{DSIG_NS}}}Reference")
        }
        replay = next(
            (
                p
                for p in signature.iter(f"{{{DSP_NS}}}ReplayProtect")
                if any(a.get("Id") in referenced for a in (p, *p.iterancestors()))
            ),
            None,
        )
        stamp = replay.findtext(f"{{{DSP_NS}}}timestamp") if replay is not None else None
        nonce = replay.findtext(f"{{{DSP_NS}}}nonce") if replay is not None else None
        if not stamp or not nonce:
            raise OpenAdrRefused(
                "the signature has no ReplayProtect timestamp and nonce", code=FORBIDDEN, reason="replay"
            )
        try:
            signed_at = dt.datetime.fromisoformat(stamp.strip().replace("Z", "+00:00"))
        except ValueError as exc:
            raise OpenAdrRefused(
                f"malformed ReplayProtect timestamp {stamp!r}", code=FORBIDDEN, reason="replay"
            ) from exc
        if signed_at.tzinfo is None:
            signed_at = signed_at.replace(tzinfo=dt.UTC)
        now = self.clock()
        age = (now - signed_at).total_seconds()
        if abs(age) > self.window_s:
            raise OpenAdrRefused(
                f"signed {age:.0f} s from now; messages are accepted within {self.window_s:g} s",
                code=FORBIDDEN,
                reason="stale",
            )
        if not self.nonces.add(f"{stamp}|{nonce}", now.timestamp()):
            raise OpenAdrRefused(
                "this message was received before (same timestamp and nonce)", code=FORBIDDEN, reason="replay"
            )
