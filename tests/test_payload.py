"""The whole payload stays within each agent's payload budget, for AgentChat and classic (AG2) agents alike:
checked on what the model client receives over 100-turn conversations, tool-call chains with 200 KB outputs and
group chats, with the per-call token log and `rag-prompts log` on top."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from autogen_agentchat.teams import RoundRobinGroupChat
from autogen_core import FunctionCall
from autogen_core.models import (
    AssistantMessage,
    CreateResult,
    FunctionExecutionResult,
    FunctionExecutionResultMessage,
    LLMMessage,
    RequestUsage,
    SystemMessage,
    UserMessage,
)
from autogen_ext.models.replay import ReplayChatCompletionClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rag_prompts import ConfigError, Pipeline, build_agent, load_settings
from rag_prompts.agents import TaskPrompter
from rag_prompts.agents.ag2 import ag2_items, stored_output_reader
from rag_prompts.agents.agentchat import PolicyContext, payload_items, payload_tokens
from rag_prompts.classic import build_agent as build_classic_agent
from rag_prompts.payload.artifacts import ArtifactStore
from rag_prompts.payload.guard import tool_definition_tokens
from rag_prompts.payload.history import Item
from rag_prompts.payload.log import read_log, summarise_log
from rag_prompts.tokens import token_counter

from .agent_helpers import assert_no_orphans
from .conftest import CONFIG
from .test_agents import SINGLE_SYSTEM_MESSAGE, sent
from .test_classic import LLM_CONFIG, RecordingClient

TASK = "Triage the storm claims in region 4 and list every one that needs a referral."
SMALL = {"context_limit": 4096, "reply_reserve": 512, "budget": 1200, "tool_output_tokens": 600}


def blob(turn: int) -> str:
    """About 200 KB of JSON, as a claims system's bulk export would return."""
    rows = [
        {"claim": f"CLM-{turn}-{n:05d}", "region": 4, "reserve": n * 37 % 90_000, "status": "open"} for n in range(2800)
    ]
    return json.dumps(rows)


def recount(items: Sequence[Item]) -> int:
    """The payload's tokens counted here, independently: chat overhead 3 per message and 3 for the reply, 8 per
    tool call."""
    counter = token_counter("gpt-4")
    return 3 + sum(3 + counter.count(i.role) + counter.count(i.text) + 8 * len(i.calls) for i in items)


def check_payloads(payloads: Sequence[Sequence[Item]], budget: int, task_from_user: bool = True) -> list[int]:
    """Every payload: one system message first, within budget, no orphans, and the task in it as a user message
    (unless the agent started the chat: then it is its own); the token totals."""
    totals = []
    for items in payloads:
        assert [item.role for item in items].count("system") == 1 and items[0].role == "system"
        total = recount(items)
        assert total <= budget, f"{total} tokens over the payload budget of {budget}"
        task_role = "user" if task_from_user else "assistant"
        assert any(item.role == task_role and item.text.startswith(TASK[:40]) for item in items), "task dropped"
        assert_no_orphans(items[1:])
        totals.append(total)
    return totals


# --- AgentChat ------------------------------------------------------------------------------------------


def agentchat_payloads(client: ReplayChatCompletionClient) -> list[list[Item]]:
    return [payload_items(messages) for messages in sent(client)]


def test_agentchat_100_turns_stay_within_the_payload_budget(corpus_pipeline: Pipeline) -> None:
    client = ReplayChatCompletionClient(
        [f"Turn {n}: noted; " + "the reserve and the deadline apply. " * 30 for n in range(100)],
        model_info=SINGLE_SYSTEM_MESSAGE,
    )
    agent = build_agent("claims_triage", client, pipeline=corpus_pipeline, **SMALL)
    asyncio.run(agent.run(task=TASK))
    for turn in range(1, 100):
        asyncio.run(agent.run(task=f"Next claim {turn}: storm damage, reported {turn} days late. " * 3))
    payloads = agentchat_payloads(client)
    assert len(payloads) == 100
    totals = check_payloads(payloads, 4096 - 512)
    assert max(totals) > 3000  # the budget is used, not just respected
    assert any(item.text.startswith("Summary of earlier messages") for item in payloads[-1])
    assert payloads[-1][-1].text.startswith("Next claim 99")


