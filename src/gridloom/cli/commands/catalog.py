"""``gridloom catalog``: browse the seed's logical interfaces and actors."""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from gridloom.catalog import Interface, InterfaceStatus, SecurityLevel, load_catalog
from gridloom.cli.errors import user_errors

app = typer.Typer(help="The seed's logical interfaces and actors, as gridloom implements them.", no_args_is_help=True)
console = Console()


class TableFormat(StrEnum):
    TABLE = "table"
    JSON = "json"


class TextFormat(StrEnum):
    TEXT = "text"
    JSON = "json"


def interface_json(iface: Interface) -> dict[str, Any]:
    """The JSON view of an interface: every field of the catalog plus its actor list."""
    return {**iface.model_dump(mode="json"), "actors": list(iface.actors)}


def _print_json(data: object) -> None:
    # Plain print: rich would wrap long lines and break the JSON for scripts.
    print(json.dumps(data, indent=2, ensure_ascii=False))


def _ends(iface: Interface) -> str:
    arrows = {(f.source, f.target, f.bidirectional) for f in iface.flows}
    return ", ".join(f"{s} {'<->' if both else '->'} {t}" for s, t, both in sorted(arrows))


def _timing(iface: Interface) -> str:
    bound = iface.tightest_latency_s
    if bound is not None:
        return f"<= {bound:g} s"
    kinds = sorted({f.timing.kind.value for f in iface.flows} - {"unspecified"})
    return ", ".join(kinds)


def _cia(iface: Interface) -> str:
    sec = iface.security
    levels = (sec.confidentiality.level, sec.integrity.level, sec.availability.level)
    return "/".join("-" if lvl is SecurityLevel.NOT_STATED else lvl.name.lower() for lvl in levels)


@app.command("list")
def list_interfaces(
    domain: Annotated[
        str | None, typer.Option(help="Only this section of the seed: AMI, ES, ET, DGM, DR or WAS.")
    ] = None,
    actor: Annotated[
        str | None, typer.Option(help="Only interfaces with this actor at one end (id or seed name).")
    ] = None,
    fmt: Annotated[
        TableFormat, typer.Option("--format", help="table for people, json for scripts.")
    ] = TableFormat.TABLE,
) -> None:
    """List the seed's logical interfaces, with their actors, timing and C/I/A needs."""
    with user_errors():
        chosen = load_catalog().select(domain=domain, actor=actor)
    if fmt is TableFormat.JSON:
        _print_json([interface_json(i) for i in chosen])
        return
    table = Table(title=f"{len(chosen)} interfaces", show_lines=False)
    for column in ("id", "status", "title", "flows", "timing", "C/I/A", "protocols"):
        table.add_column(column, overflow="fold")
    for iface in chosen:
        status = "" if iface.status is InterfaceStatus.DEFINED else iface.status.value
        table.add_row(
            iface.id, status, iface.title, _ends(iface), _timing(iface), _cia(iface), ", ".join(iface.protocols)
        )
    console.print(table)


@app.command("show")
def show_interface(
    interface_id: Annotated[str, typer.Argument(metavar="ID", help="Interface id, e.g. AMI-9a, ES-16b, DGM-20.")],
    fmt: Annotated[TextFormat, typer.Option("--format", help="text for people, json for scripts.")] = TextFormat.TEXT,
) -> None:
    """Show everything the seed says about one interface."""
    with user_errors():
        catalog = load_catalog()
        iface = catalog.interface(interface_id)
    if fmt is TextFormat.JSON:
        _print_json(interface_json(iface))
        return
    console.print(
        f"[bold]{iface.id}[/]  {iface.title}  [dim]({iface.domain.value} {iface.number}, {iface.status.value})[/]"
    )
    if iface.description:
        console.print(iface.description, highlight=False)
    for n, flow in enumerate(iface.flows, 1):
        arrow = "<->" if flow.bidirectional else "->"
        console.print(f"\n[bold]flow {n}[/]: {flow.source} {arrow} {flow.target}")
        for item in flow.information:
            console.print(f"  - {item}", highlight=False)
        if flow.timing.statement:
            bound = "" if flow.timing.max_latency_s is None else f", max {flow.timing.max_latency_s:g} s"
            console.print(
                f"  timing: {flow.timing.statement} [dim]({flow.timing.kind.value}{bound})[/]", highlight=False
            )
    sec = iface.security
    rows: list[tuple[str, tuple[str, ...]]] = [
        ("actors as written", iface.actors_as_written),
        ("media", iface.media),
        ("protocols", iface.protocols),
        ("security requirements (seed)", sec.statement),
        (
            "security levels",
            tuple(f"{name}: {need.level.name.lower()}" for name, need in sec.needs().items() if need.level),
        ),
        ("vulnerabilities", iface.vulnerabilities),
        ("threats", iface.threats),
        ("impacts", iface.impacts),
        ("constraints", iface.constraints),
        ("comments", iface.comments),
    ]
    for label, items in rows:
        if items:
            console.print(f"\n[bold]{label}[/]")
            for item in items:
                console.print(f"  - {item}", highlight=False)


@app.command("actors")
def list_actors(
    fmt: Annotated[
        TableFormat, typer.Option("--format", help="table for people, json for scripts.")
    ] = TableFormat.TABLE,
) -> None:
    """List the seed's actors with their domain, the names the seed uses for them and their interfaces."""
    catalog = load_catalog()
    counts = {a: len(catalog.involving(a)) for a in catalog.actors}
    if fmt is TableFormat.JSON:
        _print_json([{**a.model_dump(mode="json"), "interfaces": counts[a.id]} for a in catalog.actors.values()])
        return
    table = Table(title=f"{len(catalog.actors)} actors")
    for column in ("id", "name", "domain", "interfaces", "seed names"):
        table.add_column(column, overflow="fold")
    for a in catalog.actors.values():
        table.add_row(a.id, a.name, a.domain.value, str(counts[a.id]), ", ".join(a.aliases))
    console.print(table)
