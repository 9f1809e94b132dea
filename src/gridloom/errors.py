"""gridloom's exceptions, all rooted in :class:`GridloomError`.

::

    GridloomError
    └── CatalogError
        ├── CatalogDataError      the catalog's YAML is malformed or inconsistent
        ├── UnknownInterface      no interface with that id
        ├── UnknownActor          no actor with that id or alias
        └── UnknownDomain         no section / domain with that name

Errors that name a thing the user typed carry close matches, so the CLI can say
"did you mean".
"""

from __future__ import annotations


class GridloomError(Exception):
    """Root of every error gridloom raises on purpose."""


class CatalogError(GridloomError):
    """Something about the interface catalog."""


class CatalogDataError(CatalogError):
    """The catalog data files are malformed or inconsistent; names the file and the entry."""


class _UnknownName(CatalogError):
    kind = "name"

    def __init__(self, name: str, suggestions: list[str] | None = None) -> None:
        self.name = name
        self.suggestions = suggestions or []
        hint = f"; did you mean {', '.join(self.suggestions)}?" if self.suggestions else ""
        super().__init__(f"unknown {self.kind} {name!r}{hint}")


class UnknownInterface(_UnknownName):
    kind = "interface"


class UnknownActor(_UnknownName):
    kind = "actor"


class UnknownDomain(_UnknownName):
    kind = "domain"
