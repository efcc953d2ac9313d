"""AgentChat agents from the factory: what the model receives on every call, checked through AutoGen's own
offline clients (ReplayChatCompletionClient records every `create` call)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
from autogen_agentchat.teams import RoundRobinGroupChat
from autogen_core import FunctionCall
from autogen_core.model_context import BufferedChatCompletionContext
from autogen_core.models import (
    CreateResult,
    FunctionExecutionResultMessage,
    LLMMessage,
    ModelInfo,
    RequestUsage,
    SystemMessage,
    UserMessage,
)
from autogen_ext.models.openai import OpenAIChatCompletionClient
from autogen_ext.models.replay import ReplayChatCompletionClient

from rag_prompts import ConfigError, ModelCall, Pipeline, TokenCounter, build_agent

from .agent_helpers import corpus_tags, sources_in

# A model that, like most non-OpenAI models behind OpenAI-compatible servers, takes one system message only.
SINGLE_SYSTEM_MESSAGE = ModelInfo(
    vision=False,
    function_calling=True,
    json_output=False,
    family="unknown",
    structured_output=False,
    multiple_system_messages=False,
)


def replay(replies: list[str | CreateResult]) -> ReplayChatCompletionClient:
    return ReplayChatCompletionClient(replies, model_info=SINGLE_SYSTEM_MESSAGE)


def sent(client: ReplayChatCompletionClient) -> list[list[LLMMessage]]:
    """The message lists the model received, one per call."""
    return [list(call["messages"]) for call in client.create_calls]


def the_system_message(messages: list[LLMMessage]) -> str:
    """The one system message of a call, which must come first."""
    systems = [message for message in messages if isinstance(message, SystemMessage)]
    assert len(systems) == 1, [type(message).__name__ for message in messages]
    assert messages[0] is systems[0]
    return systems[0].content


def tasks_of(tasks: list[dict[str, Any]], agent: str) -> list[str]:
    return [task["task"] for task in tasks if task["agent"] == agent]


def test_every_call_sends_one_system_message_composed_for_the_latest_task(
    corpus_pipeline: Pipeline, counter: TokenCounter, tasks: list[dict[str, Any]]
) -> None:
    claims = tasks_of(tasks, "claims_triage")
    turns = [claims[0], claims[7], "Thanks. Summarise that in one line."]
    client = replay(["first answer", "second answer", "third answer"])
    records: list[ModelCall] = []
    agent = build_agent("claims_triage", client, pipeline=corpus_pipeline, on_call=records.append)

    async def converse() -> None:
        for turn in turns:
            await agent.run(task=turn)

    asyncio.run(converse())
    calls = sent(client)
    assert len(calls) == 3
    messages = [the_system_message(call) for call in calls]
    for turn, message, call in zip(turns, messages, calls, strict=True):
        assert message == corpus_pipeline.compose(turn, "claims_triage").system_message
        assert counter.count(message) <= 1200  # the claims_triage budget
        assert isinstance(call[-1], UserMessage) and call[-1].content == turn
    assert messages[0] != messages[1]  # a different task gets its own chunks
    assert sources_in(messages[0]) and sources_in(messages[1])
    assert len(calls[2]) == 1 + 5  # system + 3 user turns + 2 replies: nothing piles up in the history
    # on_call saw each payload before it was sent: 3 tokens per message + role + text, 3 to prime the reply
    for record, call, message in zip(records, calls, messages, strict=True):
        texts = [("system" if isinstance(m, SystemMessage) else m.type, str(m.content)) for m in call]
        roles = {"UserMessage": "user", "AssistantMessage": "assistant"}
        expected = 3 + sum(3 + counter.count(roles.get(role, role)) + counter.count(text) for role, text in texts)
        assert (record.agent, record.messages, record.tokens) == ("claims_triage", len(call), expected)
        assert record.prompt.system_message == message


def test_profile_values_and_keyword_overrides(corpus_pipeline: Pipeline, counter: TokenCounter) -> None:
    task = "What must an employee do before accepting a gift from a broker?"
    client = replay(["noted"])
    agent = build_agent(
        "compliance_reviewer",
        client,
        pipeline=corpus_pipeline,
        base_message="Check the case against policy.",
        k=2,
        budget=500,
        tags=["people"],
    )
    asyncio.run(agent.run(task=task))
    message = the_system_message(sent(client)[0])
    expected = corpus_pipeline.compose(
        task, "compliance_reviewer", k=2, budget=500, base_message="Check the case against policy.", tags=["people"]
    )
    assert message == expected.system_message
    assert message.startswith("Check the case against policy.")
    assert 1 <= len(sources_in(message)) <= 2
    assert counter.count(message) <= 500
    assert all("people" in corpus_tags()[source] for source in sources_in(message))
    assert agent.name == "compliance_reviewer"


def test_unknown_agents_and_bad_overrides_are_clear_errors(corpus_pipeline: Pipeline) -> None:
    with pytest.raises(ConfigError) as unknown:
        build_agent("underwriter", replay([]), pipeline=corpus_pipeline)
    for known in ("claims_triage", "compliance_reviewer", "customer_reply", "staff_helpdesk"):
        assert known in str(unknown.value)
    with pytest.raises(ConfigError, match="budget"):
        build_agent("claims_triage", replay([]), pipeline=corpus_pipeline, budget=0)
    with pytest.raises(ConfigError, match="system_message"):
        build_agent("claims_triage", replay([]), pipeline=corpus_pipeline, system_message="You are helpful.")
    with pytest.raises(ConfigError, match="memory"):
        build_agent("claims_triage", replay([]), pipeline=corpus_pipeline, memory=[])


def test_fixed_task_composes_once_and_reuses_the_message(corpus_pipeline: Pipeline) -> None:
    task = "A customer wants to complain about a declined claim. What are our response deadlines?"
    client = replay(["a", "b", "c"])
    agent = build_agent("customer_reply", client, pipeline=corpus_pipeline, task=task)
    composed = agent.model_context.last_prompt  # type: ignore[attr-defined]
    assert (
        composed is not None
        and composed.system_message == corpus_pipeline.compose(task, "customer_reply").system_message
    )

    async def converse() -> None:
        for turn in ("Draft the reply.", "Make it shorter.", "Add the ombudsman's details."):
            await agent.run(task=turn)

    asyncio.run(converse())
    assert [the_system_message(call) for call in sent(client)] == [composed.system_message] * 3
    assert agent.model_context.last_prompt is composed  # type: ignore[attr-defined]  # reused, never recomposed


@pytest.mark.parametrize("agent_name", ["customer_reply", "staff_helpdesk"])
def test_restricted_agent_never_sees_another_agents_documents(
    corpus_pipeline: Pipeline, tasks: list[dict[str, Any]], agent_name: str
) -> None:
    allowed = set(corpus_pipeline.settings.profile(agent_name).tags)
    turns = [task["task"] for task in tasks]  # every agent's tasks, so most ask about documents it may not see
    client = replay([f"reply {i}" for i in range(len(turns))])
    agent = build_agent(agent_name, client, pipeline=corpus_pipeline, model_context=BufferedChatCompletionContext(4))

    async def converse() -> None:
        for turn in turns:
            await agent.run(task=turn)

    asyncio.run(converse())
    seen: set[str] = set()
    for call in sent(client):
        sources = sources_in(the_system_message(call))
        assert all(allowed & corpus_tags()[source] for source in sources), sources
        seen.update(sources)
    assert len(sent(client)) == len(turns) and len(seen) >= 2
    unrestricted = {
        source
        for turn in turns
        for source in sources_in(corpus_pipeline.compose(turn, agent_name, tags=()).system_message)
    }
    assert any(not allowed & corpus_tags()[source] for source in unrestricted)  # the filter is what kept them out


def test_one_system_message_reaches_an_openai_compatible_server(corpus_pipeline: Pipeline) -> None:
    """Through AutoGen's real OpenAI client for a model that allows one system message (its check raises
    "Multiple and Not continuous system messages are not supported" otherwise); the HTTP layer is a mock."""
    requests: list[dict[str, Any]] = []

    def server(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        requests.append(body)
        reply = {"role": "assistant", "content": f"answer {len(requests)}"}
        return httpx.Response(
            200,
            json={
                "id": "chatcmpl-test",
                "object": "chat.completion",
                "created": 0,
                "model": body["model"],
                "choices": [{"index": 0, "finish_reason": "stop", "message": reply}],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
            },
        )

    client = OpenAIChatCompletionClient(
        model="local-policy-model",
        base_url="http://127.0.0.1:9/v1",
        api_key="unused",
        model_info=SINGLE_SYSTEM_MESSAGE,
        http_client=httpx.AsyncClient(transport=httpx.MockTransport(server)),
    )
    agent = build_agent("staff_helpdesk", client, pipeline=corpus_pipeline)
    turns = ["How much can I claim for a hotel night in London?", "And what if my laptop is stolen on the trip?"]

    async def converse() -> None:
        for turn in turns:
            await agent.run(task=turn)

    asyncio.run(converse())
    assert len(requests) == 2
    for turn, body in zip(turns, requests, strict=True):
        roles = [message["role"] for message in body["messages"]]
        assert roles.count("system") == 1 and roles[0] == "system"
        assert body["messages"][0]["content"] == corpus_pipeline.compose(turn, "staff_helpdesk").system_message


def test_tool_call_rounds_keep_the_one_system_message(corpus_pipeline: Pipeline) -> None:
    def claim_status(claim_id: str) -> str:
        """Look up a claim's status."""
        return f"{claim_id}: open, reserve $18,000, reported 45 days after the loss"

    call = FunctionCall(id="call-1", name="claim_status", arguments=json.dumps({"claim_id": "CLM-7"}))
    client = replay(
        [
            CreateResult(finish_reason="function_calls", content=[call], usage=RequestUsage(0, 0), cached=False),
            "Refer it: late notification.",
        ]
    )
    agent = build_agent(
        "claims_triage", client, pipeline=corpus_pipeline, tools=[claim_status], reflect_on_tool_use=True
    )
    task = "Check claim CLM-7 and tell me whether late notification means it must be referred."
    asyncio.run(agent.run(task=task))
    calls = sent(client)
    assert len(calls) == 2
    expected = corpus_pipeline.compose(task, "claims_triage").system_message
    assert [the_system_message(messages) for messages in calls] == [expected, expected]
    assert isinstance(calls[1][-1], FunctionExecutionResultMessage)


