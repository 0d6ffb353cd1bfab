"""The conformance suite: every line of the Store contract, for any store.

Subclass :class:`StoreConformance` and provide a ``store_factory`` fixture
(see :mod:`mirrorkv.testing`); a ``store`` fixture opening an empty store from
it is provided here. Tests that need a capability the factory does not declare
(``persistent``, ``multi_process``, ``bounded_streaming``) skip with the
reason. Tests marked ``slow`` (big values, processes) need the ``slow``
marker registered in your pytest configuration. To see the values behind a
failed assert, call ``pytest.register_assert_rewrite("mirrorkv.testing")`` in
your ``conftest.py`` before anything imports ``mirrorkv.testing``.

The tests live in one class per part of the contract, combined here:

* :class:`~mirrorkv.testing._basics.BasicContract`: single-key operations,
  ``Meta``, batches, copy, errors, lifecycle and persistence;
* :class:`~mirrorkv.testing._listing.ListingContract`: key rules, listing
  order, prefixes, ``start_after`` and ``ls``;
* :class:`~mirrorkv.testing._writes.WriteContract`: conditional writes,
  counters, and writers in threads and processes;
* :class:`~mirrorkv.testing._streaming.StreamingContract`: ``open``,
  ``put_file``/``get_file`` and a 64 MiB value in bounded memory.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ..store import Store
from . import StoreFactory
from ._basics import BasicContract
from ._listing import ListingContract
from ._streaming import StreamingContract
from ._writes import WriteContract
from .keysets import ESCAPING_KEYS, INVALID_KEYS, ORDER_KEYS, utf8_sorted

__all__ = ["ESCAPING_KEYS", "INVALID_KEYS", "ORDER_KEYS", "StoreConformance", "utf8_sorted"]


class StoreConformance(BasicContract, ListingContract, WriteContract, StreamingContract):
    """Tests every store must pass. Needs a ``store_factory`` fixture."""

    @pytest.fixture
    def store(self, store_factory: StoreFactory) -> Iterator[Store]:
        """The store under test, opened from the factory and closed afterwards."""
        opened = store_factory.open()
        yield opened
        opened.close()
