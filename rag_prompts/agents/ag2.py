"""Classic AutoGen adapter (AG2, `import autogen`): the system message is recomposed before each reply through
AG2's own `update_agent_state_before_reply` hook with an `UpdateSystemMessage`."""

# No `from __future__ import annotations` here: AG2 checks that the updater's return annotation *is* `str`.

from typing import Any

from autogen import AssistantAgent, ConversableAgent, UpdateSystemMessage

from ..errors import ConfigError
from .prompter import TaskPrompter


def latest_user_text(messages: list[dict[str, Any]]) -> str:
    """The text of the newest message with role "user" (what the agent is replying to), or "" if none."""
    for message in reversed(messages):
        if message.get("role") != "user":
            continue
        content = message.get("content")
        if isinstance(content, str):
            return content
        if isinstance(content, list):
            return "\n".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
        return ""
    return ""


def build_ag2_agent(prompter: TaskPrompter, llm_config: Any, **agent_kwargs: Any) -> AssistantAgent:
    """An AG2 `AssistantAgent` named after the profile whose system message is composed before every reply."""
    if "system_message" in agent_kwargs:
        raise ConfigError(
            f"build_agent({prompter.name!r}): `system_message` is not accepted: the system message is composed per"
            " task from the agent's profile; set `base_message`"
        )

    def compose_system_message(agent: ConversableAgent, messages: list[dict[str, Any]]) -> str:
        return prompter.prompt_for(latest_user_text(messages)).system_message

    theirs = agent_kwargs.pop("update_agent_state_before_reply", None) or []
    hooks = [UpdateSystemMessage(compose_system_message), *(theirs if isinstance(theirs, list) else [theirs])]
    agent_kwargs.setdefault("description", prompter.profile.base_message)
    return AssistantAgent(
        name=prompter.name,
        system_message=prompter.prompt_for("").system_message,
        llm_config=llm_config,
        update_agent_state_before_reply=hooks,
        **agent_kwargs,
    )
