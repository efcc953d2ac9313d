"""Prompt templates shipped as package data (`rag_prompts/prompts/NAME.txt`): the base message, the header, the
chunk block. The settings default to them and `compose` falls back to them, so neither reads the other."""

from __future__ import annotations

from functools import cache
from importlib import resources


@cache
def packaged_prompt(name: str) -> str:
    """A prompt template shipped with the package (`rag_prompts/prompts/NAME.txt`)."""
    return resources.files("rag_prompts").joinpath("prompts", f"{name}.txt").read_text("utf-8").strip()
