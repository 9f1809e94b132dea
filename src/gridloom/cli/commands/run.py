"""``gridloom run``: the main job.

Until the scenario runner exists it summarises the interface catalog that every later part
of gridloom reads (what the seed defines, per section, and how it is timed and secured),
then simulates a day of the default territory: power flow, PV, EVs, meters, concentrators
and field IEDs, with a fuse fault and a temporary recloser fault to show outages.
"""

from __future__ import annotations

from collections import Counter
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from gridloom.catalog import Domain, InterfaceStatus, SecurityLevel, load_catalog
from gridloom.cli.commands.grid import simulate_grid

console = Console()


def run(
    customers: Annotated[int, typer.Option(help="Customers in the territory.")] = 5_000,
    days: Annotated[float, typer.Option(help="Simulated days.")] = 1.0,
    seed: Annotated[int, typer.Option(help="Same seed, same results.")] = 1,
) -> None:
    """Run the main job on the embedded defaults: the catalog summary and a simulated grid day."""
    catalog = load_catalog()
    table = Table(title="gridloom interface catalog (NIST smart-grid logical interfaces)")
    for column in ("section", "interfaces", "defined", "flows", "timed", "confidential", "protocols named"):
        table.add_column(column, justify="right" if column not in ("section", "protocols named") else "left")
    for domain in Domain:
        ifaces = catalog.in_domain(domain)
        defined = [i for i in ifaces if i.status is InterfaceStatus.DEFINED]
        flows = [f for i in ifaces for f in i.flows]
        timed = sum(1 for f in flows if f.timing.statement)
        confidential = sum(1 for i in ifaces if i.security.confidentiality.level >= SecurityLevel.REQUIRED)
        protocols = Counter(p for i in ifaces for p in i.protocols)
        table.add_row(
            domain.value,
            str(len(ifaces)),
            str(len(defined)),
            str(len(flows)),
            str(timed),
            str(confidential),
            ", ".join(p for p, _ in protocols.most_common(4)),
        )
    console.print(table)
    console.print(
        f"{len(catalog)} interfaces between {len(catalog.actors)} actors. "
        "See one with [bold]gridloom catalog show AMI-9a[/]; list them with [bold]gridloom catalog list[/]."
    )
    console.print()
    simulate_grid(
        customers=customers,
        days=days,
        seed=seed,
        fault=["fuse-1775@10:07/repair=3h", "rcl-10788@14:03/temporary"],
    )
