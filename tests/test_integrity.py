"""The check every ingest of a server store starts with (`integrity`): on a real Chroma server with the real model,
chunks that went missing from a committed document, or that no record names, are found and put right by the next
plain ingest. Here the damage is done directly through the client; `tests/test_server_lock.py` makes it the way
it really happens, with stalled writers."""

from __future__ import annotations

import random
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from rag_prompts import Pipeline, SentenceTransformerEmbedder, load_settings
from rag_prompts.integrity import Audit, combined, digest

from .conftest import assert_same_records, write

pytestmark = pytest.mark.server

RULES = "\n\n".join(f"Rule {n}: the {['claims', 'audit', 'travel'][n % 3]} desk files form F-{n}." for n in range(12))


def docs(tmp_path: Path) -> Path:
    root = tmp_path / "docs"
    write(root / "a.md", "# Alpha\n\n" + RULES + "\n")
    write(root / "b.md", "# Beta\n\nBadges are returned on the last day.\n")
    return root


def contents(pipeline: Pipeline) -> dict[str, Any]:
    page = pipeline.store._collection.get(include=["documents", "metadatas", "embeddings"])
    return {
        "chunks": {chunk_id: (text, metadata, np.asarray(vector)) for chunk_id, text, metadata, vector in
                   zip(page["ids"], page["documents"], page["metadatas"], page["embeddings"], strict=True)},
        "records": {source: replace(record, writer="", seq=0) for source, record in pipeline.store.records().items()},
    }  # fmt: skip


def assert_same(got: dict[str, Any], want: dict[str, Any]) -> None:
    assert sorted(got["chunks"]) == sorted(want["chunks"])
    for chunk_id, (text, metadata, vector) in want["chunks"].items():
        assert got["chunks"][chunk_id][:2] == (text, metadata)
        assert np.allclose(got["chunks"][chunk_id][2], vector, atol=1e-6, rtol=0)
    assert_same_records(got["records"], want["records"])


def server_pipeline(url: str, embedder: SentenceTransformerEmbedder, collection: str) -> Pipeline:
    """A pipeline over the collection `collection` of the Chroma server at `url`, with 40-token chunks."""
    settings = load_settings(None, environ={}, store=url, collection=collection, chunk_tokens=40)
    return Pipeline(settings, embedder=embedder)


@pytest.fixture(scope="module")
def clean(
    tmp_path_factory: pytest.TempPathFactory, embedder: SentenceTransformerEmbedder, chroma_url: str
) -> dict[str, Any]:
    """A clean ingest of the documents into a fresh collection: what every repair must end at. The tests ingest
    the same folder (the root is part of each chunk's fields)."""
    folder = tmp_path_factory.mktemp("clean")
    pipeline, root = server_pipeline(chroma_url, embedder, "integrity-clean"), docs(folder)
    assert pipeline.ingest([root]).ok
    return {**contents(pipeline), "root": root}


def test_the_digest_of_ids_is_a_sum_so_slices_and_documents_add_up() -> None:
    ids = [f"{n:032x}" for n in range(50)]
    shuffled = random.Random(7).sample(ids, len(ids))
    halves = [digest(ids[:20]), digest(ids[20:])]
    assert digest(ids) == digest(shuffled) == digest(ids[20:], halves[0]) == combined(halves)
    assert digest(ids[:-1]) != digest(ids) != digest([*ids[:-1], "another"]) and digest([]) == "0" * 32


def test_chunks_gone_from_a_committed_document_are_rewritten_by_the_next_ingest(
    chroma_url: str, embedder: SentenceTransformerEmbedder, clean: dict[str, Any], request: pytest.FixtureRequest
) -> None:
    """As a stalled server writer's late deletion batch leaves it: chunks of a committed version deleted."""
    pipeline, root = server_pipeline(chroma_url, embedder, request.node.name[5:45].rstrip("_")), clean["root"]
    assert pipeline.ingest([root]).ok
    ids = [chunk_id for chunk_id, _ in pipeline.store.versions("a.md")]
    assert len(ids) >= 4
    pipeline.store._collection.delete(ids=ids[1:3])
    report = pipeline.ingest([root])
    assert report.ok and report.repaired == ["a.md"] and report.unchanged == ["b.md"]
    assert (report.added, report.updated, report.chunks_written) == ([], [], 2)  # only what was missing
    assert 0 < report.chunks_embedded < len(ids)  # the two chunks and their neighbours, not the whole document
    assert_same(contents(pipeline), clean)
    again = pipeline.ingest([root])
    assert again.repaired == [] and again.chunks_written == again.chunks_deleted == 0


