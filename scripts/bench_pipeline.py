"""Benchmark the rag-prompts pipeline: ingest throughput, no-op re-ingest, and compose latency.

Run from the project root (the settings, agents included, are read from ./rag_prompts.toml unless --config
says otherwise):

    python scripts/bench_pipeline.py --json /tmp/bench.json

Everything is written to temporary folders; the configured store is never touched. Figures are printed
(with their targets) and never asserted: timings on a small shared machine are noisy.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from rag_prompts import (
    Chunk,
    ChunkStore,
    ComposedPrompt,
    Pipeline,
    SentenceTransformerEmbedder,
    Settings,
    load_settings,
    token_counter,
)
from rag_prompts.store import open_store

INGEST_RATIO_TARGET = 0.85  # ingest chunks/s over raw model.encode chunks/s
REINGEST_SHARE_TARGET = 0.05  # no-op re-ingest time over full ingest time
COMPOSE_P50_TARGET_MS = 30.0  # at 100,000 chunks
TARGET_SIZE = 100_000
WARM_UP_TEXTS = (
    "Warm-up: what is the retention period for archived emails?",
    "Warm-up: who signs off a new supplier contract?",
    "Warm-up: how do I book a business flight?",
)
KIND_LABELS = {"first_time": "first-time", "cached": "cached", "cold_chunks": "first-time, no chunk cached"}
ADD_BATCH = 5_000  # synthetic chunks per store.add call
SEED = 20_260_301
CUAD_DOCS = "../shared/bench/cuad_dev/docs"
MEMORY_TARGET_MB = 500.0  # peak RSS above the loaded model, whatever the corpus
ONNX_RATIO_TARGET = 1.5  # ingest through onnx fp32 over raw sentence-transformers encode
INT8_RATIO_TARGET = 2.5


@dataclass(frozen=True)
class Task:
    text: str
    agent: str | None


@dataclass
class Latency:
    """Compose latencies (ms) for one pass over the tasks."""

    samples_ms: list[float]

    @property
    def p50(self) -> float:
        return percentile(self.samples_ms, 50)

    @property
    def p95(self) -> float:
        return percentile(self.samples_ms, 95)

    def as_dict(self) -> dict[str, float | int]:
        return {
            "n": len(self.samples_ms),
            "p50_ms": round(self.p50, 3),
            "p95_ms": round(self.p95, 3),
            "mean_ms": round(statistics.fmean(self.samples_ms), 3),
            "max_ms": round(max(self.samples_ms), 3),
        }


@dataclass(frozen=True)
class Row:
    """One line of the summary table."""

    figure: str
    value: str
    target: str = ""
    met: bool | None = None  # None: no target

    @property
    def verdict(self) -> str:
        return "" if self.met is None else ("ok" if self.met else "MISSED")


def percentile(values: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=np.float64), q))


def say(text: str = "") -> None:
    print(text, flush=True)


def load_average() -> str:
    """The 1-minute load average; well above 1 means something else competes for the CPUs (noisier timings)."""
    return f"load {os.getloadavg()[0]:.2f}"


def load_tasks(path: Path) -> list[Task]:
    tasks = []
    for line in path.read_text("utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            tasks.append(Task(str(row["task"]), row.get("agent")))
    return tasks


def forget_queries(embedder: SentenceTransformerEmbedder) -> None:
    """Empty the embedder's query-vector cache so the next compose of a text pays for embedding it.

    There is no public way to do this; reaching into the private cache is acceptable in a benchmark.
    """
    embedder._query_cache.clear()


def time_compose(
    pipeline: Pipeline, tasks: Sequence[Task], agent: Callable[[Task], str | None], cold_chunks: bool = False
) -> tuple[Latency, list[tuple[Task, str | None, ComposedPrompt]]]:
    """Compose every task once, timing each call; with `cold_chunks`, each starting with an empty chunk cache."""
    samples: list[float] = []
    prompts: list[tuple[Task, str | None, ComposedPrompt]] = []
    for task in tasks:
        name = agent(task)
        if cold_chunks:
            pipeline.store._cache.clear()  # private, like forget_queries: the worst case, no chunk read before
        began = time.perf_counter()
        prompt = pipeline.compose(task.text, name)
        samples.append((time.perf_counter() - began) * 1000.0)
        prompts.append((task, name, prompt))
    return Latency(samples), prompts


def always(agent: str | None) -> Callable[[Task], str | None]:
    """Compose every task with `agent` instead of its own."""
    return lambda task: agent


def budget_violations(settings: Settings, prompts: Sequence[tuple[Task, str | None, ComposedPrompt]]) -> list[str]:
    """Prompts over their agent's budget, or whose reported token count differs from a recount."""
    problems = []
    for task, agent, prompt in prompts:
        profile = settings.profile(agent)
        recount = token_counter(profile.model).count(prompt.system_message)
        if prompt.tokens > prompt.budget or prompt.budget != profile.budget or recount != prompt.tokens:
            problems.append(
                f"{agent or 'default'}: tokens={prompt.tokens} recount={recount} budget={prompt.budget}"
                f" (profile budget {profile.budget}) task={task.text[:60]!r}"
            )
    return problems


