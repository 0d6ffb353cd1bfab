"""WriteBehind beyond the conformance suite: what reaches the back store, and when.

Every back store here is a real SQLiteStore (or MemoryStore); failures are
real too (another connection holding SQLite's write lock). Waits poll with a
deadline; the file sleeps a second or two in all, the crash tests start
child processes.
"""

from __future__ import annotations

import io
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Self

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from mirrorkv import MemoryStore
from mirrorkv import open as open_store
from mirrorkv.errors import InvalidKey, InvalidValue, KeyNotFound, MirrorKVError, StoreUnavailable
from mirrorkv.layers import WriteBehind
from mirrorkv.layers._writebehind_flush import CHUNK
from mirrorkv.store import Store
from mirrorkv.stores.sqlite import SQLiteStore
from mirrorkv.testing.crash import read_seq
from services import ServiceUnavailable, skip_unavailable
from services.redis import start_redis

NEVER = 3600.0  # an interval that never comes during a test
BIG = 10**9  # a max_pending that is never reached


def wait_until(check: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def contents(store: Store) -> dict[str, bytes]:
    return {key: store.get(key) for key in store}


@pytest.fixture
def back_path(tmp_path: Path) -> Path:
    return tmp_path / "back.db"


@pytest.fixture
def back(back_path: Path) -> Iterator[SQLiteStore]:
    store = SQLiteStore(back_path)
    yield store
    store.close()


def quiet(back: Store, **options: object) -> WriteBehind:
    """A WriteBehind that flushes only when told to (unless options say otherwise)."""
    settings_: dict[str, object] = {"interval": NEVER, "max_pending": BIG}
    settings_.update(options)
    return WriteBehind(back, **settings_)  # type: ignore[arg-type]


# -- what a flush writes -----------------------------------------------------


def test_coalescing_flush_writes_only_what_changed(back: SQLiteStore) -> None:
    wb = quiet(back)
    wb.put_many({f"k{i:03d}": b"first %d" % i for i in range(100)})
    wb.put("typed", b"t", content_type="text/plain", metadata={"who": "me"})
    wb.flush()
    assert wb.stats.puts == 101 and wb.stats.flushes == 1
    before = {meta.key: meta.version for meta in back.list()}
    for i in range(10):
        wb.put("k001", b"again %d" % i)  # ten writes, one flushed
    wb.put("k002", b"changed")
    wb.delete("k003")
    wb.put("gone", b"x")
    wb.delete("gone")  # a delete after a put flushes a delete
    for _ in range(5):
        wb.incr("counter", 2)
    assert wb.stats.pending == 5
    assert back.get("k001") == b"first 1"  # nothing reached the back before the flush
    wb.flush()
    assert (wb.stats.puts, wb.stats.deletes, wb.stats.flushes) == (101 + 3, 2, 2)
    after = {meta.key: meta.version for meta in back.list()}
    changed = {key for key in after if before.get(key) != after[key]}
    assert changed == {"k001", "k002", "counter"}
    assert set(before) - set(after) == {"k003"}
    assert back.get("k001") == b"again 9" and back.get("counter") == b"10"
    assert back.head("typed").content_type == "text/plain"
    assert dict(back.head("typed").metadata) == {"who": "me"}
    assert contents(back) == contents(wb)
    wb.flush()  # nothing pending: nothing written
    assert (wb.stats.puts, wb.stats.flushes) == (104, 2)
    wb.close()


def test_a_flush_of_several_chunks_reaches_the_back_whole(back: SQLiteStore) -> None:
    """More keys than one put_many call carries, a warmed counter and a typed value among them."""
    back.put("hits", b"41")
    wb = quiet(back)
    count = 2 * CHUNK + 1
    written = wb.put_many({f"k{i:05d}": b"v%d" % i for i in range(count)})
    assert wb.incr("hits") == 42
    wb.put("typed", b"t", content_type="text/plain")
    wb.flush()
    assert (wb.stats.puts, wb.stats.flushes) == (count + 2, 1)
    assert back.get("hits") == b"42" and back.head("typed").content_type == "text/plain"
    assert contents(back) == contents(wb)
    for meta in (written[0], written[CHUNK], written[-1]):
        assert meta.version == back.head(meta.key).version
    wb.close()


def test_reads_see_the_latest_write_before_any_flush(back: SQLiteStore) -> None:
    with quiet(back) as wb:
        wb.put("a", b"1")
        wb.put("a", b"2")
        assert wb.get("a") == b"2" and wb.get_many(["a", "b"]) == {"a": b"2"}
        assert wb.incr("n", initial=10) == 11 and wb.decr("n", 3) == 8
        wb.delete("a")
        assert "a" not in wb and list(wb) == ["n"]
        with pytest.raises(KeyNotFound):
            wb.get("a")
        assert list(back) == []


def test_max_pending_triggers_a_flush(back: SQLiteStore) -> None:
    with WriteBehind(back, interval=NEVER, max_pending=10) as wb:
        for i in range(9):
            wb.put(f"k{i}", b"v")
        time.sleep(0.3)
        assert list(back) == []
        wb.put("k9", b"v")
        wait_until(lambda: len(list(back)) == 10)
        assert wb.stats.pending == 0


def test_interval_flush(back: SQLiteStore) -> None:
    with WriteBehind(back, interval=0.1, max_pending=BIG) as wb:
        wb.put("k", b"v")
        wb.incr("n")
        wait_until(lambda: back.get_many(["k", "n"]) == {"k": b"v", "n": b"1"})


def test_close_flushes_and_refuses_later_writes(back_path: Path) -> None:
    wb = quiet(SQLiteStore(back_path))
    wb.put("k", b"v")
    wb.delete_many(["absent"])
    wb.close()
    wb.close()
    with pytest.raises(MirrorKVError):
        wb.put("k", b"w")
    with SQLiteStore(back_path) as again:
        assert contents(again) == {"k": b"v"}


def test_context_manager_flushes(back_path: Path) -> None:
    with quiet(SQLiteStore(back_path)) as wb:
        wb.put_many([("a", b"1"), ("b", b"2")])
        wb.incr("c", 5)
    with SQLiteStore(back_path) as again:
        assert contents(again) == {"a": b"1", "b": b"2", "c": b"5"}


def test_workers_split_a_flush_and_keep_the_latest(back: SQLiteStore) -> None:
    with quiet(back, workers=3) as wb:
        for round_ in range(3):
            wb.put_many({f"k{i:04d}": b"%d-%d" % (round_, i) for i in range(2000)})
            wb.flush()
        assert contents(back) == {f"k{i:04d}": b"2-%d" % i for i in range(2000)}


def test_concurrent_writers_and_flushes_lose_nothing(back: SQLiteStore) -> None:
    with WriteBehind(back, interval=0.01, max_pending=50) as wb:

        def write(worker: int) -> None:
            for i in range(2000):
                wb.put(f"w{worker}/{i % 100}", b"%d" % i)
                wb.incr(f"count/{worker}")

        threads = [threading.Thread(target=write, args=(n,)) for n in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        wb.flush()
        assert contents(back) == contents(wb)
        assert back.get_many([f"count/{n}" for n in range(3)]) == {
            f"count/{n}": b"2000" for n in range(3)
        }


# -- warming ------------------------------------------------------------------


def test_warm_all_prefix_or_nothing(back: SQLiteStore) -> None:
    back.put("a/1", b"one", content_type="text/plain", metadata={"m": "1"})
    back.put("a/2", b"two")
    back.put("b/1", b"other")
    back_meta = {meta.key: meta for meta in back.list()}
    with quiet(back) as everything:
        assert contents(everything) == contents(back)
        for meta in everything.list():
            theirs = back_meta[meta.key]
            assert (meta.etag, meta.version, meta.content_type) == (
                theirs.etag,
                theirs.version,
                theirs.content_type,
            )
            assert dict(meta.metadata) == dict(theirs.metadata)
        assert everything.stats.pending == 0
    back = SQLiteStore(back.path)
    with quiet(back, warm="a/") as some:
        assert list(some) == ["a/1", "a/2"]
        some.put("a/3", b"three")
    back = SQLiteStore(back.path)
    with quiet(back, warm=False) as none:
        assert list(none) == []
        none.delete("a/1")  # a delete reaches the back even for a key not warmed
    with SQLiteStore(back.path) as again:
        assert list(again) == ["a/2", "a/3", "b/1"]  # b/1 was never warmed, never touched


def test_arguments_are_checked(back: SQLiteStore) -> None:
    for bad in (
        {"max_pending": 0},
        {"workers": 0},
        {"interval": 0},
        {"interval": -1},
        {"max_pending": True},
        {"front": MemoryStore(max_bytes=1000)},
    ):
        with pytest.raises(InvalidValue):
            WriteBehind(back, **bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidKey):
        WriteBehind(back, warm="bad\x00prefix")
    full = MemoryStore()
    full.put("k", b"v")
    with pytest.raises(InvalidValue):
        WriteBehind(back, front=full)
    with pytest.raises(InvalidValue):
        WriteBehind("sqlite://x")  # type: ignore[arg-type]


# -- on_flush -----------------------------------------------------------------


def test_on_flush_refusal_stays_queued(back: SQLiteStore) -> None:
    seen: list[dict[str, bytes | None]] = []
    holding = {"hold/x"}

    def on_flush(batch: dict[str, bytes | None]) -> set[str]:
        seen.append(dict(batch))
        return holding

    with quiet(back, on_flush=on_flush) as wb:
        wb.put("hold/x", b"1")
        wb.put("ok", b"2")
        wb.delete("never-there")
        wb.flush()
        assert seen[-1] == {"hold/x": b"1", "ok": b"2", "never-there": None}
        assert list(back) == ["ok"] and wb.stats.pending == 1
        wb.put("hold/x", b"newer")  # a newer write replaces the held one in the queue
        wb.flush()
        assert seen[-1] == {"hold/x": b"newer"} and list(back) == ["ok"]
        holding.clear()
        wb.flush()
        assert back.get("hold/x") == b"newer" and wb.stats.pending == 0


def test_on_flush_false_refuses_all_and_raising_fails_the_flush(back: SQLiteStore) -> None:
    verdict: list[object] = [False]

    def on_flush(batch: object) -> bool:
        if isinstance(verdict[0], Exception):
            raise verdict[0]
        return bool(verdict[0])

    with quiet(back, on_flush=on_flush, close_timeout=0) as wb:
        wb.put("k", b"v")
        wb.flush()
        assert list(back) == [] and wb.stats.pending == 1
        verdict[0] = RuntimeError("audit service down")
        with pytest.raises(StoreUnavailable, match="audit service down"):
            wb.flush()
        assert wb.stats.pending == 1 and "audit service down" in repr(wb)
        verdict[0] = True
        wb.flush()
        assert back.get("k") == b"v"


# -- a failing back store ----------------------------------------------------


class WriteLock:
    """Another connection holding the SQLite file's write lock: every write by others fails."""

    def __init__(self, path: Path) -> None:
        self._conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)

    def __enter__(self) -> Self:
        self._conn.execute("BEGIN IMMEDIATE")
        return self

    def __exit__(self, *exc: object) -> None:
        self._conn.execute("ROLLBACK")
        self._conn.close()


def test_back_failure_keeps_writes_queued_and_recovers(back_path: Path) -> None:
    back = SQLiteStore(back_path, timeout=0.02)
    back.put("old", b"0")
    wb = WriteBehind(back, interval=0.02, max_pending=BIG, close_timeout=0.2)
    with WriteLock(back_path):
        wb.put("a", b"1")
        wb.put_many({"b": b"2", "c": b"3"})
        wb.delete("old")
        with pytest.raises(StoreUnavailable):
            wb.flush()
        wait_until(lambda: wb.stats.failures >= 3)  # the background thread retries
        assert wb.stats.pending == 4 and wb.stats.failing >= 1
        wb.put("a", b"newer")  # written while failing: must not be replaced by the old batch
        assert wb.get("a") == b"newer"
        assert "last_error='StoreUnavailable" in repr(wb) and "pending=4" in repr(wb)
        with pytest.raises(StoreUnavailable, match="4 unflushed writes remain"):
            wb.close()
        assert wb.get("b") == b"2"  # still open, nothing dropped
    # Recovered in the background: the queue empties when a flush takes it, and
    # failing drops to 0 once that flush has written everything.
    wait_until(lambda: wb.stats.pending == 0 and wb.stats.failing == 0)
    wb.close()
    with SQLiteStore(back_path) as again:
        assert contents(again) == {"a": b"newer", "b": b"2", "c": b"3"}


def test_redis_back_store_stopped_and_restarted(tmp_path: Path) -> None:
    """A real network outage: the back store's own Redis server stopped, then started again."""
    try:
        process, url = start_redis(tmp_path)
    except ServiceUnavailable as error:
        skip_unavailable(error)
        raise
    try:
        wb = WriteBehind(open_store(url), interval=0.02, max_pending=BIG, close_timeout=0.2)
        wb.put("before", b"0")
        wb.flush()
        process.stop()
        wb.put_many({f"k{i}": b"%d" % i for i in range(50)})
        wb.incr("n", 3)
        with pytest.raises(StoreUnavailable):
            wb.flush()
        assert wb.stats.pending == 51 and wb.get("k7") == b"7"
        process.start()  # same port; persistence off, so "before" is gone from the server
        wait_until(lambda: wb.stats.pending == 0, timeout=30)
        wb.close()
        with open_store(url) as again:
            assert contents(again) == {**{f"k{i}": b"%d" % i for i in range(50)}, "n": b"3"}
    finally:
        process.stop()


# -- versions -----------------------------------------------------------------


def test_versions_are_the_back_stores_and_survive_reopen(back_path: Path) -> None:
    wb = quiet(SQLiteStore(back_path))
    first = wb.put("k", b"1")
    replaced = wb.put("k", b"2")
    assert wb.stats.pending == 1
    version = replaced.version  # reading it flushes
    assert wb.stats.pending == 0 and wb.back.head("k").version == version
    assert first.version not in (version, "")  # replaced before any flush: a version of its own
    assert wb.head("k").version == version
    wb.close()
    with quiet(SQLiteStore(back_path)) as again:
        assert again.head("k").version == version
        assert again.put("k", b"3").version != version


def test_version_of_a_held_write_is_not_invented(back: SQLiteStore) -> None:
    holding = {"k"}
    with quiet(back, on_flush=lambda batch: holding) as wb:
        meta = wb.put("k", b"v")
        with pytest.raises(StoreUnavailable, match="on_flush"):
            meta.version  # noqa: B018 - reading it is the test
        holding.clear()
        assert meta.version == back.head("k").version == wb.head("k").version


def test_on_flush_must_not_read_unflushed_versions(back: SQLiteStore) -> None:
    metas = []

    def on_flush(batch: object) -> None:
        if metas:
            metas.pop().version  # noqa: B018 - reading it is the test

    with quiet(back, on_flush=on_flush) as wb:
        metas.append(wb.put("k", b"v"))
        with pytest.raises(StoreUnavailable, match="inside on_flush"):
            wb.flush()
        assert wb.stats.pending == 1
        wb.flush()
        assert back.get("k") == b"v"


# -- crashes ------------------------------------------------------------------

_CHILD = textwrap.dedent(
    """
    import sys, time
    from mirrorkv.layers import WriteBehind
    from mirrorkv.stores.sqlite import SQLiteStore
    from mirrorkv.testing.crash import make_value

    path, mode = sys.argv[1], sys.argv[2]
    if mode == "quiet":
        wb = WriteBehind(SQLiteStore(path), interval=3600, max_pending=10**9)
        for i in range(200):
            wb.put(f"a/{i % 50}", make_value(f"a/{i % 50}", i, 100))
        wb.incr("count", 7)
        wb.delete("a/0")
        wb.flush()
        print("flushed", flush=True)
        for i in range(200, 300):
            wb.put(f"a/{i % 60}", make_value(f"a/{i % 60}", i, 100))
        wb.incr("count")
        wb.delete("a/1")
        print("written", flush=True)
        time.sleep(60)
    else:
        wb = WriteBehind(SQLiteStore(path), interval=0.001, max_pending=20)
        for i in range(10**9):
            key = f"k/{i % 40}"
            wb.put(key, make_value(key, i, 100 + i % 3000))
            if i % 50 == 49:
                wb.flush()
                print("flushed", i, flush=True)
    """
)


def _run_child(path: Path, mode: str, kill_after: str, count: int = 1) -> list[str]:
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(path), mode], stdout=subprocess.PIPE, text=True
    )
    assert child.stdout is not None
    lines: list[str] = []
    try:
        for line in child.stdout:
            lines.append(line.strip())
            if line.startswith(kill_after) and len(lines) >= count:
                child.send_signal(signal.SIGKILL)
                break
    finally:
        child.kill()
        child.wait()
        child.stdout.close()
    assert child.returncode == -signal.SIGKILL, lines
    return lines


