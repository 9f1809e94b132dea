"""The OpenADR TLS hierarchy of gridloom's keystore: root → issuing CA → device certificates, and its CRL."""

from __future__ import annotations

import asyncio
import datetime as dt
import shutil
import ssl
import stat
from pathlib import Path
from typing import TypeVar

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, SignatureAlgorithmOID

from gridloom.errors import OpenAdrRefused
from gridloom.fabric.identity import CertificateAuthority, TlsAuthority
from gridloom.protocols.openadr import CertificateCheck, TlsFiles, client_context, server_context

T = TypeVar("T", bound=x509.ExtensionType)


def _ext(certificate: x509.Certificate, kind: type[T]) -> x509.Extension[T]:
    return certificate.extensions.get_extension_for_class(kind)


def test_init_creates_the_hierarchy_with_owner_only_keys(tmp_path: Path) -> None:
    ca = CertificateAuthority.init(tmp_path / "pki")
    folder = tmp_path / "pki" / "tls"
    for name in ("root.key", "issuing.key"):
        assert stat.S_IMODE((folder / name).stat().st_mode) == 0o600
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    authority = ca.tls_authority()
    root, issuing = authority.root, authority.issuing
    assert root.subject.rfc4514_string() == "CN=gridloom OpenADR root,OU=certificate-authority,O=gridloom"
    assert root.issuer == root.subject
    assert issuing.issuer == root.subject
    for certificate in (root, issuing):
        assert certificate.signature_algorithm_oid == SignatureAlgorithmOID.ECDSA_WITH_SHA256
        assert _ext(certificate, x509.BasicConstraints).critical
        assert _ext(certificate, x509.BasicConstraints).value.ca
        usage = _ext(certificate, x509.KeyUsage).value
        assert usage.key_cert_sign
        assert usage.crl_sign
    assert _ext(issuing, x509.BasicConstraints).value.path_length == 0
    issuing.verify_directly_issued_by(root)
    # loading the keystore again gives the same hierarchy, not a new one
    again = CertificateAuthority.load(tmp_path / "pki").tls_authority()
    assert again.root == root
    assert again.issuing == issuing


def test_a_keystore_from_before_the_hierarchy_gets_one_on_first_use(tmp_path: Path) -> None:
    CertificateAuthority.init(tmp_path / "pki")
    shutil.rmtree(tmp_path / "pki" / "tls")  # as a keystore made by an older gridloom
    ca = CertificateAuthority.load(tmp_path / "pki")
    tls = ca.issue_tls("lms", "lms-1", hosts=["127.0.0.1"])
    assert (tmp_path / "pki" / "tls" / "issuing.key").exists()
    assert tls.certificate.issuer == TlsAuthority.load(tmp_path / "pki" / "tls").issuing.subject


