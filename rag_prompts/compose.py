"""Base message + ranked chunks packed under a hard token budget.

The budget covers the whole message (base, header, labels, separators). Candidates are packed greedily in
rank order, skipping any that does not fit; the final message is then counted as a whole and trimmed from the
lowest-ranked chunk should the parts' sum ever differ from the whole, so `tokens <= budget` always holds.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from .config import packaged_prompt
from .errors import BudgetError
from .fence import attribute as _attribute
from .fence import neutralise as neutralise  # re-exported: the eval checks spans with it
from .records import Chunk, ComposedPrompt, DroppedChunk, Hit, IncludedChunk
from .tokens import TokenCounter

BLOCK_SEPARATOR = "\n\n"
GAP = "\n[…]\n"  # between non-adjacent chunks of one section in a merged block


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
    neighbours: Callable[[Sequence[Hit]], Sequence[Hit]] | None = None,
) -> ComposedPrompt:
    """Pack up to `k` of `hits` (best first) after `base_message` within `budget` tokens.

    With `merge`, chunks of one section share one labelled block (its label is paid once): they appear in document
    order, adjacent chunks joined by a line break and gaps marked with `[…]`. Blocks come in order of their best
    chunk. Without it, every chunk gets its own block.

    `neighbours`, when given, is called with the packed chunks if budget is left once `k` are in: it returns
    scored chunks of the same documents, and the packed passages grow into the adjacent ones (same section,
    next ordinal), best score first, while they fit. The k passages stay k; the budget buys their context."""
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
    costs = _Costs(counter, template, counter.count(header_part), counter.count(GAP), merge)
    packing = _Packing(budget, used)
    for hit in hits:
        if len(packing.included) >= k:
            packing.dropped.append(_dropped(hit, 0, f"k={k} chunks already included"))
            continue
        packing.add(hit, costs.of(hit, packing.groups, first=not packing.included), "does not fit")
    included, passages = packing.included, len(packing.included)
    if neighbours is not None and included and len(included) >= k:
        packing.used = _assemble(base, header_part, included, template, merge, counter)[1]  # parts overestimate
        _expand(packing, neighbours([hit for hit, _ in included]), costs)
    packed = {hit.chunk.id for hit, _ in included}
    dropped = list({item.id: item for item in packing.dropped if item.id not in packed}.values())  # latest reason
    message, tokens = _assemble(base, header_part, included, template, merge, counter)
    while tokens > budget and included:  # the whole differs from the sum of its parts: trim, recount
        hit, cost = included.pop()
        dropped.append(_dropped(hit, cost, "trimmed: the whole message exceeded the budget"))
        message, tokens = _assemble(base, header_part, included, template, merge, counter)
    return ComposedPrompt(
        system_message=message,
        tokens=tokens,
        budget=budget,
        encoding=counter.encoding_name,
        chunks=tuple(_included(hit, cost, index >= passages) for index, (hit, cost) in enumerate(included)),
        dropped=tuple(dropped),
    )


@dataclass(frozen=True)
class _Costs:
    counter: TokenCounter
    template: str
    header_cost: int
    gap_cost: int
    merge: bool

    def of(self, hit: Hit, groups: set[tuple[str, str]], first: bool, adjacent: bool = False) -> int:
        """Tokens `hit` adds: its text and a separator (a line break next to a packed chunk) when its block is
        paid for, else a whole new block."""
        if self.merge and (hit.chunk.source, hit.chunk.section) in groups:
            if adjacent:
                return self.counter.count("\n" + neutralise(hit.chunk.text))
            return self.gap_cost + self.counter.count(neutralise(hit.chunk.text))
        block = self.counter.count(BLOCK_SEPARATOR + render_block([hit], self.template))
        return block + (self.header_cost if first else 0)


@dataclass
class _Packing:
    """Chunks packed so far, the tokens they use (an upper bound), and what was left out."""

    budget: int
    used: int
    included: list[tuple[Hit, int]] = field(default_factory=list)
    dropped: list[DroppedChunk] = field(default_factory=list)
    groups: set[tuple[str, str]] = field(default_factory=set)

    def add(self, hit: Hit, cost: int, refusal: str) -> bool:
        """Pack `hit` if its `cost` fits the budget; otherwise record it as dropped, saying why."""
        if self.used + cost > self.budget:
            left = self.budget - self.used
            self.dropped.append(_dropped(hit, cost, f"{refusal}: needs {cost} tokens, {left} left"))
            return False
        self.included.append((hit, cost))
        self.groups.add((hit.chunk.source, hit.chunk.section))
        self.used += cost
        return True


def _expand(packing: _Packing, pool: Sequence[Hit], costs: _Costs) -> None:
    """Grow the packed passages into adjacent chunks from `pool`, best score first, while they fit."""
    by_place = {(hit.chunk.source, hit.chunk.section, hit.chunk.ordinal): hit for hit in pool if hit.chunk.ordinal >= 0}
    taken = {hit.chunk.id for hit, _ in packing.included}
    frontier: dict[str, Hit] = {}

    def reach_from(chunk: Chunk) -> None:
        for ordinal in (chunk.ordinal - 1, chunk.ordinal + 1):
            neighbour = by_place.get((chunk.source, chunk.section, ordinal))
            if neighbour is not None and neighbour.chunk.id not in taken:
                frontier[neighbour.chunk.id] = neighbour

    for hit, _ in packing.included:
        if hit.chunk.ordinal >= 0:
            reach_from(hit.chunk)
    while frontier:
        best = max(frontier.values(), key=lambda candidate: candidate.score)
        del frontier[best.chunk.id]
        taken.add(best.chunk.id)
        if packing.add(best, costs.of(best, packing.groups, first=False, adjacent=True), "context not added"):
            reach_from(best.chunk)


def render_block(hits: Sequence[Hit], template: str) -> str:
    """One labelled block for chunks of one section, in document order; adjacent ones joined, gaps marked."""
    ordered = sorted(hits, key=lambda hit: hit.chunk.start)
    parts: list[str] = []
    for index, hit in enumerate(ordered):
        if index:
            previous = ordered[index - 1].chunk
            adjacent = previous.ordinal >= 0 and hit.chunk.ordinal == previous.ordinal + 1
            parts.append("\n" if adjacent else GAP)
        parts.append(neutralise(hit.chunk.text))
    chunk = ordered[0].chunk
    return template.format(source=_attribute(chunk.source), section=_attribute(chunk.section), text="".join(parts))


def _assemble(
    base: str,
    header_part: str,
    included: list[tuple[Hit, int]],
    template: str,
    merge: bool,
    counter: TokenCounter,
) -> tuple[str, int]:
    if not included:
        return base, counter.count(base)
    blocks: dict[tuple[str, ...], list[Hit]] = {}
    for hit, _ in included:
        key = (hit.chunk.source, hit.chunk.section) if merge else (hit.chunk.id,)
        blocks.setdefault(key, []).append(hit)
    message = base + header_part + "".join(BLOCK_SEPARATOR + render_block(group, template) for group in blocks.values())
    return message, counter.count(message)


def _included(hit: Hit, cost: int, context: bool) -> IncludedChunk:
    chunk = hit.chunk
    score = round(hit.score, 4)
    return IncludedChunk(chunk.id, chunk.source, chunk.section, chunk.start, chunk.end, score, cost, context)


def _dropped(hit: Hit, cost: int, reason: str) -> DroppedChunk:
    chunk = hit.chunk
    return DroppedChunk(chunk.id, chunk.source, chunk.section, round(hit.score, 4), cost, reason)
