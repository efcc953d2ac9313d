"""Region evidence: a candidate that has another strong candidate a few chunks away in the same document is likely
inside the clause or paragraph the task is about, so it is lifted a little above an isolated match of equal score.
The same holds at the scale of a whole document: a task is usually about one policy or agreement, so a candidate
whose document holds the best matches outranks an equal one from a document that matches only weakly. Like the
lexical rerank it works on the dense pool alone: scores are put on the pool's own 0..1 scale (its worst candidate 0,
its best 1); a candidate gains weight x the best other candidate within `WINDOW` chunks, plus document weight x the
best candidate of its document."""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Sequence

from .records import Hit

WINDOW = 5  # chunks either side (about 200 tokens at the default chunk size)


def lift(hits: Sequence[Hit], weight: float, document_weight: float = 0.0, window: int = WINDOW) -> list[Hit]:
    """`hits` best first after adding `weight` x the pool-scaled score of the best other candidate of the same
    document within `window` chunks, and `document_weight` x the pool-scaled score of its document's best candidate
    (itself included). Chunks without a place in a document (ordinal < 0) gain nothing from either."""
    if (weight == 0 and document_weight == 0) or len(hits) < 2:
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
    documents = {source: max(scaled for _, scaled in found) for source, found in places.items()}
    lifted = []
    for hit in hits:
        chunk = hit.chunk
        gain = 0.0
        if chunk.ordinal >= 0:
            found = places[chunk.source]
            low = bisect_left(found, (chunk.ordinal - window, -1.0))
            high = bisect_right(found, (chunk.ordinal + window, 2.0))
            near = max((scaled for ordinal, scaled in found[low:high] if ordinal != chunk.ordinal), default=0.0)
            gain = weight * near + document_weight * documents[chunk.source]
        lifted.append(Hit(chunk, hit.score + gain))
    return sorted(lifted, key=lambda hit: -hit.score)
