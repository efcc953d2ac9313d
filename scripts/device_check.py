"""The GPU device check: ingest on the GPU agrees with ingest on the CPU, and how fast it is.

One command on a machine with a CUDA GPU and a CUDA build of torch (exit 0 when every check passes, 1 when one
fails, 2 when there is no such device):

    python scripts/device_check.py                  # --device cuda:1, --json FILE, --corpus, --tasks, --config

It ingests the sample corpus twice, into two fresh embedded stores in a temporary folder: once with
`embedding_device` set to the GPU (torch there) and once with "cpu" (the default CPU path, onnxruntime). Then:

- both stores hold the same chunk ids, with the same texts and fields, and every chunk's two vectors agree
  (cosine >= 0.999);
- both store the same document records (versions and chunk counts);
- every task of the tasks file composes from both: at least 90% of them pick exactly the same chunks, and none
  shares less than 80% of its chunks (vectors 1e-6 apart may break near-ties in ranking the other way);
- it prints the GPU ingest's texts/s against a raw `SentenceTransformer.encode` of the same texts on the CPU
  (and on the GPU), and the CPU ingest's. `tests/test_device.py` runs it and is skipped where no GPU is present.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from rag_prompts import Pipeline, SentenceTransformerEmbedder, load_settings
from rag_prompts.store import ChunkStore

ROOT = Path(__file__).resolve().parent.parent
MIN_COSINE = 0.999
MIN_SAME_TASKS = 0.9  # share of tasks composed with exactly the same chunks from both stores
MIN_OVERLAP = 0.8  # the least share of chunks any one task's two compositions have in common (Jaccard)


def _timed(work: Callable[[], Any]) -> tuple[Any, float]:
    began = time.perf_counter()
    result = work()
    return result, time.perf_counter() - began


def _recording(embedder: SentenceTransformerEmbedder, texts: list[str]) -> None:
    """Keep every text the ingest embeds, so the raw encodes run on exactly the same ones."""
    embed = embedder.embed

    def recorded(batch: Sequence[str]) -> np.ndarray:
        texts.extend(batch)
        return embed(batch)

    embedder.embed = recorded  # type: ignore[method-assign,assignment]


def _raw_encode(model: Any, texts: list[str], batch_size: int) -> float:
    """Seconds of sentence-transformers' own batched encode of `texts` (after a warm-up batch)."""
    model.encode(texts[:batch_size], batch_size=batch_size, normalize_embeddings=True, show_progress_bar=False)
    _, seconds = _timed(
        lambda: model.encode(texts, batch_size=batch_size, normalize_embeddings=True, show_progress_bar=False)
    )
    return seconds


def _contents(store: ChunkStore) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    ids = sorted(store.ids())
    chunks = {chunk.id: chunk for chunk in store.chunks(ids)}
    vectors = dict(zip(ids, store.vectors_of(ids), strict=True))
    return chunks, vectors


def _tasks(path: Path) -> list[tuple[str, str | None]]:
    rows = [json.loads(line) for line in path.read_text("utf-8").splitlines() if line.strip()]
    return [(str(row["task"]), row.get("agent")) for row in rows]


