"""A short tour of mirrorkv on the embedded default store (placeholder until the stores land)."""

import mirrorkv

store = mirrorkv.open("memory://")
meta = store.put("hello", b"world")
print("put", meta)
print("get", store.get("hello"))
