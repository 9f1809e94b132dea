"""`gridloom pki issue-tls` and `gridloom pki revoke` for OpenADR TLS certificates."""

from pathlib import Path

from cryptography import x509
from typer.testing import CliRunner

from gridloom.cli import app
from gridloom.fabric import CertificateAuthority
from gridloom.protocols.openadr import openadr_fingerprint

runner = CliRunner()


def _ok(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.stdout


def test_issue_tls_then_revoke_puts_it_on_the_issuing_cas_crl(tmp_path: Path) -> None:
    keystore = str(tmp_path / "pki")
    assert "OpenADR TLS root" in _ok("pki", "init", "--keystore", keystore)
    out = _ok("pki", "issue-tls", "--keystore", keystore, "--role", "lms", "--instance", "lms-1", "--host", "127.0.0.1")
    ca = CertificateAuthority.load(Path(keystore))
    tls = ca.load_tls("lms-1")
    assert tls.role == "lms"
    assert openadr_fingerprint(tls.certificate) in " ".join(out.split())
    assert tls.certificate.issuer == ca.tls_authority().issuing.subject
    names = tls.certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(a) for a in names.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    _ok("pki", "revoke", "--keystore", keystore, "--instance", "lms-1")
    assert ca.tls_revoked_serials() == [tls.certificate.serial_number]
    assert ca.revoked_serials() == []


def test_revoke_takes_both_the_fabric_and_the_tls_certificates_of_an_instance(tmp_path: Path) -> None:
    keystore = str(tmp_path / "pki")
    _ok("pki", "init", "--keystore", keystore)
    _ok("pki", "issue", "--keystore", keystore, "--role", "customer_ems", "--instance", "ems-1")
    _ok("pki", "issue-tls", "--keystore", keystore, "--role", "customer_ems", "--instance", "ems-1")
    _ok("pki", "revoke", "--keystore", keystore, "--instance", "ems-1")
    ca = CertificateAuthority.load(Path(keystore))
    assert ca.load_identity("ems-1").signing_cert.serial_number in ca.revoked_serials()
    assert ca.tls_revoked_serials() == [ca.load_tls("ems-1").certificate.serial_number]
    result = runner.invoke(app, ["pki", "revoke", "--keystore", keystore, "--instance", "nobody"])
    assert result.exit_code == 2
