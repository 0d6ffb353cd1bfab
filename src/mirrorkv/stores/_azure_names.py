"""How `AzureBlobStore` writes keys as blob names and user metadata as Azure metadata.

Blob names
----------

Azure and Azurite cannot keep every key as it is: ``.`` and ``..`` path
segments are resolved away by the HTTP layer, a trailing dot is trimmed by
Azure, a backslash becomes a slash, control characters break the XML of a
listing, and Azurite lists in UTF-16 order where our contract wants UTF-8
order. So a key is written as its *blob name* by a code that replaces a few
characters, each by an escape character followed by a fixed number of
digits, and leaves every other character as it is::

    U+0001..U+0021 (controls, space, "!")  ->  "!" + 2 hex digits    "a b"  -> "a!20b"
    "."                                     ->  ".2E"                 "x.py" -> "x.2Epy"
    "\\" and "]"                            ->  "]" + 2 hex digits    "a\\b" -> "a]5Cb"
    U+007E..U+009F ("~", DEL, C1 controls)  ->  "~" + 2 hex digits    "~"    -> "~7E"
    U+D7FF..U+10FFFF                        ->  U+D7FF + 2 digits from U+4E00..U+4FFF

The code is applied character by character, and it is *prefix-free* (no
code word starts another) and *monotone* (a character's code word sorts
where the character does: each escape character lies inside the range it
escapes, and the digits after it sort in the order of the characters they
stand for). Hence, for any keys ``a`` and ``b``:

* ``a < b`` (UTF-8 byte order) exactly when ``name(a) < name(b)``, and every
  name consists of code points below U+D800, whose UTF-8 byte order, UTF-16
  order and code-point order all agree: the service lists names in key order
  whichever of these it sorts by;
* ``b`` starts with ``a`` exactly when ``name(b)`` starts with ``name(a)``,
  so a prefix listing of the service is exactly a prefix listing of keys.

No name holds a ``.``/``..`` segment, a trailing dot, a backslash or a
control character. Keys of letters, digits, ``/`` and most punctuation
(``-_:@,+=()'$&%;`` among them) and any text below U+D7FF are written as
they are; ``"."`` costs three characters, so ``report.pdf`` is stored as
``report.2Epdf``.

User metadata
-------------

Azure metadata names must be C# identifiers and are case-insensitive; values
must be ASCII without leading or trailing blanks. A name is written as
``mkv_`` followed by its UTF-8 bytes, where ``a``-``z`` and ``0``-``9`` stay
as they are and every other byte becomes ``_`` and two lowercase hex digits
(so ``x-foo`` is ``mkv_x_2dfoo``, ``Owner`` is ``mkv__4fwner``); a value is
written as ``=`` followed by its text percent-encoded (everything but
printable ASCII other than ``%`` and space). Both are reversible; metadata
names without the ``mkv_`` prefix (written by other tools) are read back as
the service reports them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from types import MappingProxyType
from urllib.parse import quote, unquote

from ..errors import CorruptValue
from ..meta import NO_METADATA

__all__ = [
    "decode_metadata",
    "decode_name",
    "encode_metadata",
    "encode_name",
]

_ASTRAL_ESCAPE = "\ud7ff"
_DIGIT_BASE = 0x4E00


def _build_table() -> dict[int, str]:
    table: dict[int, str] = {}
    for code in range(0x01, 0x22):
        table[code] = f"!{code:02X}"
    table[ord(".")] = ".2E"
    table[ord("\\")] = "]5C"
    table[ord("]")] = "]5D"
    for code in range(0x7E, 0xA0):
        table[code] = f"~{code:02X}"
    return table


_TABLE = _build_table()
# Every character the table or the astral escape touches, for a fast "nothing to do" test.
_NEEDS_ESCAPE = re.compile("[\x01-\x21.\\\\\\]\x7e-\x9f\ud7ff-\U0010ffff]")
_ESCAPE = re.compile(f"[!.\\]~]([0-9A-F]{{2}})|{_ASTRAL_ESCAPE}(.)(.)", re.DOTALL)
_ASTRAL = re.compile("[\ud7ff-\U0010ffff]")


def _astral(match: re.Match[str]) -> str:
    offset = ord(match.group()) - 0xD7FF
    return _ASTRAL_ESCAPE + chr(_DIGIT_BASE + (offset >> 12)) + chr(_DIGIT_BASE + (offset & 0xFFF))


def encode_name(key: str) -> str:
    """The blob name that stands for ``key`` (or for a key prefix); see the module docstring."""
    if _NEEDS_ESCAPE.search(key) is None:
        return key
    return _ASTRAL.sub(_astral, key.translate(_TABLE))


def _unescape(match: re.Match[str]) -> str:
    hex_digits = match.group(1)
    if hex_digits is not None:
        return chr(int(hex_digits, 16))
    high = ord(match.group(2)) - _DIGIT_BASE
    low = ord(match.group(3)) - _DIGIT_BASE
    return chr(0xD7FF + (high << 12) + low)


def decode_name(name: str) -> str:
    """The key a blob name stands for; :class:`CorruptValue` where no key maps to it."""
    if _NEEDS_ESCAPE.search(name) is None:
        return name
    key = _ESCAPE.sub(_unescape, name)
    if encode_name(key) != name:
        raise CorruptValue(f"the blob {name!r} was not written by mirrorkv (its name has no key)")
    return key


_META_PREFIX = "mkv_"
_META_NAME_BYTE = re.compile(rb"[^a-z0-9]")
_META_NAME_ESCAPE = re.compile(r"_([0-9a-f]{2})")
# Printable ASCII but "%" and space stays as it is in a metadata value.
_VALUE_SAFE = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) != "%")


def encode_metadata(metadata: Mapping[str, str]) -> dict[str, str]:
    """User metadata as Azure metadata (identifier names, ASCII values), reversibly."""
    if not metadata:
        return {}
    encoded: dict[str, str] = {}
    for name, value in metadata.items():
        raw = _META_NAME_BYTE.sub(lambda m: b"_%02x" % m.group()[0], name.encode("utf-8"))
        encoded[_META_PREFIX + raw.decode("ascii")] = "=" + quote(value, safe=_VALUE_SAFE)
    return encoded


def decode_metadata(stored: Mapping[str, str] | None) -> Mapping[str, str]:
    """The user metadata that Azure metadata written by :func:`encode_metadata` stands for."""
    if not stored:
        return NO_METADATA
    decoded: dict[str, str] = {}
    for name, value in stored.items():
        if name[: len(_META_PREFIX)].lower() == _META_PREFIX:
            raw = _META_NAME_ESCAPE.sub(
                lambda m: "%" + m.group(1), name[len(_META_PREFIX) :].lower()
            )
            name = unquote(raw, errors="strict")
            value = unquote(value[1:], errors="strict") if value.startswith("=") else value
        decoded[name] = value
    return MappingProxyType(decoded)
