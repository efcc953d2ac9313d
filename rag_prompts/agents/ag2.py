"""Classic AutoGen adapter (AG2, `import autogen`): the system message is recomposed before each reply through
AG2's own `update_agent_state_before_reply` hook with an `UpdateSystemMessage`."""

# No `from __future__ import annotations` here: AG2 checks that the updater's return annotation *is* `str`.

from collections.abc import Callable, Sequence
from typing import Any

from autogen import AssistantAgent, ConversableAgent, UpdateSystemMessage, register_function
from autogen.agentchat.contrib.capabilities.transform_messages import TransformMessages

from ..errors import ConfigError
from ..payload.artifacts import READ_TOOL_DESCRIPTION, READ_TOOL_NAME, ArtifactStore, offload
from ..payload.artifacts import stored_output_reader as artifacts_reader
from ..payload.guard import AgentPayload, tool_definition_tokens
from ..payload.history import Item, Summariser
from ..payload.log import PayloadLog, payload_log
from ..payload.record import ModelCall
from ..tokens import token_counter
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


class PolicyAgent(AssistantAgent):
    """An AG2 `AssistantAgent` whose system message is composed per task; `payload_guard` bounds what it sends."""

    payload_guard: "PayloadTransform"


def build_ag2_agent(
    prompter: TaskPrompter,
    client: Any,
    on_call: Callable[[ModelCall], None] | None = None,
    *,
    summariser: Summariser | None = None,
    shared_tool_outputs: bool = False,
    **agent_kwargs: Any,
) -> PolicyAgent:
    """An AG2 `AssistantAgent` named after the profile whose system message is composed before every reply.
    Other agents' tool outputs are withheld from its model unless `shared_tool_outputs` (see `PayloadTransform`)."""
    if "system_message" in agent_kwargs:
        raise ConfigError(
            f"build_agent({prompter.name!r}): `system_message` is not accepted: the system message is composed per"
            " task from the agent's profile; set `base_message`"
        )

    def compose_system_message(agent: ConversableAgent, messages: list[dict[str, Any]]) -> str:
        return prompter.prompt_for(latest_user_text(messages)).system_message

    theirs = agent_kwargs.pop("update_agent_state_before_reply", None) or []
    hooks = [UpdateSystemMessage(compose_system_message), *(theirs if isinstance(theirs, list) else [theirs])]
    agent = PolicyAgent(
        name=prompter.name,
        system_message=prompter.prompt_for("").system_message,
        llm_config=client,  # AG2's llm_config
        update_agent_state_before_reply=hooks,
        **agent_kwargs,
    )
    settings = prompter.pipeline.settings
    artifacts = ArtifactStore(settings.artifacts_folder, owner=prompter.name)  # readable by this agent only
    log = payload_log(settings.payload_log_path)
    guard = PayloadTransform(agent, prompter, artifacts, log, summariser, shared_tool_outputs, on_call)
    TransformMessages(transforms=[guard], verbose=False).add_to_agent(agent)  # runs after the system message hook
    agent.payload_guard = guard
    return agent


