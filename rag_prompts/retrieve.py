"""Ranking: the task text -> scored chunks, restricted to an agent's tags."""

from __future__ import annotations

from collections.abc import Sequence

from .embed import Embedder
from .lexical import POOL, rerank
from .records import Hit
from .store import ChunkStore


class Retriever:
    """Dense retrieval over one store with one embedder (cosine similarity, best first); with a lexical weight,
    the top `lexical.POOL` dense candidates are reordered by dense score + weight x BM25 before the best n are kept."""

    def __init__(self, store: ChunkStore, embedder: Embedder, lexical_weight: float = 0.0) -> None:
        self.store = store
        self.embedder = embedder
        self.lexical_weight = lexical_weight

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
        pool = max(n, POOL) if self.lexical_weight else n
        hits = self.store.query(self.embedder.embed_query(query), pool, tags=tags, sources=sources, exclude=exclude)
        return rerank(query, hits, self.lexical_weight)[:n] if self.lexical_weight else hits
