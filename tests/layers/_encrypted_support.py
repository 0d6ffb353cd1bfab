"""What the Encrypted layer's test modules share."""

from __future__ import annotations

from mirrorkv import Store


def rewrite(store: Store, key: str, data: bytes | None = None, **metadata: str) -> None:
    """Change a stored record behind the layer's back (its bytes, or metadata entries)."""
    meta = store.head(key)
    value = store.get(key) if data is None else data
    store.put(key, value, content_type=meta.content_type, metadata={**meta.metadata, **metadata})
