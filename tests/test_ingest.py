"""Incremental, idempotent ingest on a real embedded Chroma with the real embedding model."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from rag_prompts import Pipeline, SentenceTransformerEmbedder, TokenCounter
from rag_prompts import ingest as ingest_module
from rag_prompts.chunking import chunk_document
from rag_prompts.loaders import load_document

from .conftest import CORPUS, distinct, make_pipeline, write

CLAIMS = "# Claims\n\n## Authority\n\nHandlers approve up to $7,500.\n\n## Deadlines\n\nAcknowledge within 3 days.\n"
PRIVACY = "# Privacy\n\n## Access Requests\n\nAnswer within 30 days on form PRV-03.\n"
RETENTION = "Retention\n=========\n\n1. Periods\n\nClaim files are kept for 7 years.\n"


def snapshot(pipeline: Pipeline) -> dict[str, Any]:
    """Everything the store holds, by chunk id."""
    store = pipeline.store
    ids = [chunk_id for entry in store.documents().values() for chunk_id in entry.chunk_ids]
    return {chunk.id: chunk for chunk in store.chunks(ids)}


def corpus(tmp_path: Path) -> Path:
    root = tmp_path / "docs"
    write(root / "claims" / "claims.md", CLAIMS)
    write(root / "privacy.md", PRIVACY)
    write(root / "retention.txt", RETENTION)
    return root


def test_first_ingest_then_nothing_changes(tmp_path: Path, embedder: SentenceTransformerEmbedder) -> None:
    pipeline, root = make_pipeline(tmp_path, embedder), corpus(tmp_path)
    first = pipeline.ingest([root])
    assert sorted(first.added) == ["claims/claims.md", "privacy.md", "retention.txt"]
    assert first.chunks_embedded == first.chunks_written == 4
    before = snapshot(pipeline)
    second = pipeline.ingest([root])
    assert second.unchanged == sorted(first.added) and second.chunks_embedded == 0
    assert (second.added, second.updated, second.removed, second.failed) == ([], [], [], [])
    assert snapshot(pipeline) == before
    chunk = next(c for c in before.values() if c.source == "retention.txt")
    assert (root / "retention.txt").read_text("utf-8")[chunk.start : chunk.end] == chunk.text
    assert chunk.section == "Retention > 1. Periods" and chunk.tags == ()
    assert next(c for c in before.values() if c.source.startswith("claims/")).tags == ("claims",)


def test_edit_replaces_only_what_changed(tmp_path: Path, embedder: SentenceTransformerEmbedder) -> None:
    pipeline, root = make_pipeline(tmp_path, embedder, neighbour_window=0), corpus(tmp_path)
    pipeline.ingest([root])
    write(
        root / "claims" / "claims.md",
        "# Claims\n\nNew intro.\n\n" + CLAIMS.split("\n\n", 1)[1].replace("3 days", "5 days"),
    )
    report = pipeline.ingest([root])
    assert report.updated == ["claims/claims.md"] and report.unchanged == ["privacy.md", "retention.txt"]
    assert report.chunks_embedded == 2  # the new intro and the edited deadline; the authority chunk is reused
    texts = sorted(c.text for c in snapshot(pipeline).values() if c.source == "claims/claims.md")
    assert texts == ["Acknowledge within 5 days.", "Handlers approve up to $7,500.", "New intro."]
    for chunk in snapshot(pipeline).values():  # kept chunks got their new offsets
        assert (root / chunk.source).read_text("utf-8")[chunk.start : chunk.end] == chunk.text


def test_context_vectors_mix_neighbours_and_are_reused_exactly(
    tmp_path: Path, embedder: SentenceTransformerEmbedder
) -> None:
    """With window 1, a chunk's vector is its own embedding plus half the mean of its window's, normalised; an
    edit re-embeds only the chunks within two places of it (their windows changed), and reuses the rest."""
    paragraphs = [f"Rule {n}: form F-{n} is filed within {n + 1} days by the {n}th desk." for n in range(8)]
    root = tmp_path / "docs"
    write(root / "rules.md", "# Rules\n\n" + "\n\n".join(paragraphs) + "\n")
    pipeline = make_pipeline(
        tmp_path, embedder, neighbour_window=1, neighbour_weight=0.5, block_weight=0, chunk_tokens=24
    )
    assert pipeline.ingest([root]).chunks_embedded == 8
    chunks = sorted(snapshot(pipeline).values(), key=lambda chunk: chunk.ordinal)
    assert [chunk.text for chunk in chunks] == paragraphs
    alone = embedder.embed([chunk.embedding_text for chunk in chunks])
    stored = pipeline.store.vectors_for_keys(chunk.vector_key for chunk in chunks)
    for index in (0, 3, 7):
        neighbours = alone[max(0, index - 1) : index + 2]
        expected = alone[index] + 0.5 * neighbours.mean(axis=0)
        assert np.allclose(stored[chunks[index].vector_key], expected / np.linalg.norm(expected), atol=1e-5)
    paragraphs[7] = "Rule 7: form F-7 is filed within 30 days by the records desk."
    write(root / "rules.md", "# Rules\n\n" + "\n\n".join(paragraphs) + "\n")
    report = pipeline.ingest([root])
    assert report.chunks_embedded == 3  # chunk 7 and the window of chunk 6 (5, 6, 7); 0-5 keep their vectors
    assert report.chunks_reused == 6
    hit = pipeline.search("Which desk files form F-7, and when?", k=1)[0]
    assert "30 days by the records desk" in hit.chunk.text


def test_delete_and_rename(tmp_path: Path, embedder: SentenceTransformerEmbedder) -> None:
    pipeline, root = make_pipeline(tmp_path, embedder), corpus(tmp_path)
    pipeline.ingest([root])
    (root / "privacy.md").unlink()
    shutil.move(root / "retention.txt", root / "records-retention.txt")
    report = pipeline.ingest([root])
    assert sorted(report.removed) == ["privacy.md", "retention.txt"]
    assert report.added == ["records-retention.txt"]
    assert report.chunks_embedded == 0 and report.chunks_reused == 1  # same content: vector reused, not re-embedded
    sources = {chunk.source for chunk in snapshot(pipeline).values()}
    assert sources == {"claims/claims.md", "records-retention.txt"}
    assert pipeline.search("how long are claim files kept?", k=1)[0].chunk.source == "records-retention.txt"


def test_bad_files_are_reported_and_the_rest_ingested(tmp_path: Path, embedder: SentenceTransformerEmbedder) -> None:
    pipeline, root = make_pipeline(tmp_path, embedder), corpus(tmp_path)
    (root / "scan.pdf").write_bytes(b"%PDF-1.4 garbage")
    (root / "blob.txt").write_bytes(b"\x00\x00\xff")
    (root / "cp1252.md").write_bytes("Caf\xe9".encode("latin-1"))
    (root / "empty.txt").write_text("\n\n")
    report = pipeline.ingest([root])
    assert not report.ok
    assert sorted(report.added) == ["claims/claims.md", "privacy.md", "retention.txt"]
    reasons = {Path(failure.path).name: failure.reason for failure in report.failed}
    assert set(reasons) == {"scan.pdf", "blob.txt", "cp1252.md", "empty.txt"}
    assert "PDF" in reasons["scan.pdf"] and "binary" in reasons["blob.txt"]
    assert "UTF-8" in reasons["cp1252.md"] and "empty" in reasons["empty.txt"]


def test_a_good_file_turned_bad_keeps_its_stored_chunks(tmp_path: Path, embedder: SentenceTransformerEmbedder) -> None:
    pipeline, root = make_pipeline(tmp_path, embedder), corpus(tmp_path)
    pipeline.ingest([root])
    before = snapshot(pipeline)
    (root / "privacy.md").write_bytes(b"\xff\xfe broken now")
    report = pipeline.ingest([root])
    assert [Path(failure.path).name for failure in report.failed] == ["privacy.md"]
    assert snapshot(pipeline) == before  # nothing already stored is lost


def test_missing_path_fails_without_removing_anything(tmp_path: Path, embedder: SentenceTransformerEmbedder) -> None:
    pipeline, root = make_pipeline(tmp_path, embedder), corpus(tmp_path)
    pipeline.ingest([root])
    before = snapshot(pipeline)
    report = pipeline.ingest([tmp_path / "typo"])
    assert report.failed[0].reason == "no such file or directory" and report.removed == []
    assert snapshot(pipeline) == before


def test_single_file_ingest_does_not_prune_its_folder(tmp_path: Path, embedder: SentenceTransformerEmbedder) -> None:
    pipeline, root = make_pipeline(tmp_path, embedder), corpus(tmp_path)
    pipeline.ingest([root])
    report = pipeline.ingest([root / "privacy.md"])
    assert report.unchanged == ["privacy.md"] and report.removed == []
    assert len({chunk.source for chunk in snapshot(pipeline).values()}) == 3


def test_changing_chunk_size_rechunks(tmp_path: Path, embedder: SentenceTransformerEmbedder) -> None:
    root = tmp_path / "docs"
    shutil.copytree(CORPUS / "people", root / "people")
    small = make_pipeline(tmp_path, embedder, chunk_tokens=120).ingest([root])
    larger = make_pipeline(tmp_path, embedder, chunk_tokens=400).ingest([root])
    assert len(larger.updated) == len(small.added) == 2
    assert larger.chunks_deleted > 0


def test_an_ingest_that_deletes_much_of_the_index_says_to_compact(
    tmp_path: Path, embedder: SentenceTransformerEmbedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ingest_module, "COMPACT_HINT_CHUNKS", 1)  # the real floor is 1,000 chunks
    pipeline, root = make_pipeline(tmp_path, embedder, neighbour_window=0), corpus(tmp_path)
    assert not pipeline.ingest([root]).warnings  # nothing deleted
    write(root / "retention.txt", "Retention\n=========\n\n1. Periods\n\nKeep claims files for ten years.\n")
    small = pipeline.ingest([root])  # one chunk of five in the index
    assert small.chunks_deleted == 1 and not small.warnings
    shutil.rmtree(root / "claims")
    large = pipeline.ingest([root])
    assert large.chunks_deleted >= 2
    assert [warning for warning in large.warnings if "`rag-prompts compact`" in warning] == [
        f"this ingest deleted {large.chunks_deleted:,} chunks,"
        f" {large.chunks_deleted / (large.chunks_deleted + pipeline.store.count()):.0%} of what the store's vector"
        " index now holds, and Chroma keeps deleted entries in it: searches are slower until `rag-prompts compact`"
        " rewrites the index"
    ]


def test_a_process_that_caches_chunks_never_serves_an_edited_documents_old_version(
    tmp_path: Path, embedder: SentenceTransformerEmbedder
) -> None:
    """Two pipelines on one store stand for two processes: the reader's record cache is warm when the writer
    edits a document, and the reader's next compose shows the new text and offsets."""
    root = corpus(tmp_path)
    writer, reader = make_pipeline(tmp_path, embedder), make_pipeline(tmp_path, embedder)
    writer.ingest([root])
    task = "Who approves claims, up to what amount, and when must they be acknowledged?"
    before = reader.compose(task, budget=400)
    assert "$7,500" in before.system_message and "Acknowledge within 3 days." in before.system_message
    assert reader.store._cache.get(chunk.id for chunk in before.chunks)  # warm

    edited = CLAIMS.replace("# Claims\n", "# Claims\n\nAn introduction moves every offset.\n").replace("7,500", "9,000")
    write(root / "claims" / "claims.md", edited)
    writer.ingest([root])
    after = reader.compose(task, budget=400)
    assert "$9,000" in after.system_message and "$7,500" not in after.system_message
    claims = [chunk for chunk in after.chunks if chunk.source == "claims/claims.md"]
    assert len(claims) >= 2 and all(edited[chunk.start : chunk.end] in after.system_message for chunk in claims)


