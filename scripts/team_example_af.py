#!/usr/bin/env python3
"""The three-agent example of team_example.py on Microsoft Agent Framework: a claims triage agent, a compliance
reviewer and a customer reply writer from `rag_prompts.agent_framework.build_agent`, chained in an Agent Framework
workflow (`WorkflowBuilder(...).add_chain(...)`), each with its own k, budget and tags from rag_prompts.toml. Before
every model call it prints the tokens sent and the policy sections that agent got.

Offline: each agent's chat client is `ReplayChatClient` with stand-in replies. For a real model pass any Agent
Framework chat client instead (e.g. `OpenAIChatClient` from agent-framework-openai).

    pip install 'rag-prompts[agent-framework]'
    python scripts/team_example_af.py [--cases 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path
from typing import Any

from agent_framework import WorkflowBuilder
from team_example import STAND_IN, TEAM, print_call

from rag_prompts import ModelCall, Pipeline
from rag_prompts.agent_framework import build_agent
from rag_prompts.agents.agent_framework import ReplayChatClient

ROOT = Path(__file__).resolve().parent.parent


async def run(cases: list[dict[str, Any]], pipeline: Pipeline) -> list[ModelCall]:
    calls: list[ModelCall] = []

    def on_call(call: ModelCall) -> None:
        calls.append(call)
        print_call(call)

    texts = [case["task"] for case in cases]
    agents = [
        build_agent(name, ReplayChatClient([STAND_IN[name].format(task=text) for text in texts]), pipeline=pipeline,
                    on_call=on_call)
        for name in TEAM
    ]  # fmt: skip
    for case in cases:
        print(f"\ncase {case['id']}: {case['task']}")
        workflow = WorkflowBuilder(start_executor=agents[0]).add_chain(agents).build()  # a fresh conversation
        await workflow.run(case["task"])
    return calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(ROOT / "rag_prompts.toml"))
    parser.add_argument("--tasks", default=str(ROOT / "corpus" / "tasks.jsonl"))
    parser.add_argument("--cases", type=int, default=3, help="how many claims cases to work through")
    args = parser.parse_args()

    pipeline = Pipeline.from_config(args.config)
    report = pipeline.ingest()
    print("ingest:", json.dumps(report.summary()))
    tasks = [json.loads(line) for line in Path(args.tasks).read_text("utf-8").splitlines() if line.strip()]
    cases = [task for task in tasks if task["agent"] == "claims_triage"][: args.cases]
    calls = asyncio.run(run(cases, pipeline))

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