def test_device_certificates_carry_what_strict_verifiers_want(tmp_path: Path) -> None:
    ca = CertificateAuthority.init(tmp_path / "pki")
    tls = ca.issue_tls("lms", "lms-1", hosts=["127.0.0.1", "vtn.example"])
    leaf, issuing = tls.certificate, ca.tls_authority().issuing
    assert leaf.signature_algorithm_oid == SignatureAlgorithmOID.ECDSA_WITH_SHA256
    leaf.verify_directly_issued_by(issuing)
    assert not _ext(leaf, x509.BasicConstraints).value.ca
    usage = _ext(leaf, x509.KeyUsage)
    assert usage.critical
    assert usage.value.digital_signature
    assert not usage.value.key_cert_sign
    assert set(_ext(leaf, x509.ExtendedKeyUsage).value) == {
        ExtendedKeyUsageOID.SERVER_AUTH,
        ExtendedKeyUsageOID.CLIENT_AUTH,
    }
    ski = _ext(issuing, x509.SubjectKeyIdentifier).value.digest
    assert _ext(leaf, x509.AuthorityKeyIdentifier).value.key_identifier == ski
    assert _ext(leaf, x509.SubjectKeyIdentifier).value == x509.SubjectKeyIdentifier.from_public_key(leaf.public_key())
    names = _ext(leaf, x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["lms-1", "vtn.example"]
    assert [str(a) for a in names.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert tls.chain == (issuing,)
    assert leaf.not_valid_after_utc <= issuing.not_valid_after_utc


def test_revoking_a_tls_certificate_lands_on_the_issuing_cas_crl_only(tmp_path: Path) -> None:
    ca = CertificateAuthority.init(tmp_path / "pki")
    tls = ca.issue_tls("customer_ems", "ems-1")
    fabric = ca.issue("mdms", "mdms-1")
    ca.revoke(tls.certificate)
    ca.revoke(tls.certificate)  # idempotent
    ca.revoke(fabric.signing_cert)
    assert ca.tls_revoked_serials() == [tls.certificate.serial_number]
    assert ca.revoked_serials() == [fabric.signing_cert.serial_number]
    authority = ca.tls_authority()
    crl = x509.load_pem_x509_crl(authority.crl_path.read_bytes())
    assert crl.issuer == authority.issuing.subject
    assert crl.signature_algorithm_oid == SignatureAlgorithmOID.ECDSA_WITH_SHA256
    assert crl.is_signature_valid(authority.issuing.public_key())
    assert crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == 2  # empty CRL was 1
    assert crl.get_revoked_certificate_by_serial_number(tls.certificate.serial_number) is not None


def test_certificate_check_walks_leaf_issuing_root_and_reads_revocations_each_time(tmp_path: Path) -> None:
    ca = CertificateAuthority.init(tmp_path / "pki")
    check = CertificateCheck.of(ca)
    good = ca.issue_tls("customer_ems", "ems-1")
    check.check(good.certificate)
    forged = CertificateAuthority.init(tmp_path / "other").issue_tls("customer_ems", "ems-1")
    assert forged.certificate.issuer == good.certificate.issuer  # same names, other keys
    with pytest.raises(OpenAdrRefused) as refused:
        check.check(forged.certificate)
    assert refused.value.reason == "ca"
    fabric = ca.issue("customer_ems", "ems-2").signing_cert  # Ed25519, from the fabric CA: not for OpenADR
    with pytest.raises(OpenAdrRefused):
        check.check(fabric)
    ca.revoke(good.certificate)
    with pytest.raises(OpenAdrRefused) as revoked:
        check.check(good.certificate)
    assert revoked.value.reason == "revoked"
    later = CertificateCheck.of(ca, clock=lambda: dt.datetime.now(dt.UTC) + dt.timedelta(days=400))
    with pytest.raises(OpenAdrRefused) as expired:
        later.check(ca.issue_tls("customer_ems", "ems-3").certificate)
    assert expired.value.reason == "expired"


@pytest.mark.anyio
async def test_python_ssl_with_strict_and_crl_checks_accepts_the_chain_and_refuses_a_revoked_client(
    tmp_path: Path,
) -> None:
    ca = CertificateAuthority.init(tmp_path / "pki")
    server_files = TlsFiles.write(ca, ca.issue_tls("lms", "lms-1", hosts=["127.0.0.1"]), tmp_path / "server")
    client_files = TlsFiles.write(ca, ca.issue_tls("customer_ems", "ems-1"), tmp_path / "client")
    assert server_files.chain is not None
    assert len(x509.load_pem_x509_certificates(server_files.chain.read_bytes())) == 2  # leaf + issuing CA
    context = server_context(server_files)
    assert context.verify_flags & ssl.VERIFY_X509_STRICT
    assert context.verify_flags & ssl.VERIFY_CRL_CHECK_LEAF

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"hello")
        await writer.drain()
        writer.close()

    async def exchange(server_ssl: ssl.SSLContext) -> bytes | None:
        """What the client reads from a server with ``server_ssl`` (None: the connection failed)."""
        server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=server_ssl)
        port = server.sockets[0].getsockname()[1]
        async with server:
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client_context(client_files))
                data = await reader.read()  # TLS 1.3: a refused client certificate shows after the handshake
                writer.close()
            except (ssl.SSLError, ConnectionError):
                return None
        return data

    assert await exchange(context) == b"hello"
    ca.revoke(x509.load_pem_x509_certificate(client_files.cert.read_bytes()))
    server_files.refresh_crl(ca)
    assert await exchange(server_context(server_files)) in (None, b"")
