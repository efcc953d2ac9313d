"""The vector store: the only module that imports chromadb.

`open_store` returns the same `ChunkStore` interface for an embedded folder (PersistentClient), a Chroma
server URL (HttpClient) or ":memory:" (EphemeralClient). Chroma's columnar results become `Hit` rows here,
and embeddings are always passed explicitly: Chroma's default embedding function (which downloads a model)
never runs.
"""

from __future__ import annotations

import contextlib
import threading
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

import numpy as np
import orjson

from .errors import StoreError
from .records import Chunk, Hit

SCHEMA_VERSION = 2  # 2: fields not filtered on are packed into one JSON metadata value
_PACKED = "chunk"
_PAGE = 5000
OVERFETCH_MIN_CHUNKS = 20_000  # below this, Chroma's own filter is the faster way to search with one
OVERFETCH_FACTORS = (2, 8, 32)  # unfiltered candidates per wanted hit, before falling back to Chroma's filter
CACHED_CHUNKS = 10_000  # chunk records (text, fields, vector) kept in memory: about 3 KB each at 384 dimensions


@dataclass
class StoredDocument:
    """What the store holds for one source: its chunk ids and the document hashes they were made from."""

    source: str
    root: str
    title: str
    chunk_ids: list[str] = field(default_factory=list)
    doc_hashes: set[str] = field(default_factory=set)
    tokens: int = 0


@dataclass(frozen=True)
class StoreStats:
    documents: int
    chunks: int
    tokens: int
    location: str
    collection: str
    embedding_model: str


def _client(location: str) -> Any:
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    settings = ChromaSettings(anonymized_telemetry=False)
    if location == ":memory:":
        return chromadb.EphemeralClient(settings=settings)
    if location.startswith(("http://", "https://")):
        url = urlparse(location)
        if not url.hostname:
            raise StoreError(f"store URL {location!r} has no host; expected e.g. http://127.0.0.1:8000")
        ssl = url.scheme == "https"
        try:
            return chromadb.HttpClient(
                host=url.hostname, port=url.port or (443 if ssl else 8000), ssl=ssl, settings=settings
            )
        except Exception as error:  # chromadb raises ValueError / httpx errors when the server is unreachable
            raise StoreError(
                f"cannot reach the Chroma server at {location} ({error}); start one with"
                " `chroma run --path DIR --host 127.0.0.1 --port PORT` or set `store` to a folder"
            ) from error
    return chromadb.PersistentClient(path=location, settings=settings)


def open_store(
    location: str, collection: str, embedding_model: str, dimension: int, cached_chunks: int = CACHED_CHUNKS
) -> ChunkStore:
    """Open (creating if needed) a cosine-distance collection built with `embedding_model`."""
    from chromadb.errors import NotFoundError

    client = _client(location)
    try:
        try:
            handle = client.get_collection(collection, embedding_function=None)
        except NotFoundError:
            handle = client.create_collection(
                collection,
                configuration={"hnsw": {"space": "cosine"}},
                metadata={"embedding_model": embedding_model, "dimension": dimension, "schema": SCHEMA_VERSION},
                embedding_function=None,
            )
    except StoreError:
        raise
    except Exception as error:
        raise StoreError(f"cannot open collection {collection!r} at {location}: {error}") from error
    store = ChunkStore(handle, location, collection, cached_chunks)
    store.check(embedding_model, dimension)
    return store


def delete_collection(location: str, collection: str) -> None:
    """Drop a collection if it exists (used to rebuild from scratch)."""
    from chromadb.errors import NotFoundError

    with contextlib.suppress(NotFoundError):
        _client(location).delete_collection(collection)


def compact_collection(location: str, collection: str) -> int:
    """Rewrite `collection` into a fresh one, without the deleted entries re-ingests leave in Chroma's vector index
    (they slow filtered searches: one CUAD contract took 31 ms against 19 ms on a fresh copy; `chroma vacuum`,
    which compacts SQLite, does not help). Records are copied as they are, vectors included: nothing is embedded.
    The copy is complete before the old collection is dropped; a run that was cut short is finished by the next.
    Returns the number of chunks."""
    from chromadb.errors import NotFoundError

    client = _client(location)
    staging = f"{collection[:500]}-compacting"
    try:
        old = client.get_collection(collection, embedding_function=None)
    except NotFoundError:  # cut short after dropping the old collection: the copy is complete
        client.get_collection(staging, embedding_function=None).modify(name=collection)
        return int(client.get_collection(collection, embedding_function=None).count())
    with contextlib.suppress(NotFoundError):
        client.delete_collection(staging)  # an unfinished copy from an earlier run
    new = client.create_collection(
        staging, configuration={"hnsw": {"space": "cosine"}}, metadata=old.metadata, embedding_function=None
    )
    offset = 0
    while True:
        page = old.get(include=["metadatas", "documents", "embeddings"], limit=_PAGE, offset=offset)
        if not page["ids"]:
            break
        new.add(
            ids=page["ids"], embeddings=page["embeddings"], documents=page["documents"], metadatas=page["metadatas"]
        )
        offset += len(page["ids"])
    if new.count() != old.count():
        client.delete_collection(staging)
        raise StoreError(
            f"compacting {collection!r} at {location}: the copy is incomplete; the collection is unchanged"
        )
    client.delete_collection(collection)
    new.modify(name=collection)
    return int(new.count())


