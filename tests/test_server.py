"""The same ingest and compose against a real Chroma server (`chroma run`) started on 127.0.0.1."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from rag_prompts import SentenceTransformerEmbedder, StoreError

from .conftest import CORPUS, make_pipeline

pytestmark = pytest.mark.server


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def chroma_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
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


def test_server_store_behaves_like_the_embedded_one(
    chroma_url: str, tmp_path: Path, embedder: SentenceTransformerEmbedder
) -> None:
    root = tmp_path / "docs"
    shutil.copytree(CORPUS / "claims", root / "claims")
    remote = make_pipeline(tmp_path / "unused", embedder, store=chroma_url)
    local = make_pipeline(tmp_path, embedder)
    remote_report, local_report = remote.ingest([root]), local.ingest([root])
    assert remote_report.ok and remote_report.added == local_report.added
    assert remote_report.chunks_embedded == local_report.chunks_embedded > 0
    assert remote.ingest([root]).chunks_embedded == 0  # incremental against the server too

    task = "The customer's excess was paid and we recovered the full amount from the other insurer. Do we refund it?"
    remote_prompt = remote.compose(task, agent=None, k=4, budget=900)
    local_prompt = local.compose(task, agent=None, k=4, budget=900)
    assert remote_prompt.system_message == local_prompt.system_message
    assert [c.id for c in remote_prompt.chunks] == [c.id for c in local_prompt.chunks]
    assert remote_prompt.tokens <= 900
    assert remote.stats().chunks == local.stats().chunks


def test_unreachable_server_is_a_clear_error(tmp_path: Path, embedder: SentenceTransformerEmbedder) -> None:
    pipeline = make_pipeline(tmp_path, embedder, store=f"http://127.0.0.1:{free_port()}")
    with pytest.raises(StoreError, match="cannot reach the Chroma server"):
        pipeline.stats()
