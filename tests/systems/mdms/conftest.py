from __future__ import annotations

from collections.abc import Iterator

import pytest

from gridloom.store import MeterDataStore, open_store


@pytest.fixture
def store() -> Iterator[MeterDataStore]:
    """An empty embedded store."""
    with open_store(":memory:") as s:
        yield s
