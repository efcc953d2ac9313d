"""A copying compact of an embedded store reclaims the vector-index folders chromadb leaves behind for the
collections it drops (chroma-core/chroma#5520), and touches nothing a live segment uses."""

from __future__ import annotations

import os
import sqlite3
import uuid
import warnings
from pathlib import Path

import chromadb
import pytest
from chromadb.config import Settings

from rag_prompts import SentenceTransformerEmbedder, index_folders
from rag_prompts import store as store_module
from rag_prompts.pipeline import Pipeline
from rag_prompts.store import Compaction

from .conftest import make_pipeline, write

QUERIES = ("second approver for claims", "how long are records kept", "returning badges")


def _results(pipeline: Pipeline) -> dict[str, list[tuple[str, str]]]:
    return {query: [(hit.chunk.id, hit.chunk.text) for hit in pipeline.search(query, k=3)] for query in QUERIES}


def _vector_segments(store: Path) -> set[str]:
    with sqlite3.connect(store / "chroma.sqlite3") as connection:
        return {row[0] for row in connection.execute("SELECT id FROM segments WHERE scope = 'VECTOR'")}


def _uuid_folders(store: Path) -> set[str]:
    return {entry.name for entry in store.iterdir() if entry.is_dir() and index_folders._is_uuid(entry.name)}


def test_compacting_twice_leaves_one_index_folder_per_live_vector_segment(
    tmp_path: Path, embedder: SentenceTransformerEmbedder
) -> None:
    docs = tmp_path / "docs"
    write(docs / "a.md", "# Alpha\n\nClaims over $5,000 need a second approver.\n\nRecords are kept seven years.\n")
    write(docs / "b.md", "# Beta\n\nBadges are returned on the last day.\n")
    pipeline = make_pipeline(tmp_path, embedder)
    assert pipeline.ingest([docs]).ok
    write(docs / "a.md", "# Alpha\n\nClaims over $9,000 need a second approver.\n\nRecords are kept seven years.\n")
    assert pipeline.ingest([docs]).updated == ["a.md"]
    location, collection = pipeline.settings.store_location, pipeline.settings.collection
    store = Path(location)
    before = _results(pipeline)
    stray = store / "not-an-index"  # not UUID-named: never touched
    stray.mkdir()
    (store / str(uuid.uuid4())).write_text("a file, not a folder")  # never touched either
    leaked = chromadb.PersistentClient(path=location, settings=Settings(anonymized_telemetry=False))
    probe = leaked.create_collection("probe-leak", embedding_function=None)
    probe.add(ids=["x"], embeddings=[[1.0, 0.0]])
    leaked_segment = index_folders.vector_segments(store, ["probe-leak"])
    leaked.delete_collection("probe-leak")  # what compacts before this fix leaked
    assert leaked_segment and leaked_segment <= _uuid_folders(store) - _vector_segments(store)
    chunks = pipeline.stats().chunks
    for round_, active in ((1, collection), (2, f"{collection}.v1")):
        dropping = index_folders.vector_segments(store, [active])
        assert len(dropping) == 1 and dropping <= _uuid_folders(store)
        assert store_module.compact_collection(location, collection, force=True) == Compaction(chunks, copied=True)
        assert _uuid_folders(store) == _vector_segments(store), f"after compact {round_}"
        assert not dropping & _uuid_folders(store) and not leaked_segment & _uuid_folders(store)
    assert stray.is_dir() and len(list(store.iterdir())) == len(_vector_segments(store)) + 3
    assert _results(pipeline) == before
    reopened = make_pipeline(tmp_path, embedder)  # a fresh process's view: the live indexes are whole
    assert _results(reopened) == before


def test_a_folder_that_cannot_be_removed_is_a_warning_and_the_compact_stands(
    tmp_path: Path, embedder: SentenceTransformerEmbedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    docs = tmp_path / "docs"
    write(docs / "a.md", "# Alpha\n\nClaims over $5,000 need a second approver.\n")
    pipeline = make_pipeline(tmp_path, embedder)
    assert pipeline.ingest([docs]).ok
    location, collection = pipeline.settings.store_location, pipeline.settings.collection

    def refuse(path: Path) -> None:
        raise PermissionError(f"cannot remove {path}")

    monkeypatch.setattr(index_folders.shutil, "rmtree", refuse)
    with pytest.warns(UserWarning, match=r"could not remove dropped index folder [0-9a-f-]{36}: PermissionError"):
        done = store_module.compact_collection(location, collection, force=True)
    assert done == Compaction(pipeline.stats().chunks, copied=True)
    assert "$5,000" in pipeline.search("second approver for claims", k=1)[0].chunk.text
    monkeypatch.undo()
    monkeypatch.chdir(tmp_path)  # a store named by a relative path, as in a settings file
    relative = os.path.relpath(location, tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        store_module.compact_collection(relative, collection, force=True)  # reclaims what the last one left
    assert _uuid_folders(Path(location)) == _vector_segments(Path(location))