def test_agentchat_tool_chain_with_200_kb_outputs(corpus_pipeline: Pipeline, tmp_path: Path) -> None:
    exports: list[str] = []

    def export_claims(region: int) -> str:
        """Export every open claim of a region as JSON."""
        exports.append(blob(len(exports)))
        return exports[-1]

    replies: list[str | CreateResult] = []
    tasks = []
    for turn in range(30):
        if turn % 10 == 0:
            call = FunctionCall(id=f"call-{turn}", name="export_claims", arguments=json.dumps({"region": 4}))
            replies.append(
                CreateResult(finish_reason="function_calls", content=[call], usage=RequestUsage(0, 0), cached=False)
            )
        replies.append(f"Turn {turn} handled.")
        tasks.append(TASK if turn == 0 else f"Turn {turn}: what next for the region 4 storm claims?")
    client = ReplayChatCompletionClient(replies, model_info=SINGLE_SYSTEM_MESSAGE)
    agent = build_agent(
        "claims_triage", client, pipeline=corpus_pipeline, tools=[export_claims], reflect_on_tool_use=True, **SMALL
    )
    for task in tasks:
        asyncio.run(agent.run(task=task))
    payloads = agentchat_payloads(client)
    tools = agent.model_context.tool_tokens  # the two tools' definitions go with every call
    assert tools > 50
    assert max(check_payloads(payloads, 4096 - 512 - tools)) > 4096 - 512 - tools - 400
    assert len(exports) == 3
    texts = [item.text for items in payloads for item in items if item.role == "tool"]
    assert texts and all(token_counter("gpt-4").count(text) <= 600 for text in texts)
    assert all(export not in text for export in exports for text in texts)
    stored_id = texts[0].split("id ", 1)[1].split(",", 1)[0]
    folder = corpus_pipeline.settings.artifacts_folder
    assert (folder / stored_id / "output.txt").read_text("utf-8") == exports[0]
    reader = next(tool for tool in agent._tools if tool.name == "read_stored_output")
    page = asyncio.run(reader.run_json({"output_id": stored_id, "page": 2}, cancellation_token=_token()))
    assert page.startswith(f"[stored output {stored_id}, page 2 of ") and token_counter("gpt-4").count(page) <= 600
    assert page.split("\n", 1)[1] in exports[0]


def _token() -> Any:
    from autogen_core import CancellationToken

    return CancellationToken()


def test_agentchat_team_members_each_stay_within_their_own_budget(corpus_pipeline: Pipeline) -> None:
    talk = "We should check the deductible, the reserve and the referral threshold again. " * 12
    triage_client = ReplayChatCompletionClient(
        [f"Triage {n}: {talk}" for n in range(20)], model_info=SINGLE_SYSTEM_MESSAGE
    )
    review_client = ReplayChatCompletionClient(
        [f"Review {n}: {talk}" for n in range(20)], model_info=SINGLE_SYSTEM_MESSAGE
    )
    triage = build_agent("claims_triage", triage_client, pipeline=corpus_pipeline, context_limit=3500, budget=1200)
    reviewer = build_agent(
        "compliance_reviewer", review_client, pipeline=corpus_pipeline, context_limit=4500, budget=2000
    )
    asyncio.run(RoundRobinGroupChat([triage, reviewer], max_turns=40).run(task=TASK))
    assert max(check_payloads(agentchat_payloads(triage_client), 3500 - 1024)) > 1500
    assert max(check_payloads(agentchat_payloads(review_client), 4500 - 1024)) > 2500


def internal_export() -> str:
    """401 rows of an internal export that only the agent that asked for it may see."""
    return json.dumps([{"claim": f"INTERNAL-{n:04d}", "reserve": n * 37, "note": "adjuster only"} for n in range(401)])


