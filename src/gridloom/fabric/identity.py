"""gridloom's own certificate authority, actor identities and the trust store.

Every actor instance gets two X.509 certificates from the CA, both naming its role (a
catalog actor id, in the subject's OU) and its instance id (CN): one for its Ed25519
signing key, one for its X25519 key-agreement key. Keys are written with mode 0600 in a
keystore folder of mode 0700. Revocation is an X.509 CRL signed by the CA.

Layout of a keystore::

    ca.key  ca.crt  crl.pem
    actors/<instance>.sign.key  .sign.crt  .kex.key  .kex.crt
    actors/<instance>.tls.key  .tls.crt  .tls.chain.pem   (only for actors that speak TLS: OpenADR)

Standard protocols that run over TLS with X.509 client certificates (OpenADR 2.0b) cannot use
Ed25519 certificates: the OpenADR 2.0 certificate profile wants RSA-2048/SHA-256 or ECC
P-256/ECDSA-SHA256 chains of root CA → intermediate (issuing) CA → device certificate, and strict
third-party VENs and VTNs refuse anything else. So the keystore also holds an OpenADR TLS
hierarchy (:class:`TlsAuthority`, in ``tls/``): an ECDSA P-256 root ("gridloom OpenADR root",
self-signed, ecdsa-with-SHA256) and an ECDSA P-256 issuing CA signed by it, created with the CA
(or on first use in an older keystore). :meth:`CertificateAuthority.issue_tls` issues ECDSA P-256
device certificates for TLS and XML signatures from the issuing CA, naming the same role (OU) and
instance (CN) as the actor's fabric certificates, with the extensions RFC 5280 and OpenSSL's
``X509_STRICT`` checks want. Revoking a TLS certificate puts it on the issuing CA's own CRL
(``tls/issuing-crl.pem``); fabric certificates stay on ``crl.pem``::

    tls/root.key  root.crt                   the OpenADR root (ECDSA P-256, self-signed)
    tls/issuing.key  issuing.crt             the issuing CA (ECDSA P-256, signed by the root)
    tls/issuing-crl.pem                      the issuing CA's CRL (TLS certificates it revoked)
    tls/trust.pem                            root + issuing CA, for peers to verify a chain
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from gridloom.catalog import Catalog
from gridloom.errors import CertificateInvalid, CertificateRevoked, PkiError

Clock = Callable[[], dt.datetime]
ORGANISATION = "gridloom"
DEFAULT_VALIDITY = dt.timedelta(days=365)
TLS_ROOT_NAME = "gridloom OpenADR root"
TLS_ISSUING_NAME = "gridloom OpenADR issuing CA"
TLS_ROOT_VALIDITY = dt.timedelta(days=3650)
TLS_ISSUING_VALIDITY = dt.timedelta(days=1825)
CRL_VALIDITY = dt.timedelta(days=7)
_INSTANCE_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789-_")


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def fingerprint(certificate: x509.Certificate) -> str:
    """Short, stable id of a certificate: the first 16 bytes of SHA-256 of its DER, in hex."""
    return hashlib.sha256(certificate.public_bytes(serialization.Encoding.DER)).hexdigest()[:32]


def _name(common_name: str, unit: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANISATION),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, unit),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _attribute(name: x509.Name, oid: x509.ObjectIdentifier) -> str:
    values = name.get_attributes_for_oid(oid)
    return str(values[0].value) if values else ""


def _write_private(path: Path, data: bytes) -> None:
    """Write a secret file readable only by its owner, never briefly world-readable."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.chmod(path, 0o600)


def _private_pem(key: Ed25519PrivateKey | X25519PrivateKey | ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _cert_pem(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.PEM)


@dataclass(frozen=True)
class Identity:
    """An actor instance's keys and certificates."""

    instance: str
    role: str
    signing_key: Ed25519PrivateKey
    signing_cert: x509.Certificate
    kex_key: X25519PrivateKey
    kex_cert: x509.Certificate
    fingerprint: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "fingerprint", fingerprint(self.signing_cert))

    def sign(self, data: bytes) -> bytes:
        return self.signing_key.sign(data)


