"""Effective dating: a message for a date uses only the documents in force on it (real model, real Chroma)."""

from __future__ import annotations

from dataclasses import replace
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from rag_prompts import ConfigError, LoadError, Pipeline, SentenceTransformerEmbedder
from rag_prompts.agents.prompter import TaskPrompter
from rag_prompts.cli import main
from rag_prompts.dating import Dating, dating_from, out_of_force, parse_day, policies_as_of
from rag_prompts.loaders import load_document

from .conftest import CONFIG, make_pipeline, write

OLD, NEW = "claims/motor-repair-authority-2025.md", "claims/motor-repair-authority-2026.md"
LIMITS = {OLD: ("$6,750", "$18,500", "$42,000"), NEW: ("$9,250", "$27,500", "$55,000")}


def test_in_force_by_effective_expires_and_successor() -> None:
    datings = [
        Dating("a.md", effective="2025-01-01", superseded_by="b.md"),
        Dating("b.md", effective="2026-01-01"),
        Dating("c.md", effective="2025-03-01", expires="2025-06-30"),
        Dating("d.md"),
    ]
    assert out_of_force(datings, date(2024, 12, 31)) == {"a.md", "b.md", "c.md"}
    assert out_of_force(datings, date(2025, 3, 1)) == {"b.md"}
    assert out_of_force(datings, date(2025, 6, 30)) == {"b.md"}
    assert out_of_force(datings, date(2025, 7, 1)) == {"b.md", "c.md"}
    assert out_of_force(datings, date(2026, 1, 1)) == {"a.md", "c.md"}
    # a successor that is not stored does not retire its predecessor
    assert out_of_force([Dating("a.md", effective="2025-01-01", superseded_by="gone.md")], date(2030, 1, 1)) == set()


@pytest.mark.parametrize(
    ("meta", "key"),
    [
        ({"effective": "2026-13-01"}, "effective"),
        ({"expires": "soon"}, "expires"),
        ({"superseded_by": 3}, "superseded_by"),
    ],
)
def test_bad_dates_name_the_file_and_key(meta: dict[str, Any], key: str) -> None:
    with pytest.raises(LoadError) as error:
        dating_from(meta, "x.md", "/docs/x.md")
    assert str(error.value).startswith("/docs/x.md: front matter `" + key + "`") and "\n" not in str(error.value)


def test_expiry_before_effect_is_refused() -> None:
    with pytest.raises(LoadError, match="`expires` .* is before `effective`"):
        dating_from({"effective": "2026-02-01", "expires": "2026-01-31"}, "x.md", "x.md")


def test_as_of_must_be_a_date() -> None:
    assert parse_day("2025-09-18") == date(2025, 9, 18)
    with pytest.raises(ConfigError, match=r"^as_of: '18/09/2025' is not a date; write it as YYYY-MM-DD$"):
        parse_day("18/09/2025")


def test_front_matter_dates_are_read_and_a_bad_one_stops_only_its_file(
    tmp_path: Path, embedder: SentenceTransformerEmbedder
) -> None:
    docs = tmp_path / "docs"
    good = write(docs / "good.md", "---\neffective: 2026-01-01\nexpires: 2026-12-31\n---\n# Good\n\nText here.\n")
    write(docs / "bad.md", "---\neffective: 2026-02-30\n---\n# Bad\n\nText here.\n")
    document = load_document(good, docs)
    assert (document.effective, document.expires) == ("2026-01-01", "2026-12-31")
    pipeline = make_pipeline(tmp_path, embedder)
    report = pipeline.ingest([docs])
    assert report.added == ["good.md"]
    assert [failure.reason for failure in report.failed] == [
        "front matter `effective`: '2026-02-30' is not a date; write it as YYYY-MM-DD"
    ]
    assert pipeline.store.committed()["good.md"].expires == "2026-12-31"


def _limits_in(message: str) -> set[str]:
    return {source for source, figures in LIMITS.items() if any(figure in message for figure in figures)}


