"""Classic AutoGen (AG2, `import autogen`) agents from `rag_prompts.classic.build_agent`: what the model receives,
checked through a model client registered with AG2's own `register_model_client`."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from autogen import ConversableAgent

from rag_prompts import ConfigError, ModelCall, Pipeline, TokenCounter
from rag_prompts.classic import build_agent

from .agent_helpers import corpus_tags, sources_in


class _Message(dict[str, Any]):
    def model_dump(self) -> dict[str, Any]:
        return dict(self)


class RecordingClient:
    """An AG2 model client (the `ModelClient` protocol) that records each request and answers from a list: a
    text, or a tool call given as a dict with `id`, `name` and `arguments`."""

    def __init__(self, config: dict[str, Any], *, calls: list[list[dict[str, Any]]], replies: list[Any]) -> None:
        self.calls = calls
        self.replies = iter(replies)

    def create(self, params: dict[str, Any]) -> Any:
        self.calls.append([dict(message) for message in params["messages"]])
        reply = next(self.replies)
        if isinstance(reply, dict):  # AG2 takes a message dict (with a model_dump) as a tool-calling reply
            call = {"id": reply["id"], "type": "function", "function": {"name": reply["name"],
                    "arguments": reply["arguments"]}}  # fmt: skip
            reply = _Message(role="assistant", content=None, tool_calls=[call])
        message = SimpleNamespace(role="assistant", content=reply, tool_calls=None, function_call=None)
        return SimpleNamespace(choices=[SimpleNamespace(message=message, finish_reason="stop")], model="recording")

    def message_retrieval(self, response: Any) -> list[Any]:
        return [choice.message for choice in response.choices]

    def cost(self, response: Any) -> float:
        return 0.0

    @staticmethod
    def get_usage(response: Any) -> dict[str, Any]:
        return {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0, "cost": 0.0, "model": "recording"}


LLM_CONFIG = {"config_list": [{"model": "gpt-4", "model_client_cls": "RecordingClient"}], "cache_seed": None}


def recorded_agent(
    name: str, pipeline: Pipeline, replies: list[str], **overrides: Any
) -> tuple[Any, list[list[dict[str, Any]]]]:
    calls: list[list[dict[str, Any]]] = []
    agent = build_agent(name, LLM_CONFIG, pipeline=pipeline, **overrides)
    agent.register_model_client(RecordingClient, calls=calls, replies=replies)
    return agent, calls


def the_system_message(messages: list[dict[str, Any]]) -> str:
    roles = [message["role"] for message in messages]
    assert roles.count("system") == 1 and roles[0] == "system", roles
    return str(messages[0]["content"])


def test_system_message_is_recomposed_before_every_reply(
    corpus_pipeline: Pipeline, counter: TokenCounter, tasks: list[dict[str, Any]]
) -> None:
    claims = [task["task"] for task in tasks if task["agent"] == "claims_triage"]
    turns = [claims[0], claims[7], "Thanks. Summarise that in one line."]
    agent, calls = recorded_agent("claims_triage", corpus_pipeline, ["one", "two", "three"])
    user = ConversableAgent("user", llm_config=False, human_input_mode="NEVER", code_execution_config=False)
    for number, turn in enumerate(turns):
        user.initiate_chat(agent, message=turn, max_turns=1, clear_history=number == 0, silent=True)
    assert len(calls) == 3
    messages = [the_system_message(call) for call in calls]
    for turn, message, call in zip(turns, messages, calls, strict=True):
        assert message == corpus_pipeline.compose(turn, "claims_triage").system_message
        assert counter.count(message) <= 1200
        assert call[-1] == {"content": turn, "role": "user", "name": "user"}
    assert messages[0] != messages[1]
    assert len(calls[2]) == 1 + 5  # the system message is replaced, never appended


def test_restricted_classic_agent_never_sees_another_agents_documents(
    corpus_pipeline: Pipeline, tasks: list[dict[str, Any]]
) -> None:
    allowed = set(corpus_pipeline.settings.profile("customer_reply").tags)
    agent, calls = recorded_agent("customer_reply", corpus_pipeline, [f"reply {i}" for i in range(len(tasks))])
    for task in tasks:
        agent.generate_reply(messages=[{"role": "user", "content": task["task"]}])
    assert len(calls) == len(tasks)
    seen = set()
    for call in calls:
        sources = sources_in(the_system_message(call))
        assert all(allowed & corpus_tags()[source] for source in sources), sources
        seen.update(sources)
    assert len(seen) >= 2


def test_fixed_task_and_overrides(corpus_pipeline: Pipeline, counter: TokenCounter) -> None:
    task = "What is the retention period for claim files?"
    agent, calls = recorded_agent("compliance_reviewer", corpus_pipeline, ["a", "b"], task=task, k=2, budget=450)
    expected = corpus_pipeline.compose(task, "compliance_reviewer", k=2, budget=450).system_message
    assert agent.system_message == expected
    agent.generate_reply(messages=[{"role": "user", "content": "Draft a note to the team."}])
    agent.generate_reply(messages=[{"role": "user", "content": "Something else entirely: travel expenses."}])
    assert [the_system_message(call) for call in calls] == [expected, expected]
    assert counter.count(expected) <= 450 and len(sources_in(expected)) <= 2


def test_classic_errors_are_clear(corpus_pipeline: Pipeline) -> None:
    with pytest.raises(ConfigError, match="known agents: claims_triage, compliance_reviewer"):
        build_agent("nobody", LLM_CONFIG, pipeline=corpus_pipeline)
    with pytest.raises(ConfigError, match="system_message"):
        build_agent("claims_triage", LLM_CONFIG, pipeline=corpus_pipeline, system_message="Be helpful.")


def test_on_call_sees_each_payload_as_sent(corpus_pipeline: Pipeline, counter: TokenCounter) -> None:
    records: list[ModelCall] = []
    agent, calls = recorded_agent("claims_triage", corpus_pipeline, ["one", "two"], on_call=records.append)
    user = ConversableAgent("user", llm_config=False, human_input_mode="NEVER", code_execution_config=False)
    for number, turn in enumerate(["Who approves a $26,400 contents claim?", "And one of $90,000?"]):
        user.initiate_chat(agent, message=turn, max_turns=1, clear_history=number == 0, silent=True)
    assert [record.call for record in records] == [1, 2]
    for record, call in zip(records, calls, strict=True):
        expected = 3 + sum(3 + counter.count(m["role"]) + counter.count(str(m["content"])) for m in call)
        assert (record.agent, record.messages, record.tokens) == ("claims_triage", len(call), expected)
        assert record.prompt is not None and record.prompt.system_message == the_system_message(call)
        assert record.budget == corpus_pipeline.settings.profile("claims_triage").payload_budget
