"""``gridloom audit``: check the hash-chained audit log of commands and requests."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from gridloom.cli.errors import user_errors
from gridloom.errors import AuditTampered
from gridloom.fabric.audit import verify as verify_log
from gridloom.fabric.identity import CertificateAuthority

app = typer.Typer(help="The audit log of commands and requests (non-repudiation).")
console = Console()


@app.command("verify")
def verify(
    log: Annotated[Path, typer.Argument(help="The audit log (JSON lines), e.g. runs/<run>/audit.jsonl.")],
    keystore: Annotated[
        Path | None,
        typer.Option(
            envvar="GRIDLOOM_KEYSTORE",
            help="Keystore with the auditor identity: also checks the signed head (catches entries cut off the end).",
        ),
    ] = None,
) -> None:
    """Detect any altered, removed, inserted or reordered entry; exit 1 if the log was tampered with."""
    if not log.exists():
        console.print(f"[bold red]error:[/] no audit log at {log}")
        raise typer.Exit(2)
    with user_errors():
        public_key = None
        if keystore is not None:
            public_key = CertificateAuthority.load(keystore).load_identity("auditor").signing_key.public_key()
    try:
        report = verify_log(log, public_key=public_key)
    except AuditTampered as exc:
        console.print(f"[bold red]TAMPERED[/]: {exc}", highlight=False)
        raise typer.Exit(1) from exc
    head = "signed head checked" if report.head_checked else "head not checked (give --keystore)"
    console.print(f"[green]ok[/]: {report.entries} entries, chain intact, {head}; last hash {report.last_hash[:16]}…")
