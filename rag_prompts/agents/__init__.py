"""Agent factories. AutoGen is imported only when an agent is built, never on `import rag_prompts`."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..payload.history import Summariser
from ..payload.record import ModelCall
from ..pipeline import Pipeline
from .prompter import TaskPrompter

if TYPE_CHECKING:
    from autogen_agentchat.agents import AssistantAgent
    from autogen_core.models import ChatCompletionClient


def build_agent(
    name: str,
    model_client: ChatCompletionClient,
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
) -> AssistantAgent:
    """An AutoGen AgentChat `AssistantAgent` for the `[agents.NAME]` profile.

    Before every model call the agent sends exactly one system message, first: its base message plus the policy
    chunks composed for the latest user/task message within its budget. `task=` composes once and reuses the
    message. `base_message`, `k`, `budget`, `tags` and `model` override the profile (`model` names the encoding
    the budget is counted in). Other keywords go to `AssistantAgent` (tools, handoffs, description, ...); a
    `model_context` given there keeps the history and is wrapped. `on_call` is told, before every model call,
    what is sent (a `ModelCall`). `pipeline` defaults to one shared per `config` (default: ./rag_prompts.toml).

    The whole payload (system message, history, tool calls and results) stays within the payload budget,
    `context_limit - reply_reserve` (see `rag_prompts.payload.history`): `history_turns`, `summary_tokens`,
    `tool_output_tokens` and `summariser` override the profile's history and tool-output policy.

    An agent given `tools` defaults to `reflect_on_tool_use=True`: in a team, the others then receive its model's
    answer, not the raw tool output (AgentChat's own default sends the raw output to every member's model).
    """
    from .agentchat import build_agentchat_agent

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
    return build_agentchat_agent(prompter, model_client, on_call, summariser=summariser, **agent_kwargs)


__all__ = ["TaskPrompter", "build_agent"]
