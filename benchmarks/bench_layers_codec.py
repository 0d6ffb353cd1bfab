"""Compressed and Encrypted throughput against the raw libraries, on 1 MiB values.

Usage (from the repository root)::

    .venv/bin/python benchmarks/bench_layers_codec.py [--size 1048576] [--count 40] [--rounds 7]
    .venv/bin/python benchmarks/bench_layers_codec.py --profile compressed-put

Each layer wraps a ``MemoryStore`` (which costs little: it keeps the bytes
it is given), and is timed putting and getting ``--count`` values of
``--size`` bytes, against the library it is built on doing the same work
by hand in the same process:

* ``Compressed`` (zstd, level 3) against ``zstandard.ZstdCompressor(level=3)``
  and ``ZstdDecompressor``, on text-like data that compresses about 4:1;
* ``Encrypted`` in both etag modes against one ``AESGCM.encrypt``/``decrypt``
  call per value from ``cryptography``, on random data: ``etag="md5"``
  (the default) and ``etag="tag"`` (etags from the AES-GCM tag, no hash).

A put that honours the Store contract's etag (the MD5 of the logical
value: ``Compressed``, ``Encrypted(etag="md5")``) must also compute that
MD5, so those puts are also compared with "raw + MD5", the library call
plus ``hashlib.md5``: the least such a layer can do. ``Encrypted(etag="tag")``
hashes nothing, so it is compared with AES-GCM alone, and with "raw, kept":
AES-GCM whose outputs are kept (in a dict, as any store keeps the values
it is given) instead of dropped at once, which costs page faults and cache
misses that a dropped output, its memory reused at once, never meets.
Gets need no MD5.
Rounds alternate the order of the contenders; the median of ``--rounds``
is printed in MB/s (10^6 bytes), with the ratio of each layer to its raw
library. Target (issue 6): within 20% of the raw library. ``--profile
NAME`` runs one contender under cProfile instead (names: compressed-put,
compressed-get, encrypted-put, encrypted-get, encrypted-tag-put,
encrypted-tag-get).
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import os
import pstats
import random
import statistics
import sys
import time
from collections.abc import Callable

import zstandard
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from mirrorkv import MemoryStore
from mirrorkv.layers import Compressed, Encrypted

Work = Callable[[int], object]


def text_like(size: int, seed: int) -> bytes:
    """Words drawn at random: compresses about 4:1 with zstd level 3."""
    rng = random.Random(seed)
    words = [
        w.encode()
        for w in ["the", "store", "keeps", "a", "value", "under", "each", "key", "and", "metadata"]
    ]
    words += [b"%d" % rng.randrange(10**6) for _ in range(200)]
    out = bytearray()
    while len(out) < size:
        out += b" ".join(rng.choices(words, k=256)) + b"\n"
    return bytes(out[:size])


def contenders(size: int, count: int) -> dict[str, Work]:
    """Name -> a function doing the work on value ``i`` (of ``count``)."""
    texts = [text_like(size, seed) for seed in range(count)]
    noise = [os.urandom(size) for _ in range(count)]
    key = os.urandom(32)

    compressor = zstandard.ZstdCompressor(level=3)
    decompressor = zstandard.ZstdDecompressor()
    packed = [compressor.compress(value) for value in texts]
    compressed = Compressed(MemoryStore())
    for i, value in enumerate(texts):
        compressed.put(f"v{i}", value)

    aead = AESGCM(key)
    nonces = [os.urandom(12) for _ in range(count)]
    sealed = [aead.encrypt(nonces[i], value, None) for i, value in enumerate(noise)]
    kept = dict(enumerate(sealed))
    encrypted = Encrypted(MemoryStore(), key)
    tagged = Encrypted(MemoryStore(), key, etag="tag")
    for i, value in enumerate(noise):
        encrypted.put(f"v{i}", value)
        tagged.put(f"v{i}", value)

    def md5(value: bytes) -> str:
        return hashlib.md5(value, usedforsecurity=False).hexdigest()

    return {
        "zstd compress (raw)": lambda i: compressor.compress(texts[i]),
        "zstd compress + MD5 (raw)": lambda i: (compressor.compress(texts[i]), md5(texts[i])),
        "Compressed.put": lambda i: compressed.put(f"v{i}", texts[i]),
        "zstd decompress (raw)": lambda i: decompressor.decompress(packed[i]),
        "Compressed.get": lambda i: compressed.get(f"v{i}"),
        "AES-GCM encrypt (raw)": lambda i: aead.encrypt(nonces[i], noise[i], None),
        "AES-GCM encrypt + MD5 (raw)": lambda i: (
            aead.encrypt(nonces[i], noise[i], None),
            md5(noise[i]),
        ),
        "AES-GCM encrypt, kept (raw)": lambda i: kept.__setitem__(
            i, aead.encrypt(nonces[i], noise[i], None)
        ),
        "Encrypted.put": lambda i: encrypted.put(f"v{i}", noise[i]),
        "AES-GCM decrypt (raw)": lambda i: aead.decrypt(nonces[i], sealed[i], None),
        "Encrypted.get": lambda i: encrypted.get(f"v{i}"),
        "Encrypted(etag=tag).put": lambda i: tagged.put(f"v{i}", noise[i]),
        "Encrypted(etag=tag).get": lambda i: tagged.get(f"v{i}"),
    }


#: (layer, raw library, raw library + what the layer must do besides (an MD5, keeping
#: the output), or None).
COMPARISONS = [
    ("Compressed.put", "zstd compress (raw)", "zstd compress + MD5 (raw)"),
    ("Compressed.get", "zstd decompress (raw)", None),
    ("Encrypted.put", "AES-GCM encrypt (raw)", "AES-GCM encrypt + MD5 (raw)"),
    ("Encrypted.get", "AES-GCM decrypt (raw)", None),
    ("Encrypted(etag=tag).put", "AES-GCM encrypt (raw)", "AES-GCM encrypt, kept (raw)"),
    ("Encrypted(etag=tag).get", "AES-GCM decrypt (raw)", None),
]

PROFILES = {
    "compressed-put": "Compressed.put",
    "compressed-get": "Compressed.get",
    "encrypted-put": "Encrypted.put",
    "encrypted-get": "Encrypted.get",
    "encrypted-tag-put": "Encrypted(etag=tag).put",
    "encrypted-tag-get": "Encrypted(etag=tag).get",
}


def megabytes_per_second(work: Work, size: int, count: int) -> float:
    """Run ``work`` on every value once; return MB/s of logical bytes."""
    start = time.perf_counter()
    for i in range(count):
        work(i)
    return size * count / (time.perf_counter() - start) / 1e6


def main() -> None:
    """Time every contender, print medians and ratios (or profile one)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=1 << 20)
    parser.add_argument("--count", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--profile", choices=sorted(PROFILES))
    args = parser.parse_args()
    works = contenders(args.size, args.count)
    if args.profile:
        work = works[PROFILES[args.profile]]
        profiler = cProfile.Profile()
        profiler.enable()
        for _ in range(args.rounds):
            for i in range(args.count):
                work(i)
        profiler.disable()
        pstats.Stats(profiler).sort_stats("tottime").print_stats(15)
        return
    names = list(works)
    results: dict[str, list[float]] = {name: [] for name in names}
    for round_ in range(args.rounds):
        order = names if round_ % 2 == 0 else names[::-1]
        for name in order:
            results[name].append(megabytes_per_second(works[name], args.size, args.count))
    median = {name: statistics.median(values) for name, values in results.items()}
    print(f"$ {sys.executable} {' '.join(sys.argv)}")
    print(
        f"{args.count} values of {args.size} bytes, median of {args.rounds} rounds, "
        f"zstandard {zstandard.__version__}, Python {sys.version.split()[0]}"
    )
    print()
    width = max(map(len, names))
    for name in names:
        print(f"{name:<{width}}  {median[name]:9.1f} MB/s")
    print()
    for layer, raw, floor in COMPARISONS:
        line = f"{layer:<23} {median[layer] / median[raw]:5.2f}x {raw}"
        if floor is not None:
            line += f", {median[layer] / median[floor]:5.2f}x {floor}"
        print(line)


if __name__ == "__main__":
    main()
