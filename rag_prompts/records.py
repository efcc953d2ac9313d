"""Frozen records passed between the pipeline stages: Document -> Chunk -> Hit -> ComposedPrompt."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Heading:
    """A heading found in a document: its level (1 = title), text and character offsets."""

    level: int
    title: str
    start: int  # offset of the heading line
    body_start: int  # offset just after the heading line


@dataclass(frozen=True)
class Document:
    """One loaded document. Offsets of chunks and headings index into `text`."""

    source: str  # POSIX path relative to the ingest root
    root: str  # absolute path of the ingest root
    title: str
    text: str
    headings: tuple[Heading, ...] = ()
    tags: tuple[str, ...] = ()
    body_start: int = 0  # where content starts (after Markdown front matter)
    effective: str = ""  # ISO date from front matter: in force from this day ("" always)
    expires: str = ""  # ISO date: in force up to and including this day ("" no end)
    superseded_by: str = ""  # the source that replaces it once that one takes effect


@dataclass(frozen=True)
class Chunk:
    """A token-bounded piece of one section of a document; `text == document.text[start:end]`."""

    id: str
    source: str
    root: str
    title: str
    section: str  # heading path, e.g. "Claims Handling Manual > Approval Authority"
    start: int
    end: int
    text: str
    tokens: int
    content_hash: str
    doc_hash: str
    tags: tuple[str, ...] = ()
    ordinal: int = -1  # position among the document's chunks; -1 when unknown (stored by an older version)
    vector_key: str = ""  # what the stored vector was computed from (see `context.vector_keys`)
    nearby: tuple[str, ...] = ()  # ids of its block mates and of up to NEARBY chunks on each side, in order
    block: int = -1  # which block (paragraph, list item, clause, or a piece of a long one) of the document it is in
    clause: str = ""  # the list marker or clause number its block starts with ("12.3", "(b)"), if any
    clause_block: int = -1  # a piece of a long numbered clause: the block its first piece is (see `chunking`)
    new_line: bool = False  # whether it starts a new line inside its block (a table row, a wrapped line)
    lead: str = ""  # the whitespace between the previous stored chunk of its document and it, if only that

    @property
    def embedding_text(self) -> str:
        """What is embedded: the heading path gives the passage its context."""
        return f"{self.section}\n\n{self.text}"


@dataclass(frozen=True)
class Hit:
    """A chunk returned by a search, with its similarity score (cosine similarity, higher is better)."""

    chunk: Chunk
    score: float


@dataclass(frozen=True)
class IncludedChunk:
    """A chunk placed in a composed message; `tokens` is what its labelled block costs in the message.
    `context` marks a chunk added next to a packed passage with budget left after k (not one of the k)."""

    id: str
    source: str
    section: str
    start: int  # includes the whitespace before the chunk when the message joins it to the one before
    end: int
    score: float
    tokens: int
    context: bool = False
    doc_hash: str = ""  # the document version it was taken from
    pinned: bool = False  # a pinned section of the agent's profile, not retrieved


@dataclass(frozen=True)
class DroppedChunk:
    """A retrieved candidate that was left out, and why."""

    id: str
    source: str
    section: str
    score: float
    tokens: int
    reason: str


@dataclass(frozen=True)
class ComposedPrompt:
    """A system message composed for one task, with its exact token count under the budget."""

    system_message: str
    tokens: int
    budget: int
    encoding: str
    chunks: tuple[IncludedChunk, ...] = ()
    dropped: tuple[DroppedChunk, ...] = field(default=())
    id: str = ""  # names this composition in the payload log (`rag-prompts audit show ID`)
    as_of: str = ""  # the date whose documents in force were used (ISO)
    task_sha256: str = ""  # the hash of the task text composed for
    base_message: str = ""  # as sent (stripped), so the message can be rebuilt from the store
    header: str = ""
    block_template: str = ""
    merge: bool = True
