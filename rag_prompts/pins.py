"""Pinned clauses: profile entries "source#Section" resolved to the stored chunks of that section.

A pin names a document's source path and a section by its heading path ("Manual > Approval Authority") or its
last heading alone ("Approval Authority"). Every error names the agent and the pin.
"""

from __future__ import annotations

from collections.abc import Sequence

from .errors import ConfigError
from .records import Chunk, Hit
from .store import ChunkStore

PIN_SCORE = 1.0  # what a pinned chunk is scored as in the message's record (it was not retrieved)


def split_pin(pin: str) -> tuple[str, str]:
    """(source, section) of "source#Section"; a pin without both parts is a ConfigError."""
    source, mark, section = pin.partition("#")
    if not mark or not source.strip() or not section.strip():
        raise ConfigError(f"pin {pin!r}: write it as 'folder/file.md#Section heading'")
    return source.strip(), section.strip()


def _matches(chunk: Chunk, section: str) -> bool:
    path = [part.strip() for part in chunk.section.split(" > ")]
    wanted = [part.strip() for part in section.split(" > ")]
    return path[-len(wanted) :] == wanted


def resolve_pins(store: ChunkStore, agent: str, pins: Sequence[str], tags: Sequence[str] = ()) -> list[Hit]:
    """The chunks of every pinned section, pin by pin, in document order (no chunk twice). A pin naming a
    source not in the store, a section it lacks, or a document outside the agent's `tags` is a ConfigError."""
    committed = store.committed()
    found: list[Hit] = []
    seen: set[str] = set()
    for pin in pins:
        source, section = split_pin(pin)
        record = committed.get(source)
        if record is None:
            raise ConfigError(f"agent {agent!r}: pin {pin!r}: no document {source!r} in the store (ingest it first)")
        ids = [chunk_id for chunk_id, doc_hash in store.versions(source) if doc_hash == record.doc_hash]
        chunks = store.chunks(ids)
        matching = sorted((chunk for chunk in chunks if _matches(chunk, section)), key=lambda chunk: chunk.ordinal)
        if not matching:
            sections = sorted({chunk.section.split(" > ")[-1] for chunk in chunks})
            raise ConfigError(
                f"agent {agent!r}: pin {pin!r}: {source} has no section {section!r};"
                f" its sections: {', '.join(sections)}"
            )
        if tags and not set(tags) & set(matching[0].tags):
            raise ConfigError(
                f"agent {agent!r}: pin {pin!r}: {source} carries tags {list(matching[0].tags)}, outside the agent's"
                f" tags {list(tags)}; pin a document the agent may see or widen its tags"
            )
        for chunk in matching:
            if chunk.id not in seen:
                seen.add(chunk.id)
                found.append(Hit(chunk, PIN_SCORE))
    return found
