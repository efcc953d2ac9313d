"""The eval command and batch compose end to end on a tiny labelled dataset made here."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rag_prompts import SentenceTransformerEmbedder
from rag_prompts.cli import main
from rag_prompts.errors import LoadError
from rag_prompts.evaluation.dataset import load_dataset
from rag_prompts.evaluation.evaluate import OURS, evaluate
from rag_prompts.tokens import TokenCounter

from .conftest import make_pipeline, write

DOCS = {
    "travel": (
        "Hotel nights are reimbursed up to $180 in London and $140 elsewhere.\n\n"
        "Economy class is required for flights under six hours. Business class needs director approval.\n\n"
        "Receipts must be submitted within 30 days of the trip."
    ),
    "security": (
        "Passwords must be at least 14 characters long and are never shared.\n\n"
        "Lost laptops are reported to the service desk within one hour.\n\n"
        "USB storage devices are blocked on all company machines."
    ),
}
QUESTIONS = [
    ("q1", "How much is a hotel night in London reimbursed?", "travel", "up to $180 in London"),
    ("q2", "When must a lost laptop be reported?", "security", "within one hour"),
    ("q3", "Can I fly business class?", None, "Business class needs director approval."),
]


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    folder = tmp_path / "tiny"
    for name, text in DOCS.items():
        write(folder / "docs" / f"{name}.txt", text)
    lines = []
    for qid, query, doc_id, answer in QUESTIONS:
        gold_doc = doc_id or "travel"
        start = DOCS[gold_doc].index(answer)
        gold = [{"doc_id": gold_doc, "start": start, "end": start + len(answer), "text": answer}]
        lines.append(json.dumps({"qid": qid, "query": query, "doc_id": doc_id, "gold": gold}))
    write(folder / "queries.jsonl", "\n".join(lines) + "\n")
    return folder


def test_evaluate_scores_every_method_within_budget(
    dataset: Path, tmp_path: Path, embedder: SentenceTransformerEmbedder
) -> None:
    pipeline = make_pipeline(tmp_path, embedder, collection="eval-tiny", chunk_tokens=16)
    report = evaluate(load_dataset(dataset), pipeline, [64, 256])
    methods = {result.method for result in report.results}
    assert OURS in methods and len(methods) == 4 and report.queries == 3
    assert "500-char recursive splitter, dense top-k" in methods
    for result in report.results:
        assert result.within_budget == 1.0 and result.tokens_max <= result.budget
        assert 0 <= result.precision <= 1 and 0 <= result.recall <= 1
    ours = {r.budget: r for r in report.results if r.method == OURS}
    assert ours[256].hit == 1.0 and ours[256].recall == 1.0  # every answer sentence fits in 256 tokens
    assert ours[256].latency_p50_ms is not None and ours[256].latency_p50_ms > 0


def test_eval_command_writes_json_and_plot(dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write(tmp_path / "rag_prompts.toml", f'store = "{tmp_path / "store"}"\nchunk_tokens = 16\n')
    out, image = tmp_path / "report.json", tmp_path / "report.png"
    code = main(["eval", str(dataset), "--config", str(config), "--budgets", "128,512",
                 "--json", str(out), "--plot", str(image)])  # fmt: skip
    printed = capsys.readouterr().out
    assert code == 0 and "rag-prompts" in printed and "500-char chunks" in printed
    report = json.loads(out.read_text("utf-8"))
    assert {r["budget"] for r in report["results"]} == {128, 512}
    assert image.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_batch_compose_claims_ranges_an_independent_scorer_can_check(
    dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write(tmp_path / "rag_prompts.toml", f'store = "{tmp_path / "store"}"\nchunk_tokens = 16\n')
    assert main(["ingest", str(dataset / "docs"), "--config", str(config)]) == 0
    capsys.readouterr()
    code = main(["compose", "--batch", str(dataset / "queries.jsonl"), "--budget", "120", "--json",
                 "--config", str(config)])  # fmt: skip
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert code == 0 and [line["qid"] for line in lines] == ["q1", "q2", "q3"]
    for line, (_, _, doc_id, _) in zip(lines, QUESTIONS, strict=True):
        assert line["tokens"] <= 120 and line["chunks"]
        for chunk in line["chunks"]:
            text = DOCS[chunk["doc_id"]][chunk["start"] : chunk["end"]]
            assert text and text in line["system_message"]  # the claimed range is exactly what was injected
            assert doc_id is None or chunk["doc_id"] == doc_id  # restricted to the query's document


def test_bad_query_line_names_file_and_line(tmp_path: Path) -> None:
    folder = tmp_path / "broken"
    write(folder / "docs" / "a.txt", "Some text.")
    write(folder / "queries.jsonl", '{"qid": "1", "query": "ok?", "gold": [{"doc_id": "a", "start": 0, "end": 4}]}\n'
          '{"qid": "2", "query": ""}\n')  # fmt: skip
    with pytest.raises(LoadError, match=r"queries\.jsonl:2"):
        load_dataset(folder)


def test_recursive_splitter_baseline_claims_exact_spans_of_real_langchain_chunks(
    dataset: Path, embedder: SentenceTransformerEmbedder, counter: TokenCounter
) -> None:
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    from rag_prompts.evaluation.baselines import RecursiveSplitterDense
    from rag_prompts.loaders import load_document

    loaded = load_dataset(dataset)
    documents = {path.stem: load_document(path, loaded.docs) for path in sorted(loaded.docs.glob("*.txt"))}
    baseline = RecursiveSplitterDense(documents, embedder, counter)
    expected = [
        text for doc in documents.values()
        for text in RecursiveCharacterTextSplitter(chunk_size=500, chunk_overlap=0).split_text(doc.text)
    ]  # fmt: skip
    assert baseline.texts == expected
    for query in loaded.queries:
        message, spans = baseline.compose(query, "Base.", 256, "Header.")
        assert counter.count(message) <= 256 and spans
        for doc_id, start, end in spans:
            assert documents[doc_id].text[start:end] in message  # the chunk text alone, no label
