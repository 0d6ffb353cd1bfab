"""Keys that break naive stores: ordering traps, invalid keys, keys that would escape a root."""

from __future__ import annotations

from collections.abc import Iterator

__all__ = ["ESCAPING_KEYS", "INVALID_KEYS", "ORDER_KEYS", "utf8_sorted"]

#: Keys whose UTF-8 byte order differs from naive orders (UTF-16, locale, length).
ORDER_KEYS = (
    "a",
    "a/b",
    "a/",
    "a-",
    "a0",
    "A",
    "a b",
    "b",
    "z",
    "~",
    "é",
    "e\u0301",
    "\u4e2d",
    "\ue000",
    "\ufffd",
    "\U00010000",
    "\U0001f600",
)

#: Values that are not keys: empty, NUL, too long (ASCII and multi-byte), lone surrogates, not str.
INVALID_KEYS: tuple[object, ...] = (
    "",
    "\x00",
    "a\x00b",
    "x" * 1025,
    "é" * 512 + "a",
    "\U0001f600" * 256 + "a",
    "\ud800",
    "a\udfffb",
    5,
    None,
    b"a",
    ("a",),
    ["a"],
)

#: Ordinary keys that a naive file or URL mapping would let escape, collide or vanish.
ESCAPING_KEYS = (
    "../x",
    "..",
    ".",
    "./a",
    "a/./b",
    "a/../b",
    "a//b",
    "//",
    "/",
    "a/",
    "/a",
    "a",
    "A",
    "CON",
    "con",
    "NUL",
    "COM1",
    "aux.txt",
    "x.",
    "x ",
    " x",
    "a\\b",
    "\\",
    "~",
    "$HOME",
    "%2e%2e",
    "a%2Fb",
    "a/b",
    "%",
    ".hidden",
    "é",
    "e\u0301",
    "s" * 300,
    "d/" + "s" * 300,
    "\n",
    "tab\there",
)


def utf8_sorted(keys: Iterator[str] | list[str] | set[str] | tuple[str, ...]) -> list[str]:
    """``keys`` in the order every store lists in: ascending UTF-8 bytes."""
    return sorted(keys, key=lambda key: key.encode("utf-8"))
