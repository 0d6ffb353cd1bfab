"""FileStore specifics: the key layout, files of other tools, sidecars, temp files, processes.

The store contract itself is checked by the conformance suite (tests/conformance).
"""

from __future__ import annotations

import itertools
import json
import multiprocessing
import os
import urllib.request
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mirrorkv
from mirrorkv.errors import InvalidURL, KeyNotFound, MirrorKVError
from mirrorkv.store import Capability
from mirrorkv.stores._file_keys import (
    LOCK_NAME,
    META_PREFIX,
    RESERVED,
    TEMP_PREFIX,
    VALUE_NAME,
    decode_key,
    decode_name,
    encode_key,
)
from mirrorkv.stores._file_walk import STALE_TEMP_SECONDS
from mirrorkv.stores.file import FileStore
from mirrorkv.testing.crash import count_up
from mirrorkv.testing.keysets import utf8_sorted

NASTY_KEYS = [
    "../x",
    "..",
    ".",
    "/etc/passwd",
    "/",
    "//",
    "a/./b",
    "a/../b",
    "a//b",
    "a/",
    "CON",
    "con.txt",
    "NUL",
    "nul/x",
    "COM1",
    "LPT9.log",
    "COM¹",
    "a\\b",
    "..\\..\\windows",
    "c:",
    "C:\\x",
    "a:b",
    "\x01\x1f\x7f\x85",
    "tab\there",
    "new\nline",
    "trailing.",
    "trailing ",
    " leading",
    "50%",
    "%25",
    "%00",
    "%%v",
    "%%lock",
    "%%m.a",
    "%%t.x",
    "x" * 255,
    "x" * 256,
    "é" * 300,
    "ab/" * 341 + "a",
    "y" * 1024,
    "\U0001f600" * 256,
    "A",
    "a",
    'q"<>|*?',
]

keys_strategy = st.text(
    st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"),
    min_size=1,
    max_size=300,
).filter(lambda key: len(key.encode("utf-8")) <= 1024)
# Keys over a small alphabet full of separators and escapes, to make collisions likely.
tricky_keys = st.text(
    st.sampled_from(["a", "A", "/", ".", "%", "-", "0", "é", " ", ":"]), min_size=1
)


@pytest.fixture
def store(tmp_path: Path) -> FileStore:
    return FileStore(tmp_path / "root")


def files_below(root: Path) -> list[str]:
    return sorted(str(path.relative_to(root)) for path in root.rglob("*") if path.is_file())


# -- the key layout -------------------------------------------------------


def _check_path(key: str, path: str) -> None:
    names = path.split("/")
    for name in names:
        assert name not in ("", ".", "..")
        assert "\x00" not in name and "\\" not in name
        assert len(name.encode("utf-8")) + len(META_PREFIX) <= 255
    root = "/srv/root"
    assert os.path.normpath(os.path.join(root, path)).startswith(root + "/")


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(keys_strategy)
def test_every_key_round_trips_and_stays_inside(key: str) -> None:
    path = encode_key(key)
    _check_path(key, path)
    assert decode_key(path) == key


@given(st.lists(tricky_keys, min_size=2, max_size=20, unique=True))
def test_no_two_keys_share_a_path(keys: list[str]) -> None:
    paths = [encode_key(key) for key in keys]
    assert len(set(paths)) == len(paths)
    # nor is one key's file a reserved name, or a directory on another key's path
    for path in paths:
        assert not any(name.startswith(RESERVED) for name in path.split("/")[-1:])


@pytest.mark.parametrize("key", NASTY_KEYS, ids=lambda key: repr(key)[:40])
def test_nasty_keys_round_trip(key: str) -> None:
    path = encode_key(key)
    _check_path(key, path)
    assert decode_key(path) == key


def test_plain_keys_are_their_own_path() -> None:
    for key in ["photos/2026/cat.jpg", "user42/item00001234", "a-b_c.d/e,f+g=h@i~j", ".bashrc"]:
        assert encode_key(key) == key


def test_escapes_are_readable() -> None:
    assert encode_key("../x") == ".%2E/x"
    assert encode_key("/etc/passwd") == "%00/etc/passwd"
    assert encode_key("a//b") == "a/%00/b"
    assert encode_key("CON") == "%43ON"
    assert encode_key("50%") == "50%25"
    long = encode_key("x" * 300).split("/")
    assert len(long) == 2 and long[0].startswith("%%+")


def test_non_canonical_names_decode_to_nothing() -> None:
    for name in ["%zz", "%2e", "a%2Fb", "CON", "x.", "x ", "%%v", "%41", "%", "%C3"]:
        assert decode_name(name) is None, name
    assert decode_name("%43ON") == "CON"
    assert decode_name("%00") == ""


# -- the store on disk -------------------------------------------------------


def test_plain_keys_live_at_their_natural_path(store: FileStore) -> None:
    store.put("photos/2026/cat.jpg", b"meow")
    assert (Path(store.root) / "photos/2026/cat.jpg").read_bytes() == b"meow"


