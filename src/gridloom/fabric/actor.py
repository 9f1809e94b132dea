"""What every fabric actor has: one endpoint, refused until attached, and a close that detaches it."""

from __future__ import annotations

from typing import ClassVar

from gridloom.errors import GridloomError
from gridloom.fabric.fabric import Endpoint


class FabricActor:
    """Mix-in: ``endpoint`` (raises ``not_started`` until the actor attached) and ``close``."""

    not_started: ClassVar[tuple[type[GridloomError], str]] = (GridloomError, "the actor is not attached to the fabric")
    _endpoint: Endpoint | None = None

    @property
    def endpoint(self) -> Endpoint:
        if self._endpoint is None:
            error, text = self.not_started
            raise error(text)
        return self._endpoint

    async def close(self) -> None:
        """Leave the fabric (again: nothing)."""
        endpoint, self._endpoint = self._endpoint, None
        if endpoint is not None:
            await endpoint.close()
