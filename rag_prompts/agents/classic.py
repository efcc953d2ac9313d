"""The classic AutoGen API face (`from autogen import AssistantAgent`, the AG2 package): the same builder as
`rag_prompts.build_agent`. Install it with `pip install 'rag-prompts[classic]'`; AG2 is imported only when an
agent is built. `rag_prompts.classic` re-exports this module."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .builder import Adapter, AgentBuilder

if TYPE_CHECKING:
    from autogen import AssistantAgent


def _ag2() -> Adapter[Any, AssistantAgent]:
    from .ag2 import build_ag2_agent

    return build_ag2_agent


build_agent: AgentBuilder[Any, AssistantAgent] = AgentBuilder(
    _ag2,
    """`build_agent(name, llm_config, ...)`: an AG2 `autogen.AssistantAgent` for the `[agents.NAME]` profile.

    Its system message is recomposed for the latest user message before every reply, with the same keywords and
    rules as `rag_prompts.build_agent` (`on_call` included). `llm_config` is AG2's (a dict or `autogen.LLMConfig`);
    other keywords go to `AssistantAgent`. The payload is bounded by a `TransformMessages` capability with a
    `PayloadTransform` (the same rules as the AgentChat agents).

    In an AG2 `GroupChat` every message goes to every member, other agents' tool calls and outputs included; the
    agent's model is sent a note in place of each output of another agent's tool call unless
    `shared_tool_outputs=True` is passed.""",
    missing="the classic AutoGen API needs AG2 0.x (`import autogen`): pip install 'rag-prompts[classic]'",
)


def register_stored_output_tool(agent: AssistantAgent, executor: Any) -> None:
    """Give an agent built here the `read_stored_output(output_id, page)` tool, run by `executor` (in AG2 the agent
    that receives a tool call runs it: usually a `UserProxyAgent`). Tool outputs over the agent's
    `tool_output_tokens` are stored outside the prompt; this is how the agent reads them back, page by page."""
    from .ag2 import register_stored_output_reader

    register_stored_output_reader(agent, executor)


__all__ = ["build_agent", "register_stored_output_tool"]