@pytest.mark.slow
def test_kill_loses_exactly_the_unflushed_writes(back_path: Path) -> None:
    _run_child(back_path, "quiet", "written")
    with SQLiteStore(back_path) as back:
        found = contents(back)
    # Exactly the state at the flush: the last of writes 0..199 per key, the counter, the delete.
    expected = {f"a/{i % 50}": i for i in range(200)}
    del expected["a/0"]
    assert set(found) == {*expected, "count"}
    assert found.pop("count") == b"7"
    for key, data in found.items():
        assert read_seq(key, io.BytesIO(data)) == expected[key]


@pytest.mark.slow
def test_kill_while_flushing_leaves_whole_values_and_every_flushed_write(back_path: Path) -> None:
    lines = _run_child(back_path, "busy", "flushed", count=20)
    last_flushed = max(int(line.split()[1]) for line in lines if line.startswith("flushed"))
    with SQLiteStore(back_path) as back:
        found = contents(back)
    assert set(found) == {f"k/{n}" for n in range(40)}
    for key, data in found.items():
        seq = read_seq(key, io.BytesIO(data))  # whole, and this key's own value
        newest_flushed = max(i for i in range(last_flushed + 1) if i % 40 == int(key[2:]))
        assert seq >= newest_flushed, f"{key}: flushed write {newest_flushed} lost (found {seq})"


