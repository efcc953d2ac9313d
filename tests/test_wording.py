"""Task words in the store's own form: a word the model splits into many pieces is embedded as the form of its
stem the store mostly uses, when the model knows that form better. The store's word counts follow every commit."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from rag_prompts.embed import SentenceTransformerEmbedder
from rag_prompts.focus import TermCounts, read_counts
from rag_prompts.ingest import RECORD_META
from rag_prompts.lexical import content_words, stem
from rag_prompts.store import ChunkStore
from rag_prompts.wording import MIN_PIECES, forms, in_store_words

from .conftest import make_pipeline, write
from .test_focus import chunk

TASK = "Does this contract include an Exclusivity agreement?"

CLAUSES = [
    "This Agreement constitutes the entire agreement between the parties and supersedes all prior agreements.",
    "The Supplier appoints the Distributor as its exclusive distributor of the Products in the Territory.",
    "This Agreement is governed by the laws of the State of New York.",
    "Either party may terminate this Agreement on ninety days written notice.",
    "The Distributor shall maintain insurance with a reputable insurer.",
    "Neither party may assign this Agreement without the prior written consent of the other party.",
    "The exclusive rights granted here do not extend to online sales.",
]


def contract(tmp_path: Path, clauses: list[str] = CLAUSES) -> Path:
    body = "\n\n".join(f"{n}. {clause}" for n, clause in enumerate(clauses, 1))
    write(tmp_path / "docs" / "supply.txt", f"SUPPLY AGREEMENT\n\n{body}\n")
    return tmp_path / "docs"


def stored_words(store: ChunkStore) -> dict[str, int]:
    """How many visible stored chunks each word occurs in, read straight from the collection."""
    page = store._collection.get(include=["documents", "metadatas"])
    committed = {source: record.doc_hash for source, record in store.committed().items()}
    found: Counter[str] = Counter()
    for text, metadata in zip(page["documents"], page["metadatas"], strict=True):
        fields = json.loads(metadata["chunk"])
        if committed.get(metadata["source"]) == fields["doc_hash"]:
            found.update(set(content_words(f"{fields['section']} {text}")))
    return dict(found)


def test_a_word_the_model_splits_is_written_in_the_form_the_store_uses(embedder: SentenceTransformerEmbedder) -> None:
    pieces = embedder.pieces
    assert pieces("exclusivity") >= MIN_PIECES > pieces("exclusive") == 1  # ex ##cl ##us ##ivity
    known = forms({"exclusive": 12, "exclusivity": 2, "exclusion": 3, "agreement": 30, "contract": 9})
    assert known.usual[stem("exclusivity")] == "exclusive"
    assert in_store_words(TASK, known, pieces) == "Does this contract include an Exclusive agreement?"
    assert in_store_words("exclusivity, again: exclusivity", known, pieces) == "exclusive, again: exclusive"


def test_a_word_is_left_alone_unless_the_store_mostly_writes_it_in_a_form_the_model_knows_better(
    embedder: SentenceTransformerEmbedder,
) -> None:
    pieces = embedder.pieces
    assert in_store_words(TASK, forms({"exclusivity": 9, "exclusive": 4}), pieces) == TASK  # the store's own word
    assert in_store_words(TASK, forms({"agreement": 3}), pieces) == TASK  # a stem the store lacks
    assert pieces("transferable") < MIN_PIECES  # transfer ##able: the model reads the root
    task = "Are the licences transferable?"
    assert in_store_words(task, forms({"transfer": 20, "transferable": 1}), pieces) == task
    assert in_store_words("", forms({}), pieces) == ""


def test_a_record_keeps_the_words_of_at_least_the_floor_of_its_chunks() -> None:
    counts = TermCounts()
    counts.add([chunk("Exclusive rights, exclusively.", 0), chunk("The exclusive licence.", 1)])
    assert read_counts(counts.words_text()) == {"exclusive": 2, "rights": 1, "exclusively": 1, "licence": 1}
    assert read_counts(counts.text()) == {"exclus": 2, "right": 1, "licenc": 1}  # one stem, counted once a chunk


def test_the_store_word_forms_follow_every_commit(tmp_path: Path, embedder: SentenceTransformerEmbedder) -> None:
    pipeline = make_pipeline(tmp_path, embedder)
    pipeline.ingest([contract(tmp_path)])
    store = pipeline.store
    known = store.word_forms()
    assert dict(known.counts) == stored_words(store)
    assert known.usual[stem("exclusivity")] == "exclusive" and known.counts["exclusive"] == 2
    edited = [*CLAUSES, "Exclusivity ends after two years.", "Exclusivity is reviewed yearly.", "Exclusivity."]
    pipeline.ingest([contract(tmp_path, edited)])
    known = store.word_forms()
    assert dict(known.counts) == stored_words(store)  # the edited version's counts, not the old
    assert known.usual[stem("exclusivity")] == "exclusivity"  # now in 3 chunks against 2
    assert in_store_words(TASK, known, embedder.pieces) == TASK


def test_search_embeds_the_task_in_the_store_words(tmp_path: Path, embedder: SentenceTransformerEmbedder) -> None:
    pipeline = make_pipeline(tmp_path, embedder)
    pipeline.ingest([contract(tmp_path)])
    written = in_store_words(TASK, pipeline.store.word_forms(), embedder.pieces)
    assert written == "Does this contract include an Exclusive agreement?"
    found, expected = pipeline.search(TASK, k=5), pipeline.search(written, k=5)
    assert [hit.chunk.id for hit in found] == [hit.chunk.id for hit in expected]
    assert [hit.score for hit in found] == pytest.approx([hit.score for hit in expected], abs=1e-6)
    vectors = embedder.embed(CLAUSES)  # what the model makes of either wording, before centring and focus
    plain, rewritten = vectors @ embedder.embed_query(TASK), vectors @ embedder.embed_query(written)
    assert rewritten[1] - plain[1] > 0.1 and int(np.argmax(plain)) == 0  # the entire-agreement clause


def test_a_record_without_word_counts_is_read_from_its_chunks_then_relabelled(
    tmp_path: Path, embedder: SentenceTransformerEmbedder
) -> None:
    pipeline = make_pipeline(tmp_path, embedder)
    pipeline.ingest([contract(tmp_path)])
    before = pipeline.store.records()
    known = pipeline.store.word_forms()
    pipeline.store.put_records([replace(record, words="", meta=3) for record in before.values()])
    reopened = make_pipeline(tmp_path, embedder)
    assert not any(record.words for record in reopened.store.records().values())
    assert reopened.store.word_forms() == known
    reopened.ingest([tmp_path / "docs"])
    after = reopened.store.records()
    for source, record in before.items():
        assert after[source].words == record.words and after[source].meta == RECORD_META
