"""The ``gridloom`` command: ``gridloom <noun> <verb>``."""

from gridloom.cli.app import app

__all__ = ["app"]
