"""One agent's system messages: its resolved profile plus the task in hand give one budgeted message.

This module knows nothing about AutoGen; the adapters in this package ask it for the message before each model call.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

from ..config import ResolvedProfile, load_settings
from ..pipeline import Pipeline
from ..records import ComposedPrompt


@lru_cache(maxsize=8)
def shared_pipeline(config: str | None = None) -> Pipeline:
    """One pipeline per config file, so agents built from the same config share one embedding model and store."""
    return Pipeline(load_settings(config))


class TaskPrompter:
    """Composes an agent's system message for each task; with a fixed `task`, composes once and reuses it."""

    def __init__(self, pipeline: Pipeline, profile: ResolvedProfile, *, task: str | None = None) -> None:
        self.pipeline = pipeline
        self.profile = profile
        self.fixed_task = task
        self._lock = threading.Lock()
        self._cached: tuple[str, ComposedPrompt] | None = None
        self.last: ComposedPrompt | None = None  # the message most recently handed to the model
        if task is not None:
            self.prompt_for(task)  # fail at build time, not at the first model call

    @classmethod
    def for_agent(
        cls,
        name: str,
        *,
        pipeline: Pipeline | None = None,
        config: str | Path | None = None,
        base_message: str | None = None,
        k: int | None = None,
        budget: int | None = None,
        tags: Sequence[str] | None = None,
        model: str | None = None,
        task: str | None = None,
    ) -> TaskPrompter:
        """The prompter for the `[agents.NAME]` profile, with keyword overrides (None keeps the profile's value)."""
        pipeline = pipeline or shared_pipeline(None if config is None else str(Path(config).resolve()))
        profile = pipeline.settings.profile(
            name,
            base_message=base_message,
            k=k,
            budget=budget,
            tags=None if tags is None else tuple(tags),
            model=model,
        )
        return cls(pipeline, profile, task=task)

    @property
    def name(self) -> str:
        return self.profile.name

    def prompt_for(self, task: str) -> ComposedPrompt:
        """The system message for `task` (the fixed task, if one was given). The latest one is cached."""
        task = self.fixed_task if self.fixed_task is not None else task
        with self._lock:
            cached = self._cached
        if cached is not None and cached[0] == task:
            prompt = cached[1]
        else:
            prompt = self.pipeline.compose_for(task, self.profile)
            with self._lock:
                self._cached = (task, prompt)
        self.last = prompt
        return prompt
