"""``gridloom billing``: the CIS of a territory, billing runs per cycle, and one bill with its trace."""

from __future__ import annotations

import importlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, cast

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from gridloom.cli.errors import user_errors
from gridloom.errors import CisDataError
from gridloom.systems.billing import (
    PriceSeries,
    ReadsSource,
    bill_from_tables,
    events_from_csv,
    load_bills,
    run_billing,
    save_run,
)
from gridloom.systems.cis import has_cis, load_cis, open_database, save_cis

app = typer.Typer(
    help="Customer information and billing: create the CIS of a territory, bill a cycle, show a bill.",
    no_args_is_help=True,
)
console = Console()

Store = Annotated[
    str,
    typer.Option(
        "--store",
        envvar="GRIDLOOM_STORE",
        help="The meter data store: a DuckDB file or a postgresql:// URL. CIS and bills live in the same database.",
    ),
]
DEFAULT_STORE = ".gridloom/store.duckdb"


def _open_reads(url: str) -> ReadsSource:
    """The meter data store at ``url`` (interval reads, current versions)."""
    # The store package is another part's (S1); looked up when a run needs it, so this module
    # loads (and type-checks) whatever state that package is in.
    store_package = importlib.import_module("gridloom.store")
    return cast(ReadsSource, store_package.open_store(url))


@contextmanager
def _closing(source: object) -> Iterator[None]:
    """Close the store after the run (before the bills are saved through another connection)."""
    try:
        yield
    finally:
        close = getattr(source, "close", None)
        if callable(close):
            close()


@app.command("init-cis")
def init_cis(
    store: Store = DEFAULT_STORE,
    customers: Annotated[
        int, typer.Option(min=1, help="Customers of the simulated territory (one meter each).")
    ] = 5_000,
    district: Annotated[str | None, typer.Option(help="SimBench district the territory is built of.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the tariff draw (same seed, same CIS).")] = 0,
    replace: Annotated[bool, typer.Option("--replace", help="Replace a CIS already in the store.")] = False,
) -> None:
    """Create the CIS of a simulated territory: a premise, service point, customer and account per meter
    (ids follow the meter's, s003-m01234 -> acct-s003-01234-01), a tariff per customer from the default
    mix, and PV owners enrolled in net metering."""
    from gridloom.grid.networks import DEFAULT_DISTRICT, load_district
    from gridloom.grid.territory import build_territory
    from gridloom.systems.cis.build import cis_for_territory, pv_owners

    with user_errors():
        with open_database(store) as db:
            if has_cis(db) and not replace:
                raise CisDataError(f"{store} already holds a CIS; pass --replace to replace it")
        with console.status("loading the district (cached after the first time)…"):
            territory = build_territory(load_district(district or DEFAULT_DISTRICT), customers)
        cis = cis_for_territory(territory, net_metered=pv_owners(territory), seed=seed)
        with open_database(store) as db:
            save_cis(db, cis)
    table = Table(title=f"CIS in {store}: {len(cis):,} accounts")
    table.add_column("tariff")
    table.add_column("kind")
    table.add_column("accounts", justify="right")
    tariff_ids = cis.accounts["tariff_id"].to_pylist()
    for tariff_id, tariff in cis.tariffs.items():
        table.add_row(tariff_id, str(tariff.kind), f"{tariff_ids.count(tariff_id):,}")
    console.print(table)
    console.print(f"{cis.enrolments.num_rows:,} accounts enrolled in net metering (PV)")


