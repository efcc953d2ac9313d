"""Files -> Document: Markdown, plain text, HTML, PDF and DOCX, with headings located by character offset."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from .dating import dating_from
from .errors import LoadError
from .records import Document, Heading

SUPPORTED_SUFFIXES = (".md", ".markdown", ".txt", ".html", ".htm", ".pdf", ".docx")

_FRONT_MATTER = re.compile(r"\A---[ \t]*\r?\n(.*?\r?\n)---[ \t]*(?:\r?\n|\Z)", re.DOTALL)
_NUMBERED_HEADING = re.compile(r"^(\d+(?:\.\d+)*)\.?[ \t]+([A-Z][^\n]{0,100})$")
# What a numbered line alone on a line can be other than a heading (its text after the number):
_PAGE_NUMBER = re.compile(r"(?:\.{2,}|[.\s])\s*(?:\d{1,4}|[ivxlcdm]{1,7})$", re.IGNORECASE)  # a contents entry
_GLUED_PAGE_NUMBER = re.compile(r"[A-Z]{3,}\d{1,3}$")  # "FINANCIAL PROVISIONS20"
_SENTENCE_INSIDE = re.compile(r"[.;:]\s+[A-Z]?[a-z]+\s+[a-z(]")  # "Payment. All payments under": body text
_CUT_OFF = re.compile(  # a sentence a page break cut: it ends on a word no heading ends on ("Exhibit A" does)
    r"\b(?:a|an|and|any|at|be|by|for|in|is|its|of|on|or|shall|such|that|the|their|to|with)$"
)
_COLUMN_GAP = re.compile(r"\s{3,}")
_FIGURE = re.compile(r"\b\d[\d,.]*\b")
_UNDERLINE = re.compile(r"^(=+|-+)[ \t]*$")


def decode_text(data: bytes, path: str) -> str:
    """Strict UTF-8 (a BOM is dropped); binary or undecodable input is a LoadError naming the offset."""
    if b"\x00" in data[:8192]:
        raise LoadError(path, "binary file (NUL bytes found), not text")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise LoadError(
            path, f"not valid UTF-8 (byte 0x{data[error.start]:02x} at offset {error.start}); re-save it as UTF-8"
        ) from error


def _line_offsets(text: str) -> list[int]:
    offsets = [0]
    for index, char in enumerate(text):
        if char == "\n":
            offsets.append(index + 1)
    return offsets


class _FrontMatterLoader(yaml.SafeLoader):
    """Safe YAML that leaves dates as text: `dating` checks them and names the key at fault."""


_FrontMatterLoader.yaml_implicit_resolvers = {
    first: [resolver for resolver in resolvers if resolver[0] != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _front_matter(text: str, path: str) -> tuple[dict[str, Any], int]:
    match = _FRONT_MATTER.match(text)
    if not match:
        return {}, 0
    try:
        data = yaml.load(match.group(1), Loader=_FrontMatterLoader) or {}  # noqa: S506 (a SafeLoader)
    except yaml.YAMLError as error:
        raise LoadError(path, f"invalid YAML front matter: {error}") from error
    if not isinstance(data, dict):
        raise LoadError(path, "front matter must be a YAML mapping")
    return data, match.end()


def _markdown_headings(text: str, body_start: int) -> list[Heading]:
    from markdown_it import MarkdownIt

    body = text[body_start:]
    lines = _line_offsets(body)
    tokens = MarkdownIt("commonmark").parse(body)
    headings = []
    for index, token in enumerate(tokens):
        if token.type != "heading_open" or token.map is None:
            continue
        first, last = token.map
        start = body_start + lines[first]
        body_from = body_start + (lines[last] if last < len(lines) else len(body))
        headings.append(Heading(int(token.tag[1]), tokens[index + 1].content.strip(), start, body_from))
    return headings


def _text_headings(text: str) -> list[Heading]:
    """Setext titles (a line underlined with === or ---) and numbered headings ("2.1 Name") alone on a line."""
    lines = text.split("\n")
    offsets = _line_offsets(text)
    headings: list[Heading] = []
    for number, line in enumerate(lines):
        stripped = line.strip()
        before_blank = number == 0 or not lines[number - 1].strip()
        next_line = lines[number + 1] if number + 1 < len(lines) else ""
        if stripped and before_blank and _UNDERLINE.match(next_line) and len(next_line.strip()) >= 3:
            level = 1 if next_line.strip()[0] == "=" else 2
            end = offsets[number + 2] if number + 2 < len(offsets) else len(text)
            headings.append(Heading(level, stripped, offsets[number], end))
            continue
        match = _NUMBERED_HEADING.match(stripped)
        after_blank = not next_line.strip()
        if match and before_blank and after_blank and numbered_heading(stripped):
            level = 1 + match.group(1).count(".") + 1
            end = offsets[number + 1] if number + 1 < len(offsets) else len(text)
            headings.append(Heading(level, stripped, offsets[number], end))
    return headings


def numbered_heading(line: str) -> bool:
    """Whether one line reads as a numbered heading ("2.1 Registration Information"): a number, then a heading's
    text (see `_heading_text`)."""
    match = _NUMBERED_HEADING.match(line.strip())
    return bool(match and _heading_text(match.group(2)))


def _heading_text(text: str) -> bool:
    """Whether the text after a line's number reads as a heading: not a sentence ("…; or", "… Term."), not a
    contents entry ("Counterparts. 47", "Term ........ 12"), not a line of body text a page break left alone
    ("Manner of Payment. All payments under this …"), not a table row (columns, or several figures)."""
    text = text.rstrip()
    return not (
        text.endswith((".", ":", ";", ","))
        or _PAGE_NUMBER.search(text)
        or _GLUED_PAGE_NUMBER.search(text)
        or _SENTENCE_INSIDE.search(text)
        or _CUT_OFF.search(text)
        or len(_COLUMN_GAP.findall(text)) >= 2
        or len(_FIGURE.findall(text)) >= 3
    )


def _folder_tags(source: str) -> tuple[str, ...]:
    return tuple(part.lower() for part in PurePosixPath(source).parts[:-1])


def _merge_tags(*groups: Any) -> tuple[str, ...]:
    tags: list[str] = []
    for group in groups:
        for tag in [group] if isinstance(group, str) else group or ():
            text = str(tag).strip().lower()
            if text and text not in tags:
                tags.append(text)
    return tuple(tags)


def _title_from(headings: list[Heading], fallback: str) -> str:
    top = [heading for heading in headings if heading.level == 1]
    return top[0].title if top else fallback


def load_markdown(data: bytes, source: str, root: str, path: str) -> Document:
    text = decode_text(data, path)
    meta, body_start = _front_matter(text, path)
    headings = _markdown_headings(text, body_start)
    title = str(meta.get("title") or _title_from(headings, PurePosixPath(source).stem))
    tags = _merge_tags(_folder_tags(source), meta.get("tags"))
    dating = dating_from(meta, source, path)
    return Document(
        source, root, title, text, tuple(headings), tags, body_start,
        dating.effective, dating.expires, dating.superseded_by,
    )  # fmt: skip


def load_text(data: bytes, source: str, root: str, path: str) -> Document:
    text = decode_text(data, path)
    headings = _text_headings(text)
    title = _title_from(headings, PurePosixPath(source).stem)
    return Document(source, root, title, text, tuple(headings), _folder_tags(source))


_HTML_BLOCKS = ("h1", "h2", "h3", "h4", "h5", "h6", "p", "li", "tr", "pre", "blockquote", "dt", "dd", "caption")


def load_html(data: bytes, source: str, root: str, path: str) -> Document:
    """Visible text, one block element a paragraph; table rows as 'cell | cell'; h1-h6 become headings."""
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(decode_text(data, path), "html.parser")
    for hidden in soup(["script", "style", "noscript", "template"]):
        hidden.decompose()
    parts: list[str] = []
    headings: list[Heading] = []
    offset = 0
    for element in soup.find_all(_HTML_BLOCKS):
        if element.find_parent(_HTML_BLOCKS) is not None:
            continue  # its text is part of the enclosing block
        if element.name == "tr":
            cells = [cell.get_text(" ", strip=True) for cell in element.find_all(["th", "td"])]
            block = " | ".join(cell for cell in cells if cell)
        elif element.name == "pre":
            block = element.get_text().strip("\n")
        else:
            block = " ".join(element.get_text(" ", strip=True).split())
        if not block:
            continue
        if element.name == "li":
            block = "- " + block
        if element.name in ("h1", "h2", "h3", "h4", "h5", "h6"):
            headings.append(Heading(int(element.name[1]), block, offset, offset + len(block) + 1))
        parts.append(block)
        offset += len(block) + 2
    text = "\n\n".join(parts)
    if not text.strip() and soup.body is not None:
        text = soup.body.get_text("\n", strip=True)
    page_title = soup.title.get_text(strip=True) if soup.title else ""
    title = _title_from(headings, page_title or PurePosixPath(source).stem)
    return Document(source, root, title, text, tuple(headings), _folder_tags(source))


def load_pdf(data: bytes, source: str, root: str, path: str) -> Document:
    import io

    from pypdf import PdfReader
    from pypdf.errors import PyPdfError

    try:
        reader = PdfReader(io.BytesIO(data))
        pages = [(page.extract_text() or "").strip() for page in reader.pages]
        metadata_title = (reader.metadata.title if reader.metadata else None) or ""
    except (PyPdfError, ValueError, KeyError, TypeError, AttributeError) as error:
        raise LoadError(path, f"corrupt or unreadable PDF: {error}") from error
    text = "\n\n".join(page for page in pages if page)
    return Document(source, root, metadata_title or PurePosixPath(source).stem, text, (), _folder_tags(source))


def load_docx(data: bytes, source: str, root: str, path: str) -> Document:
    """Paragraphs and tables in body order; paragraphs styled 'Title' or 'Heading N' become headings."""
    import io
    import zipfile

    import docx
    from docx.table import Table

    try:
        document = docx.Document(io.BytesIO(data))
    except (zipfile.BadZipFile, KeyError, ValueError) as error:
        raise LoadError(path, f"corrupt or unreadable DOCX: {error}") from error
    parts: list[str] = []
    headings: list[Heading] = []
    offset = 0
    for item in document.iter_inner_content():
        if isinstance(item, Table):
            rows = [" | ".join(cell.text.strip() for cell in row.cells if cell.text.strip()) for row in item.rows]
            block = "\n".join(row for row in rows if row)
            style = ""
        else:
            block = item.text.strip()
            style = item.style.name if item.style is not None else ""
        if not block:
            continue
        level = 1 if style == "Title" else _heading_level(style)
        if level:
            headings.append(Heading(level, block, offset, offset + len(block) + 1))
        parts.append(block)
        offset += len(block) + 2
    title = document.core_properties.title or _title_from(headings, PurePosixPath(source).stem)
    return Document(source, root, title, "\n\n".join(parts), tuple(headings), _folder_tags(source))


def _heading_level(style: str) -> int:
    match = re.fullmatch(r"Heading (\d)", style)
    return int(match.group(1)) if match else 0


_LOADERS: dict[str, Callable[[bytes, str, str, str], Document]] = {
    ".md": load_markdown,
    ".markdown": load_markdown,
    ".txt": load_text,
    ".html": load_html,
    ".htm": load_html,
    ".pdf": load_pdf,
    ".docx": load_docx,
}


def load_document(path: Path, root: Path) -> Document:
    """Load one file; `source` is its path relative to `root`. Raises LoadError naming the file and reason."""
    shown = str(path)
    loader = _LOADERS.get(path.suffix.lower())
    if loader is None:
        raise LoadError(shown, f"unsupported file type {path.suffix!r}; supported: {', '.join(SUPPORTED_SUFFIXES)}")
    try:
        data = path.read_bytes()
    except OSError as error:
        raise LoadError(shown, f"cannot read file: {error.strerror or error}") from error
    source = path.relative_to(root).as_posix()
    document = loader(data, source, str(root), shown)
    if not document.text[document.body_start :].strip():
        raise LoadError(shown, "empty document: no text to index")
    return document
