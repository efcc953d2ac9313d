"""Neighbour-mixed chunk vectors: a chunk's vector leans towards its neighbours' and its block's, so a short chunk
is found by what its passage, paragraph or clause is about, not only by its own few words.

mixed(i) = normalise(e(i) + weight * mean(e(i - window) .. e(i + window))) over the chunks of one document, where
e is the embedding of a chunk alone (no extra model calls); then, with a block weight b > 0,
vector(i) = normalise((1 - b) * mixed(i) + b * e(block(i))), where e(block) embeds the chunk's whole block, together
with the blocks beside it when they are short (one more model call per such text). A vector is keyed by the content
of its whole window and block, so re-ingest reuses it exactly when those are unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence

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


def block_texts(chunks: Sequence[Chunk]) -> dict[int, str]:
    """What each block of one document's chunks embeds as: its heading path and its text. Consecutive blocks of one
    section are taken together while they sum to at most `SHORT_BLOCKS` tokens (a heading and its first line, a run
    of short list items or table rows), so a short block is embedded with the lines around it."""
    block_sizes: dict[int, int] = {}
    for chunk in chunks:
        block_sizes[chunk.block] = block_sizes.get(chunk.block, 0) + chunk.tokens
    groups: list[list[Chunk]] = []
    sizes: list[int] = []
    for chunk in chunks:
        if groups and groups[-1][-1].block == chunk.block:
            groups[-1].append(chunk)
            sizes[-1] += chunk.tokens
            continue
        if groups and groups[-1][-1].section == chunk.section and sizes[-1] + block_sizes[chunk.block] <= SHORT_BLOCKS:
            groups[-1].append(chunk)
            sizes[-1] += chunk.tokens
        else:
            groups.append([chunk])
            sizes.append(chunk.tokens)
    texts: dict[int, str] = {}
    for group in groups:
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
