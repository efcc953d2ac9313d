"""Tool outputs too large for a prompt: stored on disk by id, replaced by a reference with a head/tail excerpt,
and read back page by page through a tool the agent is given."""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .errors import RagPromptsError
from .history import cut_text
from .tokens import TokenCounter

_ID = re.compile(r"^[0-9a-f]{16}$")
READ_TOOL_NAME = "read_stored_output"
READ_TOOL_DESCRIPTION = "Read a tool output that was stored outside the conversation, by its id, one page at a time."


@dataclass(frozen=True)
class StoredOutput:
    id: str
    chars: int
    tokens: int


class ArtifactStore:
    """Tool outputs as files named by the hash of their text (storing one twice keeps one file)."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)

    def put(self, text: str, counter: TokenCounter) -> StoredOutput:
        artifact_id = hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
        path = self.folder / f"{artifact_id}.txt"
        if not path.exists():
            self.folder.mkdir(parents=True, exist_ok=True)
            partial = path.with_suffix(f".{os.getpid()}.partial")
            partial.write_text(text, "utf-8")
            partial.replace(path)  # readers never see half a file
        return StoredOutput(artifact_id, len(text), counter.count(text))

    def text(self, artifact_id: str) -> str:
        if not _ID.match(artifact_id):
            raise RagPromptsError(f"{artifact_id!r} is not a stored output id (16 hex digits)")
        path = self.folder / f"{artifact_id}.txt"
        if not path.exists():
            raise RagPromptsError(f"no stored output {artifact_id!r} in {self.folder}")
        return path.read_text("utf-8")

    def page(self, artifact_id: str, page: int, max_tokens: int, counter: TokenCounter) -> str:
        """Page `page` (from 1) of a stored output, the whole reply within `max_tokens`."""
        pages = paginate(self.text(artifact_id), max_tokens - PAGE_HEADER_TOKENS, counter)
        if not 1 <= page <= len(pages):
            return f"[stored output {artifact_id} has pages 1 to {len(pages)}; page {page} does not exist]"
        header = f"[stored output {artifact_id}, page {page} of {len(pages)}]\n"
        return counter.truncate(header + pages[page - 1], max_tokens)


PAGE_HEADER_TOKENS = 24  # "[stored output <id>, page N of M]\n" with room to spare


def paginate(text: str, max_tokens: int, counter: TokenCounter) -> list[str]:
    """`text` cut into consecutive pages of at most `max_tokens` tokens each, preferring line breaks."""
    pages: list[str] = []
    rest = text
    while rest:
        page = counter.truncate(rest, max(1, max_tokens))
        if not page:  # one character over the limit on its own: take it anyway
            page = rest[:1]
        elif len(page) < len(rest):
            newline = page.rfind("\n")
            if newline > len(page) // 2:
                page = page[: newline + 1]
        pages.append(page)
        rest = rest[len(page) :]
    return pages or [""]


def offload(text: str, max_tokens: int, store: ArtifactStore, counter: TokenCounter) -> tuple[str, StoredOutput | None]:
    """`text` if it fits `max_tokens`; otherwise it is stored and replaced by a reference with its size and a
    head/tail excerpt, all within `max_tokens`."""
    if counter.count(text) <= max_tokens:
        return text, None
    stored = store.put(text, counter)
    reference = (
        f"[tool output stored outside the prompt: id {stored.id}, {stored.chars:,} characters, {stored.tokens:,}"
        f' tokens. Read it with {READ_TOOL_NAME}(output_id="{stored.id}", page=1), one page at a time.'
        " Excerpt (head and tail):]\n"
    )
    excerpt = cut_text(text, max(0, max_tokens - counter.count(reference)), counter)
    return counter.truncate(reference + excerpt, max_tokens), stored


def stored_output_reader(artifacts: ArtifactStore, max_tokens: int, counter: TokenCounter) -> Callable[[str, int], str]:
    """`read_stored_output(output_id, page=1)`: the tool an agent reads a stored output back with, one page
    within `max_tokens` at a time; a bad id or page is answered in words, never raised at the model."""

    def read_stored_output(output_id: str, page: int = 1) -> str:
        """Read a tool output that was stored outside the conversation, by its id, one page at a time."""
        try:
            return artifacts.page(output_id, page, max_tokens, counter)
        except RagPromptsError as error:
            return f"[{error}]"

    return read_stored_output
