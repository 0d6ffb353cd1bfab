"""Rewrite the asserts of the shipped suite so failures show the values compared."""

import sys

import pytest

for _module in (
    "mirrorkv.testing.conformance",
    "mirrorkv.testing.stateful",
    "mirrorkv.testing.crash",
):
    # Registering a module that is already imported only warns (and warnings are errors).
    if _module not in sys.modules:
        pytest.register_assert_rewrite(_module)
