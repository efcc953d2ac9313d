"""Query centring: the store's mean chunk vector is kept exactly in the document records, and the search takes the
centring weight x that mean off the query."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from rag_prompts.centring import centred, decode
from rag_prompts.embed import SentenceTransformerEmbedder
from rag_prompts.lexical import POOL, rerank
from rag_prompts.pipeline import Pipeline
from rag_prompts.regions import lift
from rag_prompts.store import ChunkStore

from .conftest import make_pipeline, write

DESKS = {
    "claims": "Claims above the limit are approved by the claims manager before payment.",
    "refunds": "Refunds are paid to the original card within ten working days of approval.",
    "travel": "Travel is booked through the travel desk and approved by the line manager.",
}


def policies(tmp_path: Path, edited: str = "") -> Path:
    for name, rule in DESKS.items():
        extra = f"\n\n{edited}" if edited and name == "claims" else ""
        body = "\n\n".join(f"Rule {n}. {rule} Section {n} of the {name} policy applies." for n in range(12))
        write(tmp_path / "docs" / f"{name}.md", f"# {name.title()} policy\n\n{body}{extra}\n")
    return tmp_path / "docs"


def stored_mean(store: ChunkStore) -> np.ndarray:
    """The mean of every visible stored vector, read straight from the collection."""
    page = store._collection.get(include=["embeddings", "metadatas"])
    committed = {source: record.doc_hash for source, record in store.committed().items()}
    vectors = [
        np.asarray(vector, dtype=np.float64)
        for vector, metadata in zip(page["embeddings"], page["metadatas"], strict=True)
        if committed.get(metadata["source"]) == json.loads(metadata["chunk"])["doc_hash"]
    ]
    return np.mean(vectors, axis=0)


def test_centred_takes_the_mean_off_and_keeps_unit_length() -> None:
    vector, mean = np.array([0.6, 0.8, 0.0], dtype=np.float32), np.array([0.0, 0.5, 0.5])
    got = centred(vector, mean, 0.4)
    expected = np.array([0.6, 0.6, -0.2]) / np.linalg.norm([0.6, 0.6, -0.2])
    assert np.allclose(got, expected, atol=1e-6) and got.dtype == np.float32
    assert centred(vector, None, 0.4) is vector and centred(vector, mean, 0.0) is vector


def test_the_store_mean_follows_every_commit(tmp_path: Path, embedder: SentenceTransformerEmbedder) -> None:
    pipeline = make_pipeline(tmp_path, embedder)
    pipeline.ingest([policies(tmp_path)])
    store = pipeline.store
    assert np.allclose(store.mean_vector(), stored_mean(store), atol=1e-6)
    pipeline.ingest([policies(tmp_path, edited="Rule 99. Claims under fifty pounds are paid at once.")])
    assert np.allclose(store.mean_vector(), stored_mean(store), atol=1e-6)  # the edited version's sum, not the old
    (tmp_path / "docs" / "travel.md").unlink()
    pipeline.ingest([tmp_path / "docs"])
    assert set(store.committed()) == {"claims.md", "refunds.md"}
    assert np.allclose(store.mean_vector(), stored_mean(store), atol=1e-6)


def test_a_record_without_a_sum_term_or_word_counts_is_read_from_its_chunks_then_relabelled(
    tmp_path: Path, embedder: SentenceTransformerEmbedder
) -> None:
    pipeline = make_pipeline(tmp_path, embedder)
    pipeline.ingest([policies(tmp_path)])
    mean, shares, words = pipeline.store.mean_vector(), pipeline.store.term_shares(), pipeline.store.word_forms()
    before = pipeline.store.records()
    older = [replace(record, vector_sum="", terms="", words="", meta=1) for record in before.values()]
    pipeline.store.put_records(older)
    reopened = make_pipeline(tmp_path, embedder)
    assert not any(record.vector_sum or record.terms or record.words for record in reopened.store.records().values())
    assert np.allclose(reopened.store.mean_vector(), mean, atol=1e-6)
    assert reopened.store.term_shares() == pytest.approx(shares)  # the focus's term shares (see test_focus)
    assert reopened.store.word_forms() == words  # and the word forms (see test_wording)
    report = reopened.ingest([tmp_path / "docs"])
    assert sorted(report.unchanged) == sorted(before)
    after = reopened.store.records()
    for source, record in before.items():
        assert np.allclose(decode(after[source].vector_sum), decode(record.vector_sum), atol=1e-5)
        assert after[source].terms == record.terms and after[source].meta == record.meta
        assert after[source].words == record.words


def test_search_ranks_by_the_centred_query(tmp_path: Path, embedder: SentenceTransformerEmbedder) -> None:
    plain = make_pipeline(tmp_path, embedder, lexical_weight=0.05, region_weight=0.02, document_weight=0.2,
                          centring_weight=0.0, focus_weight=0.0)  # fmt: skip
    plain.ingest([policies(tmp_path)])
    centring = Pipeline(plain.settings.model_copy(update={"centring_weight": 0.5}), embedder=embedder,
                        store=plain.store)  # fmt: skip
    task = "Who approves a claim above the limit?"
    vector = centred(embedder.embed_query(task), plain.store.mean_vector(), 0.5)
    pool = plain.store.query(vector, POOL)
    expected = lift(rerank(task, pool, 0.05), 0.02, 0.2)[:8]
    found = centring.search(task, k=8)
    assert [hit.chunk.id for hit in found] == [hit.chunk.id for hit in expected]
    assert [hit.score for hit in found] == pytest.approx([hit.score for hit in expected], abs=1e-5)
    uncentred = plain.search(task, k=8)
    assert [round(hit.score, 4) for hit in found] != [round(hit.score, 4) for hit in uncentred]
    assert found[0].chunk.source == "claims.md"
