"""``gridloom scenario``: check a scenario file, or print the effective scenario as YAML."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from gridloom.cli.errors import user_errors
from gridloom.grid.connectivity import DeviceKind, build_connectivity
from gridloom.grid.networks import load_district
from gridloom.grid.territory import build_territory
from gridloom.scenario.spec import (
    check_devices,
    default_scenario,
    format_duration,
    load_file_or_bundled,
)

app = typer.Typer(help="Scenario files: check one, or print the effective scenario.", no_args_is_help=True)
console = Console()


@app.command("validate")
def validate(
    file: Annotated[str, typer.Argument(help="A scenario YAML file, or a bundled one by name (default, storm).")],
) -> None:
    """Check a scenario (device ids against the grid included) and summarise it; exit 2 naming line and field."""
    with user_errors():
        scenario = load_file_or_bundled(file)
        with console.status("loading the grid to check device ids (cached after the first time)…"):
            district = load_district(scenario.grid.district)
            connectivity = build_connectivity(district)
        check_devices(scenario, district=district, connectivity=connectivity)
    substations = build_territory(district, scenario.grid.customers).replicas
    feeders = substations * connectivity.counts()[DeviceKind.BREAKER]
    time = scenario.time

    console.print(f"[bold green]valid:[/] {escape(file)}")
    facts = Table.grid(padding=(0, 2))
    facts.add_column(style="bold")
    facts.add_column()
    facts.add_row("name", escape(scenario.name))
    if scenario.description:
        facts.add_row("about", escape(scenario.description))
    facts.add_row(
        "territory",
        f"{scenario.grid.customers:,} customers of {scenario.grid.district}: {substations} substation(s) "
        f"of {district.n_customers:,} premises, {feeders} feeders",
    )
    facts.add_row(
        "span",
        f"{time.start:%Y-%m-%d %H:%M} to {scenario.end:%Y-%m-%d %H:%M} UTC: {time.days:g} day(s), "
        f"{time.steps:,} steps of {format_duration(time.step)}",
    )
    facts.add_row("systems", ", ".join(scenario.systems) + " (+ meters, concentrators and grid physics)")
    facts.add_row("seed", str(scenario.seed))
    console.print(facts)

    if not scenario.timeline:
        console.print("timeline: no events")
        return
    table = Table(title="timeline")
    for column in ("at (UTC)", "kind", "what"):
        table.add_column(column)
    for at, event in scenario.schedule():
        table.add_row(f"{at:%Y-%m-%d %H:%M:%S}", event.kind, escape(event.describe()))
    console.print(table)


@app.command("show")
def show(
    file: Annotated[
        str | None, typer.Argument(help="A scenario YAML file or a bundled name; the default scenario if left out.")
    ] = None,
) -> None:
    """Print the effective scenario as YAML: the file with every default filled in."""
    with user_errors():
        scenario = default_scenario() if file is None else load_file_or_bundled(file)
    # plain echo: YAML's [lists] are not rich markup
    typer.echo(scenario.to_yaml(), nl=False)