def test_repeated_searches_read_chunks_from_the_cache(tmp_path: Path, embedder: SentenceTransformerEmbedder) -> None:
    # dense only: exactly k chunks are read
    pipeline = make_pipeline(tmp_path, embedder, lexical_weight=0.0, region_weight=0.0, document_weight=0.0)
    pipeline.ingest([corpus(tmp_path)])
    store = pipeline.store
    reads: list[int] = []
    original_get = store._collection.get

    def counting_get(*args: Any, **kwargs: Any) -> Any:
        reads.append(len(kwargs.get("ids") or ()))
        return original_get(*args, **kwargs)

    store._collection.get = counting_get
    first = pipeline.search("how long are claim files kept?", k=3)
    assert reads == [3]
    assert pipeline.search("how long are claim files kept?", k=3) == first
    assert reads == [3]  # nothing read the second time
    small = make_pipeline(tmp_path, embedder, cached_chunks=2)
    small.search("how long are claim files kept?", k=3)
    assert len(small.store._cache.get(hit.chunk.id for hit in first)) == 2  # bounded


def test_a_repetitive_document_stores_each_passage_once_and_hides_no_other_document(
    tmp_path: Path, embedder: SentenceTransformerEmbedder, counter: TokenCounter
) -> None:
    """Boilerplate repeated hundreds of times (plus near-identical numbered copies) next to three small
    documents: repeats are stored once, and every small document is found, restricted to it or not."""
    root = tmp_path / "docs"
    same = ["This clause is intentionally left blank.", "See the schedule for the terms that apply."]
    numbered = [f"This clause is intentionally left blank (reference {n})." for n in range(300)]
    write(root / "boilerplate.md", "# Boilerplate\n\n" + "\n\n".join(same * 300 + numbered) + "\n")
    small = {
        "pets.md": "# Pets\n\nDogs may come to the office on Fridays if registered with facilities.",
        "bikes.md": "# Bikes\n\nBicycles are parked in the basement cage; the code changes monthly.",
        "plants.md": "# Plants\n\nDesk plants are watered by the cleaning contractor on Tuesdays.",
    }
    for name, text in small.items():
        write(root / name, text + "\n")
    pipeline = make_pipeline(tmp_path, embedder, chunk_tokens=40)
    report = pipeline.ingest([root])
    stored = pipeline.store.documents()
    every = chunk_document(load_document(root / "boilerplate.md", root), counter, 40, "h")
    distinct = {(chunk.section, chunk.text) for chunk in every}
    boilerplate = sorted(pipeline.store.chunks(stored["boilerplate.md"].chunk_ids), key=lambda chunk: chunk.ordinal)
    assert report.ok and len(every) > 2 * len(boilerplate)
    assert sorted((chunk.section, chunk.text) for chunk in boilerplate) == sorted(distinct)  # each passage once
    assert [chunk.ordinal for chunk in boilerplate] == list(range(len(distinct)))
    ids = {chunk.id for chunk in boilerplate}
    assert all(set(chunk.nearby) <= ids and len(chunk.nearby) >= 3 for chunk in boilerplate)
    for name, text in small.items():
        question = text.split("\n\n")[1]
        assert pipeline.search(question, k=1)[0].chunk.source == name
        restricted = pipeline.search(question, k=5, sources=[name])
        assert [hit.chunk.source for hit in restricted] == [name]
    assert pipeline.stats().chunks == len(distinct) + 3