@pytest.mark.parametrize("reflect", [None, False])
def test_a_group_chat_keeps_one_agents_raw_tool_output_from_the_others(
    corpus_pipeline: Pipeline, reflect: bool | None
) -> None:
    export = internal_export()

    def export_claims(region: int) -> str:
        """Export the region's claims with their internal reserve notes."""
        return export

    def lookup_form(number: str) -> str:
        """Look up a claim form by number."""
        return f"Form {number}: first notice of loss."

    call = FunctionCall(id="call-export", name="export_claims", arguments=json.dumps({"region": 4}))
    asked = CreateResult(finish_reason="function_calls", content=[call], usage=RequestUsage(0, 0), cached=False)
    triage_client = ReplayChatCompletionClient(
        [asked, "Region 4: 401 open claims, 12 need a referral.", "Triage done."], model_info=SINGLE_SYSTEM_MESSAGE
    )
    review_client = ReplayChatCompletionClient(["Reviewed."] * 3, model_info=SINGLE_SYSTEM_MESSAGE)
    chosen = {} if reflect is None else {"reflect_on_tool_use": reflect}
    triage = build_agent("claims_triage", triage_client, pipeline=corpus_pipeline, tools=[export_claims], **chosen)
    reviewer = build_agent("compliance_reviewer", review_client, pipeline=corpus_pipeline, tools=[lookup_form])
    asyncio.run(RoundRobinGroupChat([triage, reviewer], max_turns=4).run(task=TASK))

    triage_saw = [str(message.content) for messages in sent(triage_client) for message in messages]
    reviewer_saw = "\n".join(str(message.content) for messages in sent(review_client) for message in messages)
    assert len(sent(review_client)) == 2 and any("INTERNAL-0000" in text for text in triage_saw)
    if reflect is None:  # the factory's default: the team gets the triage model's answer, not the export
        assert "INTERNAL-" not in reviewer_saw and "401 open claims, 12 need a referral" in reviewer_saw
    else:  # AgentChat's own default: the raw output goes on to every other agent's model
        assert reviewer_saw.count("INTERNAL-") > 20

    stored_id = next(text for text in triage_saw if "stored outside the prompt" in text).split("id ", 1)[1][:16]
    reviewers_reader = next(tool for tool in reviewer._tools if tool.name == "read_stored_output")
    reply = asyncio.run(reviewers_reader.run_json({"output_id": stored_id, "page": 1}, cancellation_token=_token()))
    assert reply == f"[stored output {stored_id} was stored by another agent; it is not readable here]"
    triage_reader = next(tool for tool in triage._tools if tool.name == "read_stored_output")
    page = asyncio.run(triage_reader.run_json({"output_id": stored_id, "page": 1}, cancellation_token=_token()))
    assert "INTERNAL-0000" in page


