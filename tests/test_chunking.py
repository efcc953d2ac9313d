"""Chunks are exact slices of the document, never over the token limit, and labelled with their heading path."""

from __future__ import annotations

import textwrap
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rag_prompts import TokenCounter
from rag_prompts.chunking import chunk_document
from rag_prompts.loaders import load_document
from rag_prompts.neighbours import SHORT_BLOCKS, block_texts, text_groups
from rag_prompts.records import Chunk, Document, Heading

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


def test_a_numbered_heading_ends_at_a_paragraph_numbered_past_it(tmp_path: Path, counter: TokenCounter) -> None:
    # Only some clause titles stand on a line of their own; the clauses after "9.2" are not part of it.
    text = (
        "LICENCE AGREEMENT\n\n9 Intellectual Property\n\n9.1 Ownership. Each party keeps its own rights.\n\n"
        "9.2 Licenses to Improvements\n\n9.2.1 Improvements. Each party tells the other of its improvements.\n\n"
        "37.0 Remedies apply within\n10 Business Days of notice.\n\n1. Items in a list stay.\n\n"
        "9.3 Term. This Agreement runs for five years.\n\n16.2 Applicable Law. The laws of Ontario govern.\n"
    )
    document = load_document(write(tmp_path / "licence.txt", text), tmp_path)
    title = document.title
    sections = {chunk.text.split(" ")[0]: chunk.section for chunk in chunk_document(document, counter, 100, "h")}
    assert sections["9.1"] == f"{title} > 9 Intellectual Property"
    assert sections["9.2.1"] == f"{title} > 9 Intellectual Property > 9.2 Licenses to Improvements"
    # a wrapped line that starts with a number and a list numbered from 1 do not end the heading
    assert sections["37.0"] == sections["1."] == sections["9.2.1"]
    assert sections["9.3"] == f"{title} > 9 Intellectual Property"  # 9.2 ends; 9 goes on
    assert sections["16.2"] == title  # both end
    for chunk in chunk_document(document, counter, 100, "h"):
        assert document.text[chunk.start : chunk.end] == chunk.text


def test_a_numbered_list_does_not_end_the_numbered_heading_it_is_under(tmp_path: Path, counter: TokenCounter) -> None:
    text = "# Manual\n\n## 2 Scope\n\n1. Claims.\n2. Complaints.\n3. Refunds.\n\n3. Next Part. Its own text.\n"
    document = load_document(write(tmp_path / "manual.md", text), tmp_path)
    sections = {chunk.text.split(" ")[-1]: chunk.section for chunk in chunk_document(document, counter, 100, "h")}
    assert sections["Claims."] == sections["Refunds."] == "Manual > 2 Scope"
    # a second "3." does not go on the list: it is the next part, and ends "2 Scope"
    assert sections["text."] == "Manual"


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


