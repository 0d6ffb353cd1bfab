"""`KeyGen`: a store that also picks keys for new values (uuid4, ULID or content hash).

The key of :meth:`KeyGen.add` comes from a *template*: literal text with
placeholders in braces, rendered with the identifier the scheme generates.

* ``{uuid}`` (scheme ``"uuid"``): a random UUID4 as 32 lowercase hex digits;
* ``{ulid}`` (scheme ``"ulid"``): a ULID, 26 characters of Crockford base32,
  whose first 10 encode the millisecond it was made;
* ``{hash}`` (schemes ``"sha256"`` and ``"blake2b"``): the hex digest of the
  value (SHA-256, or BLAKE2b with a 32-byte digest): 64 lowercase hex digits;
* ``{name:N}``: the first ``N`` characters of that identifier (``N`` from 1 to
  its length), for fan-out folders: ``"{hash:2}/{hash}"``.

Only the scheme's own placeholder may appear; the whole identifier
(``{name}``, or ``{name:N}`` with ``N`` its full length) must appear at least once, so that two keys
differ where two identifiers do; literal text holds no brace; and the
rendered key must be a valid key. Anything else is :class:`InvalidValue`
when the ``KeyGen`` is made.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from ..errors import InvalidValue, PreconditionFailed
from ..meta import etag_of
from ..store import Store, to_bytes
from ._keygen_template import HASH_SCHEMES, SCHEMES, compile_template, generator
from .base import Layer

__all__ = ["SCHEMES", "KeyGen"]

# A uuid or ulid key is fresh; it is written create-only, and made again on the
# (astronomically unlikely) collision this many times before giving up.
_ATTEMPTS = 3


class KeyGen(Layer):
    """A transparent layer over ``inner`` with :meth:`add`, which stores a value under a new key.

    Every :class:`~mirrorkv.store.Store` method passes to ``inner`` unchanged
    (it changes neither keys nor values); the layer holds no state beyond
    its scheme and template. ``add`` never overwrites: a uuid or ULID key is
    written create-only, and a content-hash add of a value already stored
    under its hash writes nothing and returns the same key.
    """

    transparent = True

    def __init__(self, inner: Store, scheme: str = "uuid", template: str | None = None) -> None:
        """Wrap ``inner``; ``scheme`` is ``"uuid"``, ``"ulid"``, ``"sha256"`` or ``"blake2b"``.

        ``template`` defaults to the bare identifier (``"{uuid}"``,
        ``"{ulid}"`` or ``"{hash}"``). Raises :class:`InvalidValue` for an
        unknown scheme or a bad template, and :class:`NotSupported` for
        ``"ulid"`` where the ``python-ulid`` package (extra
        ``mirrorkv[ulid]``) is not installed.
        """
        super().__init__(inner)
        if not isinstance(scheme, str) or scheme not in SCHEMES:
            raise InvalidValue(f"KeyGen schemes are {', '.join(SCHEMES)}; not {scheme!r}")
        name, length = SCHEMES[scheme]
        if template is None:
            template = "{" + name + "}"
        self._scheme = scheme
        self._template = template
        self._render = compile_template(template, name, length)
        self._make: Callable[[bytes], str] = generator(scheme)

    @property
    def scheme(self) -> str:
        """The scheme new keys come from."""
        return self._scheme

    @property
    def template(self) -> str:
        """The template new keys are rendered from."""
        return self._template

    def __repr__(self) -> str:
        return f"KeyGen({self._inner!r}, {self._scheme!r}, {self._template!r})"

    def key_for(self, data: bytes | bytearray | memoryview) -> str:
        """The key :meth:`add` would use for ``data`` (for uuid and ULID: a fresh one each call)."""
        return self._render(self._make(to_bytes(data)))

    def add(
        self,
        data: bytes | bytearray | memoryview,
        *,
        content_type: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> str:
        """Store ``data`` under a new key and return the key.

        uuid and ULID: the key is new, and the write is create-only, so no
        existing value is ever replaced. Content hash: the key is a function
        of ``data``; where that key already holds the same value nothing is
        written (the first add's content type and metadata stay) and the
        same key is returned. :class:`PreconditionFailed` where it holds a
        different value (written there by other means than ``add``).
        """
        value = to_bytes(data)
        if self._scheme in HASH_SCHEMES:
            key = self._render(self._make(value))
            try:
                self.put(
                    key, value, content_type=content_type, metadata=metadata, if_none_match="*"
                )
            except PreconditionFailed:
                held = self.head(key)
                if held.size != len(value) or held.etag != etag_of(value):
                    raise PreconditionFailed(
                        f"{key!r} holds another value than the one whose hash names it"
                    ) from None
            return key
        attempts = 0
        while True:
            key = self._render(self._make(value))
            try:
                self.put(
                    key, value, content_type=content_type, metadata=metadata, if_none_match="*"
                )
            except PreconditionFailed:
                attempts += 1
                if attempts == _ATTEMPTS:
                    raise
                continue
            return key
