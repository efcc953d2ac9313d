"""The Microsoft Agent Framework face (`pip install 'rag-prompts[agent-framework]'`, `import agent_framework`): the
same builder as `rag_prompts.build_agent`. Agent Framework is imported only when an agent is built."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .agents.builder import Adapter, AgentBuilder

if TYPE_CHECKING:
    from agent_framework import Agent


def _agent_framework() -> Adapter[Any, Agent[Any]]:
    from .agents.agent_framework import build_af_agent

    return build_af_agent


build_agent: AgentBuilder[Any, Agent[Any]] = AgentBuilder(
    _agent_framework,
    """`build_agent(name, chat_client, ...)`: an Agent Framework `Agent` for the `[agents.NAME]` profile, with the
    same keywords and rules as `rag_prompts.build_agent`.

    Before every run a context provider adds the instructions composed for the run's latest user message within
    the profile's budget; before every model call a chat middleware keeps the whole payload (instructions, tool
    definitions, history) within `context_limit - reply_reserve`, logs it and tells `on_call`; tool outputs over
    `tool_output_tokens` are stored outside the prompt and read back with `read_stored_output`. `chat_client` is
    any Agent Framework chat client; other keywords go to `Agent` (tools, context_providers, middleware,
    default_options, ...), except `instructions`.""",
    missing="Microsoft Agent Framework is not installed (`import agent_framework` failed):"
    " pip install 'rag-prompts[agent-framework]'",
)

__all__ = ["build_agent"]
