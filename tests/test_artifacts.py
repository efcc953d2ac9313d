"""Stored tool outputs: pages cut once at store time cover the output exactly and each fits the cap (counted with
real tiktoken); the text and its index appear together or not at all; an output is readable only by the agent
that stored it; nothing is read through a symbolic link."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rag_prompts.payload import artifacts
from rag_prompts.payload.artifacts import (
    INDEX_FILE,
    PAGE_HEADER_TOKENS,
    TEXT_FILE,
    ArtifactStore,
    offload,
    page_spans,
    stored_output_reader,
)
from rag_prompts.tokens import TokenCounter

CAP = 600


def multibyte_export(rows: int, seed: int = 7) -> str:
    """A JSON-lines export mixing 1- to 4-byte UTF-8 characters, with long lines and runs without any break."""
    rng = random.Random(seed)
    words = ["claim", "Überprüfung", "审查", "страхование", "😀🚒", "é", "x" * 40, "  ", "\t", "ß", "\u200b"]
    lines = []
    for n in range(rows):
        note = " ".join(rng.choice(words) for _ in range(rng.randint(1, 40)))
        line = json.dumps({"claim": f"CLM-{n:06d}", "note": note}, ensure_ascii=False)
        lines.append(line + ("" if n % 97 == 0 else "\n"))  # some records run into the next one
    return "".join(lines)


def read_all(read: object, output_id: str) -> list[str]:
    assert callable(read)
    first = read(output_id, 1)
    total = int(first.split("\n", 1)[0].rsplit(" of ", 1)[1].rstrip("]"))
    return [first] + [read(output_id, page) for page in range(2, total + 1)]


def test_pages_of_a_multi_megabyte_output_cover_it_exactly(
    tmp_path: Path, counter: TokenCounter, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(artifacts, "_REGION", 400_000)  # cut in regions side by side, as a 50 MB output is
    text = multibyte_export(12_000)
    assert len(text.encode("utf-8")) > 3_000_000 and len(text.encode("utf-8")) > len(text) * 1.2
    store = ArtifactStore(tmp_path, owner="claims_triage")
    reference, stored = offload(text, CAP, store, counter)
    assert stored is not None and f"id {stored.id}" in reference and counter.count(reference) <= CAP
    replies = read_all(stored_output_reader(store, CAP, counter), stored.id)
    assert len(replies) == stored.pages > 1_000
    start = 0
    for number, reply in enumerate(replies, 1):
        header, page = reply.split("\n", 1)
        assert header == f"[stored output {stored.id}, page {number} of {stored.pages}]"
        assert counter.count(reply) <= CAP  # the whole reply, header included, with the agent's encoding
        assert page and text[start : start + len(page)] == page  # every boundary falls where the last page ended
        start += len(page)
    assert start == len(text) and "".join(reply.split("\n", 1)[1] for reply in replies) == text
    assert stored.tokens == sum(counter.count(reply.split("\n", 1)[1]) for reply in replies)
    sizes = [counter.count(reply.split("\n", 1)[1]) for reply in replies[:-1]]
    short = [size for size in sizes if size < (CAP - PAGE_HEADER_TOKENS) // 2]
    assert len(short) <= len(text) // 400_000  # pages are filled, not cut into slivers: one short page per region


def test_a_reader_with_another_cap_gets_pages_cut_for_it(tmp_path: Path, counter: TokenCounter) -> None:
    text = multibyte_export(400, seed=3)
    store = ArtifactStore(tmp_path, owner="a")
    _, stored = offload(text, CAP, store, counter)
    assert stored is not None
    replies = read_all(stored_output_reader(store, 300, counter), stored.id)
    assert all(counter.count(reply) <= 300 for reply in replies)
    assert "".join(reply.split("\n", 1)[1] for reply in replies) == text
    index = json.loads((tmp_path / stored.id / INDEX_FILE).read_text("utf-8"))
    assert sorted(index["layouts"]) == ["cl100k_base:300", f"cl100k_base:{CAP}"]  # kept for the next read


@settings(max_examples=60, deadline=None)
@given(
    text=st.lists(st.sampled_from([*'ab \n{}"0123é审😀\t\u2028', "xyzxyzxyz"]), min_size=1).map("".join),
    cap=st.integers(1, 30),
)
def test_page_spans_cover_any_text_within_the_cap(text: str, cap: int, counter: TokenCounter) -> None:
    spans = list(page_spans(text, cap, counter))
    assert [start for start, _, _ in spans] == [0] + [end for _, end, _ in spans[:-1]]
    assert spans[-1][1] == len(text)
    for start, end, tokens in spans:
        assert end > start and tokens == counter.count(text[start:end])
        assert tokens <= cap or end - start == 1


def test_the_same_text_is_stored_once_per_owner(tmp_path: Path, counter: TokenCounter) -> None:
    text = multibyte_export(200)
    first = ArtifactStore(tmp_path, "a").put(text, counter, CAP)
    again = ArtifactStore(tmp_path, "a").put(text, counter, CAP)
    other = ArtifactStore(tmp_path, "b").put(text, counter, CAP)
    assert first == again and other.id != first.id
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted([first.id, other.id])  # no partial left


def test_another_agents_output_is_refused(tmp_path: Path, counter: TokenCounter) -> None:
    text = multibyte_export(200)
    stored = ArtifactStore(tmp_path, "claims_triage").put(text, counter, CAP)
    reply = stored_output_reader(ArtifactStore(tmp_path, "compliance_reviewer"), CAP, counter)(stored.id, 1)
    assert reply == f"[stored output {stored.id} was stored by another agent; it is not readable here]"
    assert text[:50] not in reply
    mine = stored_output_reader(ArtifactStore(tmp_path, "claims_triage"), CAP, counter)(stored.id, 1)
    assert mine.split("\n", 1)[1] == text[: len(mine.split("\n", 1)[1])]


def test_symlinks_in_the_artifacts_folder_are_not_followed(tmp_path: Path, counter: TokenCounter) -> None:
    folder, elsewhere = tmp_path / "artifacts", tmp_path / "elsewhere"
    secret = ArtifactStore(elsewhere, "a").put("SECRET " * 2_000, counter, CAP)
    store = ArtifactStore(folder, "a")
    read = stored_output_reader(store, CAP, counter)
    folder.mkdir()
    (folder / secret.id).symlink_to(elsewhere / secret.id, target_is_directory=True)  # a linked output folder
    assert "not a plain folder" in read(secret.id, 1) and "SECRET" not in read(secret.id, 1)

    mine = store.put("mine " * 2_000, counter, CAP)
    (folder / mine.id / TEXT_FILE).unlink()
    (folder / mine.id / TEXT_FILE).symlink_to(elsewhere / secret.id / TEXT_FILE)  # a linked file
    assert "no readable output.txt" in read(mine.id, 1) and "SECRET" not in read(mine.id, 1)

    (folder / secret.id).unlink()
    (folder / secret.id).symlink_to(tmp_path / "nowhere")
    stored = ArtifactStore(folder, "a").put("SECRET " * 2_000, counter, CAP)  # a link where it belongs: replaced
    assert stored.id == secret.id and not (folder / secret.id).is_symlink()
    assert read(secret.id, 1).startswith(f"[stored output {secret.id}, page 1 of")
    assert (elsewhere / secret.id / TEXT_FILE).exists()  # the link's target was left alone


def test_a_store_cut_short_leaves_no_output_and_the_next_one_completes(
    tmp_path: Path, counter: TokenCounter, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = multibyte_export(300)
    store = ArtifactStore(tmp_path, "a")

    def killed(self: Path, target: Path) -> None:
        raise KeyboardInterrupt  # the process dies between writing the pages and renaming them into place

    monkeypatch.setattr(Path, "rename", killed)
    with pytest.raises(KeyboardInterrupt):
        store.put(text, counter, CAP)
    monkeypatch.undo()
    output_id = store.output_id(text)
    assert not (tmp_path / output_id).exists()
    assert stored_output_reader(store, CAP, counter)(output_id, 1) == f"[no stored output {output_id!r} in {tmp_path}]"
    stray = tmp_path / f".partial-{output_id}-1-00000000"  # what a killed process (no finally) leaves
    stray.mkdir()
    (stray / TEXT_FILE).write_text(text[:100], "utf-8")
    os.utime(stray, (0, 0))  # an hour old and more: swept by the next store
    stored = store.put(text, counter, CAP)
    replies = read_all(stored_output_reader(store, CAP, counter), stored.id)
    assert "".join(reply.split("\n", 1)[1] for reply in replies) == text
    assert os.listdir(tmp_path) == [stored.id]


def test_lone_surrogates_and_bad_requests_are_answered_in_words(tmp_path: Path, counter: TokenCounter) -> None:
    text = ("row \ud800 half a pair\n" * 3_000) + "end"
    store = ArtifactStore(tmp_path, "a")
    _, stored = offload(text, CAP, store, counter)
    assert stored is not None
    read = stored_output_reader(store, CAP, counter)
    assert "".join(reply.split("\n", 1)[1] for reply in read_all(read, stored.id)) == text
    assert "does not exist" in read(stored.id, stored.pages + 1) and "does not exist" in read(stored.id, 0)
    assert "not a stored output id" in read("../../etc/passwd", 1)
    (tmp_path / stored.id / INDEX_FILE).write_text("{broken", "utf-8")
    assert read(stored.id, 1) == f"[stored output {stored.id!r} could not be read: JSONDecodeError]"
    assert os.listdir(tmp_path) == [stored.id]
    again = store.put(text, counter, CAP)  # a damaged output is set aside (kept) and stored afresh
    assert again == stored and "".join(reply.split("\n", 1)[1] for reply in read_all(read, stored.id)) == text
    assert sorted(os.listdir(tmp_path))[0].startswith(f".damaged-{stored.id}-")
