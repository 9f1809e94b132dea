"""``gridloom run``: the main job.

Until the scenario runner exists it summarises the interface catalog that every later
part of gridloom reads: what the seed defines, per section, and how it is timed and secured.
"""

from __future__ import annotations

from collections import Counter

from rich.console import Console
from rich.table import Table

from gridloom.catalog import Domain, InterfaceStatus, SecurityLevel, load_catalog

console = Console()


def run() -> None:
    """Run the main job on the embedded defaults (for now: the interface catalog summary)."""
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
