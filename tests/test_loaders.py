"""Each file type loads into text with headings at the right offsets; bad files raise a LoadError naming the file."""

from __future__ import annotations

from pathlib import Path

import pytest

from rag_prompts import LoadError
from rag_prompts.loaders import load_document

from .conftest import CORPUS, write

MARKDOWN = """---
title: Gifts Policy
tags: [People, customer-facing]
---
# Gifts Policy

Intro paragraph.

## Limits

### Cash Gifts

Never accept cash.
"""


def test_markdown_front_matter_headings_and_folder_tags(tmp_path: Path) -> None:
    path = write(tmp_path / "hr" / "gifts.md", MARKDOWN)
    document = load_document(path, tmp_path)
    assert document.source == "hr/gifts.md"
    assert document.title == "Gifts Policy"
    assert document.tags == ("hr", "people", "customer-facing")
    assert document.text == path.read_text("utf-8")  # offsets index the file's own text
    assert [(h.level, h.title) for h in document.headings] == [(1, "Gifts Policy"), (2, "Limits"), (3, "Cash Gifts")]
    for heading in document.headings:
        assert document.text[heading.start :].startswith("#" * heading.level + " " + heading.title)
    assert document.text[document.body_start :].startswith("# Gifts Policy")


def test_markdown_heading_inside_code_fence_is_not_a_heading(tmp_path: Path) -> None:
    path = write(tmp_path / "a.md", "# Title\n\n```\n# not a heading\n```\n\n## Real\n\ntext\n")
    assert [h.title for h in load_document(path, tmp_path).headings] == ["Title", "Real"]


def test_text_file_headings_and_exact_text(tmp_path: Path) -> None:
    text = "Access Procedure\n================\n\n1. Leavers\n\nRemove access within 1 hour.\n\n"
    text += "1.1 Dismissals\n\nAt once.\n"
    path = write(tmp_path / "it" / "access.txt", text)
    document = load_document(path, tmp_path)
    assert document.text == text
    assert document.title == "Access Procedure"
    assert [(h.level, h.title) for h in document.headings] == [
        (1, "Access Procedure"),
        (2, "1. Leavers"),
        (3, "1.1 Dismissals"),
    ]
    assert document.tags == ("it",)


def test_numbered_lines_that_are_not_headings(tmp_path: Path) -> None:
    """A contract's contents entries, a body line a page break left alone, and table rows are not headings: each
    would otherwise become the section every later chunk is embedded and labelled with."""
    lines = [
        "SUPPLY AGREEMENT", "",
        "13.17 Certain Conventions. 47", "",  # contents entries, page numbers last
        "13.18 Counterparts ........ 48", "",
        "7. FINANCIAL PROVISIONS20", "",
        "2.4 Remedies iii", "",
        "1. Definitions", "",
        "The terms below have these meanings.", "",
        "6.3.5 Manner of Payment. All payments under this Agreement shall be made by wire transfer or", "",
        "16   Mb 16    Miscanthus  [***]   [***]", "",  # table rows
        "541 North Riverside 1,447 505 1,372", "",
        "2.1 Delivery terms for the", "",  # cut off mid-sentence
        "7.   WARRANTIES. LIMITED LIABILITY", "",
        "Each party warrants its authority.", "",
        "12.      TERM AND TERMINATION", "",
        "This Agreement runs for three years.", "",
        "13. Exhibit A", "",
        "The price list.", "",
    ]  # fmt: skip
    text = "\n".join(lines)
    document = load_document(write(tmp_path / "supply.txt", text), tmp_path)
    assert [h.title for h in document.headings] == [
        "1. Definitions",
        "7.   WARRANTIES. LIMITED LIABILITY",
        "12.      TERM AND TERMINATION",
        "13. Exhibit A",
    ]
    for heading in document.headings:
        assert text[heading.start :].startswith(heading.title)


def test_html_blocks_tables_and_headings(tmp_path: Path) -> None:
    html = (
        "<html><head><title>Retention</title><style>p{}</style></head><body><h1>Retention Schedule</h1>"
        "<p>Keep records.</p><h2>Periods</h2><table><tr><th>Record</th><th>Period</th></tr>"
        "<tr><td>Claim files</td><td>7 years</td></tr></table><script>alert(1)</script></body></html>"
    )
    document = load_document(write(tmp_path / "r.html", html), tmp_path)
    assert "Claim files | 7 years" in document.text
    assert "alert" not in document.text and "p{}" not in document.text
    assert [(h.level, h.title) for h in document.headings] == [(1, "Retention Schedule"), (2, "Periods")]
    for heading in document.headings:
        assert document.text[heading.start :].startswith(heading.title)


def test_pdf_text_is_extracted(tmp_path: Path) -> None:
    from reportlab.pdfgen import canvas

    path = tmp_path / "policy.pdf"
    pdf = canvas.Canvas(str(path))
    pdf.drawString(72, 720, "Refunds above $5,000 need the Head of Finance.")
    pdf.save()
    document = load_document(path, tmp_path)
    assert "Head of Finance" in document.text


def test_docx_headings_paragraphs_and_tables(tmp_path: Path) -> None:
    import docx

    word = docx.Document()
    word.add_heading("Travel Policy", level=1)
    word.add_paragraph("Book through TravelDesk.")
    word.add_heading("Hotels", level=2)
    table = word.add_table(rows=1, cols=2)
    table.rows[0].cells[0].text, table.rows[0].cells[1].text = "Tier 1", "$340"
    path = tmp_path / "travel.docx"
    word.save(str(path))
    document = load_document(path, tmp_path)
    assert document.title == "Travel Policy"
    assert [(h.level, h.title) for h in document.headings] == [(1, "Travel Policy"), (2, "Hotels")]
    assert "Tier 1 | $340" in document.text
    for heading in document.headings:
        assert document.text[heading.start :].startswith(heading.title)


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("binary.txt", b"\x00\x01\x02binary", "binary"),
        ("latin1.md", "Caf\xe9 policy".encode("latin-1"), "not valid UTF-8 (byte 0xe9 at offset 3)"),
        ("empty.md", b"---\ntitle: x\n---\n   \n", "empty document"),
        ("broken.pdf", b"%PDF-1.4 this is not really a pdf", "PDF"),
        ("broken.docx", b"PK\x03\x04 not a zip", "DOCX"),
        ("bad-front-matter.md", b"---\ntitle: [unclosed\n---\n# T\n", "front matter"),
    ],
)
def test_bad_files_raise_load_error_naming_file_and_reason(
    tmp_path: Path, name: str, content: bytes, reason: str
) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(LoadError) as caught:
        load_document(path, tmp_path)
    assert caught.value.path == str(path)
    assert reason in str(caught.value)


def test_unreadable_path_is_a_load_error(tmp_path: Path) -> None:
    folder = tmp_path / "looks-like-a-file.md"
    folder.mkdir()
    with pytest.raises(LoadError, match="cannot read file"):
        load_document(folder, tmp_path)


def test_every_sample_corpus_document_loads() -> None:
    files = [path for path in CORPUS.rglob("*") if path.suffix in {".md", ".txt", ".html"}]
    assert len(files) >= 15
    for path in files:
        document = load_document(path, CORPUS)
        assert document.headings, path
        assert document.title, path
