"""How :class:`~mirrorkv.stores.file.FileStore` turns keys into paths and back.

A key is split at ``/`` into segments; each segment becomes one file name
(or, when long, a short chain of directory names). The mapping is a
bijection between valid keys and *canonical* relative paths:

* A segment made of ordinary characters is its own file name, so
  ``photos/2026/cat.jpg`` lives at ``photos/2026/cat.jpg``.
* ``%`` is the escape character: ``\\ : * ? " < > | %``, the C0 and C1 control
  characters and DEL are written as ``%XX`` per UTF-8 byte (upper-case hex).
  So is a trailing ``.`` or space (which makes ``.`` ``%2E`` and ``..``
  ``.%2E``), and the first character of a Windows device name (``CON``,
  ``nul.txt``, ``COM1`` ... become ``%43ON``, ``%6Eul.txt``, ``%43OM1``).
* The empty segment (as in ``/a``, ``a//b``, ``a/``) is written ``%00``: a key
  holds no NUL, so no other segment encodes to it.
* A segment whose encoding exceeds :data:`MAX_NAME` bytes is cut (between
  characters, never inside an escape) into pieces; every piece but the last
  becomes a directory named ``%%+<piece>``, the last piece is the name.
* Names starting with ``%%`` are never the encoding of a segment (``%`` itself
  is always escaped); the store keeps its own files there: ``%%v`` (the value
  of a key that is also a directory), ``%%m.<name>`` (metadata of ``<name>``),
  ``%%t.<token>`` (temporary files), ``%%lock``.

No encoded name is empty, ``.`` or ``..``, or contains ``/`` or NUL, so no key
leaves the root, and two keys never share a path. A name found on disk is
accepted as a key only if it is the canonical encoding of what it decodes
to; :func:`decode_name` returns ``None`` for anything else.
"""

from __future__ import annotations

import re

__all__ = [
    "CHAIN_PREFIX",
    "LOCK_NAME",
    "MAX_NAME",
    "META_PREFIX",
    "RESERVED",
    "TEMP_PREFIX",
    "VALUE_NAME",
    "decode_name",
    "decode_key",
    "decode_piece",
    "encode_key",
    "encode_segment",
    "key_names",
    "plain_key",
]

#: The longest name (in bytes) a segment or piece encodes to; leaves room for ``%%m.``.
MAX_NAME = 240
#: Every name the store keeps for itself starts with this; no segment encodes to it.
RESERVED = "%%"
#: The value of a key whose path is also a directory (``a`` next to ``a/b``).
VALUE_NAME = "%%v"
#: ``%%m.<name>``: the metadata sidecar of the value stored as ``<name>``.
META_PREFIX = "%%m."
#: ``%%t.<token>``: a temporary file being written.
TEMP_PREFIX = "%%t."
#: ``%%+<piece>``: a directory holding the rest of a segment too long for one name.
CHAIN_PREFIX = "%%+"
#: The lock file at the root of the store.
LOCK_NAME = "%%lock"

_EMPTY_SEGMENT = "%00"
_DEVICES = frozenset(
    ["CON", "PRN", "AUX", "NUL"]
    + [f"{kind}{n}" for kind in ("COM", "LPT") for n in [*"0123456789", "¹", "²", "³"]]
)
_UNSAFE = re.compile(r'[\x00-\x1f\x7f-\x9f\\:*?"<>|%]')
_ESCAPE = re.compile(rb"%([0-9A-F]{2})")
# Keys whose every segment is its own name: short, ASCII, nothing to escape,
# no trailing dot, no device name. Checked in one match on the hot path.
_PLAIN_SEGMENT = (
    r"(?!(?i:con|prn|aux|nul|com\d|lpt\d)(?:[./]|$))"  # not a device name
    r"[A-Za-z0-9_.,+=@~-]*[A-Za-z0-9_,+=@~-]"  # no trailing dot
)
_PLAIN_KEY = re.compile(rf"{_PLAIN_SEGMENT}(?:/{_PLAIN_SEGMENT})*")
#: A match for keys that are their own path (ASCII, at most MAX_NAME long), else None.
plain_key = _PLAIN_KEY.fullmatch


def _escape(char: str) -> str:
    return "".join(f"%{byte:02X}" for byte in char.encode("utf-8"))


def _unescape(match: re.Match[bytes]) -> bytes:
    return bytes((int(match.group(1), 16),))


def _is_device(segment: str) -> bool:
    return segment.split(".", 1)[0].rstrip(" ").upper() in _DEVICES


def _tokens(segment: str) -> list[str]:
    """The encoding of ``segment`` cut into tokens: one per character."""
    tokens = [_escape(char) if _UNSAFE.match(char) else char for char in segment]
    if segment[-1] in ". ":
        tokens[-1] = _escape(segment[-1])
    if _is_device(segment):
        tokens[0] = _escape(segment[0])
    return tokens


def encode_segment(segment: str) -> list[str]:
    """The names one key segment is stored under: one name, or a chain for a long segment."""
    if not segment:
        return [_EMPTY_SEGMENT]
    tokens = _tokens(segment)
    name = "".join(tokens)
    if len(name) <= MAX_NAME // 4 or len(name.encode("utf-8")) <= MAX_NAME:
        return [name]
    pieces: list[str] = []
    current: list[str] = []
    size = 0
    for token in tokens:
        width = len(token.encode("utf-8"))
        if size + width > MAX_NAME:
            pieces.append("".join(current))
            current, size = [], 0
        current.append(token)
        size += width
    pieces.append("".join(current))
    return [CHAIN_PREFIX + piece for piece in pieces[:-1]] + [pieces[-1]]


def key_names(key: str) -> list[str]:
    """Every name on the path of ``key``, from the root down."""
    names: list[str] = []
    for segment in key.split("/"):
        names.extend(encode_segment(segment))
    return names


def encode_key(key: str) -> str:
    """The path of ``key`` relative to the store's root, with ``/`` between names."""
    if len(key) <= MAX_NAME and plain_key(key):
        return key
    return "/".join(key_names(key))


def decode_piece(name: str) -> str | None:
    """The text a name or chain piece stands for, or ``None`` if it is not well formed."""
    try:
        raw = name.encode("utf-8")
    except UnicodeEncodeError:  # undecodable bytes on disk, kept as surrogates by os
        return None
    if b"%" not in raw:
        return name
    unescaped, count = _ESCAPE.subn(_unescape, raw)
    if count != raw.count(b"%"):
        return None
    try:
        return unescaped.decode("utf-8")
    except UnicodeDecodeError:
        return None


def decode_name(name: str) -> str | None:
    """The segment a single name stands for, or ``None`` if it is not a canonical encoding."""
    if name.startswith(RESERVED):
        return None
    segment = decode_piece(name)
    if segment is None:
        return None
    if segment == "\x00":
        segment = ""
    if encode_segment(segment) != [name]:
        return None
    return segment


def decode_key(path: str) -> str | None:
    """The key a relative path stands for, or ``None`` if it is not a key's canonical path.

    The inverse of :func:`encode_key`: ``decode_key(encode_key(key)) == key``.
    """
    segments: list[str] = []
    stem = ""
    for name in path.split("/"):
        if name.startswith(CHAIN_PREFIX):
            piece = decode_piece(name[len(CHAIN_PREFIX) :])
            if piece is None:
                return None
            stem += piece
            continue
        piece = decode_piece(name) if stem else decode_name(name)
        if piece is None or name.startswith(RESERVED):
            return None
        segments.append(stem + piece if stem else piece)
        stem = ""
    if stem:
        return None
    key = "/".join(segments)
    return key if key and encode_key(key) == path else None
