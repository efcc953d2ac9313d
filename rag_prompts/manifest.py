"""The store's manifest: one record per document saying which version of it is committed, plus a generation.

Chunks are written first and become visible only when their document's record names their version (its
document hash); the stale versions are deleted after that. Readers hide every chunk whose document has a
record naming another version, so a search sees whole documents only, and a crash at any step leaves a
state the next ingest finishes. Every change to the manifest also changes the generation record, which
readers check cheaply before each search; it also names the collection that holds the chunks (compaction
writes a fresh one and switches to it in one write), and the one the last switch replaced.

The manifest is a small Chroma collection of its own (so it works the same on every kind of store); this
module works on its handle and never imports chromadb.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from typing import Any

GENERATION_ID = "generation"
REVOKED_ID = "revoked"  # the server writers whose lock was broken: token -> the last of its writes accepted
_PAGE = 5000
_PLACEHOLDER = [1.0]  # Chroma wants a vector per record; the manifest is never searched


@dataclass(frozen=True)
class DocumentRecord:
    """What the store holds for one document.

    `doc_hash` is the committed version ("" while a first version is being written or the document is being
    removed); `pending` a version being written; `stale` says chunks of other versions may still be stored."""

    source: str
    root: str
    title: str = ""
    doc_hash: str = ""
    pending: str = ""
    stale: bool = False
    chunks: int = 0
    tokens: int = 0
    effective: str = ""  # the document's dating (see `dating`); "" undated
    expires: str = ""
    superseded_by: str = ""
    meta: int = 0  # which document facts the record holds: see `ingest.RECORD_META` (older records are re-read once)
    writer: str = ""  # the token of the server writer lock it was written under ("" on an embedded store)
    seq: int = 0  # that writer's count of manifest writes when it wrote this one
    vector_sum: str = ""  # the sum of its committed chunks' vectors (`centring.encode`); "" in older records
    digest: str = ""  # of the committed version's chunk ids (see `integrity`); "" in records written before it
    terms: str = ""  # the chunks each stemmed term occurs in (`focus.TermCounts`); "" in older records
    words: str = ""  # the chunks each word occurs in, as written (`focus.TermCounts`); "" in older records

    @property
    def committed(self) -> bool:
        return bool(self.doc_hash)

    @property
    def clean(self) -> bool:
        return self.committed and not self.pending and not self.stale


def manifest_name(collection: str) -> str:
    return f"{collection[:490]}.manifest"


def record_id(source: str) -> str:
    return "doc:" + hashlib.sha256(source.encode("utf-8")).hexdigest()[:40]


@dataclass(frozen=True)
class Generation:
    token: str
    collection: str
    pid: str = ""  # the process that wrote it
    previous: str = ""  # the collection the last switch replaced (see `switch`)


class Manifest:
    """Reads and writes the document records and the generation of one collection's manifest."""

    def __init__(self, handle: Any, collection: str) -> None:
        self._handle = handle
        self._default_collection = collection

    def generation(self) -> Generation:
        page = self._handle.get(ids=[GENERATION_ID], include=["metadatas"])
        metadata = (page["metadatas"] or [{}])[0] if page["ids"] else {}
        return Generation(
            str(metadata.get("token", "")),
            str(metadata.get("collection", "") or self._default_collection),
            str(metadata.get("pid", "")),
            str(metadata.get("previous", "")),
        )

    def exists(self) -> bool:
        return bool(self._handle.get(ids=[GENERATION_ID], include=[])["ids"])

    def records(self) -> dict[str, DocumentRecord]:
        """Every document's record. One written by a server writer after its lock was broken (see `revoke`) is
        refused: it reads as a version being written, so its document is hidden until the next ingest."""
        records: dict[str, DocumentRecord] = {}
        revoked = self.revoked()
        for metadata in self._pages():
            fields = DocumentRecord.__dataclass_fields__
            record = DocumentRecord(**{key: metadata[key] for key in fields if key in metadata})
            if record.writer in revoked and record.seq > revoked[record.writer]:
                record = replace(record, doc_hash="", pending=record.doc_hash or record.pending, stale=True)
            records[record.source] = record
        return records

    def revoked(self) -> dict[str, int]:
        """Broken writer locks: each one's token and the last `seq` of its writes made before it was broken."""
        page = self._handle.get(ids=[REVOKED_ID], include=["metadatas"])
        metadata = (page["metadatas"] or [{}])[0] if page["ids"] else {}
        return {str(token): int(seq) for token, seq in (metadata or {}).items() if token != "kind"}

    def revoke(self, token: str) -> None:
        """Record that the writer lock `token` was broken: its writes stored by now stand, any later one (a
        writer that stalled past its lease, then wrote) is refused by `records`. Chroma has no conditional
        write, so the one write such a writer may still make cannot be stopped, only refused when read."""
        last = max((int(metadata.get("seq", 0)) for metadata in self._pages() if metadata.get("writer") == token),
                   default=0)  # fmt: skip
        self._handle.upsert(
            ids=[REVOKED_ID], embeddings=[_PLACEHOLDER],
            metadatas=[{"kind": "revoked", **self.revoked(), token: last}],
        )  # fmt: skip

    def _pages(self) -> Iterator[dict[str, Any]]:
        offset = 0
        while True:
            page = self._handle.get(include=["metadatas"], limit=_PAGE, offset=offset)
            for record_key, metadata in zip(page["ids"], page["metadatas"] or [], strict=True):
                if record_key not in (GENERATION_ID, REVOKED_ID):
                    yield metadata
            if len(page["ids"]) < _PAGE:
                return
            offset += _PAGE

    def put(self, records: list[DocumentRecord], collection: str | None = None) -> None:
        """Write `records` and a new generation in one call, so readers notice them."""
        self._handle.upsert(
            ids=[*(record_id(record.source) for record in records), GENERATION_ID],
            embeddings=[_PLACEHOLDER] * (len(records) + 1),
            metadatas=[*(asdict(record) for record in records), self._generation_metadata(collection)],
        )

    def drop(self, source: str) -> None:
        self._handle.delete(ids=[record_id(source)])
        self.put([])

    def switch(self, collection: str, previous: str) -> None:
        """Point readers at another chunk collection (the compacted copy of `previous`, the one in use). The
        generation keeps `previous`: a compact that stalled past its lease before this write can still make it
        after other compactions dropped its copy, and readers then keep to `previous` (see `store`)."""
        self._handle.upsert(
            ids=[GENERATION_ID], embeddings=[_PLACEHOLDER],
            metadatas=[{**self._generation_metadata(collection), "previous": previous}],
        )  # fmt: skip

    def _generation_metadata(self, collection: str | None) -> dict[str, Any]:
        current = self.generation()
        return {
            "token": uuid.uuid4().hex,
            "collection": collection or current.collection,
            "pid": str(os.getpid()),
            "previous": current.previous,
        }
