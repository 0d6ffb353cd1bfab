"""KeyGen's template language and identifier makers (see :mod:`mirrorkv.layers.keygen`)."""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Callable, Mapping

from ..errors import InvalidKey, InvalidValue, NotSupported
from ..keys import check_key

__all__ = ["HASH_SCHEMES", "SCHEMES", "compile_template", "generator"]

#: The schemes :class:`~mirrorkv.layers.keygen.KeyGen` knows: placeholder name, identifier length.
SCHEMES: Mapping[str, tuple[str, int]] = {
    "uuid": ("uuid", 32),
    "ulid": ("ulid", 26),
    "sha256": ("hash", 64),
    "blake2b": ("hash", 64),
}

#: The schemes whose identifier is a hash of the value.
HASH_SCHEMES = ("sha256", "blake2b")

_PLACEHOLDER = re.compile(r"\{([a-z0-9]*)(?::([0-9]+))?\}")


def compile_template(template: object, name: str, length: int) -> Callable[[str], str]:
    """A function rendering ``template`` with an identifier; :class:`InvalidValue` if bad."""
    if not isinstance(template, str):
        raise InvalidValue(f"a KeyGen template is a str, not {type(template).__name__}")
    pieces: list[str | int] = []  # literal text, or how many identifier characters (0: all)
    whole = False
    position = 0
    for match in _PLACEHOLDER.finditer(template):
        pieces.append(template[position : match.start()])
        position = match.end()
        if match.group(1) != name:
            raise InvalidValue(
                f"template {template!r}: this scheme's placeholder is {{{name}}}, "
                f"not {{{match.group(1)}}}"
            )
        if match.group(2) is None:
            whole = True
            pieces.append(0)
            continue
        size = int(match.group(2))
        if not 1 <= size <= length:
            raise InvalidValue(
                f"template {template!r}: {{{name}:N}} takes N from 1 to {length}, not {size}"
            )
        whole = whole or size == length
        pieces.append(size)
    pieces.append(template[position:])
    literal = "".join(piece for piece in pieces if isinstance(piece, str))
    if "{" in literal or "}" in literal:
        raise InvalidValue(f"template {template!r}: a brace outside a {{{name}}} placeholder")
    if not whole:
        raise InvalidValue(f"template {template!r} must hold the whole identifier, {{{name}}}")

    def render(identifier: str) -> str:
        return "".join(
            piece if isinstance(piece, str) else identifier[: piece or None] for piece in pieces
        )

    try:
        check_key(render("0" * length))
    except InvalidKey as error:
        raise InvalidValue(f"template {template!r} makes invalid keys: {error}") from None
    return render


def generator(scheme: str) -> Callable[[bytes], str]:
    """The function making an identifier (from the value, for the hash schemes)."""
    if scheme == "sha256":
        return lambda data: hashlib.sha256(data).hexdigest()
    if scheme == "blake2b":
        return lambda data: hashlib.blake2b(data, digest_size=32).hexdigest()
    if scheme == "ulid":
        try:
            from ulid import ULID
        except ImportError:
            raise NotSupported(
                "ULID keys need the python-ulid package: pip install 'mirrorkv[ulid]'"
            ) from None
        return lambda data: str(ULID())
    return lambda data: uuid.uuid4().hex
