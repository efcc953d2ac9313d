"""The CLI end to end: real store, real model; user mistakes give one line and a non-zero exit code."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from rag_prompts.cli import main

from .conftest import CONFIG, CORPUS, write


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The repository's config pointed at a fresh store and a small slice of the corpus."""
    folder = tmp_path_factory.mktemp("cli")
    shutil.copytree(CORPUS / "people", folder / "docs" / "people")
    text = CONFIG.read_text("utf-8").replace('".rag_prompts/chroma"', f'"{folder / "store"}"')
    text = text.replace('corpus = ["corpus"]', 'corpus = ["docs"]')
    return write(folder / "rag_prompts.toml", text)


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_ingest_search_compose_stats(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["ingest", "--config", str(config), "--json"], capsys)
    summary = json.loads(out)
    assert code == 0 and summary["added"] == 2 and summary["failed"] == 0 and summary["chunks_embedded"] > 0

    code, out, err = run(["ingest", "--config", str(config)], capsys)
    assert code == 0 and "0 added, 0 updated, 2 unchanged" in out

    code, out, _ = run(["search", "hotel cap in a tier 1 city", "--k", "3", "--config", str(config)], capsys)
    assert code == 0 and "people/travel-and-expenses.md" in out and out.splitlines()[0].split()[:2] == ["#", "score"]

    code, out, _ = run(
        [
            "compose",
            "What is the nightly hotel cap in a tier 1 city?",
            "--agent",
            "staff_helpdesk",
            "--k",
            "2",
            "--budget",
            "600",
            "--json",
            "--config",
            str(config),
        ],
        capsys,
    )
    result = json.loads(out)
    assert set(result) == {"id", "as_of", "system_message", "tokens", "budget", "encoding", "chunks", "dropped"}
    assert result["budget"] == 600 and result["tokens"] <= 600
    passages = [chunk for chunk in result["chunks"] if not chunk["context"]]
    assert len(passages) == 2 < len(result["chunks"])  # k=2 passages, grown into their context with the budget left
    chunk_keys = {"id", "source", "section", "start", "end", "score", "tokens", "context", "doc_hash", "pinned"}
    assert set(result["chunks"][0]) == chunk_keys
    assert result["system_message"].startswith("You answer Harbourline Mutual staff questions")

    code, out, err = run(["compose", "Hotel caps?", "--agent", "staff_helpdesk", "--config", str(config)], capsys)
    assert code == 0 and out.startswith("You answer") and "tokens (cl100k_base)" in err

    code, out, _ = run(["stats", "--json", "--config", str(config)], capsys)
    stats = json.loads(out)
    assert stats["documents"] == 2 and stats["chunks"] > 0 and stats["tokens"] > 1000

    code, out, _ = run(["search", "hotel cap in a tier 1 city", "--k", "5", "--config", str(config)], capsys)
    code, compacted, _ = run(["compact", "--json", "--config", str(config)], capsys)
    assert code == 0 and json.loads(compacted) == {"collection": "harbourline-policies", "chunks": stats["chunks"],
                                                   "copied": True}  # fmt: skip
    code, again, _ = run(["compact", "--config", str(config)], capsys)
    assert code == 0 and again.startswith("nothing to compact") and f"({stats['chunks']} chunks)" in again
    assert run(["search", "hotel cap in a tier 1 city", "--k", "5", "--config", str(config)], capsys)[1] == out
    code, out, _ = run(["ingest", "--config", str(config)], capsys)
    assert code == 0 and "2 unchanged" in out and "0 embedded" in out  # the same records, vectors included


def test_failed_file_gives_non_zero_exit(config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "bad.md").write_bytes(b"\xff\xfe\x00")
    write(tmp_path / "good.md", "# Good\n\nFine text.\n")
    code, out, err = run(["ingest", str(tmp_path), "--config", str(config)], capsys)
    assert code == 1
    assert f"failed: {tmp_path / 'bad.md'}: binary file" in err and "1 added" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["compose", "x", "--agent", "nobody"], "unknown agent 'nobody'; known agents: claims_triage"),
        (["compose", "x", "--budget", "0"], "--budget must be a positive integer"),
        (["compose", "x", "--budget", "3", "--agent", "claims_triage"], "base message alone is"),
        (["stats", "--config", "/no/such.toml"], "/no/such.toml: config file not found"),
    ],
)
def test_user_mistakes_are_one_line_errors(
    config: Path, args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    if "--config" not in args:
        args = [*args, "--config", str(config)]
    code, _, err = run(args, capsys)
    assert code == 2
    assert err.startswith("rag-prompts: error: ") and message in err and err.count("\n") == 1


def test_invalid_config_is_reported_without_traceback(tmp_path: Path) -> None:
    bad = write(tmp_path / "rag_prompts.toml", "[agents.a]\nk = 0\n")
    result = subprocess.run(
        [sys.executable, "-m", "rag_prompts.cli", "stats"], cwd=tmp_path, capture_output=True, text=True
    )
    assert result.returncode == 2
    assert result.stderr == f"rag-prompts: error: {bad}: agents.a.k: Input should be greater than or equal to 1\n"


@pytest.mark.parametrize("command", [["compose", "How long are claim files kept?"], ["search", "claim files"]])
def test_compose_and_search_on_a_store_with_no_documents_exit_non_zero_saying_so(
    command: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = write(tmp_path / "rag_prompts.toml", f'store = "{tmp_path / "store"}"\n')
    code, out, err = run([*command, "--config", str(empty)], capsys)
    assert (code, out) == (2, "")
    assert err == "rag-prompts: error: the store has no documents: run `rag-prompts ingest` first\n"


def test_an_embedded_index_too_large_for_the_memory_bound_is_warned_about(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Chroma loads an embedded store's whole HNSW index into every process that opens it; past the threshold the
    ingest says so and names the way out (a server store). Below it, nothing is said."""
    from rag_prompts import ingest as ingest_module

    write(tmp_path / "docs" / "rules.md", "# Rules\n\nExpenses over 500 EUR need a manager's approval.\n")
    store = tmp_path / "store"
    settings = ["--config", str(config)]
    monkeypatch.setenv("RAG_PROMPTS_STORE", str(store))
    code, out, err = run(["ingest", str(tmp_path / "docs"), *settings], capsys)
    assert code == 0 and "warning" not in err
    monkeypatch.setattr(ingest_module, "INDEX_WARN_BYTES", 0)
    code, out, err = run(["ingest", str(tmp_path / "docs"), *settings], capsys)
    assert code == 0 and "1 unchanged" in out
    assert "warning: the store's vector index is about 0 MB" in err and f"opens {store}" in err
    assert "server store" in err
    code, out, _ = run(["ingest", str(tmp_path / "docs"), *settings, "--json"], capsys)
    assert "opens" in json.loads(out)["warnings"][0]
