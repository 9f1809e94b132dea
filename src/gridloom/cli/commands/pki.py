"""``gridloom pki``: the stack's certificate authority and actor identities."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated

import typer
from cryptography.x509.oid import NameOID
from rich.console import Console
from rich.table import Table

from gridloom.catalog import load_catalog
from gridloom.cli.errors import user_errors
from gridloom.fabric.identity import CertificateAuthority

app = typer.Typer(help="gridloom's certificate authority: create it, issue actor identities, revoke them.")
console = Console()

KEYSTORE_HELP = "Keystore folder holding the CA and the actors' keys (0700, keys 0600)."
Keystore = Annotated[Path, typer.Option("--keystore", envvar="GRIDLOOM_KEYSTORE", help=KEYSTORE_HELP)]
DEFAULT_KEYSTORE = Path(".gridloom/pki")


@app.command("init")
def init(
    keystore: Keystore = DEFAULT_KEYSTORE, name: str = typer.Option("gridloom CA", help="CA common name.")
) -> None:
    """Create a new certificate authority (refuses to overwrite an existing one)."""
    with user_errors():
        ca = CertificateAuthority.init(keystore, name=name)
    auditor = ca.issue("auditor", "auditor")
    console.print(f"created CA [bold]{name}[/] in {keystore}")
    console.print(f"issued the audit log's signing identity ({auditor.fingerprint})")


@app.command("issue")
def issue(
    role: Annotated[
        str, typer.Option(help="The actor's role: a catalog actor id or seed name, e.g. mdms, 'AMI Headend'.")
    ],
    instance: Annotated[str, typer.Option(help="Unique instance id, e.g. mdms-1 (lowercase, digits, '-', '_').")],
    keystore: Keystore = DEFAULT_KEYSTORE,
    days: Annotated[int, typer.Option(min=1, help="Validity in days.")] = 365,
) -> None:
    """Issue signing (Ed25519) and key-agreement (X25519) certificates for one actor instance."""
    with user_errors():
        ca = CertificateAuthority.load(keystore)
        identity = ca.issue(role, instance, catalog=load_catalog(), validity=dt.timedelta(days=days))
    console.print(f"issued [bold]{identity.instance}[/] as {identity.role} (fingerprint {identity.fingerprint})")


@app.command("revoke")
def revoke(
    instance: Annotated[str, typer.Option(help="Instance id whose certificates to revoke.")],
    keystore: Keystore = DEFAULT_KEYSTORE,
) -> None:
    """Revoke an actor instance's certificates: the fabric refuses its messages from then on."""
    with user_errors():
        ca = CertificateAuthority.load(keystore)
        identity = ca.load_identity(instance)
        ca.revoke(identity.signing_cert)
        ca.revoke(identity.kex_cert)
    console.print(f"revoked {instance}; {len(ca.revoked_serials())} certificate(s) on the revocation list")


@app.command("list")
def list_identities(keystore: Keystore = DEFAULT_KEYSTORE) -> None:
    """List the issued identities with their validity and revocation state."""
    with user_errors():
        ca = CertificateAuthority.load(keystore)
        identities = ca.identities()
    revoked = set(ca.revoked_serials())
    table = Table(title=f"{len(identities)} identities in {keystore}")
    for column in ("instance", "role", "fingerprint", "valid until (UTC)", "state"):
        table.add_column(column)
    for identity in identities:
        cert = identity.signing_cert
        state = "revoked" if cert.serial_number in revoked else "valid"
        role = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)[0].value
        table.add_row(identity.instance, str(role), identity.fingerprint, f"{cert.not_valid_after_utc:%Y-%m-%d}", state)
    console.print(table)
