#!/usr/bin/env python3
"""What the compliance features cost per message on the sample corpus: compose with and without pins, for today
and for a 2025 date (documents not in force are left out of the search), and one audit rebuild. Prints medians
and their ratios, measured in one run (so other load on the machine affects every figure alike)."""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from rag_prompts import ModelCall, Pipeline, ResolvedProfile, load_settings
from rag_prompts.audit import rebuild

ROOT = Path(__file__).resolve().parent.parent
PINS = (
    "claims/special-investigations-referral.md#When a Referral Must Be Made",
    "claims/special-investigations-referral.md#Referral Deadlines",
)


def median_ms(run: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        run()
        times.append((time.perf_counter() - began) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3, help="passes over the claims tasks")
    args = parser.parse_args()
    store = tempfile.mkdtemp(prefix="bench-compliance-")
    pipeline = Pipeline(load_settings(ROOT / "rag_prompts.toml", environ={}, store=store))
    pipeline.ingest([ROOT / "corpus"])
    tasks = [json.loads(line) for line in (ROOT / "corpus" / "tasks.jsonl").read_text("utf-8").splitlines()]
    texts = [task["task"] for task in tasks if task["agent"] == "claims_triage"]
    plain = pipeline.settings.profile("claims_triage")
    pinned = pipeline.settings.profile("claims_triage", pinned=PINS)
    for text in texts:  # warm the query path and the record cache alike for every variant
        pipeline.compose_for(text, plain)

    def each(profile: ResolvedProfile, as_of: str | None) -> None:
        for text in texts:
            pipeline.compose_for(text, profile, as_of=as_of)

    figures = {
        "plain, today": median_ms(lambda: each(plain, None), args.repeats) / len(texts),
        "plain, as_of 2025-09-18": median_ms(lambda: each(plain, "2025-09-18"), args.repeats) / len(texts),
        "2 pins, today": median_ms(lambda: each(pinned, None), args.repeats) / len(texts),
    }
    prompt = pipeline.compose_for(texts[0], pinned)
    row = ModelCall("claims_triage", prompt, messages=1, tokens=prompt.tokens).row()
    figures["audit rebuild"] = median_ms(lambda: rebuild(pipeline.store, row), 20)
    base = figures["plain, today"]
    print(f"{len(texts)} claims_triage tasks, {args.repeats} passes; ms per message (median), ratio to plain/today")
    for name, value in figures.items():
        print(f"  {name:26} {value:7.2f} ms  x{value / base:.2f}")


if __name__ == "__main__":
    main()
