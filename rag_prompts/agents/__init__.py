"""Agents: one shared builder (`builder.py`), one adapter per framework (`agentchat.py`, `ag2.py`,
`agent_framework.py`, the only importers of their frameworks) and the faces users call. This module is the
AutoGen AgentChat face; `rag_prompts.classic` (AG2) and `rag_prompts.agent_framework` are the others.
AutoGen is imported only when an agent is built, never on `import rag_prompts`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .builder import Adapter, AgentBuilder
from .prompter import TaskPrompter

if TYPE_CHECKING:
    from autogen_agentchat.agents import AssistantAgent
    from autogen_core.models import ChatCompletionClient


def _agentchat() -> Adapter[ChatCompletionClient, AssistantAgent]:
    from .agentchat import build_agentchat_agent

    return build_agentchat_agent


build_agent: AgentBuilder[ChatCompletionClient, AssistantAgent] = AgentBuilder(
    _agentchat,
    """`build_agent(name, model_client, ...)`: an AutoGen AgentChat `AssistantAgent` for the `[agents.NAME]` profile.

    Before every model call the agent sends exactly one system message, first: its base message plus the policy
    chunks composed for the latest user/task message within its budget. `task=` composes once and reuses the
    message. `base_message`, `k`, `budget`, `tags` and `model` override the profile (`model` names the encoding
    the budget is counted in). Other keywords go to `AssistantAgent` (tools, handoffs, description, ...); a
    `model_context` given there keeps the history and is wrapped. `on_call` is told, before every model call,
    what is sent (a `ModelCall`). `pipeline` defaults to one shared per `config` (default: ./rag_prompts.toml).
    The description defaults to the base message's first sentence.

    The whole payload (system message, history, tool calls and results) stays within the payload budget,
    `context_limit - reply_reserve` (see `rag_prompts.payload.history`): `history_turns`, `summary_tokens`,
    `tool_output_tokens` and `summariser` override the profile's history and tool-output policy.

    An agent given `tools` defaults to `reflect_on_tool_use=True`: in a team, the others then receive its model's
    answer, not the raw tool output (AgentChat's own default sends the raw output to every member's model).""",
)

__all__ = ["AgentBuilder", "TaskPrompter", "build_agent"]
