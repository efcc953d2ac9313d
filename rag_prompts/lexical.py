"""Lexical rerank: BM25 over the dense candidates, so the task's own words ("governing law", "audit") lift the
chunks that use them, in any inflection (words are stemmed: "compete", "competing"). Term statistics come from the
candidate pool itself: no second index lives beside the store, and every process scores the same store the same way.
(bm25s and rank-bm25 build an index object per call, which costs more than the scoring here: about 30 ms for 200
chunks against about 2 ms.)"""

from __future__ import annotations

import math
import re
import threading
from collections import Counter
from collections.abc import Sequence
from functools import lru_cache

import Stemmer  # PyStemmer: the Snowball project's own stemmers, in C

from .records import Hit

POOL = 120  # dense candidates the lexical score reorders: terms can lift a chunk from below the top few dozen
K1, B = 1.2, 0.75  # BM25's usual term-frequency saturation and length normalisation

WORD = re.compile(r"\b\w\w+\b")
_STOP_TEXT = """about above after again against all also am an and any are as at be because been before being below
between both but by can could did do does doing down during each either else few for from further had has
have having he her here hers herself him himself his how if in into is it its itself just may me might more
most must my myself no nor not now of off on once only or other others our ours ourselves out over own per
same shall she should so some such than that the their theirs them themselves then there these they this
those through to too under until up upon us very was we were what when where whether which while who whom
whose why will with within without would yet you your yours yourself yourselves"""
STOP_WORDS = frozenset(_STOP_TEXT.split())


_LOCAL = threading.local()  # a PyStemmer stemmer is not safe to share between threads


@lru_cache(maxsize=100_000)
def stem(word: str) -> str:
    """The Snowball (Porter2) English stem of a lowercase word: "competing" and "compete" both give "compet"."""
    stemmer = getattr(_LOCAL, "stemmer", None)
    if stemmer is None:
        stemmer = _LOCAL.stemmer = Stemmer.Stemmer("english")
    return str(stemmer.stemWord(word))


def content_words(text: str) -> list[str]:
    """The words of `text` lowercased, two letters or more, common function words left out."""
    return [word for word in WORD.findall(text.lower()) if word not in STOP_WORDS]


def terms(text: str) -> list[str]:
    """The words BM25 counts, stemmed (see `content_words`)."""
    return [stem(word) for word in content_words(text)]


@lru_cache(maxsize=8192)
def _counts(text: str) -> Counter[str]:
    """The term counts of one text (cached, never changed: the same chunks come back task after task)."""
    return Counter(terms(text))


def bm25(query: str, texts: Sequence[str]) -> list[float]:
    """BM25 score of each of `texts` for `query`, with document frequencies taken over `texts`."""
    documents = [_counts(text) for text in texts]
    if not documents:
        return []
    wanted = set(terms(query))
    lengths = [sum(document.values()) for document in documents]
    average = max(sum(lengths) / len(lengths), 1e-9)
    count = len(documents)
    idf = {}
    for word in wanted:
        frequency = sum(1 for document in documents if word in document)
        idf[word] = math.log(1 + (count - frequency + 0.5) / (frequency + 0.5))
    scores = []
    for document, length in zip(documents, lengths, strict=True):
        score = 0.0
        for word in wanted & document.keys():
            tf = document[word]
            score += idf[word] * tf * (K1 + 1) / (tf + K1 * (1 - B + B * length / average))
        scores.append(score)
    return scores


def rerank(query: str, hits: Sequence[Hit], weight: float) -> list[Hit]:
    """`hits` best first by dense score + `weight` x BM25 score (scaled so the pool's best is 1)."""
    scores = bm25(query, [f"{hit.chunk.section} {hit.chunk.text}" for hit in hits])
    best = max(scores, default=0.0)
    if best <= 0 or weight == 0:
        return list(hits)
    lifted = [Hit(hit.chunk, hit.score + weight * score / best) for hit, score in zip(hits, scores, strict=True)]
    return sorted(lifted, key=lambda hit: -hit.score)
