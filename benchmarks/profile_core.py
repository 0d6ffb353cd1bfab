"""Profile the hot paths (put and get) of mirrorkv's core stores with cProfile.

Usage::

    .venv/bin/python benchmarks/profile_core.py sqlite put        # or get; memory, file
    .venv/bin/python benchmarks/profile_core.py file get --keys 5000 --top 20

It opens the store in a fresh temporary directory, puts ``--keys`` keys like
``user42/item00001234`` with 100-byte values (profiled when the operation is
``put``), then gets each once in a shuffled order (profiled when it is
``get``), and prints the functions that took the most time of their own
(``tottime``). cProfile adds a fixed cost to every Python call, so it
overstates pure-Python steps next to C calls; read it for where the calls go,
and use ``bench_core.py`` for speed. For a sampling view that includes C
frames, run the same under ``py-spy record --native -o out.svg -- python ...``.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import random
import shutil
import sys
import tempfile
from typing import Any


def open_store(name: str, directory: str) -> Any:
    """The mirrorkv store ``name`` in ``directory``, with its default durability."""
    if name == "memory":
        from mirrorkv.stores.memory import MemoryStore

        return MemoryStore()
    if name == "sqlite":
        from mirrorkv.stores.sqlite import SQLiteStore

        return SQLiteStore(os.path.join(directory, "bench.db"))
    from mirrorkv.stores.file import FileStore

    return FileStore(os.path.join(directory, "files"))


def main() -> int:
    """Parse the options, run the workload with the chosen phase profiled, print the stats."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("store", choices=["memory", "sqlite", "file"])
    parser.add_argument("op", choices=["put", "get"])
    parser.add_argument("--keys", type=int, default=20_000)
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args()

    rng = random.Random(42)
    items = [(f"user{i % 100}/item{i:08d}", rng.randbytes(100)) for i in range(args.keys)]
    order = [key for key, _ in items]
    rng.shuffle(order)
    directory = tempfile.mkdtemp(prefix="mirrorkv-profile-")
    profiler = cProfile.Profile()
    try:
        store = open_store(args.store, directory)
        put, get = store.put, store.get
        if args.op == "put":
            profiler.enable()
        for key, value in items:
            put(key, value)
        if args.op == "put":
            profiler.disable()
        else:
            profiler.enable()
            for key in order:
                get(key)
            profiler.disable()
        store.close()
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    stats = pstats.Stats(profiler, stream=sys.stdout)
    stats.sort_stats("tottime").print_stats(args.top)
    return 0


if __name__ == "__main__":
    sys.exit(main())
