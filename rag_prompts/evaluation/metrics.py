"""Character-overlap retrieval metrics (as in LegalBench-RAG), on spans of document text.

For one query, G is the set of gold characters and I the set of document characters the composed message carries:
recall = |G ∩ I| / |G|, precision = |G ∩ I| / |I|, hit = 1 if |G ∩ I| > 0. Spans are (doc_id, start, end) with
`end` exclusive; overlapping spans count each character once.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

Span = tuple[str, int, int]


def merge_spans(spans: Iterable[Span]) -> dict[str, list[tuple[int, int]]]:
    """Per document, the sorted, disjoint intervals covering `spans` (empty spans are dropped)."""
    by_doc: dict[str, list[tuple[int, int]]] = {}
    for doc_id, start, end in spans:
        if end > start:
            by_doc.setdefault(doc_id, []).append((start, end))
    merged: dict[str, list[tuple[int, int]]] = {}
    for doc_id, intervals in by_doc.items():
        intervals.sort()
        out = [intervals[0]]
        for start, end in intervals[1:]:
            if start <= out[-1][1]:
                out[-1] = (out[-1][0], max(out[-1][1], end))
            else:
                out.append((start, end))
        merged[doc_id] = out
    return merged


def covered(intervals: dict[str, list[tuple[int, int]]]) -> int:
    return sum(end - start for spans in intervals.values() for start, end in spans)


def overlap(a: dict[str, list[tuple[int, int]]], b: dict[str, list[tuple[int, int]]]) -> int:
    """Characters in both interval sets."""
    total = 0
    for doc_id, left in a.items():
        right = b.get(doc_id, [])
        i = j = 0
        while i < len(left) and j < len(right):
            start, end = max(left[i][0], right[j][0]), min(left[i][1], right[j][1])
            total += max(0, end - start)
            if left[i][1] < right[j][1]:
                i += 1
            else:
                j += 1
    return total


@dataclass(frozen=True)
class QueryScore:
    recall: float
    precision: float
    hit: float


def score_query(gold: Iterable[Span], injected: Iterable[Span]) -> QueryScore:
    """Recall, precision and hit of the injected spans against the gold spans of one query.

    With no gold characters recall is 0; with nothing injected precision is 0."""
    gold_intervals, injected_intervals = merge_spans(gold), merge_spans(injected)
    common = overlap(gold_intervals, injected_intervals)
    gold_size, injected_size = covered(gold_intervals), covered(injected_intervals)
    return QueryScore(
        recall=common / gold_size if gold_size else 0.0,
        precision=common / injected_size if injected_size else 0.0,
        hit=1.0 if common > 0 else 0.0,
    )