def _metadata(chunk: Chunk) -> dict[str, Any]:
    """Chroma metadata for `chunk`: the keys searches filter on, and the rest in one JSON string.

    Chroma stores every metadata key as its own row, and reading rows back is most of a query's cost
    (at 100,000 chunks, 40 results with 13 keys took 8.6 ms against 5.5 ms with 4)."""
    metadata: dict[str, Any] = {
        "source": chunk.source,
        "vector_key": chunk.vector_key,
        _PACKED: orjson.dumps(
            {
                "root": chunk.root,
                "title": chunk.title,
                "section": chunk.section,
                "start": chunk.start,
                "end": chunk.end,
                "ordinal": chunk.ordinal,
                "tokens": chunk.tokens,
                "content_hash": chunk.content_hash,
                "doc_hash": chunk.doc_hash,
                "nearby": list(chunk.nearby),
                "block": chunk.block,
                "clause": chunk.clause,
            }
        ).decode(),
    }
    if chunk.tags:  # Chroma rejects empty lists
        metadata["tags"] = list(chunk.tags)
    return metadata


def _fields(metadata: dict[str, Any]) -> dict[str, Any]:
    """A chunk's stored fields, unpacked (collections written before schema 2 kept every field as a key)."""
    packed = metadata.get(_PACKED)
    return {**metadata, **orjson.loads(packed)} if isinstance(packed, str) else metadata


def _chunk(chunk_id: str, text: str, metadata: dict[str, Any]) -> Chunk:
    fields = _fields(metadata)
    return Chunk(
        id=chunk_id,
        source=str(fields["source"]),
        root=str(fields.get("root", "")),
        title=str(fields.get("title", "")),
        section=str(fields.get("section", "")),
        start=int(fields["start"]),
        end=int(fields["end"]),
        text=text,
        tokens=int(fields.get("tokens", 0)),
        content_hash=str(fields.get("content_hash", "")),
        doc_hash=str(fields.get("doc_hash", "")),
        tags=tuple(fields.get("tags") or ()),
        ordinal=int(fields.get("ordinal", -1)),
        vector_key=str(fields.get("vector_key", "")),
        nearby=tuple(fields.get("nearby") or ()),
        block=int(fields.get("block", -1)),
        clause=str(fields.get("clause", "")),
    )


def where_filter(tags: Sequence[str] = (), sources: Sequence[str] = ()) -> dict[str, Any] | None:
    """A Chroma `where` clause: chunks carrying any of `tags`, and from one of `sources` when given."""
    clauses: list[dict[str, Any]] = []
    if tags:
        tag_clauses = [{"tags": {"$contains": tag}} for tag in tags]
        clauses.append(tag_clauses[0] if len(tag_clauses) == 1 else {"$or": tag_clauses})
    if sources:
        clauses.append({"source": sources[0]} if len(sources) == 1 else {"source": {"$in": list(sources)}})
    if not clauses:
        return None
    return clauses[0] if len(clauses) == 1 else {"$and": clauses}


