"""``gridloom run``: the main job — a scenario's grid, fleets and systems on the fabric, and its report."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import webbrowser
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from gridloom.cli.errors import user_errors
from gridloom.scenario.runner import RunOptions, RunProgress, RunResult, run_scenario
from gridloom.scenario.spec import default_scenario, load_file_or_bundled

console = Console()


class _Display:
    """Simulated time, messages per interface and the latest alarms, redrawn after each step."""

    def __init__(self, total_steps: int) -> None:
        self.bar = Progress(
            TextColumn("[bold]{task.fields[at]}[/]"), BarColumn(), TextColumn("{task.completed}/{task.total} steps"),
            TimeElapsedColumn(), console=console,
        )  # fmt: skip
        self.task = self.bar.add_task("run", total=total_steps, at="starting")
        self.table = Table()
        self.live = Live(self.bar, console=console, refresh_per_second=8, transient=False)

    def update(self, progress: RunProgress) -> None:
        self.bar.update(self.task, completed=progress.step, total=progress.total_steps,
                        at=f"{progress.at:%Y-%m-%d %H:%M} UTC")  # fmt: skip
        traffic = Table(title="messages per interface", show_edge=False, pad_edge=False)
        traffic.add_column("interface")
        traffic.add_column("delivered", justify="right")
        for interface, count in sorted(progress.delivered.items(), key=lambda kv: -kv[1])[:6]:
            traffic.add_row(interface, f"{count:,}")
        traffic.add_row("[red]rejected[/]" if progress.rejections else "rejected", f"{progress.rejections:,}")
        alarms = Table(title="alarms", show_edge=False, pad_edge=False)
        alarms.add_column("at")
        alarms.add_column("alarm")
        for alarm in sorted(progress.alarms, key=lambda a: a.at)[-4:]:
            colour = {"critical": "red", "warning": "yellow"}.get(alarm.severity, "cyan")
            alarms.add_row(f"{alarm.at:%H:%M}", f"[{colour}]{alarm.source}: {alarm.text}[/]")
        self.live.update(Group(self.bar, traffic, alarms))


@contextlib.contextmanager
def _quiet_fabric_log() -> Iterator[None]:
    """Rejections are counted and reported, not printed over the progress display."""
    logger = logging.getLogger("gridloom")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def run(
    scenario_file: Annotated[
        str | None,
        typer.Argument(help="A scenario YAML file, or a bundled one by name (default, storm, demand_response)."),
    ] = None,
    customers: Annotated[int | None, typer.Option(help="Override the scenario's number of customers.")] = None,
    days: Annotated[float | None, typer.Option(help="Override the scenario's simulated days.")] = None,
    seed: Annotated[int | None, typer.Option(help="Override the scenario's seed (same seed, same results).")] = None,
    out: Annotated[Path | None, typer.Option(help="Run folder (default: runs/<scenario>-<time>).")] = None,
    bus: Annotated[str | None, typer.Option(help="NATS JetStream URL, e.g. nats://127.0.0.1:4222.")] = None,
    store: Annotated[
        str | None, typer.Option(help="MDMS store: postgresql://… (default: DuckDB in the run folder).")
    ] = None,
    realtime: Annotated[bool, typer.Option(help="Pace the run to the wall clock (demonstrations).")] = False,
    speed: Annotated[float, typer.Option(min=0.001, help="With --realtime: simulated seconds per wall second.")] = 60.0,
    open_report: Annotated[bool, typer.Option("--open", help="Open the report in a browser when done.")] = False,
) -> None:
    """Run a scenario: the grid, the meters and every system on the secured fabric; write metrics and a report."""
    with _quiet_fabric_log(), user_errors():
        scenario = load_file_or_bundled(scenario_file) if scenario_file is not None else default_scenario()
        scenario = scenario.with_overrides(customers=customers, days=days, seed=seed)
        folder = out or Path("runs") / f"{scenario.name}-{dt.datetime.now():%Y%m%d-%H%M%S}"
        if folder.exists() and any(folder.iterdir()):
            raise typer.BadParameter(f"{folder} is not empty; choose another --out")
        options = RunOptions(out=folder, bus=bus, store=store, realtime=realtime, speed=speed)
        console.print(
            f"[bold]{scenario.name}[/]: {scenario.grid.customers:,} customers on {scenario.grid.district}, "
            f"{scenario.time.days:g} day(s) from {scenario.time.start:%Y-%m-%d}, seed {scenario.seed}; "
            f"systems: {', '.join(scenario.systems)}"
        )
        display = _Display(round(scenario.time.days * 96))
        with display.live:
            result = asyncio.run(run_scenario(scenario, options, progress=display.update))
    _print_result(result)
    if open_report:
        webbrowser.open(result.report.resolve().as_uri())
    if result.interrupted:
        raise typer.Exit(130)


def _print_result(result: RunResult) -> None:
    console.print()
    m: dict[str, Any] = result.metrics
    grid, ami, vee, outages = m["grid"], m["ami"], m["vee"], m["outages"]
    table = Table(title=f"{m['scenario']['name']} — {m['status']} at {m['sim']['end']}")
    table.add_column("figure")
    table.add_column("value", justify="right")
    rows = [
        ("energy from the substations / MV generation (MWh)",
         f"{grid['substation_kwh'] / 1000:,.3f} / {grid['generation_mv_kwh'] / 1000:,.3f}"),
        ("energy metered, net / losses (MWh)",
         f"{grid['metered_net_kwh'] / 1000:,.3f} / {grid['losses_kwh'] / 1000:,.3f}"),
        ("energy balance error", f"{grid['energy_balance_error']:+.4%}"),
        ("customer intervals outside 0.95-1.05 pu", f"{grid['voltage_violations']:,}"),
        ("interval reads stored / lost in the field / estimated",
         f"{ami['reads_stored']:,} / {ami['reads_lost_in_field']:,} / {vee['estimated']:,}"),
        ("data completeness delivered / after VEE",
         f"{ami['completeness_delivered']:.2%} / {ami['completeness_after_vee']:.2%}"),
        ("VEE flags", ", ".join(f"{k} {v:,}" for k, v in vee["flagged"].items()) or "none"),
        ("outages / SAIFI / SAIDI (min) / MAIFI",
         f"{len(outages['events'])} / {outages['indices']['SAIFI']:.4f} / {outages['indices']['SAIDI_min']:.2f} / "
         f"{outages['indices']['MAIFI']:.4f}"),
    ]  # fmt: skip
    if m.get("billing"):
        b = m["billing"]
        rows.append(
            ("bills issued / held / total", f"{b['issued']:,} / {b['held']:,} / {b['billed_total']} {b['currency']}")
        )
    if m.get("oms"):
        oms = m["oms"]
        delay = (oms.get("detection_delay_s") or {}).get("mean")
        rows.append(("OMS: outages detected / mean detection delay",
                     f"{len(oms.get('outages', []))} / {'-' if delay is None else f'{delay:.0f} s'}"))  # fmt: skip
    dr = m.get("demand_response") or {}
    if dr.get("implemented") and dr.get("events"):
        shed = max((max(e.get("shed_kw") or [0]) for e in dr["events"]), default=0)
        rows.append(("demand-response events / largest shed (kW)", f"{len(dr['events'])} / {shed:,.1f}"))
    traffic = sum(row["delivered"] for row in m["interfaces"])
    rows.append(("messages delivered / interfaces with traffic", f"{traffic:,} / {len(m['interfaces'])}"))
    rows.append(("rejections", ", ".join(f"{k} {v}" for k, v in m["rejections"].items()) or "none"))
    if m["drills"]:
        passed = sum(d["passed"] for d in m["drills"])
        rows.append(("attack drills refused as expected", f"{passed} of {len(m['drills'])}"))
    rows.append(("wall time (s)", f"{m['wall_s'].get('total', 0):.1f}"))
    for name, value in rows:
        table.add_row(name, value)
    console.print(table)
    console.print(f"Report: [bold]{result.report}[/]  metrics: {result.out / 'metrics.json'}")
    console.print(f"Audit log: gridloom audit verify {result.out / 'audit.jsonl'} --keystore {result.out / 'pki'}")
    if result.interrupted:
        console.print("[yellow]Interrupted: the store, the audit log and the metrics up to that point were kept.[/]")
