"""Context-aware chunk vectors: a chunk's vector leans towards its neighbours' so a short chunk is found by what
its passage is about, not only by its own few words.

vector(i) = normalise(e(i) + weight * mean(e(i - window) .. e(i + window))) over the chunks of one document,
where e is the embedding of a chunk alone. It costs no extra model calls. A vector is keyed by the content of
its whole window, so re-ingest reuses it exactly when the chunk and its neighbours are unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .chunking import sha256
from .records import Chunk


def window(index: int, count: int, reach: int) -> range:
    """Positions of the chunks around `index` (itself included) among `count` chunks of one document."""
    return range(max(0, index - reach), min(count, index + reach + 1))


def vector_keys(chunks: Sequence[Chunk], reach: int, weight: float) -> list[str]:
    """One key per chunk of one document (in order): what its vector is computed from."""
    if reach == 0 or weight == 0:
        return [sha256(f"plain\x00{chunk.content_hash}") for chunk in chunks]
    settings = f"window={reach};weight={weight}"
    keys = []
    for index, chunk in enumerate(chunks):
        around = (chunks[position].content_hash for position in window(index, len(chunks), reach))
        keys.append(sha256("\x00".join([settings, chunk.content_hash, *around])))
    return keys


def mix(own: np.ndarray, around: np.ndarray, weight: float) -> np.ndarray:
    """A chunk's vector from its own embedding and those of its window (its own included)."""
    vector = own + weight * around.mean(axis=0)
    norm = float(np.linalg.norm(vector))
    return (vector / norm if norm else own).astype(np.float32)
