"""Kill -9 at chosen points of a real ingest or compact subprocess, then a plain rerun: the store ends identical to
a clean ingest of the same files into a fresh store (ids, texts, fields, vectors within 1e-6, manifest records).

The kill points come from RAG_PROMPTS_CRASH_AFTER (see `rag_prompts.crashpoints`), not from timing. Everything
runs in subprocesses: each store is only ever opened by one process at a time, as in real use.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from .conftest import ROOT, assert_same_records, write

GROUP = 32  # chunks per embed/write group, so the large document is written in several slices

DUMP = """
import json, sys
from rag_prompts.store import open_store
store = open_store(sys.argv[1], "crash", "all-MiniLM-L6-v2", 384)
page = store._collection.get(include=["documents", "metadatas", "embeddings"])
chunks = {i: [t, m, [float(x) for x in v]] for i, t, m, v in zip(page["ids"], page["documents"], page["metadatas"],
          page["embeddings"])}
records = {s: r.__dict__ for s, r in store.records().items()}
print(json.dumps({"chunks": chunks, "records": records, "stats": store.stats().__dict__}))
"""


def sentences(prefix: str, count: int, offset: int = 0) -> str:
    desks = ["claims", "records", "payroll", "audit", "travel", "security"]
    return "\n\n".join(
        f"{prefix} clause {n}: the {desks[n % 6]} desk files form {prefix[:2].upper()}-{n} within {n % 29 + 1} days"
        f" and keeps it {n % 9 + 2} years."
        for n in range(offset, offset + count)
    )


def version(root: Path, edited: bool) -> None:
    """Version 1, or version 2: the large document and a small one edited, one removed, one added."""
    if root.exists():
        shutil.rmtree(root)
    write(root / "a.md", "# Alpha\n\n" + sentences("Alpha", 6 if not edited else 7) + "\n")
    write(root / "big.md", "# Big\n\n" + sentences("Big", 150, offset=3 if edited else 0) + "\n")
    write(root / "b.md", "# Beta\n\n" + sentences("Beta", 5) + "\n")
    if edited:
        write(root / "d.md", "# Delta\n\n" + sentences("Delta", 4) + "\n")
    else:
        write(root / "c.md", "# Gamma\n\n" + sentences("Gamma", 5) + "\n")


def config(folder: Path, store: Path) -> Path:
    return write(
        folder / "rag_prompts.toml",
        f'store = "{store}"\ncollection = "crash"\nchunk_tokens = 40\ningest_group_chunks = {GROUP}\n',
    )


def run(folder: Path, *args: str, crash: str | None = None) -> subprocess.CompletedProcess[str]:
    environ = {**os.environ, "PYTHONPATH": str(ROOT)}
    environ.pop("RAG_PROMPTS_CRASH_AFTER", None)
    if crash:
        environ["RAG_PROMPTS_CRASH_AFTER"] = crash
    return subprocess.run(
        [sys.executable, "-m", "rag_prompts.cli", *args, "--config", str(folder / "rag_prompts.toml")],
        cwd=folder, env=environ, capture_output=True, text=True, timeout=600,
    )  # fmt: skip


def dump(store: Path) -> dict[str, Any]:
    environ = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", DUMP, str(store)], env=environ, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def doc_hash(metadata: dict[str, Any]) -> str:
    return str(json.loads(metadata["chunk"])["doc_hash"])


def assert_same(got: dict[str, Any], clean: dict[str, Any]) -> None:
    assert sorted(got["chunks"]) == sorted(clean["chunks"])
    for chunk_id, (text, metadata, vector) in clean["chunks"].items():
        other_text, other_metadata, other_vector = got["chunks"][chunk_id]
        assert (other_text, other_metadata) == (text, metadata)
        assert np.allclose(other_vector, vector, atol=1e-6, rtol=0), chunk_id

    assert_same_records(got["records"], clean["records"])
    assert all(record["vector_sum"] for record in clean["records"].values())
    assert got["stats"]["chunks"] == clean["stats"]["chunks"] == len(clean["chunks"])


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A store holding version 1 (made by a process that has exited), and a clean ingest of version 2 of the
    same folder into a fresh store."""
    folder = tmp_path_factory.mktemp("crash-base")
    docs = folder / "docs"
    version(docs, edited=False)
    config(folder, folder / "v1")
    assert run(folder, "ingest", str(docs)).returncode == 0
    v1 = dump(folder / "v1")
    version(docs, edited=True)
    config(folder, folder / "clean")
    done = run(folder, "ingest", str(docs), "--json")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["added"] == 4 and summary["chunks_embedded"] > 160
    return {"docs": docs, "v1": folder / "v1", "clean": dump(folder / "clean"), "v1_dump": v1}


