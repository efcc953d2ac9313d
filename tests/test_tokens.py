from __future__ import annotations

import warnings

import pytest

from rag_prompts import TokenCounter, token_counter


def test_special_tokens_are_counted_as_plain_text(counter: TokenCounter) -> None:
    text = "before <|endoftext|> after <|im_start|>system"
    assert counter.count(text) > 5
    assert counter.encoding_name == "cl100k_base"
    assert counter.exact


def test_unknown_model_falls_back_to_offline_cl100k_with_a_warning() -> None:
    with pytest.warns(UserWarning, match="bundled cl100k_base"):
        fallback = token_counter("my-local-llama-70b")
    assert fallback.encoding_name == "cl100k_base"
    assert not fallback.exact
    assert fallback.count("hello world") == 2


def test_model_whose_encoding_cannot_be_downloaded_falls_back_without_crashing() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = token_counter("gpt-4o")  # o200k_base: tiktoken must download it, impossible offline
    if result.encoding_name == "o200k_base":  # a pre-filled TIKTOKEN_CACHE_DIR makes it exact
        assert result.exact
    else:
        assert not result.exact and any("o200k_base" in str(item.message) for item in caught)
    assert result.count("Harbourline Mutual") > 0


@pytest.mark.parametrize("limit", [0, 1, 3, 10, 50])
def test_truncate_returns_the_longest_prefix_within_the_limit(counter: TokenCounter, limit: int) -> None:
    text = "Claims over $60,000 need a Claims Team Leader. " * 5
    cut = counter.truncate(text, limit)
    assert text.startswith(cut)
    assert counter.count(cut) <= limit
    if cut != text:
        assert counter.count(text[: len(cut) + 1]) > limit


@pytest.mark.parametrize("limit", [0, 1, 3, 10, 50, 5000])
def test_truncate_start_returns_the_longest_suffix_within_the_limit(counter: TokenCounter, limit: int) -> None:
    text = "Claims over $60,000 need a Claims Team Leader. " * 400  # long: the search starts from a guess
    cut = counter.truncate_start(text, limit)
    assert text.endswith(cut)
    assert counter.count(cut) <= limit
    if cut != text:
        assert counter.count(text[len(text) - len(cut) - 1 :]) > limit