def test_each_date_gets_its_own_limit_and_never_the_other(
    tasks: list[dict[str, Any]], corpus_pipeline: Pipeline
) -> None:
    dated = [task for task in tasks if "as_of" in task]
    assert len(dated) >= 4 and {task["needs"][0]["source"] for task in dated} == {OLD, NEW}
    stored = corpus_pipeline.store.committed()
    assert stored[OLD].superseded_by == NEW and stored[NEW].effective == "2026-01-01"  # side by side
    for task in dated:
        prompt = corpus_pipeline.compose(task["task"], agent=task["agent"], as_of=task["as_of"])
        wanted = task["needs"][0]["source"]
        assert prompt.as_of == task["as_of"]
        assert {chunk.source for chunk in prompt.chunks} & {OLD, NEW} == {wanted}, task["id"]
        assert _limits_in(prompt.system_message) == {wanted}, task["id"]
        assert all(fact in prompt.system_message for fact in task["facts"]), task["id"]


def test_documents_not_yet_in_force_are_left_out(corpus_pipeline: Pipeline) -> None:
    task = "Who must approve a $20,000 motor repair estimate, and when is an independent engineer needed?"
    sources = {
        chunk.source for chunk in corpus_pipeline.compose(task, agent="claims_triage", as_of="2025-05-01").chunks
    }
    assert OLD in sources and NEW not in sources
    assert "claims/claims-handling-manual.md" not in sources  # effective 2026-03-01
    today = corpus_pipeline.compose(task, agent="claims_triage")  # the clock says 2026 or later
    assert today.as_of == date.today().isoformat() and _limits_in(today.system_message) == {NEW}


def test_the_agents_prompter_takes_a_date_per_agent_and_per_call(corpus_pipeline: Pipeline) -> None:
    task = "As a Motor Assessor, up to what repair estimate can I authorise on my own?"
    prompter = TaskPrompter.for_agent("claims_triage", pipeline=corpus_pipeline, as_of="2025-09-18")
    assert _limits_in(prompter.prompt_for(task).system_message) == {OLD}
    with policies_as_of("2026-02-09"):  # the case's own date beats the agent's
        assert _limits_in(prompter.prompt_for(task).system_message) == {NEW}
    assert _limits_in(prompter.prompt_for(task, as_of=date(2026, 2, 9)).system_message) == {NEW}
    assert prompter.prompt_for(task).as_of == "2025-09-18"


def test_cli_compose_as_of(corpus_pipeline: Pipeline, capsys: pytest.CaptureFixture[str]) -> None:
    config = write(
        Path(corpus_pipeline.settings.store_location).parent / "dated.toml",
        CONFIG.read_text("utf-8").replace('".rag_prompts/chroma"', f'"{corpus_pipeline.settings.store_location}"'),
    )
    task = "As a Motor Assessor, up to what repair estimate can I authorise on my own?"
    for day, source in (("2025-09-18", OLD), ("2026-02-09", NEW)):
        code = main(["compose", task, "--agent", "claims_triage", "--as-of", day, "--config", str(config)])
        out = capsys.readouterr().out
        assert code == 0 and _limits_in(out) == {source}
    code = main(["compose", task, "--as-of", "next tuesday", "--config", str(config)])
    assert code == 2 and capsys.readouterr().err.strip() == (
        "rag-prompts: error: as_of: 'next tuesday' is not a date; write it as YYYY-MM-DD"
    )


def test_a_store_written_before_dating_gets_it_without_rewriting_chunks(
    tmp_path: Path, embedder: SentenceTransformerEmbedder
) -> None:
    docs = tmp_path / "docs"
    write(docs / "old.md", "---\neffective: 2025-01-01\nsuperseded_by: new.md\n---\n# Old\n\nThe limit is $1,000.\n")
    write(docs / "new.md", "---\neffective: 2026-01-01\n---\n# New\n\nThe limit is $2,000.\n")
    pipeline = make_pipeline(tmp_path, embedder)
    assert pipeline.ingest([docs]).ok
    store = pipeline.store
    store.put_records([replace(record, effective="", superseded_by="", meta=0) for record in store.records().values()])
    assert pipeline.out_of_force(date(2026, 6, 1)) == frozenset()  # what an older store knew
    report = pipeline.ingest([docs])
    assert report.unchanged == ["new.md", "old.md"] and report.chunks_written == report.chunks_embedded == 0
    assert pipeline.out_of_force(date(2026, 6, 1)) == {"old.md"}
    assert pipeline.out_of_force(date(2025, 6, 1)) == {"new.md"}
