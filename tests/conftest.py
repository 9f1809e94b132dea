import pytest

from gridloom.catalog import Catalog, load_catalog


@pytest.fixture(scope="session")
def catalog() -> Catalog:
    return load_catalog()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
