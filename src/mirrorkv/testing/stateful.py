"""A hypothesis state machine that drives a store and a plain dict with the same operations.

Every rule applies one random operation to the store under test and to a
model (a dict of key to value, content type and metadata) and checks that
they answer alike; after every step the whole listing is compared. Keys come
from a small alphabet chosen to hit the hard cases (``a`` next to ``a/b``,
``a/`` and ``a-``, non-ASCII and normalization twins, UTF-16 order traps,
path-like names), so collisions and ordering bugs show within a few steps.

Run it over a :class:`~mirrorkv.testing.StoreFactory`::

    from mirrorkv.testing.stateful import run_stateful, stateful_test_case

    def test_stateful(store_factory):          # a pytest test over your fixture
        run_stateful(store_factory)

    TestMyStoreStateful = stateful_test_case(lambda: my_factory())   # or a unittest class

Each run starts by deleting every key, so a factory may hand out the same
store every time.
"""

from __future__ import annotations

import unittest
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import ClassVar

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from ..errors import InvalidValue, KeyNotFound, PreconditionFailed
from ..meta import DEFAULT_CONTENT_TYPE, Meta, etag_of
from ..store import Store
from . import StoreFactory

__all__ = [
    "DEFAULT_SETTINGS",
    "KEYS",
    "StoreMachine",
    "run_stateful",
    "state_machine_for",
    "stateful_test_case",
]

#: The key alphabet: few enough to collide often, each one a known trap.
KEYS = (
    "a",
    "a/",
    "a/b",
    "a/b/c",
    "a//b",
    "a-",
    "a0",
    "A",
    "b",
    "é",
    "e\u0301",
    "\u4e2d/x",
    "\ufffd",
    "\U00010000",
    "..",
    "../x",
    "CON",
)

#: Prefixes for listings: empty, key boundaries and mid-name.
PREFIXES = ("", "a", "a/", "a/b", "a/b/", "b", "e", "é", "\u4e2d", "z")

