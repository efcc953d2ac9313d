"""The vector store: the only module that imports chromadb.

`open_store` returns the same `ChunkStore` interface for an embedded folder (PersistentClient), a Chroma
server URL (HttpClient) or ":memory:" (EphemeralClient). Chroma's columnar results become `Hit` rows here,
and embeddings are always passed explicitly: Chroma's default embedding function (which downloads a model)
never runs. Which version of each document is visible is kept in the collection's manifest (see
`manifest`); every search checks its generation first, so a long-running process follows ingests and
compactions made by other processes.
"""

from __future__ import annotations

import contextlib
import os
import re
import sqlite3
import threading
import warnings
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np
import orjson

from . import crashpoints, index_folders
from .centring import decode
from .defaults import CACHED_CHUNKS
from .errors import EmptyStoreError, StoreError
from .focus import TermCounts, read_counts
from .manifest import DocumentRecord, Generation, Manifest, manifest_name
from .records import Chunk, Hit
from .server_lock import ServerLock
from .wording import Forms, forms

SCHEMA_VERSION = 2  # 2: fields not filtered on are packed into one JSON metadata value
_PACKED = "chunk"
_PAGE = 5000
_PLACEHOLDER = [1.0]  # the archive keeps no vectors; Chroma wants one per record
_COMPACTED = "compacted"  # collection metadata: true on a compacted copy until a chunk is deleted from it
OVERFETCH_MIN_CHUNKS = 20_000  # below this, Chroma's own filter is the faster way to search with one
OVERFETCH_FACTORS = (2, 8, 32)  # unfiltered candidates per wanted hit, before falling back to Chroma's filter
NO_DOCUMENTS = "the store has no documents: run `rag-prompts ingest` first"
INDEX_LINK_BYTES = 140  # per chunk beside its vector in Chroma's HNSW index: 2 x 16 neighbour links, a label, id maps
SEARCH_EF = 400  # HNSW candidate list per search: Chroma's default of 100 missed ContractNLI answers (recall -.04)
HNSW = {"space": "cosine", "ef_search": SEARCH_EF}  # how every chunk collection is created


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


def _stop(client: Any) -> None:
    """Stop a client opened by `ChunkStore._reopen` (its own alias of the folder: nothing else uses it)."""
    with contextlib.suppress(Exception):
        if hasattr(client, "close"):  # chromadb 1.5+: releases the client's system once no client uses it
            client.close()
            return
        from chromadb.api.shared_system_client import SharedSystemClient  # older clients have no public way

        SharedSystemClient._identifier_to_system.pop(client._identifier).stop()


@contextlib.contextmanager
def _guard(doing: str, location: str) -> Iterator[None]:
    """Any failure of Chroma or of the connection to it becomes one StoreError naming the store."""
    try:
        yield
    except StoreError:
        raise
    except Exception as error:
        detail = " ".join(str(error).split())  # one line, whatever the client library put in its message
        raise StoreError(f"{doing} at {location} failed: {type(error).__name__}: {detail}") from error


def _active(client: Any, generation: Generation) -> Any:
    """The chunk collection readers use: the one the generation names, or, when that one is missing, the one its
    last switch replaced (a stalled compact's late switch to a copy since dropped; see `Manifest.switch`)."""
    from chromadb.errors import NotFoundError

    try:
        return client.get_collection(generation.collection, embedding_function=None)
    except NotFoundError:
        if not generation.previous:
            raise
        return client.get_collection(generation.previous, embedding_function=None)


def _manifest(client: Any, collection: str) -> Manifest:
    handle = client.get_or_create_collection(
        manifest_name(collection), metadata={"rag_prompts": "manifest"}, embedding_function=None
    )
    return Manifest(handle, collection)


def open_store(
    location: str,
    collection: str,
    embedding_model: str,
    dimension: int | None,
    cached_chunks: int = CACHED_CHUNKS,
) -> ChunkStore:
    """Open (creating if needed) a cosine-distance collection built with `embedding_model`. A `dimension` of
    None skips the dimension check (commands that need no model)."""
    from chromadb.errors import NotFoundError

    client = _client(location)
    with _guard(f"opening collection {collection!r}", location):
        manifest = _manifest(client, collection)
        generation = manifest.generation()
        active = generation.collection
        try:
            handle = _active(client, generation)
        except NotFoundError:
            if active != collection:
                raise StoreError(
                    f"collection {collection!r} at {location} points at {active!r}, which is missing;"
                    " ingest into a new `collection`"
                ) from None
            handle = _create(client, collection, {
                "embedding_model": embedding_model, "schema": SCHEMA_VERSION,
                **({"dimension": dimension} if dimension is not None else {}),
            })  # fmt: skip
        store = ChunkStore(handle, location, collection, cached_chunks, client=client, manifest=manifest)
        store.check(embedding_model, dimension)
        if not manifest.exists():
            store.adopt()
        return store


