"""Orchestrates files -> Document -> Chunk -> vectors -> store, incrementally, idempotently and crash-safely.

An unchanged file (same bytes, same chunking settings) is skipped without loading. Documents stream through
chunk -> embed -> write in groups of about GROUP_CHUNKS chunks (a large document in slices of that size), so
memory does not grow with the corpus. Each document is committed on its own: its new chunks are written
first, then its manifest record names the new version (from then on searches show it), then the chunks of
other versions are deleted. A crash or kill at any step leaves every document whole in its old or new
version; the next run finishes what was cut short and re-embeds only chunks not yet written. Each run on a
server store starts by checking that every committed document is whole (see `integrity`) and rewrites any that is
not (a stalled writer's late deletion, or a compact's late switch, can leave one so). Files gone from
an ingested folder lose their chunks; a file that fails to load is reported and skipped, and whatever the
store held for it is kept. Only one ingest writes to a store at a time (see `locking`).
"""

from __future__ import annotations

import hashlib
import itertools
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from . import crashpoints
from .centring import VectorSum
from .chunking import iter_chunks, sha256, with_nearby
from .embed import Embedder
from .errors import LoadError, RagPromptsError
from .focus import TermCounts
from .integrity import audit, digest
from .loaders import SUPPORTED_SUFFIXES, load_document
from .locking import writer_lock
from .manifest import DocumentRecord
from .neighbours import block_texts, mix, vector_keys, window, with_block
from .records import Chunk, Document
from .server_lock import LEASE_SECONDS
from .slices import slices
from .store import SCHEMA_VERSION, ChunkStore
from .tokens import TokenCounter

INDEX_WARN_BYTES = 400 * 2**20  # an embedded index above this leaves little of a 500 MB ingest bound (issue 12)
COMPACT_HINT_CHUNKS = 1_000  # deleted chunks past which one ingest says to compact ...
COMPACT_HINT_SHARE = 0.25  # ... when they are this share of the index (compose was 1.5x slower at ~0.5)
CHUNKER_VERSION = (
    10  # 2: ordinals; 3: context-aware vectors; 4: repeats stored once; 5: blocks; 6: short blocks merged;
)
# 7: contents entries, body lines and table rows are not headings; 8: a numbered heading ends at a paragraph numbered
# past it; 9: each chunk records the whitespace before it; 10: the pieces of a long numbered clause record its first
EMBED_BATCH = 256
RECORD_META = 4  # what a record holds beyond the version (1: dating, 2: vector sum, 3: term counts, 4: word counts);
# an older one is relabelled once
GROUP_CHUNKS = 1024  # chunks embedded and written together: small documents are grouped, large ones sliced


@dataclass(frozen=True)
class NeighbourMix:
    """How chunk vectors take in their neighbours (see `neighbours`); window 0 embeds each chunk alone."""

    window: int = 2
    weight: float = 0.5
    block_weight: float = 0.0  # how much the chunk's whole block (paragraph, clause) weighs in its vector


ProgressFn = Callable[[str, int, int], None]
"""Called as progress(stage, done, total) with stage "check" (stored chunks read by the check each run starts
with), "read" (files), "embed" (chunks; total 0 when not known ahead), "write" (chunks of a large document) or
"delete" (stale chunks)."""

EmbedderSource = Embedder | Callable[[], Embedder]
"""An embedder, or a function returning one: it is called only when something must be embedded."""


@dataclass(frozen=True)
class Failure:
    path: str
    reason: str


@dataclass
class IngestReport:
    """What one ingest run did; `ok` is False when any file failed. `resumed` lists documents whose earlier
    ingest was cut short and is finished by this one; `repaired` those the store's check (see `integrity`) found
    missing chunks of their committed version, or holding chunks nothing names, and this run put right."""

    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    failed: list[Failure] = field(default_factory=list)
    resumed: list[str] = field(default_factory=list)
    repaired: list[str] = field(default_factory=list)
    chunks_embedded: int = 0
    chunks_reused: int = 0
    chunks_written: int = 0
    chunks_deleted: int = 0
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed

    def summary(self) -> dict[str, int | float]:
        return {
            "added": len(self.added),
            "updated": len(self.updated),
            "unchanged": len(self.unchanged),
            "removed": len(self.removed),
            "failed": len(self.failed),
            "resumed": len(self.resumed),
            "repaired": len(self.repaired),
            "chunks_embedded": self.chunks_embedded,
            "chunks_reused": self.chunks_reused,
            "chunks_written": self.chunks_written,
            "chunks_deleted": self.chunks_deleted,
            "seconds": round(self.seconds, 3),
        }


