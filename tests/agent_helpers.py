"""Helpers for the agent tests: reading what a model received, and the sample corpus's document tags."""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import cache

from rag_prompts.loaders import load_document
from rag_prompts.payload import Item

from .conftest import CORPUS

_POLICY_SOURCE = re.compile(r'<policy source="([^"]*)"')


def sources_in(system_message: str) -> list[str]:
    """The documents whose excerpts a composed system message carries."""
    return _POLICY_SOURCE.findall(system_message)


@cache
def corpus_tags() -> dict[str, frozenset[str]]:
    """Each sample document's tags, read by the loader straight from the files."""
    tags: dict[str, frozenset[str]] = {}
    for path in sorted(CORPUS.rglob("*")):
        if path.is_file() and path.suffix in {".md", ".txt", ".html"}:
            document = load_document(path, CORPUS)
            tags[document.source] = frozenset(document.tags)
    return tags


def assert_no_orphans(items: Sequence[Item]) -> None:
    """Each tool result follows the call it answers; each call is followed by all its results."""
    for index, item in enumerate(items):
        if item.role == "tool":
            assert any(item.answers in other.calls for other in items[:index]), f"orphaned result {index}"
        for call in item.calls:
            assert any(other.answers == call for other in items[index + 1 :]), f"call {call} without its result"
