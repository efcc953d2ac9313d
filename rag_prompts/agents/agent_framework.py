"""Microsoft Agent Framework adapter (`agent-framework-core`, `import agent_framework`).

Three Agent Framework parts, each doing what its kind is meant for:

- `PolicyProvider`, a `ContextProvider`: before each run it adds the instructions composed for the run's task
  (its latest user message) within the profile's budget. A `SessionContext` is new for every run, so nothing
  piles up; the session keeps only the task text.
- `PayloadGuard`, chat middleware: it runs before every model call (each round of a tool loop too) and sees what
  is about to be sent, instructions and tool definitions included. It keeps the messages within the payload budget
  by the rules of `rag_prompts.payload.history` and logs the per-call record. What it leaves out is left out of
  that call only: the session's history stays whole.
- `StoredOutputs`, function middleware: a tool output over `tool_output_tokens` is stored outside the prompt and
  replaced by a reference before it enters the history; the agent reads it back with `read_stored_output`.
"""

from __future__ import annotations

import asyncio
import copy
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import asdict
from typing import Any

from agent_framework import (
    Agent,
    AgentSession,
    BaseChatClient,
    ChatContext,
    ChatMiddleware,
    ChatMiddlewareLayer,
    ChatResponse,
    ChatResponseUpdate,
    Content,
    ContextProvider,
    FunctionInvocationContext,
    FunctionInvocationLayer,
    FunctionMiddleware,
    FunctionTool,
    Message,
    ResponseStream,
    SessionContext,
    SupportsAgentRun,
    SupportsChatGetResponse,
)
from agent_framework.observability import ChatTelemetryLayer

from ..errors import ConfigError
from ..payload.artifacts import READ_TOOL_DESCRIPTION, READ_TOOL_NAME, ArtifactStore, offload, stored_output_reader
from ..payload.guard import AgentPayload, tool_definition_tokens
from ..payload.history import Item, Summariser
from ..payload.log import payload_log
from ..payload.record import ModelCall
from ..tokens import token_counter
from .prompter import TaskPrompter

logger = logging.getLogger("rag_prompts.agents")

_REFUSED = {
    "instructions": "the instructions are composed per task from the agent's profile; set `base_message`",
}


def latest_user_text(messages: Sequence[Message]) -> str | None:
    """The text of the newest user message with text (not an approval or an image alone), or None."""
    for message in reversed(messages):
        if message.role == "user" and message.text.strip():
            return message.text
    return None


class PolicyProvider(ContextProvider):
    """Adds, before every run, the instructions composed for the run's task: the latest user message of the run's
    input, or (a run without one: a tool-approval answer, a run on the history alone) the session's last task."""

    def __init__(self, prompter: TaskPrompter, source_id: str = "rag_prompts") -> None:
        super().__init__(source_id)
        self.prompter = prompter

    async def before_run(
        self, *, agent: SupportsAgentRun, session: AgentSession, context: SessionContext, state: dict[str, Any]
    ) -> None:
        task = latest_user_text(context.input_messages)
        task = str(state.get("task", "")) if task is None else task
        state["task"] = task
        prompt = await asyncio.to_thread(self.prompter.prompt_for, task)  # retrieval must not block the loop
        context.extend_instructions(self.source_id, prompt.system_message)


def result_text(content: Content) -> str:
    """A function result's text, as chat APIs receive it."""
    if isinstance(content.result, str):
        return content.result
    return "\n".join(item.text or "" for item in content.items or () if item.type == "text")


def _arguments(arguments: str | Mapping[str, Any] | None) -> str:
    if arguments is None or isinstance(arguments, str):
        return arguments or ""
    return json.dumps(arguments)


def af_items(messages: Sequence[Message]) -> tuple[list[Item], list[tuple[int, int]]]:
    """Agent Framework messages as `Item`s, each with its message index and function-result index (-1: the whole
    message). A message's function results are separate items, as chat APIs receive them."""
    items: list[Item] = []
    owners: list[tuple[int, int]] = []
    for index, message in enumerate(messages):
        results = [(n, content) for n, content in enumerate(message.contents) if content.type == "function_result"]
        if results:
            for position, content in results:
                items.append(Item("tool", result_text(content), answers=str(content.call_id)))
                owners.append((index, position))
            continue
        calls = [content for content in message.contents if content.type == "function_call"]
        if calls:
            text = message.text + "".join(str(call.name) + _arguments(call.arguments) for call in calls)
            items.append(Item("assistant", text, calls=tuple(str(call.call_id) for call in calls)))
        else:
            items.append(Item(message.role, message.text))
        owners.append((index, -1))
    return items, owners


