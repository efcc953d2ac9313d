"""Ingest benchmarks used by bench_pipeline.py: peak memory per corpus, and embedding throughput per backend.

Memory: each corpus is ingested by a child process into a fresh store; the child reports its peak RSS
(getrusage) after the model is loaded and warmed, and at the end, so "above the model" is their difference.

Throughput: the same texts embedded by sentence-transformers' raw `encode` and ingested through each embedding
backend (torch, onnx fp32, onnx int8, and torch bf16 on a CPU with native bfloat16), measured in one run; the
ratios are ingest chunks/s over raw chunks/s.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def vector_index_mb(store: str) -> float:
    """The size of the HNSW index files of an embedded store (0 for a server): the vectors (384 x 4 bytes each)
    and the neighbour lists, at the capacity Chroma has grown the index to. Chroma holds these in the memory
    of the process that writes the store."""
    if store.startswith("http"):
        return 0.0
    names = {"data_level0.bin", "link_lists.bin", "length.bin"}
    return sum(path.stat().st_size for path in Path(store).rglob("*.bin") if path.name in names) / 1e6


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


class HashEmbedder:
    """A stand-in for the model where only memory is measured: each text's vector comes from its hash (unit
    length, 384 dimensions, the same text always the same vector), in microseconds rather than milliseconds."""

    name = "bench-hash-384"
    dimension = 384

    def embed(self, texts: Sequence[str]) -> Any:
        import numpy as np

        vectors = np.empty((len(texts), self.dimension), dtype=np.float32)
        for row, text in enumerate(texts):
            seed = int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")
            vectors[row] = np.random.default_rng(seed).standard_normal(self.dimension)
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)

    def embed_query(self, text: str) -> Any:
        return self.embed([text])[0]


def child(corpus: str, store: str, backend: str, precision: str, embedder_kind: str = "model") -> int:
    """Ingest `corpus` into a fresh store at `store` (a folder or a server URL) and print one JSON line of figures."""
    from rag_prompts import Pipeline, SentenceTransformerEmbedder, load_settings

    collection = f"bench-memory-{os.getpid()}" if store.startswith("http") else "bench-memory"
    settings = load_settings(None, environ={}, store=store, collection=collection)
    embedder: Any = HashEmbedder()
    if embedder_kind == "model":
        embedder = SentenceTransformerEmbedder(settings.embedding_model, backend=backend, precision=precision)
    embedder.embed(["warm-up " * 60] * 64)
    model_mb = peak_rss_mb()
    began = time.perf_counter()
    report = Pipeline(settings, embedder=embedder).ingest([corpus])
    seconds = time.perf_counter() - began
    index_mb = vector_index_mb(store)
    print(
        json.dumps(
            {
                "corpus": corpus,
                "store": "server" if store.startswith("http") else "embedded",
                "collection": collection,
                "embedder": embedder.name,
                "chunks": report.chunks_embedded,
                "files": len(report.added),
                "failed": len(report.failed),
                "seconds": round(seconds, 2),
                "model_rss_mb": round(model_mb, 1),
                "peak_rss_mb": round(peak_rss_mb(), 1),
                "above_model_mb": round(peak_rss_mb() - model_mb, 1),
                "stored_chunks": report.chunks_written,
                "vector_index_mb": round(index_mb, 1),
            }  # fmt: skip
        )
    )
    return 0


def measure_memory(
    corpora: Sequence[Path], workdir: Path, backend: str = "auto", embedder: str = "model", server: str = ""
) -> list[dict[str, Any]]:
    """Peak RSS above the loaded model for an ingest of each corpus, each in its own process; into a fresh
    embedded store, or a fresh collection of the Chroma server at `server` (whose index then lives in the
    server's memory, not the ingest's)."""
    results = []
    for index, corpus in enumerate(corpora):
        environ = {**os.environ, "PYTHONPATH": str(ROOT)}
        store = server or str(workdir / f"memory-{index}")
        done = subprocess.run(
            [sys.executable, __file__, "--child", str(corpus), store, backend, "fp32", embedder],
            capture_output=True, text=True, env=environ,
        )  # fmt: skip
        if done.returncode != 0:
            raise SystemExit(f"memory child for {corpus} failed:\n{done.stderr[-3000:]}")
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
    return results


def _timed(work: Callable[[], Any]) -> tuple[Any, float, float]:
    """What `work` returns, with its wall seconds and this process's CPU seconds."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = work()
    return result, time.perf_counter() - wall, time.process_time() - cpu


def _raw_encode(model: Any, texts: list[str]) -> Any:
    return model.encode(texts, batch_size=64, normalize_embeddings=True, show_progress_bar=False)


