"""``gridloom assess``: the seed's security and timing requirements beside what gridloom enforces.

Registered in ``app.py`` as ``app.command(name="assess")(assess.assess)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from gridloom.assess import ReportFormat, read_stats, render_report
from gridloom.assess import assess as assess_interfaces
from gridloom.assess.render import totals
from gridloom.catalog import load_catalog
from gridloom.cli.errors import USAGE_ERROR, user_errors
from gridloom.fabric.policy import Policy

console = Console()
_stderr = Console(stderr=True)


def assess(
    fmt: Annotated[
        ReportFormat,
        typer.Option(
            "--format", help="md (Markdown) to read or paste into a ticket, html for a browser, json for scripts."
        ),
    ] = ReportFormat.MD,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", dir_okay=False, help="Write the report to this file instead of the terminal."),
    ] = None,
    domain: Annotated[
        str | None, typer.Option(help="Only this section of the seed: AMI, ES, ET, DGM, DR or WAS.")
    ] = None,
    stats: Annotated[
        Path | None,
        typer.Option(
            help="Per-interface measurements from a run (the JSON list FabricStats.snapshot() writes): "
            "timing and availability are then judged on measured p99 latency."
        ),
    ] = None,
) -> None:
    """Assess every logical interface: what the NIST seed document requires (confidentiality,
    integrity, availability, authentication, non-repudiation, timing) beside what gridloom
    enforces (signatures, CA certificates, encryption, freshness window, roles, audit), and
    every requirement not met yet."""
    with user_errors():
        catalog = load_catalog()
        measurements = read_stats(stats) if stats is not None else None
        results = assess_interfaces(catalog, Policy(catalog), stats=measurements, domain=domain)
    if measurements is not None:
        ignored = sorted({str(m["interface"]) for m in measurements} - set(catalog.interfaces))
        if ignored:
            _stderr.print(f"note: stats for ids not in the catalog were ignored: {', '.join(ignored)}", highlight=False)
    text = render_report(results, fmt)
    if output is None:
        # Plain print: rich would wrap long lines and break Markdown tables and JSON.
        print(text, end="")
        return
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as exc:
        _stderr.print(f"[bold red]error:[/] cannot write {str(output)!r}: {exc.strerror or exc}", highlight=False)
        raise typer.Exit(USAGE_ERROR) from exc
    counts = ", ".join(f"{kind} {n}" for kind, n in totals(results).items())
    console.print(
        f"wrote the {fmt.value} assessment of {len(results)} interfaces to {output} ({counts})", highlight=False
    )