@app.command("run")
def run(
    cycle: Annotated[str, typer.Option(help="The billing cycle: a month, YYYY-MM, in the utility's local time.")],
    store: Store = DEFAULT_STORE,
    account: Annotated[
        list[str] | None, typer.Option("--account", help="Bill only this account (repeatable). Default: all.")
    ] = None,
    events: Annotated[
        Path | None, typer.Option(help="CSV of critical-peak events: start_at,end_at[,event_id] (ISO 8601).")
    ] = None,
    prices: Annotated[
        Path | None, typer.Option(help="CSV of hourly real-time prices: hour_start,price_per_kwh.")
    ] = None,
    min_coverage: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Hold a bill when fewer of its intervals have reads.")
    ] = 0.99,
    rebill: Annotated[bool, typer.Option("--rebill", help="Cancel and replace bills already issued.")] = False,
    output: Annotated[str, typer.Option("--format", help="table or json.")] = "table",
) -> None:
    """Bill a cycle: one bill per account from the current versions of its validated reads, each line
    traceable to its meters, intervals and read versions. Stored in billing_bills / billing_lines."""
    with user_errors():
        with open_database(store) as db:
            cis = load_cis(db)
        event_list = events_from_csv(events) if events is not None else []
        price_series = PriceSeries.from_csv(prices) if prices is not None else None
        source = _open_reads(store)
        with _closing(source), Progress(
            TextColumn("rating"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            console=Console(stderr=True), transient=True, disable=output == "json",
        ) as progress:  # fmt: skip
            task = progress.add_task("accounts", total=None)

            def advance(done: int, total: int) -> None:
                progress.update(task, completed=done, total=total)

            result = run_billing(
                cis, source, cycle=cycle, account_ids=account, events=event_list, prices=price_series,
                min_coverage=min_coverage, progress=advance,
            )  # fmt: skip
        with open_database(store) as db:
            result = save_run(db, result, rebill=rebill)
    summary = result.summary()
    if output == "json":
        typer.echo(json.dumps(summary))
        return
    table = Table(title=f"billing run {result.run_id}")
    table.add_column("figure")
    table.add_column("value", justify="right")
    for key, value in summary.items():
        if key != "seconds":
            table.add_row(key, f"{value:,}" if isinstance(value, int) else str(value))
    console.print(table)
    held = result.bills.filter(result.bills["status"].to_numpy(zero_copy_only=False) == "held")
    for row in held.slice(0, 10).to_pylist():
        console.print(f"[yellow]held[/] {row['account_id']}: {row['hold_reason']}")


@app.command("show")
def show(
    account: Annotated[str, typer.Option(help="The account, e.g. acct-s000-00012-01.")],
    cycle: Annotated[str, typer.Option(help="The billing cycle, YYYY-MM.")],
    store: Store = DEFAULT_STORE,
) -> None:
    """One bill with its lines and, for each line, the meters, interval range and read versions behind it."""
    with user_errors():
        with open_database(store) as db:
            cis = load_cis(db)
            cis.check_accounts([account])
            bills, lines = load_bills(db, cycle=cycle, account_ids=[account])
        bill = bill_from_tables(bills, lines, account)
    console.print(
        f"[bold]{bill.bill_id}[/] {bill.status} — tariff {bill.tariff_id}, "
        f"{bill.period_start_at:%Y-%m-%d %H:%M} to {bill.period_end_at:%Y-%m-%d %H:%M} UTC"
    )
    table = Table()
    for column in ("line", "quantity", "rate", "amount", "meters", "intervals", "from (UTC)", "to", "versions", "est."):
        table.add_column(column)
    for x in bill.lines:
        table.add_row(
            x.label, f"{x.quantity:,.3f} {x.unit}", f"{x.rate:.4f}", f"{x.amount} {bill.currency}",
            ",".join(x.meter_ids), str(x.intervals), f"{x.interval_from:%m-%d %H:%M}" if x.interval_from else "",
            f"{x.interval_to:%m-%d %H:%M}" if x.interval_to else "",
            ", ".join(f"v{v}: {n}" for v, n in x.versions.items()), str(x.estimated_intervals),
        )  # fmt: skip
    console.print(table)
    console.print(f"[bold]total {bill.total} {bill.currency}[/]")
    if bill.hold_reason:
        console.print(f"[yellow]held:[/] {bill.hold_reason}")
