from __future__ import annotations

from collections.abc import Iterator

import pytest

from .fake_store import FakeStore


@pytest.fixture
def store() -> Iterator[object]:
    """The real embedded store when it exists; a tiny in-memory stand-in with the same API until then."""
    try:
        from gridloom.store import open_store  # type: ignore[attr-defined]
    except ImportError:
        yield FakeStore()
        return
    with open_store(":memory:") as s:
        yield s