def _create(client: Any, collection: str, metadata: dict[str, Any]) -> Any:
    """Create the cosine collection `collection`, or get it when another process created it meanwhile (two
    first ingests of a server store at once: the server lets only one create succeed)."""
    try:
        return client.create_collection(
            collection, configuration={"hnsw": HNSW}, metadata=metadata, embedding_function=None
        )
    except Exception as error:
        try:
            return client.get_collection(collection, embedding_function=None)
        except Exception:
            raise error from None


def server_lock(location: str, collection: str, lease: float) -> ServerLock:
    """The writer lock of `collection` on the Chroma server at `location` (not yet taken)."""
    from chromadb.errors import NotFoundError

    client = _client(location)

    def revoke(token: str) -> None:
        with _guard(f"revoking the writes of lock {token[:8]} in the manifest of {collection!r}", location):
            _manifest(client, collection).revoke(token)

    return ServerLock(client, collection, location, missing=NotFoundError, lease=lease, on_break=revoke)


def archive_name(collection: str) -> str:
    return f"{collection[:490]}.archive"


def delete_collection(location: str, collection: str) -> None:
    """Drop a collection, its manifest, its archive and its compacted copies if they exist (to rebuild from
    scratch)."""
    client = _client(location)
    for name in _collection_names(client):
        if name in (collection, manifest_name(collection), archive_name(collection)) or _version_of(name, collection):
            client.delete_collection(name)


_VERSION = re.compile(r"\.v(\d+)")


def _base(collection: str) -> str:
    return collection[:490]


def _collection_names(client: Any) -> list[str]:
    return [item if isinstance(item, str) else item.name for item in client.list_collections()]


def _version_of(name: str, collection: str) -> int:
    match = _VERSION.fullmatch(name, len(_base(collection))) if name.startswith(_base(collection)) else None
    return int(match.group(1)) if match else 0


@dataclass(frozen=True)
class Compaction:
    """What `compact_collection` did: the chunks in the collection now in use, and whether it rewrote them (a
    collection that had no chunk deleted since it was compacted is left as it is)."""

    chunks: int
    copied: bool


def compact_collection(
    location: str, collection: str, fence: Callable[[], None] = lambda: None, *, force: bool = False
) -> Compaction:
    """Rewrite `collection` into a fresh one, without the deleted entries re-ingests leave in Chroma's vector index
    (they slow filtered searches: one CUAD contract took 31 ms against 19 ms on a fresh copy; `chroma vacuum`,
    which compacts SQLite, does not help). Records are copied as they are, vectors included: nothing is embedded.

    The copy goes into a new collection (`NAME.vN`); once it is complete, one manifest write switches readers
    to it, and only then is the old one dropped. A crash at any step leaves the old or the new collection
    complete and in use; copies left behind by a crash are dropped by the next compaction.
    `fence` raises when the writer lock is lost; it is called before each page copied, before the switch and
    before the old collection is dropped. A compact that stalls past its lease right after the check before its
    switch still switches, to a copy lacking what a writer that broke its lock committed meanwhile; the next
    ingest's check (see `integrity`) rewrites what the copy lacks; when other compactions have dropped that copy
    meanwhile, readers keep to the collection the switch replaced (`_active`).

    A compacted copy is marked so (`_COMPACTED` in its metadata) and loses the mark before the first chunk is ever
    deleted from it (`ChunkStore.delete`); while it has it, there is nothing to compact and nothing is copied,
    unless `force`. What a stopped compact left behind is dropped either way. Then, in an embedded store, the
    index folders chromadb leaves behind for dropped collections are removed (`_reclaim`)."""
    dropped: set[str] = set()  # the vector segments of the collections the compact drops
    done = _compact(location, collection, fence, force, dropped)
    _reclaim(location, dropped)  # after the guard: a warning about it is never the compact's error
    return done


