#!/usr/bin/env python3
"""The main job on the sample corpus: ingest `corpus/`, then compose one system message per agent for sample
tasks and show each message, its token count against the budget, and the chunks chosen with their scores."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rag_prompts import ComposedPrompt, Pipeline

ROOT = Path(__file__).resolve().parent.parent


def show(agent: str, task: str, prompt: ComposedPrompt) -> None:
    rule = "=" * 100
    print(f"\n{rule}\nagent: {agent}\ntask:  {task}\n{rule}")
    print(prompt.system_message)
    print(
        f"\n--> {prompt.tokens}/{prompt.budget} tokens ({prompt.encoding}); {len(prompt.chunks)} chunks included,"
        f" {len(prompt.dropped)} candidates left out"
    )
    print(f"    {'score':>6}  {'tokens':>6}  source / section")
    for chunk in prompt.chunks:
        print(f"    {chunk.score:6.3f}  {chunk.tokens:6d}  {chunk.source} / {chunk.section}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", default=str(ROOT / "rag_prompts.toml"))
    parser.add_argument("--tasks", default=str(ROOT / "corpus" / "tasks.jsonl"))
    parser.add_argument("--per-agent", type=int, default=1, help="sample tasks per agent")
    args = parser.parse_args()

    pipeline = Pipeline.from_config(args.config)
    report = pipeline.ingest()
    print("ingest:", json.dumps(report.summary()))
    for failure in report.failed:
        print(f"  failed: {failure.path}: {failure.reason}")

    tasks = [json.loads(line) for line in Path(args.tasks).read_text("utf-8").splitlines() if line.strip()]
    shown: dict[str, int] = {}
    for task in tasks:
        agent = task["agent"]
        if shown.get(agent, 0) >= args.per_agent:
            continue
        shown[agent] = shown.get(agent, 0) + 1
        show(agent, task["task"], pipeline.compose(task["task"], agent=agent))


if __name__ == "__main__":
    main()
