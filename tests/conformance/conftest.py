"""Rewrite the asserts of the shipped suite so failures show the values compared."""

import pkgutil
import sys

import pytest

import mirrorkv.testing

for _info in pkgutil.iter_modules(mirrorkv.testing.__path__, "mirrorkv.testing."):
    # Registering a module that is already imported only warns (and warnings are errors).
    if _info.name not in sys.modules:
        pytest.register_assert_rewrite(_info.name)