def af_rebuild(
    messages: Sequence[Message], owners: Sequence[tuple[int, int]], keep: Mapping[int, str], summary: str
) -> list[Message]:
    """The kept messages, in order, with shortened texts where the guard cut them, and the summary after the
    original task (or first, when the task is not kept). The session's own messages are never changed."""
    results: dict[int, list[Content]] = {}
    kept: dict[int, Message] = {}
    for item_index, text in sorted(keep.items()):
        message_index, position = owners[item_index]
        message = messages[message_index]
        if position >= 0:
            content = message.contents[position]
            if result_text(content) != text:
                content = Content.from_function_result(str(content.call_id), id=content.id, result=text)
            results.setdefault(message_index, []).append(content)
            kept[message_index] = message
        elif message.text == text or any(content.type == "function_call" for content in message.contents):
            kept[message_index] = message
        else:
            kept[message_index] = _with_contents(
                message, [Content.from_text(text), *(c for c in message.contents if c.type != "text")]
            )
    out = [_with_contents(kept[index], results[index]) if index in results else kept[index] for index in sorted(kept)]
    if summary:
        note = Message("user", [summary], author_name="rag_prompts")
        first_user = next((n for n, message in enumerate(out) if message.role == "user"), None)
        out.insert(0 if first_user is None else first_user + 1, note)
    return out


def _with_contents(message: Message, contents: list[Content]) -> Message:
    changed = copy.copy(message)
    changed.contents = contents
    return changed


def tool_schemas(tools: Any) -> list[dict[str, Any]]:
    """The definitions of the function tools sent with a call (hosted tools are the provider's to describe)."""
    schemas: list[dict[str, Any]] = []
    for tool in tools or ():
        if isinstance(tool, FunctionTool):
            schemas.append(tool.to_json_schema_spec())
        elif isinstance(tool, Mapping):
            schemas.append(dict(tool))
    return schemas


def payload_items(instructions: str, messages: Sequence[Message]) -> list[Item]:
    """What a chat API receives for one call: the instructions as the system message, then the messages."""
    return [Item("system", instructions), *af_items(messages)[0]]


class PayloadGuard(ChatMiddleware):
    """Chat middleware that keeps every model call's payload (instructions, tool definitions, messages) within the
    agent's payload budget, with the same `HistoryGuard` as the AutoGen adapters, and logs a `ModelCall`.
    Its running summary lives in the session's state, so it is saved with the session."""

    def __init__(self, prompter: TaskPrompter, payload: AgentPayload) -> None:
        self.prompter = prompter
        self.payload = payload  # its `on_call` is told what each call sends
        self.offloaded: list[str] = []  # stored output ids since the last call, reported with the next one
        self._state: dict[str, Any] = {}  # for calls made without a session
        self.state_key = f"rag_prompts.payload.{prompter.name}"

    async def process(self, context: ChatContext, call_next: Callable[[], Awaitable[None]]) -> None:
        options = context.options or {}
        system = str(options.get("instructions") or "")
        messages = list(context.messages)
        if any(message.role == "system" for message in messages):
            logger.warning("%s: dropped a system message; the policy instructions are the only one", self.prompter.name)
            messages = [message for message in messages if message.role != "system"]
        items, owners = af_items(messages)
        tools = tool_definition_tokens(tool_schemas(options.get("tools")), self.payload.counter)
        state = self._state if context.session is None else context.session.state.setdefault(self.state_key, {})
        self._load(state)
        fitted = self.payload.fit(system, items, tools)
        self._save(state)
        context.messages = af_rebuild(messages, owners, dict(fitted.keep), fitted.summary)
        prompt, count = self.prompter.last, 1 + len(context.messages)
        self.payload.sent(system, items, fitted, prompt=prompt, messages=count, tools=tools, offloaded=self.offloaded)
        self.offloaded.clear()
        await call_next()

    def _load(self, state: Mapping[str, Any]) -> None:
        guard = self.payload.guard
        guard.summary, guard.summarised = str(state.get("summary", "")), int(state.get("summarised", 0))
        anchor = state.get("anchor")
        guard.anchor = (
            Item(anchor["role"], anchor["text"], tuple(anchor["calls"]), anchor["answers"]) if anchor else None
        )

    def _save(self, state: dict[str, Any]) -> None:
        guard = self.payload.guard
        anchor = asdict(guard.anchor) if guard.anchor else None
        if anchor is not None:
            anchor["calls"] = list(anchor["calls"])  # session state is JSON
        state.update(summary=guard.summary, summarised=guard.summarised, anchor=anchor)


class StoredOutputs(FunctionMiddleware):
    """Function middleware: a tool output over `max_tokens` is stored outside the prompt and the model gets a
    reference with an excerpt instead (see `rag_prompts.payload.artifacts`)."""

    def __init__(self, artifacts: ArtifactStore, max_tokens: int, guard: PayloadGuard) -> None:
        self.artifacts = artifacts
        self.max_tokens = max_tokens
        self.guard = guard

    async def process(self, context: FunctionInvocationContext, call_next: Callable[[], Awaitable[None]]) -> None:
        await call_next()
        result = context.result
        if isinstance(result, list) and all(isinstance(item, Content) and item.type == "text" for item in result):
            result = "\n".join(item.text or "" for item in result)
        if not isinstance(result, str):
            return  # images and other non-text outputs are passed on as they are
        text, stored = offload(result, self.max_tokens, self.artifacts, self.guard.payload.counter)
        if stored is not None:
            context.result = text
            self.guard.offloaded.append(stored.id)