@dataclass(frozen=True)
class TlsIdentity:
    """An actor instance's TLS key and certificate (ECDSA P-256), for protocols that need X.509 over TLS.

    ``chain`` holds the intermediate CA certificates between the certificate and the root (the
    issuing CA), which a TLS endpoint sends after its own certificate.
    """

    instance: str
    role: str
    key: ec.EllipticCurvePrivateKey
    certificate: x509.Certificate
    chain: tuple[x509.Certificate, ...] = ()
    fingerprint: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "fingerprint", fingerprint(self.certificate))

    @property
    def key_pem(self) -> bytes:
        return _private_pem(self.key)

    @property
    def cert_pem(self) -> bytes:
        return _cert_pem(self.certificate)

    @property
    def chain_pem(self) -> bytes:
        """The certificate followed by its intermediates: what a TLS endpoint presents."""
        return b"".join(_cert_pem(c) for c in (self.certificate, *self.chain))

    def write(self, folder: Path) -> tuple[Path, Path]:
        """Write ``<instance>.tls.crt``, ``.tls.chain.pem`` and ``.tls.key`` (mode 0600); returns (cert, key)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        cert_path, key_path = folder / f"{self.instance}.tls.crt", folder / f"{self.instance}.tls.key"
        cert_path.write_bytes(self.cert_pem)
        self.chain_path(folder).write_bytes(self.chain_pem)
        _write_private(key_path, self.key_pem)
        return cert_path, key_path

    def chain_path(self, folder: Path) -> Path:
        return Path(folder) / f"{self.instance}.tls.chain.pem"


def _ski(public_key: ec.EllipticCurvePublicKey) -> x509.SubjectKeyIdentifier:
    return x509.SubjectKeyIdentifier.from_public_key(public_key)


def _aki(issuer: x509.Certificate) -> x509.AuthorityKeyIdentifier:
    ski = issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)


def _ca_usage() -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=False,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=True,
        crl_sign=True,
        encipher_only=False,
        decipher_only=False,
    )


@dataclass(frozen=True)
class TlsAuthority:
    """The OpenADR TLS hierarchy: an ECDSA P-256 root and the issuing CA it signed (see the module docstring)."""

    folder: Path
    root: x509.Certificate
    issuing_key: ec.EllipticCurvePrivateKey
    issuing: x509.Certificate

    @property
    def root_path(self) -> Path:
        return self.folder / "root.crt"

    @property
    def issuing_path(self) -> Path:
        return self.folder / "issuing.crt"

    @property
    def crl_path(self) -> Path:
        return self.folder / "issuing-crl.pem"

    @property
    def trust_path(self) -> Path:
        """Root and issuing CA certificates in one PEM file, for a peer's trust store."""
        return self.folder / "trust.pem"

    @classmethod
    def create(
        cls, folder: Path, *, clock: Clock = utc_now, validity: dt.timedelta = TLS_ROOT_VALIDITY
    ) -> TlsAuthority:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(folder, 0o700)
        now = clock()
        start = now - dt.timedelta(minutes=5)
        root_key = ec.generate_private_key(ec.SECP256R1())
        root_name = _name(TLS_ROOT_NAME, "certificate-authority")
        root = (
            x509.CertificateBuilder()
            .subject_name(root_name)
            .issuer_name(root_name)
            .public_key(root_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(start + validity)
            .add_extension(x509.BasicConstraints(ca=True, path_length=1), critical=True)
            .add_extension(_ca_usage(), critical=True)
            .add_extension(_ski(root_key.public_key()), critical=False)
            .sign(root_key, hashes.SHA256())
        )
        issuing_key = ec.generate_private_key(ec.SECP256R1())
        issuing = (
            x509.CertificateBuilder()
            .subject_name(_name(TLS_ISSUING_NAME, "certificate-authority"))
            .issuer_name(root_name)
            .public_key(issuing_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(start + min(validity, TLS_ISSUING_VALIDITY))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_ca_usage(), critical=True)
            .add_extension(_ski(issuing_key.public_key()), critical=False)
            .add_extension(_aki(root), critical=False)
            .sign(root_key, hashes.SHA256())
        )
        _write_private(folder / "root.key", _private_pem(root_key))
        _write_private(folder / "issuing.key", _private_pem(issuing_key))
        authority = cls(folder, root, issuing_key, issuing)
        authority.root_path.write_bytes(_cert_pem(root))
        authority.issuing_path.write_bytes(_cert_pem(issuing))
        authority.trust_path.write_bytes(_cert_pem(root) + _cert_pem(issuing))
        authority.write_crl([], clock)
        return authority

    @classmethod
    def load(cls, folder: Path) -> TlsAuthority:
        folder = Path(folder)
        try:
            key = serialization.load_pem_private_key((folder / "issuing.key").read_bytes(), password=None)
            root = x509.load_pem_x509_certificate((folder / "root.crt").read_bytes())
            issuing = x509.load_pem_x509_certificate((folder / "issuing.crt").read_bytes())
        except FileNotFoundError as exc:
            raise PkiError(f"no OpenADR TLS hierarchy in {folder}") from exc
        except ValueError as exc:
            raise PkiError(f"the OpenADR TLS CA files in {folder} are damaged: {exc}") from exc
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise PkiError(f"{folder / 'issuing.key'} is not an ECDSA key")
        return cls(folder, root, key, issuing)

    def revoked_serials(self) -> list[int]:
        if not self.crl_path.exists():
            return []
        return [entry.serial_number for entry in x509.load_pem_x509_crl(self.crl_path.read_bytes())]

    def revoke(self, certificate: x509.Certificate, *, clock: Clock = utc_now) -> None:
        """Put a certificate this CA issued on its CRL (idempotent)."""
        serials = self.revoked_serials()
        if certificate.serial_number not in serials:
            self.write_crl([*serials, certificate.serial_number], clock)

    def write_crl(self, serials: Iterable[int], clock: Clock) -> None:
        """Sign and write the issuing CA's CRL (X.509 v2, with authority key id and CRL number)."""
        now = clock()
        number = 1
        if self.crl_path.exists():
            old = x509.load_pem_x509_crl(self.crl_path.read_bytes())
            try:
                number = old.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number + 1
            except x509.ExtensionNotFound:
                number = 1
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(self.issuing.subject)
            .last_update(now - dt.timedelta(minutes=5))
            .next_update(now + CRL_VALIDITY)
            .add_extension(_aki(self.issuing), critical=False)
            .add_extension(x509.CRLNumber(number), critical=False)
        )
        for serial in serials:
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(now).build()
            )
        crl = builder.sign(self.issuing_key, hashes.SHA256())
        self.crl_path.write_bytes(crl.public_bytes(serialization.Encoding.PEM))


