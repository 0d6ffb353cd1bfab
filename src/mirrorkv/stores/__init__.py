"""The backends: one module per store, each registered by URL scheme in :mod:`mirrorkv.urls`."""
