"""Neighbour-mixed chunk vectors: a chunk's vector leans towards its neighbours' and its block's, so a short chunk
is found by what its passage, paragraph or clause is about, not only by its own few words.

mixed(i) = normalise(e(i) + weight * mean(e(i - window) .. e(i + window))) over the chunks of one document, where
e is the embedding of a chunk alone (no extra model calls); then, with a block weight b > 0,
vector(i) = normalise((1 - b) * mixed(i) + b * e(block(i))), where e(block) embeds the chunk's whole block, together
with the blocks beside it when they are short (one more model call per such text). A vector is keyed by the content
of its whole window and block, so re-ingest reuses it exactly when those are unchanged.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from .chunking import sha256
from .records import Chunk

SHORT_BLOCKS = 64  # blocks of one section that together stay within this many tokens embed as one text


def window(index: int, count: int, reach: int) -> range:
    """Positions of the chunks around `index` (itself included) among `count` chunks of one document."""
    return range(max(0, index - reach), min(count, index + reach + 1))


def vector_keys(chunks: Sequence[Chunk], reach: int, weight: float, block_weight: float = 0.0) -> list[str]:
    """One key per chunk of one document (in order): what its vector is computed from."""
    blocks = block_texts(chunks) if block_weight else {}
    keys = []
    for index, chunk in enumerate(chunks):
        if reach == 0 or weight == 0:
            parts = ["plain", chunk.content_hash]
        else:
            around = (chunks[position].content_hash for position in window(index, len(chunks), reach))
            parts = [f"window={reach};weight={weight}", chunk.content_hash, *around]
        if block_weight:
            parts += [f"block={block_weight}", sha256(blocks[chunk.block])]
        keys.append(sha256("\x00".join(parts)))
    return keys


def text_groups(chunks: Sequence[Chunk]) -> list[int]:
    """For each chunk of one document (in order), the position of the first chunk of the text its block embeds
    with: its own block, or the consecutive blocks of one section that together stay within `SHORT_BLOCKS`
    tokens (a heading and its first line, a run of short list items or table rows)."""
    sizes: dict[int, int] = {}
    for chunk in chunks:
        sizes[chunk.block] = sizes.get(chunk.block, 0) + chunk.tokens
    starts: list[int] = []
    start, size = 0, 0
    for position, chunk in enumerate(chunks):
        previous = chunks[position - 1] if position else None
        if previous is not None and previous.block != chunk.block:
            if previous.section == chunk.section and size + sizes[chunk.block] <= SHORT_BLOCKS:
                size += sizes[chunk.block]
            else:
                start, size = position, sizes[chunk.block]
        elif previous is None:
            size = sizes[chunk.block]
        starts.append(start)
    return starts


def block_texts(
    chunks: Sequence[Chunk], starts: Sequence[int] | None = None, positions: Iterable[int] | None = None
) -> dict[int, str]:
    """What each block embeds as: its heading path and the texts of its group (see `text_groups`), for the blocks
    of the chunks at `positions` (default: all). A large document passes its `starts` once for all its slices."""
    starts = text_groups(chunks) if starts is None else starts
    texts: dict[int, str] = {}
    for first in sorted({starts[i] for i in (range(len(chunks)) if positions is None else positions)}):
        last = first
        while last + 1 < len(chunks) and starts[last + 1] == first:
            last += 1
        group = chunks[first : last + 1]
        text = f"{group[0].section}\n\n{' '.join(chunk.text for chunk in group)}"
        texts.update((chunk.block, text) for chunk in group)
    return texts


def with_block(vector: np.ndarray, block: np.ndarray, block_weight: float) -> np.ndarray:
    """A chunk's vector leaning towards its block's embedding."""
    mixed = (1 - block_weight) * vector + block_weight * block
    norm = float(np.linalg.norm(mixed))
    return (mixed / norm if norm else vector).astype(np.float32)


def mix(own: np.ndarray, around: np.ndarray, weight: float) -> np.ndarray:
    """A chunk's vector from its own embedding and those of its window (its own included)."""
    vector = own + weight * around.mean(axis=0)
    norm = float(np.linalg.norm(vector))
    return (vector / norm if norm else own).astype(np.float32)
