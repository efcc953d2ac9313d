"""The one agent builder every face shares (AgentChat, classic AG2, Agent Framework): the same keywords, the same
profile resolution, the same description rule and the same `on_call`. A face is an `AgentBuilder` around an
adapter; the adapter (the only module that imports its framework) is imported when the first agent is built."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import date
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

from ..errors import ConfigError
from ..payload.history import Summariser
from ..payload.record import ModelCall
from ..pipeline import Pipeline
from .prompter import TaskPrompter

ClientT = TypeVar("ClientT")
AgentT = TypeVar("AgentT")
ClientT_contra = TypeVar("ClientT_contra", contravariant=True)
AgentT_co = TypeVar("AgentT_co", covariant=True)


class Adapter(Protocol[ClientT_contra, AgentT_co]):
    """Builds one framework's agent around a `TaskPrompter` (see `agentchat.py`, `ag2.py`, `agent_framework.py`)."""

    def __call__(
        self,
        prompter: TaskPrompter,
        client: ClientT_contra,
        on_call: Callable[[ModelCall], None] | None = None,
        *,
        summariser: Summariser | None = None,
        **agent_kwargs: Any,
    ) -> AgentT_co: ...


class AgentBuilder(Generic[ClientT, AgentT]):
    """`build_agent(name, client, ...)` for one framework: `load` imports its adapter, `missing` is the message
    when that framework is not installed (None: let the ImportError through), `doc` the face's own docstring."""

    def __init__(self, load: Callable[[], Adapter[ClientT, AgentT]], doc: str, missing: str | None = None) -> None:
        self._load = load
        self._missing = missing
        self.__doc__ = doc

    def __call__(
        self,
        name: str,
        client: ClientT,
        *,
        pipeline: Pipeline | None = None,
        config: str | Path | None = None,
        base_message: str | None = None,
        k: int | None = None,
        budget: int | None = None,
        tags: Sequence[str] | None = None,
        model: str | None = None,
        context_limit: int | None = None,
        reply_reserve: int | None = None,
        history_turns: int | None = None,
        summary_tokens: int | None = None,
        tool_output_tokens: int | None = None,
        summariser: Summariser | None = None,
        task: str | None = None,
        on_call: Callable[[ModelCall], None] | None = None,
        as_of: str | date | None = None,
        pinned: Sequence[str] | None = None,
        **agent_kwargs: Any,
    ) -> AgentT:
        """An agent for the `[agents.NAME]` profile whose system message is composed per task (see the face)."""
        try:
            adapter = self._load()
        except ImportError as error:
            if self._missing is None:
                raise
            raise ConfigError(self._missing) from error
        prompter = TaskPrompter.for_agent(
            name,
            pipeline=pipeline,
            config=config,
            base_message=base_message,
            k=k,
            budget=budget,
            tags=tags,
            model=model,
            context_limit=context_limit,
            reply_reserve=reply_reserve,
            history_turns=history_turns,
            summary_tokens=summary_tokens,
            tool_output_tokens=tool_output_tokens,
            task=task,
            as_of=as_of,
            pinned=None if pinned is None else tuple(pinned),
        )
        agent_kwargs.setdefault("description", prompter.description)  # how a team's selector sees the agent
        return adapter(prompter, client, on_call, summariser=summariser, **agent_kwargs)