class PayloadTransform:
    """An AG2 `MessageTransform` (for `TransformMessages`) that keeps an agent's whole payload within its payload
    budget: the same `HistoryGuard` rules as the AgentChat context, tool outputs over the cap stored outside the
    prompt, and a `ModelCall` logged (and handed to `on_call`) before every call. It reads the system message the
    agent will send, so it must run after the agent's system message was composed (the factory sees to that)."""

    def __init__(
        self,
        agent: ConversableAgent,
        prompter: TaskPrompter,
        artifacts: ArtifactStore,
        log: PayloadLog,
        summariser: Summariser | None = None,
        shared_tool_outputs: bool = False,
        on_call: Callable[[ModelCall], None] | None = None,
    ) -> None:
        self.agent = agent
        self.prompter = prompter
        self.shared_tool_outputs = shared_tool_outputs  # False: other agents' tool outputs are withheld
        self.payload = AgentPayload(prompter.profile, log, summariser, on_call)
        self.counter = self.payload.counter
        self.cap = prompter.profile.tool_output_tokens
        self.artifacts = artifacts
        self._replaced: dict[str, tuple[str, str | None]] = {}  # tool output -> (what is sent, stored id)
        self._last = ""

    def apply_transform(self, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        system = self.agent.system_message
        offloaded = self._offload(messages)
        items, owners = ag2_items(messages)
        tools = tool_definition_tokens(_tool_schemas(self.agent), self.counter)
        fitted = self.payload.fit(system, items, tools)
        budget = self.payload.guard.budget
        self._last = f"{self.payload.name}: payload {fitted.tokens} of {budget} tokens; {fitted.dropped} left out"
        out = ag2_rebuild(messages, owners, dict(fitted.keep), fitted.summary)
        prompt, count = self.prompter.last, 1 + len(out)  # AG2 puts the system message first
        self.payload.sent(system, items, fitted, prompt=prompt, messages=count, tools=tools, offloaded=offloaded)
        return out

    def get_logs(
        self, pre_transform_messages: list[dict[str, Any]], post_transform_messages: list[dict[str, Any]]
    ) -> tuple[str, bool]:
        return self._last, pre_transform_messages != post_transform_messages

    def _offload(self, messages: list[dict[str, Any]]) -> list[str]:
        """Replace tool outputs over the cap (in these copies) by references, and outputs of other agents' tool
        calls (an AG2 group chat sends every message to every member) by a note; the ids stored for the first time."""
        foreign = {} if self.shared_tool_outputs else others_calls(messages, self.agent.name)
        new: list[str] = []
        for message in messages:
            if message.get("role") == "tool" and str(message.get("tool_call_id")) in foreign:
                message["content"] = foreign[str(message["tool_call_id"])]
            responses = message.get("tool_responses") or []
            for response in responses:
                original = str(response.get("content") or "")
                if str(response.get("tool_call_id")) in foreign:
                    response["content"] = foreign[str(response["tool_call_id"])]
                    continue
                if original not in self._replaced:  # the history comes again on every call: offload once
                    text, stored = offload(original, self.cap, self.artifacts, self.counter)
                    self._replaced[original] = (text, stored.id if stored else None)
                    if stored is not None:
                        new.append(stored.id)
                response["content"] = self._replaced[original][0]
            if responses:
                message["content"] = "\n\n".join(str(response["content"]) for response in responses)
        return new


def others_calls(messages: Sequence[dict[str, Any]], name: str) -> dict[str, str]:
    """For each tool call another agent made (its message names that agent), the note sent instead of its output."""
    notes = {}
    for message in messages:
        caller = message.get("name")
        if message.get("tool_calls") and caller and caller != name:
            for call in message["tool_calls"]:
                what = call.get("function", {}).get("name", "a tool")
                notes[str(call.get("id"))] = f"[the output of {caller}'s {what} call is not shown to {name}]"
    return notes


def _tool_schemas(agent: ConversableAgent) -> list[dict[str, Any]]:
    """The tool definitions AG2 sends with the agent's calls (they take context too)."""
    config = agent.llm_config
    tools = config.get("tools") if isinstance(config, dict) else getattr(config, "tools", None)
    return list(tools or [])


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return ""


def ag2_items(messages: Sequence[dict[str, Any]]) -> tuple[list[Item], list[tuple[int, int]]]:
    """AG2 messages as `Item`s, each with its message index and tool-response index (-1: the whole message).
    A tool message's responses are separate items, as AG2 sends them; a legacy function result answers the
    latest function call of that name."""
    items: list[Item] = []
    owners: list[tuple[int, int]] = []
    for index, message in enumerate(messages):
        role = message.get("role")
        if message.get("tool_responses"):
            for position, response in enumerate(message["tool_responses"]):
                items.append(Item("tool", _text(response.get("content")), answers=str(response.get("tool_call_id"))))
                owners.append((index, position))
            continue
        if message.get("tool_calls"):
            calls = message["tool_calls"]
            text = _text(message.get("content")) + "".join(
                call["function"]["name"] + call["function"]["arguments"] for call in calls
            )
            items.append(Item("assistant", text, calls=tuple(str(call["id"]) for call in calls)))
        elif message.get("function_call"):
            call = message["function_call"]
            items.append(Item("assistant", call["name"] + call["arguments"], calls=(f"function:{call['name']}",)))
        elif role == "function":
            items.append(Item("tool", _text(message.get("content")), answers=f"function:{message.get('name')}"))
        elif role == "tool" and message.get("tool_call_id"):
            items.append(Item("tool", _text(message.get("content")), answers=str(message["tool_call_id"])))
        elif role in ("user", "assistant"):
            items.append(Item(str(role), _text(message.get("content"))))
        else:
            continue
        owners.append((index, -1))
    return items, owners


def ag2_rebuild(
    messages: Sequence[dict[str, Any]], owners: Sequence[tuple[int, int]], keep: dict[int, str], summary: str
) -> list[dict[str, Any]]:
    """The kept AG2 messages, in order, with shortened texts where the guard cut them, and the summary after the
    original task (or first)."""
    kept: dict[int, dict[str, Any]] = {}
    for item_index, text in sorted(keep.items()):
        message_index, position = owners[item_index]
        message = kept.setdefault(message_index, dict(messages[message_index]))
        if position >= 0:
            responses = message.setdefault("_kept", [])
            responses.append({**messages[message_index]["tool_responses"][position], "content": text})
        elif isinstance(message.get("content"), str) and not message.get("tool_calls"):
            message["content"] = text
    out = []
    for message_index in sorted(kept):
        message = kept[message_index]
        if "_kept" in message:
            message["tool_responses"] = message.pop("_kept")
            message["content"] = "\n\n".join(str(response["content"]) for response in message["tool_responses"])
        out.append(message)
    if summary:
        first_user = next((n for n, message in enumerate(out) if message.get("role") == "user"), -1)
        out.insert(first_user + 1, {"role": "user", "content": summary, "name": "rag_prompts"})
    return out


def stored_output_reader(artifacts: ArtifactStore, max_tokens: int, model: str) -> Callable[[str, int], str]:
    """`read_stored_output(output_id, page=1)` for an AG2 agent: register it with `autogen.register_function`
    (caller: the agent; executor: whoever runs its tools)."""
    return artifacts_reader(artifacts, max_tokens, token_counter(model))


def register_stored_output_reader(agent: ConversableAgent, executor: Any) -> None:
    """Register `read_stored_output` for `agent` (built by `build_ag2_agent`), run by `executor`."""
    if not isinstance(agent, PolicyAgent):
        raise ConfigError(f"agent {agent.name!r} was not built by rag_prompts.classic.build_agent")
    guard = agent.payload_guard
    reader = stored_output_reader(guard.artifacts, guard.cap, guard.counter.model)
    register_function(reader, caller=agent, executor=executor, name=READ_TOOL_NAME, description=READ_TOOL_DESCRIPTION)