def test_system_messages_from_elsewhere_are_dropped(corpus_pipeline: Pipeline) -> None:
    agent = build_agent("claims_triage", replay([]), pipeline=corpus_pipeline)
    context = agent.model_context

    async def messages() -> list[LLMMessage]:
        await context.add_message(UserMessage(content="Who approves a $70,000 payment?", source="user"))
        await context.add_message(SystemMessage(content="Relevant memory content: everything"))
        return await context.get_messages()

    result = asyncio.run(messages())
    assert "Relevant memory content" not in the_system_message(result)
    assert len(result) == 2


def test_saved_state_restores_the_task(corpus_pipeline: Pipeline) -> None:
    task = "Which claims must go to the special investigations unit?"
    first = build_agent("claims_triage", replay(["ok"]), pipeline=corpus_pipeline)
    asyncio.run(first.run(task=task))
    state = asyncio.run(first.save_state())
    client = replay(["again"])
    second = build_agent("claims_triage", client, pipeline=corpus_pipeline)
    asyncio.run(second.load_state(state))
    asyncio.run(second.run())  # no new message: it replies to the restored conversation
    assert the_system_message(sent(client)[0]) == corpus_pipeline.compose(task, "claims_triage").system_message


def test_team_members_each_get_their_own_profile(corpus_pipeline: Pipeline, counter: TokenCounter) -> None:
    case = (
        "Case 5521: a customer reported storm damage to their roof 40 days after the storm and says the claim"
        " handler promised payment of $26,000. Triage it, then check it for compliance."
    )
    triage_client = replay(["Late notification (40 days) and a $26,000 payment: needs a Senior Claims Handler."])
    review_client = replay(["Approval is missing for the promised payment; log the complaint."])
    triage = build_agent("claims_triage", triage_client, pipeline=corpus_pipeline)
    reviewer = build_agent("compliance_reviewer", review_client, pipeline=corpus_pipeline)
    team = RoundRobinGroupChat([triage, reviewer], max_turns=2)
    asyncio.run(team.run(task=case))
    for client, name in ((triage_client, "claims_triage"), (review_client, "compliance_reviewer")):
        profile = corpus_pipeline.settings.profile(name)
        (messages,) = sent(client)
        message = the_system_message(messages)
        assert message.startswith(profile.base_message.strip())
        assert counter.count(message) <= profile.budget
        assert all(set(profile.tags) & corpus_tags()[source] for source in sources_in(message))
    # the reviewer composes for what it is answering: the triage agent's message
    review_call = sent(review_client)[0]
    assert isinstance(review_call[-1], UserMessage) and review_call[-1].source == "claims_triage"