def test_nasty_keys_in_a_store(tmp_path: Path) -> None:
    root = tmp_path / "root"
    store = FileStore(root)
    for key in NASTY_KEYS:
        store.put(key, key.encode())
    for key in NASTY_KEYS:
        assert store.get(key) == key.encode()
    assert list(store.keys()) == utf8_sorted(NASTY_KEYS)
    assert all(path.resolve().is_relative_to(root) for path in root.rglob("*"))
    assert not list(tmp_path.glob("*passwd*")) and sorted(os.listdir(tmp_path)) == ["root"]
    for key in NASTY_KEYS:
        store.delete(key)
    assert os.listdir(root) == [LOCK_NAME]


def test_files_of_other_tools_are_values(store: FileStore) -> None:
    root = Path(store.root)
    (root / "photos/2026").mkdir(parents=True)
    (root / "photos/2026/cat.jpg").write_bytes(b"meow")
    (root / "my file (1).txt").write_bytes(b"one")
    (root / ".hidden").write_bytes(b"dot")
    for odd in ["CON", "bad%zz", "x.", "%2e"]:
        (root / odd).write_bytes(b"odd")
    os.close(os.open(os.fsencode(root) + b"/\xff\xfe", os.O_CREAT | os.O_WRONLY))
    os.mkfifo(root / "pipe")
    os.symlink(root / "photos", root / "loop")
    assert store.get("photos/2026/cat.jpg") == b"meow"
    assert store.head("my file (1).txt").size == 3
    assert list(store.keys()) == [".hidden", "my file (1).txt", "photos/2026/cat.jpg"]
    listing = store.ls("photos/")
    assert listing.prefixes == ["photos/2026/"]
    meta = next(store.list("photos/"))
    assert meta.etag == mirrorkv.meta.etag_of(b"meow")
    assert meta.content_type == "application/octet-stream"


