"""Orchestrates files -> Document -> Chunk -> vectors -> store, incrementally and idempotently.

An unchanged file (same bytes, same chunking settings) is skipped without loading; an edited one has its
new chunks written before its stale ones are deleted; files gone from an ingested folder lose their chunks.
A file that fails to load is reported and skipped, and whatever the store held for it is kept.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from .chunking import chunk_document
from .context import mix, vector_keys, window
from .embed import Embedder
from .errors import LoadError, RagPromptsError
from .loaders import SUPPORTED_SUFFIXES, load_document
from .records import Chunk
from .store import SCHEMA_VERSION, ChunkStore, StoredDocument
from .tokens import TokenCounter

CHUNKER_VERSION = 4  # 2: chunks record their ordinal; 3: context-aware vectors; 4: blocks
EMBED_BATCH = 256


@dataclass(frozen=True)
class Context:
    """How chunk vectors take in their neighbours (see `context`); window 0 embeds each chunk alone."""

    window: int = 2
    weight: float = 0.5


ProgressFn = Callable[[str, int, int], None]
"""Called as progress(stage, done, total); stage is "embed" while vectors are computed."""


@dataclass(frozen=True)
class Failure:
    path: str
    reason: str


@dataclass
class IngestReport:
    """What one ingest run did; `ok` is False when any file failed."""

    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    failed: list[Failure] = field(default_factory=list)
    chunks_embedded: int = 0
    chunks_reused: int = 0
    chunks_written: int = 0
    chunks_deleted: int = 0
    seconds: float = 0.0

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
            "chunks_embedded": self.chunks_embedded,
            "chunks_reused": self.chunks_reused,
            "chunks_written": self.chunks_written,
            "chunks_deleted": self.chunks_deleted,
            "seconds": round(self.seconds, 3),
        }


@dataclass
class _Plan:
    source: str
    path: str
    chunks: list[Chunk]
    old_ids: list[str]
    is_new: bool


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
    embedder: Embedder,
    counter: TokenCounter,
    chunk_tokens: int,
    context: Context = Context(),
    progress: ProgressFn | None = None,
    on_event: Callable[[str, str], None] | None = None,
) -> IngestReport:
    """Bring the store in line with the documents under `paths` and report what changed."""
    began = time.perf_counter()
    report = IngestReport()
    event = on_event or (lambda kind, what: None)
    fingerprint = (
        f"chunker={CHUNKER_VERSION};tokens={chunk_tokens};encoding={counter.encoding_name}"
        f";context={context.window},{context.weight};store_schema={SCHEMA_VERSION}"
    )
    stored = store.documents()
    seen: dict[str, Path] = {}
    plans: list[_Plan] = []
    vanished: list[StoredDocument] = []
    for requested in dict.fromkeys(Path(path).expanduser().resolve() for path in paths):
        if not requested.exists():
            report.failed.append(Failure(str(requested), "no such file or directory"))
            event("failed", f"{requested}: no such file or directory")
            continue
        scan = _scan(requested)
        for file in scan.files:
            source = file.relative_to(scan.root).as_posix()
            if source in seen:
                reason = f"same relative path {source!r} as {seen[source]}; ingest one of the two folders"
                report.failed.append(Failure(str(file), reason))
                event("failed", f"{file}: {reason}")
                continue
            seen[source] = file
            outcome = _plan_file(
                file, scan.root, source, stored.get(source), fingerprint, counter, chunk_tokens, context
            )
            if isinstance(outcome, _Plan):
                plans.append(outcome)
            elif isinstance(outcome, Failure):
                report.failed.append(outcome)
                event("failed", f"{outcome.path}: {outcome.reason}")
            else:
                report.unchanged.append(source)
        if scan.prune:
            root = str(scan.root)
            vanished.extend(entry for source, entry in stored.items() if entry.root == root and source not in seen)
    vectors = _vectors_for(plans, store, embedder, context, report, progress)  # before deletions: renames reuse
    for plan in plans:
        _write(plan, vectors, store, report)
        event("added" if plan.is_new else "updated", plan.source)
    for entry in vanished:
        store.delete(entry.chunk_ids)
        report.removed.append(entry.source)
        report.chunks_deleted += len(entry.chunk_ids)
        event("removed", entry.source)
    report.seconds = time.perf_counter() - began
    return report


def _plan_file(
    file: Path,
    root: Path,
    source: str,
    stored: StoredDocument | None,
    fingerprint: str,
    counter: TokenCounter,
    chunk_tokens: int,
    context: Context,
) -> _Plan | Failure | None:
    """The chunks to store for one file, a Failure, or None when the stored copy is up to date."""
    try:
        data = file.read_bytes()
    except OSError as error:
        return Failure(str(file), f"cannot read file: {error.strerror or error}")
    doc_hash = document_hash(data, fingerprint)
    if stored is not None and stored.doc_hashes == {doc_hash} and stored.root == str(root):
        return None
    try:
        document = load_document(file, root)
        chunks = chunk_document(document, counter, chunk_tokens, doc_hash)
        keys = vector_keys(chunks, context.window, context.weight)
        chunks = [replace(chunk, vector_key=key) for chunk, key in zip(chunks, keys, strict=True)]
    except LoadError as error:
        return Failure(str(file), error.reason)
    except RagPromptsError:
        raise
    except Exception as error:  # a parser library choking on one file must not stop the others
        return Failure(str(file), f"cannot parse: {type(error).__name__}: {error}")
    return _Plan(source, str(file), chunks, stored.chunk_ids if stored else [], is_new=stored is None)


def _vectors_for(
    plans: Sequence[_Plan],
    store: ChunkStore,
    embedder: Embedder,
    context: Context,
    report: IngestReport,
    progress: ProgressFn | None,
) -> dict[str, np.ndarray]:
    """Vectors by vector key for every chunk to write: reused from the store where possible, else embedded
    (each chunk alone) and mixed with the vectors of its window."""
    vectors = store.vectors_for_keys(chunk.vector_key for plan in plans for chunk in plan.chunks)
    report.chunks_reused = len(vectors)
    to_mix: list[tuple[_Plan, int]] = []
    texts: dict[str, str] = {}  # content hash -> text to embed alone
    for plan in plans:
        for index, chunk in enumerate(plan.chunks):
            if chunk.vector_key in vectors:
                continue
            to_mix.append((plan, index))
            for position in window(index, len(plan.chunks), context.window):
                texts.setdefault(plan.chunks[position].content_hash, plan.chunks[position].embedding_text)
    alone = _embed(texts, embedder, report, progress)
    for plan, index in to_mix:
        chunk = plan.chunks[index]
        around = [alone[plan.chunks[j].content_hash] for j in window(index, len(plan.chunks), context.window)]
        vectors[chunk.vector_key] = mix(alone[chunk.content_hash], np.stack(around), context.weight)
    return vectors


def _embed(
    texts: dict[str, str], embedder: Embedder, report: IngestReport, progress: ProgressFn | None
) -> dict[str, np.ndarray]:
    """Embed `texts` (by key) in batches, reporting progress."""
    vectors: dict[str, np.ndarray] = {}
    # Longest first, as sentence-transformers orders one call: each batch then pads to similar lengths.
    ordered = sorted(texts, key=lambda key: len(texts[key]), reverse=True)
    for start in range(0, len(ordered), EMBED_BATCH):
        batch = ordered[start : start + EMBED_BATCH]
        vectors.update(zip(batch, embedder.embed([texts[key] for key in batch]), strict=True))
        report.chunks_embedded += len(batch)
        if progress is not None:
            progress("embed", report.chunks_embedded, len(ordered))
    return vectors


def _write(plan: _Plan, vectors: dict[str, np.ndarray], store: ChunkStore, report: IngestReport) -> None:
    """Every chunk first (a kept one may have new neighbours, so a new vector), then stale deletions: a crash
    never loses a document."""
    stale = sorted(set(plan.old_ids) - {chunk.id for chunk in plan.chunks})
    try:
        if plan.chunks:
            store.add(plan.chunks, np.stack([vectors[chunk.vector_key] for chunk in plan.chunks]))
        store.delete(stale)
    except Exception as error:  # keep going with the other documents; what was stored stays
        report.failed.append(Failure(plan.path, f"cannot write to the store: {error}"))
        return
    (report.added if plan.is_new else report.updated).append(plan.source)
    report.chunks_written += len({chunk.id for chunk in plan.chunks} - set(plan.old_ids))
    report.chunks_deleted += len(stale)
