"""``gridloom greenbutton``: a customer's interval usage as Green Button (NAESB ESPI) XML or CSV."""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated
from zoneinfo import ZoneInfo

import pyarrow as pa
import pyarrow.compute as pc
import typer
from rich.console import Console

from gridloom.cli.errors import user_errors
from gridloom.errors import NothingToExport, ProtocolInputError
from gridloom.protocols import greenbutton

if TYPE_CHECKING:
    from gridloom.systems.cis import Cis

app = typer.Typer(
    help="Green Button (NAESB ESPI) exports of customers' interval usage (AMI-25, AMI-26).", no_args_is_help=True
)
_stderr = Console(stderr=True)


class ExportFormat(StrEnum):
    XML = "xml"
    CSV = "csv"


@app.callback()
def _greenbutton() -> None:
    """Green Button (NAESB ESPI) exports of customers' interval usage (AMI-25, AMI-26)."""


def _when(text: str | None, *, option: str, zone: str, end: bool) -> dt.datetime | None:
    """A day (local midnight in ``zone``; for --to the day is included) or an ISO 8601 time."""
    if text is None:
        return None
    try:
        if len(text) == 10:
            day = dt.date.fromisoformat(text) + dt.timedelta(days=1 if end else 0)
            return dt.datetime.combine(day, dt.time(), tzinfo=ZoneInfo(zone)).astimezone(dt.UTC)
        at = dt.datetime.fromisoformat(text)
    except ValueError:
        raise ProtocolInputError(f"{option} {text!r} is not a day (2026-11-01) or an ISO 8601 time") from None
    return (at if at.tzinfo is not None else at.replace(tzinfo=ZoneInfo(zone))).astimezone(dt.UTC)


def _account_reads(
    cis: Cis, store: str, account: str, *, start: dt.datetime | None, end: dt.datetime | None
) -> tuple[pa.Table, list[str]]:
    """The reads of the meters an account had in service, each clipped to the account's time at the premise."""
    from gridloom.store import open_store

    windows = cis.service_windows([account], start=start, end=end)
    meters = sorted(set(windows["meter_id"].to_pylist()))
    if not meters:
        raise NothingToExport(f"account {account!r} had no meter in service in the period asked for")
    starts, ends = windows["start_at"].to_pylist(), windows["end_at"].to_pylist()  # end None: still there
    with open_store(store) as reads_store:
        reads = reads_store.reads(
            meter_ids=meters, start=min(starts), end=None if None in ends else max(ends), versions="current"
        )
    # a meter shared with an earlier or later occupant counts only while this account lived there
    keep = pa.array([False] * reads.num_rows, pa.bool_())
    for meter_id, start_at, end_at in zip(windows["meter_id"].to_pylist(), starts, ends, strict=True):
        inside = pc.and_(pc.equal(reads["meter_id"], meter_id), pc.greater_equal(reads["interval_start"], start_at))
        if end_at is not None:
            inside = pc.and_(inside, pc.less(reads["interval_start"], end_at))
        keep = pc.or_(keep, inside)
    reads = reads.filter(keep)
    if reads.num_rows == 0:
        raise NothingToExport(
            f"no interval reads for account {account!r} (meter(s) {', '.join(meters)}) while it was at the premise"
            + (f", from {start.isoformat()}" if start else "")
            + (f" to {end.isoformat()}" if end else ""),
            meter_ids=meters,
        )
    return reads, meters


@app.command("export")
def export(
    store: Annotated[str, typer.Option(help="The MDMS store: a DuckDB file or a postgresql:// URL.")],
    meter: Annotated[
        list[str] | None, typer.Option(help="Export this meter's usage; repeat for several meters.")
    ] = None,
    account: Annotated[
        str | None, typer.Option(help="Export the usage of a CIS account: its meters, over the time it lived there.")
    ] = None,
    export_format: Annotated[
        ExportFormat, typer.Option("--format", help="xml: Green Button (ESPI Atom feed); csv: one row per interval.")
    ] = ExportFormat.XML,
    from_: Annotated[
        str | None, typer.Option("--from", help="First day (2026-11-01, local midnight) or ISO 8601 time, included.")
    ] = None,
    to: Annotated[
        str | None,
        typer.Option(help="Last day, included (2026-11-30 exports all of 30 November), or an ISO 8601 time, excluded."),
    ] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write here instead of standard output.")
    ] = None,
    timezone: Annotated[
        str | None,
        typer.Option(help="IANA time zone of the customer's days (default: the CIS's zone for --account, else UTC)."),
    ] = None,
    raw: Annotated[
        bool, typer.Option(help="The reads have not been through VEE: mark them raw (ESPI quality 14), not valid (0).")
    ] = False,
) -> None:
    """Export interval usage (current versions after VEE) as Green Button XML or CSV.

    Estimated, edited and flagged intervals carry their ESPI quality code (7 edited, 8 / 9 / 11
    estimated, 10 questionable); delivered energy is the forward series, energy received from the
    customer (PV export) the reverse one. CSV columns: meter_id, interval_start_utc,
    interval_end_utc, interval_start_local, interval_s, energy_delivered_wh, energy_received_wh,
    espi_quality, espi_quality_name, quality_flags, version, source, rule.
    """
    with user_errors():
        if (meter is None) == (account is None):
            raise ProtocolInputError("give either --meter (repeatable) or --account")
        zone = timezone or "UTC"
        if account is not None:
            from gridloom.systems.cis import load_cis, open_database

            with open_database(store) as db:
                cis = load_cis(db)
            cis.account(account)  # an unknown account is refused with close matches
            zone = timezone or cis.timezone  # the account's days begin at its own midnight
        greenbutton.time_zone(zone)
        start = _when(from_, option="--from", zone=zone, end=False)
        end = _when(to, option="--to", zone=zone, end=True)
        if account is not None:
            reads, meters = _account_reads(cis, store, account, start=start, end=end)
            subscription, title = account, f"Green Button usage of account {account}"
        else:
            from gridloom.store import open_store

            meters = list(dict.fromkeys(meter or []))
            with open_store(store) as reads_store:
                reads = reads_store.reads(meter_ids=meters, start=start, end=end, versions="current")
            subscription, title = meters[0] if len(meters) == 1 else "meters", "Green Button usage"
        if export_format is ExportFormat.XML:
            data = greenbutton.to_xml(
                reads, meter_ids=meters, start=start, end=end, timezone=zone, validated=not raw,
                subscription=subscription, title=title,
            )  # fmt: skip
        else:
            data = greenbutton.to_csv(reads, meter_ids=meters, start=start, end=end, timezone=zone, validated=not raw)
    intervals = reads.num_rows  # the store gives one (current) version per interval
    if output is None:
        typer.echo(data, nl=False)
    else:
        output.write_bytes(data)
        _stderr.print(
            f"{intervals:,} intervals of {', '.join(meters)} written to {output} ({len(data):,} bytes)",
            highlight=False,
        )
