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

app = typer.Typer(
    help="gridloom's certificate authority: create it, issue actor identities and OpenADR TLS certificates, "
    "revoke them."
)
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
    tls = ca.tls_authority()
    console.print(f"created CA [bold]{name}[/] in {keystore}")
    console.print(f"created the OpenADR TLS root and issuing CA (ECDSA P-256) in {tls.folder}")
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


@app.command("issue-tls")
def issue_tls(
    role: Annotated[str, typer.Option(help="The actor's role: a catalog actor id or seed name, e.g. lms.")],
    instance: Annotated[str, typer.Option(help="Instance id; for a VEN also its venName, e.g. ems-17.")],
    host: Annotated[
        list[str] | None,
        typer.Option(help="A DNS name or IP address the endpoint serves on (repeat); needed for a VTN."),
    ] = None,
    keystore: Keystore = DEFAULT_KEYSTORE,
    days: Annotated[int, typer.Option(min=1, help="Validity in days.")] = 365,
) -> None:
    """Issue an OpenADR 2.0b TLS certificate (ECDSA P-256, from the OpenADR issuing CA) for a VTN or VEN."""
    from gridloom.protocols.openadr.security import openadr_fingerprint

    with user_errors():
        ca = CertificateAuthority.load(keystore)
        tls = ca.issue_tls(role, instance, catalog=load_catalog(), hosts=host or (), validity=dt.timedelta(days=days))
    console.print(
        f"issued the TLS certificate of [bold]{tls.instance}[/] as {tls.role}; "
        f"OpenADR fingerprint {openadr_fingerprint(tls.certificate)}"
    )


@app.command("revoke")
def revoke(
    instance: Annotated[str, typer.Option(help="Instance id whose certificates to revoke.")],
    keystore: Keystore = DEFAULT_KEYSTORE,
) -> None:
    """Revoke an actor instance's certificates: the fabric and the OpenADR VTN refuse it from then on."""
    with user_errors():
        ca = CertificateAuthority.load(keystore)
        actors = ca.folder / "actors"
        has_fabric = (actors / f"{instance}.sign.crt").exists()
        has_tls = (actors / f"{instance}.tls.crt").exists()
        if not has_fabric and not has_tls:
            ca.load_identity(instance)  # raises the usual "no identity" error
        if has_fabric:
            identity = ca.load_identity(instance)
            ca.revoke(identity.signing_cert)
            ca.revoke(identity.kex_cert)
        if has_tls:
            ca.revoke(ca.load_tls(instance).certificate)
    console.print(
        f"revoked {instance}; {len(ca.revoked_serials())} fabric and "
        f"{len(ca.tls_revoked_serials())} TLS certificate(s) on the revocation lists"
    )


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
