"""`gridloom pki ...` and `gridloom audit verify` as an operator uses them."""

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gridloom.cli import app
from gridloom.fabric import AuditLog, CertificateAuthority
from gridloom.fabric.identity import utc_now

runner = CliRunner()


def _ok(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.stdout


def test_pki_init_issue_revoke_list(tmp_path: Path) -> None:
    keystore = str(tmp_path / "pki")
    _ok("pki", "init", "--keystore", keystore)
    _ok("pki", "issue", "--keystore", keystore, "--role", "Meter Data Management System", "--instance", "mdms-1")
    ca = CertificateAuthority.load(Path(keystore))
    assert ca.load_identity("mdms-1").role == "mdms"
    _ok("pki", "revoke", "--keystore", keystore, "--instance", "mdms-1")
    assert ca.load_identity("mdms-1").signing_cert.serial_number in ca.revoked_serials()
    listing = _ok("pki", "list", "--keystore", keystore)
    assert "mdms-1" in listing
    assert "revoked" in listing


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--role", "nobody", "--instance", "x-1"], "unknown actor 'nobody'"),
        (["--role", "mdms", "--instance", "Bad Name"], "must be lowercase"),
        (["--role", "mdms", "--instance", "auditor"], "already has an identity"),
    ],
)
def test_bad_issue_requests_are_refused_and_change_nothing(tmp_path: Path, args: list[str], message: str) -> None:
    keystore = str(tmp_path / "pki")
    _ok("pki", "init", "--keystore", keystore)
    before = sorted(p.name for p in (tmp_path / "pki" / "actors").iterdir())
    result = runner.invoke(app, ["pki", "issue", "--keystore", keystore, *args])
    assert result.exit_code == 2
    assert message in result.stderr
    assert sorted(p.name for p in (tmp_path / "pki" / "actors").iterdir()) == before


def test_pki_commands_without_a_ca_say_how_to_create_one(tmp_path: Path) -> None:
    result = runner.invoke(app, ["pki", "list", "--keystore", str(tmp_path / "none")])
    assert result.exit_code == 2
    assert "gridloom pki init" in result.stderr


def test_pki_init_refuses_to_overwrite(tmp_path: Path) -> None:
    keystore = str(tmp_path / "pki")
    _ok("pki", "init", "--keystore", keystore)
    key = (tmp_path / "pki" / "ca.key").read_bytes()
    assert runner.invoke(app, ["pki", "init", "--keystore", keystore]).exit_code == 2
    assert (tmp_path / "pki" / "ca.key").read_bytes() == key


def _signed_log(tmp_path: Path, entries: int) -> tuple[Path, Path]:
    """A keystore made with the CLI and an audit log of ``entries`` commands signed by its auditor."""
    keystore = tmp_path / "pki"
    _ok("pki", "init", "--keystore", str(keystore))
    auditor = CertificateAuthority.load(keystore).load_identity("auditor")
    log_path = tmp_path / "audit.jsonl"
    log = AuditLog(log_path, signing_key=auditor.signing_key, clock=utc_now)
    for n in range(entries):
        log.append({"command": "disconnect", "meter": f"m-{n}"})
    log.close()
    return keystore, log_path


def test_audit_verify_passes_then_catches_tampering(tmp_path: Path) -> None:
    keystore, log_path = _signed_log(tmp_path, 3)
    out = _ok("audit", "verify", str(log_path), "--keystore", str(keystore))
    assert "3 entries" in out
    assert "signed head checked" in out

    lines = log_path.read_text().splitlines()
    entry = json.loads(lines[1])
    entry["entry"]["meter"] = "m-999"
    lines[1] = json.dumps(entry)
    log_path.write_text("\n".join(lines) + "\n")
    result = runner.invoke(app, ["audit", "verify", str(log_path)])
    assert result.exit_code == 1
    assert "TAMPERED" in result.stdout
    assert "entry 2 was altered" in result.stdout


def test_audit_verify_detects_entries_cut_off_the_end(tmp_path: Path) -> None:
    keystore, log_path = _signed_log(tmp_path, 3)
    log_path.write_text("\n".join(log_path.read_text().splitlines()[:2]) + "\n")
    assert runner.invoke(app, ["audit", "verify", str(log_path)]).exit_code == 0  # the chain alone cannot tell
    result = runner.invoke(app, ["audit", "verify", str(log_path), "--keystore", str(keystore)])
    assert result.exit_code == 1
    assert "signed head says 3" in result.stdout


def test_audit_log_resumes_its_chain_after_a_restart(tmp_path: Path) -> None:
    log_path = tmp_path / "audit.jsonl"
    first = AuditLog(log_path, clock=utc_now)
    first.append({"a": 1})
    first.close()
    second = AuditLog(log_path, clock=utc_now)
    second.append({"a": 2})
    second.close()
    assert "2 entries" in _ok("audit", "verify", str(log_path))
