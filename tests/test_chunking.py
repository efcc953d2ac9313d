"""Chunks are exact slices of the document, never over the token limit, and labelled with their heading path."""

from __future__ import annotations

from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rag_prompts import Document, TokenCounter, chunk_document, load_document
from rag_prompts.records import Heading

from .conftest import CORPUS, write


def test_sections_become_heading_paths(tmp_path: Path, counter: TokenCounter) -> None:
    text = (
        "# Claims\n\nIntro.\n\n## Authority\n\n### By Role\n\nHandlers approve up to $7,500.\n\n"
        "## Closing\n\nClose files.\n"
    )
    document = load_document(write(tmp_path / "claims.md", text), tmp_path)
    chunks = chunk_document(document, counter, 100, "hash")
    assert [(chunk.section, chunk.text) for chunk in chunks] == [
        ("Claims", "Intro."),
        ("Claims > Authority > By Role", "Handlers approve up to $7,500."),
        ("Claims > Closing", "Close files."),
    ]
    for chunk in chunks:
        assert document.text[chunk.start : chunk.end] == chunk.text
        assert chunk.tokens == counter.count(chunk.text)


def test_long_sections_split_at_paragraphs_then_sentences(tmp_path: Path, counter: TokenCounter) -> None:
    paragraph = " ".join(f"Rule {n} says the limit is ${n},000 for role {n}." for n in range(30))
    text = "# Manual\n\n## Limits\n\n" + "\n\n".join([paragraph] * 3) + "\n"
    document = load_document(write(tmp_path / "m.md", text), tmp_path)
    chunks = chunk_document(document, counter, 120, "hash")
    assert len(chunks) > 3
    for chunk in chunks:
        assert chunk.tokens <= 120
        assert chunk.section == "Manual > Limits"
        assert chunk.text.endswith(".")  # cut at sentence ends, not mid-sentence
        assert document.text[chunk.start : chunk.end] == chunk.text


def test_chunk_ids_name_one_version_of_one_document(tmp_path: Path, counter: TokenCounter) -> None:
    text = "# T\n\n## A\n\nSame text.\n\n## B\n\nSame text.\n"
    document = load_document(write(tmp_path / "t.md", text), tmp_path)
    first = chunk_document(document, counter, 50, "h1")
    again = chunk_document(document, counter, 50, "h1")
    other_version = chunk_document(document, counter, 50, "h2")
    elsewhere = chunk_document(load_document(write(tmp_path / "copy.md", text), tmp_path), counter, 50, "h1")
    assert [chunk.id for chunk in first] == [chunk.id for chunk in again]
    assert len({chunk.id for chunk in first}) == len(first)
    assert not {chunk.id for chunk in first} & {chunk.id for chunk in other_version}
    assert not {chunk.id for chunk in first} & {chunk.id for chunk in elsewhere}


def test_sample_corpus_chunks_respect_the_configured_maximum(counter: TokenCounter) -> None:
    for path in CORPUS.rglob("*.*"):
        if path.suffix not in {".md", ".txt", ".html"}:
            continue
        document = load_document(path, CORPUS)
        for chunk in chunk_document(document, counter, 300, "hash"):
            assert chunk.tokens <= 300
            assert document.text[chunk.start : chunk.end] == chunk.text
            assert chunk.section.startswith(document.title)


_pieces = st.sampled_from(list("abc xyz.!?\n\t,;:-éß漢字🙂") + ["<|endoftext|>", "<|im_start|>", "\n\n## H\n\n"])
_text = st.lists(st.one_of(_pieces, st.text(max_size=40)), max_size=400).map("".join)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=_text, max_tokens=st.integers(min_value=4, max_value=200))  # one character is <= 4 tokens
def test_property_chunks_are_bounded_exact_slices(counter: TokenCounter, text: str, max_tokens: int) -> None:
    headings = tuple(
        Heading(2, "H", index + 2, index + 7) for index in range(len(text)) if text.startswith("\n\n## H\n\n", index)
    )
    document = Document("x.md", "/", "Doc", text, headings)
    chunks = chunk_document(document, counter, max_tokens, "hash")
    for chunk in chunks:
        assert 0 < chunk.tokens <= max_tokens
        assert text[chunk.start : chunk.end] == chunk.text
    body = "".join(
        text[end:start]
        for end, start in zip(
            [0] + [h.body_start for h in headings], [h.start for h in headings] + [len(text)], strict=True
        )
    )
    covered = "".join(chunk.text for chunk in chunks)
    assert "".join(covered.split()) == "".join(body.split())  # nothing lost, nothing repeated
