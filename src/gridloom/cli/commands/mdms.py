"""``gridloom mdms``: the meter data management system — import a utility's interval reads."""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from gridloom.cli.errors import USAGE_ERROR
from gridloom.cli.times import period_bound
from gridloom.errors import GridloomError, VeeInputError
from gridloom.store import open_store, redact
from gridloom.store.importer import COLUMNS, REQUIRED, read_interval_file

app = typer.Typer(
    help="Meter data management (MDMS): interval reads, their versions, and VEE.",
    no_args_is_help=True,
)
console = Console()
_stderr = Console(stderr=True)

Store = Annotated[
    str,
    typer.Option(
        "--store",
        envvar="GRIDLOOM_STORE",
        help="The meter data store: a DuckDB file (created if missing) or a postgresql:// URL.",
    ),
]
DEFAULT_STORE = ".gridloom/store.duckdb"


@app.callback()
def mdms() -> None:
    """Meter data management (MDMS): interval reads, their versions, and VEE."""


@app.command("import")
def import_reads(
    file: Annotated[
        Path,
        typer.Argument(
            exists=True,
            dir_okay=False,
            readable=True,
            help=f"A .csv (.csv.gz) or .parquet file with the columns {', '.join(REQUIRED)} and optionally"
            f" {', '.join(c for c in COLUMNS if c not in REQUIRED)}.",
        ),
    ],
    store: Store = DEFAULT_STORE,
) -> None:
    """Import interval reads from a CSV or Parquet file: all of it, or nothing.

    interval_start is ISO 8601 with a UTC offset (2026-11-01T00:15:00+01:00 or ...Z); energy in
    Wh, reactive energy in varh, voltage in V; interval_s defaults to 900. The whole file is
    checked first: a malformed row is reported with its line (or Parquet row) and field, exit
    code 2, and nothing of the file is stored. Reads already in the store (same meter and
    interval) are skipped, so importing a file twice stores it once.
    """
    try:
        with console.status(f"checking {file}…"):
            reads = read_interval_file(file)
        with console.status(f"storing {reads.num_rows:,} reads…"), open_store(store) as meter_data:
            result = meter_data.ingest_reads(reads)
    except GridloomError as exc:
        # escaped: a rejected value may hold [brackets] that rich would take for markup
        _stderr.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)  # one line to grep
        raise typer.Exit(USAGE_ERROR) from exc
    skipped = f"; {result.duplicates:,} already stored, skipped" if result.duplicates else ""
    console.print(
        f"imported {result.inserted:,} reads from {escape(str(file))} into {escape(redact(store))}{skipped}",
        highlight=False,
        soft_wrap=True,
    )


# ------------------------------------------------------------------ vee-report (VEE, part S2)
class VeeReportFormat(StrEnum):
    TABLE = "table"
    JSON = "json"


@app.command("vee-report")
def vee_report_command(
    store: Store = DEFAULT_STORE,
    start: Annotated[
        str | None,
        typer.Option("--from", help="First day (2026-11-01, UTC midnight) or an ISO 8601 time; default: all data."),
    ] = None,
    end: Annotated[
        str | None,
        typer.Option("--to", help="Last day, included (2026-11-30), or an ISO 8601 time (excluded); default: all."),
    ] = None,
    output_format: Annotated[
        VeeReportFormat, typer.Option("--format", help="A table for people, or one JSON object for scripts.")
    ] = VeeReportFormat.TABLE,
) -> None:
    """What VEE did to the stored interval data: reads failing each validation rule (as received),
    estimates in use per method, manual edits per reason code, and the share of intervals whose
    current value is an estimate."""
    from gridloom.systems.mdms import vee_report

    try:
        first = period_bound(start, option="--from", end=False, error=VeeInputError)
        last = period_bound(end, option="--to", end=True, error=VeeInputError)
        if first is not None and last is not None and last <= first:
            raise VeeInputError(f"--to ({end}) must come after --from ({start})")
        if "://" not in store and store != ":memory:" and not Path(store).exists():
            raise VeeInputError(f"no store at {store} (a report never creates one); give --store")
        with console.status("reading the store…"), open_store(store) as meter_data:
            report = vee_report(meter_data, start=first, end=last)
    except GridloomError as exc:
        _stderr.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)  # one line to grep
        raise typer.Exit(USAGE_ERROR) from exc
    if output_format is VeeReportFormat.JSON:
        typer.echo(json.dumps(report.to_dict()))
        return
    span = f"{first.isoformat() if first else 'the first read'} to {last.isoformat() if last else 'the last'}"
    console.print(
        f"[bold]VEE report[/] of {escape(redact(store))}, {span}\n"
        f"{report.intervals:,} intervals ({report.versions:,} versions stored): {report.measured:,} as measured, "
        f"{report.estimated:,} estimated ({report.estimated_share:.2%}), {report.edited:,} edited",
        highlight=False,
        soft_wrap=True,
    )
    sections = (
        ("validation rule", "reads flagged", "As received (original versions; gap: gaps filled)", report.flagged),
        ("estimation method", "intervals", "Estimates in use (current versions)", report.methods),
        ("reason code", "intervals", "Manual edits in use", report.edit_reasons),
    )
    for name, unit, title, counts in sections:
        if counts:
            table = Table(name, unit, title=title, title_justify="left")
            for key, count in counts.items():
                table.add_row(key, f"{count:,}")
            console.print(table)