_HEADINGS = ("\n\n## H\n\n", "\n\n## 9.2 H\n\n")  # a numbered one, ended by the numbered paragraphs below
_pieces = st.sampled_from(
    list("abc xyz.!?\n\t,;:-éß漢字🙂")
    + ["<|endoftext|>", "<|im_start|>", *_HEADINGS, "\n\n9.3 Ab", "\n\n10. Cd", "\n\n2. Ef", "\n\n9.2.1 Gh"]
)
_text = st.lists(st.one_of(_pieces, st.text(max_size=40)), max_size=400).map("".join)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=_text, max_tokens=st.integers(min_value=4, max_value=200))  # one character is <= 4 tokens
def test_property_chunks_are_bounded_exact_slices(counter: TokenCounter, text: str, max_tokens: int) -> None:
    headings = tuple(
        Heading(2, marker.strip("\n# "), index + 2, index + len(marker) - 1)
        for index in range(len(text))
        for marker in _HEADINGS
        if text.startswith(marker, index)
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


def _blocks_of(text: str, counter: TokenCounter, tmp_path: Path, max_tokens: int = 40) -> list[tuple[str, str]]:
    """(clause, text) of each block of a plain-text document, its chunks joined."""
    document = load_document(write(tmp_path / "p.txt", text), tmp_path)
    chunks = chunk_document(document, counter, max_tokens, "hash")
    for chunk in chunks:
        assert document.text[chunk.start : chunk.end] == chunk.text  # offsets exact
    found: dict[int, list[str]] = {}
    clauses: dict[int, str] = {}
    for chunk in chunks:
        found.setdefault(chunk.block, []).append(chunk.text)
        clauses.setdefault(chunk.block, chunk.clause)
    assert sorted(found) == list(range(len(found)))  # blocks numbered in reading order
    return [(clauses[block], " ".join(" ".join(texts).split())) for block, texts in found.items()]


def test_blank_lines_and_one_paragraph_per_line_make_blocks(tmp_path: Path, counter: TokenCounter) -> None:
    text = "Refunds are paid in 14 days.\nLate refunds earn interest.\n\nComplaints go to the ombudsman.\n"
    assert _blocks_of(text, counter, tmp_path) == [
        ("", "Refunds are paid in 14 days."),
        ("", "Late refunds earn interest."),
        ("", "Complaints go to the ombudsman."),
    ]


def test_first_line_indents_mark_paragraphs(tmp_path: Path, counter: TokenCounter) -> None:
    text = (
        "  We collect your email.\nWe also collect your address.\nBoth are kept for a year.\n"
        "  We share data with processors.\nThey are bound by contract.\n"
        "  You may ask for a copy.\n"
    )
    assert [block for _, block in _blocks_of(text, counter, tmp_path)] == [
        "We collect your email. We also collect your address. Both are kept for a year.",
        "We share data with processors. They are bound by contract.",
        "You may ask for a copy.",
    ]


def test_wrapped_lines_stay_one_paragraph_and_list_items_and_clauses_are_blocks(
    tmp_path: Path, counter: TokenCounter
) -> None:
    text = (
        "12.3 The Supplier shall keep all records of the services for six\n"
        "years after the end of this Agreement and shall allow the Customer\n"
        "to inspect them on reasonable notice during business hours.\n"
        "(b) The Customer may audit the Supplier once in any year, at its\n"
        "own cost, unless the audit finds a material breach of the terms.\n"
        "- Audits are announced ten business days ahead of the first visit.\n"
    )
    blocks = _blocks_of(text, counter, tmp_path)
    assert [clause for clause, _ in blocks] == ["12.3", "(b)", "-"]
    assert blocks[0][1].startswith("12.3 The Supplier") and blocks[0][1].endswith("business hours.")
    assert blocks[1][1].endswith("terms.")


def test_long_blocks_are_cut_into_pieces_at_sentences(tmp_path: Path, counter: TokenCounter) -> None:
    paragraph = " ".join(f"Rule {n} sets the limit for role {n} at ${n},000 per claim." for n in range(40))
    document = load_document(write(tmp_path / "long.txt", paragraph + "\n\nShort one.\n"), tmp_path)
    chunks = chunk_document(document, counter, 40, "hash", block_tokens=128)
    pieces: dict[int, list[int]] = {}
    for chunk in chunks:
        pieces.setdefault(chunk.block, []).append(chunk.tokens)
    assert len(pieces) > 2  # the long paragraph is several blocks, the short one its own
    assert all(sum(tokens) <= 128 for tokens in pieces.values())
    assert chunks[-1].text == "Short one." and chunks[-1].block == max(pieces)


def test_the_pieces_of_a_long_numbered_clause_record_its_first(tmp_path: Path, counter: TokenCounter) -> None:
    """A long clause that opens with its number is cut into pieces that all name its first piece; a long plain
    paragraph, a long bullet, a numbered heading line over its body and a short clause name none."""
    body = " ".join(f"The Recipient keeps item {n} of the Information secret for five years." for n in range(14))
    text = (
        f"7. CONFIDENTIALITY. {body}\n\n(b) {body}\n\n8. Notices go to the addresses above.\n\n"
        f"{body}\n\n- {body}\n\n2.1 Registration Information\n{textwrap.fill(body, 70)}\n"
    )  # the titled body wrapped at a fixed width, so title and body are one block
    document = load_document(write(tmp_path / "nda.txt", text), tmp_path)
    chunks = chunk_document(document, counter, 40, "hash", block_tokens=128)
    for chunk in chunks:
        assert document.text[chunk.start : chunk.end] == chunk.text
    starts = {marker: text.index(marker) for marker in ("7. ", "(b) ", "8. ", f"\n\n{body}", "- ", "2.1 ")}
    order = sorted(starts.values())

    def blocks_of(marker: str) -> list[Chunk]:
        begin = starts[marker]
        end = next((position for position in order if position > begin), len(text))
        return [chunk for chunk in chunks if begin <= chunk.start < end]

    for marker in ("7. ", "(b) "):
        pieces = blocks_of(marker)
        assert len({chunk.block for chunk in pieces}) > 1  # cut into pieces
        assert {chunk.clause_block for chunk in pieces} == {pieces[0].block}
    assert blocks_of("7. ")[0].clause_block != blocks_of("(b) ")[0].clause_block
    for marker in ("8. ", f"\n\n{body}", "- ", "2.1 "):
        assert {chunk.clause_block for chunk in blocks_of(marker)} == {-1}, marker
    assert len({chunk.block for chunk in blocks_of("2.1 ")}) > 1


def test_nearby_lists_block_mates_and_neighbours(tmp_path: Path, counter: TokenCounter) -> None:
    sentences = " ".join(f"Clause {n} applies to every claim over ${n}00." for n in range(12))
    document = load_document(write(tmp_path / "n.txt", f"Intro line.\n\n{sentences}\n\nOutro line.\n"), tmp_path)
    chunks = chunk_document(document, counter, 12, "hash", block_tokens=400)
    middle = [chunk for chunk in chunks if chunk.block == 1]
    assert len(middle) > 2 * 3 + 1  # more block mates than NEARBY reaches
    first = middle[0]
    assert {chunk.id for chunk in middle if chunk.id != first.id} <= set(first.nearby)
    assert chunks[0].id in first.nearby  # one step beyond the block too


def test_short_blocks_embed_with_the_blocks_beside_them(tmp_path: Path, counter: TokenCounter) -> None:
    long_clause = " ".join(f"The Supplier keeps record {n} for six years after the end of the term." for n in range(8))
    text = (
        "# Contract\n\n## Records\n\n"
        "ARTICLE 7\nRECORDS\n(a) Invoices.\n(b) Delivery notes.\n\n"
        f"{long_clause}\n\n"
        "(c) Audit reports.\n\n## Audit\n\nOne audit a year.\n"
    )
    document = load_document(write(tmp_path / "c.md", text), tmp_path)
    chunks = chunk_document(document, counter, 40, "hash", block_tokens=128)
    texts = block_texts(chunks)
    by_text = {chunk.text: texts[chunk.block] for chunk in chunks}
    short_run = "Contract > Records\n\nARTICLE 7 RECORDS (a) Invoices. (b) Delivery notes."
    assert by_text["ARTICLE 7"] == by_text["(a) Invoices."] == by_text["(b) Delivery notes."] == short_run
    long_pieces = {texts[chunk.block] for chunk in chunks if chunk.text.startswith("The Supplier")}
    assert all(counter.count(piece) > SHORT_BLOCKS for piece in long_pieces)  # a long block stays alone
    assert by_text["(c) Audit reports."] == "Contract > Records\n\n(c) Audit reports."  # the long block in between
    assert by_text["One audit a year."] == "Contract > Audit\n\nOne audit a year."  # never across a heading
    assert len(set(texts.values())) < len(texts)  # fewer texts to embed than blocks


def test_block_texts_of_a_slice_equal_those_of_the_whole_document(tmp_path: Path, counter: TokenCounter) -> None:
    lines = [
        f"({n}) Item {n} of the schedule." if n % 5 else f"Paragraph {n}. " + "Words here. " * 30 for n in range(40)
    ]
    document = load_document(write(tmp_path / "s.md", "# S\n\n" + "\n".join(lines) + "\n"), tmp_path)
    chunks = chunk_document(document, counter, 40, "hash", block_tokens=128)
    whole = block_texts(chunks)
    starts = text_groups(chunks)
    for first in range(0, len(chunks), 7):
        part = block_texts(chunks, starts, range(first, min(first + 7, len(chunks))))
        assert part.items() <= whole.items()
        assert {chunks[i].block for i in range(first, min(first + 7, len(chunks)))} <= part.keys()


def test_a_chunk_records_the_whitespace_before_it_and_nothing_past_a_skipped_repeat() -> None:
    """The lead is the document's whitespace since the last stored chunk; ingest skips a repeated passage, and the
    chunk after it then records no lead (text lies between them)."""
    from rag_prompts.chunking import iter_chunks
    from rag_prompts.tokens import token_counter

    text = "Notice is due in 10 days.\n\nSigned.\n\nNotice is due in 10 days.\n\n\tFees are paid monthly."
    document = Document("r.txt", "/", "R", text)
    stored = list(iter_chunks(document, token_counter("gpt-4"), 40, "h", repeats=False))
    assert [chunk.text for chunk in stored] == ["Notice is due in 10 days.", "Signed.", "Fees are paid monthly."]
    assert [chunk.lead for chunk in stored] == ["", "\n\n", ""]
    every = list(iter_chunks(document, token_counter("gpt-4"), 40, "h"))
    assert [chunk.lead for chunk in every] == ["", "\n\n", "\n\n", "\n\n\t"]