def test_a_document_written_in_slices_gets_the_vectors_of_one_written_whole(
    tmp_path: Path, embedder: SentenceTransformerEmbedder
) -> None:
    """Slices of 8 chunks cut through paragraphs of about 3 chunks: each chunk still leans towards its whole
    block's embedding, so the stored vectors equal those of the same document written in one piece."""
    paragraphs = [
        " ".join(
            f"Clause {p}.{s}: the desk {p} reviews request {s} within {p + s} days of receipt."
            for s in range(3 + p % 4)
        )
        for p in range(12)
    ]
    write(tmp_path / "docs" / "long.md", "# Long policy\n\n" + "\n\n".join(paragraphs) + "\n")
    sliced = make_pipeline(tmp_path / "sliced", embedder, ingest_group_chunks=8, chunk_tokens=40)
    whole = make_pipeline(tmp_path / "whole", embedder, ingest_group_chunks=100_000, chunk_tokens=40)
    assert sliced.ingest([tmp_path / "docs"]).ok and whole.ingest([tmp_path / "docs"]).ok
    ids = whole.store.documents()["long.md"].chunk_ids
    assert len(ids) > 3 * 8 and sorted(ids) == sorted(sliced.store.documents()["long.md"].chunk_ids)
    expected = whole.store.vectors_for_keys(chunk.vector_key for chunk in whole.store.chunks(ids))
    got = sliced.store.vectors_for_keys(expected)
    assert len({chunk.block for chunk in whole.store.chunks(ids)}) < len(ids)  # blocks of several chunks
    assert all(np.abs(got[key] - vector).max() < 1e-6 for key, vector in expected.items())


