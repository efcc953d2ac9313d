#!/usr/bin/env python3
"""Reproduce the prompt blow-up this project exists for: 100 turns of "Turn i: analyze this report..." against
an AgentChat assistant whose policy knowledge comes from

  (a) the whole corpus pasted into the system message,
  (b) AutoGen's ChromaDBVectorMemory holding the same chunks, embedded with the same model, same k,
  (c) a rag-prompts agent (`build_agent` machinery, the top-level profile: k and budget from rag_prompts.toml).

Each agent's model is AutoGen's ReplayChatCompletionClient, which records exactly what the model would receive;
tokens per call are counted with the configured model's encoding, message overhead included. It then replays (b)
through AutoGen's real OpenAI client for a model that takes one system message (most non-OpenAI models behind
OpenAI-compatible servers), with the HTTP layer mocked, to show where it fails.

Then the seed scenario with tools: 100 turns where every 10th turn a tool returns a 200 KB JSON export, through
  (1) a rag-prompts agent (payload guard: history within the payload budget, large outputs stored outside),
  (2) an AssistantAgent with AutoGen's BufferedChatCompletionContext(8),
  (3) an AssistantAgent with no guard (the whole history),
printing tokens per call (mean, max) and, for (2), the calls that start with a tool result whose call was cut off.

Last, one tool call returning a 50 MB JSON export through a rag-prompts agent: the time the turn takes (the output
is stored with its page index), the peak memory above the agent's baseline while it does, and the latency of
reading pages back through the agent's `read_stored_output` tool.

    python scripts/bench_turns.py [--turns 100] [--large-output-mb 50] [--only-large-output] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import random
import resource
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from autogen_agentchat.agents import AssistantAgent
from autogen_core import EVENT_LOGGER_NAME, CancellationToken, FunctionCall
from autogen_core.memory import MemoryContent, MemoryMimeType
from autogen_core.model_context import BufferedChatCompletionContext, UnboundedChatCompletionContext
from autogen_core.models import (
    AssistantMessage,
    ChatCompletionClient,
    CreateResult,
    FunctionExecutionResultMessage,
    LLMMessage,
    ModelInfo,
    RequestUsage,
    SystemMessage,
)
from autogen_ext.memory.chromadb import (
    ChromaDBVectorMemory,
    PersistentChromaDBVectorMemoryConfig,
    SentenceTransformerEmbeddingFunctionConfig,
)
from autogen_ext.models.replay import ReplayChatCompletionClient

from rag_prompts import Pipeline, TokenCounter, token_counter
from rag_prompts.agents import TaskPrompter
from rag_prompts.agents.agentchat import build_agentchat_agent, payload_tokens
from rag_prompts.embed import resolve_model
from rag_prompts.loaders import load_document

ROOT = Path(__file__).resolve().parent.parent
TOOL_MODEL = ModelInfo(
    vision=False, function_calling=True, json_output=False, family="unknown", structured_output=False,
    multiple_system_messages=False,
)  # fmt: skip
SINGLE_SYSTEM_MESSAGE = ModelInfo(
    vision=False, function_calling=False, json_output=False, family="unknown", structured_output=False,
    multiple_system_messages=False,
)  # fmt: skip


def turn_messages(count: int, tasks_file: Path) -> list[str]:
    reports = [json.loads(line)["task"] for line in tasks_file.read_text("utf-8").splitlines() if line.strip()]
    return [
        f"Turn {i}: analyze this report and list the policy rules that apply. Report: {reports[i % len(reports)]}"
        for i in range(1, count + 1)
    ]


def replay(turns: int) -> ReplayChatCompletionClient:
    return ReplayChatCompletionClient([f"Report {i} analysed." for i in range(1, turns + 1)])


async def converse(agent: AssistantAgent, turns: Sequence[str]) -> None:
    for turn in turns:
        await agent.run(task=turn)


def whole_corpus_agent(pipeline: Pipeline, client: ChatCompletionClient) -> AssistantAgent:
    corpus = pipeline.settings.corpus_paths[0]
    texts = [
        load_document(path, corpus).text
        for path in sorted(corpus.rglob("*"))
        if path.suffix in {".md", ".txt", ".html"}
    ]
    system = pipeline.settings.base_message + "\n\n# Policies\n\n" + "\n\n".join(texts)
    return AssistantAgent("whole_corpus", client, system_message=system)


async def vector_memory(pipeline: Pipeline, folder: str, k: int) -> ChromaDBVectorMemory:
    """AutoGen's ChromaDBVectorMemory holding every chunk of our store, embedded by the same model."""
    memory = ChromaDBVectorMemory(
        PersistentChromaDBVectorMemoryConfig(
            collection_name="bench_turns",
            persistence_path=folder,
            k=k,
            embedding_function_config=SentenceTransformerEmbeddingFunctionConfig(
                model_name=resolve_model(pipeline.settings.embedding_model)
            ),
        )
    )
    documents = pipeline.store.documents()
    ids = [chunk_id for entry in documents.values() for chunk_id in entry.chunk_ids]
    for chunk in pipeline.store.chunks(ids):
        metadata = {"source": chunk.source, "section": chunk.section}
        await memory.add(MemoryContent(content=chunk.text, mime_type=MemoryMimeType.TEXT, metadata=metadata))
    return memory


