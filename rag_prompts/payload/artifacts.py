"""Tool outputs too large for a prompt: stored on disk with a page index, replaced by a reference with a head/tail
excerpt, and read back page by page through a tool the agent is given.

Each stored output is a folder `<id>/` holding the text (`output.txt`) and its page index (`pages.json`: the byte
offset where each page starts). Both are written into a hidden folder that is renamed into place in one step, so a
reader sees the output with its index or not at all. The pages are cut once, when the output is stored, so reading
any page is a seek and a read. An output belongs to the agent that stored it: its id is derived from the agent's
name and the text, and another agent's reader refuses it. Nothing in the folder is read through a symbolic link.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import itertools
import json
import os
import re
import shutil
import stat
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import RagPromptsError
from ..tokens import TokenCounter
from .history import cut_text

_ID = re.compile(r"^[0-9a-f]{16}$")
READ_TOOL_NAME = "read_stored_output"
READ_TOOL_DESCRIPTION = "Read a tool output that was stored outside the conversation, by its id, one page at a time."
PAGE_HEADER_TOKENS = 40  # "[stored output <id>, page N of M]\n": 16 hex digits can take 16 tokens, 30 at most seen
TEXT_FILE = "output.txt"
INDEX_FILE = "pages.json"
_SLICE = 1 << 20  # characters hashed at a time, so a large output is never encoded whole
_REGION = 4 << 20  # characters one worker thread cuts into pages
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_UTF8 = ("utf-8", "surrogatepass")  # a tool may return lone surrogates; they are stored and read back as they were


@dataclass(frozen=True)
class StoredOutput:
    id: str
    chars: int
    tokens: int  # the sum of its pages' tokens
    pages: int


class ArtifactStore:
    """One agent's stored tool outputs in `folder` (shared by every agent; each reads only its own).

    `owner` is the agent's name: it goes into every id this store makes, and a page of an output stored under
    another owner is refused."""

    def __init__(self, folder: str | Path, owner: str = "") -> None:
        self.folder = Path(folder)
        self.owner = owner

    def output_id(self, text: str) -> str:
        digest = hashlib.sha256(self.owner.encode(*_UTF8) + b"\0")
        for start in range(0, len(text), _SLICE):
            digest.update(text[start : start + _SLICE].encode(*_UTF8))
        return digest.hexdigest()[:16]

    def put(self, text: str, counter: TokenCounter, page_tokens: int) -> StoredOutput:
        """Store `text` (once: the same text from the same owner keeps one copy), its pages cut to `page_tokens`
        tokens each, the page header included."""
        artifact_id = self.output_id(text)
        final = self.folder / artifact_id
        existing = self._existing(final)
        if existing is not None:
            return _stored(artifact_id, existing)
        self.folder.mkdir(parents=True, exist_ok=True)
        partial = self.folder / f".partial-{artifact_id}-{os.getpid()}-{os.urandom(4).hex()}"
        partial.mkdir()
        try:
            layout = _layout_key(counter, page_tokens)
            offsets, tokens = _write_pages(text, partial / TEXT_FILE, page_tokens - PAGE_HEADER_TOKENS, counter)
            index = {"version": 1, "owner": self.owner, "chars": len(text), "tokens": tokens,
                     "layouts": {layout: offsets}}  # fmt: skip
            _write_json(partial / INDEX_FILE, index)
            _fsync(partial)
            try:
                partial.rename(final)  # the text and its index appear together
            except OSError as error:
                if error.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                    raise
                existing = self._existing(final)  # stored meanwhile by another process
                if existing is None:
                    raise
                return _stored(artifact_id, existing)
            _fsync(self.folder)
        finally:
            shutil.rmtree(partial, ignore_errors=True)
        _sweep(self.folder)
        return StoredOutput(artifact_id, len(text), tokens, len(offsets) - 1)

    def _existing(self, final: Path) -> dict[str, Any] | None:
        """The index of a complete stored output at `final`, or None; a symlink or stray file there is removed."""
        try:
            mode = os.lstat(final).st_mode
        except FileNotFoundError:
            return None
        if not stat.S_ISDIR(mode):
            final.unlink()  # never followed, never kept: the output is written afresh
            return None
        try:
            index = self._index(final.name)
            _stored(final.name, index)
            return index
        except (RagPromptsError, ValueError, KeyError, IndexError, TypeError):
            # Not one this store completed (its index is missing or damaged): kept aside, never deleted, and
            # written afresh.
            with contextlib.suppress(FileNotFoundError):  # another process set it aside first
                final.rename(final.with_name(f".damaged-{final.name}-{os.urandom(4).hex()}"))
            return None

    def _index(self, artifact_id: str) -> dict[str, Any]:
        return dict(json.loads(self._read(artifact_id, INDEX_FILE)))

    def _read(self, artifact_id: str, name: str, start: int = 0, end: int | None = None) -> bytes:
        """Bytes `start:end` of a file of a stored output; symlinks (the folder or the file) are refused."""
        if not _ID.match(artifact_id):
            raise RagPromptsError(f"{artifact_id!r} is not a stored output id (16 hex digits)")
        try:
            folder = os.open(self.folder / artifact_id, os.O_RDONLY | os.O_DIRECTORY | _NOFOLLOW)
        except FileNotFoundError as error:
            raise RagPromptsError(f"no stored output {artifact_id!r} in {self.folder}") from error
        except OSError as error:  # ELOOP / ENOTDIR: a symlink or a file where a folder should be
            raise RagPromptsError(f"stored output {artifact_id!r} is not a plain folder; not read") from error
        try:
            handle = os.open(name, os.O_RDONLY | _NOFOLLOW, dir_fd=folder)
        except OSError as error:
            raise RagPromptsError(f"stored output {artifact_id!r} has no readable {name}") from error
        finally:
            os.close(folder)
        with os.fdopen(handle, "rb") as file:
            file.seek(start)
            return file.read() if end is None else file.read(end - start)

    def page(self, artifact_id: str, page: int, max_tokens: int, counter: TokenCounter) -> str:
        """Page `page` (from 1) of a stored output of this owner, the whole reply within `max_tokens`."""
        index = self._index(artifact_id)
        if index.get("owner") != self.owner:
            raise RagPromptsError(f"stored output {artifact_id} was stored by another agent; it is not readable here")
        offsets = self._offsets(artifact_id, index, max_tokens, counter)
        pages = len(offsets) - 1
        if not 1 <= page <= pages:
            return f"[stored output {artifact_id} has pages 1 to {pages}; page {page} does not exist]"
        text = self._read(artifact_id, TEXT_FILE, offsets[page - 1], offsets[page]).decode(*_UTF8)
        return f"[stored output {artifact_id}, page {page} of {pages}]\n{text}"

    def _offsets(self, artifact_id: str, index: dict[str, Any], max_tokens: int, counter: TokenCounter) -> list[int]:
        """The page starts for pages of `max_tokens` in `counter`'s encoding: from the index, else cut now and
        added to it (the agent's cap or encoding changed since the output was stored)."""
        layout = _layout_key(counter, max_tokens)
        if layout in index["layouts"]:
            return list(index["layouts"][layout])
        text = self._read(artifact_id, TEXT_FILE).decode(*_UTF8)
        offsets = [0]
        for start, end, _ in all_page_spans(text, max_tokens - PAGE_HEADER_TOKENS, counter):
            offsets.append(offsets[-1] + len(text[start:end].encode(*_UTF8)))
        index["layouts"][layout] = offsets
        with contextlib.suppress(OSError):  # a read-only folder: cut again next time
            _write_json(self.folder / artifact_id / INDEX_FILE, index)  # the folder was just opened without links
        return offsets


def _sweep(folder: Path, older_than: float = 3600.0) -> None:
    """Remove what stores killed mid-write left behind (hidden partial folders over an hour old)."""
    cutoff = time.time() - older_than
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.name.startswith(".partial-") and entry.stat(follow_symlinks=False).st_mtime < cutoff:
                if entry.is_dir(follow_symlinks=False):
                    shutil.rmtree(entry.path, ignore_errors=True)
                else:
                    os.unlink(entry.path)


def _stored(artifact_id: str, index: dict[str, Any]) -> StoredOutput:
    layouts = list(index["layouts"].values())
    return StoredOutput(artifact_id, int(index["chars"]), int(index["tokens"]), len(layouts[0]) - 1)


def _layout_key(counter: TokenCounter, page_tokens: int) -> str:
    return f"{counter.encoding_name}:{page_tokens}"


def _write_pages(text: str, path: Path, max_tokens: int, counter: TokenCounter) -> tuple[list[int], int]:
    """Write `text` page by page; the byte offset of each page start (and the end), and the tokens of all pages."""
    offsets, tokens = [0], 0
    with path.open("wb") as file:
        for start, end, count in all_page_spans(text, max_tokens, counter):
            data = text[start:end].encode(*_UTF8)
            file.write(data)
            offsets.append(offsets[-1] + len(data))
            tokens += count
        file.flush()
        os.fsync(file.fileno())
    return offsets, tokens


def _write_json(path: Path, value: Any) -> None:
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    with partial.open("w", encoding="utf-8") as file:
        json.dump(value, file, separators=(",", ":"))
        file.flush()
        os.fsync(file.fileno())
    partial.replace(path)


def _fsync(folder: Path) -> None:
    handle = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


def page_spans(
    text: str, max_tokens: int, counter: TokenCounter, start: int = 0, stop: int | None = None
) -> Iterator[tuple[int, int, int]]:
    """(start, end, tokens) of consecutive pages that cover `text[start:stop]` exactly, each at most `max_tokens`
    tokens, ending after a line break (else a space) where one is near the end. Each page is counted about once: its
    length is guessed from the characters per token seen so far, and shrunk only when the count says it is over."""
    if max_tokens < 1:
        raise RagPromptsError(f"pages of {max_tokens} tokens cannot hold text; raise `tool_output_tokens`")
    size = len(text) if stop is None else stop
    target, ratio = max(1, max_tokens * 9 // 10), 4.0
    while start < size:
        length = max(1, int(target * ratio))
        for _ in range(8):
            end = _cut_point(text, start, min(size, start + length), size)
            tokens = counter.count(text[start:end])
            if end - start <= 1 or (tokens <= max_tokens and (tokens * 2 >= max_tokens or end == size)):
                break  # within the cap and at least half full (or a single character, which cannot be cut)
            grown = max(1, int((end - start) * target / max(tokens, 1)))
            if tokens <= max_tokens and grown <= end - start:
                break
            length = grown
        if tokens > max_tokens and end - start > 1:  # still over after every guess: find the cut by counting
            end = start + max(1, len(counter.truncate(text[start:end], max_tokens)))
            tokens = counter.count(text[start:end])
        ratio = max(0.25, (end - start) / max(tokens, 1))
        yield start, end, tokens
        start = end


def all_page_spans(text: str, max_tokens: int, counter: TokenCounter) -> list[tuple[int, int, int]]:
    """`page_spans` of the whole text; a long text is cut into regions paginated side by side (tiktoken counts
    outside the GIL, so each core takes a region)."""
    bounds = [0]
    while len(text) - bounds[-1] > _REGION:
        bounds.append(_cut_point(text, bounds[-1], bounds[-1] + _REGION, len(text)))
    bounds.append(len(text))
    regions = list(itertools.pairwise(bounds))
    workers = min(len(regions), len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1)
    if workers <= 1:
        return list(page_spans(text, max_tokens, counter))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        parts = pool.map(lambda region: list(page_spans(text, max_tokens, counter, *region)), regions)
        return [span for part in parts for span in part]


def _cut_point(text: str, start: int, end: int, stop: int) -> int:
    """`end`, or a little before it, just after a line break (else a space) in the page's last quarter; `stop`
    where the text (or its region) ends."""
    if end >= stop:
        return stop
    floor = start + (end - start) * 3 // 4
    for mark in ("\n", " "):
        found = text.rfind(mark, floor, end)
        if found >= 0:
            return found + 1
    return end


def offload(text: str, max_tokens: int, store: ArtifactStore, counter: TokenCounter) -> tuple[str, StoredOutput | None]:
    """`text` if it fits `max_tokens`; otherwise it is stored and replaced by a reference with its size and a
    head/tail excerpt, all within `max_tokens`."""
    if not _over(text, max_tokens, counter):
        return text, None
    stored = store.put(text, counter, max_tokens)
    reference = (
        f"[tool output stored outside the prompt: id {stored.id}, {stored.chars:,} characters, {stored.tokens:,}"
        f' tokens. Read it with {READ_TOOL_NAME}(output_id="{stored.id}", page=1), one page at a time.'
        " Excerpt (head and tail):]\n"
    )
    excerpt = cut_text(text, max(0, max_tokens - counter.count(reference)), counter, over=True)
    return counter.truncate(reference + excerpt, max_tokens), stored


def _over(text: str, max_tokens: int, counter: TokenCounter) -> bool:
    """Whether `text` is over `max_tokens`, without tokenizing all of a very long text: a prefix over the cap
    decides (a text far longer than any cap is counted only that far)."""
    probe = 64 * max_tokens + 1024
    if len(text) <= probe:
        return counter.count(text) > max_tokens
    return counter.count(text[:probe]) > max_tokens or counter.count(text) > max_tokens


def stored_output_reader(artifacts: ArtifactStore, max_tokens: int, counter: TokenCounter) -> Callable[[str, int], str]:
    """`read_stored_output(output_id, page=1)`: the tool an agent reads its stored outputs back with, one page
    within `max_tokens` at a time; a bad id or page is answered in words, never raised at the model."""

    def read_stored_output(output_id: str, page: int = 1) -> str:
        """Read a tool output that was stored outside the conversation, by its id, one page at a time."""
        try:
            return artifacts.page(output_id, page, max_tokens, counter)
        except RagPromptsError as error:
            return f"[{error}]"
        except (OSError, ValueError, KeyError) as error:  # a damaged index or file
            return f"[stored output {output_id!r} could not be read: {type(error).__name__}]"

    return read_stored_output