def test_a_streamed_large_document_is_stored_as_its_whole_chunk_list_would_be(
    tmp_path: Path, embedder: SentenceTransformerEmbedder, counter: TokenCounter
) -> None:
    """A document of about 400 chunks streamed in slices of 32 (chunked, embedded and written a slice at a time,
    never held whole) leaves the store of the same document ingested as one chunk list: the same ids, texts,
    fields (ordinals, `nearby`, vector keys), vectors within 1e-6 and manifest record."""

    from .test_slices import document_text

    write(tmp_path / "docs" / "large.md", document_text(11, 160))
    streamed = make_pipeline(tmp_path / "streamed", embedder, ingest_group_chunks=32, chunk_tokens=16)
    whole = make_pipeline(tmp_path / "whole", embedder, ingest_group_chunks=100_000, chunk_tokens=16)
    assert streamed.ingest([tmp_path / "docs"]).ok and whole.ingest([tmp_path / "docs"]).ok
    page = {}
    for name, pipeline in (("streamed", streamed), ("whole", whole)):
        got = pipeline.store._collection.get(include=["documents", "metadatas", "embeddings"])
        page[name] = {i: (t, m, v) for i, t, m, v in zip(got["ids"], got["documents"], got["metadatas"],
                                                         got["embeddings"], strict=True)}  # fmt: skip
    reference = distinct(chunk_document(load_document(tmp_path / "docs" / "large.md", tmp_path / "docs"), counter,
                                        16, whole.store.records()["large.md"].doc_hash))  # fmt: skip
    assert len(reference) > 12 * 32 and sorted(page["whole"]) == sorted(chunk.id for chunk in reference)
    assert sorted(page["streamed"]) == sorted(page["whole"])
    for chunk_id, (text, metadata, vector) in page["whole"].items():
        other_text, other_metadata, other_vector = page["streamed"][chunk_id]
        assert (other_text, other_metadata) == (text, metadata)
        assert np.abs(np.asarray(other_vector) - np.asarray(vector)).max() < 1e-6, chunk_id
    assert streamed.store.records() == whole.store.records()
    stored = {chunk.id: chunk for chunk in streamed.store.chunks([chunk.id for chunk in reference])}
    assert all(stored[chunk.id].nearby == chunk.nearby for chunk in reference)


