"""The audit trail: every call's record names what was injected, and `audit show` rebuilds the exact message
after the policy is edited and re-ingested (real model, real Chroma, a real AgentChat agent on a replay client)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from datetime import date, timedelta
from pathlib import Path

import pytest
from autogen_agentchat.messages import TextMessage
from autogen_ext.models.replay import ReplayChatCompletionClient

from rag_prompts import ModelCall, Pipeline, SentenceTransformerEmbedder, build_agent, load_settings
from rag_prompts.cli import main
from rag_prompts.dating import policies_as_of

from .conftest import write

POLICY = """---
effective: 2026-01-01
---
# Repair Authority

## Approval Limits

A Motor Assessor may authorise a repair estimate of up to {limit}. Above that a Senior Motor Assessor must approve.

## Referral

Every repair estimate on a vehicle less than a year old is referred to an independent engineer before approval.
"""
OTHER = "# Towing\n\n## Towing Charges\n\nTowing is paid up to $450 per claim without approval.\n"
TASK = "Can a Motor Assessor authorise a $7,000 repair estimate?"


def _setup(tmp_path: Path, embedder: SentenceTransformerEmbedder, keep: str = "") -> tuple[Path, Pipeline]:
    write(tmp_path / "docs" / "claims" / "repair-authority.md", POLICY.format(limit="$8,000"))
    write(tmp_path / "docs" / "claims" / "towing.md", OTHER)
    config = write(
        tmp_path / "rag_prompts.toml",
        f'store = "store"\ncollection = "audit-test"\ncorpus = ["docs"]\npayload_log = "payload.jsonl"\n{keep}\n'
        '[agents.triage]\nbase_message = "You triage motor claims."\nbudget = 400\ntags = ["claims"]\n'
        'pinned = ["claims/repair-authority.md#Referral"]\n',
    )
    pipeline = Pipeline(load_settings(config, environ={}), embedder=embedder)
    assert pipeline.ingest().ok
    return config, pipeline


def _call(pipeline: Pipeline) -> ModelCall:
    records: list[ModelCall] = []
    agent = build_agent("triage", ReplayChatCompletionClient(["ok"]), pipeline=pipeline, on_call=records.append)
    with policies_as_of("2026-05-04"):
        asyncio.run(agent.run(task=TextMessage(content=TASK, source="user")))
    (record,) = records
    return record


def _edit(config: Path, pipeline: Pipeline) -> None:
    write(config.parent / "docs" / "claims" / "repair-authority.md", POLICY.format(limit="$9,500"))
    report = pipeline.ingest()
    assert report.updated == ["claims/repair-authority.md"]
    assert "$9,500" in pipeline.compose(TASK, agent="triage").system_message


def test_the_call_record_names_every_injected_chunk(tmp_path: Path, embedder: SentenceTransformerEmbedder) -> None:
    config, pipeline = _setup(tmp_path, embedder)
    record = _call(pipeline)
    assert record.prompt is not None
    (row,) = [json.loads(line) for line in (tmp_path / "payload.jsonl").read_text("utf-8").splitlines()]
    audit = row["audit"]
    assert audit["id"] == record.prompt.id and len(audit["id"]) == 32
    assert audit["task_sha256"] == hashlib.sha256(TASK.encode()).hexdigest() and audit["as_of"] == "2026-05-04"
    committed = pipeline.store.committed()
    kinds = [chunk["kind"] for chunk in audit["chunks"]]
    assert kinds[0] == "pinned" and "retrieved" in kinds and kinds == sorted(kinds)  # pinned first
    text = (tmp_path / "docs" / "claims" / "repair-authority.md").read_text("utf-8")
    for chunk in audit["chunks"]:
        assert chunk["doc_hash"] == committed[chunk["source"]].doc_hash
        assert text[chunk["start"] : chunk["end"]] in record.prompt.system_message or chunk["source"] != (
            "claims/repair-authority.md"
        )
        assert {"section", "score"} <= set(chunk)


def test_audit_show_rebuilds_the_old_message_after_an_edit(
    tmp_path: Path, embedder: SentenceTransformerEmbedder, capsys: pytest.CaptureFixture[str]
) -> None:
    config, pipeline = _setup(tmp_path, embedder)
    sent = _call(pipeline).prompt
    assert sent is not None and "$8,000" in sent.system_message
    _edit(config, pipeline)
    code = main(["audit", "show", sent.id[:10], "--config", str(config)])
    captured = capsys.readouterr()
    assert code == 0 and captured.out == sent.system_message  # byte for byte
    assert "identical to the message sent" in captured.err

    code = main(["audit", "list", "--agent", "triage", "--since", date.today().isoformat(), "--config", str(config)])
    out = capsys.readouterr().out
    assert code == 0 and sent.id in out and "claims/repair-authority.md" in out
    tomorrow = (date.today() + timedelta(days=1)).isoformat()
    assert main(["audit", "list", "--since", tomorrow, "--json", "--config", str(config)]) == 0
    assert json.loads(capsys.readouterr().out) == []
    assert main(["audit", "list", "--agent", "nobody", "--json", "--config", str(config)]) == 0
    assert json.loads(capsys.readouterr().out) == []


@pytest.mark.parametrize("keep", ["keep_versions_days = 0", "keep_versions_days = 1"])
def test_retention_says_plainly_when_a_version_is_gone(
    tmp_path: Path, embedder: SentenceTransformerEmbedder, capsys: pytest.CaptureFixture[str], keep: str
) -> None:
    config, pipeline = _setup(tmp_path, embedder, keep)
    sent = _call(pipeline).prompt
    assert sent is not None
    _edit(config, pipeline)
    if keep.endswith("1"):  # kept for a day: still rebuilt; then the day passes
        assert main(["audit", "show", sent.id, "--config", str(config)]) == 0
        assert capsys.readouterr().out == sent.system_message
        assert pipeline.store.expire_archive(int(time.time()) + 2 * 86_400) > 0
    assert main(["audit", "show", sent.id, "--config", str(config)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"rag-prompts: error: call {sent.id}: cannot rebuild: the store no longer holds")
    assert "claims/repair-authority.md (version " in err and "\n" not in err


def test_audit_errors_are_one_line(
    tmp_path: Path, embedder: SentenceTransformerEmbedder, capsys: pytest.CaptureFixture[str]
) -> None:
    config, pipeline = _setup(tmp_path, embedder)
    assert main(["audit", "list", "--config", str(config)]) == 2
    assert capsys.readouterr().err.strip().endswith("payload.jsonl: no such payload log")
    _call(pipeline)
    assert main(["audit", "show", "feedbeef", "--config", str(config)]) == 2
    assert capsys.readouterr().err.strip() == (
        "rag-prompts: error: no call with id 'feedbeef' in the payload log; `rag-prompts audit list` shows the ids"
    )
    assert main(["audit", "list", "--since", "May 4", "--config", str(config)]) == 2
    assert "--since: 'May 4' is not a date" in capsys.readouterr().err
