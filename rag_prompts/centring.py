"""Query centring. The chunk vectors of one store share a common direction (what all its policies have in common:
"this Agreement", "personal information"), so a cosine score partly measures how typical of the store a chunk is.
Taking weight x the store's mean chunk vector off the query before searching ranks chunks by what the task asks
beyond that common part (the mean removal known to sharpen sentence-embedding similarity). The mean is exact: each
document record keeps the sum of its chunk vectors, and the store's mean is their total over its committed chunks."""

from __future__ import annotations

import base64

import numpy as np


def encode(total: np.ndarray) -> str:
    """A vector sum as text a manifest record can hold (float32, little-endian, base64)."""
    return base64.b64encode(np.asarray(total, dtype="<f4").tobytes()).decode("ascii")


def decode(text: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text), dtype="<f4").astype(np.float64)


def centred(vector: np.ndarray, mean: np.ndarray | None, weight: float) -> np.ndarray:
    """`vector` less `weight` x `mean`, of unit length (`vector` itself when there is nothing to take off)."""
    if mean is None or weight == 0:
        return vector
    shifted = np.asarray(vector, dtype=np.float64) - weight * mean
    norm = float(np.linalg.norm(shifted))
    return vector if norm < 1e-9 else (shifted / norm).astype(np.float32)


class VectorSum:
    """The running sum of one document's chunk vectors, as its chunks are written (or found already stored)."""

    def __init__(self) -> None:
        self.total: np.ndarray | None = None

    def add(self, vectors: np.ndarray) -> None:
        if len(vectors):
            part = np.asarray(vectors, dtype=np.float32).astype(np.float64).sum(axis=0)  # as stored: float32
            self.total = part if self.total is None else self.total + part

    def text(self) -> str:
        return "" if self.total is None else encode(self.total)
