#!/usr/bin/env python3
"""A small AgentChat team built with `rag_prompts.build_agent`: a claims triage agent, a compliance reviewer and a
customer reply writer, each with its own k, budget and tags from rag_prompts.toml, working through cases from
corpus/tasks.jsonl. Before every model call it prints the tokens sent and the policy sections that agent got.

Offline by default: each agent's model is AutoGen's ReplayChatCompletionClient with stand-in replies that restate
the case (so the next agent has something to retrieve for). With --base-url the agents talk to a real
OpenAI-compatible server instead (OpenAI, vLLM, Ollama's /v1, LM Studio; needs `pip install 'rag-prompts[openai]'`):

    python scripts/team_example.py --base-url http://localhost:11434/v1 --model llama3.1:8b
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
from pathlib import Path
from typing import Any

from autogen_agentchat.base import ChatAgent, Team
from autogen_agentchat.teams import RoundRobinGroupChat
from autogen_core.models import ChatCompletionClient, ModelInfo
from autogen_ext.models.replay import ReplayChatCompletionClient

from rag_prompts import ModelCall, Pipeline, build_agent

ROOT = Path(__file__).resolve().parent.parent
TEAM = ("claims_triage", "compliance_reviewer", "customer_reply")
STAND_IN = {
    "claims_triage": "Triage notes. The case as reported: {task}",
    "compliance_reviewer": "Compliance review of the case: {task}",
    "customer_reply": "Draft reply to the customer about: {task}",
}
SINGLE_SYSTEM_MESSAGE = ModelInfo(
    vision=False, function_calling=False, json_output=False, family="unknown", structured_output=False,
    multiple_system_messages=False,
)  # fmt: skip


def model_client(agent: str, cases: list[str], args: argparse.Namespace) -> ChatCompletionClient:
    if args.base_url:
        from autogen_ext.models.openai import OpenAIChatCompletionClient

        return OpenAIChatCompletionClient(
            model=args.model,
            base_url=args.base_url,
            api_key=os.environ.get("OPENAI_API_KEY", "not-needed"),
            model_info=SINGLE_SYSTEM_MESSAGE,
        )
    return ReplayChatCompletionClient([STAND_IN[agent].format(task=case) for case in cases])


def print_call(call: ModelCall) -> None:
    prompt = call.prompt
    system = f" (system message {prompt.tokens}/{prompt.budget})" if prompt is not None else ""
    print(f"  {call.agent:<20} {call.tokens:>5} tokens sent in {call.messages} messages{system}")
    for chunk in prompt.chunks if prompt is not None else []:
        print(f"  {'':<20} {chunk.score:.3f}  {chunk.source} > {chunk.section.split(' > ', 1)[-1]}")


async def run(cases: list[dict[str, Any]], pipeline: Pipeline, args: argparse.Namespace) -> list[ModelCall]:
    calls: list[ModelCall] = []

    def on_call(call: ModelCall) -> None:
        calls.append(call)
        print_call(call)

    texts = [case["task"] for case in cases]
    agents: list[ChatAgent | Team] = [
        build_agent(name, model_client(name, texts, args), pipeline=pipeline, on_call=on_call) for name in TEAM
    ]
    team = RoundRobinGroupChat(agents, max_turns=len(agents))
    for case in cases:
        print(f"\ncase {case['id']}: {case['task']}")
        result = await team.run(task=case["task"])
        if args.base_url:
            print(f"  final answer: {result.messages[-1].to_text()[:400]}")
        await team.reset()  # a fresh conversation per case
    return calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(ROOT / "rag_prompts.toml"))
    parser.add_argument("--tasks", default=str(ROOT / "corpus" / "tasks.jsonl"))
    parser.add_argument("--cases", type=int, default=3, help="how many claims cases to work through")
    parser.add_argument("--base-url", help="an OpenAI-compatible endpoint; default: offline replay clients")
    parser.add_argument("--model", default="gpt-4o-mini", help="the model name the endpoint serves")
    args = parser.parse_args()

    pipeline = Pipeline.from_config(args.config)
    report = pipeline.ingest()
    print("ingest:", json.dumps(report.summary()))
    tasks = [json.loads(line) for line in Path(args.tasks).read_text("utf-8").splitlines() if line.strip()]
    cases = [task for task in tasks if task["agent"] == "claims_triage"][: args.cases]
    calls = asyncio.run(run(cases, pipeline, args))

    print("\nper agent: calls, largest payload, largest system message / budget")
    for name in TEAM:
        mine = [call for call in calls if call.agent == name]
        prompts = [call.prompt for call in mine if call.prompt is not None]
        if prompts:
            payload = max(call.tokens for call in mine)
            system = max(prompt.tokens for prompt in prompts)
            print(f"  {name:<20} {len(mine):>3} calls  {payload:>5} tokens  {system}/{prompts[0].budget}")


if __name__ == "__main__":
    main()
