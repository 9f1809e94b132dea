from tests.systems.oms.conftest import district, model  # noqa: F401 - the session's district and its model
