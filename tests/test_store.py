"""The store refuses collections whose vectors are not comparable: another model, or a non-cosine distance."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import chromadb
import pytest
from chromadb.config import Settings

from rag_prompts import Chunk, SentenceTransformerEmbedder, StoreError
from rag_prompts import store as store_module
from rag_prompts.errors import StoreBusyError
from rag_prompts.store import Compaction, open_store, where_filter

from .conftest import ROOT, make_pipeline, write


def test_collection_built_with_another_model_is_refused(tmp_path: Path) -> None:
    open_store(str(tmp_path), "policies", "all-MiniLM-L6-v2", 384)
    with pytest.raises(StoreError, match="was built with embedding model 'all-MiniLM-L6-v2'.*use another `collection`"):
        open_store(str(tmp_path), "policies", "BAAI/bge-small-en-v1.5", 384)


def test_created_collection_uses_cosine_and_other_distances_are_refused(tmp_path: Path) -> None:
    store = open_store(str(tmp_path), "policies", "m", 3)
    assert store._collection.configuration["hnsw"]["space"] == "cosine"
    client = chromadb.PersistentClient(path=str(tmp_path), settings=Settings(anonymized_telemetry=False))
    client.create_collection("l2-policies", metadata={"embedding_model": "m", "dimension": 3}, embedding_function=None)
    with pytest.raises(StoreError, match="uses 'l2' distance, not cosine"):
        open_store(str(tmp_path), "l2-policies", "m", 3)


def _clustered(rng: Any, count: int, dimension: int) -> Any:
    """Unit vectors around 40 centres: the near-duplicates a corpus of similar clauses gives an HNSW graph."""
    import numpy as np

    centres = rng.standard_normal((40, dimension))
    vectors = (centres[rng.integers(0, 40, count)] + 0.6 * rng.standard_normal((count, dimension))).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def _search_recall(store: Any, vectors: Any, rng: Any, n: int = 120) -> float:
    """Mean share of the exact `n` nearest chunks that the store's index search returns, over 20 queries."""
    import numpy as np

    shares = []
    for query in rng.standard_normal((20, vectors.shape[1])).astype(np.float32):
        query /= np.linalg.norm(query)
        found = {row[0] for row in store._nearest(query, n, None)}
        exact = {f"c{i}" for i in np.argsort(-(vectors @ query))[:n]}
        shares.append(len(found & exact) / n)
    return float(np.mean(shares))


def test_the_index_search_is_deep_enough_to_find_the_exact_nearest_chunks(tmp_path: Path) -> None:
    """Chroma's default HNSW depth (ef_search 100) returned about .92 of the exact 120 nearest here (ContractNLI
    lost .04 of recall to it); a store is created with SEARCH_EF, and a writer deepens an older one."""
    import numpy as np

    rng = np.random.default_rng(3)
    vectors = _clustered(rng, 4000, 64)
    chunks = [Chunk(f"c{i}", "doc.md", "/", "T", "T > S", 0, 1, "x", 1, f"h{i}", "d") for i in range(len(vectors))]
    store = open_store(str(tmp_path / "new"), "policies", "m", 64)
    assert store._collection.configuration["hnsw"]["ef_search"] == store_module.SEARCH_EF
    store.add(chunks, vectors)
    assert _search_recall(store, vectors, rng) >= 0.98
    old = open_store(str(tmp_path / "old"), "policies", "m", 64)
    old._collection.modify(configuration={"hnsw": {"ef_search": 100}})  # as stores before stop 24 were made
    old.add(chunks, vectors)
    assert _search_recall(old, vectors, rng) < 0.97
    old.deepen_search()  # Chroma reads the depth when a process loads the index: look from a new process
    look = (
        "import sys, numpy as np; from rag_prompts.store import open_store;"
        f"from tests.test_store import _clustered, _search_recall; rng = np.random.default_rng(3);"
        f"vectors = _clustered(rng, 4000, 64); store = open_store({str(tmp_path / 'old')!r}, 'policies', 'm', 64);"
        "print(store._collection.configuration['hnsw']['ef_search'], _search_recall(store, vectors, rng))"
    )
    result = subprocess.run([sys.executable, "-c", look], capture_output=True, text=True, cwd=ROOT, check=True)
    depth, recall = result.stdout.split()
    assert int(depth) == store_module.SEARCH_EF and float(recall) >= 0.98


def test_an_ingest_deepens_the_search_of_an_older_store(tmp_path: Path, embedder: SentenceTransformerEmbedder) -> None:
    pipeline = make_pipeline(tmp_path, embedder)
    write(tmp_path / "docs" / "a.md", "# Claims\n\nClaims over 5,000 EUR need a second approver.\n")
    pipeline.store._collection.modify(configuration={"hnsw": {"ef_search": 100}})
    pipeline.ingest([tmp_path / "docs"])
    assert pipeline.store._collection.configuration["hnsw"]["ef_search"] == store_module.SEARCH_EF


