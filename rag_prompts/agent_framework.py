"""The same agent factory for Microsoft Agent Framework (`pip install 'rag-prompts[agent-framework]'`,
`import agent_framework`). Agent Framework is imported only when an agent is built."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .agents.prompter import TaskPrompter
from .errors import ConfigError
from .payload.history import Summariser
from .payload.record import ModelCall
from .pipeline import Pipeline

if TYPE_CHECKING:
    from agent_framework import Agent


def build_agent(
    name: str,
    chat_client: Any,
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
    **agent_kwargs: Any,
) -> Agent[Any]:
    """An Agent Framework `Agent` for the `[agents.NAME]` profile (the same rules as `rag_prompts.build_agent`).

    Before every run a context provider adds the instructions composed for the run's latest user message within
    the profile's budget; before every model call a chat middleware keeps the whole payload (instructions, tool
    definitions, history) within `context_limit - reply_reserve` and logs it; tool outputs over
    `tool_output_tokens` are stored outside the prompt and read back with `read_stored_output`. `chat_client` is
    any Agent Framework chat client; other keywords go to `Agent` (tools, context_providers, middleware,
    default_options, ...), except `instructions`."""
    try:
        from .agents.agent_framework import build_af_agent
    except ImportError as error:
        raise ConfigError(
            "Microsoft Agent Framework is not installed (`import agent_framework` failed):"
            " pip install 'rag-prompts[agent-framework]'"
        ) from error
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
    )
    return build_af_agent(prompter, chat_client, on_call, summariser=summariser, **agent_kwargs)


__all__ = ["build_agent"]