def summary(calls: list[list[LLMMessage]], counter: TokenCounter) -> dict[str, Any]:
    tokens = [payload_tokens(messages, counter) for messages in calls]
    systems = [sum(isinstance(message, SystemMessage) for message in messages) for messages in calls]
    return {
        "calls": len(tokens),
        "first": tokens[0],
        "mean": round(statistics.fmean(tokens)),
        "max": max(tokens),
        "last": tokens[-1],
        "system_messages_last_call": systems[-1],
        "tokens": tokens,
    }


async def single_system_message_failure(pipeline: Pipeline, memory: ChromaDBVectorMemory, turns: list[str]) -> str:
    """Run (b) through AutoGen's OpenAI client for a one-system-message model; the HTTP server is a mock."""
    try:
        import httpx
        from autogen_ext.models.openai import OpenAIChatCompletionClient
    except ImportError:
        return "skipped: pip install 'rag-prompts[openai]'"

    def server(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        choice = {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "Analysed."}}
        usage = {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}
        completion = {"id": "c", "object": "chat.completion", "created": 0, "model": body["model"]}
        return httpx.Response(200, json={**completion, "choices": [choice], "usage": usage})

    # http_client reaches AsyncOpenAI at run time; autogen's typed configuration does not list it
    client = OpenAIChatCompletionClient(  # type: ignore[call-arg]
        model="local-model",
        base_url="http://127.0.0.1:9/v1",
        api_key="unused",
        model_info=SINGLE_SYSTEM_MESSAGE,
        http_client=httpx.AsyncClient(transport=httpx.MockTransport(server)),
    )
    agent = AssistantAgent("vector_memory", client, system_message=pipeline.settings.base_message, memory=[memory])
    for number, turn in enumerate(turns, 1):
        try:
            await agent.run(task=turn)
        except ValueError as error:
            return f"fails at turn {number}: ValueError: {error}"
    return f"no error in {len(turns)} turns"


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    pipeline = Pipeline.from_config(args.config)
    pipeline.ingest()
    profile = pipeline.settings.profile(None)
    counter = token_counter(profile.model)
    turns = turn_messages(args.turns, Path(args.tasks))
    results: dict[str, Any] = {"turns": len(turns), "k": profile.k, "budget": profile.budget}

    client = replay(len(turns))
    started = time.perf_counter()
    await converse(whole_corpus_agent(pipeline, client), turns)
    results["whole_corpus"] = summary([list(call["messages"]) for call in client.create_calls], counter)
    results["whole_corpus"]["seconds"] = round(time.perf_counter() - started, 1)

    with tempfile.TemporaryDirectory() as folder:
        memory = await vector_memory(pipeline, folder, profile.k)
        client = replay(len(turns))
        started = time.perf_counter()
        memory_agent = AssistantAgent(
            "vector_memory", client, system_message=pipeline.settings.base_message, memory=[memory]
        )
        await converse(memory_agent, turns)
        results["vector_memory"] = summary([list(call["messages"]) for call in client.create_calls], counter)
        results["vector_memory"]["seconds"] = round(time.perf_counter() - started, 1)
        results["vector_memory_one_system_message_model"] = await single_system_message_failure(
            pipeline, memory, turns[:5]
        )
        await memory.close()

    client = replay(len(turns))
    started = time.perf_counter()
    ours = build_agentchat_agent(TaskPrompter(pipeline, profile), client)
    await converse(ours, turns)
    calls = [list(call["messages"]) for call in client.create_calls]
    results["rag_prompts"] = summary(calls, counter)
    results["rag_prompts"]["seconds"] = round(time.perf_counter() - started, 1)
    system_tokens = [counter.count(str(messages[0].content)) for messages in calls]
    history_tokens = [payload_tokens(messages[1:], counter) for messages in calls]
    results["rag_prompts"]["max_system_tokens"] = max(system_tokens)
    results["rag_prompts"]["within_budget_plus_history"] = all(
        system <= profile.budget and total <= profile.budget + history + 3 + counter.count("system") + 3
        for system, history, total in zip(system_tokens, history_tokens, results["rag_prompts"]["tokens"], strict=True)
    )
    results["rag_prompts"]["history_tokens_last_call"] = history_tokens[-1]
    results["payload_budget"] = profile.payload_budget
    results["rag_prompts"]["within_payload_budget"] = max(results["rag_prompts"]["tokens"]) <= profile.payload_budget
    return results