def test_chunks_no_record_names_are_deleted_and_stale_ones_swept(
    chroma_url: str, embedder: SentenceTransformerEmbedder, clean: dict[str, Any], request: pytest.FixtureRequest
) -> None:
    """A late write of a removed document's chunks (no record: readers would show them), and a late write of
    another version of a committed one (hidden, but left behind): the next ingest deletes both."""
    pipeline, root = server_pipeline(chroma_url, embedder, request.node.name[5:45].rstrip("_")), clean["root"]
    assert pipeline.ingest([root]).ok
    ((chunk_id, _),) = pipeline.store.versions("b.md")
    (chunk,) = pipeline.store.chunks([chunk_id])
    vector = np.asarray(pipeline.store._collection.get(ids=[chunk_id], include=["embeddings"])["embeddings"])
    pipeline.store.add([replace(chunk, id="ghost-1", source="ghost.md")], vector)
    pipeline.store.add([replace(chunk, id="other-version", doc_hash="f" * 64)], vector)
    assert "ghost.md" in {hit.chunk.source for hit in pipeline.search("badges returned", k=5)}
    report = pipeline.ingest([root])
    assert report.ok and report.repaired == ["b.md"] and report.chunks_deleted == 2
    assert "ghost.md" not in {hit.chunk.source for hit in pipeline.search("badges returned", k=5)}
    assert_same(contents(pipeline), clean)


def test_records_without_a_digest_get_one_and_then_the_quick_check_suffices(
    chroma_url: str,
    embedder: SentenceTransformerEmbedder,
    clean: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
) -> None:
    pipeline, root = server_pipeline(chroma_url, embedder, request.node.name[5:45].rstrip("_")), clean["root"]
    assert pipeline.ingest([root]).ok
    pipeline.store.put_records([replace(record, digest="") for record in pipeline.store.records().values()])
    report = pipeline.ingest([root])  # the exact check (every chunk's fields read) writes each record's digest
    assert report.ok and report.repaired == [] and report.unchanged == ["a.md", "b.md"]
    assert_same(contents(pipeline), clean)

    def exact() -> None:
        raise AssertionError("the exact check ran")

    monkeypatch.setattr(pipeline.store, "chunk_versions", exact)
    assert pipeline.ingest([root]).unchanged == ["a.md", "b.md"]  # count and ids' digest match: nothing more read


def test_a_broken_document_outside_the_ingested_paths_is_hidden_and_named(
    chroma_url: str, embedder: SentenceTransformerEmbedder, clean: dict[str, Any], request: pytest.FixtureRequest
) -> None:
    """It cannot be rewritten without its file, so it is hidden (never served partial) and reported as failed;
    ingesting it later finishes it like a write cut short."""
    pipeline, root = server_pipeline(chroma_url, embedder, request.node.name[5:45].rstrip("_")), clean["root"]
    assert pipeline.ingest([root]).ok
    pipeline.store._collection.delete(ids=[pipeline.store.versions("a.md")[0][0]])
    report = pipeline.ingest([root / "b.md"])
    assert not report.ok and [failure.path for failure in report.failed] == [str(root / "a.md")]
    assert "missing from the store" in report.failed[0].reason and "hidden" in report.failed[0].reason
    assert {hit.chunk.source for hit in pipeline.search("desk files form", k=10)} == {"b.md"}
    later = pipeline.ingest([root / "a.md"])  # its stored chunks are kept; only the missing one is written
    assert later.ok and later.added == later.resumed == ["a.md"] and later.chunks_written == 1
    assert "a.md" in {hit.chunk.source for hit in pipeline.search("desk files form", k=10)}


def test_a_streamed_document_with_repeats_records_the_digest_of_exactly_its_stored_ids(
    chroma_url: str, embedder: SentenceTransformerEmbedder, tmp_path: Path
) -> None:
    """Written in slices of 8, with repeated boilerplate stored once: the record's count and digest match the
    chunks the server holds, so the next ingest's check takes the quick form and finds nothing."""
    from rag_prompts.integrity import audit

    from .test_slices import document_text

    write(tmp_path / "docs" / "long.md", document_text(3, 40))
    settings = load_settings(None, environ={}, store=chroma_url, collection="digest-of-slices", chunk_tokens=16,
                             ingest_group_chunks=8)  # fmt: skip
    pipeline = Pipeline(settings, embedder=embedder)
    assert pipeline.ingest([tmp_path / "docs"]).ok
    record = pipeline.store.records()["long.md"]
    ids = [chunk_id for chunk_id, _ in pipeline.store.versions("long.md")]
    assert record.chunks == len(ids) > 3 * 8 and record.digest == digest(ids)
    assert audit(pipeline.store, pipeline.store.records()) == Audit()  # the quick form, and whole