# The order of work for version 2 (files sorted; `RAG_PROMPTS_CRASH_AFTER=trace` prints it): a.md is grouped,
# b.md is unchanged, big.md (150 chunks) flushes the group and is streamed (chunked, embedded and written) in five
# slices of 32, d.md is grouped and flushed, then c.md is removed.
KILL_POINTS = {
    "during embedding": "embed:2",  # the large document's first slice embedded, not yet written
    "during the large document's write": "write:4",  # a.md's chunks, then three slices of big.md
    "after a streamed document's last slice": "write:6",  # big.md's five slices all written, not yet committed
    "between documents": "commit:3",  # a.md pending, committed, its stale chunks deleted and marked clean
    "during the stale-chunk deletion": "delete:1",  # a.md's old chunks deleted, its record not yet marked clean
    "during the large document's stale deletion": "delete:3",  # big.md's old chunks are deleted in slices of 32
    "during the removal of a vanished document": "commit:9",  # c.md hidden, its chunks not yet deleted
}


@pytest.mark.parametrize("point", list(KILL_POINTS))
def test_a_killed_ingest_is_finished_by_a_plain_rerun(point: str, stores: dict[str, Any], tmp_path: Path) -> None:
    shutil.copytree(stores["v1"], tmp_path / "store")
    config(tmp_path, tmp_path / "store")
    docs = str(stores["docs"])  # version 2, at the path version 1 was ingested from
    killed = run(tmp_path, "ingest", docs, crash=KILL_POINTS[point])
    assert killed.returncode == -signal.SIGKILL, killed.stderr  # the kill point was reached
    between = dump(tmp_path / "store")
    for source, record in between["records"].items():  # every committed document is whole at any moment
        visible = [
            m for _, m, _ in between["chunks"].values() if (m["source"], doc_hash(m)) == (source, record["doc_hash"])
        ]
        assert not record["doc_hash"] or len(visible) == record["chunks"], source
    rerun = run(tmp_path, "ingest", docs, "--json")
    assert rerun.returncode == 0, rerun.stderr
    summary = json.loads(rerun.stdout)
    assert summary["resumed"] >= 1 or summary["added"] + summary["updated"] + summary["removed"] > 0
    assert_same(dump(tmp_path / "store"), stores["clean"])
    again = json.loads(run(tmp_path, "ingest", docs, "--json").stdout)
    assert again["chunks_embedded"] == again["chunks_written"] == again["chunks_deleted"] == 0


@pytest.mark.parametrize("crash", ["copy:1", "switch:1"])
def test_a_killed_compact_leaves_a_complete_collection_and_a_rerun_finishes(
    crash: str, stores: dict[str, Any], tmp_path: Path
) -> None:
    shutil.copytree(stores["v1"], tmp_path / "store")
    config(tmp_path, tmp_path / "store")
    killed = run(tmp_path, "compact", crash=crash)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert_same(dump(tmp_path / "store"), stores["v1_dump"])  # readers see every chunk, before and after the switch
    done = run(tmp_path, "compact", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["chunks"] == len(stores["v1_dump"]["chunks"])
    assert_same(dump(tmp_path / "store"), stores["v1_dump"])