# --- 1 and 2: ingest ------------------------------------------------------------------------------------


def bench_ingest(pipeline: Pipeline, embedder: SentenceTransformerEmbedder, corpus: Path) -> dict[str, Any]:
    say(f"[1] ingest {corpus} into a fresh store at {pipeline.settings.store_location} ({load_average()})")
    import bench_ingest

    texts: list[str] = []  # what the ingest embeds (chunks and block texts): the raw encode embeds the same
    bench_ingest.record_embedded(embedder, texts)
    began = time.perf_counter()
    try:
        report = pipeline.ingest([corpus])
    finally:
        del embedder.embed  # the class's own method again
    ingest_s = time.perf_counter() - began
    if not report.ok:
        say(f"    failures: {[(failure.path, failure.reason) for failure in report.failed]}")
    ingest_rate = report.chunks_embedded / ingest_s
    inner_rate = report.chunks_embedded / report.seconds
    say(
        f"    {report.chunks_embedded} chunks embedded from {len(report.added)} files in {ingest_s:.2f} s"
        f" = {ingest_rate:.1f} chunks/s"
    )
    say(
        f"    of which ingest() itself (report.seconds): {report.seconds:.2f} s = {inner_rate:.1f} chunks/s;"
        f" the rest ({ingest_s - report.seconds:.2f} s) is Pipeline opening the store on first use"
    )

    say(f"    raw SentenceTransformer.encode of the same {len(texts)} texts (batch_size={embedder.batch_size})")
    began = time.perf_counter()
    embedder._model.encode(texts, batch_size=embedder.batch_size, normalize_embeddings=True, show_progress_bar=False)
    encode_s = time.perf_counter() - began
    encode_rate = len(texts) / encode_s
    ratio = ingest_rate / encode_rate
    inner_ratio = inner_rate / encode_rate
    say(
        f"    raw encode: {encode_s:.2f} s = {encode_rate:.1f} chunks/s; ingest/raw = {ratio:.3f}"
        f" (target >= {INGEST_RATIO_TARGET}); without opening the store {inner_ratio:.3f}"
    )

    say(f"[2] re-ingest with nothing changed ({load_average()})")
    began = time.perf_counter()
    again = pipeline.ingest([corpus])
    reingest_s = time.perf_counter() - began
    share = reingest_s / ingest_s
    say(
        f"    {reingest_s * 1000:.1f} ms, {again.chunks_embedded} chunks embedded, {len(again.unchanged)} files"
        f" unchanged; {share:.2%} of the full ingest (target <= {REINGEST_SHARE_TARGET:.0%})"
    )
    return {
        "files": len(report.added),
        "chunks": report.chunks_embedded,
        "ingest_s": round(ingest_s, 3),
        "ingest_chunks_per_s": round(ingest_rate, 3),
        "encode_s": round(encode_s, 3),
        "encode_chunks_per_s": round(encode_rate, 3),
        "ingest_over_encode": round(ratio, 4),
        "ingest_report_s": round(report.seconds, 3),
        "ingest_report_chunks_per_s": round(inner_rate, 3),
        "ingest_report_over_encode": round(inner_ratio, 4),
        "reingest_s": round(reingest_s, 4),
        "reingest_chunks_embedded": again.chunks_embedded,
        "reingest_share": round(share, 5),
        "ingest_report": report.summary(),
        "reingest_report": again.summary(),
    }