def export_blob(turn: int) -> str:
    """About 200 KB of JSON, as a claims system's bulk export would return."""
    rows = [
        {"claim": f"CLM-{turn:03d}-{n:05d}", "region": 4, "reserve": n * 37 % 90_000, "status": "open"}
        for n in range(2800)
    ]
    return json.dumps(rows)


def tool_replies(turns: int) -> list[str | CreateResult]:
    """Every 10th turn the model asks for an export, then answers; the other turns it just answers."""
    replies: list[str | CreateResult] = []
    for turn in range(1, turns + 1):
        if turn % 10 == 0:
            call = FunctionCall(id=f"call-{turn}", name="export_claims", arguments=json.dumps({"region": 4}))
            usage = RequestUsage(prompt_tokens=0, completion_tokens=0)
            replies.append(CreateResult(finish_reason="function_calls", content=[call], usage=usage, cached=False))
        replies.append(f"Turn {turn} analysed.")
    return replies


def orphaned_calls(calls: list[list[LLMMessage]]) -> int:
    """Calls whose history starts with a tool result: its call was cut off (providers answer 400)."""
    return sum(
        1
        for messages in calls
        if any(isinstance(message, FunctionExecutionResultMessage) for message in messages[:2])
        and not any(isinstance(message, AssistantMessage) for message in messages[:2])
    )


async def bench_tools(pipeline: Pipeline, turns: list[str]) -> dict[str, Any]:
    profile = pipeline.settings.profile(None)
    counter = token_counter(profile.model)
    exports = iter(range(10_000))

    def export_claims(region: int) -> str:
        """Export every open claim of a region as JSON."""
        return export_blob(next(exports))

    results: dict[str, Any] = {
        "payload_budget": profile.payload_budget,
        "tool_output_tokens": profile.tool_output_tokens,
    }
    contexts: dict[str, Any] = {
        "buffered_8": BufferedChatCompletionContext(buffer_size=8),
        "no_guard": UnboundedChatCompletionContext(),
    }
    for label in ("rag_prompts", *contexts):
        client = ReplayChatCompletionClient(tool_replies(len(turns)), model_info=TOOL_MODEL)
        if label == "rag_prompts":
            agent = build_agentchat_agent(
                TaskPrompter(pipeline, profile), client, tools=[export_claims], reflect_on_tool_use=True
            )
        else:
            agent = AssistantAgent(
                label, client, system_message=pipeline.settings.base_message, model_context=contexts[label],
                tools=[export_claims], reflect_on_tool_use=True,
            )  # fmt: skip
        started = time.perf_counter()
        await converse(agent, turns)
        calls = [list(call["messages"]) for call in client.create_calls]
        tokens = [payload_tokens(messages, counter) for messages in calls]
        results[label] = {
            "calls": len(tokens),
            "mean": round(statistics.fmean(tokens)),
            "max": max(tokens),
            "over_payload_budget": sum(total > profile.payload_budget for total in tokens),
            "orphaned_tool_results": orphaned_calls(calls),
            "seconds": round(time.perf_counter() - started, 1),
            "tokens": tokens,
        }
    return results


