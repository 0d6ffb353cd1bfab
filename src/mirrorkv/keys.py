"""The key rules every store enforces.

A key is a non-empty ``str`` that encodes to at most :data:`MAX_KEY_BYTES`
bytes of UTF-8 and holds no NUL character. ``/`` separates levels of the
hierarchy, but a key is otherwise opaque: ``a`` and ``a/b`` may both exist,
and ``a//b``, ``./a`` or ``../a`` are ordinary keys that a store must keep
apart from every other key (a file store encodes them).

Keys sort in the order of their UTF-8 bytes (the order S3 lists in), which for
valid keys is the same as Python's ``str`` order by code point.
"""

from __future__ import annotations

import operator
from itertools import repeat

from .errors import InvalidKey

__all__ = ["MAX_KEY_BYTES", "check_key", "check_keys", "check_prefix", "prefix_upper_bound"]

#: The longest key, in bytes of UTF-8 (S3's limit).
MAX_KEY_BYTES = 1024


def check_key(key: object) -> str:
    """Return ``key`` unchanged if it is a valid key; raise :class:`InvalidKey` if not."""
    if key.__class__ is not str and not isinstance(key, str):
        raise InvalidKey(f"a key must be a str, not {type(key).__name__}")
    if not key:
        raise InvalidKey("a key must not be empty")
    # A str of at most 256 characters that is ASCII cannot exceed 1024 bytes,
    # so the common case never encodes.
    if len(key) > 256 or not key.isascii():
        try:
            size = len(key.encode("utf-8"))
        except UnicodeEncodeError:
            raise InvalidKey(f"a key must be valid UTF-8 (lone surrogate in {key!r})") from None
        if size > MAX_KEY_BYTES:
            raise InvalidKey(f"a key is at most {MAX_KEY_BYTES} bytes of UTF-8, this one is {size}")
    if "\x00" in key:
        raise InvalidKey("a key must not contain NUL")
    return key


def check_keys(keys: list[str]) -> None:
    """Raise :class:`InvalidKey` unless every key in the list is valid.

    The common batch (str keys of at most 256 ASCII characters, none NUL,
    which cannot exceed 1024 bytes) is checked in a few C-level passes over
    the whole list; any other batch key by key.
    """
    if (
        keys
        and set(map(type, keys)) == _STR
        and min(map(len, keys)) > 0
        and max(map(len, keys)) <= 256
        and all(map(str.isascii, keys))
        and not any(map(_contains, keys, repeat("\x00")))
    ):
        return
    for key in keys:
        check_key(key)


_STR = {str}
_contains = operator.contains


def check_prefix(prefix: object) -> str:
    """Return ``prefix`` if it can start a key ('' included); raise :class:`InvalidKey` if not."""
    if prefix == "":
        return ""
    return check_key(prefix)


def prefix_upper_bound(prefix: str) -> str | None:
    """The smallest string greater than every string that starts with ``prefix``.

    Returns ``None`` when there is none (the prefix is empty or all U+10FFFF),
    meaning "no upper bound". Useful for range scans: ``prefix <= key < bound``.
    """
    stripped = prefix.rstrip("\U0010ffff")
    if not stripped:
        return None
    last = ord(stripped[-1]) + 1
    if 0xD800 <= last <= 0xDFFF:  # skip the surrogate block, which no key holds
        last = 0xE000
    return stripped[:-1] + chr(last)
