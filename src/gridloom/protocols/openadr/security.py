"""OpenADR 2.0b security, done by gridloom rather than left to openleadr.

OpenADR 2.0b runs over TLS with X.509 client certificates; messages may carry an XML signature
(XMLDSig, detached, over ``#oadrSignedObject``, with a ``ReplayProtect`` property of a timestamp
and a nonce). gridloom requires all of it, on both sides, and checks it itself:

1. TLS: TLS 1.2 or newer, the peer's certificate chains to gridloom's CA and is not on its CRL
   (:func:`server_context`, :func:`client_context`);
2. per request, again (a keep-alive connection outlives a revocation): the peer certificate is
   issued by our CA, valid now and not revoked (:class:`CertificateCheck`);
3. the message parses against the OpenADR 2.0b schema and carries a signature (unsigned
   messages are refused: openleadr's own check of that is an ``assert``);
4. the signing certificate is the TLS peer's (VTN side) or the VTN's known one (VEN side), and
   is itself issued by our CA and not revoked;
5. the signature verifies (signxml), and it covers the one ``oadrSignedObject`` the receiver reads
   (no signature wrapping);
6. the ``ReplayProtect`` timestamp lies within ``window_s`` of the injected clock and its nonce
   was not seen before (:class:`NonceCache`, per receiver — openleadr's cache is a module global
   with a fixed 5-second window).

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
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature as CryptoInvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from lxml import etree
from signxml.exceptions import InvalidInput, InvalidSignature
from signxml.verifier import XMLVerifier

from gridloom.errors import OpenAdrConfigError, OpenAdrRefused
from gridloom.fabric.identity import CertificateAuthority, Clock, TlsIdentity, utc_now

OADR_NS = "http://openadr.org/oadr-2.0b/2012/07"
DSIG_NS = "http://www.w3.org/2000/09/xmldsig#"
DSP_NS = "http://openadr.org/oadr-2.0b/2012/07/xmldsig-properties"
FORBIDDEN = 403
BAD_REQUEST = 400
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)


def openadr_fingerprint(certificate: x509.Certificate) -> str:
    """OpenADR's certificate fingerprint: the last 10 bytes of SHA-256(DER), upper-case hex, colon-separated."""
    digest = hashlib.sha256(certificate.public_bytes(serialization.Encoding.DER)).hexdigest()
    return ":".join(digest[i : i + 2].upper() for i in range(44, 64, 2))


@dataclass(frozen=True)
class TlsFiles:
    """The files a TLS endpoint needs: its certificate and key, the CA certificate and the CA's CRL."""

    cert: Path
    key: Path
    ca: Path
    crl: Path

    @classmethod
    def write(cls, ca: CertificateAuthority, tls: TlsIdentity, folder: Path) -> TlsFiles:
        """Write ``tls``'s certificate and key beside a copy of the CA certificate and current CRL."""
        folder = Path(folder)
        cert, key = tls.write(folder)
        ca_copy, crl_copy = folder / "ca.crt", folder / "crl.pem"
        shutil.copyfile(ca.folder / "ca.crt", ca_copy)
        shutil.copyfile(ca.folder / "crl.pem", crl_copy)
        return cls(cert, key, ca_copy, crl_copy)

    def refresh_crl(self, ca: CertificateAuthority) -> None:
        """Copy the CA's current CRL (after a revocation)."""
        shutil.copyfile(ca.folder / "crl.pem", self.crl)


def _load_trust(context: ssl.SSLContext, files: TlsFiles) -> None:
    try:
        context.load_verify_locations(cafile=str(files.ca))
        context.load_verify_locations(cafile=str(files.crl))  # a PEM CRL is accepted here
        context.load_cert_chain(str(files.cert), str(files.key))
    except (OSError, ssl.SSLError) as exc:
        raise OpenAdrConfigError(f"cannot load the TLS files {files}: {exc}") from exc
    context.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF
    context.minimum_version = ssl.TLSVersion.TLSv1_2


def server_context(files: TlsFiles) -> ssl.SSLContext:
    """A VTN's TLS context: client certificates required, chained to our CA, checked against its CRL."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.verify_mode = ssl.CERT_REQUIRED
    _load_trust(context, files)
    return context


def client_context(files: TlsFiles) -> ssl.SSLContext:
    """A VEN's TLS context: the VTN's certificate must chain to our CA, match the host and not be revoked."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = True
    _load_trust(context, files)
    return context


class CertificateCheck:
    """Is a certificate ours (signed by our CA), valid at this moment and not revoked?

    ``revoked`` is called on every check, so a revocation takes effect on the next message.
    """

    def __init__(
        self, ca_certificate: x509.Certificate, *, revoked: Callable[[], Iterable[int]], clock: Clock = utc_now
    ) -> None:
        key = ca_certificate.public_key()
        if not isinstance(key, Ed25519PublicKey):
            raise OpenAdrConfigError("the CA certificate does not hold an Ed25519 key")
        self._ca = ca_certificate
        self._ca_key = key
        self._revoked = revoked
        self._clock = clock

    @classmethod
    def of(cls, ca: CertificateAuthority, *, clock: Clock = utc_now) -> CertificateCheck:
        return cls(ca.certificate, revoked=ca.revoked_serials, clock=clock)

    def check(self, certificate: x509.Certificate) -> None:
        who = certificate.subject.rfc4514_string()
        if certificate.issuer != self._ca.subject:
            raise OpenAdrRefused(f"certificate of {who} was not issued by gridloom's CA", code=FORBIDDEN, reason="ca")
        try:
            self._ca_key.verify(certificate.signature, certificate.tbs_certificate_bytes)
        except CryptoInvalidSignature:
            raise OpenAdrRefused(f"certificate of {who} has a bad CA signature", code=FORBIDDEN, reason="ca") from None
        now = self._clock()
        if not certificate.not_valid_before_utc <= now <= certificate.not_valid_after_utc:
            raise OpenAdrRefused(f"certificate of {who} is not valid now", code=FORBIDDEN, reason="expired")
        if certificate.serial_number in set(self._revoked()):
            raise OpenAdrRefused(f"certificate of {who} is revoked", code=FORBIDDEN, reason="revoked")


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
        self._replay(tree)
        return certificate

    def _replay(self, tree: etree._Element) -> None:
        stamp = tree.findtext(f".//{{{DSP_NS}}}timestamp")
        nonce = tree.findtext(f".//{{{DSP_NS}}}nonce")
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