def _batches(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


_Record = tuple[Chunk, np.ndarray]


class RecordCache:
    """The chunk records read most recently, by id (least recently used ones go first).

    Caching needs no invalidation across processes because a chunk id names one version of a chunk (see
    `chunk_document`): a record is written once and later only deleted, and a deleted one is never asked for,
    since ids come from a search or from a found chunk's `nearby` list."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._records: OrderedDict[str, _Record] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, ids: Iterable[str]) -> dict[str, _Record]:
        found: dict[str, _Record] = {}
        with self._lock:
            for chunk_id in ids:
                record = self._records.get(chunk_id)
                if record is not None:
                    self._records.move_to_end(chunk_id)
                    found[chunk_id] = record
        return found

    def put(self, records: dict[str, _Record]) -> None:
        if self.size <= 0:
            return
        with self._lock:
            self._records.update(records)
            for chunk_id in records:
                self._records.move_to_end(chunk_id)
            while len(self._records) > self.size:
                self._records.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._records.clear()

    def discard(self, ids: Iterable[str]) -> None:
        with self._lock:
            for chunk_id in ids:
                self._records.pop(chunk_id, None)


class ChunkStore:
    """Chunks with their vectors in one Chroma collection; the same for every kind of client."""

    def __init__(self, collection: Any, location: str, name: str, cached_chunks: int = CACHED_CHUNKS) -> None:
        self._collection = collection
        self.location = location
        self.name = name
        self._size_hint: int | None = None
        self._cache = RecordCache(cached_chunks)

    @property
    def embedding_model(self) -> str:
        return str((self._collection.metadata or {}).get("embedding_model", ""))

    def check(self, embedding_model: str, dimension: int) -> None:
        """Refuse a collection built with another model or distance: its vectors would not be comparable."""
        configuration = self._collection.configuration or {}
        space = (configuration.get("hnsw") or {}).get("space") or (configuration.get("spann") or {}).get("space")
        if space != "cosine":
            raise StoreError(
                f"collection {self.name!r} at {self.location} uses {space!r} distance, not cosine;"
                " ingest into a new collection (set `collection`)"
            )
        metadata = self._collection.metadata or {}
        built_with, built_dimension = metadata.get("embedding_model"), metadata.get("dimension")
        if built_with != embedding_model or built_dimension != dimension:
            raise StoreError(
                f"collection {self.name!r} at {self.location} was built with embedding model {built_with!r}"
                f" ({built_dimension} dimensions), but the settings use {embedding_model!r} ({dimension});"
                " set `embedding_model` back, or use another `collection` and ingest again"
            )

    def count(self) -> int:
        return int(self._collection.count())

    def _all_metadata(self) -> Iterator[tuple[str, dict[str, Any]]]:
        offset = 0
        while True:
            page = self._collection.get(include=["metadatas"], limit=_PAGE, offset=offset)
            ids = page["ids"]
            yield from zip(ids, page["metadatas"] or [], strict=True)
            if len(ids) < _PAGE:
                return
            offset += _PAGE

    def documents(self) -> dict[str, StoredDocument]:
        """Every stored source with its chunk ids and document hashes."""
        stored: dict[str, StoredDocument] = {}
        for chunk_id, raw in self._all_metadata():
            metadata = _fields(raw)
            source = str(metadata["source"])
            entry = stored.setdefault(
                source, StoredDocument(source, str(metadata.get("root", "")), str(metadata.get("title", "")))
            )
            entry.chunk_ids.append(chunk_id)
            entry.doc_hashes.add(str(metadata.get("doc_hash", "")))
            entry.tokens += int(metadata.get("tokens", 0))
        return stored

    def chunks(self, ids: Sequence[str]) -> list[Chunk]:
        if not ids:
            return []
        page = self._collection.get(ids=list(ids), include=["metadatas", "documents"])
        return [
            _chunk(chunk_id, text or "", metadata)
            for chunk_id, text, metadata in zip(page["ids"], page["documents"], page["metadatas"], strict=True)
        ]

    def vectors_for_keys(self, keys: Iterable[str]) -> dict[str, np.ndarray]:
        """Stored vectors by `vector_key`, so moved or re-chunked passages need not be embedded again."""
        wanted = sorted(set(keys))
        found: dict[str, np.ndarray] = {}
        for batch in _batches(wanted, 500):
            page = self._collection.get(where={"vector_key": {"$in": list(batch)}}, include=["metadatas", "embeddings"])
            for metadata, vector in zip(
                page["metadatas"] or [], page["embeddings"] if page["embeddings"] is not None else [], strict=True
            ):
                found[str(metadata["vector_key"])] = np.asarray(vector, dtype=np.float32)
        return found

    def add(self, chunks: Sequence[Chunk], vectors: np.ndarray) -> None:
        if len(chunks) != len(vectors):
            raise StoreError(f"{len(chunks)} chunks but {len(vectors)} vectors")
        self._size_hint = None
        self._cache.discard(chunk.id for chunk in chunks)  # a rewrite in place (a moved root) must not read stale
        size = self._max_batch()
        for start in range(0, len(chunks), size):
            batch = chunks[start : start + size]
            self._collection.upsert(
                ids=[chunk.id for chunk in batch],
                embeddings=np.asarray(vectors[start : start + size], dtype=np.float32),
                documents=[chunk.text for chunk in batch],
                metadatas=[_metadata(chunk) for chunk in batch],
            )

    def delete(self, ids: Sequence[str]) -> None:
        self._size_hint = None
        self._cache.discard(ids)
        for batch in _batches(list(ids), self._max_batch()):
            self._collection.delete(ids=list(batch))

    def query(self, vector: np.ndarray, n: int, tags: Sequence[str] = (), sources: Sequence[str] = ()) -> list[Hit]:
        """The `n` nearest chunks carrying any of `tags` (and from `sources`), best first; score = cosine similarity.

        On a large collection Chroma's metadata filter costs far more than the vector search (about 130 ms
        against 10 ms at 100,000 chunks), so a filtered search there first over-fetches ids without the filter
        and filters them here, widening once; only if that still leaves fewer than `n` matches does it ask
        Chroma to filter. A `sources` restriction (one document, say) selects too small a share for that: it
        goes to Chroma's filter directly (26 ms against 269 ms over-fetching, one CUAD contract of 60 at 23,855
        chunks). Every path returns the same chunks. The search returns ids and distances; the chunks themselves
        come from the record cache, and only the ones it lacks are read.
        """
        if n <= 0:
            return []
        where = where_filter(tags, sources)
        if where is None or sources or self._size() < OVERFETCH_MIN_CHUNKS:
            return self._hits(self._nearest(vector, n, where))
        wanted_tags, wanted_sources = set(tags), set(sources)

        def allowed(metadata: dict[str, Any]) -> bool:
            return (not wanted_tags or bool(wanted_tags & set(metadata.get("tags") or ()))) and (
                not wanted_sources or metadata["source"] in wanted_sources
            )

        for factor in OVERFETCH_FACTORS:
            asked = factor * n + 20
            rows = self._nearest(vector, asked, None, with_metadata=True)
            matching = [row for row in rows if allowed(row[1])][:n]
            if len(matching) == n or len(rows) < asked:  # enough, or the whole collection was seen
                return self._hits(matching)
        return self._hits(self._nearest(vector, n, where))

    def scored(self, ids: Sequence[str], vector: np.ndarray) -> list[Hit]:
        """The chunks with these ids, each scored against `vector` (cosine similarity); unknown ids are skipped."""
        records = self._records(ids)
        found = [records[chunk_id] for chunk_id in dict.fromkeys(ids) if chunk_id in records]
        if not found:
            return []
        vectors = np.stack([stored for _, stored in found])
        query = np.asarray(vector, dtype=np.float32)
        scores = vectors @ query / np.maximum(np.linalg.norm(vectors, axis=1) * np.linalg.norm(query), 1e-12)
        return [Hit(chunk, float(score)) for (chunk, _), score in zip(found, scores, strict=True)]

    def _size(self) -> int:
        """The collection size as last seen by this process: it only chooses a search strategy."""
        if self._size_hint is None:
            self._size_hint = self.count()
        return self._size_hint

    def _records(self, ids: Sequence[str]) -> dict[str, _Record]:
        """Chunk records by id: cached ones, and the rest read in one `get`. Unknown ids are left out."""
        found = self._cache.get(ids)
        missing = [chunk_id for chunk_id in dict.fromkeys(ids) if chunk_id not in found]
        if not missing:
            return found
        page = self._collection.get(ids=missing, include=["metadatas", "documents", "embeddings"])
        if not page["ids"]:
            return found
        vectors = np.asarray(page["embeddings"], dtype=np.float32).reshape(len(page["ids"]), -1)
        read = {
            chunk_id: (_chunk(chunk_id, text or "", metadata), stored)
            for chunk_id, text, metadata, stored in zip(
                page["ids"], page["documents"] or [], page["metadatas"] or [], vectors, strict=True
            )
        }
        self._cache.put(read)
        return found | read

    def _nearest(
        self, vector: np.ndarray, n: int, where: dict[str, Any] | None, with_metadata: bool = False
    ) -> list[tuple[str, dict[str, Any], float]]:
        """(id, metadata, distance) of the `n` nearest chunks; metadata is empty unless asked for."""
        include = ["distances", *(["metadatas"] if with_metadata else [])]
        try:
            result = self._collection.query(
                query_embeddings=[np.asarray(vector, dtype=np.float32)], n_results=n, where=where, include=include
            )
        except Exception as error:
            raise StoreError(f"query on collection {self.name!r} at {self.location} failed: {error}") from error
        ids = result["ids"][0]
        metadatas = result["metadatas"][0] if with_metadata else [{}] * len(ids)
        return list(zip(ids, metadatas, result["distances"][0], strict=True))

    def _hits(self, rows: Sequence[tuple[str, dict[str, Any], float]]) -> list[Hit]:
        records = self._records([chunk_id for chunk_id, _, _ in rows])
        return [
            Hit(records[chunk_id][0], 1.0 - float(distance)) for chunk_id, _, distance in rows if chunk_id in records
        ]

    def stats(self) -> StoreStats:
        documents = self.documents()
        return StoreStats(
            documents=len(documents),
            chunks=sum(len(entry.chunk_ids) for entry in documents.values()),
            tokens=sum(entry.tokens for entry in documents.values()),
            location=self.location,
            collection=self.name,
            embedding_model=self.embedding_model,
        )

    def _max_batch(self) -> int:
        try:
            return max(1, min(int(self._collection._client.get_max_batch_size()), 5000))
        except Exception:  # older clients lack it; Chroma's documented default is far above this
            return 1000
