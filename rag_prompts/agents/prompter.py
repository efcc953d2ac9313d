"""One agent's system messages: its resolved profile plus the task in hand give one budgeted message.

This module knows nothing about AutoGen; the adapters in this package ask it for the message before each model call.
"""

from __future__ import annotations

import threading
from datetime import date
from functools import lru_cache
from pathlib import Path
from typing import Any

from ..config import ResolvedProfile, load_settings
from ..dating import current_as_of, parse_day, today
from ..pipeline import Pipeline
from ..records import ComposedPrompt


@lru_cache(maxsize=8)
def shared_pipeline(config: str | None = None) -> Pipeline:
    """One pipeline per config file, so agents built from the same config share one embedding model and store."""
    return Pipeline(load_settings(config))


class TaskPrompter:
    """Composes an agent's system message for each task; with a fixed `task`, composes once and reuses it.

    The documents used are those in force on the call's date: a `policies_as_of` block around the call, else the
    agent's `as_of`, else today. Pinned sections are resolved and fitted when the prompter is built."""

    def __init__(
        self,
        pipeline: Pipeline,
        profile: ResolvedProfile,
        *,
        task: str | None = None,
        as_of: str | date | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.profile = profile
        self.fixed_task = task
        self.as_of = parse_day(as_of)
        self._lock = threading.Lock()
        self._cached: tuple[tuple[str, date], ComposedPrompt] | None = None
        self.last: ComposedPrompt | None = None  # the message most recently handed to the model
        if task is not None:
            self.prompt_for(task)  # fail at build time, not at the first model call
        else:
            pipeline.check_pins(profile)

    @classmethod
    def for_agent(
        cls,
        name: str,
        *,
        pipeline: Pipeline | None = None,
        config: str | Path | None = None,
        task: str | None = None,
        as_of: str | date | None = None,
        **overrides: Any,
    ) -> TaskPrompter:
        """The prompter for the `[agents.NAME]` profile. `overrides` (`base_message`, `k`, `budget`, `tags`,
        `model`, `pinned`) replace the profile's values where not None."""
        pipeline = pipeline or shared_pipeline(None if config is None else str(Path(config).resolve()))
        return cls(pipeline, pipeline.settings.profile(name, **overrides), task=task, as_of=as_of)

    @property
    def name(self) -> str:
        return self.profile.name

    @property
    def description(self) -> str:
        """The base message's first sentence: how other agents (a team's selector) see this one."""
        sentence, _, _ = self.profile.base_message.strip().partition(". ")
        return sentence if sentence.endswith(".") else sentence + "."

    def prompt_for(self, task: str, as_of: str | date | None = None) -> ComposedPrompt:
        """The system message for `task` (the fixed task, if one was given) on the call's date. The latest one is
        cached."""
        task = self.fixed_task if self.fixed_task is not None else task
        day = parse_day(as_of) or current_as_of() or self.as_of or today()
        with self._lock:
            cached = self._cached
        if cached is not None and cached[0] == (task, day):
            prompt = cached[1]
        else:
            prompt = self.pipeline.compose_for(task, self.profile, as_of=day)
            with self._lock:
                self._cached = ((task, day), prompt)
        self.last = prompt
        return prompt
