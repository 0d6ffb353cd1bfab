"""How the GCS store turns keys into object names and user metadata into GCS metadata.

Keys. GCS object names are UTF-8 of at most 1,024 bytes that must not hold
CR or LF, must not be ``.`` or ``..``, must not start with
``.well-known/acme-challenge/``, and should avoid control characters. Our keys
may hold all of these, so a key is encoded character by character, and the
encoding keeps the order of the UTF-8 bytes, so that GCS's listing (in name
byte order) is our listing order, and a key prefix is a name prefix:

* U+0001..U+0020 (the C0 controls and the space) become a space followed by
  two lowercase hex digits (``"\\n"`` -> ``" 0a"``, ``" "`` -> ``" 20"``);
* U+007E..U+009F (``~``, DEL and the C1 controls) become ``~`` followed by
  two lowercase hex digits (``"~"`` -> ``"~7e"``);
* in a store without a name prefix, a key that starts with ``.`` or ``/``
  gets one ``/`` in front (``".hidden"`` -> ``"/.hidden"``, ``"/a"`` ->
  ``"//a"``), which keeps ``.``, ``..`` and ``.well-known/acme-challenge/...``
  from being the names GCS refuses;
* every other character is itself.

Each character's code is prefix-free and the codes sort as the characters
do (the escaped ranges sit, as one block, where their first byte sits), so
``a < b`` exactly when ``encode(a) < encode(b)`` and ``a`` starts with ``p``
exactly when ``encode(a)`` starts with ``encode(p)``. The cost: two bytes per
escaped character and one for the leading ``.``/``/``, so a key near 1,024
bytes may not fit (:class:`InvalidKey` then says so).

Metadata. The GCS JSON API keeps metadata names' case and UTF-8 values (the
emulator does, checked), but the XML API and tools built on it fold names to
lower case and carry only ASCII. So a name is kept as is when it consists of
``a-z 0-9 - _ .`` and is percent-encoded (with lowercase hex) otherwise, and a
value is kept as is when it is printable ASCII without ``%`` and
percent-encoded otherwise. Decoding is ``unquote`` on both, exact for
everything we wrote.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from types import MappingProxyType
from urllib.parse import quote, unquote

from ..errors import InvalidKey, InvalidValue
from ..meta import NO_METADATA

__all__ = [
    "MAX_NAME_BYTES",
    "check_name_prefix",
    "decode_metadata",
    "decode_name",
    "encode_key",
    "encode_metadata",
    "name_for",
]

#: GCS's limit on an object name, in bytes of UTF-8.
MAX_NAME_BYTES = 1024

_ESCAPES = {code: f" {code:02x}" for code in range(0x21)}
_ESCAPES.update({code: f"~{code:02x}" for code in range(0x7E, 0xA0)})
_TABLE = str.maketrans(_ESCAPES)
_NEEDS_ESCAPE = re.compile(r"[\x00-\x20\x7e-\x9f]")
_CODE = re.compile(r" ([0-9a-f]{2})|~([0-9a-f]{2})")
_ACME = ".well-known/acme-challenge/"


def _escape(text: str) -> str:
    if _NEEDS_ESCAPE.search(text) is None:
        return text
    return text.translate(_TABLE)


def encode_key(key: str, at_root: bool) -> str:
    """The object-name part of ``key`` (or of a key prefix, or a ``start_after`` bound).

    ``at_root``: the store has no name prefix, so the first character is
    guarded too (see the module docstring).
    """
    encoded = _escape(key)
    if at_root and encoded[:1] in ("/", "."):
        return "/" + encoded
    return encoded


def _unescape(match: re.Match[str]) -> str:
    return chr(int(match.group(1) or match.group(2), 16))


def decode_name(part: str, at_root: bool) -> str | None:
    """The key whose encoding is ``part``; ``None`` where no key encodes to it.

    An object that mirrorkv did not write (say, ``"my file"`` with a raw
    space) has no key and is left out of listings.
    """
    text = part
    if at_root and text[:1] == "/":
        if text[1:2] not in ("/", "."):
            return None
        text = text[1:]
    key = _CODE.sub(_unescape, text) if (" " in text or "~" in text) else text
    if not key or "\x00" in key or encode_key(key, at_root) != part:
        return None
    return key


def name_for(prefix: str, key: str) -> str:
    """The object name of ``key`` in a store with name prefix ``prefix``; InvalidKey if too long."""
    name = prefix + encode_key(key, not prefix)
    size = len(name) if name.isascii() else len(name.encode("utf-8"))
    if size > MAX_NAME_BYTES:
        shown = key if len(key) <= 60 else key[:60] + "..."
        raise InvalidKey(
            f"the key {shown!r} needs {size} bytes as a GCS object name (store prefix, "
            f"plus 2 bytes per escaped control character, space or '~', see "
            f"docs/stores/gcs.md), over GCS's limit of {MAX_NAME_BYTES}"
        )
    return name


def check_name_prefix(prefix: str) -> str:
    """``prefix`` if it can start the object names of a store; :class:`InvalidValue` if not.

    It is used as given (not encoded), so it must be a name GCS accepts the
    start of: no control characters, not ``.``, not a start of the
    ``.well-known/acme-challenge/`` names GCS refuses, and short enough to
    leave room for keys.
    """
    if not isinstance(prefix, str):
        raise InvalidValue(f"the name prefix must be a str, not {type(prefix).__name__}")
    if re.search(r"[\x00-\x1f\x7f-\x9f]", prefix):
        raise InvalidValue(f"the name prefix {prefix!r} holds control characters")
    if prefix and (prefix == "." or _ACME.startswith(prefix) or prefix.startswith(_ACME)):
        raise InvalidValue(
            f"the name prefix {prefix!r} could form object names GCS refuses "
            f"('.', '..' or {_ACME!r}...)"
        )
    try:
        size = len(prefix.encode("utf-8"))
    except UnicodeEncodeError:
        raise InvalidValue(f"the name prefix {prefix!r} is not valid UTF-8") from None
    if size >= MAX_NAME_BYTES:
        raise InvalidValue(f"the name prefix is {size} bytes, leaving no room for keys")
    return prefix


_NAME_SAFE = re.compile(r"[a-z0-9._-]+")
_VALUE_SAFE = re.compile(r"[\x20-\x24\x26-\x7e]*")  # printable ASCII without '%'
_ALWAYS_SAFE = "abcdefghijklmnopqrstuvwxyz0123456789._-"
_PRINTABLE = "".join(chr(c) for c in range(0x20, 0x7F) if chr(c) != "%")


def _lower_hex(text: str) -> str:
    """Percent escapes with lowercase hex, so a service that folds case cannot change them."""
    return re.sub(r"%[0-9A-F]{2}", lambda m: m.group(0).lower(), text)


def encode_metadata(metadata: Mapping[str, str]) -> dict[str, str] | None:
    """User metadata as stored on GCS (see the module docstring); ``None`` where empty."""
    if not metadata:
        return None
    stored: dict[str, str] = {}
    try:
        for name, value in metadata.items():
            if _NAME_SAFE.fullmatch(name) is None:
                name = _lower_hex(quote(name, safe="._-"))
                # quote leaves A-Z alone: escape those too.
                name = re.sub(r"[A-Z]", lambda m: f"%{ord(m.group(0)):02x}", name)
            if _VALUE_SAFE.fullmatch(value) is None:
                value = quote(value, safe=_PRINTABLE)
            stored[name] = value
    except UnicodeEncodeError:
        raise InvalidValue("metadata must be valid UTF-8 text (a lone surrogate?)") from None
    return stored


def decode_metadata(stored: Mapping[str, str] | None) -> Mapping[str, str]:
    """The user metadata that :func:`encode_metadata` stored, read-only."""
    if not stored:
        return NO_METADATA
    return MappingProxyType(
        {
            (unquote(name) if "%" in name else name): (unquote(value) if "%" in value else value)
            for name, value in stored.items()
        }
    )
