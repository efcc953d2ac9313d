"""Shared fixtures: the real embedding model, real tiktoken, and real Chroma stores in temporary folders."""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, is_dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from rag_prompts import Pipeline, SentenceTransformerEmbedder, TokenCounter, load_settings, token_counter
from rag_prompts.centring import decode
from rag_prompts.chunking import with_nearby
from rag_prompts.records import Chunk

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "corpus"
CONFIG = ROOT / "rag_prompts.toml"


@pytest.fixture(scope="session")
def embedder() -> SentenceTransformerEmbedder:
    return SentenceTransformerEmbedder()


@pytest.fixture(scope="session")
def counter() -> TokenCounter:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # gpt-4 is cl100k: counted exactly offline, no fallback warning
        return token_counter("gpt-4")


@pytest.fixture(scope="session")
def tasks() -> list[dict[str, Any]]:
    return [json.loads(line) for line in (CORPUS / "tasks.jsonl").read_text("utf-8").splitlines() if line.strip()]


@pytest.fixture(scope="session")
def corpus_pipeline(tmp_path_factory: pytest.TempPathFactory, embedder: SentenceTransformerEmbedder) -> Pipeline:
    """The sample corpus ingested once into an embedded Chroma folder, with the repository's agent profiles."""
    store = tmp_path_factory.mktemp("corpus-store")
    pipeline = Pipeline(load_settings(CONFIG, environ={}, store=str(store)), embedder=embedder)
    report = pipeline.ingest([CORPUS])
    assert report.ok and len(report.added) >= 15
    return pipeline


def make_pipeline(tmp_path: Path, embedder: SentenceTransformerEmbedder, **settings: Any) -> Pipeline:
    """A pipeline over an empty embedded store in `tmp_path`, with default settings unless overridden."""
    values: dict[str, Any] = {"store": str(tmp_path / "store"), "collection": "test-policies"}
    values.update(settings)
    return Pipeline(load_settings(None, environ={}, **values), embedder=embedder)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def run_team_example(tmp_path: Path, script: str) -> tuple[str, list[tuple[str, ...]]]:
    """Run scripts/SCRIPT on two cases against a copy of the sample settings in `tmp_path`; its stdout and, per
    agent call, (agent, tokens sent, messages, system message tokens, budget)."""
    text = CONFIG.read_text("utf-8").replace('".rag_prompts/chroma"', f'"{tmp_path / "store"}"')
    config = write(tmp_path / "rag_prompts.toml", text.replace('corpus = ["corpus"]', f'corpus = ["{CORPUS}"]'))
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / script), "--config", str(config), "--cases", "2"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    calls = re.findall(
        r"^  (\w+) +(\d+) tokens sent in (\d+) messages \(system message (\d+)/(\d+)\)$", result.stdout, re.M
    )
    return result.stdout, calls


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="session")
def chroma_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Chroma server (`chroma run`) on 127.0.0.1 for the tests that need one."""
    binary = shutil.which("chroma") or str(Path(sys.executable).parent / "chroma")
    port = free_port()
    data = tmp_path_factory.mktemp("chroma-server")
    server = subprocess.Popen(
        [binary, "run", "--path", str(data), "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{url}/api/v2/heartbeat", timeout=1):
                    break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"chroma server did not start on {url}")
                time.sleep(0.2)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)


def distinct(chunks: Sequence[Chunk]) -> list[Chunk]:
    """The whole-list way to store repeats once (each passage at its first place, positions and `nearby`
    renumbered, no lead after a dropped repeat): the reference the streamed ingest (`iter_chunks(repeats=False)` +
    `slices`) is compared with."""
    first: dict[str, Chunk] = {}
    for chunk in chunks:
        first.setdefault(chunk.content_hash, chunk)
    kept = list(first.values())
    if len(kept) == len(chunks):
        return list(chunks)
    led = [kept[0]] + [
        chunk if before.end + len(chunk.lead) == chunk.start else replace(chunk, lead="")
        for before, chunk in zip(kept, kept[1:], strict=False)
    ]
    return with_nearby(led)


def dense_and_weighted(
    tmp_path: Path, embedder: SentenceTransformerEmbedder, lines: list[str], **weights: float
) -> tuple[Pipeline, Pipeline]:
    """One document of `lines` (a paragraph each) ingested into a dense-only pipeline, and a second pipeline over
    the same store with `weights` (`lexical_weight`, `region_weight`, `document_weight`, `centring_weight`,
    `focus_weight`; unset ones 0)."""
    write(tmp_path / "docs" / "deliveries.md", "# Deliveries\n\n" + "\n\n".join(lines) + "\n")
    unset = {"lexical_weight": 0.0, "region_weight": 0.0, "document_weight": 0.0, "centring_weight": 0.0,
             "focus_weight": 0.0}  # fmt: skip
    dense = make_pipeline(tmp_path, embedder, **unset)
    dense.ingest([tmp_path / "docs"])
    settings = dense.settings.model_copy(update={**unset, **weights})
    return dense, Pipeline(settings, embedder=embedder, store=dense.store)


def assert_same_records(got: Mapping[str, Any], want: Mapping[str, Any]) -> None:
    """Manifest records (`DocumentRecord`s or their dicts) equal field by field, but the vector sums within float32
    rounding: a run that resumes or repairs a document sums its vectors in another order."""

    def fields(records: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
        return {
            source: asdict(r) if is_dataclass(r) and not isinstance(r, type) else dict(r)
            for source, r in records.items()
        }

    got_fields, want_fields = fields(got), fields(want)
    sums = {source: (got_fields[source].pop("vector_sum", ""), record.pop("vector_sum", "")) for source, record in
            want_fields.items() if source in got_fields}  # fmt: skip
    assert got_fields == want_fields
    for source, (mine, theirs) in sums.items():
        assert bool(mine) == bool(theirs), source
        if theirs:
            assert np.allclose(decode(mine), decode(theirs), atol=1e-5, rtol=0), source
