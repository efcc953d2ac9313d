"""A large document streamed in slices gets exactly what its whole chunk list would give each chunk: the same ids,
texts, ordinals, `nearby` lists, vector keys and block texts, whatever the slice size (real tiktoken)."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from rag_prompts import TokenCounter
from rag_prompts.chunking import chunk_document, iter_chunks
from rag_prompts.loaders import load_markdown
from rag_prompts.neighbours import block_texts, vector_keys
from rag_prompts.records import Chunk
from rag_prompts.slices import slices

from .conftest import distinct

BOILERPLATE = "All records are confidential and kept on site."


def document_text(seed: int, paragraphs: int) -> str:
    """Sections of long paragraphs, runs of short list items (text groups of several blocks), one-line headings
    and repeated boilerplate (dropped after its first place, which renumbers the rest)."""
    rng = random.Random(seed)
    parts = ["# Streamed policy"]
    for n in range(paragraphs):
        kind = rng.random()
        if kind < 0.1:
            parts.append(f"## Part {n}")
        elif kind < 0.2:
            parts.append(BOILERPLATE)
        elif kind < 0.45:
            parts.append("\n".join(f"- item {n}.{i} of desk {rng.randrange(9)}" for i in range(rng.randrange(1, 9))))
        else:
            parts.append(
                " ".join(
                    f"Clause {n}.{s}: the {rng.choice(['audit', 'claims', 'payroll'])} desk reviews request {s}"
                    f" within {rng.randrange(1, 90)} days of receipt."
                    for s in range(rng.randrange(1, 12))
                )
            )
    return "\n\n".join(parts) + "\n"


def streamed(chunks: list[Chunk], size: int, reach: int, block_weight: float) -> tuple[list[Chunk], dict[str, str]]:
    """The chunks the slices finish, in order, and each one's block text as computed inside its slice."""
    done: list[Chunk] = []
    texts: dict[str, str] = {}
    for piece in slices(iter(chunks), size, reach, 0.5, block_weight):
        blocks = block_texts(piece.chunks, piece.starts, piece.wanted)
        for index in piece.wanted:
            chunk = piece.chunks[index]
            done.append(chunk)
            texts[chunk.id] = blocks[chunk.block]
    return done, texts


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    size=st.integers(1, 70),
    reach=st.integers(0, 4),
    block_weight=st.sampled_from([0.0, 0.3]),
    chunk_tokens=st.sampled_from([4, 8, 24]),  # small chunks: blocks and text groups of more chunks than MARGIN
)
def test_slices_equal_the_whole_document(
    counter: TokenCounter, seed: int, size: int, reach: int, block_weight: float, chunk_tokens: int
) -> None:
    document = load_markdown(document_text(seed, 60).encode(), "streamed.md", "/docs", "streamed.md")
    whole = distinct(chunk_document(document, counter, chunk_tokens, "h"))  # the whole-list path, repeats dropped
    keys = vector_keys(whole, reach, 0.5, block_weight)
    whole_blocks = block_texts(whole)
    stream = list(iter_chunks(document, counter, chunk_tokens, "h", repeats=False))
    done, texts = streamed(stream, size, reach, block_weight)
    assert len(done) == len(whole) > 100
    for chunk, expected, key in zip(done, whole, keys, strict=True):
        assert chunk == expected.__class__(**{**expected.__dict__, "vector_key": key})
        assert texts[chunk.id] == whole_blocks[expected.block]
