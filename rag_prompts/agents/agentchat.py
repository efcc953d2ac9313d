"""AutoGen AgentChat adapter: a model context that puts one freshly composed system message before the history."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict
from typing import Any

from autogen_agentchat.agents import AssistantAgent
from autogen_core.model_context import ChatCompletionContext, UnboundedChatCompletionContext
from autogen_core.models import (
    AssistantMessage,
    ChatCompletionClient,
    FunctionExecutionResult,
    FunctionExecutionResultMessage,
    LLMMessage,
    SystemMessage,
    UserMessage,
)
from autogen_core.tools import BaseTool, FunctionTool

from ..errors import ConfigError
from ..payload.artifacts import READ_TOOL_DESCRIPTION, READ_TOOL_NAME, ArtifactStore, offload, stored_output_reader
from ..payload.guard import AgentPayload, by_role, tool_definition_tokens
from ..payload.history import Item, Summariser
from ..payload.log import PayloadLog, payload_log
from ..payload.record import ModelCall
from ..records import ComposedPrompt
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
    """Keeps the history in `history` and, on every `get_messages`, returns a payload within the agent's payload
    budget: exactly one system message first (the base message plus the policy chunks for the latest user message,
    composed within its budget), then the history the `HistoryGuard` keeps (see `rag_prompts.payload.history`).

    Tool results over `tool_output_tokens` are stored outside the prompt when they arrive (see `artifacts`), and a
    `ModelCall` is logged (and handed to `on_call`) before every call. System messages added by others (memories,
    handoffs) are dropped with a warning, so none pile up."""

    def __init__(
        self,
        prompter: TaskPrompter,
        history: ChatCompletionContext | None = None,
        on_call: Callable[[ModelCall], None] | None = None,
        *,
        artifacts: ArtifactStore | None = None,
        log: PayloadLog | None = None,
        summariser: Summariser | None = None,
    ) -> None:
        super().__init__()
        self.prompter = prompter
        self.history = history if history is not None else UnboundedChatCompletionContext()
        self.task = ""  # the latest user/task message
        self.payload = AgentPayload(prompter.profile, log or PayloadLog(), summariser, on_call)
        self.counter, self.guard = self.payload.counter, self.payload.guard
        self.artifacts = artifacts
        self.tool_tokens = 0  # the agent's tool definitions, sent with every call (set by the factory)
        self._offloaded: list[str] = []

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
        if isinstance(message, FunctionExecutionResultMessage) and self.artifacts is not None:
            message = FunctionExecutionResultMessage(content=[self._offload(result) for result in message.content])
        await self.history.add_message(message)

    def _offload(self, result: FunctionExecutionResult) -> FunctionExecutionResult:
        assert self.artifacts is not None
        cap = self.prompter.profile.tool_output_tokens
        text, stored = offload(result.content, cap, self.artifacts, self.counter)
        if stored is None:
            return result
        self._offloaded.append(stored.id)
        return result.model_copy(update={"content": text})

    async def get_messages(self) -> list[LLMMessage]:
        history = [message for message in await self.history.get_messages() if not isinstance(message, SystemMessage)]
        prompt = await asyncio.to_thread(self.prompter.prompt_for, self.task)  # retrieval must not block the loop
        items, owners = to_items(history)
        fitted = self.payload.fit(prompt.system_message, items, self.tool_tokens)
        messages: list[LLMMessage] = [SystemMessage(content=prompt.system_message)]
        messages += rebuild(history, owners, dict(fitted.keep), fitted.summary)
        self.payload.sent(
            prompt.system_message,
            items,
            fitted,
            prompt=prompt,
            messages=len(messages),
            tools=self.tool_tokens,
            offloaded=self._offloaded,
        )
        self._offloaded.clear()
        return messages

    async def clear(self) -> None:
        await self.history.clear()
        self.task = ""
        self.guard.reset()

    async def save_state(self) -> Mapping[str, Any]:
        return {
            "history": await self.history.save_state(),
            "summary": self.guard.summary,
            "summarised": self.guard.summarised,
            "anchor": asdict(self.guard.anchor) if self.guard.anchor else None,
        }

    async def load_state(self, state: Mapping[str, Any]) -> None:
        if "history" in state:
            await self.history.load_state(state["history"])
            self.guard.summary, self.guard.summarised = str(state["summary"]), int(state["summarised"])
            anchor = state.get("anchor")
            self.guard.anchor = (
                Item(anchor["role"], anchor["text"], tuple(anchor["calls"]), anchor["answers"]) if anchor else None
            )
        else:  # saved before the history guard existed
            await self.history.load_state(state)
        users = [message for message in await self.history.get_messages() if isinstance(message, UserMessage)]
        self.task = message_text(users[-1]) if users else ""


def to_items(messages: Sequence[LLMMessage]) -> tuple[list[Item], list[tuple[int, int]]]:
    """The history as `Item`s, and for each item its message index and result index (-1: the whole message)."""
    items: list[Item] = []
    owners: list[tuple[int, int]] = []
    for index, message in enumerate(messages):
        if isinstance(message, FunctionExecutionResultMessage):
            for position, result in enumerate(message.content):
                items.append(Item("tool", result.content, answers=result.call_id))
                owners.append((index, position))
            continue
        if isinstance(message, AssistantMessage):
            if isinstance(message.content, str):
                items.append(Item("assistant", message.content))
            else:
                text = "".join(call.name + call.arguments for call in message.content)
                items.append(Item("assistant", text, calls=tuple(call.id for call in message.content)))
        elif isinstance(message, UserMessage):
            items.append(Item("user", message_text(message)))
        else:
            continue
        owners.append((index, -1))
    return items, owners


def rebuild(
    messages: Sequence[LLMMessage], owners: Sequence[tuple[int, int]], keep: Mapping[int, str], summary: str
) -> list[LLMMessage]:
    """The kept messages, in order, with shortened texts where the guard cut them, and the summary after the
    original task (or first, when the task is not kept)."""
    results: dict[int, list[FunctionExecutionResult]] = {}
    kept: dict[int, LLMMessage] = {}
    for item_index, text in sorted(keep.items()):
        message_index, position = owners[item_index]
        message = messages[message_index]
        if isinstance(message, FunctionExecutionResultMessage):
            results.setdefault(message_index, []).append(message.content[position].model_copy(update={"content": text}))
            kept[message_index] = message
        elif isinstance(message, UserMessage | AssistantMessage) and isinstance(message.content, str):
            kept[message_index] = message if message.content == text else message.model_copy(update={"content": text})
        else:
            kept[message_index] = message
    out: list[LLMMessage] = []
    for message_index in sorted(kept):
        message = kept[message_index]
        if message_index in results:
            message = FunctionExecutionResultMessage(content=results[message_index])
        out.append(message)
    if summary:
        note = UserMessage(content=summary, source="rag_prompts")
        first_user = next((i for i, message in enumerate(out) if isinstance(message, UserMessage)), None)
        out.insert(0 if first_user is None else first_user + 1, note)
    return out


def build_agentchat_agent(
    prompter: TaskPrompter,
    client: ChatCompletionClient,
    on_call: Callable[[ModelCall], None] | None = None,
    *,
    summariser: Summariser | None = None,
    **agent_kwargs: Any,
) -> AssistantAgent:
    """An `AssistantAgent` named after the profile whose model context is a `PolicyContext`."""
    for key, why in _REFUSED.items():
        if key in agent_kwargs:
            raise ConfigError(f"build_agent({prompter.name!r}): `{key}` is not accepted: {why}")
    history = agent_kwargs.pop("model_context", None)
    settings = prompter.pipeline.settings
    artifacts = ArtifactStore(settings.artifacts_folder, owner=prompter.name)  # readable by this agent only
    tools = list(agent_kwargs.pop("tools", None) or [])
    if tools or agent_kwargs.get("workbench") is not None:
        # The agent's reply to a team is then its model's answer, not the raw tool output (AgentChat's default,
        # False, sends the raw output on to every other agent in a group chat).
        agent_kwargs.setdefault("reflect_on_tool_use", True)
    if tools:  # only an agent with tools gets tool outputs, so only it needs to read stored ones back
        tools.append(stored_output_tool(artifacts, prompter.profile.tool_output_tokens, prompter.profile.model))
    log = payload_log(settings.payload_log_path)
    context = PolicyContext(prompter, history, on_call, artifacts=artifacts, log=log, summariser=summariser)
    schemas = [
        tool.schema if isinstance(tool, BaseTool) else FunctionTool(tool, tool.__doc__ or "").schema for tool in tools
    ]
    context.tool_tokens = tool_definition_tokens(schemas, context.counter)
    return AssistantAgent(
        prompter.name, client, system_message=None, model_context=context, tools=tools or None, **agent_kwargs
    )


def stored_output_tool(artifacts: ArtifactStore, max_tokens: int, model: str) -> FunctionTool:
    """The tool an agent reads a stored tool output back with, one page (within the tool-output cap) at a time."""
    return FunctionTool(
        stored_output_reader(artifacts, max_tokens, token_counter(model)),
        name=READ_TOOL_NAME,
        description=READ_TOOL_DESCRIPTION,
    )


def payload_items(messages: Sequence[LLMMessage]) -> list[Item]:
    """The messages as a chat API receives them (tool calls as name + JSON arguments, one message per result)."""
    items: list[Item] = []
    for message in messages:
        if isinstance(message, SystemMessage):
            items.append(Item("system", message.content))
        else:
            items.extend(to_items([message])[0])
    return items


def payload_tokens(messages: Sequence[LLMMessage], counter: TokenCounter) -> int:
    """Tokens of the whole payload a model receives for `messages`, message and tool-call overhead included."""
    return by_role(payload_items(messages), counter)[2]
