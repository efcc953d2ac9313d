"""The lexical rerank: BM25 over the dense candidates lifts chunks that use the task's own words."""

from __future__ import annotations

from pathlib import Path

from rag_prompts.embed import SentenceTransformerEmbedder
from rag_prompts.lexical import POOL, bm25, rerank, terms
from rag_prompts.records import Chunk, Hit

from .conftest import dense_and_weighted


def _hit(text: str, score: float, n: int) -> Hit:
    chunk = Chunk(f"c{n}", "s.md", "root", "S", "S > Part", 0, len(text), text, 5, "h", "d", ordinal=n)
    return Hit(chunk, score)


def test_terms_drop_function_words_and_one_letter_words_and_are_stemmed() -> None:
    assert terms("What is the Governing Law of a contract?") == ["govern", "law", "contract"]
    assert terms("Is there a non-compete clause?") == ["non", "compet", "claus"]
    assert terms("competing") == terms("compete") == terms("competes") == ["compet"]
    assert terms("collected collection") == ["collect", "collect"]


def test_bm25_matches_other_inflections_of_the_task_words() -> None:
    texts = ["The distributor shall not sell competing products.", "The distributor sells products in Ohio."]
    scores = bm25("Is there a non-compete clause?", texts)
    assert scores[0] > 0 and scores[1] == 0.0


def test_bm25_prefers_rare_query_words_and_shorter_texts() -> None:
    texts = [
        "The supplier delivers goods on time.",
        "The supplier delivers goods under the governing law of Delaware.",
        "The supplier delivers goods under the governing law of Delaware, and the supplier keeps its records "
        "of every delivery for six years after the end of the term of this agreement.",
    ]
    scores = bm25("Which governing law applies?", texts)
    assert scores[0] == 0.0  # none of the task's words
    assert scores[1] > scores[2] > 0  # the same matches count more in the shorter text
    assert bm25("the of and", texts) == [0.0, 0.0, 0.0]  # function words alone match nothing


def test_rerank_adds_the_scaled_lexical_score_and_reorders() -> None:
    hits = [_hit("Deliveries are made weekly.", 0.60, 0), _hit("Audit rights: once a year.", 0.58, 1)]
    lifted = rerank("What are the audit rights?", hits, 0.05)
    assert [hit.chunk.id for hit in lifted] == ["c1", "c0"]
    assert lifted[0].score == 0.58 + 0.05  # the pool's best lexical match gets the whole weight
    assert lifted[1].score == 0.60
    assert rerank("What are the audit rights?", hits, 0.0) == hits


def test_search_reorders_the_dense_pool_by_the_task_words(
    tmp_path: Path, embedder: SentenceTransformerEmbedder
) -> None:
    lines = [f"Clause {n}. Deliveries of batch {n} are inspected on arrival at the depot." for n in range(30)]
    lines[17] = "Clause 17. Deliveries of batch 17 are inspected by the quarantine officer at the depot."
    dense, mixed = dense_and_weighted(tmp_path, embedder, lines, lexical_weight=0.05)
    task = "Who is the quarantine officer for deliveries?"
    pool = dense.search(task, k=POOL)
    expected = rerank(task, pool, 0.05)[:5]
    found = mixed.search(task, k=5)
    assert [hit.chunk.id for hit in found] == [hit.chunk.id for hit in expected]
    assert found[0].chunk.text.startswith("Clause 17.")
    assert [round(hit.score, 5) for hit in found] == [round(hit.score, 5) for hit in expected]