# --- 3: compose on the sample corpus --------------------------------------------------------------------


def bench_sample_compose(pipeline: Pipeline, tasks: Sequence[Task]) -> dict[str, Any]:
    say(
        f"[3] compose {len(tasks)} tasks with their agents on the sample store ({pipeline.store.count()} chunks,"
        f" {load_average()})"
    )
    for text in WARM_UP_TEXTS:
        pipeline.compose(text)
    first, prompts = time_compose(pipeline, tasks, lambda task: task.agent)
    cached, cached_prompts = time_compose(pipeline, tasks, lambda task: task.agent)
    problems = budget_violations(pipeline.settings, prompts + cached_prompts)
    say(
        f"    first-time: p50 {first.p50:.1f} ms, p95 {first.p95:.1f} ms;"
        f" cached query vector: p50 {cached.p50:.1f} ms, p95 {cached.p95:.1f} ms"
    )
    checked = len(prompts) + len(cached_prompts)
    say(f"    budget check: {checked - len(problems)}/{checked} prompts have tokens <= budget (recounted)")
    for problem in problems:
        say(f"      OVER BUDGET {problem}")
    return {
        "first_time": first.as_dict(),
        "cached": cached.as_dict(),
        "prompts_checked": checked,
        "budget_violations": problems,
        "mean_chunks_included": round(statistics.fmean(len(prompt.chunks) for _, _, prompt in prompts), 2),
    }


# --- 4: synthetic stores --------------------------------------------------------------------------------


def synthetic_chunks(real: Sequence[Chunk], count: int) -> list[Chunk]:
    """`count` chunks reusing the real chunks' texts, sections and tags, under invented sources."""
    return [
        replace(
            real[i % len(real)],
            id=f"synthetic-{i:07d}",
            source=f"synthetic/doc{i // 40}.md",
            root="synthetic",
            doc_hash="synthetic",
            content_hash=f"synthetic-{i:07d}",
        )
        for i in range(count)
    ]