@dataclass(frozen=True)
class Peer:
    """What the trust store knows of a verified sender or recipient."""

    instance: str
    role: str
    fingerprint: str
    serial: int
    signing_key: Ed25519PublicKey
    kex_key: X25519PublicKey
    kex_fingerprint: str
    not_before: dt.datetime
    not_after: dt.datetime


class CertificateAuthority:
    """The stack's CA: issues actor certificates and revokes them."""

    def __init__(self, folder: Path, key: Ed25519PrivateKey, certificate: x509.Certificate) -> None:
        self.folder = folder
        self.key = key
        self.certificate = certificate
        self._tls: TlsAuthority | None = None

    def tls_authority(self, *, clock: Clock = utc_now) -> TlsAuthority:
        """The OpenADR TLS hierarchy of this keystore, created on first use (``tls/``)."""
        if self._tls is None:
            folder = self.folder / "tls"
            self._tls = (
                TlsAuthority.load(folder)
                if (folder / "issuing.key").exists()
                else TlsAuthority.create(folder, clock=clock)
            )
        return self._tls

    # --- creation and loading ---------------------------------------------------
    @classmethod
    def init(
        cls, folder: Path, *, name: str = "gridloom CA", clock: Clock = utc_now, validity_days: int = 3650
    ) -> CertificateAuthority:
        """Create a new CA in ``folder`` (which must not already hold one)."""
        folder = Path(folder)
        if (folder / "ca.key").exists():
            raise PkiError(f"{folder} already holds a CA (ca.key); use another folder or load it")
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(folder, 0o700)
        (folder / "actors").mkdir(exist_ok=True, mode=0o700)
        key = Ed25519PrivateKey.generate()
        now = clock()
        subject = _name(name, "certificate-authority")
        certificate = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=validity_days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
            .sign(key, None)
        )
        _write_private(folder / "ca.key", _private_pem(key))
        (folder / "ca.crt").write_bytes(_cert_pem(certificate))
        ca = cls(folder, key, certificate)
        ca._write_crl([], clock)
        ca.tls_authority(clock=clock)
        return ca

    @classmethod
    def load(cls, folder: Path) -> CertificateAuthority:
        folder = Path(folder)
        try:
            key = serialization.load_pem_private_key((folder / "ca.key").read_bytes(), password=None)
            certificate = x509.load_pem_x509_certificate((folder / "ca.crt").read_bytes())
        except FileNotFoundError as exc:
            raise PkiError(f"no CA in {folder}: run 'gridloom pki init {folder}' first") from exc
        except ValueError as exc:
            raise PkiError(f"the CA files in {folder} are damaged: {exc}") from exc
        if not isinstance(key, Ed25519PrivateKey):
            raise PkiError(f"{folder / 'ca.key'} is not an Ed25519 key")
        return cls(folder, key, certificate)

    # --- issuing ------------------------------------------------------------------
    def issue(
        self,
        role: str,
        instance: str,
        *,
        catalog: Catalog | None = None,
        clock: Clock = utc_now,
        validity: dt.timedelta = DEFAULT_VALIDITY,
        not_before: dt.datetime | None = None,
        save: bool = True,
    ) -> Identity:
        """Issue signing and key-agreement certificates for one actor instance.

        ``role`` must be a catalog actor id when a catalog is given; ``instance`` is a
        lowercase name unique within the stack (letters, digits, ``-`` and ``_``).
        """
        if not instance or not set(instance) <= _INSTANCE_CHARS:
            raise PkiError(f"instance id {instance!r} must be lowercase letters, digits, '-' or '_'")
        if catalog is not None:
            role = catalog.resolve_actor(role).id
        if save and (self.folder / "actors" / f"{instance}.sign.crt").exists():
            raise PkiError(
                f"{instance!r} already has an identity in {self.folder}; revoke it and issue a new instance id"
            )
        start = not_before or clock() - dt.timedelta(minutes=5)
        signing_key = Ed25519PrivateKey.generate()
        kex_key = X25519PrivateKey.generate()
        signing_cert = self._certificate(role, instance, signing_key.public_key(), start, validity, signing=True)
        kex_cert = self._certificate(role, instance, kex_key.public_key(), start, validity, signing=False)
        identity = Identity(instance, role, signing_key, signing_cert, kex_key, kex_cert)
        if save:
            self._save(identity)
        return identity

    def issue_tls(
        self,
        role: str,
        instance: str,
        *,
        catalog: Catalog | None = None,
        hosts: Iterable[str] = (),
        clock: Clock = utc_now,
        validity: dt.timedelta = DEFAULT_VALIDITY,
        save: bool = True,
    ) -> TlsIdentity:
        """Issue an ECDSA P-256 TLS certificate (client and server use) for one actor instance.

        It is signed (ECDSA with SHA-256) by the OpenADR issuing CA of :meth:`tls_authority`. The
        subject names the role (OU) and the instance (CN), as the actor's other certificates do;
        ``hosts`` (DNS names or IP addresses, e.g. ``127.0.0.1``) go in the subject alternative names,
        beside the instance, so a server certificate matches the address clients dial.
        """
        if not instance or not set(instance) <= _INSTANCE_CHARS:
            raise PkiError(f"instance id {instance!r} must be lowercase letters, digits, '-' or '_'")
        if catalog is not None:
            role = catalog.resolve_actor(role).id
        if save and (self.folder / "actors" / f"{instance}.tls.crt").exists():
            raise PkiError(
                f"{instance!r} already has a TLS certificate in {self.folder}; revoke it and use a new instance id"
            )
        authority = self.tls_authority(clock=clock)
        key = ec.generate_private_key(ec.SECP256R1())
        names: list[x509.GeneralName] = [x509.DNSName(instance)]
        for host in hosts:
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                names.append(x509.DNSName(host))
        start = clock() - dt.timedelta(minutes=5)
        end = min(start + validity, authority.issuing.not_valid_after_utc)
        usage = x509.KeyUsage(
            digital_signature=True,
            content_commitment=False,
            key_encipherment=False,
            data_encipherment=False,
            key_agreement=True,
            key_cert_sign=False,
            crl_sign=False,
            encipher_only=False,
            decipher_only=False,
        )
        certificate = (
            x509.CertificateBuilder()
            .subject_name(_name(instance, role))
            .issuer_name(authority.issuing.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(usage, critical=True)
            .add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                critical=False,
            )
            .add_extension(_ski(key.public_key()), critical=False)
            .add_extension(_aki(authority.issuing), critical=False)
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .sign(authority.issuing_key, hashes.SHA256())
        )
        tls = TlsIdentity(instance, role, key, certificate, (authority.issuing,))
        if save:
            tls.write(self.folder / "actors")
        return tls

    def load_tls(self, instance: str) -> TlsIdentity:
        """The TLS identity ``issue_tls`` saved for ``instance``."""
        base = self.folder / "actors" / instance
        try:
            key = serialization.load_pem_private_key(base.with_suffix(".tls.key").read_bytes(), None)
            certificate = x509.load_pem_x509_certificate(base.with_suffix(".tls.crt").read_bytes())
        except FileNotFoundError as exc:
            raise PkiError(f"no TLS certificate for {instance!r} in {self.folder}") from exc
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise PkiError(f"the TLS key of {instance!r} in {self.folder} is not an ECDSA key")
        role = _attribute(certificate.subject, NameOID.ORGANIZATIONAL_UNIT_NAME)
        return TlsIdentity(instance, role, key, certificate, (self.tls_authority().issuing,))

    def _certificate(
        self,
        role: str,
        instance: str,
        public_key: Ed25519PublicKey | X25519PublicKey,
        start: dt.datetime,
        validity: dt.timedelta,
        *,
        signing: bool,
    ) -> x509.Certificate:
        usage = (
            x509.KeyUsage(True, True, False, False, False, False, False, False, False)
            if signing
            else x509.KeyUsage(False, False, False, False, True, False, False, False, False)
        )
        return (
            x509.CertificateBuilder()
            .subject_name(_name(instance, role))
            .issuer_name(self.certificate.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(start + validity)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(usage, critical=True)
            .sign(self.key, None)
        )

    def _save(self, identity: Identity) -> None:
        actors = self.folder / "actors"
        actors.mkdir(exist_ok=True, mode=0o700)
        base = actors / identity.instance
        _write_private(base.with_suffix(".sign.key"), _private_pem(identity.signing_key))
        _write_private(base.with_suffix(".kex.key"), _private_pem(identity.kex_key))
        base.with_suffix(".sign.crt").write_bytes(_cert_pem(identity.signing_cert))
        base.with_suffix(".kex.crt").write_bytes(_cert_pem(identity.kex_cert))

    def load_identity(self, instance: str) -> Identity:
        base = self.folder / "actors" / instance
        try:
            signing_key = serialization.load_pem_private_key(base.with_suffix(".sign.key").read_bytes(), None)
            kex_key = serialization.load_pem_private_key(base.with_suffix(".kex.key").read_bytes(), None)
            signing_cert = x509.load_pem_x509_certificate(base.with_suffix(".sign.crt").read_bytes())
            kex_cert = x509.load_pem_x509_certificate(base.with_suffix(".kex.crt").read_bytes())
        except FileNotFoundError as exc:
            raise PkiError(f"no identity {instance!r} in {self.folder}: issue it with 'gridloom pki issue'") from exc
        if not isinstance(signing_key, Ed25519PrivateKey) or not isinstance(kex_key, X25519PrivateKey):
            raise PkiError(f"the keys of {instance!r} in {self.folder} are of the wrong type")
        role = _attribute(signing_cert.subject, NameOID.ORGANIZATIONAL_UNIT_NAME)
        return Identity(instance, role, signing_key, signing_cert, kex_key, kex_cert)

    def identities(self) -> list[Identity]:
        return [
            self.load_identity(p.name.removesuffix(".sign.crt"))
            for p in sorted((self.folder / "actors").glob("*.sign.crt"))
        ]

    # --- revocation -----------------------------------------------------------------
    def revoke(self, certificate: x509.Certificate, *, clock: Clock = utc_now) -> None:
        """Add a certificate to its issuer's CRL (idempotent).

        A TLS certificate (issued by the OpenADR issuing CA) goes on ``tls/issuing-crl.pem``, a
        fabric certificate on ``crl.pem``.
        """
        if certificate.issuer == self.tls_authority().issuing.subject:
            self.tls_authority().revoke(certificate, clock=clock)
            return
        serials = self.revoked_serials()
        if certificate.serial_number not in serials:
            self._write_crl([*serials, certificate.serial_number], clock)

    def tls_revoked_serials(self) -> list[int]:
        """Serial numbers on the OpenADR issuing CA's CRL (read afresh on every call)."""
        return self.tls_authority().revoked_serials()

    def revoked_serials(self) -> list[int]:
        """Serial numbers of revoked fabric certificates (``crl.pem``)."""
        crl_path = self.folder / "crl.pem"
        if not crl_path.exists():
            return []
        crl = x509.load_pem_x509_crl(crl_path.read_bytes())
        return [entry.serial_number for entry in crl]

    def _write_crl(self, serials: Iterable[int], clock: Clock) -> None:
        now = clock()
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(self.certificate.subject)
            .last_update(now)
            .next_update(now + dt.timedelta(days=7))
        )
        for serial in serials:
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(now).build()
            )
        (self.folder / "crl.pem").write_bytes(builder.sign(self.key, None).public_bytes(serialization.Encoding.PEM))