@dataclass(frozen=True)
class _Todo:
    """A file whose stored version is missing or out of date: what is known before loading it."""

    file: Path
    root: Path
    source: str
    doc_hash: str
    record: DocumentRecord | None


@dataclass(frozen=True)
class _Scan:
    root: Path
    files: list[Path]
    prune: bool  # only a scanned folder (never a single file or a missing path) removes vanished sources


def _scan(path: Path) -> _Scan:
    if path.is_file():
        return _Scan(path.parent, [path], prune=False)
    files = sorted(
        candidate
        for candidate in path.rglob("*")
        if candidate.is_file()
        and candidate.suffix.lower() in SUPPORTED_SUFFIXES
        and not any(part.startswith(".") for part in candidate.relative_to(path).parts)
    )
    return _Scan(path, files, prune=True)


def document_hash(data: bytes, fingerprint: str) -> str:
    """Changes when the file's bytes or the chunking settings change."""
    return hashlib.sha256(fingerprint.encode() + b"\x00" + data).hexdigest()


def ingest(
    paths: Iterable[str | Path],
    *,
    store: ChunkStore,
    embedder: EmbedderSource,
    counter: TokenCounter,
    chunk_tokens: int,
    neighbours: NeighbourMix = NeighbourMix(),
    group_chunks: int = GROUP_CHUNKS,
    progress: ProgressFn | None = None,
    on_event: Callable[[str, str], None] | None = None,
    wait: bool = False,
    keep_versions_days: int | None = None,
    lease: float = LEASE_SECONDS,
) -> IngestReport:
    """Bring the store in line with the documents under `paths` and report what changed.

    Replaced and removed versions are copied to the store's archive before their chunks are deleted, so logged
    messages can be rebuilt (`audit`); `keep_versions_days` drops archived versions replaced longer ago than
    that (None: keep them all; 0: archive nothing).

    Holds the store's writer lock throughout (a file beside an embedded store, a leased record in a server):
    another ingest of the same store raises StoreBusyError naming its pid, or is waited for with `wait=True`.
    A server lock not renewed for `lease` seconds may be broken by another writer; this ingest then stops.
    A store failure raises StoreError; every document committed before it stays, and a rerun resumes."""
    with writer_lock(store.location, wait=wait, collection=store.name, lease=lease) as held:
        store.refresh()  # a compact since this store was opened switched its readers to a copy: write to that one
        store.deepen_search()
        job = _Ingest(store, embedder, counter, chunk_tokens, neighbours, group_chunks, progress, on_event)
        job.fence, job.writer = held.check, held.token
        job.keep_versions_days = keep_versions_days
        report = job.run(paths)
        if keep_versions_days:
            store.expire_archive(int(time.time()) - keep_versions_days * 86_400)
        index = store.index_bytes_in_process()
        if index > INDEX_WARN_BYTES:
            report.warnings.append(
                f"the store's vector index is about {index // 2**20:,} MB, and Chroma holds all of it in the memory of"
                f' every process that opens {store.location}; a Chroma server store (`store = "http://host:port"`)'
                " keeps it in the server alone"
            )
        if report.chunks_deleted >= COMPACT_HINT_CHUNKS:  # the count is read only then
            hint = compact_hint(report.chunks_deleted, store.count())
            if hint:
                report.warnings.append(hint)
        return report