def runs_chat_middleware(client: object) -> bool:
    """Whether `client` runs chat middleware (every Agent Framework client does; a bare `BaseChatClient` not)."""
    return isinstance(client, ChatMiddlewareLayer)


def build_af_agent(
    prompter: TaskPrompter,
    client: SupportsChatGetResponse[Any],
    on_call: Callable[[ModelCall], None] | None = None,
    *,
    summariser: Summariser | None = None,
    **agent_kwargs: Any,
) -> Agent[Any]:
    """An Agent Framework `Agent` named after the profile, with a `PolicyProvider` first among its context
    providers and `StoredOutputs` and `PayloadGuard` last (innermost) in its middleware."""
    for key, why in _REFUSED.items():
        if key in agent_kwargs or key in (agent_kwargs.get("default_options") or {}):
            raise ConfigError(f"build_agent({prompter.name!r}): `{key}` is not accepted: {why}")
    if not runs_chat_middleware(client):
        raise ConfigError(
            f"build_agent({prompter.name!r}): the chat client ({type(client).__name__}) runs no chat middleware,"
            " so the payload guard could not run; use an Agent Framework client (they all include"
            " ChatMiddlewareLayer) or add the layer to yours"
        )
    settings = prompter.pipeline.settings
    profile = prompter.profile
    artifacts = ArtifactStore(settings.artifacts_folder, owner=prompter.name)  # readable by this agent only
    payload = AgentPayload(profile, payload_log(settings.payload_log_path), summariser, on_call)
    guard = PayloadGuard(prompter, payload)
    tools = agent_kwargs.pop("tools", None)
    tools = list(tools) if isinstance(tools, Sequence) else [] if tools is None else [tools]
    if tools:  # only an agent with tools gets tool outputs, so only it needs to read stored ones back
        reader = stored_output_reader(artifacts, profile.tool_output_tokens, token_counter(profile.model))
        tools.append(FunctionTool(name=READ_TOOL_NAME, description=READ_TOOL_DESCRIPTION, func=reader))
    providers = [PolicyProvider(prompter), *(agent_kwargs.pop("context_providers", None) or ())]
    middleware = [
        *(agent_kwargs.pop("middleware", None) or ()),
        StoredOutputs(artifacts, profile.tool_output_tokens, guard),
        guard,
    ]
    return Agent(
        client,
        name=prompter.name,
        tools=tools or None,
        context_providers=providers,
        middleware=middleware,
        **agent_kwargs,
    )


Reply = str | Sequence[Content]


class ReplayChatClient(
    FunctionInvocationLayer[Any], ChatMiddlewareLayer[Any], ChatTelemetryLayer[Any], BaseChatClient[Any]
):
    """An offline Agent Framework chat client, layered like the framework's own clients (tool loop, chat
    middleware, telemetry): each call is answered with the next reply (a text, or contents such as
    `Content.from_function_call`), and `requests` keeps the messages and options each call was sent."""

    def __init__(self, replies: Iterable[Reply], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.replies = list(replies)
        self.requests: list[tuple[list[Message], dict[str, Any]]] = []

    def _next(self, messages: Sequence[Message], options: Mapping[str, Any]) -> Message:
        self.requests.append((list(messages), dict(options)))
        if not self.replies:
            raise ConfigError(f"ReplayChatClient: no reply left for call {len(self.requests)}")
        reply = self.replies.pop(0)
        return Message("assistant", [reply] if isinstance(reply, str) else list(reply))

    def _inner_get_response(
        self, *, messages: Sequence[Message], stream: bool, options: Mapping[str, Any], **kwargs: Any
    ) -> Awaitable[ChatResponse[Any]] | ResponseStream[ChatResponseUpdate, ChatResponse[Any]]:
        if stream:

            async def updates() -> AsyncIterator[ChatResponseUpdate]:
                message = self._next(messages, await self._validate_options(options))
                yield ChatResponseUpdate(role="assistant", contents=message.contents)

            return self._build_response_stream(updates())

        async def response() -> ChatResponse[Any]:
            message = self._next(messages, await self._validate_options(options))
            return ChatResponse(messages=[message], response_id=f"replay-{len(self.requests)}")

        return response()


__all__ = [
    "PayloadGuard",
    "PolicyProvider",
    "ReplayChatClient",
    "StoredOutputs",
    "af_items",
    "af_rebuild",
    "build_af_agent",
    "latest_user_text",
    "payload_items",
]
