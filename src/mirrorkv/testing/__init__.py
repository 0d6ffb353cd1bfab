"""The conformance suite, shipped so that third-party backends can run it too.

A backend's test module subclasses :class:`~mirrorkv.testing.conformance.StoreConformance`
and provides a ``store_factory`` fixture returning a :class:`StoreFactory`::

    import pytest
    from mirrorkv.testing import StoreFactory
    from mirrorkv.testing.conformance import StoreConformance

    class TestMyStore(StoreConformance):
        @pytest.fixture
        def store_factory(self, tmp_path):
            return StoreFactory("mine", lambda: MyStore(tmp_path / "data"), persistent=True)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..store import Store

__all__ = ["StoreFactory"]


@dataclass(frozen=True)
class StoreFactory:
    """How the conformance suite opens the store under test.

    ``open`` returns a store over the *same* data on every call (a new empty
    one per test is the fixture's job), so the suite can reopen it.
    """

    #: A short name, shown in test ids.
    name: str
    #: Opens the store under test; every call sees the same data.
    open: Callable[[], Store]
    #: A URL another process can open the same store with (``None``: one process only).
    url: str | None = None
    #: The data survives ``close()`` and a reopen.
    persistent: bool = False
    #: Several processes may write it at once (needs ``url``).
    multi_process: bool = False
    #: Values stream through ``open``/``put_file`` without being held whole in memory.
    bounded_streaming: bool = False
    #: Every operation is a request to a server over the network: the load tests
    #: (counters from threads, the state machine) run the same races with fewer rounds.
    remote: bool = False
