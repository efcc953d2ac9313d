"""Task words in the store's own form. A word the embedding model does not know as a word is split into many pieces
("exclusivity": ex ##cl ##us ##ivity), and their embedding misses the form the documents use for it ("exclusive",
one piece). Where the store mostly writes the word's stem in a form the model splits into fewer pieces, the task is
embedded with that form. BM25 and the focus count stems, so for them nothing changes; a word the store uses as the
task writes it, or does not use at all, is left alone."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from .lexical import STOP_WORDS, WORD, stem

MIN_PIECES = 3  # a word the model splits into this many pieces or more is one it does not know as a word


@dataclass(frozen=True)
class Forms:
    """How many of the store's chunks each word occurs in (lowercased), and per stem the word used in the most."""

    counts: Mapping[str, int]
    usual: Mapping[str, str]


def forms(counts: Mapping[str, int]) -> Forms:
    """The usual form of each stem among `counts` (ties: the shorter, then the first in alphabetical order)."""
    usual: dict[str, str] = {}
    for word in sorted(counts, key=lambda word: (-counts[word], len(word), word)):
        usual.setdefault(stem(word), word)
    return Forms(counts, usual)


def in_store_words(task: str, known: Forms, pieces: Callable[[str], int]) -> str:
    """`task` with each word the model splits into `MIN_PIECES` or more (by `pieces`) written in its stem's usual
    form in the store, where that form is in more chunks than the word itself and comes in fewer pieces."""
    parts: list[str] = []
    done = 0
    for match in WORD.finditer(task):
        written = match.group()
        word = written.lower()
        if word in STOP_WORDS:
            continue
        usual = known.usual.get(stem(word), word)
        if usual == word or known.counts.get(usual, 0) <= known.counts.get(word, 0):
            continue
        replacement = usual[:1].upper() + usual[1:] if written[:1].isupper() else usual
        count = pieces(written)
        if count < MIN_PIECES or pieces(replacement) >= count:
            continue
        parts += [task[done : match.start()], replacement]
        done = match.end()
    return "".join(parts) + task[done:] if parts else task
