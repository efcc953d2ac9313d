"""The character-overlap metrics against cases computed by hand."""

from __future__ import annotations

import pytest

from rag_prompts.evaluation.metrics import merge_spans, score_query


def test_overlapping_and_touching_spans_merge() -> None:
    assert merge_spans([("a", 5, 10), ("a", 0, 3), ("a", 3, 4), ("a", 8, 12), ("b", 1, 1)]) == {"a": [(0, 4), (5, 12)]}


def test_hand_computed_recall_precision_hit() -> None:
    gold = [("doc", 100, 200), ("doc", 300, 350)]  # 150 gold characters
    injected = [("doc", 150, 320), ("other", 0, 80), ("doc", 160, 170)]  # 170 + 80 = 250 injected characters
    score = score_query(gold, injected)
    # overlap: 150-200 (50) + 300-320 (20) = 70
    assert score.recall == pytest.approx(70 / 150)
    assert score.precision == pytest.approx(70 / 250)
    assert score.hit == 1.0


def test_same_offsets_in_another_document_do_not_count() -> None:
    score = score_query([("a", 0, 100)], [("b", 0, 100)])
    assert (score.recall, score.precision, score.hit) == (0.0, 0.0, 0.0)


def test_nothing_injected_and_no_gold() -> None:
    assert score_query([("a", 0, 10)], []).precision == 0.0
    assert score_query([], [("a", 0, 10)]).recall == 0.0


def test_full_cover() -> None:
    score = score_query([("a", 10, 20), ("a", 15, 30)], [("a", 0, 40)])
    assert (score.recall, score.precision, score.hit) == (1.0, 20 / 40, 1.0)
