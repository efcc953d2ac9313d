"""Labelled retrieval datasets: a `docs/` folder plus `queries.jsonl` (qid, query, doc_id, gold spans)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from ..errors import ConfigError, LoadError
from .metrics import Span


def doc_id_of(source: str) -> str:
    """A document's id: its file name without the extension (`claims/manual.md` -> `manual`)."""
    return PurePosixPath(source).stem


def sources_by_doc_id(sources: Iterable[str]) -> dict[str, list[str]]:
    """Stored sources grouped by document id, to restrict a query with a `doc_id` to its document."""
    grouped: dict[str, list[str]] = {}
    for source in sources:
        grouped.setdefault(doc_id_of(source), []).append(source)
    return grouped


def restriction(doc_id: str | None, sources: dict[str, list[str]]) -> list[str]:
    """The sources a query may draw from: its document's (a missing one matches nothing), or all when None."""
    if doc_id is None:
        return []
    return sources.get(doc_id, [f"{doc_id}.missing"])


@dataclass(frozen=True)
class Query:
    qid: str
    query: str
    doc_id: str | None  # retrieval is restricted to this document when set
    gold: tuple[Span, ...] = ()
    target_doc_id: str | None = None  # the document a whole-corpus query is about, when the dataset says


@dataclass(frozen=True)
class Dataset:
    name: str
    docs: Path
    queries: tuple[Query, ...]


def read_queries(path: Path, *, need_gold: bool = False) -> Iterator[Query]:
    """Queries from a JSONL file; a malformed line is a LoadError naming the file and line."""
    try:
        lines = path.read_text("utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise LoadError(str(path), f"cannot read: {error}") from error
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            yield _query(json.loads(line), need_gold)
        except (ValueError, TypeError, KeyError) as error:
            raise LoadError(f"{path}:{number}", f"bad query: {error}") from error


def _query(row: dict[str, Any], need_gold: bool) -> Query:
    if not isinstance(row.get("query"), str) or not row["query"].strip():
        raise ValueError("`query` must be a non-empty string")
    gold = tuple((str(g["doc_id"]), int(g["start"]), int(g["end"])) for g in row.get("gold") or ())
    if need_gold and not gold:
        raise ValueError("`gold` must list at least one {doc_id, start, end}")
    if any(end < start for _, start, end in gold):
        raise ValueError("a gold span ends before it starts")
    return Query(
        qid=str(row.get("qid", "")),
        query=row["query"],
        doc_id=None if row.get("doc_id") is None else str(row["doc_id"]),
        gold=gold,
        target_doc_id=None if row.get("target_doc_id") is None else str(row["target_doc_id"]),
    )


def load_dataset(folder: str | Path) -> Dataset:
    """A dataset folder: documents under `docs/` (any supported format) and labelled `queries.jsonl`."""
    root = Path(folder)
    docs, queries = root / "docs", root / "queries.jsonl"
    if not docs.is_dir():
        raise ConfigError(f"{root}: no docs/ folder (a dataset is docs/ plus queries.jsonl)")
    if not queries.is_file():
        raise ConfigError(f"{root}: no queries.jsonl (a dataset is docs/ plus queries.jsonl)")
    return Dataset(root.resolve().name, docs, tuple(read_queries(queries, need_gold=True)))
