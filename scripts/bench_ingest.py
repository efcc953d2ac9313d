"""Ingest benchmarks used by bench_pipeline.py: peak memory per corpus, and embedding throughput per backend.

Memory: each corpus is ingested by a child process into a fresh store; the child reports its peak RSS
(getrusage) after the model is loaded and warmed, and at the end, so "above the model" is their difference.

Throughput: the same texts embedded by sentence-transformers' raw `encode` and ingested through each embedding
backend (torch, onnx fp32, onnx int8), measured in one run; the ratios are ingest chunks/s over raw chunks/s.
"""

from __future__ import annotations

import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def big_text(path: Path, megabytes: float, seed: int = 7) -> Path:
    """A text file of about `megabytes` MB of unique sentences (numbered, so no two are alike)."""
    rng = random.Random(seed)
    subjects = ["The claims desk", "Payroll", "The auditor", "Each manager", "The records team", "Security"]
    verbs = ["approves", "files", "reviews", "archives", "signs", "checks"]
    objects = ["form", "invoice", "request", "contract", "report", "badge log"]
    target = int(megabytes * 1_000_000)
    written, n = 0, 0
    with path.open("w", encoding="utf-8") as out:
        out.write("# Generated policy\n\n")
        while written < target:
            sentences = []
            for _ in range(3):
                n += 1
                sentences.append(
                    f"{rng.choice(subjects)} {rng.choice(verbs)} {rng.choice(objects)} {n}-{rng.randrange(10**6)}"
                    f" within {rng.randrange(1, 90)} days."
                )
            paragraph = " ".join(sentences) + "\n\n"
            out.write(paragraph)
            written += len(paragraph)
    return path


def child(corpus: str, store: str, backend: str, precision: str) -> int:
    """Ingest `corpus` into a fresh store at `store` and print one JSON line of figures."""
    from rag_prompts import Pipeline, SentenceTransformerEmbedder, load_settings

    settings = load_settings(None, environ={}, store=store, collection="bench-memory")
    embedder = SentenceTransformerEmbedder(settings.embedding_model, backend=backend, precision=precision)
    embedder.embed(["warm-up " * 60] * 64)
    model_mb = peak_rss_mb()
    began = time.perf_counter()
    report = Pipeline(settings, embedder=embedder).ingest([corpus])
    seconds = time.perf_counter() - began
    print(
        json.dumps(
            {
                "corpus": corpus,
                "chunks": report.chunks_embedded,
                "files": len(report.added),
                "failed": len(report.failed),
                "seconds": round(seconds, 2),
                "model_rss_mb": round(model_mb, 1),
                "peak_rss_mb": round(peak_rss_mb(), 1),
                "above_model_mb": round(peak_rss_mb() - model_mb, 1),
            }  # fmt: skip
        )
    )
    return 0


def measure_memory(corpora: Sequence[Path], workdir: Path, backend: str = "auto") -> list[dict[str, Any]]:
    """Peak RSS above the loaded model for an ingest of each corpus, each in its own process."""
    results = []
    for index, corpus in enumerate(corpora):
        environ = {**os.environ, "PYTHONPATH": str(ROOT)}
        done = subprocess.run(
            [sys.executable, __file__, "--child", str(corpus), str(workdir / f"memory-{index}"), backend, "fp32"],
            capture_output=True, text=True, env=environ,
        )  # fmt: skip
        if done.returncode != 0:
            raise SystemExit(f"memory child for {corpus} failed:\n{done.stderr[-3000:]}")
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
    return results


def measure_throughput(corpus: Path, workdir: Path) -> dict[str, Any]:
    """Chunks/s of raw sentence-transformers encode and of ingest through each backend, on the same texts."""
    from rag_prompts import Pipeline, SentenceTransformerEmbedder, load_settings

    figures: dict[str, Any] = {}
    texts: list[str] = []
    for name, backend, precision in [("torch", "torch", "fp32"), ("onnx fp32", "onnx", "fp32"),
                                     ("onnx int8", "onnx", "int8")]:  # fmt: skip
        settings = load_settings(None, environ={}, store=str(workdir / f"rate-{backend}-{precision}"))
        embedder = SentenceTransformerEmbedder(settings.embedding_model, backend=backend, precision=precision)
        embedder.embed(["warm-up"] * 8)
        pipeline = Pipeline(settings, embedder=embedder)
        began = time.perf_counter()
        report = pipeline.ingest([corpus])
        seconds = time.perf_counter() - began
        figures[name] = {"chunks": report.chunks_embedded, "seconds": round(seconds, 2),
                         "chunks_per_s": round(report.chunks_embedded / seconds, 1)}  # fmt: skip
        if not texts:
            ids = [chunk_id for entry in pipeline.store.documents().values() for chunk_id in entry.chunk_ids]
            texts = [chunk.embedding_text for chunk in pipeline.store.chunks(ids)]
            model = embedder._model
            began = time.perf_counter()
            model.encode(texts, batch_size=embedder.batch_size, normalize_embeddings=True, show_progress_bar=False)
            raw = time.perf_counter() - began
            figures["raw encode"] = {"chunks": len(texts), "seconds": round(raw, 2),
                                     "chunks_per_s": round(len(texts) / raw, 1)}  # fmt: skip
    raw_rate = figures["raw encode"]["chunks_per_s"]
    for name in ("torch", "onnx fp32", "onnx int8"):
        figures[name]["over_raw_encode"] = round(figures[name]["chunks_per_s"] / raw_rate, 3)
    return figures


PROBE = """
import runpy, sys, time
began = time.perf_counter()
sys.argv = ["rag-prompts", *sys.argv[1:]]
try:
    runpy.run_module("rag_prompts.cli", run_name="__main__")
except SystemExit as done:
    code = done.code
print("PROBE", time.perf_counter() - began, code, "torch" in sys.modules, file=sys.stderr)
"""


def measure_commands(store: Path, workdir: Path) -> dict[str, dict[str, Any]]:
    """Wall time of commands that need no model, each in a fresh process, and whether torch got imported."""
    config = workdir / "commands.toml"
    config.write_text(f'store = "{store}"\ncollection = "bench-memory"\n', "utf-8")
    log = workdir / "payload.jsonl"
    log.write_text("", "utf-8")
    bad = workdir / "bad.toml"
    bad.write_text("chunk_tokens = 'many'\n", "utf-8")
    commands = {
        "stats": ["stats", "--config", str(config)],
        "compact": ["compact", "--config", str(config)],
        "log": ["log", str(log)],
        "config error": ["stats", "--config", str(bad)],
        "no such path": ["ingest", str(workdir / "no-such-folder"), "--config", str(config)],
    }
    figures = {}
    for name, args in commands.items():
        environ = {**os.environ, "PYTHONPATH": str(ROOT)}
        began = time.perf_counter()
        done = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, env=environ)
        seconds = time.perf_counter() - began
        probe = [line for line in done.stderr.splitlines() if line.startswith("PROBE")]
        fields = probe[-1].split() if probe else []
        loaded = fields[-1] == "True" if fields else None
        code = fields[2] if fields else str(done.returncode)  # the command's own exit code
        figures[name] = {"seconds": round(seconds, 2), "exit": code, "model_loaded": loaded}
    return figures


def main(argv: Sequence[str]) -> int:
    if argv[:1] == ["--child"]:
        return child(*argv[1:5])
    with tempfile.TemporaryDirectory(prefix="rag-bench-ingest-") as tmp:
        print(json.dumps(measure_memory([Path(path) for path in argv], Path(tmp)), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
