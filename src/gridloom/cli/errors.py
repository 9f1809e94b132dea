"""Turn gridloom errors into a clear message on stderr and exit code 2."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import typer
from rich.console import Console
from rich.markup import escape

from gridloom.errors import GridloomError

USAGE_ERROR = 2
_stderr = Console(stderr=True)


@contextmanager
def user_errors() -> Iterator[None]:
    """Report a :class:`GridloomError` as ``error: ...`` and exit with code 2."""
    try:
        yield
    except GridloomError as exc:
        # escape: error texts quote user values such as '[null]' that are not rich markup
        _stderr.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, markup=True)
        raise typer.Exit(USAGE_ERROR) from exc
