"""Region evidence: a candidate that has another strong candidate a few chunks away in the same document is likely
inside the clause or paragraph the task is about, so it is lifted a little above an isolated match of equal score.
Like the lexical rerank it works on the dense pool alone: scores are put on the pool's own 0..1 scale (its worst
candidate 0, its best 1), and a candidate gains weight x the best such neighbour within `WINDOW` chunks."""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Sequence

from .records import Hit

WINDOW = 5  # chunks either side (about 200 tokens at the default chunk size)


def lift(hits: Sequence[Hit], weight: float, window: int = WINDOW) -> list[Hit]:
    """`hits` best first after adding `weight` x the pool-scaled score of the best other candidate of the same
    document within `window` chunks. Chunks without a place in a document (ordinal < 0) gain nothing."""
    if weight == 0 or len(hits) < 2:
        return list(hits)
    floor = min(hit.score for hit in hits)
    span = max(hit.score for hit in hits) - floor
    if span <= 0:
        return list(hits)
    places: dict[str, list[tuple[int, float]]] = {}
    for hit in hits:
        if hit.chunk.ordinal >= 0:
            places.setdefault(hit.chunk.source, []).append((hit.chunk.ordinal, (hit.score - floor) / span))
    for found in places.values():
        found.sort()
    lifted = []
    for hit in hits:
        chunk = hit.chunk
        best = 0.0
        if chunk.ordinal >= 0:
            found = places[chunk.source]
            low = bisect_left(found, (chunk.ordinal - window, -1.0))
            high = bisect_right(found, (chunk.ordinal + window, 2.0))
            best = max((scaled for ordinal, scaled in found[low:high] if ordinal != chunk.ordinal), default=0.0)
        lifted.append(Hit(chunk, hit.score + weight * best))
    return sorted(lifted, key=lambda hit: -hit.score)
