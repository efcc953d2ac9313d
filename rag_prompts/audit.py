"""The audit trail: which calls the payload log holds, and each call's system message rebuilt from the store.

Every payload-log line written for a composed message carries its `audit` fields (see `payload.record`): the
composition id, the task's hash, the date whose documents were in force, and each injected chunk's source,
document version, section, characters, score and kind. A message is rebuilt from the chunks of exactly those
versions, read from the store or, once replaced, from its archive (kept by ingest; see `keep_versions_days`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from .compose import assemble
from .errors import AuditError
from .payload.log import read_log
from .store import ChunkStore
from .tokens import token_counter


@dataclass(frozen=True)
class Rebuilt:
    """A logged call's system message as rebuilt, and whether it is the one sent (its hash matches the log)."""

    call_id: str
    system_message: str
    tokens: int
    matches_log: bool


def audited_calls(path: str | Path) -> list[dict[str, Any]]:
    """The payload-log rows that carry audit fields, oldest first."""
    return [row for row in read_log(path) if isinstance(row.get("audit"), dict)]


def list_calls(
    rows: Iterable[Mapping[str, Any]], agent: str | None = None, since: date | None = None
) -> list[dict[str, Any]]:
    """One line per call: when, which agent, the composition id, the date in force, and what was injected."""
    listed = []
    for row in rows:
        audit = row["audit"]
        if (agent and row["agent"] != agent) or (since and str(row.get("time", ""))[:10] < since.isoformat()):
            continue
        chunks = audit.get("chunks", [])
        listed.append({
            "id": audit["id"], "time": row.get("time", ""), "agent": row["agent"], "call": row.get("call", 0),
            "as_of": audit.get("as_of", ""), "tokens": audit.get("tokens", 0),
            "pinned": sum(chunk["kind"] == "pinned" for chunk in chunks),
            "retrieved": sum(chunk["kind"] == "retrieved" for chunk in chunks),
            "sources": sorted({chunk["source"] for chunk in chunks}),
        })  # fmt: skip
    return listed


def find_call(rows: Sequence[Mapping[str, Any]], call_id: str) -> Mapping[str, Any]:
    """The row of the call whose composition id is `call_id` (or starts with it, when that is unambiguous)."""
    matches = {row["audit"]["id"]: row for row in rows if str(row["audit"]["id"]).startswith(call_id)}
    if call_id in matches:
        return matches[call_id]
    if len(matches) != 1 or not call_id:
        found = "no call" if not matches else f"{len(matches)} calls"
        raise AuditError(f"{found} with id {call_id!r} in the payload log; `rag-prompts audit list` shows the ids")
    return next(iter(matches.values()))


def rebuild(store: ChunkStore, row: Mapping[str, Any]) -> Rebuilt:
    """The logged call's system message, rebuilt byte for byte from the document versions it was given.

    Raises AuditError naming each source whose version is no longer stored (removed by retention)."""
    audit = row["audit"]
    wanted = [chunk["id"] for chunk in audit["chunks"]]
    found = {chunk.id: chunk for chunk in store.chunks(wanted)}
    missing = [chunk_id for chunk_id in wanted if chunk_id not in found]
    found.update({chunk.id: chunk for chunk in store.archived(missing)})
    gone = [chunk for chunk in audit["chunks"] if chunk["id"] not in found]
    if gone:
        versions = sorted({f"{chunk['source']} (version {chunk['doc_hash'][:12]})" for chunk in gone})
        raise AuditError(
            f"call {audit['id']}: cannot rebuild: the store no longer holds {', '.join(versions)}"
            " (removed under `keep_versions_days`); the log still lists what was injected (`--json`)"
        )
    pinned = frozenset(chunk["id"] for chunk in audit["chunks"] if chunk["kind"] == "pinned")
    message, tokens = assemble(
        audit["base_message"], audit["header"], audit["block_template"], bool(audit["merge"]),
        [found[chunk_id] for chunk_id in wanted], pinned, token_counter(audit["encoding"]),
    )  # fmt: skip
    digest = hashlib.sha256(message.encode("utf-8")).hexdigest()
    return Rebuilt(str(audit["id"]), message, tokens, digest == audit["message_sha256"])
