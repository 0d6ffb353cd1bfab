"""Work done in child processes: the crash harness and the counter worker.

The crash harness starts a child (``python -m mirrorkv.testing.crash``) that
opens a store by URL and writes self-verifying values in a loop, printing one
acknowledgement line per write only after ``put`` returned. The parent kills
it with SIGKILL at a chosen point, drains the acknowledgements still in the
pipe, reopens the store and checks three promises:

* the store opens;
* every value in it is whole (its embedded SHA-256 matches) and belongs to
  the key it is stored under;
* every acknowledged write is there with its last acknowledged value. The
  one write that may have been in flight (the next in the child's schedule)
  may have landed or not.

The child's schedule is a pure function of its seed, so the parent knows
which key and sequence number every step wrote without being told.
"""

from __future__ import annotations

import hashlib
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from ..errors import CorruptValue
from ..store import Store

__all__ = [
    "CrashRound",
    "CrashState",
    "check_store",
    "count_up",
    "make_value",
    "read_seq",
    "run_round",
    "schedule",
    "write_values",
]

_MAGIC = b"MKVCRASH"
_HEADER = len(_MAGIC) + 32
#: Small values are between these sizes, in bytes.
SMALL_SIZES = (4 * 1024, 64 * 1024)
#: The key the large ``put_file`` writes, shared by every round so an old value is at stake.
BIG_KEY = "crash/big"
_KEYS_PER_ROUND = 24
_CHUNK = 1 << 20


def count_up(url: str, key: str, times: int, barrier: object = None) -> None:
    """Open ``url`` and ``incr(key)`` ``times`` times (a target for multi-process tests).

    ``barrier`` (a ``multiprocessing`` barrier) makes the workers start together.
    """
    import mirrorkv

    with mirrorkv.open(url) as store:
        wait = getattr(barrier, "wait", None)
        if wait is not None:
            wait(60)
        for _ in range(times):
            store.incr(key)


def write_values(url: str, worker: int, times: int, barrier: object = None) -> None:
    """Open ``url`` and overwrite a few shared keys with self-verifying values ``times`` times.

    A target for multi-process tests: the keys are ``shared/0`` to ``shared/3``,
    the values between 4 and 64 KiB (see :func:`make_value`).
    """
    import mirrorkv

    rng = random.Random(worker)
    with mirrorkv.open(url) as store:
        wait = getattr(barrier, "wait", None)
        if wait is not None:
            wait(60)
        for i in range(times):
            key = f"shared/{i % 4}"
            store.put(key, make_value(key, worker * 1_000_000 + i, rng.randint(*SMALL_SIZES)))


def _filler(key: str, seq: int, size: int) -> bytes:
    return random.Random(f"{key}\n{seq}").randbytes(size)


def make_value(key: str, seq: int, size: int) -> bytes:
    """A value that proves itself whole: magic, SHA-256 of the body, body naming key and seq."""
    body = f"{key}\n{seq}\n".encode() + _filler(key, seq, size)
    return _MAGIC + hashlib.sha256(body).digest() + body


def read_seq(key: str, stream: IO[bytes]) -> int:
    """The sequence number of a value made by this module; :class:`CorruptValue` if not whole."""
    header = stream.read(_HEADER)
    if len(header) != _HEADER or not header.startswith(_MAGIC):
        raise CorruptValue(f"{key!r}: bad header {header[:16]!r}")
    digest = hashlib.sha256()
    first = b""
    while chunk := stream.read(_CHUNK):
        if len(first) < 2048:
            first += chunk[:2048]
        digest.update(chunk)
    if digest.digest() != header[len(_MAGIC) :]:
        raise CorruptValue(f"{key!r}: torn value (SHA-256 mismatch)")
    owner, seq, _ = first.split(b"\n", 2)
    if owner.decode() != key:
        raise CorruptValue(f"{key!r} holds the value of {owner.decode()!r}")
    return int(seq)


def schedule(namespace: str, seed: int) -> Iterator[tuple[str, int, int]]:
    """The child's writes, forever: ``(key, seq, size)``, a pure function of the seed.

    Keys are few (so they are overwritten often) and include the hard cases
    ``k`` next to ``k/sub`` and non-ASCII names.
    """
    rng = random.Random(seed)
    names = [f"k{i:02d}" for i in range(_KEYS_PER_ROUND - 4)] + ["k01/sub", "é", "\u4e2d/x", "a b"]
    keys = [f"{namespace}/{name}" for name in names]
    step = 0
    while True:
        yield rng.choice(keys), seed * 1_000_000 + step, rng.randint(*SMALL_SIZES)
        step += 1


def _write_big(path: Path, seq: int, size: int) -> None:
    """Write a self-verifying value of ``size`` bytes for :data:`BIG_KEY` to ``path``."""
    digest = hashlib.sha256()
    rng = random.Random(seq)
    with open(path, "w+b") as out:
        out.write(b"\0" * _HEADER)
        body = f"{BIG_KEY}\n{seq}\n".encode()
        remaining = size
        while True:
            digest.update(body)
            out.write(body)
            if remaining <= 0:
                break
            body = rng.randbytes(min(_CHUNK, remaining))
            remaining -= len(body)
        out.seek(0)
        out.write(_MAGIC + digest.digest())