def compact_hint(deleted: int, live: int) -> str | None:
    """What to say when an ingest deleted so many chunks that Chroma's index, which keeps deleted entries, makes
    searches slower until `rag-prompts compact` rewrites it (None when it did not)."""
    if deleted < COMPACT_HINT_CHUNKS or deleted < COMPACT_HINT_SHARE * (deleted + live):
        return None
    return (
        f"this ingest deleted {deleted:,} chunks, {deleted / (deleted + live):.0%} of what the store's vector index"
        " now holds, and Chroma keeps deleted entries in it: searches are slower until `rag-prompts compact`"
        " rewrites the index"
    )


class _Ingest:
    def __init__(
        self,
        store: ChunkStore,
        embedder: EmbedderSource,
        counter: TokenCounter,
        chunk_tokens: int,
        neighbours: NeighbourMix,
        group_chunks: int,
        progress: ProgressFn | None,
        on_event: Callable[[str, str], None] | None,
    ) -> None:
        self.store, self.counter, self.chunk_tokens, self.neighbours = store, counter, chunk_tokens, neighbours
        self.group_chunks = max(1, group_chunks)
        self._embedder_source = embedder
        self._embedder: Embedder | None = embedder if isinstance(embedder, Embedder) else None
        self.progress: ProgressFn = progress or (lambda stage, done, total: None)
        self.event = on_event or (lambda kind, what: None)
        self.report = IngestReport()
        self.fingerprint = (  # "context=" is the label stored documents carry: renaming it would re-embed them
            f"chunker={CHUNKER_VERSION};tokens={chunk_tokens};encoding={counter.encoding_name}"
            f";context={neighbours.window},{neighbours.weight},{neighbours.block_weight};store_schema={SCHEMA_VERSION}"
        )
        self._group: list[tuple[_Todo, list[Chunk]]] = []
        self.keep_versions_days: int | None = None
        self._dating: dict[str, Document] = {}  # source -> its loaded document (text dropped): dating for the record
        self._group_size = 0
        self.fence: Callable[[], None] = lambda: None  # raises once the writer lock is lost (a server's lease)
        self.writer = ""  # the server writer lock's token, which every manifest write carries
        self._writes = 0
        self._broken: dict[str, DocumentRecord] = {}  # source -> its record hidden because chunks were missing
        self._swept: set[str] = set()  # sources whose chunks of other versions the check found

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            source = self._embedder_source
            self._embedder = source if isinstance(source, Embedder) else source()
        return self._embedder

    def run(self, paths: Iterable[str | Path]) -> IngestReport:
        began = time.perf_counter()
        report = self.report
        records = self.store.records()
        if self.writer:  # a lock that can be broken (a server's lease), so a late write may have gone out
            records = self._check(records)
        todos, finish, vanished = self._plan(paths, records)
        for todo in todos:
            self._chunks(todo)
        self._flush()
        for record in finish:  # committed and unchanged, but an earlier run was cut short before its cleanup
            self._delete_stale(record)
            (report.repaired if record.source in self._swept else report.resumed).append(record.source)
        for record in vanished:  # after the writes: a renamed file reuses the vectors of its old name
            self._remove(record)
        for source, record in self._broken.items():
            if source not in report.repaired and source not in report.removed:
                self._fail(
                    str(Path(record.root) / source),
                    "chunks of its committed version are missing from the store (a stalled writer's late deletion"
                    " or a compact's late switch); it is hidden until its file is ingested again",
                )
        report.seconds = time.perf_counter() - began
        return report

    # -- checking -----------------------------------------------------------------------------------------

    def _check(self, records: dict[str, DocumentRecord]) -> dict[str, DocumentRecord]:
        """Check the store against `records` (see `integrity`) and act on what is wrong, before any other write:
        a committed document missing chunks is hidden (its record names its version as pending, so this run
        rewrites only the chunks that are missing), a clean record whose source has chunks of other versions is
        marked stale (they are deleted), and chunks whose source has no record are deleted. Records lacking
        their digest get it. Returns the records as they now are.

        Only a server store needs it: an embedded store's file lock cannot be lost while its holder runs, so no
        write outlives it there (and the check's first read would load the whole vector index into this
        process)."""
        found = audit(self.store, records, lambda done, total: self.progress("check", done, total))
        if found.orphans:
            self._keep(found.orphans)
            self._delete(found.orphans)
            self.report.chunks_deleted += len(found.orphans)
        changed: dict[str, DocumentRecord] = {}
        for source, value in found.digests.items():
            changed[source] = replace(records[source], digest=value)
        for source in found.stale:
            changed[source] = replace(changed.get(source, records[source]), stale=True)
            self._swept.add(source)
        for source in found.broken:
            record = records[source]
            changed[source] = replace(record, doc_hash="", pending=record.doc_hash, stale=True, digest="")
            self._broken[source] = record
        if changed:
            self._put(list(changed.values()))
        return {**records, **changed}

    # -- planning -----------------------------------------------------------------------------------------

    def _plan(
        self, paths: Iterable[str | Path], records: dict[str, DocumentRecord]
    ) -> tuple[list[_Todo], list[DocumentRecord], list[DocumentRecord]]:
        report = self.report
        seen: dict[str, Path] = {}
        todos: list[_Todo] = []
        finish: list[DocumentRecord] = []
        vanished: list[DocumentRecord] = []
        scans = []
        for requested in dict.fromkeys(Path(path).expanduser().resolve() for path in paths):
            if not requested.exists():
                self._fail(str(requested), "no such file or directory")
                continue
            scans.append(_scan(requested))
        total, done = sum(len(scan.files) for scan in scans), 0
        for scan in scans:
            for file in scan.files:
                done += 1
                self.progress("read", done, total)
                source = file.relative_to(scan.root).as_posix()
                if source in seen:
                    self._fail(str(file), f"same relative path {source!r} as {seen[source]}; ingest one of the two")
                    continue
                seen[source] = file
                try:
                    doc_hash = document_hash(file.read_bytes(), self.fingerprint)
                except OSError as error:
                    self._fail(str(file), f"cannot read file: {error.strerror or error}")
                    continue
                record = records.get(source)
                if record is not None and record.doc_hash == doc_hash and record.root == str(scan.root):
                    report.unchanged.append(source)
                    if record.meta < RECORD_META:
                        record = self._relabel(file, scan.root, record)
                    if not record.clean:
                        finish.append(record)
                else:
                    todos.append(_Todo(file, scan.root, source, doc_hash, record))
            if scan.prune:
                root = str(scan.root)
                vanished.extend(
                    record for source, record in records.items() if record.root == root and source not in seen
                )
        return todos, finish, vanished

    def _relabel(self, file: Path, root: Path, record: DocumentRecord) -> DocumentRecord:
        """Give a record written before it held the document's dating, vector sum, term and word counts those (the
        chunks stay as they are)."""
        try:
            document = load_document(file, root)
        except LoadError as error:
            self._fail(str(file), error.reason)
            return record
        total = VectorSum()
        if not record.vector_sum:
            total.add(self.store.version_vectors(record.source, record.doc_hash))
        counts = TermCounts()
        if not (record.terms and record.words):
            counts.add(self.store.version_chunks(record.source, record.doc_hash))
        relabelled = replace(
            record, effective=document.effective, expires=document.expires, superseded_by=document.superseded_by,
            meta=RECORD_META, vector_sum=record.vector_sum or total.text(), terms=record.terms or counts.text(),
            words=record.words or counts.words_text(),
        )  # fmt: skip
        self._put([relabelled])
        return relabelled

    def _fail(self, path: str, reason: str) -> None:
        self.report.failed.append(Failure(path, reason))
        self.event("failed", f"{path}: {reason}")

    def _chunks(self, todo: _Todo) -> None:
        """Load and chunk one file and pass it on: whole when it is small, as a stream when it has at least
        `group_chunks` chunks (so a large file is never held as one chunk list). A file that cannot be loaded
        or parsed is reported and skipped."""
        try:
            document = load_document(todo.file, todo.root)
            self._dating[todo.source] = replace(document, text="", headings=())
            stream = iter_chunks(document, self.counter, self.chunk_tokens, todo.doc_hash, repeats=False)
            head = list(itertools.islice(stream, self.group_chunks))
            if len(head) < self.group_chunks:
                chunks = with_nearby(head)
                mix_of = self.neighbours
                keys = vector_keys(chunks, mix_of.window, mix_of.weight, mix_of.block_weight)
                chunks = [replace(chunk, vector_key=key) for chunk, key in zip(chunks, keys, strict=True)]
        except LoadError as error:
            self._fail(str(todo.file), error.reason)
            return
        except RagPromptsError:
            raise
        except Exception as error:  # a parser library choking on one file must not stop the others
            self._fail(str(todo.file), _unparsable(error))
            return
        if len(head) < self.group_chunks:
            self._feed(todo, chunks)
            return
        self._flush()
        try:
            self._write_large(todo, _Parsed(itertools.chain(head, stream)))
        except _ParseFailure as failure:
            self._abandon(todo)
            self._fail(str(todo.file), failure.reason)

    def _abandon(self, todo: _Todo) -> None:
        """Undo the write of a large document whose chunking failed part way: delete the chunks of the new
        version, then put its record back as it was (drop it when no version was committed), so the store holds
        for it what it held before. Its committed version stayed visible throughout."""
        self._dating.pop(todo.source, None)
        self._delete([chunk_id for chunk_id, doc_hash in self.store.versions(todo.source) if doc_hash == todo.doc_hash])
        old = todo.record
        if old is None or (not old.committed and old.pending in ("", todo.doc_hash)):
            self._fence()
            self.store.drop_record(todo.source)
        else:
            self._put([replace(old, pending="" if old.pending == todo.doc_hash else old.pending)])

    # -- writing ------------------------------------------------------------------------------------------

    def _feed(self, todo: _Todo, chunks: list[Chunk]) -> None:
        self._group.append((todo, chunks))
        self._group_size += len(chunks)
        if self._group_size >= self.group_chunks:
            self._flush()

    def _flush(self) -> None:
        """Embed and commit the grouped small documents, one commit per document."""
        group, self._group, self._group_size = self._group, [], 0
        if not group:
            return
        self._put([self._pending(todo) for todo, _ in group])
        present = [self._present(todo) for todo, _ in group]
        wanted = [
            [i for i, chunk in enumerate(chunks) if chunk.id not in ids]
            for (_, chunks), ids in zip(group, present, strict=True)
        ]
        vectors = self._vectors([chunks for _, chunks in group], wanted)
        for (todo, chunks), indices, mixed, ids in zip(group, wanted, vectors, present, strict=True):
            total = VectorSum()
            total.add(self.store.vectors_of(sorted(ids)))
            if indices:
                self.store.add([chunks[i] for i in indices], mixed)
                total.add(mixed)
            counts = TermCounts()
            counts.add(chunks)
            title = chunks[0].title if chunks else ""
            tokens = sum(chunk.tokens for chunk in chunks)
            ids_digest = digest(chunk.id for chunk in chunks)
            self._commit(todo, title, len(chunks), tokens, len(indices), ids_digest, total, counts)

    def _write_large(self, todo: _Todo, stream: Iterable[Chunk]) -> None:
        """One document of many chunks, streamed: chunked, embedded and written a slice at a time (see
        `slices`), committed once all its slices are written."""
        self._put([self._pending(todo)])
        present = self._present(todo)
        total = VectorSum()
        total.add(self.store.vectors_of(sorted(present)))
        counts = TermCounts()
        written = count = tokens = 0
        title = ids = ""
        reach, weight, block_weight = self.neighbours.window, self.neighbours.weight, self.neighbours.block_weight
        for piece in slices(stream, self.group_chunks, reach, weight, block_weight):
            chunks = piece.chunks
            title = title or chunks[0].title
            count += len(piece.wanted)
            tokens += sum(chunks[i].tokens for i in piece.wanted)
            ids = digest((chunks[i].id for i in piece.wanted), ids)
            counts.add(chunks[i] for i in piece.wanted)
            indices = [i for i in piece.wanted if chunks[i].id not in present]
            if indices:
                (mixed,) = self._vectors([chunks], [indices], piece.starts if block_weight else None)
                self.store.add([chunks[i] for i in indices], mixed)
                total.add(mixed)
                written += len(indices)
            self.progress("write", count, 0)
        self._commit(todo, title, count, tokens, written, ids, total, counts)

    def _put(self, records: list[DocumentRecord]) -> None:
        """A manifest write, made only while the writer lock is still ours, stamped with its token and count
        (a write a stalled writer makes after its lock was broken is then refused: see `manifest.revoke`)."""
        self._fence()
        if self.writer:
            self._writes += 1
            records = [replace(record, writer=self.writer, seq=self._writes) for record in records]
        self.store.put_records(records)

    def _pending(self, todo: _Todo) -> DocumentRecord:
        """The record saying a new version is being written; the committed one (if any) stays visible."""
        old = todo.record
        if old is None:
            return DocumentRecord(todo.source, str(todo.root), pending=todo.doc_hash)
        return replace(old, pending=todo.doc_hash, stale=True)

    def _present(self, todo: _Todo) -> set[str]:
        """Chunks of this version already stored by a run that was cut short: they are not written again."""
        if todo.record is None or todo.record.pending != todo.doc_hash:
            return set()
        ids = {chunk_id for chunk_id, doc_hash in self.store.versions(todo.source) if doc_hash == todo.doc_hash}
        if ids and todo.source not in self._broken:
            self.report.resumed.append(todo.source)
        return ids

    def _fence(self) -> None:
        """Stop unless the writer lock is still ours (see `server_lock.ServerLock.check`)."""
        self.fence()
        crashpoints.step("fenced")

    def _commit(
        self,
        todo: _Todo,
        title: str,
        count: int,
        tokens: int,
        written: int,
        ids: str,
        total: VectorSum,
        counts: TermCounts,
    ) -> None:
        """Name the new version in the manifest (searches show it from now on), then delete the others. `ids` is
        the digest of its chunk ids (see `integrity`), `total` the sum of its chunk vectors (see `centring`),
        `counts` its term counts (see `focus`)."""
        old = todo.record
        dated = self._dating.pop(todo.source, None)
        record = DocumentRecord(
            todo.source, str(todo.root), title, doc_hash=todo.doc_hash, stale=old is not None,
            chunks=count, tokens=tokens,
            effective=dated.effective if dated else "", expires=dated.expires if dated else "",
            superseded_by=dated.superseded_by if dated else "", meta=RECORD_META, digest=ids,
            vector_sum=total.text(), terms=counts.text(), words=counts.words_text(),
        )  # fmt: skip
        self._put([record])
        self.report.chunks_written += written
        new = old is None or not old.committed
        kind = "repaired" if todo.source in self._broken else "added" if new else "updated"
        listed = self.report.repaired if kind == "repaired" else self.report.added if new else self.report.updated
        listed.append(todo.source)
        if old is not None:
            self._delete_stale(record)
        self.event(kind, todo.source)

    def _delete_stale(self, record: DocumentRecord) -> None:
        stale = [chunk_id for chunk_id, doc_hash in self.store.versions(record.source) if doc_hash != record.doc_hash]
        self._keep(stale)
        self._delete(stale)
        self.report.chunks_deleted += len(stale)
        self._put([replace(record, pending="", stale=False)])

    def _remove(self, record: DocumentRecord) -> None:
        """Hide the document first (its record names no version), then delete its chunks, then the record."""
        self._put([replace(record, doc_hash="", pending="", stale=True)])
        ids = [chunk_id for chunk_id, _ in self.store.versions(record.source)]
        self._keep(ids)
        self._delete(ids)
        self._fence()
        self.store.drop_record(record.source)
        self.report.chunks_deleted += len(ids)
        committed = record.committed or record.source in self._broken  # (the check hid a broken one)
        if not committed:  # a removal, or a first write, that an earlier run did not finish
            self.report.resumed.append(record.source)
        if committed or not record.pending:
            self.report.removed.append(record.source)
            self.event("removed", record.source)

    def _keep(self, ids: list[str]) -> None:
        """Archive chunks about to be deleted (unless retention is 0 days)."""
        if self.keep_versions_days != 0:
            self.store.archive(ids, int(time.time()))

    def _delete(self, ids: list[str]) -> None:
        for start in range(0, len(ids), self.group_chunks):
            self._fence()  # a stalled writer must not delete the chunks of a version its successor committed
            self.store.delete(ids[start : start + self.group_chunks])
            self.progress("delete", min(start + self.group_chunks, len(ids)), len(ids))

    # -- vectors ------------------------------------------------------------------------------------------

    def _vectors(
        self, documents: Sequence[list[Chunk]], wanted: Sequence[list[int]], starts: Sequence[int] | None = None
    ) -> list[np.ndarray]:
        """For each document, the vectors of its chunks at `wanted` positions: reused from the store by vector
        key where possible, else embedded (each chunk alone) and mixed with the embeddings of its window and its
        block text. A slice of one large document passes that document's `text_groups` once computed."""
        reach, weight = self.neighbours.window, self.neighbours.weight
        found = self.store.vectors_for_keys(
            chunks[i].vector_key for chunks, indices in zip(documents, wanted, strict=True) for i in indices
        )
        block_weight = self.neighbours.block_weight
        texts: dict[str, str] = {}  # content hash (of a chunk or a block text) -> text to embed alone
        blocks: list[dict[int, str]] = []
        for chunks, indices in zip(documents, wanted, strict=True):
            blocks.append(block_texts(chunks, starts, indices) if block_weight else {})
            for index in indices:
                if chunks[index].vector_key in found:
                    continue
                for position in window(index, len(chunks), reach):
                    texts.setdefault(chunks[position].content_hash, chunks[position].embedding_text)
                if block_weight:
                    text = blocks[-1][chunks[index].block]
                    texts.setdefault(sha256(text), text)
        alone = self._embed(texts)
        result = []
        for chunks, indices, block_text in zip(documents, wanted, blocks, strict=True):
            rows = []
            for index in indices:
                chunk = chunks[index]
                if chunk.vector_key in found:
                    self.report.chunks_reused += 1
                    rows.append(found[chunk.vector_key])
                    continue
                around = [alone[chunks[j].content_hash] for j in window(index, len(chunks), reach)]
                vector = mix(alone[chunk.content_hash], np.stack(around), weight)
                if block_weight:
                    vector = with_block(vector, alone[sha256(block_text[chunk.block])], block_weight)
                rows.append(vector)
            result.append(np.stack(rows) if rows else np.zeros((0, 0), dtype=np.float32))
        return result

    def _embed(self, texts: dict[str, str]) -> dict[str, np.ndarray]:
        """Embed `texts` (by key) in batches, reporting progress."""
        vectors: dict[str, np.ndarray] = {}
        if not texts:
            return vectors
        # Longest first, as sentence-transformers orders one call: each batch then pads to similar lengths.
        ordered = sorted(texts, key=lambda key: len(texts[key]), reverse=True)
        for start in range(0, len(ordered), EMBED_BATCH):
            batch = ordered[start : start + EMBED_BATCH]
            vectors.update(zip(batch, self.embedder.embed([texts[key] for key in batch]), strict=True))
            crashpoints.step("embed")
            self.report.chunks_embedded += len(batch)
            self.progress("embed", self.report.chunks_embedded, 0)
        return vectors


class _ParseFailure(Exception):
    """A large document's chunking failed part way (see `_Parsed`)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _unparsable(error: Exception) -> str:
    return f"cannot parse: {type(error).__name__}: {error}"


class _Parsed:
    """A chunk stream whose own failures (not the store's) come out as _ParseFailure."""

    def __init__(self, stream: Iterator[Chunk]) -> None:
        self._stream = stream

    def __iter__(self) -> Iterator[Chunk]:
        return self

    def __next__(self) -> Chunk:
        try:
            return next(self._stream)
        except (StopIteration, RagPromptsError):
            raise
        except Exception as error:
            raise _ParseFailure(_unparsable(error)) from error