class TrustStore:
    """Verified certificates of the stack's actors, looked up by fingerprint.

    A certificate is admitted only if the CA signed it (checked once, when added). Every
    lookup checks revocation and the validity period at the given time, so a revoked or
    expired certificate stops working at once.
    """

    def __init__(self, ca_certificate: x509.Certificate, *, revoked: Iterable[int] = ()) -> None:
        self._ca = ca_certificate
        ca_key = ca_certificate.public_key()
        if not isinstance(ca_key, Ed25519PublicKey):
            raise PkiError("the CA certificate does not hold an Ed25519 key")
        self._ca_key = ca_key
        self._revoked: set[int] = set(revoked)
        self._peers: dict[str, Peer] = {}
        self._by_instance: dict[str, Peer] = {}

    @classmethod
    def from_authority(cls, ca: CertificateAuthority) -> TrustStore:
        store = cls(ca.certificate, revoked=ca.revoked_serials())
        for identity in ca.identities():
            store.add(identity.signing_cert, identity.kex_cert)
        return store

    def _check_issued_by_ca(self, certificate: x509.Certificate) -> None:
        if certificate.issuer != self._ca.subject:
            raise CertificateInvalid(f"certificate of {certificate.subject.rfc4514_string()} was not issued by our CA")
        try:
            self._ca_key.verify(certificate.signature, certificate.tbs_certificate_bytes)
        except InvalidSignature:
            raise CertificateInvalid(
                f"certificate of {certificate.subject.rfc4514_string()} has a bad CA signature"
            ) from None

    def add(self, signing_cert: x509.Certificate, kex_cert: x509.Certificate) -> Peer:
        """Admit an actor's certificate pair after checking both against the CA."""
        for certificate in (signing_cert, kex_cert):
            self._check_issued_by_ca(certificate)
        signing_key = signing_cert.public_key()
        kex_key = kex_cert.public_key()
        if not isinstance(signing_key, Ed25519PublicKey) or not isinstance(kex_key, X25519PublicKey):
            raise CertificateInvalid("an actor needs an Ed25519 signing and an X25519 key-agreement certificate")
        instance = _attribute(signing_cert.subject, NameOID.COMMON_NAME)
        role = _attribute(signing_cert.subject, NameOID.ORGANIZATIONAL_UNIT_NAME)
        if (instance, role) != (
            _attribute(kex_cert.subject, NameOID.COMMON_NAME),
            _attribute(kex_cert.subject, NameOID.ORGANIZATIONAL_UNIT_NAME),
        ):
            raise CertificateInvalid(f"the certificates of {instance!r} name different subjects")
        peer = Peer(
            instance=instance,
            role=role,
            fingerprint=fingerprint(signing_cert),
            serial=signing_cert.serial_number,
            signing_key=signing_key,
            kex_key=kex_key,
            kex_fingerprint=fingerprint(kex_cert),
            not_before=max(signing_cert.not_valid_before_utc, kex_cert.not_valid_before_utc),
            not_after=min(signing_cert.not_valid_after_utc, kex_cert.not_valid_after_utc),
        )
        self._peers[peer.fingerprint] = peer
        self._by_instance[instance] = peer
        return peer

    def add_identity(self, identity: Identity) -> Peer:
        return self.add(identity.signing_cert, identity.kex_cert)

    def revoke(self, serial: int) -> None:
        self._revoked.add(serial)

    def _usable(self, peer: Peer, at: dt.datetime) -> Peer:
        if peer.serial in self._revoked:
            raise CertificateRevoked(f"the certificate of {peer.instance!r} ({peer.role}) is revoked")
        if not peer.not_before <= at <= peer.not_after:
            raise CertificateInvalid(
                f"the certificate of {peer.instance!r} is valid from {peer.not_before:%Y-%m-%d %H:%M} "
                f"to {peer.not_after:%Y-%m-%d %H:%M} UTC, not at {at:%Y-%m-%d %H:%M} UTC"
            )
        return peer

    def signer(self, fingerprint_hex: str, at: dt.datetime) -> Peer:
        """The peer whose signing certificate has this fingerprint, if usable at ``at``."""
        peer = self._peers.get(fingerprint_hex)
        if peer is None:
            raise CertificateInvalid(
                f"unknown signer certificate {fingerprint_hex[:16]}…: not issued to any actor we know"
            )
        return self._usable(peer, at)

    def instance(self, instance: str, at: dt.datetime) -> Peer:
        peer = self._by_instance.get(instance)
        if peer is None:
            raise CertificateInvalid(f"no certificate for actor instance {instance!r}")
        return self._usable(peer, at)

    def instances_of(self, role: str, at: dt.datetime) -> list[Peer]:
        """Every instance of a role whose certificate is usable at ``at``."""
        return [
            p
            for p in self._by_instance.values()
            if p.role == role and p.serial not in self._revoked and p.not_before <= at <= p.not_after
        ]