def _child(url: str, namespace: str, seed: int, big_at: int, big_size: int, scratch: str) -> None:
    """The writing child: put values forever, acknowledging each after put() returned."""
    import mirrorkv

    out = sys.stdout
    with mirrorkv.open(url) as store:
        for step, (key, seq, size) in enumerate(schedule(namespace, seed)):
            if step == big_at:
                path = Path(scratch) / f"big-{seq}.bin"
                _write_big(path, seq, big_size)
                out.write(f"big {seq}\n")
                out.flush()
                store.put_file(BIG_KEY, path)
                path.unlink()
                out.write(f"ack {BIG_KEY}\t{seq}\n")
            else:
                store.put(key, make_value(key, seq, size))
                out.write(f"ack {key}\t{seq}\n")
            out.flush()


@dataclass
class CrashState:
    """What the parent knows across rounds: the seq every key must hold."""

    #: key -> the seq its value must have (the last acknowledged or verified one).
    expected: dict[str, int] = field(default_factory=dict)
    #: Keys any round may have written.
    known: set[str] = field(default_factory=lambda: {BIG_KEY})


@dataclass
class CrashRound:
    """The outcome of one round: what was acknowledged and what may have been in flight."""

    acknowledged: int
    #: ``(key, seq)`` of the one write that may or may not have landed.
    in_flight: tuple[str, int] | None
    killed_in_big: bool


def run_round(
    url: str,
    state: CrashState,
    *,
    seed: int,
    kill_after: int,
    scratch: Path,
    big_at: int = -1,
    big_size: int = 0,
    kill_in_big: bool = False,
) -> CrashRound:
    """Run a writing child over ``url`` and SIGKILL it; update ``state`` with its acknowledgements.

    The child is killed after ``kill_after`` acknowledgements, or, with
    ``kill_in_big``, a random moment after it starts the large ``put_file``
    at step ``big_at``. Raises ``AssertionError`` if the child dies on its own.
    """
    namespace = f"crash/r{seed}"
    steps = schedule(namespace, seed)
    errors = scratch / f"child-{seed}.err"
    command = [sys.executable, "-m", __name__, url, namespace, str(seed), str(big_at)]
    command += [str(big_size), str(scratch)]
    with open(errors, "wb") as stderr:
        child = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=stderr, text=True, encoding="utf-8"
        )
    assert child.stdout is not None
    acknowledged = 0
    step = 0
    killed_in_big = False
    try:
        for line in child.stdout:
            if line.startswith("big "):
                if kill_in_big:
                    time.sleep(random.Random(seed).uniform(0.0, 0.15))
                    child.send_signal(signal.SIGKILL)
                    killed_in_big = True
                continue
            _record(state, step, steps, line)
            step += 1
            acknowledged += 1
            if acknowledged == kill_after and not kill_in_big:
                child.send_signal(signal.SIGKILL)
    finally:
        child.kill()
        child.wait()
        child.stdout.close()
    if child.returncode != -signal.SIGKILL:
        raise AssertionError(
            f"the writer exited with {child.returncode}: {errors.read_text(errors='replace')}"
        )
    key, seq, _ = next(steps)
    in_flight = (BIG_KEY if step == big_at else key, seq)
    state.known.add(in_flight[0])
    return CrashRound(acknowledged, in_flight, killed_in_big)


def _record(state: CrashState, step: int, steps: Iterator[tuple[str, int, int]], line: str) -> None:
    """Check an acknowledgement against the schedule and remember it."""
    key, seq, _ = next(steps)
    acked_key, _, acked_seq = line.removeprefix("ack ").rstrip("\n").partition("\t")
    if acked_key == BIG_KEY:
        key = BIG_KEY
    assert (acked_key, int(acked_seq)) == (key, seq), f"step {step}: {line!r} != {(key, seq)}"
    state.expected[key] = seq
    state.known.add(key)


def check_store(store: Store, state: CrashState, last: CrashRound) -> int:
    """Check the promises after a crash; return the number of values verified.

    Every key holds a whole value of its own; every key in ``state.expected``
    holds that seq, or the in-flight seq of ``last``. ``state`` is updated
    with what was found, so the next round expects it.
    """
    found: dict[str, int] = {}
    for key in store:
        assert key in state.known, f"{key!r} was never written (a temporary file listed?)"
        with store.open(key) as stream:
            found[key] = read_seq(key, stream)
    for key, seq in state.expected.items():
        allowed = {seq}
        if last.in_flight is not None and last.in_flight[0] == key:
            allowed.add(last.in_flight[1])
        assert found.get(key) in allowed, f"{key!r}: acknowledged seq {seq}, found {found.get(key)}"
    if last.in_flight is not None:
        key, seq = last.in_flight
        assert found.get(key) in {state.expected.get(key), seq}, f"{key!r}: unexpected value"
        if key in found:
            state.expected[key] = found[key]
    return len(found)


def _main(argv: list[str]) -> None:
    url, namespace, seed, big_at, big_size, scratch = argv
    # Die quietly on a closed pipe: the parent may stop reading before it kills us.
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    sys.stdout.reconfigure(encoding="utf-8")  # type: ignore[union-attr]
    _child(url, namespace, int(seed), int(big_at), int(big_size), scratch)


if __name__ == "__main__":
    _main(sys.argv[1:])
