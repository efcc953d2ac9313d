"""Base message + ranked chunks packed under a hard token budget.

The budget covers the whole message (base, header, labels, separators). Each ranked chunk starts a passage; at each
step the packing either starts the next passage or grows a placed one into the chunk beside it, whichever is worth
more (see `Growth`): a paragraph or clause whose sentences all match arrives whole, while scattered matches still get
their place; a growing passage fetches the chunks beyond the ones it was fetched with as it reaches them. Each
piece's cost is an upper bound, so the message is then counted as a whole and the packing goes on into the tokens
left; it is trimmed from the last chunk placed should the whole ever exceed the budget, so `tokens <= budget`
always holds.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from .errors import BudgetError
from .fence import attribute as _attribute
from .fence import neutralise as neutralise  # re-exported: the eval checks spans with it
from .records import Chunk, ComposedPrompt, DroppedChunk, Hit, IncludedChunk
from .templates import packaged_prompt
from .tokens import TokenCounter

BLOCK_SEPARATOR = "\n\n"
GAP = "\n[…]\n"  # between non-adjacent chunks of one document


@dataclass(frozen=True)
class Growth:
    """What a chunk next to a placed passage is worth against the next passage's score: inside the passage's block
    (the paragraph or clause it is part of) its own score, so the block grows while its sentences match as well as
    the next passage does; beyond the block less, so other chunks wait until the k passages are placed. The rest of
    a sentence that a chunk boundary cut, and the rest of a long numbered clause cut into pieces (`Chunk.clause_block`),
    is worth at least `continuation` x what its placed part was worth: half a clause ("X grants Y the exclusive
    right" without "to sell in the Territory") answers little."""

    in_block: float = 0.0
    beyond: float = -1.0
    continuation: float = 0.9


_SENTENCE_END = re.compile(r"[.!?;:][\"'\u201d\u2019)\]]*\s*$")  # the chunker's sentence ends, quotes allowed


def _cut(first: Chunk, second: Chunk) -> bool:
    """Whether adjacent block mates `first` and `second` (in document order) split one sentence."""
    return not second.new_line and not _SENTENCE_END.search(first.text)


def _joined(first: Chunk, second: Chunk) -> bool:
    """Whether `second` follows `first` in one section with only its recorded whitespace between them: the
    message then carries that whitespace too, and the two read as the document's own text."""
    return (
        first.ordinal >= 0
        and second.ordinal == first.ordinal + 1
        and second.source == first.source
        and second.section == first.section
        and bool(second.lead)
        and first.end + len(second.lead) == second.start
    )


RECLAIM_ROUNDS = 1  # more passes that pack into the tokens the costs' upper bound overstated (a second adds ~.001)
LOOKAHEAD = 8  # passages whose block mates are fetched in one lookup

Neighbours = Callable[[Sequence[Hit]], Sequence[Hit]]


def section_label(chunk: Chunk) -> str:
    """The chunk's heading path without the document title (the source already names the document)."""
    parts = chunk.section.split(" > ")
    if parts and parts[0] == chunk.title:
        parts = parts[1:]
    return " > ".join(parts)


def compose_message(
    base_message: str,
    hits: Sequence[Hit],
    *,
    k: int,
    budget: int,
    counter: TokenCounter,
    header: str | None = None,
    block_template: str | None = None,
    merge: bool = True,
    neighbours: Neighbours | None = None,
    growth: Growth = Growth(),
    pinned: Sequence[Hit] = (),
) -> ComposedPrompt:
    """Pack passages from up to `k` of `hits` (best first) after `base_message` within `budget` tokens.

    With `merge`, the chunks of one document share one fenced block (its source named once): in document order,
    a short section label where the section changes, adjacent chunks of one section joined by the document's own
    whitespace between them (a space or a line break when a store did not record it) and gaps marked with `[…]`.
    Without it, every chunk gets its own block.

    `neighbours`, when given, is called with upcoming passages and returns scored chunks near them (their block
    mates and the chunks on either side): passages take their whole block, then grow while budget is left.

    `pinned` chunks are placed first, in blocks of their own ahead of the retrieved ones; a retrieved duplicate is
    not sent again. Pins that do not fit with the base message raise BudgetError."""
    header = packaged_prompt("header") if header is None else header
    template = packaged_prompt("chunk") if block_template is None else block_template
    base = base_message.strip()
    used = counter.count(base)
    if used > budget:
        raise BudgetError(
            f"the base message alone is {used} tokens, over the budget of {budget};"
            " shorten `base_message` or raise `budget`"
        )
    header_part = BLOCK_SEPARATOR + header.strip()
    layout = _Layout(counter, template, merge, frozenset(hit.chunk.id for hit in pinned))
    packing = _Packing(budget, used, layout, counter.count(header_part), growth=growth)
    if pinned and not packing.place(list(pinned), "pinned"):
        raise BudgetError(f"pinned sections need {packing.cost(list(pinned))} tokens; {packing.room()} are left")
    pool = _Pool(hits, neighbours)
    packing.pool = pool if neighbours is not None else None
    _pack(packing, pool, list(hits), k)
    message, tokens = _assemble(base, header_part, _in_order(packing), layout, counter)
    for _ in range(RECLAIM_ROUNDS):  # the parts' costs are an upper bound: pack into what the whole leaves
        if budget - tokens <= packing.room():
            break
        packing.used = tokens
        packing.reopen()
        _pack(packing, pool, list(hits), k)
        message, tokens = _assemble(base, header_part, _in_order(packing), layout, counter)
    included = _in_order(packing)  # placement order: trim the last placed first
    dropped = list({item.id: item for item in packing.dropped if item.id not in packing.taken}.values())
    while tokens > budget and included:  # the whole differs from the sum of its parts: trim, recount
        hit, cost, _, _ = included.pop()
        dropped.append(_dropped(hit, cost, "trimmed: the whole message exceeded the budget"))
        message, tokens = _assemble(base, header_part, included, layout, counter)
    leading = _joined_ids(included, layout)
    return ComposedPrompt(
        system_message=message,
        tokens=tokens,
        budget=budget,
        encoding=counter.encoding_name,
        chunks=tuple(
            _included(hit, cost, context, layout.pinned, hit.chunk.id in leading) for hit, cost, _, context in included
        ),
        dropped=tuple(dropped),
        base_message=base,
        header=header,
        block_template=template,
        merge=merge,
    )


def _in_order(packing: _Packing) -> list[tuple[Hit, int, int, bool]]:
    return sorted(packing.included, key=lambda item: item[2])


def _pack(packing: _Packing, pool: _Pool, hits: list[Hit], k: int) -> None:
    """One greedy pass: start the next passage from `hits`, or grow a placed one, whichever is worth more."""
    position = 0
    while packing.room() > 0:
        while position < len(hits) and hits[position].chunk.id in packing.taken:
            position += 1
        upcoming = hits[position] if position < len(hits) else None
        if upcoming is not None and packing.passages >= k:
            packing.dropped.append(_dropped(upcoming, 0, f"k={k} passages already included"))
            position += 1
            continue
        grow = packing.best_frontier()
        if grow is not None and (upcoming is None or grow[0] >= upcoming.score):
            if pool.at_edge(grow[1]):  # fetch what it can grow into next, and what the rest of the frontier can
                pool.prefetch([hit for hit in (grow[1], *(item for _, item in packing.frontier.values()))
                               if pool.at_edge(hit)])  # fmt: skip
            packing.place([grow[1]], "context not added")
            continue
        if upcoming is None:
            break
        position += 1
        pool.prefetch(hits[position - 1 : position - 1 + LOOKAHEAD])
        if packing.place([upcoming], "does not fit", anchor=upcoming):
            packing.passages += 1
    for hit in hits[position:]:
        if hit.chunk.id not in packing.taken:
            packing.dropped.append(_dropped(hit, 0, "does not fit: the budget is full"))


class _Pool:
    """Every scored chunk known so far, by place, fetched from `neighbours` a few passages at a time."""

    def __init__(self, hits: Sequence[Hit], neighbours: Neighbours | None) -> None:
        self.neighbours = neighbours
        self.by_place: dict[tuple[str, int], Hit] = {}
        self.asked: set[str] = set()
        self._add(hits)

    def _add(self, hits: Iterable[Hit]) -> None:
        for hit in hits:
            if hit.chunk.ordinal >= 0:
                self.by_place.setdefault((hit.chunk.source, hit.chunk.ordinal), hit)

    def prefetch(self, upcoming: Sequence[Hit]) -> None:
        wanted = [hit for hit in upcoming if hit.chunk.id not in self.asked]
        if wanted and self.neighbours is not None:
            self.asked.update(hit.chunk.id for hit in wanted)
            self._add(self.neighbours(wanted))

    def at_edge(self, hit: Hit) -> bool:
        """Whether a chunk beside `hit` is unknown and could still be fetched."""
        chunk = hit.chunk
        return hit.chunk.id not in self.asked and any(
            (chunk.source, ordinal) not in self.by_place for ordinal in (chunk.ordinal - 1, chunk.ordinal + 1)
        )

    def beside(self, chunk: Chunk) -> list[Hit]:
        """The known chunks just before and after `chunk` in the same section."""
        found = []
        for ordinal in (chunk.ordinal - 1, chunk.ordinal + 1):
            other = self.by_place.get((chunk.source, ordinal))
            if other is not None and other.chunk.section == chunk.section:
                found.append(other)
        return found


@dataclass(frozen=True)
class _Layout:
    """How chunks are rendered; what each piece costs."""

    counter: TokenCounter
    template: str
    merge: bool
    pinned: frozenset[str] = frozenset()  # ids of pinned chunks: rendered in blocks of their own, first

    def frame_cost(self, hit: Hit) -> int:
        return self.counter.count(BLOCK_SEPARATOR + self.template.format(source=_attribute(hit.chunk.source), text=""))

    def label(self, chunk: Chunk) -> str:
        label = section_label(chunk)
        return f"§ {_attribute(label)}\n" if label else ""


@dataclass
class _Packing:
    """Chunks placed so far, the tokens they use (an upper bound), what was left out, and where passages can grow."""

    budget: int
    used: int
    layout: _Layout
    header_cost: int
    included: list[tuple[Hit, int, int, bool]] = field(default_factory=list)  # hit, cost, order, context
    dropped: list[DroppedChunk] = field(default_factory=list)
    taken: set[str] = field(default_factory=set)
    places: set[tuple[str, int]] = field(default_factory=set)
    documents: set[str] = field(default_factory=set)
    sections: set[tuple[str, str]] = field(default_factory=set)
    growth: Growth | None = None
    frontier: dict[str, tuple[float, Hit]] = field(default_factory=dict)
    worth: dict[str, float] = field(default_factory=dict)  # what each placed chunk was worth when it was placed
    pool: _Pool | None = None
    passages: int = 0

    def room(self) -> int:
        return self.budget - self.used

    def best_frontier(self) -> tuple[float, Hit] | None:
        return max(self.frontier.values(), key=lambda item: item[0]) if self.frontier else None

    def cost(self, hits: Sequence[Hit]) -> int:
        """Tokens that placing `hits` (one document, in order) adds to the message: an upper bound."""
        total = 0 if self.included or not hits else self.header_cost
        documents, sections, places = set(self.documents), set(self.sections), set(self.places)
        counter = self.layout.counter
        for hit in hits:
            chunk = hit.chunk
            if not self.layout.merge:
                total += self.layout.frame_cost(hit) + counter.count(neutralise(chunk.text))
                continue
            if chunk.source not in documents:
                total += self.layout.frame_cost(hit)
                documents.add(chunk.source)
            if (chunk.source, chunk.section) not in sections:
                total += counter.count(self.layout.label(chunk))
                sections.add((chunk.source, chunk.section))
            adjacent = (chunk.source, chunk.ordinal - 1) in places or (chunk.source, chunk.ordinal + 1) in places
            joint = chunk.lead if (chunk.source, chunk.ordinal - 1) in places and chunk.lead else "\n"
            total += counter.count((joint if adjacent else GAP) + neutralise(chunk.text))
            places.add((chunk.source, chunk.ordinal))
        return total

    def place(self, hits: Sequence[Hit], refusal: str, anchor: Hit | None = None) -> bool:
        """Place `hits` (one document, in order) if they fit; otherwise record `anchor` (or the first) as dropped.
        Every placed chunk but `anchor` is context: it came with a passage, not from the ranking."""
        worth = {hit.chunk.id: self.frontier.pop(hit.chunk.id, (hit.score, hit))[0] for hit in hits}
        cost = self.cost(hits)
        if self.used + cost > self.budget:
            left_out = anchor or hits[0]
            self.dropped.append(_dropped(left_out, cost, f"{refusal}: needs {cost} tokens, {self.room()} left"))
            return False
        share = cost // len(hits)
        for hit in hits:
            chunk = hit.chunk
            self.included.append((hit, share, len(self.included), hit is not anchor))
            self.taken.add(chunk.id)
            self.places.add((chunk.source, chunk.ordinal))
            self.documents.add(chunk.source)
            self.sections.add((chunk.source, chunk.section))
        self.worth.update(worth)
        self.used += cost
        if self.pool is not None and self.growth is not None:
            for hit in hits:
                for other in self.pool.beside(hit.chunk):
                    if other.chunk.id not in self.taken:
                        self._offer(hit, other, self.growth)
        return True

    def reopen(self) -> None:
        """Offer again the chunks beside placed ones (those that did not fit may fit now)."""
        if self.pool is None or self.growth is None:
            return
        for hit, _, _, _ in self.included:
            for other in self.pool.beside(hit.chunk):
                if other.chunk.id not in self.taken:
                    self._offer(hit, other, self.growth)

    def _offer(self, placed: Hit, other: Hit, growth: Growth) -> None:
        """Put `other`, beside the placed chunk, on the frontier at what growing into it is worth."""
        same = other.chunk.block >= 0 and other.chunk.block == placed.chunk.block
        clause = not same and placed.chunk.clause_block >= 0 and other.chunk.clause_block == placed.chunk.clause_block
        worth = other.score + (growth.in_block if same or clause else growth.beyond)
        if clause or (same and _cut(*sorted((placed.chunk, other.chunk), key=lambda chunk: chunk.ordinal))):
            placed_worth = self.worth[placed.chunk.id]
            worth = max(worth, min(placed_worth, growth.continuation * placed_worth))
        if worth > self.frontier.get(other.chunk.id, (-2.0, other))[0]:
            self.frontier[other.chunk.id] = (worth, other)


def _assemble(
    base: str,
    header_part: str,
    included: Sequence[tuple[Hit, int, int, bool]],
    layout: _Layout,
    counter: TokenCounter,
) -> tuple[str, int]:
    if not included:
        return base, counter.count(base)
    groups = _groups(included, layout)
    blocks = "".join(BLOCK_SEPARATOR + render_block(group, layout.template) for group in groups.values())
    message = base + header_part + blocks
    return message, counter.count(message)


def _groups(included: Sequence[tuple[Hit, int, int, bool]], layout: _Layout) -> dict[str, list[Hit]]:
    """The placed chunks by fenced block: one per document (or per chunk without `merge`), pins apart."""
    groups: dict[str, list[Hit]] = {}
    for hit, _, _, _ in included:
        key = hit.chunk.source if layout.merge else hit.chunk.id
        groups.setdefault(("pin:" if hit.chunk.id in layout.pinned else "") + key, []).append(hit)
    return groups


def _in_document_order(hits: Sequence[Hit]) -> list[Hit]:
    return sorted(hits, key=lambda hit: (hit.chunk.start, hit.chunk.ordinal))


def _joined_ids(included: Sequence[tuple[Hit, int, int, bool]], layout: _Layout) -> set[str]:
    """Ids of the placed chunks the message joins to the chunk before them with their recorded whitespace."""
    found: set[str] = set()
    for group in _groups(included, layout).values():
        ordered = _in_document_order(group)
        found.update(b.chunk.id for a, b in zip(ordered, ordered[1:], strict=False) if _joined(a.chunk, b.chunk))
    return found


def render_block(hits: Sequence[Hit], template: str) -> str:
    """One fenced block for chunks of one document, in document order: a label where the section changes,
    adjacent chunks joined by their recorded whitespace (else a space within a line of a paragraph, a line break
    otherwise), gaps marked."""
    ordered = _in_document_order(hits)
    parts: list[str] = []
    previous: Chunk | None = None
    for hit in ordered:
        chunk = hit.chunk
        adjacent = previous is not None and previous.ordinal >= 0 and chunk.ordinal == previous.ordinal + 1
        if previous is not None and _joined(previous, chunk):
            parts.append(neutralise(chunk.lead))
        elif previous is not None:
            same_line = adjacent and chunk.block >= 0 and chunk.block == previous.block and not chunk.new_line
            parts.append(" " if same_line else "\n" if adjacent else GAP)
        if previous is None or chunk.section != previous.section:
            label = section_label(chunk)
            if label:
                opening = previous is None or parts[-1].endswith("\n")
                parts.append(("" if opening else "\n") + f"§ {_attribute(label)}\n")
        parts.append(neutralise(chunk.text))
        previous = chunk
    return template.format(source=_attribute(ordered[0].chunk.source), text="".join(parts))


def _included(
    hit: Hit, cost: int, context: bool, pinned: frozenset[str] = frozenset(), with_lead: bool = False
) -> IncludedChunk:
    """What the message carries of `hit`: its text, and the whitespace before it when it is joined with that."""
    chunk = hit.chunk
    score = round(hit.score, 4)
    is_pin = chunk.id in pinned
    start = chunk.start - len(chunk.lead) if with_lead else chunk.start
    return IncludedChunk(
        chunk.id, chunk.source, chunk.section, start, chunk.end, score, cost, context and not is_pin, chunk.doc_hash,
        is_pin,
    )  # fmt: skip


def _dropped(hit: Hit, cost: int, reason: str) -> DroppedChunk:
    chunk = hit.chunk
    return DroppedChunk(chunk.id, chunk.source, chunk.section, round(hit.score, 4), cost, reason)


def assemble(
    base_message: str,
    header: str,
    block_template: str,
    merge: bool,
    chunks: Sequence[Chunk],
    pinned: frozenset[str],
    counter: TokenCounter,
) -> tuple[str, int]:
    """The message `compose_message` builds from `chunks` placed in this order, and its tokens (the audit trail
    rebuilds a logged message with it)."""
    layout = _Layout(counter, block_template, merge, pinned)
    placed = [(Hit(chunk, 0.0), 0, order, False) for order, chunk in enumerate(chunks)]
    return _assemble(base_message.strip(), BLOCK_SEPARATOR + header.strip(), placed, layout, counter)