def report_tools(results: dict[str, Any]) -> None:
    print(
        f"\nwith tools (a 200 KB JSON export every 10th turn); payload budget {results['payload_budget']} tokens,"
        f" tool outputs over {results['tool_output_tokens']} tokens stored outside the prompt:"
    )
    print(f"  {'guard':<38} {'calls':>5} {'mean':>9} {'max':>9} {'over budget':>11} {'orphaned':>8}")
    for key, label in (
        ("rag_prompts", "(1) rag-prompts payload guard"),
        ("buffered_8", "(2) BufferedChatCompletionContext(8)"),
        ("no_guard", "(3) no guard"),
    ):
        row = results[key]
        print(
            f"  {label:<38} {row['calls']:>5} {row['mean']:>9,} {row['max']:>9,} {row['over_payload_budget']:>11}"
            f" {row['orphaned_tool_results']:>8}"
        )


def report(results: dict[str, Any]) -> None:
    print(f"\n{results['turns']} turns, k={results['k']}, budget={results['budget']} tokens; tokens sent per call:")
    print(f"  {'prompt source':<28} {'first':>7} {'mean':>7} {'max':>7} {'last':>7}  system msgs (last call)")
    for key, label in (
        ("whole_corpus", "(a) whole corpus in system"),
        ("vector_memory", "(b) ChromaDBVectorMemory"),
        ("rag_prompts", "(c) rag-prompts agent"),
    ):
        row = results[key]
        print(
            f"  {label:<28} {row['first']:>7} {row['mean']:>7} {row['max']:>7} {row['last']:>7}"
            f"  {row['system_messages_last_call']}"
        )
    ours = results["rag_prompts"]
    print(
        f"\n(c) system message at most {ours['max_system_tokens']}/{results['budget']} tokens on every call; the rest"
        f" is the history the agent keeps ({ours['history_tokens_last_call']} tokens on the last call)."
        f" The whole payload within the payload budget ({results['payload_budget']}) on every call:"
        f" {ours['within_payload_budget']}"
    )
    print(f"(b) on a model that takes one system message: {results['vector_memory_one_system_message_model']}")


def large_export(megabytes: int) -> str:
    """About `megabytes` MB of JSON on one line, as a bulk export would return, with some multi-byte text."""
    row = '{{"claim":"CLM-{0:08d}","region":{1},"reserve":{2},"status":"open","note":"Überprüfung – 審査"}}'
    parts, size, n = [], 0, 0
    while size < megabytes * 1_000_000:
        parts.append(row.format(n, n % 9, n * 37 % 90_000))
        size += len(parts[-1]) + 12  # the multi-byte characters take more bytes than characters
        n += 1
    return "[" + ",".join(parts) + "]"


