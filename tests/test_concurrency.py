"""Two writers never share an embedded store; readers composing during an ingest see whole documents only."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from rag_prompts import SentenceTransformerEmbedder
from rag_prompts.errors import EmptyStoreError, StoreBusyError
from rag_prompts.locking import writer_lock

from .conftest import ROOT, make_pipeline, write


def policies(root: Path, edition: int) -> None:
    """Six policies whose every paragraph names the edition, so any two editions share no chunk."""
    for n in range(6):
        paragraphs = [
            f"Edition {edition}, policy {n}, rule {r}: requests of type {n}-{r} are approved by desk {edition * 10 + r}"
            f" within {r + edition} days."
            for r in range(12)
        ]
        write(root / f"policy-{n}.md", f"# Policy {n}\n\n" + "\n\n".join(paragraphs) + "\n")


def test_compose_during_an_ingest_sees_whole_documents_only(
    tmp_path: Path, embedder: SentenceTransformerEmbedder
) -> None:
    """8 threads compose while every document is replaced by a new edition, written in small groups so each
    document's chunks land in several writes: no compose errs, and none mixes two editions of a document."""
    root = tmp_path / "docs"
    policies(root, 1)
    writer = make_pipeline(tmp_path, embedder, ingest_group_chunks=8, chunk_tokens=40)
    writer.ingest([root])
    first = {chunk_id for entry in writer.store.documents().values() for chunk_id in entry.chunk_ids}
    reader = make_pipeline(tmp_path, embedder, chunk_tokens=40)
    policies(root, 2)
    done = threading.Event()
    errors: list[BaseException] = []
    composed: list[list[tuple[str, str]]] = []

    def compose(worker: int) -> None:
        while not done.is_set():
            try:
                prompt = reader.compose(f"Who approves requests of type {worker % 6}-3?", k=12, budget=1200)
                composed.append([(chunk.source, chunk.id) for chunk in prompt.chunks])
            except BaseException as error:  # noqa: BLE001 - every failure counts
                errors.append(error)

    threads = [threading.Thread(target=compose, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    report = writer.ingest([root])
    done.set()
    for thread in threads:
        thread.join()
    assert report.updated and len(report.updated) == 6
    second = {chunk_id for entry in writer.store.documents().values() for chunk_id in entry.chunk_ids}
    assert not first & second and errors == [] and len(composed) > 8
    for chunks in composed:
        for source in {source for source, _ in chunks}:
            ids = {chunk_id for name, chunk_id in chunks if name == source}
            assert ids <= first or ids <= second, source  # one edition of each document, never a mix
    after = reader.compose("Who approves requests of type 2-3?", k=12, budget=1200)
    assert after.chunks and {chunk.id for chunk in after.chunks} <= second  # the new edition at once


def test_a_second_ingest_of_an_embedded_store_is_refused_naming_the_first(tmp_path: Path) -> None:
    store = tmp_path / "store"
    config = write(tmp_path / "rag_prompts.toml", f'store = "{store}"\ncorpus = ["docs"]\n')
    write(tmp_path / "docs" / "a.md", "# A\n\nOne rule.\n")
    environ = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "rag_prompts.cli", "ingest", "--config", str(config)]
    with writer_lock(str(store)):
        refused = subprocess.run(command, env=environ, capture_output=True, text=True, timeout=300)
        assert refused.returncode == 2
        assert refused.stderr.strip().splitlines() == [
            f"rag-prompts: error: another ingest is running (pid {os.getpid()}) on the store at {store};"
            " wait for it to finish, or pass --wait"
        ]
        with pytest.raises(StoreBusyError, match=f"pid {os.getpid()}"), writer_lock(str(store)):
            pass  # a second writer in the same process is refused too
        waiting = subprocess.Popen([*command, "--wait", "--json"], env=environ, stdout=subprocess.PIPE, text=True)
        time.sleep(3)
        assert waiting.poll() is None  # still waiting for the lock
    out, _ = waiting.communicate(timeout=300)
    assert waiting.returncode == 0 and '"added": 1' in out


def test_search_and_compose_on_an_empty_store_say_so(tmp_path: Path, embedder: SentenceTransformerEmbedder) -> None:
    pipeline = make_pipeline(tmp_path, embedder)
    message = "the store has no documents: run `rag-prompts ingest` first"
    with pytest.raises(EmptyStoreError, match=message):
        pipeline.compose("How long are claim files kept?")
    with pytest.raises(EmptyStoreError, match=message):
        pipeline.search("How long are claim files kept?")
    write(tmp_path / "docs" / "a.md", "# A\n\nClaim files are kept for 7 years.\n")
    pipeline.ingest([tmp_path / "docs"])
    assert pipeline.search("How long are claim files kept?", k=1)[0].chunk.source == "a.md"
    (tmp_path / "docs" / "a.md").unlink()
    assert pipeline.ingest([tmp_path / "docs"]).removed == ["a.md"]
    with pytest.raises(EmptyStoreError, match=message):
        pipeline.compose("How long are claim files kept?")


READER = """
import json, sys, time
from pathlib import Path
from rag_prompts import Pipeline
pipeline = Pipeline.from_config(sys.argv[1])
phase_file, out = Path(sys.argv[2]), open(sys.argv[3], "w")
late = 0
while late < 10:
    phase = int(phase_file.read_text() or 0) if phase_file.exists() else 0  # what the writer had finished
    try:
        prompt = pipeline.compose("Who approves requests of type 2-3?", k=12, budget=1500)
        row = {"phase": phase, "ids": [chunk.id for chunk in prompt.chunks],
               "sources": [chunk.source for chunk in prompt.chunks]}
    except Exception as error:
        row = {"phase": phase, "error": f"{type(error).__name__}: {error}"}
    out.write(json.dumps(row) + "\\n")
    out.flush()
    late += phase == 2
    time.sleep(0.05)
"""


def test_a_running_process_follows_another_process_ingesting_and_compacting(tmp_path: Path) -> None:
    """A reader process composes throughout while a second process re-ingests an edited corpus (one document
    gone, one new) and compacts: no compose errs, and once the writer is done none serves a deleted chunk and
    the new document is found."""
    follow_a_writer(tmp_path, str(tmp_path / "store"))


@pytest.mark.server
def test_a_running_process_follows_another_process_on_a_chroma_server(tmp_path: Path, chroma_url: str) -> None:
    """The same against a real Chroma server: the reader's cache and collection follow the other process."""
    follow_a_writer(tmp_path, chroma_url, collection=f"follow-{tmp_path.name}")


def follow_a_writer(tmp_path: Path, store: str, collection: str = "policies") -> None:
    root = tmp_path / "docs"
    policies(root, 1)
    config = write(
        tmp_path / "rag_prompts.toml", f'store = "{store}"\ncollection = "{collection}"\ncorpus = ["docs"]\n'
    )
    environ = {**os.environ, "PYTHONPATH": str(ROOT)}
    cli = [sys.executable, "-m", "rag_prompts.cli"]

    def run(*args: str) -> None:
        done = subprocess.run([*cli, *args, "--config", str(config)], env=environ, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr

    run("ingest")
    phase, log = tmp_path / "phase", tmp_path / "reader.jsonl"
    reader = subprocess.Popen([sys.executable, "-c", READER, str(config), str(phase), str(log)], env=environ)

    def wait_for(rows: int, in_phase: int) -> None:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            lines = log.read_text("utf-8").splitlines() if log.exists() else []
            if sum(json.loads(line)["phase"] == in_phase for line in lines) >= rows:
                return
            time.sleep(0.3)
        raise AssertionError(f"the reader did not compose {rows} times in phase {in_phase}")

    wait_for(5, 0)
    policies(root, 2)
    (root / "policy-5.md").unlink()
    write(root / "new-policy.md", "# New\n\nRequests of type 2-3 are now approved by the new desk within 2 days.\n")
    run("ingest")
    phase.write_text("1")
    wait_for(10, 1)
    run("compact")
    phase.write_text("2")
    assert reader.wait(timeout=300) == 0
    rows = [json.loads(line) for line in log.read_text("utf-8").splitlines()]
    dump = (
        "import json, sys\nfrom rag_prompts import Pipeline\nstore = Pipeline.from_config(sys.argv[1]).store\n"
        "print(json.dumps([i for e in store.documents().values() for i in e.chunk_ids]))"
    )
    final = subprocess.run([sys.executable, "-c", dump, str(config)], env=environ, capture_output=True, text=True)
    live = set(json.loads(final.stdout))
    assert [row["error"] for row in rows if "error" in row] == []
    for after in (1, 2):  # after the ingest finished, and after the compaction finished
        late = [row for row in rows if row["phase"] == after]
        assert len(late) >= 10
        assert [chunk_id for row in late for chunk_id in row["ids"] if chunk_id not in live] == [], after
        assert all("new-policy.md" in row["sources"] and "policy-5.md" not in row["sources"] for row in late), after
