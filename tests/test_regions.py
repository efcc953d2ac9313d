"""The region lift: a candidate with another strong candidate a few chunks away in its document is lifted above an
isolated candidate of the same score; the document lift: a candidate whose document holds the pool's best matches is
lifted above an equal one from a document that matches only weakly."""

from __future__ import annotations

from pathlib import Path

import pytest

from rag_prompts.embed import SentenceTransformerEmbedder
from rag_prompts.lexical import POOL, rerank
from rag_prompts.records import Chunk, Hit
from rag_prompts.regions import WINDOW, lift

from .conftest import dense_and_weighted, write


def _hit(score: float, ordinal: int, source: str = "a.md") -> Hit:
    chunk = Chunk(f"{source}:{ordinal}", source, "root", "A", "A", 0, 1, "x", 1, "h", "d", ordinal=ordinal)
    return Hit(chunk, score)


def test_a_candidate_beside_a_strong_one_outranks_an_isolated_equal() -> None:
    best, near, alone, floor = _hit(0.80, 10), _hit(0.60, 12), _hit(0.60, 40), _hit(0.40, 70)
    lifted = lift([best, near, alone, floor], 0.1)
    assert [hit.chunk.ordinal for hit in lifted] == [10, 12, 40, 70]
    scores = {hit.chunk.ordinal: hit.score for hit in lifted}
    assert scores[12] == pytest.approx(0.60 + 0.1 * 1.0)  # its neighbour is the pool's best: the whole weight
    assert scores[10] == pytest.approx(0.80 + 0.1 * 0.5)  # (0.60 - 0.40) / (0.80 - 0.40)
    assert scores[40] == 0.60 and scores[70] == 0.40  # nothing within the window


def test_only_the_same_document_within_the_window_counts() -> None:
    hits = [_hit(0.9, 10), _hit(0.5, 10 + WINDOW + 1), _hit(0.5, 11, source="b.md"), _hit(0.1, 99)]
    assert [hit.score for hit in lift(hits, 0.2)] == [0.9, 0.5, 0.5, 0.1]
    edge = lift([_hit(0.9, 10), _hit(0.5, 10 + WINDOW), _hit(0.1, 99)], 0.2)
    assert edge[1].score == pytest.approx(0.5 + 0.2)


def test_a_candidate_of_the_best_matching_document_outranks_an_equal_elsewhere() -> None:
    pool = [_hit(0.8, 10), _hit(0.5, 60), _hit(0.5, 3, "b.md"), _hit(0.45, 7, "b.md"), _hit(0.4, 5, "c.md")]
    lifted = lift(pool, 0.0, 0.2)
    assert [(hit.chunk.source, hit.chunk.ordinal) for hit in lifted][:2] == [("a.md", 10), ("a.md", 60)]
    scores = {(hit.chunk.source, hit.chunk.ordinal): hit.score for hit in lifted}
    assert scores[("a.md", 60)] == pytest.approx(0.5 + 0.2 * 1.0)  # its document holds the pool's best
    assert scores[("b.md", 3)] == pytest.approx(0.5 + 0.2 * 0.25)  # b's best is (0.5 - 0.4) / (0.8 - 0.4)
    assert scores[("b.md", 7)] == pytest.approx(0.45 + 0.2 * 0.25)  # the whole document shares its best
    assert scores[("c.md", 5)] == pytest.approx(0.4)  # c's best is the pool's worst
    both = {(hit.chunk.source, hit.chunk.ordinal): hit.score for hit in lift(pool, 0.1, 0.2)}
    assert both[("b.md", 3)] == pytest.approx(0.5 + 0.1 * (0.05 / 0.4) + 0.2 * 0.25)  # b.md:7 is 4 chunks away
    unplaced = lift([_hit(0.9, -1), _hit(0.5, -1), _hit(0.1, 4)], 0.0, 0.5)
    assert [hit.score for hit in unplaced] == [0.9, 0.5, 0.1 + 0.5 * 0.0]


def test_no_weight_or_no_spread_leaves_the_order() -> None:
    hits = [_hit(0.7, 1), _hit(0.6, 30), _hit(0.5, 2)]
    assert lift(hits, 0.0) == hits
    same = [_hit(0.5, 1), _hit(0.5, 2)]
    assert lift(same, 0.3) == same
    unplaced = [_hit(0.9, -1), _hit(0.5, -1), _hit(0.1, 40)]
    assert [hit.score for hit in lift(unplaced, 0.3)] == [0.9, 0.5, 0.1]


def test_search_applies_the_lift_after_the_lexical_rerank(
    tmp_path: Path, embedder: SentenceTransformerEmbedder
) -> None:
    lines = [f"Clause {n}. Deliveries of batch {n} are inspected on arrival at the depot." for n in range(40)]
    lines[20] = "Clause 20. Deliveries held in quarantine are released by the quarantine officer."
    lines[22] = "Clause 22. The quarantine officer keeps a log of every delivery held."
    dense, both = dense_and_weighted(tmp_path, embedder, lines, lexical_weight=0.05, region_weight=0.02)
    task = "Who releases deliveries held in quarantine?"
    pool = dense.search(task, k=POOL)
    expected = lift(rerank(task, pool, 0.05), 0.02)[:6]
    found = both.search(task, k=6)
    assert [hit.chunk.id for hit in found] == [hit.chunk.id for hit in expected]
    assert [round(hit.score, 5) for hit in found] == [round(hit.score, 5) for hit in expected]
    assert found[0].chunk.text.startswith("Clause 20.")
    assert lift(rerank(task, pool, 0.05), 0.02) != rerank(task, pool, 0.05)  # the lift did change the pool's scores


def test_search_lifts_the_document_the_task_is_about(tmp_path: Path, embedder: SentenceTransformerEmbedder) -> None:
    other = [f"Clause {n}. Vehicles are parked in bay {n} of the yard overnight." for n in range(30)]
    other[12] = "Clause 12. Deliveries are unloaded in the yard after the gate check."
    write(tmp_path / "docs" / "yard.md", "# Yard\n\n" + "\n\n".join(other) + "\n")
    lines = [f"Clause {n}. Deliveries of batch {n} are inspected on arrival at the depot." for n in range(30)]
    lines[20] = "Clause 20. Deliveries held in quarantine are released by the quarantine officer."
    dense, lifted = dense_and_weighted(tmp_path, embedder, lines, region_weight=0.02, document_weight=0.2)
    task = "Where are deliveries unloaded?"
    pool = dense.search(task, k=POOL)
    assert pool[1].chunk.source == "yard.md"  # by dense score alone the yard's one match is second
    found = lifted.search(task, k=6)
    assert [hit.chunk.id for hit in found] == [hit.chunk.id for hit in lift(pool, 0.02, 0.2)[:6]]
    assert all(hit.chunk.source == "deliveries.md" for hit in found)  # lifted, the depot's strong chunks lead
