"""Base message + ranked chunks packed under a hard token budget.

The budget covers the whole message (base, header, labels, separators). Candidates are packed greedily in
rank order, skipping any that does not fit; the final message is then counted as a whole and trimmed from the
lowest-ranked chunk should the parts' sum ever differ from the whole, so `tokens <= budget` always holds.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from .config import packaged_prompt
from .errors import BudgetError
from .records import ComposedPrompt, DroppedChunk, Hit, IncludedChunk
from .tokens import TokenCounter

BLOCK_SEPARATOR = "\n\n"
GAP = "\n[…]\n"  # between non-adjacent chunks of one section in a merged block

# Chat-template control sequences that must not reach a model verbatim from retrieved text.
_CONTROL = re.compile(
    r"<\|[^|<>\n]{1,40}\|>"  # <|endoftext|>, <|im_start|>, <|eot_id|>, <|start_header_id|> ...
    r"|\[/?INST\]|<</?SYS>>|</?s>|<(?:start|end)_of_turn>|</?(?:bos|eos)>"
    r"|</?policy\b",  # our own fence
    re.IGNORECASE,
)
_LOOKALIKE = str.maketrans({"<": "‹", ">": "›", "|": "¦", "[": "⟦", "]": "⟧"})


def neutralise(text: str) -> str:
    """Defang special tokens and fence markers with same-length look-alikes, so offsets stay valid."""
    return _CONTROL.sub(lambda match: match.group(0).translate(_LOOKALIKE), text)


def _attribute(value: str) -> str:
    return neutralise(value).replace('"', "'").replace("\n", " ")


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
) -> ComposedPrompt:
    """Pack up to `k` of `hits` (best first) after `base_message` within `budget` tokens.

    With `merge`, chunks of one section share one labelled block (its label is paid once): they appear in document
    order, adjacent chunks joined by a line break and gaps marked with `[…]`. Blocks come in order of their best
    chunk. Without it, every chunk gets its own block."""
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
    header_cost = counter.count(header_part)
    gap_cost = counter.count(GAP)
    included: list[tuple[Hit, int]] = []
    dropped: list[DroppedChunk] = []
    groups: set[tuple[str, str]] = set()
    for hit in hits:
        if len(included) >= k:
            dropped.append(_dropped(hit, 0, f"k={k} chunks already included"))
            continue
        key = (hit.chunk.source, hit.chunk.section)
        if merge and key in groups:  # joins a block already paid for: its text and a separator at most
            cost = gap_cost + counter.count(neutralise(hit.chunk.text))
        else:
            cost = counter.count(BLOCK_SEPARATOR + render_block([hit], template)) + (0 if included else header_cost)
        if used + cost > budget:
            dropped.append(_dropped(hit, cost, f"does not fit: needs {cost} tokens, {budget - used} left"))
            continue
        included.append((hit, cost))
        groups.add(key)
        used += cost
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
        chunks=tuple(_included(hit, cost) for hit, cost in included),
        dropped=tuple(dropped),
    )


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


def _included(hit: Hit, cost: int) -> IncludedChunk:
    chunk = hit.chunk
    return IncludedChunk(chunk.id, chunk.source, chunk.section, chunk.start, chunk.end, round(hit.score, 4), cost)


def _dropped(hit: Hit, cost: int, reason: str) -> DroppedChunk:
    chunk = hit.chunk
    return DroppedChunk(chunk.id, chunk.source, chunk.section, round(hit.score, 4), cost, reason)