def held(pipeline: Pipeline, source: str) -> dict[str, Any]:
    """What the store holds for `source`: each chunk's text, fields and vector by id, and its record (or None)."""
    got = pipeline.store._collection.get(where={"source": source}, include=["documents", "metadatas", "embeddings"])
    chunks = {i: (t, m, np.asarray(v).tolist()) for i, t, m, v in zip(got["ids"], got["documents"], got["metadatas"],
                                                                       got["embeddings"], strict=True)}  # fmt: skip
    return {"chunks": chunks, "record": pipeline.store.records().get(source)}


def test_a_streamed_document_whose_chunking_fails_part_way_leaves_the_store_as_it_was(
    tmp_path: Path, embedder: SentenceTransformerEmbedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two large documents (streamed in slices of 8) whose chunking fails after some of their slices were
    written: an edited one, whose old version stays served whole, and a new one. The store then holds for each
    exactly what it held before (the same chunks, vectors and record; nothing for the new one), the other
    edited file is ingested, and each failure names its file. The failure is raised inside the real chunk
    stream, as a parser choking on a later part of a file would."""
    from rag_prompts import ingest as ingest_module

    root = tmp_path / "docs"
    long = "# Long\n\n" + "\n\n".join(
        f"Clause {n}: desk {n % 5} answers request {n} in {n % 9 + 1} days." for n in range(60)
    )
    write(root / "long.md", long + "\n")
    write(root / "small.md", CLAIMS)
    pipeline = make_pipeline(tmp_path, embedder, ingest_group_chunks=8, chunk_tokens=16)
    assert pipeline.ingest([root]).ok
    before = held(pipeline, "long.md")
    assert len(before["chunks"]) > 4 * 8 and before["record"].clean
    write(root / "long.md", long.replace("days", "working days") + "\n")
    write(root / "new.md", long.replace("Clause", "Article") + "\n")
    write(root / "small.md", CLAIMS.replace("3 days", "4 days"))
    real = ingest_module.iter_chunks

    def fails_part_way(document: Any, *args: Any, **kwargs: Any) -> Any:
        for n, chunk in enumerate(real(document, *args, **kwargs)):
            if n == 30 and document.source in ("long.md", "new.md"):
                raise ValueError(f"unexpected end of table in {document.source}")
            yield chunk

    monkeypatch.setattr(ingest_module, "iter_chunks", fails_part_way)
    written: list[int] = []
    report = pipeline.ingest(
        [root], progress=lambda stage, done, total: written.append(done) if stage == "write" else 0
    )
    assert written and written[-1] >= 8  # slices were written before each failure
    assert sorted((failure.path, failure.reason) for failure in report.failed) == [
        (str(root / name), f"cannot parse: ValueError: unexpected end of table in {name}")
        for name in ("long.md", "new.md")
    ]
    assert report.updated == ["small.md"] and report.added == []
    assert held(pipeline, "long.md") == before
    assert held(pipeline, "new.md") == {"chunks": {}, "record": None}
    hits = pipeline.search("desk answers request", k=40)
    assert {hit.chunk.source for hit in hits} <= {"long.md", "small.md"}
    assert not any("working days" in hit.chunk.text for hit in hits)
    assert "4 days" in pipeline.search("acknowledge", k=1, sources=["small.md"])[0].chunk.text
    monkeypatch.undo()
    fixed = pipeline.ingest([root])
    assert fixed.ok and fixed.updated == ["long.md"] and fixed.added == ["new.md"] and fixed.resumed == []
