"""Reclaiming the vector-index folders chromadb leaves behind in an embedded store.

An embedded store keeps each collection's vector index in a folder of the store named by the id of the
collection's VECTOR segment (the `segments` table of the store's `chroma.sqlite3`). chromadb 1.5.9 drops the
segment's row with its collection but leaves the folder on disk (chroma-core/chroma#5520), so every
collection a compact drops would leak its index. This module reads the segment table directly (plain
sqlite3, read-only) and removes only UUID-named folders of the store's own directory that no segment
names any more: never a folder a live segment uses, never anything else.
"""

from __future__ import annotations

import shutil
import sqlite3
import uuid
from dataclasses import dataclass
from pathlib import Path

DATABASE = "chroma.sqlite3"


@dataclass(frozen=True)
class Reclaimed:
    """Index folders removed (their names), and those that could not be removed (name and reason)."""

    removed: tuple[str, ...]
    failed: tuple[tuple[str, str], ...]


def _query(store: Path, sql: str, parameters: tuple[str, ...] = ()) -> set[str]:
    connection = sqlite3.connect(f"{(store / DATABASE).resolve().as_uri()}?mode=ro", uri=True, timeout=30)
    try:
        return {str(row[0]) for row in connection.execute(sql, parameters)}
    finally:
        connection.close()


def vector_segments(store: Path, collections: list[str]) -> set[str]:
    """The VECTOR segment ids of the named collections (read before they are dropped)."""
    if not collections or not (store / DATABASE).is_file():
        return set()
    marks = ",".join("?" for _ in collections)
    return _query(
        store,
        "SELECT s.id FROM segments s JOIN collections c ON s.collection = c.id"
        f" WHERE s.scope = 'VECTOR' AND c.name IN ({marks})",
        tuple(collections),
    )


def index_folders(store: Path) -> set[str]:
    """The UUID-named folders of the store's directory (where chromadb keeps its vector indexes)."""
    found = set()
    for entry in store.iterdir():
        if entry.is_dir() and not entry.is_symlink() and _is_uuid(entry.name):
            found.add(entry.name)
    return found


def live_segments(store: Path) -> set[str]:
    """Every segment id the store's database still names, of any collection and any scope."""
    return _query(store, "SELECT id FROM segments")


def reclaim(store: Path, dropped: set[str], *, sweep: bool = True) -> Reclaimed:
    """Remove the index folders of the segments in `dropped` and, with `sweep`, any other UUID-named folder no
    live segment names (what earlier drops leaked). The folders are listed before the segment table is read,
    so a collection created meanwhile is seen as live. Nothing a live segment names is touched."""
    if not (store / DATABASE).is_file():
        return Reclaimed((), ())
    candidates = index_folders(store)
    live = live_segments(store)
    removed: list[str] = []
    failed: list[tuple[str, str]] = []
    targets = (candidates if sweep else dropped & candidates) - live
    for name in sorted(targets):
        try:
            shutil.rmtree(store / name)
        except OSError as error:
            failed.append((name, f"{type(error).__name__}: {error}"))
        else:
            removed.append(name)
    return Reclaimed(tuple(removed), tuple(failed))


def _is_uuid(name: str) -> bool:
    try:
        return str(uuid.UUID(name)) == name
    except ValueError:
        return False
