"""Query focus: the task's token embeddings are pooled over its words that are rare in the store, and the search
vector leans towards them. The store's term shares are kept in the document records and follow every commit."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from rag_prompts.centring import centred
from rag_prompts.embed import SentenceTransformerEmbedder
from rag_prompts.focus import FLOOR, RUNGS, TermCounts, focus_parts, focus_spans, focused, read_counts
from rag_prompts.lexical import POOL, rerank, terms
from rag_prompts.pipeline import Pipeline
from rag_prompts.records import Chunk
from rag_prompts.regions import lift
from rag_prompts.store import ChunkStore

from .conftest import make_pipeline
from .test_centring import policies


def stored_shares(store: ChunkStore) -> dict[str, float]:
    """The share of the visible stored chunks each stemmed term occurs in, read straight from the collection."""
    page = store._collection.get(include=["documents", "metadatas"])
    committed = {source: record.doc_hash for source, record in store.committed().items()}
    found: Counter[str] = Counter()
    count = 0
    for text, metadata in zip(page["documents"], page["metadatas"], strict=True):
        fields = json.loads(metadata["chunk"])
        if committed.get(metadata["source"]) == fields["doc_hash"]:
            found.update(set(terms(f"{fields['section']} {text}")))
            count += 1
    return {term: n / count for term, n in found.items()}


def chunk(text: str, ordinal: int = 0) -> Chunk:
    return Chunk(id=f"c{ordinal}", source="a.md", root="", title="A", section="A", start=0, end=len(text),
                 text=text, tokens=8, content_hash="h", doc_hash="d", ordinal=ordinal)  # fmt: skip


def words_of(task: str, rungs: list[list[tuple[int, int]]]) -> list[str]:
    return [" ".join(task[a:b] for a, b in spans) for spans in rungs]


def test_each_rung_keeps_the_task_words_rarer_than_its_share() -> None:
    shares = {"agreement": 0.3, "polici": 0.08, "contract": 0.04, "exclus": 0.02, "includ": 0.011}
    task = "Does this contract include an exclusivity agreement under the policy?"
    assert RUNGS == (0.1, 0.05, 0.025, 0.0125)
    assert words_of(task, focus_spans(task, shares)) == [
        "contract include exclusivity policy",  # under 10%: all but "agreement" (and the stop words)
        "contract include exclusivity",
        "include exclusivity",
        "include",  # in 1.1% of the chunks: the rarest word is in every rung, four times in the mean
    ]
    assert focus_spans("Does this agreement apply?", {"agreement": 0.3, "appli": 0.2}) == []


def test_each_rung_pools_the_tokens_of_its_words() -> None:
    task = "Is exclusivity agreed?"  # tokens: [CLS] is exclusivity agreed ? [SEP], one row each
    offsets = [(0, 0), (0, 2), (3, 14), (15, 21), (21, 22), (0, 0)]
    tokens = np.array([[9.0, 9.0], [5.0, 5.0], [1.0, 0.0], [0.0, 2.0], [7.0, 7.0], [9.0, 9.0]])
    shares = {"exclus": 0.01, "agre": 0.07}
    parts = focus_parts(task, tokens, offsets, shares)
    both = np.array([0.5, 1.0]) / np.linalg.norm([0.5, 1.0])  # the mean of the two words' rows, unit length
    assert len(parts) == 4
    assert np.allclose(parts[0], both) and np.allclose(parts[1], [1.0, 0.0]) and np.allclose(parts[3], [1.0, 0.0])
    assert focus_parts(task, tokens, offsets, {"exclus": 0.5, "agre": 0.5}) == []


def test_a_record_keeps_the_terms_of_at_least_the_floor_of_its_chunks() -> None:
    counts = TermCounts()
    counts.add([chunk("Claims are approved by the manager.", 0), chunk("Refunds go to the card.", 1)])
    assert read_counts(counts.text()) == {"claim": 1, "approv": 1, "manag": 1, "refund": 1, "go": 1, "card": 1}
    large = TermCounts()
    rows = int(2 / FLOOR)  # 400 chunks: a term must be in 2 of them
    large.add([chunk("Claims are paid.", n) for n in range(rows - 1)] + [chunk("A rare refund.", rows - 1)])
    kept = read_counts(large.text())
    assert kept == {"claim": rows - 1, "paid": rows - 1} and large.chunks == rows  # "rare", "refund": once


def test_focused_leans_towards_the_mean_focus_vector() -> None:
    vector = np.array([1.0, 0.0, 0.0], dtype=np.float32)
    parts = [np.array([0.0, 1.0, 0.0]), np.array([0.0, 0.6, 0.8])]
    got = focused(vector, parts, None, 0.5, 0.8)
    mean = np.mean(parts, axis=0) / np.linalg.norm(np.mean(parts, axis=0))
    expected = (vector + 0.8 * mean) / np.linalg.norm(vector + 0.8 * mean)
    assert np.allclose(got, expected, atol=1e-6) and got.dtype == np.float32
    assert focused(vector, [], None, 0.5, 0.8) is vector and focused(vector, parts, None, 0.5, 0.0) is vector


def test_the_store_term_shares_follow_every_commit(tmp_path: Path, embedder: SentenceTransformerEmbedder) -> None:
    pipeline = make_pipeline(tmp_path, embedder)
    pipeline.ingest([policies(tmp_path)])
    store = pipeline.store
    assert store.term_shares() == pytest.approx(stored_shares(store))
    pipeline.ingest([policies(tmp_path, edited="Rule 99. Claims under fifty pounds are paid at once.")])
    assert store.term_shares() == pytest.approx(stored_shares(store))  # the edited version's counts, not the old
    assert "pound" in store.term_shares()
    (tmp_path / "docs" / "travel.md").unlink()
    pipeline.ingest([tmp_path / "docs"])
    assert set(store.committed()) == {"claims.md", "refunds.md"} and "travel" not in store.term_shares()
    assert store.term_shares() == pytest.approx(stored_shares(store))


def test_search_ranks_by_the_focused_query(tmp_path: Path, embedder: SentenceTransformerEmbedder) -> None:
    weights = {"lexical_weight": 0.05, "region_weight": 0.02, "document_weight": 0.2, "centring_weight": 0.5}
    plain = make_pipeline(tmp_path, embedder, **weights, focus_weight=0.0)
    plain.ingest([policies(tmp_path, edited="Rule 99. Storm damage to a greenhouse is paid by the estates team.")])
    focusing = Pipeline(plain.settings.model_copy(update={"focus_weight": 1.2}), embedder=embedder,
                        store=plain.store)  # fmt: skip
    task = "Under the claims policy, who pays for storm damage to a greenhouse?"
    shares = plain.store.term_shares()
    # "claims" and "policy" are in many of the 37 chunks: no rung keeps them; "storm damage greenhouse" are in one
    # (2.7%), so the two rungs above that share keep them; "pays" is in none (the store says "paid")
    assert words_of(task, focus_spans(task, shares)) == ["pays storm damage greenhouse"] * 2 + ["pays"] * 2
    encoding = embedder.encode_query(task)
    mean = plain.store.mean_vector()
    parts = focus_parts(task, encoding.tokens, encoding.offsets, shares)
    vector = focused(centred(encoding.vector, mean, 0.5), parts, mean, 0.5, 1.2)
    expected = lift(rerank(task, plain.store.query(vector, POOL), 0.05), 0.02, 0.2)[:8]
    found = focusing.search(task, k=8)
    assert [hit.chunk.id for hit in found] == [hit.chunk.id for hit in expected]
    assert [hit.score for hit in found] == pytest.approx([hit.score for hit in expected], abs=1e-5)
    unfocused = plain.search(task, k=8)
    assert [round(hit.score, 4) for hit in found] != [round(hit.score, 4) for hit in unfocused]
    assert "greenhouse" in found[0].chunk.text


@pytest.mark.parametrize("backend", ["onnx", "torch"])
def test_a_query_encoding_is_the_vector_and_its_token_embeddings(backend: str) -> None:
    embedder = SentenceTransformerEmbedder("all-MiniLM-L6-v2", device="cpu", backend=backend)
    task = "Who approves a claim above the limit?"
    encoding = embedder.encode_query(task)
    assert embedder.embed_query(task) is encoding.vector  # cached: one forward pass serves both
    assert np.allclose(encoding.vector, embedder.embed([task])[0], atol=1e-5)
    assert encoding.tokens.shape == (len(encoding.offsets), embedder.dimension)
    pooled = encoding.tokens.mean(axis=0)
    assert np.allclose(pooled / np.linalg.norm(pooled), encoding.vector, atol=1e-5)  # mean pooling, normalised
    words = {task[a:b] for a, b in encoding.offsets if b > a}
    assert {"approve", "claim", "limit"} <= words or {"approves", "claim", "limit"} <= words
