"""One large document's chunks in finished slices, so it is never held as one whole chunk list.

`chunk_document` and the vector functions of `neighbours` look at a whole document, but what they compute for
one chunk depends only on the chunks near it: its `nearby` list on up to MAX_BLOCK_CHUNKS chunks each side,
its vector window on `reach` chunks each side, and its block text on its text group (see `text_groups`), a
greedy run of short blocks that must be scanned from a group's first chunk. So each slice is computed over a
window of the stream that starts at a text group's first chunk at least MARGIN chunks before the slice and ends
at least MARGIN chunks, and one whole text group, after it. Every chunk then gets exactly the ordinal,
`nearby`, vector key and block text the whole document would give it (a test compares the two).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace

from .chunking import MAX_BLOCK_CHUNKS, NEARBY, with_nearby
from .neighbours import text_groups, vector_keys
from .records import Chunk

MARGIN = max(MAX_BLOCK_CHUNKS, NEARBY) + 1  # how far `nearby` looks on each side (a block mate, a neighbour)


@dataclass(frozen=True)
class Slice:
    """Chunks of a window of one document; those at `wanted` are final (ordinal, `nearby`, `vector_key`), and
    `starts` (its `text_groups`) is right for them, so their vectors can be mixed within the window."""

    chunks: list[Chunk]
    wanted: range
    starts: list[int]


def slices(stream: Iterable[Chunk], size: int, reach: int, weight: float, block_weight: float) -> Iterator[Slice]:
    """Finished slices of about `size` chunks each, in order, from one document's chunks (ordinals counting
    from 0, no `nearby` yet, as `iter_chunks` yields them); `reach`, `weight`, `block_weight` as `vector_keys`."""
    margin = max(MARGIN, reach + 1)
    chunks = iter(stream)
    window: list[Chunk] = []  # the stream from position `base` on; `base` is the first chunk of a text group
    base = emit = 0  # emit: the position of the first chunk not yet in a slice
    ended, more = False, 0
    while not ended or emit < base + len(window):
        while not ended and len(window) < emit - base + size + margin + more:
            chunk = next(chunks, None)
            ended = chunk is None
            if chunk is not None:
                window.append(chunk)
        starts = text_groups(window)
        # the last text group may still grow, and the chunks near the end do not yet have all their neighbours
        limit = len(window) if ended else min(starts[-1], len(window) - margin)
        if limit <= emit - base:
            more += size  # one text group longer than the window: read further
            continue
        first, end = emit - base, limit if ended else min(limit, emit - base + size)
        numbered = [replace(chunk, ordinal=base + index) for index, chunk in enumerate(with_nearby(window))]
        keys = vector_keys(numbered, reach, weight, block_weight)
        for index in range(first, end):
            numbered[index] = replace(numbered[index], vector_key=keys[index])
        yield Slice(numbered, range(first, end), starts)
        emit, more = base + end, 0
        if end > margin:  # the next window starts at a group's first chunk at least `margin` chunks before `emit`
            cut = starts[end - margin]
            window, base = window[cut:], base + cut