def check(
    device: str, corpus: Path, tasks: Path, config: Path, workdir: Path, backend: str | None = None
) -> tuple[dict[str, Any], list[str]]:
    """Ingest on `device` (through `backend`, default the settings') and on the CPU (the settings' backend),
    compare, and time; returns the figures and the failed checks."""
    failures: list[str] = []
    pipelines: dict[str, Pipeline] = {}
    figures: dict[str, Any] = {"device": device, "corpus": str(corpus)}
    texts: list[str] = []
    for name, where in (("gpu", device), ("cpu", "cpu")):
        settings = load_settings(config, environ={}, store=str(workdir / name), embedding_device=where)
        chosen = (backend or settings.embedding_backend) if name == "gpu" else settings.embedding_backend
        embedder = SentenceTransformerEmbedder(settings.embedding_model, where, settings.embedding_batch_size,
                                               backend=chosen)  # fmt: skip
        embedder.embed(["warm-up"] * settings.embedding_batch_size)
        if name == "gpu":
            _recording(embedder, texts)
        pipeline = Pipeline(settings, embedder=embedder)
        pipeline.store  # noqa: B018 - opened before the clock starts
        report, seconds = _timed(partial(pipeline.ingest, [corpus]))
        if not report.ok:
            failures.append(f"{name} ingest failed: {report.failed}")
        figures[name] = {
            "embedder_device": embedder.device, "backend": embedder.backend, "texts": report.chunks_embedded,
            "ingest_s": round(seconds, 2), "ingest_texts_per_s": round(report.chunks_embedded / seconds, 1),
        }  # fmt: skip
        pipelines[name] = pipeline
    gpu = figures["gpu"]
    if device.startswith("cuda") and (not gpu["embedder_device"].startswith("cuda") or gpu["backend"] != "torch"):
        failures.append(f"the GPU pipeline embedded on {gpu['embedder_device']} through {gpu['backend']}")

    gpu_model = pipelines["gpu"].embedder._model  # type: ignore[attr-defined]
    cpu_model = SentenceTransformerEmbedder(device="cpu", backend="torch")._model
    batch_size = pipelines["gpu"].settings.embedding_batch_size
    for name, model in (("cpu", cpu_model), ("gpu", gpu_model)):
        seconds = _raw_encode(model, texts, batch_size)
        figures[f"raw_encode_{name}"] = {"texts": len(texts), "seconds": round(seconds, 2),
                                         "texts_per_s": round(len(texts) / seconds, 1)}  # fmt: skip
    figures["gpu_ingest_over_cpu_raw_encode"] = round(
        gpu["ingest_texts_per_s"] / figures["raw_encode_cpu"]["texts_per_s"], 2
    )
    figures["gpu_ingest_over_gpu_raw_encode"] = round(
        gpu["ingest_texts_per_s"] / figures["raw_encode_gpu"]["texts_per_s"], 3
    )

    (gpu_chunks, gpu_vectors), (cpu_chunks, cpu_vectors) = (_contents(pipelines[n].store) for n in ("gpu", "cpu"))
    if sorted(gpu_chunks) != sorted(cpu_chunks):
        failures.append(f"chunk ids differ: {len(set(gpu_chunks) ^ set(cpu_chunks))} in one store only")
    shared = sorted(set(gpu_chunks) & set(cpu_chunks))
    differing = [chunk_id for chunk_id in shared if gpu_chunks[chunk_id] != cpu_chunks[chunk_id]]
    if differing:
        failures.append(f"{len(differing)} chunks differ in text or fields, e.g. {differing[0]}")
    cosines = np.asarray([float(gpu_vectors[i] @ cpu_vectors[i]) for i in shared])  # both are unit vectors
    figures["chunks"] = len(shared)
    figures["cosine_min"] = round(float(cosines.min()), 6) if len(cosines) else None
    figures["cosine_mean"] = round(float(cosines.mean()), 6) if len(cosines) else None
    if not len(cosines) or cosines.min() < MIN_COSINE:
        failures.append(f"a chunk's GPU and CPU vectors have cosine {figures['cosine_min']} < {MIN_COSINE}")
    records = [{source: (record.doc_hash, record.chunks) for source, record in pipelines[n].store.records().items()}
               for n in ("gpu", "cpu")]  # fmt: skip
    if records[0] != records[1]:
        failures.append("the two stores' document records differ")

    same, overlaps = 0, []
    for task, agent in _tasks(tasks):
        picked = [{chunk.id for chunk in pipelines[n].compose(task, agent=agent).chunks} for n in ("gpu", "cpu")]
        same += picked[0] == picked[1]
        overlaps.append(len(picked[0] & picked[1]) / max(1, len(picked[0] | picked[1])))
    figures["tasks"] = len(overlaps)
    figures["tasks_same_chunks"] = same
    figures["task_overlap_min"] = round(min(overlaps), 3) if overlaps else None
    if not overlaps or same < MIN_SAME_TASKS * len(overlaps) or min(overlaps) < MIN_OVERLAP:
        failures.append(
            f"compositions differ: {same} of {len(overlaps)} tasks picked the same chunks (need"
            f" {MIN_SAME_TASKS:.0%}), least overlap {figures['task_overlap_min']} (need {MIN_OVERLAP})"
        )
    figures["load_average"] = round(os.getloadavg()[0], 2)
    return figures, failures


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--device", default="cuda", help="the GPU to check (default: cuda)")
    parser.add_argument("--corpus", type=Path, default=ROOT / "corpus")
    parser.add_argument("--tasks", type=Path, default=ROOT / "corpus" / "tasks.jsonl")
    parser.add_argument("--config", type=Path, default=ROOT / "rag_prompts.toml", help="agent profiles and chunking")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the figures and failures to FILE")
    parser.add_argument("--backend", help="the device side's embedding_backend (default: the settings'); a dry run"
                        " without a GPU: --device cpu --backend torch (torch against onnxruntime)")  # fmt: skip
    args = parser.parse_args(argv)
    import torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print(f"no CUDA device: torch {torch.__version__} (CUDA build: {torch.version.cuda})", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="rag-device-check-") as workdir:
        figures, failures = check(args.device, args.corpus, args.tasks, args.config, Path(workdir), args.backend)
    if args.device.startswith("cuda"):
        figures["gpu_name"] = torch.cuda.get_device_name(torch.device(args.device))
    gpu, cpu, raw = figures["gpu"], figures["cpu"], figures["raw_encode_cpu"]
    print(f"device {args.device} ({figures.get('gpu_name', '?')}); load {figures['load_average']}")
    print(f"  ingest on {gpu['embedder_device']} ({gpu['backend']}): {gpu['texts']} texts in {gpu['ingest_s']} s ="
          f" {gpu['ingest_texts_per_s']}/s; on cpu ({cpu['backend']}): {cpu['ingest_texts_per_s']}/s")  # fmt: skip
    print(f"  raw encode of the same texts: cpu {raw['texts_per_s']}/s,"
          f" gpu {figures['raw_encode_gpu']['texts_per_s']}/s;"
          f" GPU ingest over CPU raw encode {figures['gpu_ingest_over_cpu_raw_encode']}x, over GPU raw encode"
          f" {figures['gpu_ingest_over_gpu_raw_encode']}")  # fmt: skip
    print(f"  {figures['chunks']} chunks: cosine GPU vs CPU min {figures['cosine_min']}, mean {figures['cosine_mean']};"
          f" {figures['tasks_same_chunks']} of {figures['tasks']} tasks composed with the same chunks (least overlap"
          f" {figures['task_overlap_min']})")  # fmt: skip
    for failure in failures:
        print(f"FAILED: {failure}")
    print("device check passed" if not failures else f"device check failed ({len(failures)})")
    if args.json:
        args.json.write_text(json.dumps({"figures": figures, "failures": failures}, indent=2), "utf-8")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
