"""Query focus. A task is phrased in words its store shares widely ("this Agreement", "personal information",
"privacy policy") around the few that say what it is about ("exclusivity", "third-party advertisers"), and the
embedding of the whole task leans towards the common part. The focus pools the task's own token embeddings (the
model's last layer, from the one forward pass that embeds the task) over the tokens of its words that are rare in
the store: one pooled vector per rung of a ladder of shares (words in under 10%, 5%, 2.5% and 1.25% of the store's
chunks), so the rarer a word, the more of them it is in: a smooth, idf-like weight with no cliff at one share. The
search vector leans towards their mean by the focus weight. It costs no model call.

The shares are exact enough and follow every commit: each document record keeps its term counts (the chunks each
stemmed term occurs in), leaving out terms in under `FLOOR` of its chunks, which moves a store share by at most
`FLOOR`, well under the smallest rung."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import orjson

from .centring import centred
from .lexical import STOP_WORDS, WORD, content_words, stem
from .records import Chunk

RUNGS = (0.1, 0.05, 0.025, 0.0125)  # store shares below which a task word is pooled into the focus
FLOOR = 0.005  # a term in fewer than this share of a document's chunks is left out of its record


class TermCounts:
    """How many of one document's chunks each stemmed term, and each word as written (lowercased), occurs in, as its
    chunks are written. The words tell which form of a stem the document uses (see `wording`)."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.words: Counter[str] = Counter()
        self.chunks = 0

    def add(self, chunks: Iterable[Chunk]) -> None:
        for chunk in chunks:
            words = set(content_words(f"{chunk.section} {chunk.text}"))
            self.words.update(words)
            self.counts.update({stem(word) for word in words})
            self.chunks += 1

    def text(self) -> str:
        """The term counts a record keeps (JSON): terms in at least `FLOOR` of the chunks, or in any of a small
        document."""
        return self._kept(self.counts)

    def words_text(self) -> str:
        """The word counts a record keeps (JSON), cut at the same floor."""
        return self._kept(self.words)

    def _kept(self, counts: Counter[str]) -> str:
        least = max(1, math.floor(FLOOR * self.chunks))
        kept = {term: count for term, count in sorted(counts.items()) if count >= least}
        return orjson.dumps(kept).decode("utf-8")


def read_counts(text: str) -> dict[str, int]:
    return {str(term): int(count) for term, count in orjson.loads(text).items()} if text else {}


def focus_spans(task: str, shares: Mapping[str, float]) -> list[list[tuple[int, int]]]:
    """Per rung, the character spans of the task's words (not stop words) whose stem is in under that share of the
    store's chunks; an empty rung is left out, so a task of common words only has no focus."""
    words = [(match.span(), match.group().lower()) for match in WORD.finditer(task)]
    rungs = []
    for rung in RUNGS:
        kept = [span for span, word in words if word not in STOP_WORDS and shares.get(stem(word), 0.0) < rung]
        if kept:
            rungs.append(kept)
    return rungs


def focus_parts(
    task: str, tokens: np.ndarray, offsets: Sequence[tuple[int, int]], shares: Mapping[str, float]
) -> list[np.ndarray]:
    """Per rung (see `focus_spans`), the unit mean of the task's token embeddings `tokens` whose character span
    (`offsets`, one per token; special tokens have an empty one) overlaps a kept word."""
    parts = []
    for spans in focus_spans(task, shares):
        rows = [i for i, (a, b) in enumerate(offsets) if b > a and any(a < end and b > start for start, end in spans)]
        if rows:
            pooled = np.asarray(tokens[rows], dtype=np.float64).mean(axis=0)
            norm = float(np.linalg.norm(pooled))
            if norm > 1e-9:
                parts.append(pooled / norm)
    return parts


def focused(
    vector: np.ndarray, parts: Sequence[np.ndarray], mean: np.ndarray | None, centring: float, weight: float
) -> np.ndarray:
    """The search vector (`vector`, already centred) leaning by `weight` towards the mean of the pooled focus
    vectors `parts`, each centred like the task; of unit length."""
    if not len(parts) or weight == 0:
        return vector
    focus = np.mean([centred(part, mean, centring) for part in parts], axis=0)
    norm = float(np.linalg.norm(focus))
    if norm < 1e-9:
        return vector
    leaning: np.ndarray = np.asarray(vector, dtype=np.float64) + weight * focus / norm
    return (leaning / float(np.linalg.norm(leaning))).astype(np.float32)