def record_embedded(embedder: Any, texts: list[str]) -> None:
    """Make `embedder.embed` also append every text it embeds to `texts` (`del embedder.embed` undoes it), so a
    raw encode can embed exactly what an ingest did: chunks and block texts."""
    embed = embedder.embed

    def recording(batch: Sequence[str]) -> Any:
        texts.extend(batch)
        return embed(batch)

    embedder.embed = recording


def measure_throughput(corpus: Path, workdir: Path) -> dict[str, Any]:
    """Texts/s of ingest through each backend over raw sentence-transformers encode, on the same texts, in one run.

    Each backend's ingest is paired with a raw encode run right before it, so a change in the machine's load
    between pairs does not land on one side of a ratio; the ratio is also given in CPU seconds (this process's),
    which other processes on a shared machine disturb far less than wall time. The ingest embeds each chunk and
    each block once (`chunks_embedded`); raw encode embeds the same texts (recorded from the first ingest)."""
    from rag_prompts import Pipeline, SentenceTransformerEmbedder, load_settings

    figures: dict[str, Any] = {}
    texts: list[str] = []
    raw_model: Any = None
    from rag_prompts.embed import native_bf16

    runs = [("torch", "torch", "fp32"), ("onnx fp32", "onnx", "fp32"), ("onnx int8", "onnx", "int8")]
    if native_bf16("cpu"):  # bfloat16 only where the CPU computes it natively (AMX or AVX-512 BF16)
        runs.append(("torch bf16", "auto", "bf16"))
    for name, backend, precision in runs:
        settings = load_settings(None, environ={}, store=str(workdir / f"rate-{backend}-{precision}"))
        embedder = SentenceTransformerEmbedder(settings.embedding_model, backend=backend, precision=precision)
        embedder.embed(["warm-up"] * 8)
        if not texts:
            raw_model = embedder._model
            record_embedded(embedder, texts)
        pipeline = Pipeline(settings, embedder=embedder)
        pipeline.store  # noqa: B018 - opened before the clock starts
        if texts:
            _, raw_s, raw_cpu = _timed(partial(_raw_encode, raw_model, texts))
        report, seconds, cpu = _timed(partial(pipeline.ingest, [corpus]))
        if name == "torch":  # the texts are known only now: its raw pair comes after
            _, raw_s, raw_cpu = _timed(partial(_raw_encode, raw_model, texts))
        rate, raw_rate = report.chunks_embedded / seconds, len(texts) / raw_s
        figures[name] = {
            "chunks": report.chunks_embedded, "seconds": round(seconds, 2), "chunks_per_s": round(rate, 1),
            "raw_encode_s": round(raw_s, 2), "raw_encode_chunks_per_s": round(raw_rate, 1),
            "over_raw_encode": round(rate / raw_rate, 3),
            "cpu_s": round(cpu, 2), "raw_encode_cpu_s": round(raw_cpu, 2),
            "over_raw_encode_cpu": round((report.chunks_embedded / cpu) / (len(texts) / raw_cpu), 3),
            "load_average": round(os.getloadavg()[0], 2),
        }  # fmt: skip
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
        # the store was just ingested and never compacted: the first compact copies every chunk, as one after an
        # edit (a deletion) does; the second finds nothing deleted since and copies nothing
        "compact (something to compact: copies every chunk)": ["compact", "--config", str(config)],
        "compact (already compact)": ["compact", "--config", str(config)],
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


CHECK = """
import json, sys, time
from dataclasses import replace
from rag_prompts.integrity import audit
from rag_prompts.store import open_store
store = open_store(sys.argv[1], sys.argv[2], sys.argv[3], None)
records = store.records()
began = time.perf_counter()
quick = audit(store, records)
quick_seconds = time.perf_counter() - began
began = time.perf_counter()
exact = audit(store, {source: replace(record, digest="") for source, record in records.items()})
exact_seconds = time.perf_counter() - began
print(json.dumps({"chunks": store.count(), "quick_seconds": round(quick_seconds, 3), "quick": not quick.exact,
                  "exact_seconds": round(exact_seconds, 3), "whole": quick.whole and exact.whole}))
"""


def measure_check(store: str, collection: str, embedding_model: str) -> dict[str, Any]:
    """Seconds of the store check every ingest of a server store starts with (`integrity.audit`), in a fresh
    process: the quick form (count and ids' digest) and the exact one (every chunk's fields read), the latter
    forced by reading the records as if they held no digest. On an embedded store (where ingest skips it) the
    first read also loads the collection's vector index into the process."""
    environ = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-c", CHECK, store, collection, embedding_model]
    done = subprocess.run(command, capture_output=True, text=True, env=environ)
    if done.returncode != 0:
        raise SystemExit(f"store check of {store} failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main(argv: Sequence[str]) -> int:
    if argv[:1] == ["--child"]:
        return child(*argv[1:6])
    with tempfile.TemporaryDirectory(prefix="rag-bench-ingest-") as tmp:
        print(json.dumps(measure_memory([Path(path) for path in argv], Path(tmp)), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
