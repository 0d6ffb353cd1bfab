"""The conformance suite over every store in ``STORE_FACTORIES`` (see ``tests/conftest.py``)."""

from mirrorkv.testing.conformance import StoreConformance


class TestStore(StoreConformance):
    """Runs over the ``store_factory`` fixture, parametrized over every store."""
