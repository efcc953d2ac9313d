"""The same agent factory for the classic AutoGen API (`from autogen import AssistantAgent`, the AG2 package).

Install it with `pip install 'rag-prompts[classic]'`. AG2 is imported only when an agent is built.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError
from ..payload.artifacts import READ_TOOL_DESCRIPTION, READ_TOOL_NAME
from ..payload.history import Summariser
from ..pipeline import Pipeline
from .prompter import TaskPrompter

if TYPE_CHECKING:
    from autogen import AssistantAgent


def build_agent(
    name: str,
    llm_config: Any,
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
    shared_tool_outputs: bool = False,
    **agent_kwargs: Any,
) -> AssistantAgent:
    """An AG2 `autogen.AssistantAgent` for the `[agents.NAME]` profile, its system message recomposed for the
    latest user message before every reply (the same rules as `rag_prompts.build_agent`). `llm_config` is AG2's
    (a dict or `autogen.LLMConfig`); other keywords go to `AssistantAgent`. The payload is bounded by a
    `TransformMessages` capability with a `PayloadTransform` (the same rules as the AgentChat agents).

    In an AG2 `GroupChat` every message goes to every member, other agents' tool calls and outputs included; the
    agent's model is sent a note in place of each output of another agent's tool call unless `shared_tool_outputs`."""
    try:
        from .ag2 import build_ag2_agent
    except ImportError as error:
        raise ConfigError(
            "the classic AutoGen API needs AG2 0.x (`import autogen`): pip install 'rag-prompts[classic]'"
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
    return build_ag2_agent(
        prompter, llm_config, summariser=summariser, shared_tool_outputs=shared_tool_outputs, **agent_kwargs
    )


def register_stored_output_tool(agent: AssistantAgent, executor: Any) -> None:
    """Give an agent built here the `read_stored_output(output_id, page)` tool, run by `executor` (in AG2 the agent
    that receives a tool call runs it: usually a `UserProxyAgent`). Tool outputs over the agent's
    `tool_output_tokens` are stored outside the prompt; this is how the agent reads them back, page by page."""
    import autogen

    from .ag2 import PolicyAgent, stored_output_reader

    if not isinstance(agent, PolicyAgent):
        raise ConfigError(f"agent {agent.name!r} was not built by rag_prompts.classic.build_agent")
    guard = agent.payload_guard
    reader = stored_output_reader(guard.artifacts, guard.cap, guard.counter.model)
    autogen.register_function(
        reader,
        caller=agent,
        executor=executor,
        name=READ_TOOL_NAME,
        description=READ_TOOL_DESCRIPTION,
    )


__all__ = ["build_agent", "register_stored_output_tool"]
