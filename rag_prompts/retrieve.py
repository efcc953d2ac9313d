"""Ranking: the task text -> scored chunks, restricted to an agent's tags."""

from __future__ import annotations

from collections.abc import Sequence

from .embed import Embedder
from .records import Hit
from .store import ChunkStore


class Retriever:
    """Dense retrieval over one store with one embedder (cosine similarity, best first)."""

    def __init__(self, store: ChunkStore, embedder: Embedder) -> None:
        self.store = store
        self.embedder = embedder

    def search(
        self,
        query: str,
        n: int,
        tags: Sequence[str] = (),
        sources: Sequence[str] = (),
        exclude: frozenset[str] = frozenset(),
    ) -> list[Hit]:
        """The `n` best chunks for `query`; chunks of the sources in `exclude` (not in force) are left out."""
        if not query.strip():
            return []
        return self.store.query(self.embedder.embed_query(query), n, tags=tags, sources=sources, exclude=exclude)
