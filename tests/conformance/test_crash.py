"""Crash tests: SIGKILL a process writing to a store, then check what survived.

For every persistent store that several processes can open by URL: a child
writes self-verifying values and acknowledges each one after ``put``
returned; it is killed after a few hundred writes, once in the middle of a
large ``put_file``. After each kill the store must open, hold only whole
values, and hold every acknowledged write (see :mod:`mirrorkv.testing.crash`).
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

from mirrorkv.testing import StoreFactory
from mirrorkv.testing.crash import BIG_KEY, CrashState, check_store, run_round

_BIG = 32 << 20

#: Rounds run in turn over one store: a big value written whole, kills during small writes,
#: and a kill in the middle of a big put_file that replaces it.
ROUNDS: list[dict[str, Any]] = [
    {"seed": 1, "big_at": 40, "big_size": _BIG},
    {"seed": 2},
    {"seed": 3, "big_at": 25, "big_size": _BIG, "kill_in_big": True},
    {"seed": 4},
]


@pytest.mark.slow
def test_kill_while_writing(store_factory: StoreFactory, tmp_path: Path) -> None:
    if not (store_factory.persistent and store_factory.multi_process and store_factory.url):
        pytest.skip(f"{store_factory.name} is not a persistent store other processes can open")
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    state = CrashState()
    for options in ROUNDS:
        kill_after = random.Random(options["seed"]).randint(200, 400)
        last = run_round(
            store_factory.url, state, kill_after=kill_after, scratch=scratch, **options
        )
        if not last.killed_in_big:
            assert last.acknowledged >= kill_after
        with store_factory.open() as store:
            verified = check_store(store, state, last)
        assert verified >= len(state.expected) > 0
    assert BIG_KEY in state.expected
