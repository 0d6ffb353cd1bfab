"""The conformance tests of conditional writes, counters and concurrent writers."""

from __future__ import annotations

import contextlib
import io
import multiprocessing
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest

from ..errors import InvalidValue, NotSupported, PreconditionFailed
from ..meta import etag_of
from ..store import Capability, Store
from . import StoreFactory
from ._basics import etag_fits
from ._support import run_threads, same_value
from .crash import count_up, read_seq, write_values

__all__ = ["WriteContract"]


class WriteContract:
    """The conformance tests of conditional writes, counters and concurrent writers.

    Mixed into :class:`~mirrorkv.testing.conformance.StoreConformance`, which
    provides the ``store`` fixture.
    """

    # -- conditional writes -------------------------------------------------

    def test_create_only(self, store: Store) -> None:
        first = store.put("k", b"1", if_none_match="*")
        with pytest.raises(PreconditionFailed):
            store.put("k", b"2", if_none_match="*")
        with pytest.raises(PreconditionFailed):
            store.put_file("k", io.BytesIO(b"3"), if_none_match="*")
        assert store.get("k") == b"1"
        assert same_value(store.head("k"), first)

    def test_compare_and_swap(self, store: Store) -> None:
        first = store.put("k", b"1", metadata={"a": "1"})
        second = store.put("k", b"2", if_match=first.etag)
        assert store.get("k") == b"2"
        with pytest.raises(PreconditionFailed):
            store.put("k", b"3", if_match=first.etag)
        with pytest.raises(PreconditionFailed):
            store.put("k", b"3", if_match="0" * 32)
        with pytest.raises(PreconditionFailed):
            store.put_file("k", io.BytesIO(b"3"), if_match=first.etag)
        assert store.get("k") == b"2"
        assert same_value(store.head("k"), second)
        third = store.put_file("k", io.BytesIO(b"3"), if_match=second.etag)
        assert store.get("k") == b"3" and etag_fits(store, third.etag, b"3")
        assert store.head("k").etag == third.etag != second.etag

    def test_if_match_on_absent_key(self, store: Store) -> None:
        with pytest.raises(PreconditionFailed):
            store.put("k", b"v", if_match=etag_of(b"v"))
        assert "k" not in store
        assert list(store.keys()) == []

    def test_create_only_race_has_one_winner(self, store: Store) -> None:
        wins: list[tuple[str, int]] = []
        lock = threading.Lock()
        barrier = threading.Barrier(8)

        def contend(worker: int) -> None:
            barrier.wait()
            for i in range(20):
                try:
                    store.put(f"k{i}", b"%d" % worker, if_none_match="*")
                except PreconditionFailed:
                    continue
                with lock:
                    wins.append((f"k{i}", worker))

        run_threads(contend, 8)
        assert sorted(key for key, _ in wins) == sorted(f"k{i}" for i in range(20))
        for key, worker in wins:
            assert store.get(key) == b"%d" % worker

    def test_conditional_delete(self, store: Store) -> None:
        first = store.put("k", b"1")
        store.put("other", b"o")
        if not _deletes_conditionally(store):
            return
        second = store.put("k", b"2")
        with pytest.raises(PreconditionFailed):
            store.delete("k", if_match=first.etag)  # written since: kept
        assert store.get("k") == b"2"
        store.delete("k", if_match=second.etag)
        assert "k" not in store and store.get("other") == b"o"
        with pytest.raises(PreconditionFailed):
            store.delete("k", if_match=second.etag)  # absent: nothing to match
        with pytest.raises(InvalidValue):
            store.delete("other", if_match="")
        assert list(store.keys()) == ["other"]

    def test_conditional_delete_races_a_rewrite(self, store: Store) -> None:
        """A delete conditional on an etag never removes a value written after it was read."""
        if not _deletes_conditionally(store):
            return
        barrier = threading.Barrier(2)
        rounds = 10 if getattr(store, "remote", False) else 50

        def rewrite(worker: int) -> None:
            for i in range(rounds):
                barrier.wait()
                if worker == 0:
                    store.put(f"k{i}", b"fresh")
                else:
                    with contextlib.suppress(PreconditionFailed):
                        store.delete(f"k{i}", if_match=stale[i])

        stale = [store.put(f"k{i}", b"stale").etag for i in range(rounds)]
        run_threads(rewrite, 2)
        for i in range(rounds):  # each key: deleted before the rewrite, or rewritten and kept
            assert store.get_many([f"k{i}"]).get(f"k{i}", b"fresh") == b"fresh"

    # -- counters -----------------------------------------------------------

    def test_incr_and_decr(self, store: Store) -> None:
        assert store.incr("n") == 1
        assert store.get("n") == b"1"
        assert store.incr("m", 5, initial=10) == 15
        assert store.decr("m") == 14
        assert store.decr("m", 20) == -6
        assert store.get("m") == b"-6"
        assert store.incr("m", -1) == -7
        assert store.incr("m", 0) == -7
        assert store.decr("d", initial=3) == 2
        store.put("big", b"9007199254740993")
        assert store.incr("big") == 9007199254740994
        assert etag_fits(store, store.head("m").etag, b"-7")

    def test_incr_keeps_content_type_and_metadata(self, store: Store) -> None:
        store.put("c", b"41", content_type="text/plain", metadata={"a": "1"})
        assert store.incr("c") == 42
        meta = store.head("c")
        assert (meta.content_type, dict(meta.metadata), meta.size) == ("text/plain", {"a": "1"}, 2)

    def test_incr_rejects_non_counters(self, store: Store) -> None:
        for value in (b"abc", b"1.5", b"\xff", b"1e3"):
            store.put("s", value)
            with pytest.raises(InvalidValue):
                store.incr("s")
            assert store.get("s") == value
        # Longer than Python converts by default: incremented, or refused as
        # InvalidValue and left as it was; never a ValueError of Python's own.
        huge = b"9" * 5000
        store.put("h", huge)
        try:
            store.incr("h")
        except InvalidValue:
            assert store.get("h") == huge
        bad_numbers: list[Any] = [True, False, 1.5, "1", None]
        for bad in bad_numbers:
            with pytest.raises(InvalidValue):
                store.incr("n", bad)
            with pytest.raises(InvalidValue):
                store.incr("n", 1, initial=bad)
            with pytest.raises(InvalidValue):
                store.decr("n", bad)
        assert "n" not in store

    def test_incr_from_threads(self, store: Store, store_factory: StoreFactory) -> None:
        rounds = 25 if store_factory.remote else 200

        def count(_: int) -> None:
            for _ in range(rounds):
                store.incr("hits")

        run_threads(count, 8)
        assert store.get("hits") == str(8 * rounds).encode()

    @pytest.mark.slow
    def test_incr_from_processes(self, store: Store, store_factory: StoreFactory) -> None:
        if not store_factory.multi_process or store_factory.url is None:
            pytest.skip(f"{store_factory.name} is not shared between processes")
        rounds = 25 if store_factory.remote else 100
        with spawned(count_up, [(store_factory.url, "hits", rounds)] * 4):
            pass
        assert store.get("hits") == str(4 * rounds).encode()

    @pytest.mark.slow
    def test_processes_write_whole_values(self, store: Store, store_factory: StoreFactory) -> None:
        if not store_factory.multi_process or store_factory.url is None:
            pytest.skip(f"{store_factory.name} is not shared between processes")
        with spawned(write_values, [(store_factory.url, i, 60) for i in range(3)]) as workers:
            while any(worker.is_alive() for worker in workers):
                for key in store.keys("shared/"):
                    with store.open(key) as stream:
                        read_seq(key, stream)  # raises CorruptValue on a torn value
        for key in store.keys("shared/"):
            with store.open(key) as stream:
                assert read_seq(key, stream) % 1_000_000 >= 56, "a later write was lost"
        assert list(store.keys("shared/")) == [f"shared/{i}" for i in range(4)]

    def test_readers_never_see_torn_values(self, store: Store) -> None:
        values = (b"a" * (256 * 1024), b"b" * (300 * 1024 + 1))
        store.put("k", values[0])
        seen: set[bytes] = set()

        def work(worker: int) -> None:
            for i in range(40):
                if worker == 0:
                    store.put("k", values[i % 2])
                else:
                    value = store.get("k")
                    assert value in values, f"torn read of {len(value)} bytes"
                    seen.add(value[:1])

        run_threads(work, 3)
        assert seen


@contextlib.contextmanager
def spawned(
    target: Callable[..., None], arguments: list[tuple[Any, ...]]
) -> Iterator[Sequence[multiprocessing.process.BaseProcess]]:
    """Run one spawned process per argument tuple, each also given a shared barrier.

    Yields the started processes; on exit waits for them (two minutes at
    most each) and checks that all succeeded. The barrier lives as long as
    the block, so no child finds its semaphore gone.
    """
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(len(arguments))
    workers = [context.Process(target=target, args=(*args, barrier)) for args in arguments]
    for worker in workers:
        worker.start()
    yield workers
    for worker in workers:
        worker.join(120)
    assert [worker.exitcode for worker in workers] == [0] * len(workers)


def _deletes_conditionally(store: Store) -> bool:
    """Whether ``store`` has conditional deletes; a store claiming conditional writes must."""
    try:
        store.delete("absent-probe", if_match="0" * 32)
    except PreconditionFailed:
        return True
    except NotSupported:
        assert Capability.CONDITIONAL_WRITES not in store.capabilities, (
            "a store with CONDITIONAL_WRITES must delete conditionally too"
        )
        return False
    raise AssertionError("a conditional delete of an absent key must raise PreconditionFailed")
