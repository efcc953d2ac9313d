"""Ranking: the task text -> scored chunks, restricted to an agent's tags."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .centring import centred
from .embed import Embedder, QueryEncoding
from .focus import focus_parts, focused
from .lexical import POOL, rerank
from .records import Hit
from .regions import lift
from .store import ChunkStore
from .wording import in_store_words


class Retriever:
    """Dense retrieval over one store with one embedder (cosine similarity, best first), the query first centred
    on the store's mean chunk vector by the centring weight (see `centring`) and leaning towards its words that
    are rare in the store by the focus weight (see `focus`), its words the model does not know written as the
    store writes them (see `wording`). With a lexical, region or document
    weight, the top `lexical.POOL` dense candidates are reordered before the best n are kept: by dense score +
    lexical weight x BM25, then + region weight x the best nearby candidate + document weight x the best candidate
    of the same document (`regions.lift`)."""

    def __init__(
        self,
        store: ChunkStore,
        embedder: Embedder,
        lexical_weight: float = 0.0,
        region_weight: float = 0.0,
        document_weight: float = 0.0,
        centring_weight: float = 0.0,
        focus_weight: float = 0.0,
    ) -> None:
        self.store = store
        self.embedder = embedder
        self.lexical_weight = lexical_weight
        self.region_weight = region_weight
        self.document_weight = document_weight
        self.centring_weight = centring_weight
        self.focus_weight = focus_weight

    def query_vector(self, query: str) -> np.ndarray:
        """The vector `query` is searched and its passages' neighbours scored with."""
        pieces = getattr(self.embedder, "pieces", None)
        if pieces is not None:
            query = in_store_words(query, self.store.word_forms(), pieces)
        encode = getattr(self.embedder, "encode_query", None) if self.focus_weight else None
        encoding: QueryEncoding | None = encode(query) if encode is not None else None
        vector = encoding.vector if encoding is not None else self.embedder.embed_query(query)
        if not (self.centring_weight or self.focus_weight):
            return vector
        mean = self.store.mean_vector()
        search = centred(vector, mean, self.centring_weight)
        if encoding is None:  # an embedder without token embeddings: no focus
            return search
        parts = focus_parts(query, encoding.tokens, encoding.offsets, self.store.term_shares())
        return focused(search, parts, mean, self.centring_weight, self.focus_weight)

    def search(
        self,
        query: str,
        n: int,
        tags: Sequence[str] = (),
        sources: Sequence[str] = (),
        exclude: frozenset[str] = frozenset(),
        vector: np.ndarray | None = None,
    ) -> list[Hit]:
        """The `n` best chunks for `query` (searched with `vector` when given, else its `query_vector`); chunks of
        the sources in `exclude` (not in force) are left out."""
        if not query.strip():
            return []
        reordered = bool(self.lexical_weight or self.region_weight or self.document_weight)
        pool = max(n, POOL) if reordered else n
        hits = self.store.query(
            self.query_vector(query) if vector is None else vector, pool, tags=tags, sources=sources, exclude=exclude
        )
        if not reordered:
            return hits
        lexical = rerank(query, hits, self.lexical_weight)
        return lift(lexical, self.region_weight, self.document_weight)[:n]