def _compact(location: str, collection: str, fence: Callable[[], None], force: bool, dropped: set[str]) -> Compaction:
    """`compact_collection` without the reclaim; adds the vector segments of what it drops to `dropped`."""
    client = _client(location)

    def fenced() -> None:
        fence()
        crashpoints.step("fenced")

    embedded = _embedded(location)

    def drop(name: str) -> None:
        if embedded:  # unreadable, it is left to the sweep after the drop
            with contextlib.suppress(OSError, ValueError, sqlite3.Error):
                dropped.update(index_folders.vector_segments(Path(location), [name]))
        client.delete_collection(name)

    with _guard(f"compacting collection {collection!r}", location):
        names = _collection_names(client)
        if not {collection, manifest_name(collection)} & set(names):
            raise StoreError(f"there is no collection {collection!r} at {location} to compact; check `collection`")
        manifest = _manifest(client, collection)  # created with the collection: never for a missing one
        old = _active(client, manifest.generation())
        active = old.name
        legacy_staging = f"{collection[:500]}-compacting"  # what versions before the manifest left behind
        fenced()
        for name in names:  # what a compact stopped before its drop left behind, too
            if name != active and (name in (collection, legacy_staging) or _version_of(name, collection)):
                drop(name)
        if (old.metadata or {}).get(_COMPACTED) and not force:
            return Compaction(int(old.count()), copied=False)
        staging = f"{_base(collection)}.v{_version_of(active, collection) + 1}"
        new = client.create_collection(
            staging, configuration={"hnsw": HNSW}, metadata={**(old.metadata or {}), _COMPACTED: True},
            embedding_function=None,
        )  # fmt: skip
        offset = 0
        while True:
            fenced()
            page = old.get(include=["metadatas", "documents", "embeddings"], limit=_PAGE, offset=offset)
            if not page["ids"]:
                break
            new.add(
                ids=page["ids"], embeddings=page["embeddings"], documents=page["documents"],
                metadatas=page["metadatas"],
            )  # fmt: skip
            crashpoints.step("copy")
            offset += len(page["ids"])
        if new.count() != old.count():
            client.delete_collection(staging)
            raise StoreError(
                f"compacting {collection!r} at {location}: the copy is incomplete; the collection is unchanged"
            )
        fenced()
        manifest.switch(staging, _active(client, manifest.generation()).name)  # what readers use at this moment
        crashpoints.step("switch")
        fenced()
        drop(active)
        return Compaction(int(new.count()), copied=True)


def _embedded(location: str) -> bool:
    return location != ":memory:" and not location.startswith(("http://", "https://"))


def _reclaim(location: str, dropped: set[str]) -> None:
    """Remove the index folders chromadb leaves behind for dropped collections (chroma-core/chroma#5520): those
    of `dropped` and any older one no live segment names. A folder that cannot be removed is a warning only."""
    if not _embedded(location):
        return
    try:
        done = index_folders.reclaim(Path(location), dropped)
    except (OSError, ValueError, sqlite3.Error) as error:
        warnings.warn(f"compact of {location}: could not reclaim dropped index folders: {error}", stacklevel=3)
        return
    for name, reason in done.failed:
        warnings.warn(f"compact of {location}: could not remove dropped index folder {name}: {reason}", stacklevel=3)


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
                "clause_block": chunk.clause_block,
                "new_line": chunk.new_line,
                "lead": chunk.lead,
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
        clause_block=int(fields.get("clause_block", -1)),
        new_line=bool(fields.get("new_line", False)),
        lead=str(fields.get("lead", "")),
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

    A chunk id names one version of a chunk (see `chunk_document`), so a cached record never goes out of date
    while its document's version is committed; when the manifest's generation changes (another process or
    pipeline ingested, removed or compacted), the store drops the records of versions no longer visible."""

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

    def retain(self, keep: Callable[[Chunk], bool]) -> None:
        """Forget every record whose chunk `keep` rejects (a version no longer visible)."""
        with self._lock:
            for chunk_id in [key for key, (chunk, _) in self._records.items() if not keep(chunk)]:
                del self._records[chunk_id]


def _score(records: Sequence[_Record], vector: np.ndarray) -> list[Hit]:
    """Each record's chunk with its cosine similarity to `vector`, in the order given."""
    if not records:
        return []
    vectors = np.stack([stored for _, stored in records])
    query = np.asarray(vector, dtype=np.float32)
    scores = vectors @ query / np.maximum(np.linalg.norm(vectors, axis=1) * np.linalg.norm(query), 1e-12)
    return [Hit(chunk, float(score)) for (chunk, _), score in zip(records, scores, strict=True)]


