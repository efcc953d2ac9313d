"""Effective dating: which documents are in force on a date, from their front matter.

A document may say `effective: 2026-01-01` and either `expires: 2026-12-31` or `superseded_by: other/source.md`
(in force until the day before that document takes effect). Undated documents are always in force.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from .errors import ConfigError, LoadError

DATE_KEYS = ("effective", "expires")
_AS_OF: ContextVar[date | None] = ContextVar("rag_prompts_as_of", default=None)


@dataclass(frozen=True)
class Dating:
    """When one document is in force: ISO dates ("" when not given) and the source that replaces it."""

    source: str
    effective: str = ""
    expires: str = ""
    superseded_by: str = ""


def dating_from(meta: Mapping[str, Any], source: str, path: str) -> Dating:
    """The dating front matter of one document; a bad value is a LoadError naming the file and the key."""
    values: dict[str, str] = {}
    for key in DATE_KEYS:
        raw = meta.get(key)
        if raw is None:
            continue
        try:
            values[key] = (raw if isinstance(raw, date) else date.fromisoformat(str(raw).strip())).isoformat()
        except ValueError as error:
            raise LoadError(path, f"front matter `{key}`: {raw!r} is not a date; write it as YYYY-MM-DD") from error
    superseded = meta.get("superseded_by")
    if superseded is not None and (not isinstance(superseded, str) or not superseded.strip()):
        raise LoadError(path, f"front matter `superseded_by`: {superseded!r} is not a source path like claims/x.md")
    if values.get("effective") and values.get("expires") and values["expires"] < values["effective"]:
        raise LoadError(path, f"front matter `expires` ({values['expires']}) is before `effective`")
    return Dating(source, values.get("effective", ""), values.get("expires", ""), (superseded or "").strip())


def parse_day(value: str | date | None, key: str = "as_of") -> date | None:
    """A date given as `date` or YYYY-MM-DD text; anything else is a ConfigError naming `key`."""
    if value is None or isinstance(value, date):
        return value.date() if isinstance(value, datetime) else value
    try:
        return date.fromisoformat(value.strip())
    except ValueError as error:
        raise ConfigError(f"{key}: {value!r} is not a date; write it as YYYY-MM-DD") from error


def today() -> date:
    return datetime.now(UTC).date()


@contextlib.contextmanager
def policies_as_of(day: str | date) -> Iterator[None]:
    """Every message composed inside this block (any agent, any face) uses the documents in force on `day`:
    the date of the case in hand (date of loss, date received). Asyncio tasks started inside inherit it."""
    token = _AS_OF.set(parse_day(day))
    try:
        yield
    finally:
        _AS_OF.reset(token)


def current_as_of() -> date | None:
    """The date set by an enclosing `policies_as_of` block, if any."""
    return _AS_OF.get()


def out_of_force(datings: Iterable[Dating], day: date) -> frozenset[str]:
    """The sources not in force on `day`: not yet effective, expired, or superseded by a document in force."""
    by_source = {dating.source: dating for dating in datings}
    iso = day.isoformat()
    excluded = set()
    for dating in by_source.values():
        if dating.effective and iso < dating.effective or dating.expires and iso > dating.expires:
            excluded.add(dating.source)
        elif dating.superseded_by:
            successor = by_source.get(dating.superseded_by)
            if successor is not None and (not successor.effective or iso >= successor.effective):
                excluded.add(dating.source)
    return frozenset(excluded)