def random_unit_vectors(rng: np.random.Generator, count: int, dimension: int) -> np.ndarray:
    vectors = rng.standard_normal((count, dimension), dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors


def build_synthetic_store(
    location: Path,
    size: int,
    embedder: SentenceTransformerEmbedder,
    real: Sequence[Chunk],
    real_vectors: np.ndarray,
) -> tuple[ChunkStore, float]:
    """A store of `size` chunks: the real ones with their real vectors plus random-vector fillers."""
    store = open_store(str(location), "synthetic", embedder.name, embedder.dimension)
    rng = np.random.default_rng(SEED)
    fillers = synthetic_chunks(real, max(0, size - len(real)))
    began = time.perf_counter()
    store.add(real, real_vectors)
    for start in range(0, len(fillers), ADD_BATCH):
        batch = fillers[start : start + ADD_BATCH]
        store.add(batch, random_unit_vectors(rng, len(batch), embedder.dimension))
        done = len(real) + start + len(batch)
        if done % 25_000 < ADD_BATCH or done == size:
            say(f"    ... {done:>7,} chunks, {time.perf_counter() - began:6.1f} s")
    return store, time.perf_counter() - began


def bench_synthetic(
    config: Path | None,
    embedder: SentenceTransformerEmbedder,
    sample: Pipeline,
    tasks: Sequence[Task],
    sizes: Sequence[int],
    filter_agent: str,
    workdir: Path,
) -> dict[str, Any]:
    ids = [chunk_id for entry in sample.store.documents().values() for chunk_id in entry.chunk_ids]
    real = sample.store.chunks(ids)
    by_key = sample.store.vectors_for_keys(chunk.vector_key for chunk in real)
    real_vectors = np.stack([by_key[chunk.vector_key] for chunk in real])
    tags = list(sample.settings.profile(filter_agent).tags)
    agents: dict[str, str | None] = {"no agent": None, f"{filter_agent} tags={tags}": filter_agent}
    results: dict[str, Any] = {}
    for size in sizes:
        location = workdir / f"synthetic-{size}"
        say(f"[4] synthetic store of {size:,} chunks ({len(real)} real + random-vector fillers) at {location}")
        store, build_s = build_synthetic_store(location, size, embedder, real, real_vectors)
        count = store.count()
        say(
            f"    built in {build_s:.1f} s ({count / build_s:,.0f} chunks/s);"
            f" store.count() = {count:,} ({load_average()})"
        )
        settings = load_settings(config, store=str(location), collection="synthetic")
        pipeline = Pipeline(settings, embedder=embedder, store=store)
        pipeline.compose(WARM_UP_TEXTS[0])
        entry: dict[str, Any] = {"chunks": count, "build_s": round(build_s, 2)}
        for label, agent in agents.items():
            forget_queries(embedder)
            first, prompts = time_compose(pipeline, tasks, always(agent))
            cached, cached_prompts = time_compose(pipeline, tasks, always(agent))
            forget_queries(embedder)
            cold, cold_prompts = time_compose(pipeline, tasks, always(agent), cold_chunks=True)
            problems = budget_violations(pipeline.settings, prompts + cached_prompts + cold_prompts)
            say(
                f"    {label:<32} ({load_average()}) first-time p50 {first.p50:6.1f} ms p95 {first.p95:6.1f} ms |"
                f" cached p50 {cached.p50:6.1f} ms p95 {cached.p95:6.1f} ms |"
                f" first-time, no chunk cached p50 {cold.p50:6.1f} ms p95 {cold.p95:6.1f} ms |"
                f" over budget: {len(problems)}"
            )
            entry[agent or "default"] = {
                "first_time": first.as_dict(),
                "cached": cached.as_dict(),
                "cold_chunks": cold.as_dict(),
                "budget_violations": len(problems),
            }
        results[str(size)] = entry
    return results


# --- summary ---------------------------------------------------------------------------------------------


def summary_rows(figures: dict[str, Any], filter_agent: str) -> list[Row]:
    ingest, sample = figures["ingest"], figures["sample_compose"]
    rows = [
        Row("ingest throughput (chunks/s)", f"{ingest['ingest_chunks_per_s']:.1f}"),
        Row("raw encode throughput (chunks/s)", f"{ingest['encode_chunks_per_s']:.1f}"),
        Row(
            "ingest / raw encode",
            f"{ingest['ingest_over_encode']:.3f}",
            f">= {INGEST_RATIO_TARGET}",
            ingest["ingest_over_encode"] >= INGEST_RATIO_TARGET,
        ),
        Row(
            "ingest / raw encode, store already open",
            f"{ingest['ingest_report_over_encode']:.3f}",
            f">= {INGEST_RATIO_TARGET}",
            ingest["ingest_report_over_encode"] >= INGEST_RATIO_TARGET,
        ),
        Row("re-ingest time (s)", f"{ingest['reingest_s']:.3f}"),
        Row(
            "re-ingest chunks embedded",
            str(ingest["reingest_chunks_embedded"]),
            "0",
            ingest["reingest_chunks_embedded"] == 0,
        ),
        Row(
            "re-ingest share of full ingest",
            f"{ingest['reingest_share']:.2%}",
            f"<= {REINGEST_SHARE_TARGET:.0%}",
            ingest["reingest_share"] <= REINGEST_SHARE_TARGET,
        ),
        Row(
            "sample compose first-time p50/p95 (ms)",
            f"{sample['first_time']['p50_ms']:.1f} / {sample['first_time']['p95_ms']:.1f}",
        ),
        Row(
            "sample compose cached p50/p95 (ms)", f"{sample['cached']['p50_ms']:.1f} / {sample['cached']['p95_ms']:.1f}"
        ),
        Row(
            "sample prompts over budget",
            f"{len(sample['budget_violations'])} of {sample['prompts_checked']}",
            "0",
            not sample["budget_violations"],
        ),
    ]
    for size, entry in figures["synthetic"].items():
        n = int(size)
        rows.append(Row(f"{n:,} chunks: build time (s)", f"{entry['build_s']:.1f}"))
        for agent in ("default", filter_agent):
            for kind in ("first_time", "cached", "cold_chunks"):
                latency = entry[agent][kind]
                has_target = n == TARGET_SIZE and kind != "cold_chunks"  # the target is for a warm process
                rows.append(
                    Row(
                        f"{n:,} chunks: {agent} {KIND_LABELS[kind]} p50/p95 (ms)",
                        f"{latency['p50_ms']:.1f} / {latency['p95_ms']:.1f}",
                        f"p50 <= {COMPOSE_P50_TARGET_MS:.0f}" if has_target else "",
                        latency["p50_ms"] <= COMPOSE_P50_TARGET_MS if has_target else None,
                    )
                )
    return rows


def print_table(rows: Sequence[Row]) -> None:
    widths = [
        max(len(header), *(len(cell) for cell in column))
        for header, column in (
            ("figure", [row.figure for row in rows]),
            ("value", [row.value for row in rows]),
            ("target", [row.target for row in rows]),
        )
    ]
    line = f"{'figure':<{widths[0]}}  {'value':>{widths[1]}}  {'target':<{widths[2]}}  met"
    say()
    say("SUMMARY")
    say(line)
    say("-" * len(line))
    for row in rows:
        say(f"{row.figure:<{widths[0]}}  {row.value:>{widths[1]}}  {row.target:<{widths[2]}}  {row.verdict}".rstrip())


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--corpus", type=Path, default=Path("corpus"), help="folder to ingest (default: corpus)")
    parser.add_argument(
        "--tasks",
        type=Path,
        default=Path("corpus/tasks.jsonl"),
        help="JSON lines with 'task' and 'agent' (default: corpus/tasks.jsonl)",
    )
    parser.add_argument(
        "--sizes",
        default="10000,100000",
        help="comma-separated synthetic store sizes in chunks (default: 10000,100000)",
    )
    parser.add_argument(
        "--config", type=Path, default=None, help="settings file (default: ./rag_prompts.toml); its store is never used"
    )
    parser.add_argument(
        "--filter-agent",
        default="claims_triage",
        help="agent with a tag filter for the synthetic stores (default: claims_triage)",
    )
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write every figure to FILE as JSON")
    parser.add_argument(
        "--ingest-only", action="store_true", help="only the ingest figures: memory and embedding throughput"
    )
    parser.add_argument(
        "--memory-corpora",
        default=f"corpus,{CUAD_DOCS}",
        help="comma-separated folders whose ingest peak RSS is measured, each in its own process"
        " (default: the sample corpus and 60 CUAD contracts)",
    )
    parser.add_argument(
        "--big-mb", type=float, default=50.0, help="also one generated text file of this many MB (0: none)"
    )
    parser.add_argument(
        "--memory-embedder",
        choices=["model", "hash"],
        default="model",
        help="what the memory runs embed with: the model, or vectors from each text's hash (memory only: a 50 MB"
        " file is ~850,000 texts, hours through the model on 2 cores)",
    )
    parser.add_argument(
        "--memory-store",
        default="",
        metavar="URL",
        help="ingest the memory runs into this Chroma server (whose vector index then lives in the server's"
        " memory) instead of a fresh embedded store each",
    )
    parser.add_argument("--no-memory", action="store_true", help="--ingest-only: skip the memory runs")
    parser.add_argument("--no-throughput", action="store_true", help="--ingest-only: skip the throughput runs")
    args = parser.parse_args(argv)
    try:
        args.sizes = [int(part.replace("_", "")) for part in args.sizes.split(",") if part.strip()]
    except ValueError:
        parser.error(f"--sizes must be comma-separated integers, got {args.sizes!r}")
    return args


def bench_ingest_figures(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """Peak RSS above the model per corpus (a process each) and ingest throughput per embedding backend."""
    import bench_ingest

    corpora = [Path(part) for part in args.memory_corpora.split(",") if part.strip()]
    if args.big_mb > 0:
        (workdir / "big").mkdir(exist_ok=True)
        corpora.append(bench_ingest.big_text(workdir / "big" / "generated.txt", args.big_mb).parent)
    memory: list[dict[str, Any]] = []
    if not args.no_memory:
        store = args.memory_store or "a fresh embedded store each"
        say(
            f"[ingest] peak RSS of an ingest of each of {', '.join(map(str, corpora))} into {store}, embedder"
            f" {args.memory_embedder} ({load_average()})"
        )
        memory = bench_ingest.measure_memory(corpora, workdir, embedder=args.memory_embedder, server=args.memory_store)
    for row in memory:
        say(
            f"    {row['corpus']}: {row['files']} files, {row['chunks']} texts embedded by {row['embedder']} into"
            f" a {row['store']} store in {row['seconds']} s; before the ingest {row['model_rss_mb']} MB, peak"
            f" {row['peak_rss_mb']} MB, above the model {row['above_model_mb']} MB"
            + (
                f"; {row['stored_chunks']} chunks stored, Chroma's vector index files {row['vector_index_mb']} MB"
                " (held in this process's memory)"
                if row.get("vector_index_mb")
                else ""
            )
        )
    rates: dict[str, Any] = {}
    if not args.no_throughput:
        say(f"[ingest] throughput on {args.corpus}: raw encode and ingest through each backend ({load_average()})")
        rates = bench_ingest.measure_throughput(args.corpus, workdir)
    for name, row in rates.items():
        say(
            f"    {name}: {row['chunks']} texts in {row['seconds']} s = {row['chunks_per_s']}/s; raw encode just before"
            f" {row['raw_encode_chunks_per_s']}/s; ingest over raw {row['over_raw_encode']:.3f} (wall),"
            f" {row['over_raw_encode_cpu']:.3f} (CPU seconds); load {row['load_average']}"
        )
    commands: dict[str, Any] = {}
    if memory and args.memory_embedder == "model" and not args.memory_store:  # they read the first memory store
        uptime = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
        say(f"[ingest] commands that need no model, each a fresh process ({load_average()}; uptime: {uptime})")
        commands = bench_ingest.measure_commands(workdir / "memory-0", workdir)
    for name, row in commands.items():
        say(f"    {name}: {row['seconds']} s, exit {row['exit']}, model loaded: {row['model_loaded']}")
    checks: list[dict[str, Any]] = []
    if memory:
        say(f"[ingest] the store check each ingest of a server store starts with, on each store ({load_average()})")
    for index, row in enumerate(memory):
        location = args.memory_store or str(workdir / f"memory-{index}")
        figures = bench_ingest.measure_check(location, row.get("collection", "bench-memory"), row["embedder"])
        checks.append({"corpus": row["corpus"], "store": row["store"], **figures})
        check = checks[-1]
        say(
            f"    {row['corpus']}: {check['chunks']} chunks; quick form {check['quick_seconds']} s (taken:"
            f" {check['quick']}), exact form {check['exact_seconds']} s; store whole: {check['whole']}"
        )
    return {
        "memory": memory, "throughput": rates, "commands": commands, "checks": checks,
        "load_average": round(os.getloadavg()[0], 2),
    }  # fmt: skip


def _ratios(row: dict[str, Any]) -> str:
    return f"{row['over_raw_encode']:.3f}; {row['over_raw_encode_cpu']:.3f}"


def ingest_rows(figures: dict[str, Any]) -> list[Row]:
    rows = [
        Row(
            f"ingest peak RSS above model (MB): {Path(row['corpus']).name}, {row['chunks']} chunks",
            f"{row['above_model_mb']:.0f}",
            f"< {MEMORY_TARGET_MB:.0f}",
            row["above_model_mb"] < MEMORY_TARGET_MB,
        )
        for row in figures["memory"]
    ]
    rows += [
        Row(
            f"`{name}` seconds (no model)",
            f"{row['seconds']:.2f}",
            "< 2",
            row["seconds"] < 2 and not row["model_loaded"],
        )
        for name, row in figures["commands"].items()
    ]
    rows += [
        Row(
            f"store check seconds (quick; exact): {Path(row['corpus']).name}, {row['chunks']} chunks, {row['store']}",
            f"{row['quick_seconds']:.2f}; {row['exact_seconds']:.2f}",
        )
        for row in figures.get("checks", [])
    ]
    rates = figures["throughput"]
    if not rates:
        return rows
    rows.append(Row("ingest torch / raw encode (wall; CPU s)", _ratios(rates["torch"])))
    for name, target in (("onnx fp32", ONNX_RATIO_TARGET), ("onnx int8", INT8_RATIO_TARGET)):
        ratio = rates[name]["over_raw_encode"]
        rows.append(
            Row(f"ingest {name} / raw encode (wall; CPU s)", _ratios(rates[name]), f">= {target}", ratio >= target)
        )
    if "torch bf16" in rates:
        rows.append(Row("ingest torch bf16 / raw encode (wall; CPU s)", _ratios(rates["torch bf16"])))
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    if args.ingest_only:
        with tempfile.TemporaryDirectory(prefix="rag-bench-", ignore_cleanup_errors=True) as tmp:
            say(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
            figures = bench_ingest_figures(args, Path(tmp))
        print_table(ingest_rows(figures))
        say(f"\ntotal {time.perf_counter() - started:.0f} s; load average {os.getloadavg()[0]:.2f}")
        if args.json:
            args.json.write_text(json.dumps(figures, indent=2) + "\n", "utf-8")
        return 0
    tasks = load_tasks(args.tasks)
    with tempfile.TemporaryDirectory(prefix="rag-bench-", ignore_cleanup_errors=True) as tmp:
        workdir = Path(tmp)
        settings = load_settings(args.config, store=str(workdir / "sample"), collection="bench-sample")
        if not settings.profile(args.filter_agent).tags:
            raise SystemExit(f"--filter-agent {args.filter_agent!r} has no tags to filter on")
        say(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs; {len(tasks)} tasks from {args.tasks}")
        began = time.perf_counter()
        embedder = SentenceTransformerEmbedder(
            settings.embedding_model, settings.embedding_device, settings.embedding_batch_size
        )
        embedder.embed(["warm-up"])
        load_s = time.perf_counter() - began
        say(f"embedder {embedder.name} on {embedder.device} loaded and warmed in {load_s:.1f} s")

        sample = Pipeline(settings, embedder=embedder)
        figures = {
            "machine": {
                "cpus": os.cpu_count(),
                "load_average_start": round(os.getloadavg()[0], 2),
                "embedder_device": embedder.device,
                "embedder_load_s": round(load_s, 2),
            },
            "ingest": bench_ingest(sample, embedder, args.corpus),
            "sample_compose": bench_sample_compose(sample, tasks),
        }
        figures["synthetic"] = bench_synthetic(
            args.config, embedder, sample, tasks, args.sizes, args.filter_agent, workdir
        )
    figures["machine"]["load_average_end"] = round(os.getloadavg()[0], 2)
    figures["total_s"] = round(time.perf_counter() - started, 1)
    print_table(summary_rows(figures, args.filter_agent))
    say(f"\ntotal {figures['total_s']:.0f} s; load average {figures['machine']['load_average_end']:.2f}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n", "utf-8")
        say(f"figures written to {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