class ChunkStore:
    """Chunks with their vectors in one Chroma collection; the same for every kind of client.

    Searches show whole documents only: a chunk is hidden while its document's manifest record names another
    version of it (one being written, or one replaced and not yet deleted)."""

    def __init__(
        self,
        collection: Any,
        location: str,
        name: str,
        cached_chunks: int = CACHED_CHUNKS,
        *,
        client: Any = None,
        manifest: Manifest | None = None,
    ) -> None:
        self._collection = collection
        self._client = client
        self._manifest = manifest
        self.location = location
        self.name = name
        self._size_hint: int | None = None
        self._cache = RecordCache(cached_chunks)
        self._token: str | None = None
        self._versions: dict[str, str] = {}  # source -> committed document hash ("" none), per the manifest
        self._counts: dict[str, int] = {}  # source -> chunks of its committed version
        self._committed: dict[str, DocumentRecord] = {}  # source -> its committed record, as of the last refresh
        self._refresh_lock = threading.Lock()
        self._looking = threading.local()  # per thread: how deep in `one_look` blocks it is
        self._reopened = 0  # how many times another process's writes made this store open a fresh client
        self._mean: tuple[Mapping[str, DocumentRecord], np.ndarray | None] | None = None  # per committed mapping
        self._sums: dict[tuple[str, str], tuple[np.ndarray, int]] = {}  # (source, version) -> sum read from chunks
        self._shares: tuple[Mapping[str, DocumentRecord], dict[str, float]] | None = None  # per committed mapping
        self._term_counts: dict[tuple[str, str], TermCounts] = {}  # (source, version) -> term counts read from chunks
        self._forms: tuple[Mapping[str, DocumentRecord], Forms] | None = None  # per committed mapping

    @property
    def embedding_model(self) -> str:
        return str((self._collection.metadata or {}).get("embedding_model", ""))

    def check(self, embedding_model: str, dimension: int | None) -> None:
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
        if built_with != embedding_model or (dimension is not None and built_dimension not in (dimension, None)):
            raise StoreError(
                f"collection {self.name!r} at {self.location} was built with embedding model {built_with!r}"
                f" ({built_dimension} dimensions), but the settings use {embedding_model!r} ({dimension});"
                " set `embedding_model` back, or use another `collection` and ingest again"
            )

    def index_bytes_in_process(self) -> int:
        """About what this collection's vector index takes in the memory of every process that opens it: all of it
        for an embedded (or in-memory) store, whose HNSW index Chroma loads whole; nothing for a server store."""
        if self.location.startswith(("http://", "https://")):
            return 0
        dimension = int((self._collection.metadata or {}).get("dimension") or 0)
        return self.count() * (4 * dimension + INDEX_LINK_BYTES)

    def deepen_search(self) -> None:
        """Raise the collection's HNSW search depth to `SEARCH_EF` if it was created with less (before stop 24):
        a writer calls it, so one ingest brings an older store up to date."""
        hnsw = (self._collection.configuration or {}).get("hnsw") or {}
        if int(hnsw.get("ef_search") or 0) < SEARCH_EF:
            with _guard(f"configuring collection {self.name!r}", self.location):
                self._collection.modify(configuration={"hnsw": {"ef_search": SEARCH_EF}})

    # -- the manifest -------------------------------------------------------------------------------------

    def refresh(self) -> None:
        """Follow what other processes committed since the last look: one small read when nothing changed, and
        none inside a `one_look` block."""
        if self._manifest is None or self._depth():
            return
        with _guard(f"reading the manifest of {self.name!r}", self.location):
            generation = self._manifest.generation()
            if generation.token == self._token:
                return
            with self._refresh_lock:
                other = self._token is not None and generation.pid not in ("", str(os.getpid()))
                if other and self._reopen():
                    self._cache.clear()
                    self._collection = _active(self._client, generation)
                elif generation.collection != getattr(self._collection, "name", generation.collection):
                    self._collection = _active(self._client, generation)
                    self._cache.clear()
                records = self._manifest.records()
                self._versions = {source: record.doc_hash for source, record in records.items()}
                self._counts = {source: record.chunks for source, record in records.items() if record.committed}
                self._committed = {source: record for source, record in records.items() if record.committed}
                self._size_hint = None
                self._cache.retain(self._visible)
                self._token = generation.token

    @contextlib.contextmanager
    def one_look(self) -> Iterator[None]:
        """Within the block this thread reads the manifest once, on entry: a compose's search, mean vector, term
        shares and records all follow one generation, and it pays one manifest read, not five."""
        depth = self._depth()
        if not depth:
            self.refresh()
        self._looking.depth = depth + 1
        try:
            yield
        finally:
            self._looking.depth = depth

    def _depth(self) -> int:
        return int(getattr(self._looking, "depth", 0))

    def _reopen(self) -> bool:
        """Open an embedded store afresh after another process wrote to it. Chroma keeps each collection's
        vector index in the memory of the process that opened it and does not reload it when another process
        writes (searches would miss new chunks and return deleted ones), so this process gets a client of its
        own (its own folder alias), which reads the index from disk; the one it replaces is stopped."""
        if self.location == ":memory:" or self.location.startswith(("http://", "https://")):
            return False
        old = self._client
        self._reopened += 1
        self._client = _client(self.location.rstrip("/") + "/." * self._reopened)
        self._manifest = _manifest(self._client, self.name)
        if self._reopened > 1:
            _stop(old)
        return True

    def committed(self) -> Mapping[str, DocumentRecord]:
        """The committed documents' records, as of the latest generation (no read when nothing changed). The same
        mapping is returned until the next change; callers do not modify it."""
        self.refresh()
        return self._committed

    def mean_vector(self) -> np.ndarray | None:
        """The mean of the committed chunks' vectors (None while none is committed), from the records' vector sums;
        a record written before they were kept has its sum read from its chunks, once per process."""
        committed = self.committed()
        cached = self._mean
        if cached is not None and cached[0] is committed:
            return cached[1]
        total: np.ndarray | None = None
        count = 0
        for record in committed.values():
            if record.vector_sum:
                part, size = decode(record.vector_sum), record.chunks
            else:
                key = (record.source, record.doc_hash)
                if key not in self._sums:
                    vectors = self.version_vectors(*key)
                    self._sums[key] = (np.asarray(vectors, dtype=np.float64).sum(axis=0), len(vectors))
                part, size = self._sums[key]
            if size:
                total = part if total is None else total + part
                count += size
        mean = None if total is None else total / count
        self._mean = (committed, mean)
        return mean

    def term_shares(self) -> dict[str, float]:
        """The share of the committed chunks each stemmed term occurs in (see `focus`), from the records' term
        counts; a record written before they were kept has its counts read from its chunks, once per process."""
        committed = self.committed()
        cached = self._shares
        if cached is not None and cached[0] is committed:
            return cached[1]
        totals: Counter[str] = Counter()
        count = 0
        for record in committed.values():
            totals.update(read_counts(record.terms) if record.terms else self._counted(record).counts)
            count += record.chunks
        shares = {term: found / count for term, found in totals.items()} if count else {}
        self._shares = (committed, shares)
        return shares

    def word_forms(self) -> Forms:
        """How many committed chunks each word occurs in as written (lowercased), and each stem's usual word (see
        `wording`), from the records' word counts; a record written before they were kept has its counts read from
        its chunks, once per process."""
        committed = self.committed()
        cached = self._forms
        if cached is not None and cached[0] is committed:
            return cached[1]
        totals: Counter[str] = Counter()
        for record in committed.values():
            totals.update(read_counts(record.words) if record.words else self._counted(record).words)
        known = forms(totals)
        self._forms = (committed, known)
        return known

    def _counted(self, record: DocumentRecord) -> TermCounts:
        """The term and word counts of a record's committed chunks, read once per process."""
        key = (record.source, record.doc_hash)
        if key not in self._term_counts:
            self._term_counts[key] = counts = TermCounts()
            counts.add(self.version_chunks(*key))
        return self._term_counts[key]

    def _visible(self, chunk: Chunk) -> bool:
        committed = self._versions.get(chunk.source)
        return committed is None or committed == chunk.doc_hash

    def records(self) -> dict[str, DocumentRecord]:
        """The manifest: one record per document, committed or in progress."""
        if self._manifest is None:
            return {}
        with _guard(f"reading the manifest of {self.name!r}", self.location):
            return self._manifest.records()

    def put_records(self, records: list[DocumentRecord]) -> None:
        """Write document records (and a new generation) in one store write."""
        if self._manifest is None:
            raise StoreError(f"collection {self.name!r} at {self.location} has no manifest")
        with _guard(f"writing the manifest of {self.name!r}", self.location):
            self._manifest.put(records)
        crashpoints.step("commit")

    def drop_record(self, source: str) -> None:
        if self._manifest is not None:
            with _guard(f"writing the manifest of {self.name!r}", self.location):
                self._manifest.drop(source)
            crashpoints.step("commit")

    def adopt(self) -> None:
        """Give a collection written before the manifest existed its records: a document whose chunks all come
        from one version is committed at it; one with several (an ingest cut short) is left to be re-ingested."""
        stored = self._stored_documents(visible_only=False)
        self.put_records(
            [
                DocumentRecord(
                    entry.source,
                    entry.root,
                    entry.title,
                    doc_hash=next(iter(entry.doc_hashes)) if len(entry.doc_hashes) == 1 else "",
                    stale=len(entry.doc_hashes) > 1,
                    chunks=len(entry.chunk_ids),
                    tokens=entry.tokens,
                )  # fmt: skip
                for entry in stored.values()
            ]
        )

    def _pages(self, doing: str, include: list[str], where: dict[str, Any] | None = None) -> Iterator[Any]:
        """Every stored chunk matching `where`, a page (a Chroma `get` result) at a time."""
        offset = 0
        while True:
            with _guard(f"{doing} {self.name!r}", self.location):
                page = self._collection.get(where=where, include=include, limit=_PAGE, offset=offset)
            yield page
            if len(page["ids"]) < _PAGE:
                return
            offset += _PAGE

    def versions(self, source: str) -> list[tuple[str, str]]:
        """(chunk id, document hash) of every stored chunk of `source`, whatever its version."""
        return [
            (chunk_id, str(_fields(metadata).get("doc_hash", "")))
            for page in self._pages("reading chunks of", ["metadatas"], {"source": source})
            for chunk_id, metadata in zip(page["ids"], page["metadatas"] or [], strict=True)
        ]

    def version_vectors(self, source: str, doc_hash: str) -> np.ndarray:
        """The stored vectors of one version of `source`."""
        parts: list[np.ndarray] = []
        for page in self._pages("reading chunks of", ["metadatas", "embeddings"], {"source": source}):
            if page["ids"]:
                vectors = np.asarray(page["embeddings"], dtype=np.float32).reshape(len(page["ids"]), -1)
                versions = [str(_fields(metadata).get("doc_hash", "")) for metadata in page["metadatas"] or []]
                parts.append(vectors[np.asarray(versions) == doc_hash])
        return np.concatenate(parts) if parts else np.zeros((0, 0), dtype=np.float32)

    def version_chunks(self, source: str, doc_hash: str) -> list[Chunk]:
        """The stored chunks of one version of `source`."""
        return [
            chunk
            for page in self._pages("reading chunks of", ["metadatas", "documents"], {"source": source})
            for chunk_id, text, metadata in zip(
                page["ids"], page["documents"] or [], page["metadatas"] or [], strict=True
            )  # fmt: skip
            if (chunk := _chunk(chunk_id, text or "", metadata)).doc_hash == doc_hash
        ]

    def vectors_of(self, ids: Sequence[str]) -> np.ndarray:
        """The stored vectors of these chunk ids (whatever their version); unknown ids are left out."""
        parts: list[np.ndarray] = []
        for batch in _batches(list(ids), _PAGE):
            with _guard(f"reading vectors of {self.name!r}", self.location):
                page = self._collection.get(ids=list(batch), include=["embeddings"])
            if page["ids"]:
                parts.append(np.asarray(page["embeddings"], dtype=np.float32).reshape(len(page["ids"]), -1))
        return np.concatenate(parts) if parts else np.zeros((0, 0), dtype=np.float32)

    # -- chunks -------------------------------------------------------------------------------------------

    def count(self) -> int:
        with _guard(f"counting chunks of {self.name!r}", self.location):
            return int(self._collection.count())

    def _all_metadata(self) -> Iterator[tuple[str, dict[str, Any]]]:
        for page in self._pages("reading collection", ["metadatas"]):
            yield from zip(page["ids"], page["metadatas"] or [], strict=True)

    def ids(self) -> Iterator[str]:
        """Every chunk id in the collection, whatever its version (ids only: no fields are read)."""
        for page in self._pages("reading collection", []):
            yield from page["ids"]

    def chunk_versions(self) -> Iterator[tuple[str, str, str]]:
        """(id, source, document hash) of every stored chunk, whatever its version (reads every chunk's fields)."""
        for chunk_id, raw in self._all_metadata():
            metadata = _fields(raw)
            yield chunk_id, str(metadata["source"]), str(metadata.get("doc_hash", ""))

    def documents(self) -> dict[str, StoredDocument]:
        """Every visible stored source with its chunk ids and document hash (reads every chunk's fields)."""
        self.refresh()
        return self._stored_documents(visible_only=True)

    def _stored_documents(self, visible_only: bool) -> dict[str, StoredDocument]:
        stored: dict[str, StoredDocument] = {}
        for chunk_id, raw in self._all_metadata():
            metadata = _fields(raw)
            source, doc_hash = str(metadata["source"]), str(metadata.get("doc_hash", ""))
            if visible_only and self._versions.get(source, doc_hash) != doc_hash:
                continue
            entry = stored.setdefault(
                source, StoredDocument(source, str(metadata.get("root", "")), str(metadata.get("title", "")))
            )
            entry.chunk_ids.append(chunk_id)
            entry.doc_hashes.add(doc_hash)
            entry.tokens += int(metadata.get("tokens", 0))
        return stored

    def chunks(self, ids: Sequence[str]) -> list[Chunk]:
        if not ids:
            return []
        with _guard(f"reading chunks of {self.name!r}", self.location):
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
            with _guard(f"reading vectors of {self.name!r}", self.location):
                page = self._collection.get(
                    where={"vector_key": {"$in": list(batch)}}, include=["metadatas", "embeddings"]
                )
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
        metadata = dict(self._collection.metadata or {})
        if len(chunks) and "dimension" not in metadata:  # created by a command that had not loaded the model
            with _guard(f"writing to collection {self.name!r}", self.location):
                self._collection.modify(metadata={**metadata, "dimension": int(np.shape(vectors)[1])})
        size = self._max_batch()
        for start in range(0, len(chunks), size):
            batch = chunks[start : start + size]
            with _guard(f"writing to collection {self.name!r}", self.location):
                self._collection.upsert(
                    ids=[chunk.id for chunk in batch],
                    embeddings=np.asarray(vectors[start : start + size], dtype=np.float32),
                    documents=[chunk.text for chunk in batch],
                    metadatas=[_metadata(chunk) for chunk in batch],
                )
            crashpoints.step("write")

    # -- the archive of replaced versions (the audit trail rebuilds logged messages from it) -------------------

    def _archive(self) -> Any:
        return self._client.get_or_create_collection(
            archive_name(self.name), metadata={"rag_prompts": "archive"}, embedding_function=None
        )

    def archive(self, ids: Sequence[str], when: int) -> None:
        """Copy these chunks (text and fields, not vectors) to the archive before they are deleted; `when` is the
        time (epoch seconds) they were replaced. Copying again is harmless."""
        if self._client is None or not ids:
            return
        for batch in _batches(list(ids), self._max_batch()):
            with _guard(f"archiving chunks of {self.name!r}", self.location):
                page = self._collection.get(ids=list(batch), include=["metadatas", "documents"])
                if page["ids"]:
                    self._archive().upsert(
                        ids=page["ids"], embeddings=[_PLACEHOLDER] * len(page["ids"]), documents=page["documents"],
                        metadatas=[{**metadata, "archived": when} for metadata in page["metadatas"] or []],
                    )  # fmt: skip

    def archived(self, ids: Sequence[str]) -> list[Chunk]:
        """Archived chunks with these ids (unknown ids are left out)."""
        if self._client is None or not ids:
            return []
        with _guard(f"reading the archive of {self.name!r}", self.location):
            page = self._archive().get(ids=list(ids), include=["metadatas", "documents"])
        rows = zip(page["ids"], page["documents"] or [], page["metadatas"] or [], strict=True)
        return [_chunk(chunk_id, text or "", metadata) for chunk_id, text, metadata in rows]

    def expire_archive(self, before: int) -> int:
        """Delete the archived chunks replaced before `before` (epoch seconds); returns how many."""
        if self._client is None:
            return 0
        with _guard(f"expiring the archive of {self.name!r}", self.location):
            handle = self._archive()
            ids = handle.get(where={"archived": {"$lt": before}}, include=[])["ids"]
            for batch in _batches(ids, self._max_batch()):
                handle.delete(ids=list(batch))
        return len(ids)

    def delete(self, ids: Sequence[str]) -> None:
        self._size_hint = None
        self._cache.discard(ids)
        metadata = dict(self._collection.metadata or {})
        if ids and metadata.get(_COMPACTED):  # unmarked before the first deletion: a crash leaves it unmarked
            with _guard(f"writing to collection {self.name!r}", self.location):
                self._collection.modify(metadata={**metadata, _COMPACTED: False})
        for batch in _batches(list(ids), self._max_batch()):
            with _guard(f"deleting from collection {self.name!r}", self.location):
                self._collection.delete(ids=list(batch))
            crashpoints.step("delete")

    def query(
        self,
        vector: np.ndarray,
        n: int,
        tags: Sequence[str] = (),
        sources: Sequence[str] = (),
        exclude: frozenset[str] = frozenset(),
    ) -> list[Hit]:
        """The `n` nearest chunks carrying any of `tags` (and from `sources`), best first; score = cosine similarity.

        On a large collection Chroma's metadata filter costs far more than the vector search (about 130 ms
        against 10 ms at 100,000 chunks), so a filtered search there first over-fetches ids without the filter
        and filters them here, widening once; only if that still leaves fewer than `n` matches does it ask
        Chroma to filter. A `sources` restriction (one document, say) selects too small a share for that: it
        goes to Chroma's filter directly (26 ms against 269 ms over-fetching, one CUAD contract of 60 at 23,855
        chunks). Every path returns the same chunks. The search returns ids and distances; the chunks themselves
        come from the record cache, and only the ones it lacks are read. Chunks of a version not committed are
        hidden (and more are asked for in their place), and so are chunks of the sources in `exclude` (documents
        not in force on the date composed for). Raises EmptyStoreError when no document is committed.
        """
        if n <= 0:
            return []
        try:
            return self._query(vector, n, tags, sources, exclude)
        except StoreError:  # the collection may have been swapped by a compaction since the last look: once more
            self._token = None
            return self._query(vector, n, tags, sources, exclude)

    def _query(
        self, vector: np.ndarray, n: int, tags: Sequence[str], sources: Sequence[str], exclude: frozenset[str]
    ) -> list[Hit]:
        self.refresh()
        if not any(self._versions.values()) and (self._versions or self._size() == 0):
            raise EmptyStoreError(NO_DOCUMENTS)
        extra = 0
        while True:
            rows = self._candidates(vector, n + extra, tags, sources)
            hits = [hit for hit in self._hits(rows) if hit.chunk.source not in exclude]
            hidden = len(rows) - len(hits)
            if len(hits) >= n or not hidden or len(rows) < n + extra:
                break
            extra = max(2 * extra, 2 * hidden, 20)
        if sources and len(hits) < n and len(hits) < sum(self._counts.get(source, 0) for source in sources):
            return self._exact(vector, n, where_filter(tags, sources), exclude)  # the index failed to reach them
        return hits[:n]

    def _exact(
        self, vector: np.ndarray, n: int, where: dict[str, Any] | None, exclude: frozenset[str] = frozenset()
    ) -> list[Hit]:
        """The `n` best chunks matching `where`, scored one by one. Chroma's filtered index search can miss
        chunks (many near-identical vectors elsewhere cut them off in its graph); a few documents' chunks are
        cheap to score directly."""
        found: dict[str, _Record] = {}
        for page in self._pages("reading chunks of", ["metadatas", "documents", "embeddings"], where):
            if page["ids"]:
                vectors = np.asarray(page["embeddings"], dtype=np.float32).reshape(len(page["ids"]), -1)
                for chunk_id, text, metadata, stored in zip(
                    page["ids"], page["documents"] or [], page["metadatas"] or [], vectors, strict=True
                ):
                    chunk = _chunk(chunk_id, text or "", metadata)
                    if self._visible(chunk) and chunk.source not in exclude:
                        found[chunk_id] = (chunk, stored)
        self._cache.put(found)
        hits = _score(list(found.values()), vector)
        return sorted(hits, key=lambda hit: hit.score, reverse=True)[:n]

    def _candidates(
        self, vector: np.ndarray, n: int, tags: Sequence[str], sources: Sequence[str]
    ) -> list[tuple[str, dict[str, Any], float]]:
        where = where_filter(tags, sources)
        if where is None or sources or self._size() < OVERFETCH_MIN_CHUNKS:
            return self._nearest(vector, n, where)
        wanted = set(tags)
        for factor in OVERFETCH_FACTORS:
            asked = factor * n + 20
            rows = self._nearest(vector, asked, None)
            labels = self._tags([chunk_id for chunk_id, _, _ in rows])
            matching = [row for row in rows if wanted & labels.get(row[0], set())][:n]
            if len(matching) == n or len(rows) < asked:  # enough, or the whole collection was seen
                return matching
        return self._nearest(vector, n, where)

    def _tags(self, ids: Sequence[str]) -> dict[str, set[str]]:
        """The tags of each chunk id: from the record cache, and only the metadata of the rest read. Reading
        metadata is most of a large search's cost (980 rows: 80 ms with it, 14 ms without, at 100,000 chunks)."""
        tags = {chunk_id: set(chunk.tags) for chunk_id, (chunk, _) in self._cache.get(ids).items()}
        missing = [chunk_id for chunk_id in ids if chunk_id not in tags]
        if missing:
            with _guard(f"reading chunks of {self.name!r}", self.location):
                page = self._collection.get(ids=missing, include=["metadatas"])
            for chunk_id, metadata in zip(page["ids"], page["metadatas"] or [], strict=True):
                tags[chunk_id] = set((metadata or {}).get("tags") or ())
        return tags

    def scored(self, ids: Sequence[str], vector: np.ndarray) -> list[Hit]:
        """The chunks with these ids, each scored against `vector` (cosine similarity); unknown or hidden ids
        are skipped."""
        records = self._records(ids)
        return _score([records[chunk_id] for chunk_id in dict.fromkeys(ids) if chunk_id in records], vector)

    def _size(self) -> int:
        """The collection size as last seen by this process: it only chooses a search strategy."""
        if self._size_hint is None:
            self._size_hint = self.count()
        return self._size_hint

    def _records(self, ids: Sequence[str]) -> dict[str, _Record]:
        """Visible chunk records by id: cached ones, and the rest read in one `get`. Unknown ids are left out."""
        found = self._cache.get(ids)
        missing = [chunk_id for chunk_id in dict.fromkeys(ids) if chunk_id not in found]
        if missing:
            with _guard(f"reading chunks of {self.name!r}", self.location):
                page = self._collection.get(ids=missing, include=["metadatas", "documents", "embeddings"])
            if page["ids"]:
                vectors = np.asarray(page["embeddings"], dtype=np.float32).reshape(len(page["ids"]), -1)
                read = {
                    chunk_id: (_chunk(chunk_id, text or "", metadata), stored)
                    for chunk_id, text, metadata, stored in zip(
                        page["ids"], page["documents"] or [], page["metadatas"] or [], vectors, strict=True
                    )
                }
                self._cache.put(read)
                found |= read
        return {chunk_id: record for chunk_id, record in found.items() if self._visible(record[0])}

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
        """Committed documents, their chunks and tokens, from the manifest (no chunk is read)."""
        records = [record for record in self.records().values() if record.committed]
        if self._manifest is None:
            documents = self._stored_documents(visible_only=False)
            return StoreStats(
                len(documents), sum(len(entry.chunk_ids) for entry in documents.values()),
                sum(entry.tokens for entry in documents.values()), self.location, self.name, self.embedding_model,
            )  # fmt: skip
        return StoreStats(
            documents=len(records),
            chunks=sum(record.chunks for record in records),
            tokens=sum(record.tokens for record in records),
            location=self.location,
            collection=self.name,
            embedding_model=self.embedding_model,
        )

    def _max_batch(self) -> int:
        try:
            return max(1, min(int(self._client.get_max_batch_size()), 5000))
        except Exception:  # older clients lack it; Chroma's documented default is far above this
            return 1000