#: Settings that keep one store's run to a few seconds on a small machine.
DEFAULT_SETTINGS = settings(
    max_examples=50,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

#: For a ``remote`` factory, whose every step is a network request: fewer runs.
REMOTE_SETTINGS = settings(DEFAULT_SETTINGS, max_examples=12)

keys = st.sampled_from(KEYS)
values = st.one_of(
    st.binary(max_size=24),
    st.integers(-1000, 1000).map(lambda n: b"%d" % n),
)
content_types = st.sampled_from([None, "text/plain", "image/png; q=1"])
metadatas = st.sampled_from([None, {}, {"a": "1"}, {"ü": "ß", "empty": ""}])


def _counter(data: bytes) -> int | None:
    digits = data[1:] if data[:1] == b"-" else data
    return int(data) if digits.isdigit() and digits.isascii() else None


def _byte_order(key: str) -> bytes:
    return key.encode("utf-8")


@dataclass(frozen=True)
class Entry:
    """What the model holds for one key."""

    value: bytes
    content_type: str = DEFAULT_CONTENT_TYPE
    metadata: Mapping[str, str] = field(default_factory=dict)


class StoreMachine(RuleBasedStateMachine):
    """Drives the store from :attr:`make_factory` and a dict model in lockstep."""

    #: Returns the factory of the store to drive; set by :func:`state_machine_for`.
    make_factory: ClassVar[Callable[[], StoreFactory]]

    def __init__(self) -> None:
        super().__init__()
        self.factory = type(self).make_factory()
        self.store: Store = self.factory.open()
        self.store.delete_many(list(self.store.keys()))
        self.model: dict[str, Entry] = {}
        #: The last version seen for each key, to check that every write changes it.
        self.versions: dict[str, str] = {}
        #: The etag of each key's last write, where etags are not content MD5s.
        self.etags: dict[str, str] = {}

    def teardown(self) -> None:
        """Close the store."""
        self.store.close()

    # -- helpers ------------------------------------------------------------

    def _wrote(self, meta: Meta, entry: Entry) -> None:
        """Record a write the store reported with ``meta``; check what it reported."""
        assert meta.size == len(entry.value), meta
        if self.store.content_etags:
            assert meta.etag == etag_of(entry.value), meta
        else:
            assert isinstance(meta.etag, str) and meta.etag, meta
            self.etags[meta.key] = meta.etag
        previous = self.versions.get(meta.key)
        assert meta.version != previous, f"{meta.key!r} kept version {previous!r} over a write"
        self.model[meta.key] = entry
        self.versions[meta.key] = meta.version

    def _check_meta(self, meta: Meta) -> None:
        entry = self.model[meta.key]
        assert meta.size == len(entry.value)
        assert meta.etag == self._etag(meta.key)
        assert meta.content_type == entry.content_type
        assert dict(meta.metadata) == dict(entry.metadata)
        if meta.key in self.versions:
            assert meta.version == self.versions[meta.key], "the version changed without a write"

    def _etag(self, key: str) -> str:
        """The etag the store should report for ``key`` (in the model)."""
        if self.store.content_etags:
            return etag_of(self.model[key].value)
        return self.etags[key]

    def _listed(self, prefix: str, start_after: str | None) -> list[str]:
        chosen = [k for k in self.model if k.startswith(prefix)]
        if start_after is not None:
            chosen = [k for k in chosen if _byte_order(k) > _byte_order(start_after)]
        return sorted(chosen, key=_byte_order)

    # -- rules --------------------------------------------------------------

    @rule(key=keys, value=values, content_type=content_types, metadata=metadatas)
    def put(
        self,
        key: str,
        value: bytes,
        content_type: str | None,
        metadata: dict[str, str] | None,
    ) -> None:
        """A plain put replaces value, content type and metadata."""
        meta = self.store.put(key, value, content_type=content_type, metadata=metadata)
        self._wrote(meta, Entry(value, content_type or DEFAULT_CONTENT_TYPE, metadata or {}))

    @rule(key=keys, value=values)
    def put_create_only(self, key: str, value: bytes) -> None:
        """``if_none_match="*"`` writes only where the key is absent."""
        try:
            meta = self.store.put(key, value, if_none_match="*")
        except PreconditionFailed:
            assert key in self.model, f"create-only refused over absent {key!r}"
            return
        assert key not in self.model, f"create-only wrote over existing {key!r}"
        self._wrote(meta, Entry(value))

    @rule(key=keys, value=values, current=st.booleans())
    def put_if_match(self, key: str, value: bytes, current: bool) -> None:
        """``if_match`` writes only over the value with that etag."""
        entry = self.model.get(key)
        etag = self._etag(key) if current and entry else etag_of(b"\0not any value\0")
        expect = current and entry is not None
        try:
            meta = self.store.put(key, value, if_match=etag, metadata={"cas": "1"})
        except PreconditionFailed:
            assert not expect, f"if_match with the current etag of {key!r} was refused"
            return
        assert expect, f"if_match wrote over {key!r} without its etag"
        self._wrote(meta, Entry(value, metadata={"cas": "1"}))

    @rule(key=keys)
    def get(self, key: str) -> None:
        """``get`` returns the model's value, or raises KeyNotFound."""
        try:
            value = self.store.get(key)
        except KeyNotFound:
            assert key not in self.model, f"{key!r} vanished"
            return
        assert key in self.model, f"{key!r} appeared"
        assert value == self.model[key].value

    @rule(key=keys)
    def head(self, key: str) -> None:
        """``head`` and ``in`` agree with the model."""
        assert (key in self.store) == (key in self.model)
        try:
            meta = self.store.head(key)
        except KeyNotFound:
            assert key not in self.model
            return
        assert meta.key == key
        self._check_meta(meta)

    @rule(key=keys)
    def delete(self, key: str) -> None:
        """``delete`` removes the key; absent keys are fine."""
        self.store.delete(key)
        self.model.pop(key, None)

    @rule(prefix=st.sampled_from(PREFIXES), start_after=st.none() | keys)
    def list_keys(self, prefix: str, start_after: str | None) -> None:
        """``list`` yields the model's keys with that prefix, after ``start_after``, in order."""
        listed = list(self.store.list(prefix, start_after=start_after))
        assert [m.key for m in listed] == self._listed(prefix, start_after)
        for meta in listed:
            self._check_meta(meta)

    @rule(prefix=st.sampled_from(PREFIXES))
    def ls(self, prefix: str) -> None:
        """``ls`` splits the level below ``prefix`` into objects and common prefixes."""
        objects: list[str] = []
        prefixes: set[str] = set()
        for key in self._listed(prefix, None):
            cut = key.find("/", len(prefix))
            if cut < 0:
                objects.append(key)
            else:
                prefixes.add(key[: cut + 1])
        listing = self.store.ls(prefix)
        assert [m.key for m in listing.objects] == objects
        assert listing.prefixes == sorted(prefixes, key=_byte_order)

    @rule(source=keys, destination=keys)
    def copy(self, source: str, destination: str) -> None:
        """``copy`` carries value, content type and metadata; a missing source raises."""
        try:
            meta = self.store.copy(source, destination)
        except KeyNotFound:
            assert source not in self.model
            return
        self._wrote(meta, self.model[source])

    @rule(key=keys, delta=st.integers(-50, 50))
    def incr(self, key: str, delta: int) -> None:
        """``incr`` adds to a counter, counts from 0 where absent, refuses other values."""
        entry = self.model.get(key)
        current = 0 if entry is None else _counter(entry.value)
        try:
            result = self.store.incr(key, delta)
        except InvalidValue:
            assert current is None, f"incr refused the counter {entry}"
            return
        assert current is not None, f"incr accepted the non-counter {entry}"
        assert result == current + delta
        if entry is None:
            entry = Entry(b"")
        self.model[key] = Entry(b"%d" % result, entry.content_type, entry.metadata)
        meta = self.store.head(key)
        assert meta.version != self.versions.get(key)
        self.versions[key] = meta.version
        if not self.store.content_etags:  # an incr is a write: its etag is new
            assert meta.etag and meta.etag != self.etags.get(key), meta
            self.etags[key] = meta.etag
        self._check_meta(meta)

    @rule(items=st.dictionaries(keys, values, max_size=5))
    def put_many(self, items: dict[str, bytes]) -> None:
        """``put_many`` writes every item with default content type and no metadata."""
        metas = self.store.put_many(items)
        assert [m.key for m in metas] == list(items)
        for meta in metas:
            self._wrote(meta, Entry(items[meta.key]))

    @rule(chosen=st.lists(keys, max_size=5))
    def delete_many(self, chosen: list[str]) -> None:
        """``delete_many`` removes every key, ignoring absent ones."""
        self.store.delete_many(chosen)
        for key in chosen:
            self.model.pop(key, None)

    @precondition(lambda self: self.factory.persistent)
    @rule()
    def reopen(self) -> None:
        """A persistent store comes back with every value, metadata and version."""
        self.store.close()
        self.store = self.factory.open()

    @invariant()
    def same_keys(self) -> None:
        """The store lists exactly the model's keys, in UTF-8 byte order."""
        assert list(self.store.keys()) == self._listed("", None)


def state_machine_for(factory: StoreFactory | Callable[[], StoreFactory]) -> type[StoreMachine]:
    """A :class:`StoreMachine` subclass driving ``factory`` (or what a callable returns per run)."""
    make: Callable[[], StoreFactory] = (
        (lambda: factory) if isinstance(factory, StoreFactory) else factory
    )
    name = f"StoreMachine_{factory.name}" if isinstance(factory, StoreFactory) else "StoreMachine"
    return type(name, (StoreMachine,), {"make_factory": staticmethod(make)})


def run_stateful(
    factory: StoreFactory | Callable[[], StoreFactory],
    run_settings: settings | None = None,
) -> None:
    """Run the state machine over ``factory`` now (inside a pytest test, say).

    Without ``run_settings``: :data:`DEFAULT_SETTINGS`, or :data:`REMOTE_SETTINGS`
    for a :class:`StoreFactory` marked ``remote``.
    """
    if run_settings is None:
        remote = isinstance(factory, StoreFactory) and factory.remote
        run_settings = REMOTE_SETTINGS if remote else DEFAULT_SETTINGS
    run_state_machine_as_test(state_machine_for(factory), settings=run_settings)


def stateful_test_case(
    factory: StoreFactory | Callable[[], StoreFactory],
    run_settings: settings | None = None,
) -> type[unittest.TestCase]:
    """A ``unittest.TestCase`` class running the state machine over ``factory``.

    Assign it to a module-level name starting with ``Test`` so pytest or
    unittest collects it.
    """
    machine = state_machine_for(factory)
    case: type[unittest.TestCase] = machine.TestCase
    case.settings = run_settings or DEFAULT_SETTINGS  # type: ignore[attr-defined]
    return case
