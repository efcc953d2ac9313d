"""Document -> Chunk: split by headings first, then paragraphs, then sentences, then tokens.

Every chunk is a contiguous slice of the document text (`text == document.text[start:end]`) of at most
`max_tokens` tokens, counted with the same counter that enforces the prompt budget.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace

from .records import Chunk, Document, Heading
from .tokens import TokenCounter

SECTION_SEPARATOR = " > "
_PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n\s*")
_SENTENCE_BREAK = re.compile(r"(?<=[.!?;:])\s+|\n")
NEARBY = 3  # how many chunks on each side a chunk lists as `nearby` (how far a passage can grow)

Span = tuple[int, int]


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def sections(document: Document) -> Iterator[tuple[str, int, int]]:
    """(heading path, body start, body end) for the text before the first heading and under each heading."""
    stack: list[Heading] = []
    position = document.body_start
    path = document.title
    for heading in sorted(document.headings, key=lambda item: item.start):
        if heading.start < position:
            continue
        yield path, position, heading.start
        while stack and stack[-1].level >= heading.level:
            stack.pop()
        stack.append(heading)
        titles = [item.title for item in stack]
        if titles[0] != document.title:
            titles.insert(0, document.title)
        path = SECTION_SEPARATOR.join(titles)
        position = heading.body_start
    yield path, position, len(document.text)


def _strip(text: str, start: int, end: int) -> Span:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def _pieces(text: str, start: int, end: int, pattern: re.Pattern[str]) -> list[Span]:
    spans, position = [], start
    for match in pattern.finditer(text, start, end):
        spans.append(_strip(text, position, match.start()))
        position = match.end()
    spans.append(_strip(text, position, end))
    return [span for span in spans if span[0] < span[1]]


def _hard_split(text: str, start: int, end: int, counter: TokenCounter, max_tokens: int) -> list[Span]:
    """Cut an over-long run of text into prefixes that fit, preferring to cut at whitespace."""
    spans = []
    while start < end:
        piece = counter.truncate(text[start:end], max_tokens)
        cut = start + max(len(piece), 1)
        if cut < end:
            space = text.rfind(" ", start + len(piece) // 2, cut)
            cut = space if space > start else cut
        spans.append(_strip(text, start, cut))
        start = cut
        while start < end and text[start].isspace():
            start += 1
    return [span for span in spans if span[0] < span[1]]


def split_span(text: str, start: int, end: int, counter: TokenCounter, max_tokens: int) -> list[Span]:
    """Spans covering text[start:end] (trimmed), each within max_tokens, packed greedily at the largest unit."""
    start, end = _strip(text, start, end)
    if start >= end:
        return []
    if counter.count(text[start:end]) <= max_tokens:
        return [(start, end)]
    for pattern in (_PARAGRAPH_BREAK, _SENTENCE_BREAK):
        units = _pieces(text, start, end, pattern)
        if len(units) > 1:
            break
    else:
        return _hard_split(text, start, end, counter, max_tokens)
    spans: list[Span] = []
    for unit_start, unit_end in units:
        if spans and counter.count(text[spans[-1][0] : unit_end]) <= max_tokens:
            spans[-1] = (spans[-1][0], unit_end)
        else:
            spans.extend(split_span(text, unit_start, unit_end, counter, max_tokens))
    return spans


def chunk_document(document: Document, counter: TokenCounter, max_tokens: int, doc_hash: str) -> list[Chunk]:
    """Token-bounded chunks of one document, in reading order.

    A chunk's id names this version of it: it is derived from the source, the document hash (its bytes and the
    chunking settings) and the chunk's content, so a stored record never changes under its id and readers may
    cache it.

    `max_tokens` must be at least 4: one character can take up to 4 byte-level tokens and is never split.
    """
    chunks: list[Chunk] = []
    seen: Counter[str] = Counter()
    for section, body_start, body_end in sections(document):
        for start, end in split_span(document.text, body_start, body_end, counter, max_tokens):
            text = document.text[start:end]
            content_hash = sha256(f"{section}\n\n{text}")
            seen[content_hash] += 1  # identical passages in one document get distinct ids
            chunk_id = sha256(f"{document.source}\x00{doc_hash}\x00{content_hash}\x00{seen[content_hash]}")[:32]
            chunks.append(
                Chunk(
                    id=chunk_id,
                    source=document.source,
                    root=document.root,
                    title=document.title,
                    section=section,
                    start=start,
                    end=end,
                    text=text,
                    tokens=counter.count(text),
                    content_hash=content_hash,
                    doc_hash=doc_hash,
                    tags=document.tags,
                    ordinal=len(chunks),
                )
            )
    ids = [chunk.id for chunk in chunks]
    return [
        replace(chunk, nearby=tuple(ids[max(0, index - NEARBY) : index] + ids[index + 1 : index + NEARBY + 1]))
        for index, chunk in enumerate(chunks)
    ]