@pytest.mark.slow
def test_unclosed_store_is_flushed_at_interpreter_exit(back_path: Path) -> None:
    code = textwrap.dedent(
        """
        import sys
        from mirrorkv.layers import WriteBehind
        from mirrorkv.stores.sqlite import SQLiteStore
        wb = WriteBehind(SQLiteStore(sys.argv[1]), interval=3600, max_pending=10**9)
        wb.put("left", b"behind")
        """
    )
    subprocess.run([sys.executable, "-c", code, str(back_path)], check=True, timeout=60)
    with SQLiteStore(back_path) as back:
        assert contents(back) == {"left": b"behind"}


# -- repr ---------------------------------------------------------------------


def test_repr_shows_the_queue_not_the_values(back: SQLiteStore) -> None:
    with quiet(back) as wb:
        wb.put("k", b"s3cr3t-value")
        text = repr(wb)
        assert "pending=1" in text and "flushed=0 puts" in text and "s3cr3t" not in text
        wb.flush()
        assert "pending=0" in repr(wb) and "flushed=1 puts + 0 deletes in 1 flushes" in repr(wb)


# -- the model ---------------------------------------------------------------

_keys = st.sampled_from(["a", "b", "a/b", "c/d/e", "é"])
_values = st.binary(max_size=20)


