"""The same ingest and compose against a real Chroma server (`chroma run`) started on 127.0.0.1."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from rag_prompts import SentenceTransformerEmbedder, StoreError

from .conftest import CORPUS, free_port, make_pipeline

pytestmark = pytest.mark.server


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


def test_a_server_lost_mid_ingest_is_one_line_and_a_rerun_resumes(tmp_path: Path) -> None:
    """The Chroma server is killed while an ingest writes to it: the ingest stops with one line and exit code 2;
    with the server back, a rerun finishes and ends with every document committed."""
    import json
    import os
    import signal

    import chromadb

    root = tmp_path / "docs"
    for n in range(8):
        text = "\n\n".join(f"Rule {n}.{r}: form F-{n}-{r} is filed within {r + 1} days." for r in range(40))
        (root / f"p{n}.md").parent.mkdir(parents=True, exist_ok=True)
        (root / f"p{n}.md").write_text(f"# Policy {n}\n\n{text}\n", "utf-8")
    binary = shutil.which("chroma") or str(Path(sys.executable).parent / "chroma")
    port, data = free_port(), tmp_path / "server"
    url = f"http://127.0.0.1:{port}"

    def serve() -> subprocess.Popen[bytes]:
        server = subprocess.Popen([binary, "run", "--path", str(data), "--host", "127.0.0.1", "--port", str(port)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{url}/api/v2/heartbeat", timeout=1):
                    return server
            except OSError:
                assert time.monotonic() < deadline, "the chroma server did not start"
                time.sleep(0.2)

    config = tmp_path / "rag_prompts.toml"
    config.write_text(f'store = "{url}"\ncollection = "lost"\ningest_group_chunks = 8\n', "utf-8")
    environ = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    command = [sys.executable, "-m", "rag_prompts.cli", "ingest", str(root), "--config", str(config)]
    server = serve()
    ingest = subprocess.Popen(command, env=environ, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    client = chromadb.HttpClient(host="127.0.0.1", port=port)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and ingest.poll() is None:
        try:
            if client.get_collection("lost").count() > 0:
                break
        except Exception:  # not created yet
            pass
        time.sleep(0.2)
    server.send_signal(signal.SIGKILL)
    server.wait(timeout=30)
    _, err = ingest.communicate(timeout=300)
    assert ingest.returncode == 2, err
    lines = err.strip().splitlines()  # a line per document committed, then the error
    assert "Traceback" not in err and all(line.startswith("added ") for line in lines[:-1]), err
    assert lines[-1].startswith("rag-prompts: error: ") and url in lines[-1], err
    server = serve()
    try:
        rerun = subprocess.run([*command, "--json"], env=environ, capture_output=True, text=True, timeout=300)
        assert rerun.returncode == 0, rerun.stderr
        summary = json.loads(rerun.stdout)
        assert summary["added"] + summary["unchanged"] == 8 and summary["failed"] == 0
        manifest = client.get_collection("lost.manifest").get(include=["metadatas"])
        records = [m for i, m in zip(manifest["ids"], manifest["metadatas"] or [], strict=True) if i.startswith("doc:")]
        assert len(records) == 8 and all(record["doc_hash"] for record in records)  # every document committed
        # and the generation, and the lock token of the ingest cut short, which the rerun broke (see manifest.revoke)
        assert sorted(i for i in manifest["ids"] if not i.startswith("doc:")) == ["generation", "revoked"]
    finally:
        server.terminate()
        server.wait(timeout=30)
