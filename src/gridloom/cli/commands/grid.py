"""``gridloom grid``: the benchmark grids, their feeder maps, and a simulated day of physics and fleets."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from gridloom.cli.errors import user_errors
from gridloom.errors import GridInputError
from gridloom.grid.connectivity import build_connectivity
from gridloom.grid.maps import write_html
from gridloom.grid.networks import DEFAULT_DISTRICT, DISTRICTS, load_district
from gridloom.grid.simulate import ScheduledFault, SimulationConfig, SimulationSummary, simulate

app = typer.Typer(
    help="Benchmark distribution grids (SimBench): list, show with a map, simulate days.", no_args_is_help=True
)
console = Console()

Name = Annotated[str, typer.Argument(help="A SimBench district code from 'gridloom grid list'.")]


@app.command("list")
def list_grids() -> None:
    """The grids a territory can be built from, with their customer counts."""
    table = Table(title="SimBench districts (a territory is built of replicas of one)")
    for column in ("code", "customers", "nodes", "description"):
        table.add_column(column)
    with console.status("loading grids (cached after the first time)…"):
        for code, description in DISTRICTS.items():
            district = load_district(code)
            table.add_row(code, f"{district.n_customers:,}", f"{district.n_nodes:,}", description)
    console.print(table)


@app.command("show")
def show(
    name: Name = DEFAULT_DISTRICT,
    map_file: Annotated[
        Path | None, typer.Option("--map", help="Write the feeder map (self-contained HTML) here.")
    ] = None,
) -> None:
    """Summarise a grid and its connectivity model (substation to meters); optionally draw its map."""
    with user_errors():
        district = load_district(name)
        model = build_connectivity(district)
    console.print(f"[bold]{district.code}[/]: {DISTRICTS.get(district.code, '')}")
    table = Table(title="connectivity model")
    table.add_column("device kind")
    table.add_column("count", justify="right")
    for kind, count in model.counts().items():
        table.add_row(kind.value, f"{count:,}")
    console.print(table)
    console.print(
        f"{district.n_nodes:,} nodes, {district.n_lines:,} lines, {district.n_switches:,} switches, "
        f"{district.n_trafos} transformers, {district.n_gens} generators"
    )
    if map_file is not None:
        write_html(map_file, model, title=district.code)
        console.print(f"map written to {map_file}")


def _parse_fault(text: str, start_at: dt.datetime) -> ScheduledFault:
    """``DEVICE@HH:MM`` or ``DEVICE@HH:MM/temporary`` or ``DEVICE@HH:MM/repair=2h`` (replica 0)."""
    try:
        device, rest = text.split("@", 1)
        when, *options = rest.split("/")
        hours, minutes = (int(x) for x in when.split(":"))
    except ValueError:
        raise GridInputError(
            f"--fault {text!r}: write DEVICE@HH:MM, e.g. fuse-1775@10:07 or rcl-10788@14:03/temporary"
        ) from None
    permanent, repair_after_s = True, None
    for option in options:
        if option == "temporary":
            permanent = False
        elif option.startswith("repair=") and option.endswith("h"):
            repair_after_s = float(option[7:-1]) * 3600
        else:
            raise GridInputError(f"--fault {text!r}: unknown option {option!r} (use /temporary or /repair=2h)")
    at = start_at + dt.timedelta(hours=hours, minutes=minutes)
    return ScheduledFault(at=at, device=device, permanent=permanent, repair_after_s=repair_after_s)


@app.command("simulate")
def simulate_grid(
    name: Name = DEFAULT_DISTRICT,
    customers: Annotated[int, typer.Option(help="Customers in the territory (replicas of the grid).")] = 5_000,
    days: Annotated[float, typer.Option(help="Simulated days.")] = 1.0,
    start: Annotated[str, typer.Option(help="First simulated day (UTC), YYYY-MM-DD.")] = "2026-07-01",
    seed: Annotated[int, typer.Option(help="Same seed, same results.")] = 1,
    fault: Annotated[
        list[str] | None, typer.Option(help="Inject a fault: DEVICE@HH:MM[/temporary][/repair=2h]; repeatable.")
    ] = None,
    realtime: Annotated[
        bool, typer.Option(help="Pace each 15-minute step to the wall clock (demonstrations).")
    ] = False,
    speed: Annotated[float, typer.Option(min=0.001, help="With --realtime: simulated seconds per wall second.")] = 1.0,
) -> None:
    """Run power flow and the device fleets over simulated days and summarise what happened."""
    with user_errors():
        try:
            start_at = dt.datetime.fromisoformat(start).replace(tzinfo=dt.UTC)
        except ValueError:
            raise GridInputError(f"--start {start!r} is not a date like 2026-07-01") from None
        faults = tuple(_parse_fault(f, start_at) for f in fault or [])
        config = SimulationConfig(
            district=name, customers=customers, days=days, start_at=start_at, seed=seed, faults=faults
        )
        district = load_district(name)
        with Progress(
            TextColumn("[bold]simulating[/]"), BarColumn(), TextColumn("{task.completed}/{task.total} steps"),
            TimeElapsedColumn(), console=console,
        ) as bar:  # fmt: skip
            task = bar.add_task("simulate", total=round(days * 96))
            summary = simulate(
                config,
                district=district,
                progress=lambda done, total: bar.update(task, completed=done),
                realtime=realtime,
                speed=speed,
            )
    _print_summary(summary)


def _voltage_spread(s: SimulationSummary) -> str:
    median = sorted(s.voltage_pu_p50)[len(s.voltage_pu_p50) // 2]
    return f"{min(s.voltage_pu_p01):.3f} / {median:.3f} / {max(s.voltage_pu_p99):.3f}"


def _print_summary(s: SimulationSummary) -> None:
    table = Table(
        title=f"{s.customers:,} customers on {s.substations} substation(s), {s.feeders} feeders ({s.district})"
    )
    table.add_column("figure")
    table.add_column("value", justify="right")
    rows = [
        ("simulated steps (15 min)", f"{len(s.step_at):,}"),
        ("PV systems / EVs / home batteries", f"{s.pv_units:,} / {s.evs:,} / {s.batteries:,}"),
        ("energy from the substations (MWh)", f"{s.substation_wh / 1e6:,.3f}"),
        ("energy from MV generators (MWh)", f"{s.generation_mv_wh / 1e6:,.3f}"),
        ("energy metered, net (MWh)", f"{s.metered_net_wh / 1e6:,.3f}"),
        ("losses (MWh)", f"{s.losses_wh / 1e6:,.3f}"),
        ("energy balance error", f"{s.energy_balance_error:+.4%}"),
        ("customer voltage lowest p1 / median p50 / highest p99 (pu)", _voltage_spread(s)),
        ("customer intervals outside 0.95-1.05 pu", f"{s.voltage_violations:,}"),
        ("interval reads: made / delivered", f"{s.reads_offered:,} / {s.reads_delivered:,}"),
        ("concentrator batches", f"{s.read_batches:,}"),
        ("meter events made", ", ".join(f"{k} {v}" for k, v in sorted(s.events_offered.items())) or "none"),
        ("meter events delivered", ", ".join(f"{k} {v}" for k, v in sorted(s.events_delivered.items())) or "none"),
        ("most customers out at once", f"{max(s.customers_out):,}"),
        ("IED measurements (breakers, reclosers)", f"{s.ied_measurements:,}"),
        ("wall time by part (s)", ", ".join(f"{k} {v:.2f}" for k, v in s.seconds.items())),
    ]
    for label, value in rows:
        table.add_row(label, value)
    console.print(table)
