"""``gridloom oms``: outage management — reliability indices and outages from saved outage records."""

from __future__ import annotations

import datetime as dt
import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from gridloom.cli.errors import user_errors
from gridloom.cli.times import period_bound
from gridloom.errors import OutageRecordsError
from gridloom.systems.oms.indices import reliability_indices
from gridloom.systems.oms.records import EPOCH, OutageRecord, OutageStatus, load_records

app = typer.Typer(help="Outage management (OMS): outages and reliability indices (IEEE 1366).", no_args_is_help=True)
console = Console()
RECORDS_FILE = "oms_outages.json"


@app.callback()
def oms() -> None:
    """Outage management (OMS): outages and reliability indices (IEEE 1366)."""


class ReportFormat(StrEnum):
    TABLE = "table"
    JSON = "json"


def _records_path(path: Path) -> Path:
    return path / RECORDS_FILE if path.is_dir() else path


def _iso(us: int) -> str:
    return "" if us < 0 else (EPOCH + dt.timedelta(microseconds=us)).strftime("%Y-%m-%d %H:%M:%S")


@app.command("report")
def report(
    records: Annotated[
        Path,
        typer.Argument(help=f"The outage records: a run folder (its {RECORDS_FILE}) or the file itself."),
    ],
    start: Annotated[
        str | None,
        typer.Option(
            "--from", help="First day (2026-07-01, UTC midnight) or an ISO 8601 time; default: the first outage."
        ),
    ] = None,
    end: Annotated[
        str | None,
        typer.Option(
            "--to", help="Last day, included (2026-07-31), or an ISO 8601 time (excluded); default: the last."
        ),
    ] = None,
    outages: Annotated[bool, typer.Option("--outages", help="List the outages of the period too.")] = False,
    output_format: Annotated[
        ReportFormat, typer.Option("--format", help="A table for people, or one JSON object for scripts.")
    ] = ReportFormat.TABLE,
) -> None:
    """Reliability indices of the outages that began in a period, as IEEE 1366 defines them.

    SAIFI (interruptions per customer served), SAIDI (minutes without supply per customer served),
    CAIDI (SAIDI / SAIFI: the average restoration time) count sustained interruptions, longer than
    5 minutes; MAIFI counts momentary ones, as the meters reported them (an interruption long
    enough for a last gasp and a restore, restored within 5 minutes). Merged and cancelled records
    and single premises out on the customer's side are not utility interruptions and are left out.
    Outages still open count up to the end of the period.
    """
    with user_errors():
        found, served = load_records(_records_path(records))
        first = period_bound(start, option="--from", end=False, error=OutageRecordsError)
        last = period_bound(end, option="--to", end=True, error=OutageRecordsError)
        starts = [r.start_us for r in found if r.start_us >= 0]
        if first is None:
            first = EPOCH + dt.timedelta(microseconds=min(starts)) if starts else dt.datetime.now(dt.UTC)
        if last is None:
            last = EPOCH + dt.timedelta(microseconds=max(starts) + 1) if starts else first + dt.timedelta(days=1)
        indices = reliability_indices(found, customers_served=served, start=first, end=last)
    lo, hi = first.timestamp() * 1e6, last.timestamp() * 1e6
    chosen = [r for r in found if lo <= r.start_us < hi and r.status is not OutageStatus.MERGED]
    if output_format is ReportFormat.JSON:
        document: dict[str, Any] = {"indices": indices.as_dict()}
        if outages:
            document["outages"] = [r.as_dict() for r in chosen]
        typer.echo(json.dumps(document))
        return
    console.print(
        f"[bold]Reliability indices[/] (IEEE 1366), outages that began {first.isoformat()} to {last.isoformat()}, "
        f"{served:,} customers served",
        highlight=False,
        soft_wrap=True,
    )
    table = Table("index", "value", "meaning")
    table.add_row("SAIFI", f"{indices.saifi:.4f}", "sustained interruptions per customer served")
    table.add_row("SAIDI", f"{indices.saidi_min:.2f} min", "minutes without supply per customer served")
    caidi = "-" if indices.caidi_min is None else f"{indices.caidi_min:.1f} min"
    table.add_row("CAIDI", caidi, "average restoration time (SAIDI / SAIFI)")
    table.add_row("MAIFI", f"{indices.maifi:.4f}", "momentary interruptions per customer served")
    console.print(table)
    console.print(
        f"{indices.sustained_outages:,} sustained outages ({indices.open_outages:,} still open), "
        f"{indices.customers_interrupted:,} customers interrupted, {indices.customer_minutes:,.0f} customer minutes; "
        f"{indices.momentary_events:,} momentary events ({indices.customers_momentary:,} customers)",
        highlight=False,
        soft_wrap=True,
    )
    if outages:
        console.print(_outage_table(chosen))


def _outage_table(records: list[OutageRecord]) -> Table:
    table = Table("outage", "device", "status", "start", "detected", "end", "customers", "confidence", title="Outages")
    for r in records:
        status = "customer side" if r.customer_side else ("momentary" if r.momentary else r.status.value)
        table.add_row(
            r.outage_id, escape(r.device_id), status, _iso(r.start_us), _iso(r.detected_us), _iso(r.end_us),
            f"{r.customers:,}", f"{r.confidence:.2f}",
        )  # fmt: skip
    return table