class WriteBehindMachine(RuleBasedStateMachine):
    """WriteBehind over SQLite against a dict: reads see the latest; flushed, back == model."""

    def __init__(self) -> None:
        super().__init__()
        import tempfile

        self._dir = tempfile.TemporaryDirectory()
        self.back = SQLiteStore(Path(self._dir.name) / "back.db")
        self.wb = WriteBehind(self.back, interval=NEVER, max_pending=4)
        self.model: dict[str, bytes] = {}

    def teardown(self) -> None:
        self.wb.close()
        self._dir.cleanup()

    @rule(key=_keys, value=_values)
    def put(self, key: str, value: bytes) -> None:
        self.wb.put(key, value)
        self.model[key] = value

    @rule(key=_keys)
    def delete(self, key: str) -> None:
        self.wb.delete(key)
        self.model.pop(key, None)

    @rule(items=st.dictionaries(_keys, _values, max_size=3))
    def put_many(self, items: dict[str, bytes]) -> None:
        self.wb.put_many(items)
        self.model.update(items)

    @rule(keys=st.lists(_keys, max_size=3))
    def delete_many(self, keys: list[str]) -> None:
        self.wb.delete_many(keys)
        for key in keys:
            self.model.pop(key, None)

    @rule(key=_keys, delta=st.integers(-5, 5))
    def incr(self, key: str, delta: int) -> None:
        current = self.model.get(key, b"0")
        digits = current[1:] if current[:1] == b"-" else current
        if not digits.isdigit():
            with pytest.raises(InvalidValue):
                self.wb.incr(key, delta)
            return
        assert self.wb.incr(key, delta) == int(current) + delta
        self.model[key] = b"%d" % (int(current) + delta)

    @rule()
    def flush(self) -> None:
        self.wb.flush()
        assert contents(self.back) == self.model

    @rule()
    def reopen(self) -> None:
        """Closing flushes; a new WriteBehind warms its front from the back store."""
        self.wb.close()
        self.back = SQLiteStore(Path(self._dir.name) / "back.db")
        assert contents(self.back) == self.model
        self.wb = WriteBehind(self.back, interval=NEVER, max_pending=4)

    @invariant()
    def reads_see_the_latest_write(self) -> None:
        assert contents(self.wb) == self.model


TestWriteBehindModel = WriteBehindMachine.TestCase
TestWriteBehindModel.settings = settings(  # type: ignore[attr-defined]
    max_examples=40,
    stateful_step_count=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
