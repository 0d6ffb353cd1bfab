"""PostgreSQL and MariaDB for the tests: the server fixture and the conformance factories."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from mirrorkv.testing import StoreFactory

#: Conformance-suite stores this backend provides (merged into ``STORE_FACTORIES``).
FACTORIES: dict[str, Callable[[pytest.FixtureRequest, Path], StoreFactory]] = {}