def test_every_call_is_logged_and_the_log_command_shows_the_peak(
    corpus_pipeline: Pipeline, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "payload.jsonl"
    settings = corpus_pipeline.settings.model_copy(update={"payload_log": str(log)})
    pipeline = Pipeline(settings, embedder=corpus_pipeline.embedder, store=corpus_pipeline.store)
    client = ReplayChatCompletionClient(["ok " * 200] * 12, model_info=SINGLE_SYSTEM_MESSAGE)
    agent = build_agent("claims_triage", client, pipeline=pipeline, **SMALL)
    for turn in range(12):
        asyncio.run(agent.run(task=TASK if turn == 0 else f"Turn {turn}. " + "More detail. " * 40))
    rows = read_log(log)
    assert [row["call"] for row in rows] == list(range(1, 13))
    for row, messages in zip(rows, sent(client), strict=True):
        assert row["total"] == payload_tokens(messages, token_counter("gpt-4"))
        assert row["budget"] == 4096 - 512 and row["agent"] == "claims_triage"
        assert row["messages"]["system"] == 1 and sum(row["tokens"].values()) + 3 == row["total"]
    (summary,) = summarise_log(rows)
    assert summary["peak"] == max(row["total"] for row in rows) and summary["calls"] == 12

    from rag_prompts.cli import main

    assert main(["log", str(log)]) == 0
    out = capsys.readouterr().out
    assert "claims_triage" in out and str(summary["peak"]) in out


def test_payload_settings_are_checked(tmp_path: Path) -> None:
    settings = load_settings(CONFIG, environ={}, store=str(tmp_path))
    assert settings.profile("claims_triage").payload_budget == 8192 - 1024  # gpt-4
    assert settings.profile("claims_triage", model="gpt-4o").payload_budget == 128_000 - 1024
    with pytest.raises(ConfigError, match="must fit the payload budget"):
        settings.profile("claims_triage", context_limit=1500)
    relative = load_settings(CONFIG, environ={}, store=str(tmp_path / "chroma"), payload_log="logs/payload.jsonl")
    assert relative.payload_log_path == CONFIG.parent / "logs" / "payload.jsonl"  # beside the config, like every path
    assert relative.artifacts_folder == tmp_path / "artifacts"  # beside the store folder
    assert load_settings(CONFIG, environ={}, store=str(tmp_path)).payload_log_path is None


# --- classic AutoGen (AG2) ------------------------------------------------------------------------------


def classic_agent(name: str, pipeline: Pipeline, replies: list[Any], **overrides: Any) -> tuple[Any, list[Any]]:
    calls: list[list[dict[str, Any]]] = []
    agent = build_classic_agent(name, LLM_CONFIG, pipeline=pipeline, **overrides)
    agent.register_model_client(RecordingClient, calls=calls, replies=replies)
    return agent, calls


def classic_payloads(calls: list[list[dict[str, Any]]]) -> list[list[Item]]:
    payloads = []
    for messages in calls:
        system = [Item("system", str(message["content"])) for message in messages if message["role"] == "system"]
        payloads.append(system + ag2_items([message for message in messages if message["role"] != "system"])[0])
    return payloads


def test_classic_100_turns_stay_within_the_payload_budget(corpus_pipeline: Pipeline) -> None:
    replies = [f"Turn {n}: noted; " + "the reserve and the deadline apply. " * 30 for n in range(100)]
    agent, calls = classic_agent("claims_triage", corpus_pipeline, replies, **SMALL)
    history: list[dict[str, Any]] = []
    for turn in range(100):
        text = TASK if turn == 0 else f"Next claim {turn}: storm damage, reported {turn} days late. " * 3
        history.append({"role": "user", "content": text, "name": "user"})
        reply = agent.generate_reply(messages=history)
        history.append({"role": "assistant", "content": reply if isinstance(reply, str) else reply["content"]})
    payloads = classic_payloads(calls)
    assert len(payloads) == 100
    totals = check_payloads(payloads, 4096 - 512)
    assert max(totals) > 3000
    assert payloads[-1][-1].text.startswith("Next claim 99")


def test_classic_tool_chain_with_200_kb_outputs(corpus_pipeline: Pipeline) -> None:
    replies = [f"Turn {n} handled." for n in range(30)]
    agent, calls = classic_agent("claims_triage", corpus_pipeline, replies, **SMALL)
    history: list[dict[str, Any]] = []
    exports = []
    for turn in range(30):
        history.append({"role": "user", "content": TASK if turn == 0 else f"Turn {turn}: what next?", "name": "user"})
        if turn % 10 == 0:  # the model asked for an export and the executor answered with it
            exports.append(blob(turn))
            call = {"id": f"call-{turn}", "type": "function", "function": {"name": "export", "arguments": "{}"}}
            history.append({"role": "assistant", "content": None, "tool_calls": [call]})
            response = {"tool_call_id": f"call-{turn}", "role": "tool", "content": exports[-1]}
            history.append({"role": "tool", "content": exports[-1], "tool_responses": [response]})
        history.append({"role": "assistant", "content": agent.generate_reply(messages=history)})
    payloads = classic_payloads(calls)
    check_payloads(payloads, 4096 - 512)
    tool_texts = [item.text for items in payloads for item in items if item.role == "tool"]
    assert tool_texts and all("stored outside the prompt" in text for text in tool_texts)
    assert all(export not in text for export in exports for text in tool_texts)
    read = stored_output_reader(ArtifactStore(corpus_pipeline.settings.artifacts_folder, "claims_triage"), 600, "gpt-4")
    stored_id = tool_texts[-1].split("id ", 1)[1].split(",", 1)[0]
    pages = [read(stored_id, 1), read(stored_id, 2)]
    assert all(token_counter("gpt-4").count(page) <= 600 for page in pages)
    assert pages[0].split("\n", 1)[1] + pages[1].split("\n", 1)[1] in exports[-1]
    assert exports[-1].startswith(pages[0].split("\n", 1)[1])
    assert "does not exist" in read(stored_id, 10_000) and "not a stored output id" in read("../etc/passwd", 1)


def classic_pair(pipeline: Pipeline) -> list[tuple[Any, list[Any]]]:
    """A triage agent (payload budget 3500 - 1024) and a reviewer (4500 - 1024) that talk at length."""
    talk = "We should check the deductible, the reserve and the referral threshold again. " * 12
    return [
        classic_agent(name, pipeline, [f"{name} {n}: {talk}" for n in range(20)], context_limit=limit)
        for name, limit in (("claims_triage", 3500), ("compliance_reviewer", 4500))
    ]


@pytest.mark.parametrize("shared", [False, True])
def test_an_ag2_group_chat_keeps_one_agents_tool_output_from_the_others(
    corpus_pipeline: Pipeline, shared: bool
) -> None:
    import autogen
    from autogen import GroupChat, GroupChatManager, UserProxyAgent

    export = internal_export()

    def export_claims(region: int) -> str:
        """Export the region's claims with their internal reserve notes."""
        return export

    asked = {"id": "call-export", "name": "export_claims", "arguments": json.dumps({"region": 4})}
    triage, triage_calls = classic_agent("claims_triage", corpus_pipeline, [asked, "Region 4: 401 claims.", "Done."])
    reviewer, review_calls = classic_agent(
        "compliance_reviewer", corpus_pipeline, ["Reviewed."] * 3, shared_tool_outputs=shared
    )
    user = UserProxyAgent("user", human_input_mode="NEVER", code_execution_config=False, default_auto_reply="")
    autogen.register_function(export_claims, caller=triage, executor=user, description="Export claims.")
    triage.register_model_client(RecordingClient, calls=triage_calls, replies=[asked, "Region 4: 401 claims."])
    chat = GroupChat([user, triage, reviewer], messages=[], max_round=6, speaker_selection_method="round_robin")
    user.initiate_chat(GroupChatManager(chat, llm_config=False), message=TASK, silent=True)

    triage_saw = [item.text for items in classic_payloads(triage_calls) for item in items]
    reviewer_saw = classic_payloads(review_calls)
    assert any("INTERNAL-0000" in text for text in triage_saw)  # its own output, as an excerpt with a reference
    check_payloads(reviewer_saw, 8192 - 1024)
    tool_texts = [item.text for items in reviewer_saw for item in items if item.role == "tool"]
    assert tool_texts  # the call and its result stay paired, so providers accept the history
    if shared:
        assert any("INTERNAL-" in text for text in tool_texts)
    else:
        assert tool_texts == ["[the output of claims_triage's export_claims call is not shown to compliance_reviewer]"]
        assert not any("INTERNAL-" in item.text for items in reviewer_saw for item in items)


def test_classic_two_agents_talking_each_stay_within_their_own_budget(corpus_pipeline: Pipeline) -> None:
    (triage, triage_calls), (reviewer, review_calls) = classic_pair(corpus_pipeline)
    reviewer.initiate_chat(triage, message=TASK, max_turns=20, silent=True)
    assert max(check_payloads(classic_payloads(triage_calls), 3500 - 1024)) > 1500
    review = classic_payloads(review_calls)
    assert max(check_payloads(review, 4500 - 1024, task_from_user=False)) > 2500


def test_classic_group_chat_members_each_stay_within_their_own_budget(corpus_pipeline: Pipeline) -> None:
    from autogen import GroupChat, GroupChatManager, UserProxyAgent

    (triage, triage_calls), (reviewer, review_calls) = classic_pair(corpus_pipeline)
    user = UserProxyAgent("user", human_input_mode="NEVER", code_execution_config=False, default_auto_reply="")
    chat = GroupChat([user, triage, reviewer], messages=[], max_round=30, speaker_selection_method="round_robin")
    user.initiate_chat(GroupChatManager(chat, llm_config=False), message=TASK, silent=True)
    assert len(triage_calls) >= 8 and len(review_calls) >= 8
    assert max(check_payloads(classic_payloads(triage_calls), 3500 - 1024)) > 1500
    assert max(check_payloads(classic_payloads(review_calls), 4500 - 1024)) > 2500


# --- the AgentChat context on random conversations ----------------------------------------------------------

TEXTS = st.text(alphabet='abcde xyz.,\n{}"0123', max_size=300)


@st.composite
def agentchat_conversations(draw: st.DrawFn) -> list[LLMMessage]:
    messages: list[LLMMessage] = [UserMessage(content=TASK, source="user")]
    for step in range(draw(st.integers(0, 30))):
        kind = draw(st.sampled_from(["user", "assistant", "tools", "orphan"]))
        if kind == "user":
            messages.append(UserMessage(content=draw(TEXTS) * draw(st.integers(1, 40)), source="user"))
        elif kind == "assistant":
            messages.append(AssistantMessage(content=draw(TEXTS), source="agent"))
        else:
            calls = [
                FunctionCall(id=f"c{step}-{n}", name="lookup", arguments=json.dumps({"q": draw(TEXTS)[:30]}))
                for n in range(draw(st.integers(1, 3)))
            ]
            if kind == "tools":
                messages.append(AssistantMessage(content=calls, source="agent"))
            outputs = [draw(TEXTS) * draw(st.sampled_from([1, 10, 200])) for _ in calls]
            results = [
                FunctionExecutionResult(content=output, name="lookup", call_id=call.id, is_error=False)
                for call, output in zip(calls, outputs, strict=True)
            ]
            messages.append(FunctionExecutionResultMessage(content=results))
    return messages


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(conversation=agentchat_conversations(), limit=st.integers(1500, 5000), turns=st.sampled_from([0, 3]))
def test_agentchat_context_keeps_any_conversation_within_budget_without_orphans(
    corpus_pipeline: Pipeline, conversation: list[LLMMessage], limit: int, turns: int
) -> None:
    profile = corpus_pipeline.settings.profile(
        "claims_triage", context_limit=limit, reply_reserve=0, budget=600, tool_output_tokens=200, history_turns=turns
    )
    context = PolicyContext(
        TaskPrompter(corpus_pipeline, profile, task=TASK),
        artifacts=ArtifactStore(corpus_pipeline.settings.artifacts_folder),
    )

    async def payloads() -> list[list[LLMMessage]]:
        sent_so_far = []
        for message in conversation:
            await context.add_message(message)
            sent_so_far.append(await context.get_messages())
        return sent_so_far

    for messages in asyncio.run(payloads()):
        assert isinstance(messages[0], SystemMessage) and not any(isinstance(m, SystemMessage) for m in messages[1:])
        assert payload_tokens(messages, context.counter) <= limit
        assert_no_orphans(payload_items(messages)[1:])
        assert isinstance(messages[1], UserMessage) and messages[1].content.startswith(TASK[:40])


# --- long tool chains within one turn ------------------------------------------------------------------------


def test_agentchat_long_tool_chain_in_one_turn(corpus_pipeline: Pipeline) -> None:
    exports: list[str] = []

    def export_claims(region: int) -> str:
        """Export every open claim of a region as JSON."""
        exports.append(blob(100 + len(exports)))
        return exports[-1]

    usage = RequestUsage(prompt_tokens=0, completion_tokens=0)
    chain: list[str | CreateResult] = [
        CreateResult(
            finish_reason="function_calls",
            content=[FunctionCall(id=f"chain-{n}", name="export_claims", arguments=json.dumps({"region": n}))],
            usage=usage,
            cached=False,
        )
        for n in range(8)
    ]
    client = ReplayChatCompletionClient([*chain, "All eight regions exported."], model_info=SINGLE_SYSTEM_MESSAGE)
    agent = build_agent(
        "claims_triage", client, pipeline=corpus_pipeline, tools=[export_claims], max_tool_iterations=10, **SMALL
    )
    asyncio.run(agent.run(task=TASK))
    payloads = agentchat_payloads(client)
    assert len(payloads) == 9 and len(exports) == 8
    check_payloads(payloads, 4096 - 512 - agent.model_context.tool_tokens)
    last = payloads[-1]
    assert [item.answers for item in last if item.role == "tool"][-1] == "chain-7"  # the newest round is sent
    assert sum(item.role == "tool" for item in last) >= 3  # with as many earlier rounds as fit


def test_classic_long_tool_chain_and_the_stored_output_tool(corpus_pipeline: Pipeline) -> None:
    from autogen import UserProxyAgent

    from rag_prompts.classic import register_stored_output_tool

    agent, calls = classic_agent("claims_triage", corpus_pipeline, ["All eight regions exported."], **SMALL)
    user = UserProxyAgent("user", human_input_mode="NEVER", code_execution_config=False)
    register_stored_output_tool(agent, user)
    agent.register_model_client(RecordingClient, calls=calls, replies=["All eight regions exported."])  # AG2 rebuilt it
    history: list[dict[str, Any]] = [{"role": "user", "content": TASK, "name": "user"}]
    exports = [blob(200 + n) for n in range(8)]
    for n, export in enumerate(exports):
        call = {"id": f"chain-{n}", "type": "function", "function": {"name": "export", "arguments": "{}"}}
        history.append({"role": "assistant", "content": None, "tool_calls": [call]})
        history.append({"role": "tool", "content": export, "tool_responses": [
            {"tool_call_id": f"chain-{n}", "role": "tool", "content": export}]})  # fmt: skip
    agent.generate_reply(messages=history)
    (payload,) = classic_payloads(calls)
    tools = tool_definition_tokens(agent.llm_config["tools"], token_counter("gpt-4"))
    assert tools > 50  # the read tool's definition goes with every call, and counts
    check_payloads([payload], 4096 - 512 - tools)
    assert [item.answers for item in payload if item.role == "tool"][-1] == "chain-7"
    stored_id = hashlib.sha256(b"claims_triage\0" + exports[-1].encode()).hexdigest()[:16]
    page = user.function_map["read_stored_output"](output_id=stored_id, page=1)
    assert page.startswith(f"[stored output {stored_id}, page 1 of ") and token_counter("gpt-4").count(page) <= 600


def test_agentchat_with_a_buffered_history_sends_the_newest_messages(corpus_pipeline: Pipeline) -> None:
    from autogen_core.model_context import BufferedChatCompletionContext

    client = ReplayChatCompletionClient(
        [f"Reply {n}: " + "noted " * 200 for n in range(40)], model_info=SINGLE_SYSTEM_MESSAGE
    )
    agent = build_agent(
        "claims_triage", client, pipeline=corpus_pipeline, model_context=BufferedChatCompletionContext(10), **SMALL
    )
    for turn in range(40):
        asyncio.run(agent.run(task=f"Question {turn}: " + "which deadline applies? " * 40))
    for turn, items in enumerate(agentchat_payloads(client)):
        assert items[-1].role == "user" and items[-1].text.startswith(f"Question {turn}:")
        assert recount(items) <= 3584
