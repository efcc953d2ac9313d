"""The store refuses collections whose vectors are not comparable: another model, or a non-cosine distance."""

from __future__ import annotations

from pathlib import Path

import chromadb
import pytest
from chromadb.config import Settings

from rag_prompts import StoreError, open_store
from rag_prompts.store import where_filter


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


def test_where_filter_shapes() -> None:
    assert where_filter() is None
    assert where_filter(["claims"]) == {"tags": {"$contains": "claims"}}
    assert where_filter(["a", "b"], ["x.md"]) == {
        "$and": [{"$or": [{"tags": {"$contains": "a"}}, {"tags": {"$contains": "b"}}]}, {"source": "x.md"}]
    }
