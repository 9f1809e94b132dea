"""The top-level typer application; each noun lives in ``cli/commands``."""

from __future__ import annotations

import typer

from gridloom.cli.commands import assess, audit, billing, catalog, greenbutton, grid, mdms, oms, pki, run, scenario

app = typer.Typer(
    name="gridloom",
    help="gridloom: the NIST smart-grid actors and logical interfaces, running, secured and measured.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(catalog.app, name="catalog")
app.add_typer(pki.app, name="pki")
app.add_typer(audit.app, name="audit")
app.add_typer(grid.app, name="grid")
app.add_typer(mdms.app, name="mdms")
app.add_typer(oms.app, name="oms")
app.add_typer(billing.app, name="billing")
app.add_typer(greenbutton.app, name="greenbutton")
app.add_typer(scenario.app, name="scenario")
app.command(name="run")(run.run)
app.command(name="assess")(assess.assess)
