"""Helpers for the agent tests: reading what a model received, and the sample corpus's document tags."""

from __future__ import annotations

import re
from functools import cache

from rag_prompts import load_document

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