def test_metadata_survives_reopen(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    meta = store.put("doc", b"x", content_type="text/plain", metadata={"owner": "ann", "é": "ü"})
    store.close()
    again = FileStore(tmp_path).head("doc")
    assert again == meta
    assert again.content_type == "text/plain"
    assert dict(again.metadata) == {"owner": "ann", "é": "ü"}


def test_a_sidecar_never_describes_another_value(store: FileStore) -> None:
    root = Path(store.root)
    store.put("k", b"one", content_type="text/plain", metadata={"m": "1"})
    store.put("k", b"two")  # a plain write leaves the old sidecar, which no longer matches
    assert store.head("k").content_type == "application/octet-stream"
    assert store.head("k").metadata == {}
    store.put("k", b"three", metadata={"m": "3"})
    # another tool replaces the file: the sidecar does not describe it
    (root / "new").write_bytes(b"four")
    os.replace(root / "new", root / "k")
    assert store.head("k").metadata == {}
    assert store.get_many(["k"]) == {"k": b"four"}
    # a crash after the sidecar but before the rename: sidecar names a file never placed
    store.put("c", b"old", metadata={"v": "old"})
    (root / f"{META_PREFIX}c").write_text(
        json.dumps({"ino": 1, "size": 3, "mtime_ns": 1, "content_type": "x/y", "metadata": {}})
    )
    assert store.head("c").metadata == {} and store.get("c") == b"old"
    (root / f"{META_PREFIX}c").write_text("not json")
    assert store.head("c").content_type == "application/octet-stream"


def test_temp_files_are_invisible_and_stale_ones_cleaned(store: FileStore) -> None:
    root = Path(store.root)
    store.put("d/k", b"v")
    fresh = root / "d" / f"{TEMP_PREFIX}fresh"
    stale = root / "d" / f"{TEMP_PREFIX}stale"
    fresh.write_bytes(b"partial")
    stale.write_bytes(b"partial")
    old = os.stat(stale).st_mtime - STALE_TEMP_SECONDS - 10
    os.utime(stale, (old, old))
    assert list(store.keys()) == ["d/k"]
    assert [meta.key for meta in store.list("d/")] == ["d/k"]
    assert fresh.exists() and not stale.exists()


@pytest.mark.parametrize("order", list(itertools.permutations(["a", "a/b", "a/b/c"])))
def test_a_value_and_a_directory_of_one_name(tmp_path: Path, order: tuple[str, ...]) -> None:
    store = FileStore(tmp_path)
    for key in order:
        store.put(key, key.encode(), metadata={"k": key})
    for key in order:
        assert store.get(key) == key.encode()
        assert store.head(key).metadata == {"k": key}
    assert list(store.keys()) == ["a", "a/b", "a/b/c"]
    for deletions in itertools.permutations(order):
        left = set(order)
        for key in deletions:
            store.delete(key)
            left.discard(key)
            assert list(store.keys()) == sorted(left)
            for other in left:
                assert store.get(other) == other.encode()
        assert os.listdir(tmp_path) == [LOCK_NAME]
        for key in order:
            store.put(key, key.encode(), metadata={"k": key})


def test_value_moved_aside_keeps_its_version_and_metadata(store: FileStore) -> None:
    meta = store.put("a", b"v", content_type="text/plain")
    store.put("a/b", b"w")
    assert os.path.isfile(os.path.join(store.root, "a", VALUE_NAME))
    assert store.head("a") == meta
    with store.open("a") as stream:
        assert stream.read() == b"v"


def test_long_segments_become_chains(store: FileStore) -> None:
    keys = ["x" * 300, "x" * 300 + "/y", "x" * 299, "x" * 301, "é" * 400, "x" * 300 + "z"]
    for key in keys:
        store.put(key, b"v")
    assert list(store.keys()) == utf8_sorted(keys)
    assert list(store.keys("x" * 300)) == utf8_sorted(k for k in keys if k.startswith("x" * 300))
    for key in keys:
        store.delete(key)
    assert os.listdir(store.root) == [LOCK_NAME]


@settings(max_examples=25, deadline=None)
@given(st.lists(tricky_keys, min_size=1, max_size=12, unique=True), tricky_keys, tricky_keys)
def test_listing_order_prefix_and_start_after(
    tmp_path_factory: pytest.TempPathFactory, keys: list[str], prefix: str, start_after: str
) -> None:
    store = FileStore(tmp_path_factory.mktemp("listing"))
    for key in keys:
        store.put(key, b"v")
    assert list(store.keys()) == utf8_sorted(keys)
    expected = [k for k in utf8_sorted(keys) if k.startswith(prefix) and k > start_after]
    assert list(store.keys(prefix, start_after=start_after)) == expected
    assert [meta.key for meta in store.list(prefix, start_after=start_after)] == expected


def test_url_for_points_at_the_file(store: FileStore) -> None:
    store.put("dir/a b%", b"spaced")
    url = store.url_for("dir/a b%")
    assert url.startswith("file:///")
    with urllib.request.urlopen(url) as response:
        assert response.read() == b"spaced"
    store.put("dir", b"dir value")
    with urllib.request.urlopen(store.url_for("dir")) as response:
        assert response.read() == b"dir value"


def test_url_repr_capabilities_and_from_url(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = FileStore(tmp_path / "s")
    assert store.url == (tmp_path / "s").as_uri()
    assert repr(store) == f"FileStore({str(tmp_path / 's')!r}, fsync=False)"
    assert Capability.CONDITIONAL_WRITES in store.capabilities
    assert Capability.MULTI_PROCESS in store.capabilities and Capability.URLS in store.capabilities
    store.put("k", b"v")
    with mirrorkv.open(store.url) as same:
        assert isinstance(same, FileStore) and same.get("k") == b"v"
    with mirrorkv.open(f"file://{tmp_path}/synced?fsync=true") as synced:
        assert repr(synced).endswith("fsync=True)")
        synced.put("a/b", b"1", metadata={"m": "1"})
        synced.delete("a/b")
    monkeypatch.chdir(tmp_path)
    with mirrorkv.open("file:rel/dir") as relative:
        assert isinstance(relative, FileStore)
        assert relative.root == str(tmp_path / "rel" / "dir")
    with pytest.raises(InvalidURL):
        mirrorkv.open(f"file://{tmp_path}/x?colour=blue")
    with pytest.raises(InvalidURL):
        mirrorkv.open(f"file://{tmp_path}/x?fsync=maybe")


def test_four_processes_lose_no_increment(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(4)
    workers = [
        context.Process(target=count_up, args=(store.url, "hits", 100, barrier)) for _ in range(4)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
        assert worker.exitcode == 0
    assert store.get("hits") == b"400"


def test_errors_are_translated(tmp_path: Path) -> None:
    root = tmp_path / "root"
    store = FileStore(root)
    store.put("k", b"v")
    with pytest.raises(KeyNotFound):
        store.get("absent")
    # the root replaced by a file: every operation fails with a mirrorkv error
    os.rename(root, tmp_path / "gone")
    root.write_bytes(b"not a directory")
    with pytest.raises(MirrorKVError) as caught:
        store.put("x/y", b"v")
    assert isinstance(caught.value.__cause__, OSError)
    with pytest.raises(MirrorKVError) as caught:
        list(store.keys())
    assert isinstance(caught.value.__cause__, OSError)
    with pytest.raises(MirrorKVError):
        FileStore(root / "below")


def test_path_too_long_is_a_mirrorkv_error(tmp_path: Path) -> None:
    deep = tmp_path
    for _ in range(12):
        deep = deep / ("d" * 250)
    store = FileStore(deep)
    with pytest.raises(MirrorKVError) as caught:
        store.put("%" * 1000, b"v")
    assert isinstance(caught.value.__cause__, OSError)


def test_readers_never_miss_a_value_being_moved_aside(tmp_path: Path) -> None:
    from mirrorkv.testing._support import run_threads

    store = FileStore(tmp_path)
    keys = [f"k{i}" for i in range(60)]
    for key in keys:
        store.put(key, b"value")

    def work(thread: int) -> None:
        for key in keys:
            if thread == 0:
                store.put(f"{key}/child", b"c")  # moves the value of key into key/%%v
            else:
                for other in keys:
                    assert store.get(other) == b"value"

    run_threads(work, 2)
    for key in keys:
        assert store.get(key) == b"value" and store.get(f"{key}/child") == b"c"
