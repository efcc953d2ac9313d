"""The Microsoft Agent Framework rows of bench_turns.py: the same 100 turns and the same tool scenario (a 200 KB
export every 10th turn) through Agent Framework agents, each on a `ReplayChatClient` that records what the model
would receive (the instructions as the system message, then the messages; tool definitions not counted, as in the
AgentChat rows):

  (A) Agent Framework's own pattern: a search context provider adding the top-k chunks for the run's input as one
      user message (what its Redis / Azure AI Search / Mem0 providers do; here on our store, same k), the history
      in the session (`InMemoryHistoryProvider`), no compaction;
  (B) the same with Agent Framework's compaction before every model call,
      `ContextWindowCompactionStrategy(max_context_window_tokens=8192, max_output_tokens=1024)` with its default
      tokenizer (characters / 4);
  (C) a rag-prompts agent (`rag_prompts.agent_framework`: composed instructions, payload guard, stored outputs).

Columns: calls over the payload budget, calls sending a tool result without its call, and calls that carry no
retrieved policy text at all (the search provider runs before the history provider Agent Framework adds, so its
message comes first and is the first group compaction drops).
"""

from __future__ import annotations

import asyncio
import json
import statistics
from collections.abc import Callable, Sequence
from typing import Any

from agent_framework import (
    Agent,
    AgentSession,
    Content,
    ContextProvider,
    ContextWindowCompactionStrategy,
    Message,
    SessionContext,
    SupportsAgentRun,
)

from rag_prompts import Pipeline, token_counter
from rag_prompts.agents import TaskPrompter
from rag_prompts.agents.agent_framework import ReplayChatClient, build_af_agent, payload_items
from rag_prompts.payload.guard import by_role
from rag_prompts.payload.history import units

LABELS = {
    "af_top_k": "(A) AF search provider (top-k), no compaction",
    "af_compaction": "(B) AF search provider + ContextWindowCompaction",
    "rag_prompts": "(C) rag-prompts AF agent",
}
MEMORY_PROMPT = "## Memories\nConsider the following memories when answering user questions:"


class TopKPolicies(ContextProvider):
    """Agent Framework's search-provider pattern on our store: the top-k chunk texts for the run's input, added as
    one user message before it, however long they are."""

    def __init__(self, pipeline: Pipeline, k: int) -> None:
        super().__init__("policies")
        self.pipeline = pipeline
        self.k = k

    async def before_run(
        self, *, agent: SupportsAgentRun, session: AgentSession, context: SessionContext, state: dict[str, Any]
    ) -> None:
        query = "\n".join(message.text for message in context.input_messages if message.text.strip())
        hits = await asyncio.to_thread(self.pipeline.search, query, self.k)
        found = "\n".join(hit.chunk.text for hit in hits)
        context.extend_messages(self.source_id, [Message("user", [f"{MEMORY_PROMPT}\n{found}"])])


def agents(pipeline: Pipeline, replies: Callable[[], list[Any]], tools: Sequence[Any] = ()) -> dict[str, Any]:
    profile = pipeline.settings.profile(None)
    made: dict[str, Any] = {}
    for label in LABELS:
        client = ReplayChatClient(replies())
        if label == "rag_prompts":
            agent = build_af_agent(TaskPrompter(pipeline, profile), client, tools=list(tools) or None)
        else:
            compaction = ContextWindowCompactionStrategy(max_context_window_tokens=8192, max_output_tokens=1024)
            agent = Agent(
                client, pipeline.settings.base_message, name=label, tools=list(tools) or None,
                context_providers=[TopKPolicies(pipeline, profile.k)],
                compaction_strategy=compaction if label == "af_compaction" else None,
            )  # fmt: skip
        made[label] = (agent, client)
    return made


async def converse(agent: Agent[Any], turns: Sequence[str]) -> None:
    session = agent.create_session()
    for turn in turns:
        await agent.run(turn, session=session)


def figures(client: ReplayChatClient, pipeline: Pipeline) -> dict[str, Any]:
    profile = pipeline.settings.profile(None)
    counter = token_counter(profile.model)
    calls = [payload_items(str(options.get("instructions") or ""), messages) for messages, options in client.requests]
    tokens = [by_role(items, counter)[2] for items in calls]
    return {
        "calls": len(tokens),
        "first": tokens[0],
        "mean": round(statistics.fmean(tokens)),
        "max": max(tokens),
        "last": tokens[-1],
        "over_payload_budget": sum(total > profile.payload_budget for total in tokens),
        "orphaned": sum(units(items[1:])[1] > 0 for items in calls),
        "without_policies": sum(not any(has_policies(item.text) for item in items) for items in calls),
        "tokens": tokens,
    }


def has_policies(text: str) -> bool:
    """Whether a message carries retrieved policy text: the search provider's message, or composed excerpts."""
    return text.startswith(MEMORY_PROMPT) or '<policy source="' in text


def export_tool(blob: Callable[[int], str]) -> Callable[[int], str]:
    exports = iter(range(10_000))

    def export_claims(region: int) -> str:
        """Export every open claim of a region as JSON."""
        return blob(next(exports))

    return export_claims


def tool_replies(turns: int) -> list[Any]:
    replies: list[Any] = []
    for turn in range(1, turns + 1):
        if turn % 10 == 0:
            arguments = json.dumps({"region": 4})
            replies.append([Content.from_function_call(f"call-{turn}", "export_claims", arguments=arguments)])
        replies.append(f"Turn {turn} analysed.")
    return replies


async def bench_agent_framework(pipeline: Pipeline, turns: list[str], blob: Callable[[int], str]) -> dict[str, Any]:
    """Both scenarios through (A), (B) and (C); figures per row."""
    budget = pipeline.settings.profile(None).payload_budget
    results: dict[str, Any] = {"turn_count": len(turns), "payload_budget": budget}
    for scenario, replies, tools in (
        ("turns", lambda: [f"Report {i} analysed." for i in range(1, len(turns) + 1)], ()),
        ("tools", lambda: tool_replies(len(turns)), (export_tool(blob),)),
    ):
        rows: dict[str, Any] = {}
        for label, (agent, client) in agents(pipeline, replies, tools).items():
            try:
                await converse(agent, turns)
                rows[label] = figures(client, pipeline)
            except Exception as error:  # a baseline that breaks is a result too
                rows[label] = {"error": f"{type(error).__name__}: {error}"[:300], **figures(client, pipeline)}
        results[scenario] = rows
    return results


def report_agent_framework(results: dict[str, Any]) -> None:
    print(f"\nMicrosoft Agent Framework, tokens sent per call; payload budget {results['payload_budget']}:")
    for scenario, title in (
        ("turns", f"{results['turn_count']} turns"),
        ("tools", f"{results['turn_count']} turns with tools (a 200 KB export every 10th turn)"),
    ):
        print(f"  {title}")
        print(
            f"    {'agent':<50} {'calls':>5} {'first':>7} {'mean':>8} {'max':>8} {'last':>8} {'over':>5}"
            f" {'orphaned':>8} {'no policies':>11}"
        )
        for key, label in LABELS.items():
            row = results[scenario][key]
            print(
                f"    {label:<50} {row['calls']:>5} {row['first']:>7,} {row['mean']:>8,} {row['max']:>8,}"
                f" {row['last']:>8,} {row['over_payload_budget']:>5} {row['orphaned']:>8}"
                f" {row['without_policies']:>11}"
            )
            if "error" in row:
                print(f"      stopped: {row['error']}")
