"""The stateful model test over every store in ``STORE_FACTORIES`` (see ``tests/conftest.py``)."""

from mirrorkv.testing import StoreFactory
from mirrorkv.testing.stateful import run_stateful


def test_store_matches_dict_model(store_factory: StoreFactory) -> None:
    run_stateful(store_factory)
