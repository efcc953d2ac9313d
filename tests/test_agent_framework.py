"""Microsoft Agent Framework agents from `rag_prompts.agent_framework.build_agent`: what the model receives, checked
through `ReplayChatClient`, a `BaseChatClient` subclass layered like the framework's own clients (its tool loop,
chat middleware and telemetry run as they do in production) that records the messages and options of every call."""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from agent_framework import AgentSession, BaseChatClient, ChatResponse, Content, Message
from autogen_core.models import (
    AssistantMessage,
    FunctionExecutionResultMessage,
    LLMMessage,
    UserMessage,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rag_prompts import ConfigError, ModelCall, Pipeline, TokenCounter
from rag_prompts.agent_framework import build_agent
from rag_prompts.agents import TaskPrompter
from rag_prompts.agents.agent_framework import PayloadGuard, ReplayChatClient, payload_items
from rag_prompts.payload.guard import AgentPayload, tool_definition_tokens
from rag_prompts.payload.history import Item
from rag_prompts.payload.log import PayloadLog

from .agent_helpers import assert_no_orphans, corpus_tags, sources_in
from .conftest import run_team_example
from .test_payload import SMALL, TASK, agentchat_conversations, blob, check_payloads, recount

PAYLOAD_BUDGET = SMALL["context_limit"] - SMALL["reply_reserve"]


def payloads(client: ReplayChatClient) -> list[list[Item]]:
    """Each call as the model receives it: the instructions as the system message, then the messages."""
    return [payload_items(str(options.get("instructions", "")), messages) for messages, options in client.requests]


def call(call_id: str, name: str, **arguments: Any) -> list[Content]:
    return [Content.from_function_call(call_id, name, arguments=json.dumps(arguments))]


def run_all(agent: Any, turns: Sequence[str], session: AgentSession | None = None) -> AgentSession:
    session = session or agent.create_session()

    async def converse() -> None:
        for turn in turns:
            await agent.run(turn, session=session)

    asyncio.run(converse())
    return session


def test_each_run_gets_the_instructions_composed_for_its_task(
    corpus_pipeline: Pipeline, counter: TokenCounter, tasks: list[dict[str, Any]]
) -> None:
    claims = [task["task"] for task in tasks if task["agent"] == "claims_triage"]
    turns = [claims[0], claims[7], "Thanks. Summarise that in one line.", claims[0]]
    client = ReplayChatClient(["first answer", "second answer", "third answer", "fourth answer", "fifth answer"])
    records: list[ModelCall] = []
    agent = build_agent("claims_triage", client, pipeline=corpus_pipeline, on_call=records.append)
    session = run_all(agent, turns)
    asyncio.run(agent.run(None, session=session))  # a run on the history alone keeps the session's task
    assert client.requests[4][1]["instructions"] == client.requests[3][1]["instructions"]
    del client.requests[4], records[4]
    instructions = [str(options["instructions"]) for _, options in client.requests]
    for turn, sent, (messages, _) in zip(turns, instructions, client.requests, strict=True):
        assert sent == corpus_pipeline.compose(turn, "claims_triage").system_message
        assert counter.count(sent) <= 1200  # the claims_triage budget
        assert not any(message.role == "system" for message in messages)
        assert messages[-1].role == "user" and messages[-1].text == turn
    assert instructions[0] != instructions[1] and sources_in(instructions[0]) and sources_in(instructions[1])
    assert instructions[3] == instructions[0]  # the first task again: its own chunks, nothing carried over
    assert len(client.requests[2][0]) == 5  # 3 user turns + 2 replies: the instructions are never stored
    assert session.state["rag_prompts"] == {"task": turns[-1]}
    history = session.state["in_memory"]["messages"]
    assert not any(sent in message.text for message in history for sent in instructions)
    for record, items in zip(records, payloads(client), strict=True):
        assert (record.agent, record.messages, record.tokens) == ("claims_triage", len(items), recount(items))
        assert record.prompt.system_message == items[0].text


def test_profile_overrides_tags_and_a_fixed_task(corpus_pipeline: Pipeline, counter: TokenCounter) -> None:
    task = "What must an employee do before accepting a gift from a broker?"
    client = ReplayChatClient(["noted"])
    overrides: dict[str, Any] = {"base_message": "Check the case against policy.", "k": 2, "budget": 500}
    agent = build_agent("compliance_reviewer", client, pipeline=corpus_pipeline, tags=["people"], **overrides)
    run_all(agent, [task])
    sent = str(client.requests[0][1]["instructions"])
    assert sent == corpus_pipeline.compose(task, "compliance_reviewer", tags=["people"], **overrides).system_message
    assert sent.startswith("Check the case against policy.") and counter.count(sent) <= 500
    assert 1 <= len(sources_in(sent)) <= 2
    assert all("people" in corpus_tags()[source] for source in sources_in(sent))
    assert agent.name == "compliance_reviewer" and agent.description == "Check the case against policy."

    fixed = "What is the retention period for claim files?"
    client = ReplayChatClient(["a", "b"])
    agent = build_agent("compliance_reviewer", client, pipeline=corpus_pipeline, task=fixed, k=2, budget=450)
    run_all(agent, ["Draft a note to the team.", "Something else entirely: travel expenses."])
    expected = corpus_pipeline.compose(fixed, "compliance_reviewer", k=2, budget=450).system_message
    assert [options["instructions"] for _, options in client.requests] == [expected, expected]


def test_restricted_agent_never_sees_another_agents_documents(
    corpus_pipeline: Pipeline, tasks: list[dict[str, Any]]
) -> None:
    allowed = set(corpus_pipeline.settings.profile("customer_reply").tags)
    client = ReplayChatClient([f"reply {n}" for n in range(len(tasks))])
    agent = build_agent("customer_reply", client, pipeline=corpus_pipeline)
    for task in tasks:  # each task a fresh session, as a new customer conversation
        run_all(agent, [task["task"]])
    seen: set[str] = set()
    for _, options in client.requests:
        sources = sources_in(str(options["instructions"]))
        assert all(allowed & corpus_tags()[source] for source in sources), sources
        seen.update(sources)
    assert len(seen) >= 2


def test_100_turn_session_stays_within_the_payload_budget(corpus_pipeline: Pipeline) -> None:
    client = ReplayChatClient([f"Turn {n}: noted; " + "the reserve and the deadline apply. " * 30 for n in range(100)])
    agent = build_agent("claims_triage", client, pipeline=corpus_pipeline, **SMALL)
    session = run_all(
        agent, [TASK] + [f"Next claim {n}: storm damage, reported {n} days late. " * 3 for n in range(1, 50)]
    )
    # the session is saved and restored half way (JSON, as a session store keeps it), the guard's summary with it
    session = AgentSession.from_dict(json.loads(json.dumps(session.to_dict())))
    assert session.state["rag_prompts.payload.claims_triage"]["summary"].startswith("Summary of earlier messages")
    turns = [f"Next claim {n}: storm damage, reported {n} days late. " * 3 for n in range(50, 100)]
    run_all(agent, turns, session)
    sent = payloads(client)
    assert len(sent) == 100
    totals = check_payloads(sent, PAYLOAD_BUDGET)
    assert max(totals) > 3000  # the budget is used, not just respected
    assert any(item.text.startswith("Summary of earlier messages") for item in sent[-1])
    assert sent[-1][-1].text.startswith("Next claim 99")
    assert len(session.state["in_memory"]["messages"]) == 200  # the session keeps everything; each call is fitted


def test_tool_chain_with_200_kb_outputs_and_the_stored_output_tool(
    corpus_pipeline: Pipeline, counter: TokenCounter, caplog: pytest.LogCaptureFixture
) -> None:
    exports: list[str] = []

    def export_claims(region: int) -> str:
        """Export every open claim of a region as JSON."""
        exports.append(blob(len(exports)))
        return exports[-1]

    chain = [call(f"c{n}", "export_claims", region=4) for n in range(8)]
    client = ReplayChatClient([*chain, "first look done"])
    agent = build_agent("claims_triage", client, pipeline=corpus_pipeline, tools=[export_claims], **SMALL)
    session = agent.create_session()
    with caplog.at_level(logging.INFO, logger="rag_prompts.payload"):
        asyncio.run(agent.run(TASK, session=session))
        reference = session.state["in_memory"]["messages"][-2].contents[0].result
        output_id = reference.split("id ")[1].split(",")[0]
        client.replies += [call("r1", "read_stored_output", output_id=output_id, page=1), "all referrals listed"]
        asyncio.run(agent.run("Read the last export and list the referrals.", session=session))
    assert len(exports) == 8 and len(client.requests) == 11
    sent = payloads(client)
    check_payloads(sent, PAYLOAD_BUDGET)
    tools = client.requests[0][1]["tools"]
    assert [tool.name for tool in tools] == ["export_claims", "read_stored_output"]
    schema_tokens = tool_definition_tokens([tool.to_json_schema_spec() for tool in tools], counter)
    for items in sent:
        assert recount(items) + schema_tokens <= PAYLOAD_BUDGET  # the tool definitions fit too
        for item in items:
            assert item.role != "tool" or len(item.text) < 8000  # no 200 KB output ever reaches the model
    results = [item for items in sent[:9] for item in items if item.role == "tool"]
    assert all(item.text.startswith("[tool output stored outside the prompt") for item in results)
    assert [item.answers for item in sent[8] if item.role == "tool"][-1] == "c7"  # the newest output is sent
    page = [item.text for item in sent[10] if item.role == "tool"][-1]
    assert page.startswith(f"[stored output {output_id}, page 1 of ")
    stored_text = Path(corpus_pipeline.settings.artifacts_folder) / output_id / "output.txt"
    assert stored_text.read_text("utf-8") == exports[-1]  # the newest
    stored = json.dumps([message.to_dict() for message in session.state["in_memory"]["messages"]])
    assert len(stored) < 50_000  # the session's history holds references, not the exports
    records = [record.payload for record in caplog.records if record.name == "rag_prompts.payload"]
    assert len(records) == 11 and all(row["total"] <= PAYLOAD_BUDGET for row in records)
    assert sum(len(row["offloaded"]) for row in records) == 8
    assert all(row["tokens"]["tools"] == schema_tokens for row in records)


def test_streaming_runs_are_guarded_too(corpus_pipeline: Pipeline) -> None:
    client = ReplayChatClient(["streamed " * 400] * 6)
    agent = build_agent("claims_triage", client, pipeline=corpus_pipeline, **SMALL)
    session = agent.create_session()

    async def converse() -> list[str]:
        texts = []
        for n in range(6):
            stream = agent.run(f"{TASK} Part {n}.", session=session, stream=True)
            texts.append((await stream.get_final_response()).text)
        return texts

    assert asyncio.run(converse())[-1].startswith("streamed")
    check_payloads(payloads(client), PAYLOAD_BUDGET)


# --- the same random conversations as the AutoGen property (tests/test_payload.py) ---------------------------


def to_af(message: LLMMessage) -> Message:
    """An AgentChat message as the Agent Framework message a chat API would get for it."""
    if isinstance(message, UserMessage):
        return Message("user", [str(message.content)])
    if isinstance(message, AssistantMessage):
        if isinstance(message.content, str):
            return Message("assistant", [message.content])
        return Message(
            "assistant", [Content.from_function_call(c.id, c.name, arguments=c.arguments) for c in message.content]
        )
    assert isinstance(message, FunctionExecutionResultMessage)
    return Message("tool", [Content.from_function_result(r.call_id, result=r.content) for r in message.content])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(conversation=agentchat_conversations(), limit=st.integers(1500, 5000), turns=st.sampled_from([0, 3]))
def test_payload_guard_keeps_any_conversation_within_budget_without_orphans(
    corpus_pipeline: Pipeline, conversation: list[LLMMessage], limit: int, turns: int
) -> None:
    profile = corpus_pipeline.settings.profile(
        "claims_triage", context_limit=limit, reply_reserve=0, budget=600, tool_output_tokens=200, history_turns=turns
    )
    prompter = TaskPrompter(corpus_pipeline, profile, task=TASK)
    instructions = prompter.prompt_for(TASK).system_message
    client = ReplayChatClient(
        ["ok"] * len(conversation), middleware=[PayloadGuard(prompter, AgentPayload(profile, PayloadLog()))]
    )
    session = AgentSession()

    async def calls() -> None:
        history: list[Message] = []
        for message in conversation:  # one model call after each message, the guard's summary kept in the session
            history.append(to_af(message))
            await client.get_response(
                list(history), options={"instructions": instructions}, client_kwargs={"session": session}
            )

    asyncio.run(calls())
    assert len(client.requests) == len(conversation)
    for items in payloads(client):
        assert items[0] == Item("system", instructions) and not any(item.role == "system" for item in items[1:])
        assert recount(items) <= limit
        assert_no_orphans(items[1:])
        assert items[1].role == "user" and items[1].text.startswith(TASK[:40])


# --- errors and imports -----------------------------------------------------------------------------------------


class BareClient(BaseChatClient[Any]):
    """A chat client without Agent Framework's middleware layer."""

    async def _inner_get_response(self, **kwargs: Any) -> ChatResponse[Any]:  # type: ignore[override]
        return ChatResponse(messages=[Message("assistant", ["hi"])])


def test_errors_are_clear(corpus_pipeline: Pipeline) -> None:
    client = ReplayChatClient([])
    with pytest.raises(ConfigError, match="known agents: claims_triage, compliance_reviewer"):
        build_agent("nobody", client, pipeline=corpus_pipeline)
    with pytest.raises(ConfigError, match="`instructions` is not accepted"):
        build_agent("claims_triage", client, pipeline=corpus_pipeline, instructions="Be helpful.")
    with pytest.raises(ConfigError, match="`instructions` is not accepted"):
        build_agent("claims_triage", client, pipeline=corpus_pipeline, default_options={"instructions": "Be brief."})
    with pytest.raises(ConfigError, match="BareClient.*runs no chat middleware"):
        build_agent("claims_triage", BareClient(), pipeline=corpus_pipeline)


def test_without_agent_framework_installed_the_error_names_the_extra() -> None:
    code = (
        "import sys; sys.modules['agent_framework'] = None\n"
        "from rag_prompts.agent_framework import build_agent\n"
        "from rag_prompts import ConfigError\n"
        "try:\n    build_agent('claims_triage', object())\n"
        "except ConfigError as error:\n    print(error)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "pip install 'rag-prompts[agent-framework]'" in result.stdout


def test_team_example_on_agent_framework_runs_offline(tmp_path: Path) -> None:
    _, calls = run_team_example(tmp_path, "team_example_af.py")
    assert [name for name, *_ in calls] == ["claims_triage", "compliance_reviewer", "customer_reply"] * 2
    for name, sent, messages, system, budget in calls:
        assert int(system) <= int(budget) and int(sent) > int(system)
        # each agent sees the case and the replies before its own: 1 + 2 + 3 messages, instructions included
        assert int(messages) == 2 + ["claims_triage", "compliance_reviewer", "customer_reply"].index(name)
