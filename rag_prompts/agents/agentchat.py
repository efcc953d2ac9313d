"""AutoGen AgentChat adapter: a model context that puts one freshly composed system message before the history."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from autogen_agentchat.agents import AssistantAgent
from autogen_core.model_context import ChatCompletionContext, UnboundedChatCompletionContext
from autogen_core.models import (
    AssistantMessage,
    ChatCompletionClient,
    FunctionExecutionResultMessage,
    LLMMessage,
    SystemMessage,
    UserMessage,
)

from ..errors import ConfigError
from ..records import ComposedPrompt, ModelCall
from ..tokens import TokenCounter, token_counter
from .prompter import TaskPrompter

logger = logging.getLogger("rag_prompts.agents")

_REFUSED = {
    "system_message": "the system message is composed per task from the agent's profile; set `base_message`",
    "memory": "memories add extra system messages after the history; the agent's policy chunks replace them",
}


def message_text(message: UserMessage) -> str:
    """The text of a user message (image parts are skipped)."""
    if isinstance(message.content, str):
        return message.content
    return "\n".join(part for part in message.content if isinstance(part, str))


class PolicyContext(ChatCompletionContext):
    """Keeps the history in `history` and, on every `get_messages`, puts exactly one system message first: the
    agent's base message plus the policy chunks for the latest user message, composed within its budget.

    System messages added by others (memories, handoffs) are dropped with a warning, so none pile up."""

    def __init__(
        self,
        prompter: TaskPrompter,
        history: ChatCompletionContext | None = None,
        on_call: Callable[[ModelCall], None] | None = None,
    ) -> None:
        super().__init__()
        self.prompter = prompter
        self.history = history if history is not None else UnboundedChatCompletionContext()
        self.on_call = on_call  # told what is sent, before every model call
        self.task = ""  # the latest user/task message

    @property
    def name(self) -> str:
        return self.prompter.name

    @property
    def last_prompt(self) -> ComposedPrompt | None:
        """The system message most recently handed to the model, with its chunks and token count."""
        return self.prompter.last

    async def add_message(self, message: LLMMessage) -> None:
        if isinstance(message, SystemMessage):
            logger.warning("%s: dropped an extra system message; the policy message is the only one", self.name)
            return
        if isinstance(message, UserMessage):
            self.task = message_text(message)
        await self.history.add_message(message)

    async def get_messages(self) -> list[LLMMessage]:
        history = [message for message in await self.history.get_messages() if not isinstance(message, SystemMessage)]
        prompt = await asyncio.to_thread(self.prompter.prompt_for, self.task)  # retrieval must not block the loop
        messages: list[LLMMessage] = [SystemMessage(content=prompt.system_message), *history]
        if self.on_call is not None:
            tokens = payload_tokens(messages, token_counter(self.prompter.profile.model))
            self.on_call(ModelCall(self.name, prompt, len(messages), tokens))
        return messages

    async def clear(self) -> None:
        await self.history.clear()
        self.task = ""

    async def save_state(self) -> Mapping[str, Any]:
        return await self.history.save_state()

    async def load_state(self, state: Mapping[str, Any]) -> None:
        await self.history.load_state(state)
        users = [message for message in await self.history.get_messages() if isinstance(message, UserMessage)]
        self.task = message_text(users[-1]) if users else ""


def build_agentchat_agent(
    prompter: TaskPrompter,
    model_client: ChatCompletionClient,
    on_call: Callable[[ModelCall], None] | None = None,
    **agent_kwargs: Any,
) -> AssistantAgent:
    """An `AssistantAgent` named after the profile whose model context is a `PolicyContext`."""
    for key, why in _REFUSED.items():
        if key in agent_kwargs:
            raise ConfigError(f"build_agent({prompter.name!r}): `{key}` is not accepted: {why}")
    history = agent_kwargs.pop("model_context", None)
    agent_kwargs.setdefault("description", first_sentence(prompter.profile.base_message))
    return AssistantAgent(
        prompter.name,
        model_client,
        system_message=None,
        model_context=PolicyContext(prompter, history, on_call),
        **agent_kwargs,
    )


def first_sentence(text: str) -> str:
    sentence, _, _ = text.strip().partition(". ")
    return sentence if sentence.endswith(".") else sentence + "."


def payload_messages(messages: Sequence[LLMMessage]) -> list[tuple[str, str]]:
    """The (role, text) pairs a chat API receives for `messages`: tool calls as name + JSON arguments, one
    message per tool result."""
    pairs: list[tuple[str, str]] = []
    for message in messages:
        if isinstance(message, SystemMessage):
            pairs.append(("system", message.content))
        elif isinstance(message, UserMessage):
            pairs.append(("user", message_text(message)))
        elif isinstance(message, AssistantMessage):
            if isinstance(message.content, str):
                pairs.append(("assistant", message.content))
            else:
                pairs.append(("assistant", "".join(call.name + call.arguments for call in message.content)))
        elif isinstance(message, FunctionExecutionResultMessage):
            pairs.extend(("tool", result.content) for result in message.content)
    return pairs


def payload_tokens(messages: Sequence[LLMMessage], counter: TokenCounter) -> int:
    """Tokens of the whole payload a model receives for `messages`, message overhead included."""
    return counter.count_chat(payload_messages(messages))