def _rss_mb(field: str) -> float:
    """VmRSS / VmHWM of this process in MB (Linux); the peak from getrusage elsewhere."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
        return True
    except OSError:
        return False


async def bench_large_output(pipeline: Pipeline, megabytes: int, reads: int = 200) -> dict[str, Any]:
    """One tool call returning `megabytes` MB through a rag-prompts agent; then pages read back by its tool."""
    profile = pipeline.settings.profile(None)
    export = large_export(megabytes)

    def export_claims(region: int) -> str:
        """Export every claim of a region as JSON."""
        return export

    call = FunctionCall(id="call-big", name="export_claims", arguments=json.dumps({"region": 4}))
    usage = RequestUsage(prompt_tokens=0, completion_tokens=0)
    replies: list[str | CreateResult] = [
        "Storm claims follow the catastrophe rules.",
        CreateResult(finish_reason="function_calls", content=[call], usage=usage, cached=False),
        "Exported.",
    ]
    client = ReplayChatCompletionClient(replies, model_info=TOOL_MODEL)
    with tempfile.TemporaryDirectory() as folder:
        settings = pipeline.settings.model_copy(update={"artifacts": folder})
        agent = build_agentchat_agent(
            TaskPrompter(Pipeline(settings, embedder=pipeline.embedder, store=pipeline.store), profile),
            client,
            tools=[export_claims],
        )
        await agent.run(task="Warm-up: which rules apply to storm claims?")  # the baseline: model loaded, composed
        warm_up = len(client.create_calls)
        baseline, exact_peak = _rss_mb("VmRSS"), _reset_peak()
        started, cpu = time.perf_counter(), time.process_time()
        await agent.run(task="Export the region 4 claims.")
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
        peak = _rss_mb("VmHWM") if exact_peak else _rss_mb("peak")
        sent = [list(call["messages"]) for call in client.create_calls[warm_up:]]
        tool_text = next(
            str(result.content)
            for message in sent[-1]
            if isinstance(message, FunctionExecutionResultMessage)
            for result in message.content
        )
        output_id = tool_text.split("id ", 1)[1].split(",", 1)[0]
        reader = next(tool for tool in agent._tools if tool.name == "read_stored_output")
        token = CancellationToken()
        first = await reader.run_json({"output_id": output_id, "page": 1}, token)
        pages = int(str(first).split("\n", 1)[0].rsplit(" of ", 1)[1].rstrip("]"))
        latencies = []
        for page in [1, pages, *random.Random(1).sample(range(1, pages + 1), min(reads, pages))]:
            started = time.perf_counter()
            await reader.run_json({"output_id": output_id, "page": page}, token)
            latencies.append((time.perf_counter() - started) * 1000)
        counter = token_counter(profile.model)
        return {
            "megabytes": round(len(export.encode("utf-8")) / 1e6, 1),
            "characters": len(export),
            "store_turn_seconds": round(seconds, 2),
            "store_turn_cpu_seconds": round(cpu, 2),  # what the wall time is on a machine nobody else uses
            "baseline_rss_mb": round(baseline, 1),
            "peak_mb_above_baseline": round(peak - baseline, 1),
            "peak_exact": exact_peak,
            "pages": pages,
            "page_cap_tokens": profile.tool_output_tokens,
            "page_read_ms_p50": round(statistics.median(latencies), 2),
            "page_read_ms_max": round(max(latencies), 2),
            "reads": len(latencies),
            "max_payload_tokens": max(payload_tokens(messages, counter) for messages in sent),
            "payload_budget": profile.payload_budget,
        }


def report_large_output(results: dict[str, Any]) -> None:
    print(
        f"\none tool call returning {results['megabytes']} MB ({results['characters']:,} characters) of JSON through a"
        f" rag-prompts agent:\n"
        f"  turn with the output stored (pages cut once): {results['store_turn_seconds']} s"
        f" ({results['store_turn_cpu_seconds']} s of CPU),"
        f" peak memory {results['peak_mb_above_baseline']} MB above the agent's baseline"
        f" ({results['baseline_rss_mb']} MB RSS, the output included)"
        f"{'' if results['peak_exact'] else ' (process peak; VmHWM could not be reset)'}\n"
        f"  {results['pages']:,} pages of at most {results['page_cap_tokens']} tokens; reading a page through"
        f" read_stored_output: p50 {results['page_read_ms_p50']} ms, max {results['page_read_ms_max']} ms"
        f" ({results['reads']} reads, first and last page included)\n"
        f"  payload at most {results['max_payload_tokens']} of {results['payload_budget']} tokens on every call"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(ROOT / "rag_prompts.toml"))
    parser.add_argument("--tasks", default=str(ROOT / "corpus" / "tasks.jsonl"))
    parser.add_argument("--turns", type=int, default=100)
    parser.add_argument("--large-output-mb", type=int, default=50, help="size of the one large tool output (0: skip)")
    parser.add_argument("--only-large-output", action="store_true", help="skip the 100-turn scenarios")
    parser.add_argument("--json", help="also write the figures (with every call's token count) to this file")
    args = parser.parse_args()
    logging.getLogger(EVENT_LOGGER_NAME).setLevel(logging.ERROR)  # the replay client warns on every tool call
    results: dict[str, Any] = {}
    if not args.only_large_output:
        results = asyncio.run(bench(args))
        report(results)
        pipeline = Pipeline.from_config(args.config)
        results["tools"] = asyncio.run(bench_tools(pipeline, turn_messages(args.turns, Path(args.tasks))))
        report_tools(results["tools"])
        try:  # the Microsoft Agent Framework rows (scripts/bench_af.py)
            from bench_af import bench_agent_framework, report_agent_framework
        except ImportError:
            print("\nMicrosoft Agent Framework rows skipped: pip install 'rag-prompts[agent-framework]'")
        else:
            turns = turn_messages(args.turns, Path(args.tasks))
            results["agent_framework"] = asyncio.run(bench_agent_framework(pipeline, turns, export_blob))
            report_agent_framework(results["agent_framework"])
    if args.large_output_mb > 0:
        pipeline = Pipeline.from_config(args.config)
        pipeline.ingest()
        results["large_output"] = asyncio.run(bench_large_output(pipeline, args.large_output_mb))
        report_large_output(results["large_output"])
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
