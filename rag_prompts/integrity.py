"""The check each ingest starts with: is every committed document whole in the store, and nothing else there?

A server writer that stalls just after its lock check (see `server_lock`) can still send one deletion batch after
another writer broke its lock and committed, and a stalled compact its switch to a copy made before that writer's
commits: Chroma has no conditional write, so neither can be refused. Either leaves a committed document missing
chunks. The next ingest finds and rewrites it, so the store converges whatever such a write did:

- the quick form: when every record is clean and carries the digest of its version's chunk ids, the collection
  must hold exactly those chunks, so its count and the sum of its ids' digests must match the records' (one
  ids-only read of the collection);
- the exact form, when the quick one cannot tell or fails: every chunk's source and version are read, and each
  committed document is checked against its record's count.

The digest of a set of ids is the sum, modulo 2**128, of a 128-bit hash of each id, so it can be computed a slice
at a time and summed over documents; two different sets of ids share one by chance only (about 2**-128).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from .manifest import DocumentRecord
from .store import ChunkStore

_MODULUS = 1 << 128
_EVERY = 5000  # chunks read between progress reports


def digest(ids: Iterable[str], start: str = "") -> str:
    """The digest of `ids` (32 hex digits), added to the digest `start` of other ids ("" none)."""
    total = int(start or "0", 16)
    for chunk_id in ids:
        total += int.from_bytes(hashlib.blake2b(chunk_id.encode("utf-8"), digest_size=16).digest(), "big")
    return f"{total % _MODULUS:032x}"


def combined(digests: Iterable[str]) -> str:
    """The digest of the union of disjoint sets of ids, from theirs."""
    return f"{sum(int(value or '0', 16) for value in digests) % _MODULUS:032x}"


@dataclass(frozen=True)
class Audit:
    """What the check found. `broken`: committed documents missing chunks of their version; `stale`: clean
    records whose source also has chunks of another version; `orphans`: ids of chunks whose source has no record
    (readers would show them); `digests`: the digest a whole committed document's record lacks (older records)."""

    exact: bool = False
    broken: list[str] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)
    orphans: list[str] = field(default_factory=list)
    digests: dict[str, str] = field(default_factory=dict)

    @property
    def whole(self) -> bool:
        return not (self.broken or self.stale or self.orphans)


def _counted(items: Iterable[str], total: int, progress: Callable[[int, int], None]) -> Iterator[str]:
    for done, item in enumerate(items, 1):
        yield item
        if done % _EVERY == 0 or done == total:
            progress(done, total)


def audit(
    store: ChunkStore, records: Mapping[str, DocumentRecord], progress: Callable[[int, int], None] = lambda d, t: None
) -> Audit:
    """Check the store's chunks against its manifest `records` (see the module docstring); `progress(done, total)`
    is told the chunks read so far."""
    committed = [record for record in records.values() if record.committed]
    quick = all(record.clean and record.digest for record in records.values())
    expected, total = combined(record.digest for record in committed), store.count()
    counted = quick and total == sum(record.chunks for record in committed)
    if counted and digest(_counted(store.ids(), total, progress)) == expected:
        return Audit()
    found: dict[tuple[str, str], list[str]] = {}
    for done, (chunk_id, source, doc_hash) in enumerate(store.chunk_versions(), 1):
        found.setdefault((source, doc_hash), []).append(chunk_id)
        if done % _EVERY == 0 or done == total:
            progress(done, total)
    orphans = [chunk_id for (source, _), ids in found.items() if source not in records for chunk_id in ids]
    stale = sorted(
        {source for source, doc_hash in found if source in records and doc_hash != records[source].doc_hash}
        & {record.source for record in records.values() if record.clean}
    )
    broken, digests = [], {}
    for record in committed:
        ids = found.get((record.source, record.doc_hash), [])
        value = digest(ids)
        if len(ids) != record.chunks or record.digest not in ("", value):
            broken.append(record.source)
        elif not record.digest:
            digests[record.source] = value
    return Audit(True, sorted(broken), stale, orphans, digests)


__all__ = ["Audit", "audit", "combined", "digest"]
