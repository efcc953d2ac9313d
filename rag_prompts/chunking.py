"""Document -> Chunk: split by headings first, then blocks (paragraphs, list items, numbered clauses), then
sentences, then tokens.

Every chunk is a contiguous slice of the document text (`text == document.text[start:end]`) of at most
`max_tokens` tokens, counted with the same counter that enforces the prompt budget. Chunks never cross a block:
each records the block it belongs to (`Chunk.block`), so compose can send a whole paragraph or clause when the
task needs it, or only its matching sentences when it does not.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace

from .loaders import numbered_heading
from .records import Chunk, Document, Heading
from .tokens import TokenCounter

SECTION_SEPARATOR = " > "
_PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n\s*")
_SENTENCE_BREAK = re.compile(r"(?<=[.!?;:])\s+|\n")
_LINE_BREAK = re.compile(r"\n")
# A line that starts a list item or a numbered clause: "- x", "• x", "3. x", "2) x", "(b) x", "iv) x", "12.3 x",
# "Section 4.", "Article II". The number (or bullet) is the block's `clause`.
_CLAUSE_WORD = r"(?:Section|Article|Clause|SECTION|ARTICLE|CLAUSE)"
_ITEM = re.compile(
    r"[ \t]*(?P<clause>[-*•◦▪‣–]|\(?(?:\d{1,3}(?:\.\d{1,3})*|[a-zA-Z]|[ivxlcdmIVXLCDM]{1,6})[.)]"
    r"|\d{1,3}(?:\.\d{1,3})+|" + _CLAUSE_WORD + r"\s+[\dIVXLC]+(?:\.\d+)*)(?=\s+\S)"
)
_NUMBER = re.compile(r"(?:" + _CLAUSE_WORD + r"\s+)?(?P<number>\d{1,3}(?:\.\d{1,3})*)\b")
# A line that opens with a clause number and then a capital: "16.2 Applicable Law. …", "ARTICLE 8 - TERM" (not a
# cross-reference such as "Section 8 (Risk of Loss)")
_NUMBERED_LINE = re.compile(
    r"(?<=\n)[ \t]*(?P<clause>(?:" + _CLAUSE_WORD + r"[ \t]+)?\d{1,3}(?:\.\d{1,3})*\.?)"
    r"[ \t]+(?=[\"'A-Z])"
)
_BULLETS = frozenset("-*•◦▪‣–")  # the list markers `_ITEM` reads that are not numbers
NEARBY = 3  # how many chunks on each side a chunk lists as `nearby` (how far a passage can grow)
BLOCK_TOKENS = 128  # a longer block (paragraph or clause) is cut into pieces of about this size, at sentences
LEAD_CHARACTERS = 1_000  # a chunk records the whitespace before it (its `lead`) up to this length
MAX_BLOCK_CHUNKS = 12  # at most this many block mates listed in `nearby`

Span = tuple[int, int]


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def sections(document: Document) -> Iterator[tuple[str, int, int]]:
    """(heading path, body start, body end) for the text before the first heading and under each heading.

    A numbered heading ends where a paragraph numbered past it starts ("9.2 Licenses" ends at "9.3 Term. …" or
    "10. Notices"): contracts often set only some clause titles on a line of their own, and the clauses after
    them are not part of the last such heading."""
    stack: list[Heading] = []
    position = document.body_start
    for heading in sorted(document.headings, key=lambda item: item.start):
        if heading.start < position:
            continue
        yield from _scoped(document, stack, position, heading.start)
        while stack and stack[-1].level >= heading.level:
            stack.pop()
        stack.append(heading)
        position = heading.body_start
    yield from _scoped(document, stack, position, len(document.text))


def _path(document: Document, stack: list[Heading]) -> str:
    titles = [item.title for item in stack]
    if not titles or titles[0] != document.title:
        titles.insert(0, document.title)
    return SECTION_SEPARATOR.join(titles)


def _number(text: str) -> tuple[int, ...] | None:
    """The clause number a heading or paragraph opens with, trailing zeros dropped ("37.0" is 37), else None."""
    match = _NUMBER.match(text)
    if match is None:
        return None
    parts = [int(part) for part in match.group("number").split(".")]
    while len(parts) > 1 and parts[-1] == 0:
        parts.pop()
    return tuple(parts)


def _past(number: tuple[int, ...], heading: tuple[int, ...]) -> bool:
    """Whether a paragraph numbered `number` comes after the clause `heading` and is not part of it: a later
    dotted number ("9.3", "16.2" after "9.2"), or the next whole number ("10" after "9" or "9.2")."""
    inside = number[: len(heading)] == heading
    return number > heading and not inside and (len(number) > 1 or number[0] == heading[0] + 1)


def _opens_paragraph(text: str, line_start: int) -> bool:
    """Whether the line at `line_start` follows a blank line or a line that ends a sentence (a wrapped line that
    happens to start "10 Business Days" does not)."""
    previous = text[text.rfind("\n", 0, line_start - 1) + 1 : line_start - 1].rstrip()
    return not previous or previous.endswith((".", ":", ";"))


def _scoped(document: Document, stack: list[Heading], start: int, end: int) -> Iterator[tuple[str, int, int]]:
    """The body text[start:end] under `stack`, cut where a numbered paragraph ends numbered headings on it
    (they leave `stack`). A whole number that goes on a list ("1.", "2.", then "3.") ends nothing."""
    text = document.text
    numbers = [_number(heading.title) for heading in stack]
    if not any(numbers):  # nothing to end: no scan
        yield _path(document, stack), start, end
        return
    last: int | None = None  # the last whole number seen: "3." right after "2." goes on a numbered list
    for match in _NUMBERED_LINE.finditer(text, start, end):
        number = _number(match.group("clause"))
        if number is None or not _opens_paragraph(text, match.start()):
            continue
        listed = len(number) == 1 and last is not None and number[0] == last + 1
        last = number[0] if len(number) == 1 else last
        ended = next((i for i, own in enumerate(numbers) if own is not None and _past(number, own)), None)
        if listed or ended is None:
            continue
        cut = match.start("clause")
        if cut > start:
            yield _path(document, stack), start, cut
        del stack[ended:], numbers[ended:]
        start = cut
    yield _path(document, stack), start, end


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


def _hard_wrapped(lines: list[Span]) -> bool:
    """Whether the lines of a block are one paragraph wrapped at a fixed width (so a line break is not a break)."""
    lengths = [end - start for start, end in lines[:-1]]
    width = max(lengths, default=0)
    return (
        len(lengths) >= 2
        and 0 < width <= 100
        and sum(length >= 0.75 * width for length in lengths) >= 0.7 * len(lengths)
    )


def _continues(text: str, line: Span, following: Span) -> bool:
    """Whether a line break falls inside a sentence: the line ends without a stop and the next starts lowercase."""
    return text[line[1] - 1] not in ".!?:;" and text[following[0]].islower()


def _indented(text: str, line: Span, line_start: int) -> bool:
    return line[0] > line_start and text[line_start] in " \t"


def blocks(text: str, start: int, end: int) -> list[Span]:
    """The paragraphs, list items and numbered clauses of text[start:end], in order.

    Blank lines always end a block. Inside a blank-line block, a line that starts a list item or a numbered clause
    starts a new block. Other lines start one when the text marks paragraphs by indenting their first line (some
    lines indented, most not); lines wrapped at a fixed width continue their paragraph; otherwise (plain text with
    one paragraph per line) a line starts a block unless the break falls mid-sentence."""
    found: list[Span] = []
    for block_start, block_end in _pieces(text, start, end, _PARAGRAPH_BREAK):
        lines = _pieces(text, block_start, block_end, _LINE_BREAK)
        if len(lines) == 1:
            found.extend(lines)
            continue
        # where each line really starts (before its indentation): just after the previous line break
        line_starts = [text.rfind("\n", block_start, line[0]) + 1 or line[0] for line in lines]
        line_starts = [max(begin, block_start) for begin in line_starts]
        indented = [_indented(text, line, begin) for line, begin in zip(lines, line_starts, strict=True)]
        first_line_indents = 2 <= sum(indented[1:]) <= 0.6 * (len(lines) - 1)
        wrapped = not first_line_indents and _hard_wrapped(lines)
        current = lines[0]
        for previous, line, starts_paragraph in zip(lines, lines[1:], indented[1:], strict=False):
            if first_line_indents:
                new = starts_paragraph
            elif wrapped:
                new = False
            else:
                new = not _continues(text, previous, line)
            if new or _ITEM.match(text, line[0], line[1]):
                found.append(current)
                current = line
            else:
                current = (current[0], line[1])
        found.append(current)
    return found


def _starts_line(text: str, start: int, floor: int) -> bool:
    """Whether a line break stands in the whitespace just before `start` (not looking back past `floor`)."""
    position = start
    while position > floor and text[position - 1].isspace():
        if text[position - 1] == "\n":
            return True
        position -= 1
    return False


def clause_of(text: str) -> str:
    """The list marker or clause number a block starts with ("12.3", "(b)", "Section 4", "-"), else ""."""
    match = _ITEM.match(text)
    return match.group("clause") if match else ""


def numbered_clause(text: str) -> bool:
    """Whether a block is a numbered clause, read as one unit: its running text opens with a clause number or
    letter ("7. DISCLOSURES REQUIRED BY LAW. If Recipient …", "(c) If any of the Shares …"), not a bullet. A
    numbered heading line over a body ("2.1 Registration Information", the body on the next line) titles a
    section; the body is prose like any other."""
    marker = clause_of(text)
    if not marker or marker in _BULLETS:
        return False
    first, _, rest = text.strip().partition("\n")
    return not (rest.strip() and numbered_heading(first))


def chunk_document(
    document: Document, counter: TokenCounter, max_tokens: int, doc_hash: str, block_tokens: int = BLOCK_TOKENS
) -> list[Chunk]:
    """Token-bounded chunks of one document, in reading order.

    A chunk's id names this version of it: it is derived from the source, the document hash (its bytes and the
    chunking settings) and the chunk's content, so a stored record never changes under its id and readers may
    cache it.

    `max_tokens` must be at least 4: one character can take up to 4 byte-level tokens and is never split.
    """
    return with_nearby(list(iter_chunks(document, counter, max_tokens, doc_hash, block_tokens)))


def _block_pieces(document: Document, counter: TokenCounter, size: int) -> Iterator[tuple[str, Span, bool, bool]]:
    """Every block of the document cut into pieces of at most `size` tokens: (section, piece, whether it opens
    its block, whether its block is a numbered clause cut into more than one piece)."""
    for section, body_start, body_end in sections(document):
        for block_start, block_end in blocks(document.text, body_start, body_end):
            parts = split_span(document.text, block_start, block_end, counter, size)
            cut_clause = len(parts) > 1 and numbered_clause(document.text[block_start:block_end])
            for index, part in enumerate(parts):
                yield section, part, index == 0, cut_clause


def iter_chunks(
    document: Document,
    counter: TokenCounter,
    max_tokens: int,
    doc_hash: str,
    block_tokens: int = BLOCK_TOKENS,
    *,
    repeats: bool = True,
) -> Iterator[Chunk]:
    """The chunks of `chunk_document` one at a time, without their `nearby` lists, so a large document is never
    held as a whole chunk list. With `repeats=False` a repeated passage (same section and text) is skipped after
    its first place, and ordinals count only what is yielded: ingest stores a repeat once, because hundreds of
    identical vectors crowd Chroma's index until other documents' chunks cannot be reached (one boilerplate-heavy
    document of 1,403 chunks hid three small documents), and a repeat adds nothing a reader needs."""
    seen: Counter[str] = Counter()
    first: set[bytes] = set()  # repeats=False: the digests of the passages yielded so far
    ordinal = 0
    previous_end: int | None = None  # where the last yielded chunk ends
    clause_block = -1
    for block, (section, (piece_start, piece_end), opens, in_clause) in enumerate(
        _block_pieces(document, counter, max(block_tokens, max_tokens))
    ):
        clause = clause_of(document.text[piece_start:piece_end])
        clause_block = -1 if not in_clause else block if opens else clause_block
        for start, end in split_span(document.text, piece_start, piece_end, counter, max_tokens):
            text = document.text[start:end]
            content_hash = sha256(f"{section}\n\n{text}")
            if repeats:
                seen[content_hash] += 1  # identical passages in one document get distinct ids
                nth = seen[content_hash]
            else:
                digest = bytes.fromhex(content_hash)
                if digest in first:
                    continue
                first.add(digest)
                nth = 1
            chunk_id = sha256(f"{document.source}\x00{doc_hash}\x00{content_hash}\x00{nth}")[:32]
            lead = "" if previous_end is None else document.text[previous_end:start]
            yield Chunk(
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
                ordinal=ordinal,
                block=block,
                clause=clause,
                clause_block=clause_block,
                new_line=_starts_line(document.text, start, piece_start),
                lead=lead if len(lead) <= LEAD_CHARACTERS and not lead.strip() else "",
            )
            ordinal += 1
            previous_end = end


def with_nearby(chunks: list[Chunk]) -> list[Chunk]:
    """`chunks` (one document, in order) numbered by position, each listing the chunks it may grow into."""
    numbered = [replace(chunk, ordinal=index) for index, chunk in enumerate(chunks)]
    return [replace(chunk, nearby=_nearby(numbered, index)) for index, chunk in enumerate(numbered)]


def _nearby(chunks: list[Chunk], index: int) -> tuple[str, ...]:
    """Ids of the chunks a passage may grow into: its block mates, then up to NEARBY on each side."""
    block = chunks[index].block
    low = high = index
    while low > 0 and chunks[low - 1].block == block and index - low < MAX_BLOCK_CHUNKS:
        low -= 1
    while high + 1 < len(chunks) and chunks[high + 1].block == block and high - index < MAX_BLOCK_CHUNKS:
        high += 1
    mates = list(range(max(0, min(low, index - NEARBY)), min(len(chunks), max(high, index + NEARBY) + 1)))
    return tuple(chunks[position].id for position in mates if position != index)