def test_where_filter_shapes() -> None:
    assert where_filter() is None
    assert where_filter(["claims"]) == {"tags": {"$contains": "claims"}}
    assert where_filter(["a", "b"], ["x.md"]) == {
        "$and": [{"$or": [{"tags": {"$contains": "a"}}, {"tags": {"$contains": "b"}}]}, {"source": "x.md"}]
    }


def test_filtered_query_matches_chromas_own_filter(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The client-side filter over an unfiltered over-fetch returns exactly what Chroma's `where` returns."""
    import numpy as np

    rng = np.random.default_rng(7)
    vectors = rng.standard_normal((600, 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    tags = [("claims",), ("it",), ("people", "it"), ()]
    chunks = [
        Chunk(f"c{i}", f"doc{i % 7}.md", "/", "T", "T > S", 0, 1, "x", 1, f"h{i}", "d", tags[i % 4]) for i in range(600)
    ]
    store = open_store(str(tmp_path), "filtered", "m", 8)
    store.add(chunks, vectors)
    monkeypatch.setattr(store_module, "OVERFETCH_MIN_CHUNKS", 0)  # take the over-fetch path on this small store
    for query in rng.standard_normal((20, 8)).astype(np.float32):
        for wanted_tags, wanted_sources in [(["claims"], []), (["people"], []), (["it", "claims"], ["doc3.md"])]:
            ours = store.query(query, 10, wanted_tags, wanted_sources)
            exact = store._nearest(query, 10, where_filter(wanted_tags, wanted_sources))
            assert [hit.chunk.id for hit in ours] == [row[0] for row in exact]
            assert [hit.chunk.text for hit in ours] == ["x"] * len(ours)
            assert all(set(wanted_tags) & set(hit.chunk.tags) for hit in ours)


def test_scored_gives_the_chunks_asked_for_with_the_search_score(tmp_path: Path) -> None:
    """Nearby chunks fetched by id carry the same cosine score a search would give them, and keep their `nearby`."""
    import numpy as np

    rng = np.random.default_rng(3)
    vectors = rng.standard_normal((30, 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    chunks = [
        Chunk(f"c{i}", "d.md", "/", "T", "T > S", i, i + 1, f"t{i}", 1, f"h{i}", "d", ordinal=i, nearby=(f"c{i + 1}",))
        for i in range(30)
    ]
    store = open_store(str(tmp_path), "scored", "m", 8)
    store.add(chunks, vectors)
    query = rng.standard_normal(8).astype(np.float32)
    searched = {hit.chunk.id: hit.score for hit in store.query(query, 30)}
    fetched = store.scored(["c4", "c17", "missing", "c0"], query)
    assert sorted(hit.chunk.id for hit in fetched) == ["c0", "c17", "c4"]
    for hit in fetched:
        assert hit.score == pytest.approx(searched[hit.chunk.id], abs=1e-5)
        assert hit.chunk.nearby == (f"c{hit.chunk.ordinal + 1}",) and hit.chunk.text == f"t{hit.chunk.ordinal}"
    assert store.scored([], query) == []


def _full_chunk(chunk_id: str = "c1") -> Chunk:
    return Chunk(
        chunk_id, "claims/motor.md", "/corpus", "Motor «claims»", "Motor > Limits", 10, 42, "Up to £5,000.", 7,
        "content-hash", "doc-hash", ("claims", "motor"), 3, "vector-key", ("c0", "c2"),
    )  # fmt: skip


def test_every_chunk_field_survives_the_store(tmp_path: Path) -> None:
    from dataclasses import replace

    import numpy as np

    store = open_store(str(tmp_path), "policies", "m", 3)
    chunk = replace(_full_chunk(), block=4, clause="(b)", new_line=True, lead="\n \n")
    store.add([chunk], np.asarray([[1.0, 0.0, 0.0]], dtype=np.float32))
    assert store.chunks([chunk.id]) == [chunk]
    assert store.query(np.asarray([1.0, 0.0, 0.0], dtype=np.float32), 1, tags=["motor"])[0].chunk == chunk
    stored = store_module._metadata(chunk)
    assert set(stored) == {"source", "vector_key", "tags", "chunk"}  # the fields searches filter on, and one packed


def test_records_written_before_packing_are_still_read(tmp_path: Path) -> None:
    store = open_store(str(tmp_path), "policies", "m", 3)
    chunk = _full_chunk()
    flat = {  # schema 1 kept every field as its own metadata key
        "source": chunk.source, "root": chunk.root, "title": chunk.title, "section": chunk.section,
        "start": chunk.start, "end": chunk.end, "ordinal": chunk.ordinal, "tokens": chunk.tokens,
        "content_hash": chunk.content_hash, "vector_key": chunk.vector_key, "doc_hash": chunk.doc_hash,
        "tags": list(chunk.tags), "nearby": list(chunk.nearby),
    }  # fmt: skip
    store._collection.add(ids=[chunk.id], embeddings=[[1.0, 0.0, 0.0]], documents=[chunk.text], metadatas=[flat])
    assert store.chunks([chunk.id]) == [chunk]
    assert store.documents()[chunk.source].doc_hashes == {"doc-hash"}


def test_compacting_a_missing_collection_is_a_clear_error_that_creates_nothing(tmp_path: Path) -> None:
    open_store(str(tmp_path), "policies", "m", 3)
    client = chromadb.PersistentClient(path=str(tmp_path), settings=Settings(anonymized_telemetry=False))
    before = sorted(collection.name for collection in client.list_collections())
    with pytest.raises(StoreError, match="there is no collection 'polices' at .* to compact; check `collection`"):
        store_module.compact_collection(str(tmp_path), "polices")
    assert sorted(collection.name for collection in client.list_collections()) == before


def test_compacting_keeps_every_record_and_a_running_store_follows_it(tmp_path: Path) -> None:
    import numpy as np

    store = open_store(str(tmp_path), "policies", "m", 3)
    chunks = [_full_chunk(f"c{i}") for i in range(12)]
    vectors = np.eye(3, dtype=np.float32)[[i % 3 for i in range(12)]] + 0.01
    store.add(chunks, vectors)
    store.delete(["c0", "c1", "c2"])  # what a re-ingest leaves behind in the index
    before = store._collection.get(include=["metadatas", "documents", "embeddings"])
    query = np.asarray([0, 1.0, 0], dtype=np.float32)
    searched = [hit.chunk.id for hit in store.query(query, 3)]
    assert store_module.compact_collection(str(tmp_path), "policies") == Compaction(9, copied=True)
    reopened = open_store(str(tmp_path), "policies", "m", 3)  # same model, dimension and cosine space
    assert reopened._collection.name == "policies.v1"
    after = reopened._collection.get(include=["metadatas", "documents", "embeddings"])
    assert sorted(after["ids"]) == sorted(before["ids"])
    order = {chunk_id: i for i, chunk_id in enumerate(before["ids"])}
    for i, chunk_id in enumerate(after["ids"]):
        assert after["documents"][i] == before["documents"][order[chunk_id]]
        assert after["metadatas"][i] == before["metadatas"][order[chunk_id]]
        assert np.allclose(after["embeddings"][i], before["embeddings"][order[chunk_id]])
    assert [hit.chunk.id for hit in reopened.query(query, 3)] == searched
    assert [hit.chunk.id for hit in store.query(query, 3)] == searched  # the open store follows the new copy
    client = chromadb.PersistentClient(path=str(tmp_path), settings=Settings(anonymized_telemetry=False))
    assert store_module.compact_collection(str(tmp_path), "policies") == Compaction(9, copied=False)  # none deleted
    assert sorted(c.name for c in client.list_collections()) == ["policies.manifest", "policies.v1"]
    assert store_module.compact_collection(str(tmp_path), "policies", force=True) == Compaction(9, copied=True)
    assert sorted(c.name for c in client.list_collections()) == ["policies.manifest", "policies.v2"]
    assert [hit.chunk.id for hit in store.query(query, 3)] == searched
    store.delete(["c3"])  # a deletion from the compacted copy: the next compact copies again
    assert store_module.compact_collection(str(tmp_path), "policies") == Compaction(8, copied=True)
    assert sorted(c.name for c in client.list_collections()) == ["policies.manifest", "policies.v3"]
    assert store_module.compact_collection(str(tmp_path), "policies") == Compaction(8, copied=False)
    assert [hit.chunk.id for hit in store.query(query, 3)] == searched  # c3 was not among them


def test_a_compact_that_loses_its_lock_stops_and_leaves_a_complete_collection(tmp_path: Path) -> None:
    """`fence` raises once the writer lock is lost: at whichever check that happens (before the copy, before each
    page, before the switch, before dropping the old collection), the compact stops, readers keep a complete
    collection, and the next compact finishes and clears what was left behind."""
    import numpy as np

    chunks = [_full_chunk(f"c{i}") for i in range(9)]
    vectors = np.eye(3, dtype=np.float32)[[i % 3 for i in range(9)]] + 0.01
    query = np.asarray([0, 1.0, 0], dtype=np.float32)
    calls: list[int] = []
    probe = open_store(str(tmp_path / "probe"), "policies", "m", 3)
    probe.add(chunks, vectors)
    store_module.compact_collection(str(tmp_path / "probe"), "policies", fence=lambda: calls.append(1))
    assert len(calls) >= 4  # before the copy, per page (and the empty last one), before the switch, before the drop
    for lost_at in range(1, len(calls) + 1):
        location = str(tmp_path / f"store-{lost_at}")
        store = open_store(location, "policies", "m", 3)
        store.add(chunks, vectors)
        searched = sorted(hit.chunk.id for hit in store.query(query, 3))
        assert searched == ["c1", "c4", "c7"]
        seen = 0

        def fence(lost_at: int = lost_at) -> None:
            nonlocal seen
            seen += 1
            if seen == lost_at:
                raise StoreBusyError("another writer took the lock")

        with pytest.raises(StoreBusyError):
            store_module.compact_collection(location, "policies", fence=fence)
        reopened = open_store(location, "policies", "m", 3)
        assert reopened.count() == 9, f"lost at check {lost_at}"
        assert sorted(hit.chunk.id for hit in reopened.query(query, 3)) == searched
        assert sorted(hit.chunk.id for hit in store.query(query, 3)) == searched  # an open store still reads whole
        assert store_module.compact_collection(location, "policies").chunks == 9
        client = chromadb.PersistentClient(path=location, settings=Settings(anonymized_telemetry=False))
        names = sorted(c.name for c in client.list_collections())
        assert len(names) == 2 and names[0] == "policies.manifest", names
        assert sorted(hit.chunk.id for hit in open_store(location, "policies", "m", 3).query(query, 3)) == searched


def test_a_reingest_that_deletes_chunks_gives_compact_something_to_do_again(
    tmp_path: Path, embedder: SentenceTransformerEmbedder
) -> None:
    """Through real ingests: a compacted store with nothing deleted since is left as it is; an edit's re-ingest
    deletes the old version's chunks, and the next compact copies again (and keeps every visible chunk)."""
    docs = tmp_path / "docs"
    write(docs / "a.md", "# Alpha\n\nClaims over $5,000 need a second approver.\n\nRecords are kept seven years.\n")
    write(docs / "b.md", "# Beta\n\nBadges are returned on the last day.\n")
    pipeline = make_pipeline(tmp_path, embedder)
    assert pipeline.ingest([docs]).ok
    location, collection = pipeline.settings.store_location, pipeline.settings.collection
    count = pipeline.stats().chunks
    assert store_module.compact_collection(location, collection) == Compaction(count, copied=True)
    assert pipeline.ingest([docs]).unchanged == ["a.md", "b.md"]  # no deletion: still compact
    assert store_module.compact_collection(location, collection) == Compaction(count, copied=False)
    write(docs / "a.md", "# Alpha\n\nClaims over $9,000 need a second approver.\n\nRecords are kept seven years.\n")
    report = pipeline.ingest([docs])
    assert report.updated == ["a.md"] and report.chunks_deleted > 0
    after = pipeline.stats().chunks
    assert store_module.compact_collection(location, collection) == Compaction(after, copied=True)
    assert "$9,000" in pipeline.search("second approver for claims", k=1)[0].chunk.text


def test_a_compose_looks_at_the_manifest_once(
    tmp_path: Path, embedder: SentenceTransformerEmbedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A compose or search reads the manifest's generation once, and everything in it follows that look; another
    thread, or the next compose, sees what was committed meanwhile."""
    docs = tmp_path / "docs"
    write(docs / "claims.md", "# Claims\n\nClaims above the limit are approved by the claims manager.\n")
    reader = make_pipeline(tmp_path, embedder)
    reader.ingest([docs])
    looks: list[str] = []
    generation = store_module.Manifest.generation
    monkeypatch.setattr(
        store_module.Manifest,
        "generation",
        lambda self: looks.append("read") or generation(self),  # type: ignore
    )
    reader.compose("Who approves claims above the limit?", budget=512)
    assert len(looks) == 1
    reader.search("Who approves claims?")
    assert len(looks) == 2

    writer = make_pipeline(tmp_path, embedder)  # another store object on the same folder
    write(docs / "refunds.md", "# Refunds\n\nRefunds are paid to the original card within ten days.\n")
    with reader.store.one_look():
        writer.ingest([docs])
        assert not any(source.endswith("refunds.md") for source in reader.store.committed())
        seen: list[bool] = []
        other = threading.Thread(
            target=lambda: seen.append(any(s.endswith("refunds.md") for s in reader.store.committed()))
        )
        other.start()
        other.join()
        assert seen == [True]  # the block is this thread's alone
    assert any(source.endswith("refunds.md") for source in reader.store.committed())
    prompt = reader.compose("How are refunds paid?", budget=512)
    assert any(chunk.source.endswith("refunds.md") for chunk in prompt.chunks)
